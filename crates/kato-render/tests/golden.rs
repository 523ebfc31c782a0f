//! Golden files: every fixture rendered for every sidecar mode and target, compared byte for
//! byte with `tests/golden/{fixture}-{mode}-{target}.yaml`. `KATO_UPDATE_GOLDEN=1` rewrites them.

mod common;

use common::render;
use common::{COMBINATIONS, Fixture, GOLDEN, fixture_names, options};
use kato_render::{SidecarMode, Target};

const KINDS: [&str; 6] = [
    "inbound-net",
    "outbound-net",
    "inout-net",
    "perf-analysis",
    "init",
    "general",
];

fn golden_path(fixture: &str, mode: SidecarMode, target: Target) -> String {
    format!("{GOLDEN}/{fixture}-{mode}-{target}.yaml")
}

fn render_yaml(f: &Fixture, mode: SidecarMode, target: Target) -> String {
    render(&f.workload(), &options(target, mode))
        .unwrap_or_else(|e| panic!("render failed: {e}"))
        .to_yaml()
}

#[test]
fn every_kind_has_a_fixture() {
    let names = fixture_names();
    for kind in KINDS {
        assert!(names.iter().any(|n| n == kind), "no fixture for kind {kind}");
        let f = Fixture::load(kind);
        assert!(
            f.plugins.iter().any(|p| p.version.spec.kind.as_str() == kind),
            "fixture {kind} has no plug-in of its kind"
        );
    }
}

#[test]
fn goldens_match() {
    let update = std::env::var_os("KATO_UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for name in fixture_names() {
        let f = Fixture::load(&name);
        for (mode, target) in COMBINATIONS {
            let path = golden_path(&name, mode, target);
            let got = render_yaml(&f, mode, target);
            if update {
                std::fs::write(&path, &got).unwrap_or_else(|e| panic!("{path}: {e}"));
                continue;
            }
            match std::fs::read_to_string(&path) {
                Ok(want) if want == got => {}
                Ok(want) => stale.push(format!("{path}\n{}", first_difference(&want, &got))),
                Err(e) => stale.push(format!("{path}: {e}")),
            }
        }
    }
    assert!(
        stale.is_empty(),
        "rendered output differs from the golden files (rerun with KATO_UPDATE_GOLDEN=1 if the change is \
         intended):\n{}",
        stale.join("\n")
    );
}

fn first_difference(want: &str, got: &str) -> String {
    let line = want.lines().zip(got.lines()).position(|(a, b)| a != b);
    match line {
        Some(i) => format!(
            "  line {}:\n    golden:   {}\n    rendered: {}",
            i + 1,
            want.lines().nth(i).unwrap_or_default(),
            got.lines().nth(i).unwrap_or_default()
        ),
        None => format!(
            "  lengths differ: golden {} lines, rendered {} lines",
            want.lines().count(),
            got.lines().count()
        ),
    }
}

#[test]
fn no_stray_golden_files() {
    let expected: Vec<String> = fixture_names()
        .iter()
        .flat_map(|n| COMBINATIONS.map(|(m, t)| golden_path(n, m, t)))
        .collect();
    for entry in std::fs::read_dir(GOLDEN).unwrap() {
        let path = entry.unwrap().path().display().to_string();
        assert!(expected.contains(&path), "{path} belongs to no fixture: delete it");
    }
}

#[test]
fn rendering_twice_is_byte_identical() {
    for name in fixture_names() {
        let f = Fixture::load(&name);
        for (mode, target) in COMBINATIONS {
            assert_eq!(render_yaml(&f, mode, target), render_yaml(&f, mode, target), "{name}");
        }
    }
}

#[test]
fn podman_renders_classic_whatever_is_asked() {
    for name in fixture_names() {
        let f = Fixture::load(&name);
        assert_eq!(
            render_yaml(&f, SidecarMode::Native, Target::Podman),
            render_yaml(&f, SidecarMode::Classic, Target::Podman),
            "{name}"
        );
    }
}
