//! The manifests that run Kato on a cluster (`deploy/`) validate against the Kubernetes 1.33
//! OpenAPI schema, strictly, with the `kubernetes-validate` CLI (`pip install kubernetes-validate`),
//! and grant the server exactly what the kubernetes target uses.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde::Deserialize;

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy");
const VALIDATOR: &str = "kubernetes-validate";
const KUBERNETES_VERSION: &str = "1.33.0";

fn manifests() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(DEPLOY)
        .expect("deploy directory")
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {DEPLOY}");
    files
}

#[test]
fn deploy_manifests_validate_against_the_kubernetes_schema() {
    let files = manifests();
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
        "{VALIDATOR} rejected the deploy manifests ({}):\n{stdout}\n{stderr}",
        out.status
    );
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

#[derive(Deserialize)]
struct Doc {
    kind: String,
    #[serde(default)]
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    api_groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
}

/// The ClusterRole's grants as `group/resource` → verbs.
fn granted() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(format!("{DEPLOY}/rbac.yaml")).unwrap();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let doc = Doc::deserialize(doc).unwrap();
        if doc.kind != "ClusterRole" {
            continue;
        }
        for r in doc.rules {
            for g in &r.api_groups {
                for res in &r.resources {
                    out.entry(format!("{g}/{res}"))
                        .or_default()
                        .extend(r.verbs.iter().cloned());
                }
            }
        }
    }
    out
}

#[test]
fn the_cluster_role_grants_exactly_what_the_driver_uses() {
    // What the kubernetes target calls (see docs/kubernetes.md): an apply that creates an object
    // is authorized as create, one that changes it as patch.
    let used: BTreeMap<String, BTreeSet<String>> = [
        ("/namespaces", &["get", "create"][..]),
        ("/secrets", &["create", "patch", "list", "delete"]),
        ("/services", &["create", "patch", "list", "delete"]),
        ("apps/deployments", &["get", "create", "patch", "list", "delete"]),
        ("/pods", &["list", "watch"]),
        ("/pods/log", &["get"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
    .collect();
    assert_eq!(granted(), used);
}
