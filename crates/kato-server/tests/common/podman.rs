//! The podman command line as the end-to-end tests use it: with the project's containers.conf.
#![allow(dead_code)]

pub const CONF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/containers.conf");

pub fn podman(args: &[&str]) -> std::process::Output {
    std::process::Command::new("podman")
        .args(args)
        .env("CONTAINERS_CONF", CONF)
        .output()
        .expect("podman runs")
}

/// Runs podman and answers its stdout; fails the test with podman's stderr when it fails.
pub fn checked(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
