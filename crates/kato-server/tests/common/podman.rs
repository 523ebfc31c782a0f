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

/// Removes a team's pods, secrets and volumes when dropped, whether the test passed or not.
pub struct Cleanup(pub String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let label = format!("label=kato/team={}", self.0);
        let pods = podman(&["pod", "ls", "--filter", &label, "--format", "{{.Name}}"]);
        for pod in String::from_utf8_lossy(&pods.stdout).lines() {
            podman(&["pod", "rm", "--force", "--time", "0", pod]);
        }
        for kind in ["secret", "volume"] {
            let names = podman(&[kind, "ls", "--format", "{{.Name}}"]);
            for name in String::from_utf8_lossy(&names.stdout).lines() {
                if name.starts_with(&format!("{}-", self.0)) {
                    podman(&[kind, "rm", name]);
                }
            }
        }
    }
}
