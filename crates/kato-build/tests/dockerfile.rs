//! Real Dockerfile builds: git repos made here, podman, and a local registry to push to.

use std::time::Duration;

use kato_build::{BuildError, BuildLog, BuildRequest, Builder, BuilderConfig, CancellationToken, RetryPolicy};
use kato_model::plugin::DockerfileSource;
use kato_testkit::{FlakyRegistry, GitRepo, TestRegistry, base_image, containers_conf};
use tokio::sync::mpsc;

struct Run {
    outcome: Result<kato_build::Built, BuildError>,
    log: Vec<String>,
}

fn builder(dir: &tempfile::TempDir) -> Builder {
    Builder::new(BuilderConfig {
        work_dir: dir.path().join("builds"),
        containers_conf: Some(containers_conf()),
        authfile: None,
        program: "podman".into(),
        retry: RetryPolicy::default(),
        registry: kato_build::Resolver::new(kato_build::ResolverConfig::default()),
    })
}

fn source(repo: &GitRepo, git_ref: Option<&str>) -> DockerfileSource {
    DockerfileSource {
        repo: repo.url(),
        git_ref: git_ref.map(str::to_owned),
        path: "Dockerfile".into(),
        context: None,
        build_args: Default::default(),
    }
}

async fn build(source: DockerfileSource, target: String, cancel: CancellationToken) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let req = BuildRequest {
        source,
        target,
        git_env: vec![],
        credentials: vec![],
        ssh_keys: vec![],
        allow_local_repos: true,
    };
    let outcome = tokio::time::timeout(
        Duration::from_secs(300),
        builder(&dir).build(&req, &BuildLog::new(tx), &cancel),
    )
    .await
    .expect("the build ends");
    let mut log = Vec::new();
    while let Ok(l) = rx.try_recv() {
        log.push(l);
    }
    Run { outcome, log }
}

fn repo_with_versions() -> (GitRepo, String, String) {
    let repo = GitRepo::new();
    repo.write(
        "Dockerfile",
        &format!(
            "FROM {}\nRUN echo built-from-main > /which\nCMD [\"cat\", \"/which\"]\n",
            base_image()
        ),
    );
    let first = repo.commit("first");
    repo.tag("v1");
    repo.branch("feature");
    repo.write(
        "Dockerfile",
        &format!("FROM {}\nRUN echo built-from-feature > /which\n", base_image()),
    );
    let feature = repo.commit("feature");
    repo.checkout("main");
    repo.write("README", "more\n");
    repo.commit("second");
    (repo, first, feature)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_branch_is_built_pushed_and_pinned_with_its_provenance() {
    let registry = TestRegistry::start().await;
    let (repo, _, feature) = repo_with_versions();
    let target = format!("{}/team/demo:v1", registry.host());
    let run = build(source(&repo, Some("feature")), target, CancellationToken::new()).await;
    let built = run.outcome.unwrap_or_else(|e| panic!("{e}\n{}", run.log.join("\n")));
    assert_eq!(built.commit, feature);
    assert_eq!(built.dockerfile, "Dockerfile");
    assert_eq!(built.base_image.as_deref(), Some(base_image()));
    // The engine's digests of the base (one per manifest format it was stored or pushed in).
    let inspected = std::process::Command::new("podman")
        .env("CONTAINERS_CONF", containers_conf())
        .args([
            "image",
            "inspect",
            "--format",
            "{{.Digest}} {{range .RepoDigests}}{{.}} {{end}}",
            base_image(),
        ])
        .output()
        .unwrap();
    let known = String::from_utf8_lossy(&inspected.stdout).into_owned();
    let base_digest = built.base_image_digest.clone().expect("the base's digest is recorded");
    assert!(base_digest.starts_with("sha256:"), "{base_digest}");
    assert!(
        known
            .split_whitespace()
            .any(|d| d == base_digest || d.ends_with(&format!("@{base_digest}"))),
        "{base_digest} is not a digest of the base: {known}"
    );
    // Read from what the builder recorded in the pushed manifest, not asked of the engine after.
    let annotations = kato_build::Resolver::new(kato_build::ResolverConfig::default())
        .annotations(&built.reference.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(
        annotations.get("org.opencontainers.image.base.digest"),
        Some(&base_digest)
    );
    assert_eq!(
        built.reference,
        format!("{}/team/demo@{}", registry.host(), built.digest)
    );
    assert_eq!(
        registry.registry_digest("team/demo", "v1").await.as_deref(),
        Some(built.digest.as_str()),
        "the registry holds what was pinned"
    );
    assert!(
        run.log.iter().any(|l| l.contains("built-from-feature")),
        "{:?}",
        run.log
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_commits_and_the_default_branch_resolve() {
    let registry = TestRegistry::start().await;
    let (repo, first, _) = repo_with_versions();
    let head = repo.git(&["rev-parse", "main"]);
    for (git_ref, want) in [(Some("v1"), &first), (Some(first.as_str()), &first), (None, &head)] {
        let target = format!("{}/team/refs:x", registry.host());
        let run = build(source(&repo, git_ref), target, CancellationToken::new()).await;
        let built = run.outcome.unwrap_or_else(|e| panic!("{git_ref:?}: {e}"));
        assert_eq!(&built.commit, want, "{git_ref:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_failure_says_what_went_wrong() {
    let registry = TestRegistry::start().await;
    let (repo, _, _) = repo_with_versions();
    let target = || format!("{}/team/fail:v1", registry.host());

    let run = build(
        source(&repo, Some("no-such-branch")),
        target(),
        CancellationToken::new(),
    )
    .await;
    assert!(
        matches!(&run.outcome, Err(BuildError::RefNotFound { git_ref, .. }) if git_ref == "no-such-branch"),
        "{:?}",
        run.outcome
    );

    let mut missing = source(&repo, None);
    missing.path = "build/Dockerfile".into();
    let run = build(missing, target(), CancellationToken::new()).await;
    let err = run.outcome.unwrap_err();
    assert!(matches!(err, BuildError::NoDockerfile { .. }), "{err}");
    assert!(err.to_string().contains("build/Dockerfile"), "{err}");

    let mut gone = source(&repo, None);
    gone.repo = format!("file://{}/nothing-here", repo.path().display());
    let run = build(gone, target(), CancellationToken::new()).await;
    assert!(
        matches!(run.outcome, Err(BuildError::RepoUnreachable { .. })),
        "{:?}",
        run.outcome
    );

    let failing = GitRepo::new();
    failing.write(
        "Dockerfile",
        &format!(
            "FROM {}\nRUN echo about-to-fail\nRUN echo broken-step && false\n",
            base_image()
        ),
    );
    failing.commit("broken");
    let run = build(source(&failing, None), target(), CancellationToken::new()).await;
    let err = run.outcome.unwrap_err();
    let BuildError::StepFailed { step, last_lines } = &err else {
        panic!("{err}")
    };
    assert_eq!(step, "RUN echo broken-step && false");
    assert!(last_lines.iter().any(|l| l.contains("broken-step")), "{last_lines:?}");
    assert!(
        err.to_string().contains("build step failed: RUN echo broken-step"),
        "{err}"
    );
    assert!(
        !run.log.iter().any(|l| l.contains("retrying in")),
        "a failed step is not retried: {:?}",
        run.log
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_the_registry_refuses_fails_as_a_push() {
    let registry = TestRegistry::start_with_auth("builder", "pw-not-given").await;
    let (repo, _, _) = repo_with_versions();
    let target = format!("{}/team/denied:v1", registry.host());
    let run = build(source(&repo, None), target, CancellationToken::new()).await;
    assert!(
        matches!(run.outcome, Err(BuildError::PushFailed { .. })),
        "{:?}",
        run.outcome
    );
    assert!(
        !run.log.iter().any(|l| l.contains("retrying in")),
        "a refused push is not retried: {:?}",
        run.log
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_to_a_registry_answering_503_is_retried_until_it_recovers() {
    let registry = TestRegistry::start().await;
    let proxy = FlakyRegistry::failing(registry.host(), 503).await;
    let (repo, _, _) = repo_with_versions();
    let dir = tempfile::tempdir().unwrap();
    let b = builder(&dir);
    let req = BuildRequest {
        source: source(&repo, None),
        target: format!("{}/team/flaky:v1", proxy.host()),
        git_env: vec![],
        credentials: vec![],
        ssh_keys: vec![],
        allow_local_repos: true,
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(async move { b.build(&req, &BuildLog::new(tx), &cancel).await });
    // The registry comes back once Kato said it will try again (podman's own retries say
    // "retrying in" too, but never start with the registry).
    let kato_retry = format!("registry `{}` unreachable (", proxy.host());
    let mut log = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while let Some(line) = tokio::time::timeout_at(deadline, rx.recv())
        .await
        .expect("the build goes on")
    {
        if line.starts_with(&kato_retry) {
            proxy.recover();
        }
        log.push(line);
    }
    let built = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the build ends")
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}: {log:#?}"));
    let retry = log.iter().find(|l| l.starts_with(&kato_retry)).unwrap();
    assert!(retry.ends_with("(attempt 2 of 4)"), "{retry}");
    assert_eq!(
        registry.registry_digest("team/flaky", "v1").await.as_deref(),
        Some(built.digest.as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_stops_the_builder_and_its_children() {
    let registry = TestRegistry::start().await;
    let repo = GitRepo::new();
    let marker = format!("kato-cancel-{}", std::process::id());
    repo.write(
        "Dockerfile",
        &format!("FROM {}\nRUN echo {marker} && sleep 300\n", base_image()),
    );
    repo.commit("slow");
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let dir = tempfile::tempdir().unwrap();
    let b = builder(&dir);
    let req = BuildRequest {
        source: source(&repo, None),
        target: format!("{}/team/slow:v1", registry.host()),
        git_env: vec![],
        credentials: vec![],
        ssh_keys: vec![],
        allow_local_repos: true,
    };
    let task = tokio::spawn(async move { b.build(&req, &BuildLog::new(tx), &cancel).await });
    // Cancel once the RUN step is running.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let line = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("the RUN step starts");
        if line.is_some_and(|l| l.trim() == marker) {
            break;
        }
    }
    trigger.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("cancel ends the build promptly")
        .unwrap();
    assert_eq!(outcome, Err(BuildError::Cancelled));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ps = std::process::Command::new("ps").args(["-eo", "args"]).output().unwrap();
        let still = String::from_utf8_lossy(&ps.stdout)
            .lines()
            .any(|l| l.contains("sleep 300") && l.contains(&marker));
        if !still {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the RUN step's process is gone after cancel"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
