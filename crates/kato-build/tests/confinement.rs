//! A build reads only its own checkout: a symlink committed to the repo that leads out of it,
//! as the context or as the Dockerfile, fails the build with the symlink named, and nothing
//! from outside reaches the builder or the registry.

use std::os::unix::fs::symlink;
use std::time::Duration;

use kato_build::{BuildError, BuildLog, BuildRequest, Builder, BuilderConfig, CancellationToken, RetryPolicy};
use kato_model::plugin::DockerfileSource;
use kato_testkit::{GitRepo, TestRegistry, base_image, containers_conf};
use tokio::sync::mpsc;

async fn build(source: DockerfileSource, target: String) -> (Result<kato_build::Built, BuildError>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let builder = Builder::new(BuilderConfig {
        work_dir: dir.path().join("builds"),
        containers_conf: Some(containers_conf()),
        authfile: None,
        program: "podman".into(),
        retry: RetryPolicy::default(),
        registry: kato_build::Resolver::new(kato_build::ResolverConfig::default()),
    });
    let (tx, mut rx) = mpsc::unbounded_channel();
    let req = BuildRequest {
        source,
        target,
        git_env: vec![],
        credentials: vec![],
        ssh_keys: vec![],
        allow_local_repos: true,
    };
    let cancel = CancellationToken::new();
    let outcome = tokio::time::timeout(
        Duration::from_secs(300),
        builder.build(&req, &BuildLog::new(tx), &cancel),
    )
    .await
    .expect("the build ends");
    let mut log = Vec::new();
    while let Ok(l) = rx.try_recv() {
        log.push(l);
    }
    (outcome, log)
}

fn source(repo: &GitRepo, path: &str, context: Option<&str>) -> DockerfileSource {
    DockerfileSource {
        repo: repo.url(),
        git_ref: None,
        path: path.into(),
        context: context.map(str::to_owned),
        build_args: Default::default(),
    }
}

/// A directory outside any repo holding a file the build must never see.
fn outside(marker: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("kato-outside-").tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), format!("{marker}\n")).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn a_context_symlinked_to_the_hosts_root_fails_the_build_naming_the_symlink() {
    let registry = TestRegistry::start().await;
    let marker = format!("kato-host-secret-{}", std::process::id());
    let secret = outside(&marker);
    // From `/` as the context, this path is the host's secret file.
    let from_root = secret.path().join("admin.token");
    let from_root = from_root.strip_prefix("/").unwrap().display().to_string();
    let repo = GitRepo::new();
    repo.write(
        "Dockerfile",
        &format!("FROM {}\nCOPY {from_root} /stolen\nRUN cat /stolen\n", base_image()),
    );
    symlink("/", repo.path().join("ctx")).unwrap();
    repo.commit("context out of the repo");
    let (outcome, log) = build(
        source(&repo, "Dockerfile", Some("ctx")),
        format!("{}/team/escape:v1", registry.host()),
    )
    .await;
    let err = outcome.expect_err("the build must not run with the host's root as its context");
    let BuildError::OutsideRepo {
        field, symlink, target, ..
    } = &err
    else {
        panic!("{err}\n{}", log.join("\n"))
    };
    assert_eq!(
        (field.as_str(), symlink.as_str(), target.as_str()),
        ("source.dockerfile.context", "ctx", "/")
    );
    let message = err.to_string();
    assert!(
        message.contains("`ctx` in the repo is a symlink to `/`") && message.contains("leads outside the repo"),
        "{message}"
    );
    assert!(!log.iter().any(|l| l.contains(&marker)), "{log:?}");
    assert_eq!(
        registry.registry_digest("team/escape", "v1").await,
        None,
        "no image was pushed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dockerfile_symlinked_out_of_the_repo_is_never_read() {
    let registry = TestRegistry::start().await;
    let marker = format!("kato-outside-dockerfile-{}", std::process::id());
    let secret = outside(&marker);
    // Were it read, this "Dockerfile" outside the repo would build, and print the marker.
    let passwd = secret.path().join("passwd");
    std::fs::write(
        &passwd,
        format!(
            "FROM {}\nRUN echo {marker}\n# root:x:0:0:{marker}:/root:/bin/sh\n",
            base_image()
        ),
    )
    .unwrap();
    let repo = GitRepo::new();
    symlink(&passwd, repo.path().join("Dockerfile")).unwrap();
    repo.write("docker/README", "the real build files would be here\n");
    symlink("../Dockerfile", repo.path().join("docker/Dockerfile")).unwrap();
    repo.commit("dockerfile out of the repo");
    for path in ["Dockerfile", "docker/Dockerfile"] {
        let (outcome, log) = build(source(&repo, path, None), format!("{}/team/passwd:v1", registry.host())).await;
        let err = outcome.expect_err("a Dockerfile outside the repo must not be built");
        let BuildError::OutsideRepo { field, symlink, .. } = &err else {
            panic!("{path}: {err}\n{}", log.join("\n"))
        };
        assert_eq!(field, "source.dockerfile.path");
        assert_eq!(symlink, path, "the first symlink on the way out is named: {err}");
        assert!(err.to_string().contains(&passwd.display().to_string()), "{err}");
        assert!(!log.iter().any(|l| l.contains(&marker)), "{path}: {log:?}");
        assert!(!err.to_string().contains(&marker), "{err}");
    }
    assert_eq!(registry.registry_digest("team/passwd", "v1").await, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn symlinks_that_stay_inside_the_repo_still_build() {
    let registry = TestRegistry::start().await;
    let repo = GitRepo::new();
    repo.write(
        "build/Dockerfile",
        &format!("FROM {}\nCOPY hello /hello\nRUN cat /hello\n", base_image()),
    );
    // Unique per run: a cached RUN step would print nothing.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let marker = format!("hello-through-a-symlink-{nanos}");
    repo.write("build/hello", &format!("{marker}\n"));
    symlink("build", repo.path().join("ctx")).unwrap();
    symlink("build/Dockerfile", repo.path().join("Dockerfile")).unwrap();
    repo.commit("symlinks inside");
    let (outcome, log) = build(
        source(&repo, "Dockerfile", Some("ctx")),
        format!("{}/team/inside:v1", registry.host()),
    )
    .await;
    outcome.unwrap_or_else(|e| panic!("{e}\n{}", log.join("\n")));
    assert!(log.iter().any(|l| l.contains(&marker)), "{log:?}");
}
