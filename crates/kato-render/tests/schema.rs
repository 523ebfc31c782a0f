//! Every golden file validates against the Kubernetes 1.33 OpenAPI schema, strictly (no unknown
//! fields), with the `kubernetes-validate` CLI (`pip install kubernetes-validate`).

mod common;

use std::process::Command;

const VALIDATOR: &str = "kubernetes-validate";
const KUBERNETES_VERSION: &str = "1.33.0";

#[test]
fn golden_files_validate_against_the_kubernetes_schema() {
    let mut files: Vec<String> = std::fs::read_dir(common::GOLDEN)
        .expect("golden directory")
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no golden files to validate");

    let out = Command::new(VALIDATOR)
        .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .args(&files)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `{VALIDATOR}` ({e}): install it with `pip install kubernetes-validate`")
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{VALIDATOR} rejected rendered objects ({}):\n{stdout}\n{stderr}",
        out.status
    );

    // The CLI prints one `passed` line per document; make sure none was skipped.
    let documents: usize = files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            text.lines().filter(|l| l.starts_with("kind: ")).count()
        })
        .sum();
    let passed = stdout.lines().filter(|l| l.contains(" passed for resource ")).count();
    assert_eq!(
        passed, documents,
        "every document must be validated:\n{stdout}\n{stderr}"
    );
    let warnings: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .filter(|l| l.starts_with("WARN") || l.starts_with("ERROR"))
        .collect();
    assert!(warnings.is_empty(), "{}", warnings.join("\n"));
}
