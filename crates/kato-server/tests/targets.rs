//! Choosing the target at start: a kubernetes target must reach its cluster, or the server does
//! not start and says why.

mod common;

use kato_runtime::TargetKind;
use kato_server::StartError;

fn kubernetes_config(dir: &std::path::Path, kubeconfig: std::path::PathBuf) -> kato_server::Config {
    kato_server::Config {
        target: Some(TargetKind::Kubernetes),
        kubeconfig: Some(kubeconfig),
        ..common::config(dir)
    }
}

#[tokio::test]
async fn a_missing_kubeconfig_stops_the_start_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-kubeconfig");
    let err = kato_server::prepare(&kubernetes_config(dir.path(), missing.clone()))
        .await
        .err()
        .expect("a kubernetes target without a kubeconfig must not start");
    let StartError::Target { target, message } = &err else {
        panic!("expected a target error, got {err}");
    };
    assert_eq!(*target, TargetKind::Kubernetes);
    assert!(message.contains("no-such-kubeconfig"), "{message}");
}

#[tokio::test]
async fn an_unreachable_cluster_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\n\
             contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: t\n"
        ),
    )
    .unwrap();
    let err = kato_server::prepare(&kubernetes_config(dir.path(), kubeconfig))
        .await
        .err()
        .expect("an unreachable cluster must stop the start");
    assert!(
        matches!(
            err,
            StartError::Target {
                target: TargetKind::Kubernetes,
                ..
            }
        ),
        "{err}"
    );
}
