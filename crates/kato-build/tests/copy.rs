//! Copying images between two real registries over the distribution API.

use kato_build::{RegistryCredential, ResolveError, Resolver, ResolverConfig};
use kato_testkit::TestRegistry;

#[tokio::test(flavor = "multi_thread")]
async fn an_image_is_copied_blob_by_blob_and_keeps_its_digest() {
    let (source, platform) = (TestRegistry::start().await, TestRegistry::start().await);
    let pushed = source.push_image("vendor/tool", "1").await;
    let resolver = Resolver::new(ResolverConfig::default());
    let dest = format!("{}/kato/team/tool:v1", platform.host());
    let copied = resolver.copy(&pushed.image, &dest).await.unwrap();
    assert_eq!(copied.pinned.digest, pushed.digest);
    assert_eq!(copied.source.reference, pushed.pinned());
    assert_eq!(
        copied.pinned.reference,
        format!("{}/kato/team/tool@{}", platform.host(), pushed.digest)
    );
    assert_eq!(copied.blobs_pushed, 2, "config and layer");
    assert_eq!(
        platform.registry_digest("kato/team/tool", "v1").await.as_deref(),
        Some(pushed.digest.as_str())
    );
    let again = resolver
        .copy(&pushed.image, &format!("{}/kato/team/tool:v2", platform.host()))
        .await
        .unwrap();
    assert_eq!(again.blobs_pushed, 0, "blobs the platform has are not sent again");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_multi_arch_image_is_copied_with_every_platform() {
    let (source, platform) = (TestRegistry::start().await, TestRegistry::start().await);
    let pushed = source.push_multi_arch("vendor/multi", "1").await;
    let resolver = Resolver::new(ResolverConfig::default());
    let copied = resolver
        .copy(&pushed.image, &format!("{}/team/multi:v1", platform.host()))
        .await
        .unwrap();
    assert_eq!(copied.pinned.digest, pushed.digest);
    assert_eq!(copied.blobs_pushed, 4);
    assert_eq!(
        platform.registry_digest("team/multi", "v1").await.as_deref(),
        Some(pushed.digest.as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_failures_say_which_side_failed() {
    let source = TestRegistry::start().await;
    let platform = TestRegistry::start_with_auth("kato", "platform-secret").await;
    let pushed = source.push_image("vendor/tool", "1").await;
    let dest = format!("{}/team/tool:v1", platform.host());
    let anonymous = Resolver::new(ResolverConfig::default());
    let err = anonymous.copy(&pushed.image, &dest).await.unwrap_err();
    assert!(
        matches!(err, ResolveError::Unauthorized { ref registry, .. } if registry == platform.host()),
        "{err}"
    );

    let with_credentials = Resolver::new(ResolverConfig {
        credentials: vec![RegistryCredential {
            registry: platform.host().to_owned(),
            username: "kato".into(),
            password: "platform-secret".into(),
        }],
        ..ResolverConfig::default()
    });
    let copied = with_credentials.copy(&pushed.image, &dest).await.unwrap();
    assert_eq!(copied.pinned.digest, pushed.digest);

    let missing = source.image("vendor/tool:nope");
    let err = with_credentials.copy(&missing, &dest).await.unwrap_err();
    assert!(matches!(err, ResolveError::NotFound { .. }), "{err}");
}
