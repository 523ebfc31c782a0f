//! Resolution against a real local registry (Debian's `docker-registry`): tags, digests, multi-arch
//! indexes, auth, and registries that are missing, closed or silent.

use std::time::{Duration, Instant};

use kato_build::{BuildLog, Pinned, RegistryCredential, ResolveError, Resolver, ResolverConfig, RetryPolicy};
use kato_model::ImageRef;
use kato_testkit::TestRegistry;

fn resolver() -> Resolver {
    Resolver::new(ResolverConfig::default())
}

fn resolver_with(credentials: Vec<RegistryCredential>) -> Resolver {
    Resolver::new(ResolverConfig {
        credentials,
        ..ResolverConfig::default()
    })
}

fn image(text: &str) -> ImageRef {
    text.parse().unwrap()
}

fn credential(registry: &str, username: &str, password: &str) -> RegistryCredential {
    RegistryCredential {
        registry: registry.to_owned(),
        username: username.to_owned(),
        password: password.to_owned(),
    }
}

#[tokio::test]
async fn a_tag_resolves_to_the_digest_the_registry_reports() {
    let reg = TestRegistry::start().await;
    let pushed = reg.push_image("team/app", "1").await;
    let reported = reg
        .registry_digest("team/app", "1")
        .await
        .expect("the pushed tag exists");
    assert_eq!(reported, pushed.digest);

    let pinned = resolver().resolve(&pushed.image).await.unwrap();

    assert_eq!(
        pinned,
        Pinned {
            reference: format!("{}/team/app@{reported}", reg.host()),
            digest: reported,
        }
    );
}

#[tokio::test]
async fn a_moved_tag_resolves_to_its_new_digest() {
    let reg = TestRegistry::start().await;
    let resolver = resolver();
    let first = reg.push_image("team/app", "latest").await;
    assert_eq!(resolver.resolve(&first.image).await.unwrap().digest, first.digest);

    let second = reg.push_image("team/app", "latest").await;

    assert_ne!(first.digest, second.digest);
    assert_eq!(resolver.resolve(&second.image).await.unwrap().digest, second.digest);
}

#[tokio::test]
async fn a_pinned_reference_round_trips() {
    let reg = TestRegistry::start().await;
    let pushed = reg.push_image("team/app", "1").await;
    let resolver = resolver();
    let pinned = resolver.resolve(&pushed.image).await.unwrap();
    assert_eq!(pinned.reference, pushed.pinned());

    let again = resolver.resolve(&image(&pinned.reference)).await.unwrap();
    assert_eq!(again, pinned);
    // A tag written next to the digest is dropped, as `docker` does: the digest decides.
    let both = image(&format!("{}/team/app:1@{}", reg.host(), pinned.digest));
    assert_eq!(resolver.resolve(&both).await.unwrap(), pinned);
}

#[tokio::test]
async fn a_multi_arch_image_pins_its_index() {
    let reg = TestRegistry::start().await;
    let pushed = reg.push_multi_arch("team/multi", "1").await;
    assert_eq!(
        reg.registry_digest("team/multi", "1").await.as_deref(),
        Some(pushed.digest.as_str())
    );

    let pinned = resolver().resolve(&pushed.image).await.unwrap();

    assert_eq!(
        pinned.digest, pushed.digest,
        "the index digest, not one platform's manifest"
    );
    assert_eq!(pinned.reference, pushed.pinned());
}

#[tokio::test]
async fn missing_repository_tag_and_digest_are_not_found() {
    let reg = TestRegistry::start().await;
    let pushed = reg.push_image("team/app", "1").await;
    let resolver = resolver();
    let absent_digest = format!("sha256:{}", "0".repeat(64));
    let cases = [
        // distribution 2.8 answers MANIFEST_UNKNOWN for a missing repository too.
        (format!("{}/team/missing:1", reg.host()), "manifest unknown"),
        (format!("{}/team/app:2", reg.host()), "manifest unknown"),
        (format!("{}/team/app@{absent_digest}", reg.host()), "manifest unknown"),
    ];
    for (text, answered) in cases {
        let err = resolver.resolve(&image(&text)).await.unwrap_err();
        assert_eq!(
            err,
            ResolveError::NotFound {
                image: text.clone(),
                detail: answered.to_owned()
            }
        );
        assert_eq!(
            err.to_string(),
            format!(
                "image `{text}` was not found in its registry: check the repository and tag \
                 (the registry answered `{answered}`)"
            )
        );
    }
    // The image that does exist still resolves with the same resolver.
    assert_eq!(resolver.resolve(&pushed.image).await.unwrap().digest, pushed.digest);
}

#[tokio::test]
async fn a_registry_with_auth_needs_credentials() {
    let reg = TestRegistry::start_with_auth("kato", "right-pass-5f3a").await;
    let pushed = reg.push_image("team/private", "1").await;
    // Credentials for another registry are never sent to this one.
    let elsewhere = resolver_with(vec![credential("127.0.0.1:1", "kato", "right-pass-5f3a")]);

    for resolver in [resolver(), elsewhere] {
        let err = resolver.resolve(&pushed.image).await.unwrap_err();
        assert_eq!(
            err,
            ResolveError::Unauthorized {
                image: pushed.image.to_string(),
                registry: reg.host().to_owned(),
                credentials_given: false,
            }
        );
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("registry `{}` needs credentials", reg.host())),
            "{message}"
        );
    }
}

#[tokio::test]
async fn a_wrong_password_is_refused_and_never_shown() {
    let reg = TestRegistry::start_with_auth("kato", "right-pass-5f3a").await;
    let pushed = reg.push_image("team/private", "1").await;
    let wrong = resolver_with(vec![credential(reg.host(), "kato", "wrong-pass-91c2")]);

    let err = wrong.resolve(&pushed.image).await.unwrap_err();

    assert!(
        matches!(
            err,
            ResolveError::Unauthorized {
                credentials_given: true,
                ..
            }
        ),
        "{err:?}"
    );
    let shown = format!("{err} {err:?}");
    assert!(
        shown.contains(&format!("registry `{}` refused the credentials", reg.host())),
        "{shown}"
    );
    for secret in ["wrong-pass-91c2", "right-pass-5f3a"] {
        assert!(!shown.contains(secret), "a password leaked: {shown}");
    }
}

#[tokio::test]
async fn the_right_credentials_resolve() {
    let reg = TestRegistry::start_with_auth("kato", "right-pass-5f3a").await;
    let pushed = reg.push_image("team/private", "1").await;
    let (user, password) = reg.credentials().unwrap();
    // Written the way `docker login` config files spell registries.
    let resolver = resolver_with(vec![credential(&format!("http://{}/", reg.host()), user, password)]);

    let pinned = resolver.resolve(&pushed.image).await.unwrap();

    assert_eq!(pinned.digest, pushed.digest);
    assert_eq!(reg.registry_digest("team/private", "1").await, Some(pinned.digest));
}

#[tokio::test]
async fn a_closed_port_is_unreachable_after_the_retries() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let registry = format!("127.0.0.1:{port}");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();

    let err = resolver()
        .logging_to(BuildLog::new(tx))
        .resolve(&image(&format!("{registry}/team/app:1")))
        .await
        .unwrap_err();

    assert_eq!(
        err.to_string(),
        format!(
            "registry `{registry}` is unreachable: connection refused: check the registry address and that it is running"
        )
    );
    let mut retries = Vec::new();
    while let Ok(line) = rx.try_recv() {
        retries.push(line);
    }
    assert_eq!(retries.len(), 3, "4 attempts in all: {retries:?}");
    assert!(
        retries[0].starts_with(&format!(
            "registry `{registry}` unreachable (connection refused); retrying in "
        )),
        "{retries:?}"
    );
    assert!(retries[2].ends_with("(attempt 4 of 4)"), "{retries:?}");
}

#[tokio::test]
async fn a_registry_that_never_answers_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registry = listener.local_addr().unwrap().to_string();
    // Accepts every connection and never writes a byte back.
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let timeout = Duration::from_millis(300);
    let resolver = Resolver::new(ResolverConfig {
        timeout,
        retry: RetryPolicy::none(),
        ..ResolverConfig::default()
    });
    let started = Instant::now();

    let err = resolver
        .resolve(&image(&format!("{registry}/team/app:1")))
        .await
        .unwrap_err();

    let took = started.elapsed();
    silent.abort();
    assert!(took >= timeout, "took {took:?}");
    assert_eq!(
        err,
        ResolveError::Timeout {
            registry: registry.clone(),
            after: timeout
        }
    );
    assert!(
        err.to_string()
            .starts_with(&format!("registry `{registry}` did not answer within 300 ms")),
        "{err}"
    );
}
