//! Retries against a real registry behind a proxy that fails on purpose: 503s and refused
//! connections pass with a retry told in the log; 404 and 401 are never retried.

use std::time::Duration;

use kato_build::{BuildLog, ResolveError, Resolver, ResolverConfig, RetryPolicy};
use kato_model::ImageRef;
use kato_testkit::{FlakyRegistry, TestRegistry};
use tokio::sync::mpsc::UnboundedReceiver;

fn resolver(retry: RetryPolicy) -> Resolver {
    Resolver::new(ResolverConfig {
        retry,
        ..ResolverConfig::default()
    })
}

fn logged() -> (BuildLog, UnboundedReceiver<String>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    (BuildLog::new(tx), rx)
}

fn lines(rx: &mut UnboundedReceiver<String>) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(l) = rx.try_recv() {
        out.push(l);
    }
    out
}

fn via(proxy: &FlakyRegistry, repository_and_tag: &str) -> ImageRef {
    format!("{}/{repository_and_tag}", proxy.host()).parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_answering_503_at_first_is_retried_until_it_answers() {
    let registry = TestRegistry::start().await;
    let pushed = registry.push_image("team/app", "1").await;
    // An attempt asks twice (HEAD, then GET when the answer had no digest): 4 failures are two
    // failed attempts.
    let proxy = FlakyRegistry::fail_first(registry.host(), 503, 4).await;
    let (log, mut rx) = logged();

    let pinned = resolver(RetryPolicy::default())
        .logging_to(log)
        .resolve(&via(&proxy, "team/app:1"))
        .await
        .unwrap();

    assert_eq!(pinned.digest, pushed.digest);
    let retries = lines(&mut rx);
    assert_eq!(retries.len(), 2, "{retries:?}");
    let host = proxy.host();
    assert!(
        retries[0].starts_with(&format!(
            "registry `{host}` unreachable (HTTP 503 service unavailable); retrying in "
        )),
        "{retries:?}"
    );
    assert!(retries[0].ends_with(" ms (attempt 2 of 4)"), "{retries:?}");
    assert!(retries[1].ends_with(" ms (attempt 3 of 4)"), "{retries:?}");
    assert!(proxy.requests() >= 5, "four failed requests, then the answer");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_rides_out_503s_on_either_side() {
    let (source, platform) = (TestRegistry::start().await, TestRegistry::start().await);
    let pushed = source.push_image("vendor/tool", "1").await;
    let flaky_source = FlakyRegistry::fail_first(source.host(), 503, 3).await;
    let flaky_platform = FlakyRegistry::fail_first(platform.host(), 502, 3).await;
    let (log, mut rx) = logged();

    let copied = resolver(RetryPolicy::default())
        .logging_to(log)
        .copy(
            &via(&flaky_source, "vendor/tool:1"),
            &format!("{}/team/tool:v1", flaky_platform.host()),
        )
        .await
        .unwrap();

    assert_eq!(copied.pinned.digest, pushed.digest);
    assert_eq!(
        platform.registry_digest("team/tool", "v1").await.as_deref(),
        Some(pushed.digest.as_str())
    );
    let retries = lines(&mut rx);
    assert_eq!(retries.len(), 6, "three per side: {retries:?}");
    assert!(retries.iter().any(|l| l.contains(flaky_source.host())), "{retries:?}");
    assert!(retries.iter().any(|l| l.contains(flaky_platform.host())), "{retries:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn not_found_and_unauthorized_are_never_retried() {
    let registry = TestRegistry::start().await;
    for (status, expected) in [(404, "image_not_found"), (401, "registry_unauthorized")] {
        // What one attempt costs, counted with retries off...
        let once = FlakyRegistry::failing(registry.host(), status).await;
        let err = resolver(RetryPolicy::none())
            .resolve(&via(&once, "team/app:1"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), expected, "{err}");
        // ...is all it costs with retries on.
        let proxy = FlakyRegistry::failing(registry.host(), status).await;
        let (log, mut rx) = logged();
        let err = resolver(RetryPolicy::default())
            .logging_to(log)
            .resolve(&via(&proxy, "team/app:1"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), expected, "{err}");
        assert_eq!(proxy.requests(), once.requests(), "HTTP {status} is not retried");
        assert_eq!(lines(&mut rx), Vec::<String>::new());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_are_bounded() {
    let registry = TestRegistry::start().await;
    let proxy = FlakyRegistry::failing(registry.host(), 503).await;
    let policy = RetryPolicy {
        attempts: 3,
        first_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
    };
    let (log, mut rx) = logged();
    let err = resolver(policy)
        .logging_to(log)
        .resolve(&via(&proxy, "team/app:1"))
        .await
        .unwrap_err();
    assert!(matches!(err, ResolveError::Registry { .. }), "{err}");
    assert!(err.to_string().contains("HTTP 503"), "{err}");
    assert_eq!(lines(&mut rx).len(), 2, "3 attempts, 2 retries");
    assert!(proxy.requests() >= 3);
}
