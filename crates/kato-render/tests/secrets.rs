//! The plug-ins' Secrets: what travels in them, redaction, and the digests that roll the pods
//! when they change (DESIGN §5).

mod common;

use common::objects::*;
use common::{Fixture, options, render};
use kato_render::{SidecarMode, Target};
use std::collections::BTreeMap;

#[test]
fn secret_items_travel_in_the_plugin_secret() {
    let f = Fixture::load("several-plugins");
    for (mode, target) in common::COMBINATIONS {
        let r = rendered(&f, mode, target);
        let logs = container(pod_spec(&r), "plugin-logs");
        assert_eq!(env_value(logs, "LOG_TOKEN"), "secret:api.plugin-logs/LOG_TOKEN");
        let data = secret(&r, "api.plugin-logs").data.clone().unwrap();
        let keys: Vec<&str> = data.keys().map(String::as_str).collect();
        assert_eq!(keys, ["KATO_DISCOVERY_TOKEN", "LOG_TOKEN"]);
        assert_eq!(data["LOG_TOKEN"].0, b"lt-9f8e7d");
        assert_eq!(data["KATO_DISCOVERY_TOKEN"].0, b"tok-logs-0001");
        let yaml = r.to_yaml();
        for clear in ["lt-9f8e7d", "tok-logs-0001", "s3cret"] {
            assert!(!yaml.contains(clear), "{clear} appears in clear");
        }
    }
}

#[test]
fn redaction_hides_every_secret_value() {
    let f = Fixture::load("several-plugins");
    let mut opts = options(Target::Kubernetes, SidecarMode::Native);
    opts.redact_secrets = true;
    let r = render(&f.workload(), &opts).unwrap();
    assert_eq!(secrets(&r).len(), 5);
    for s in secrets(&r) {
        for (key, value) in s.data.as_ref().unwrap() {
            assert_eq!(value.0, b"<redacted>", "{key}");
        }
    }
    let plain = native(&f);
    assert_eq!(pod_spec(&r), pod_spec(&plain), "redaction changes only the Secrets");
}

/// The pod template's annotations of the several-plug-ins fixture after `change`.
fn template_after(change: impl FnOnce(&mut common::Fixture)) -> BTreeMap<String, String> {
    let mut f = Fixture::load("several-plugins");
    change(&mut f);
    let r = native(&f);
    let spec = deployment(&r).spec.clone().unwrap();
    spec.template.metadata.unwrap().annotations.unwrap()
}

#[test]
fn a_changed_secret_rolls_the_pods_and_a_new_revision_does_not() {
    let before = template_after(|_| {});
    fn logs(f: &mut common::Fixture) -> &mut common::FixturePlugin {
        let name = "logs".parse().unwrap();
        f.plugins.iter_mut().find(|p| p.installation.plugin == name).unwrap()
    }
    // A rotated token (rotate-token): only that plug-in's digest changes.
    let rotated = template_after(|f| logs(f).token = "tok-logs-0002".into());
    let changed: Vec<&String> = before.keys().filter(|k| before[*k] != rotated[*k]).collect();
    assert_eq!(changed, ["secrets.plugin.kato/logs"]);
    // A changed secret value.
    let value = template_after(|f| {
        let p = logs(f);
        p.installation.values =
            serde_yaml::from_str("{base: {LOG_TOKEN: lt-other, LOG_LEVELS: [error, warn]}}").unwrap();
    });
    assert_ne!(value["secrets.plugin.kato/logs"], before["secrets.plugin.kato/logs"]);
    // A new revision alone (what a discovery-only change makes): the template is unchanged.
    assert_eq!(template_after(|f| logs(f).installation.revision += 1), before);
    // Redacted manifests show what runs.
    let f = Fixture::load("several-plugins");
    let mut opts = options(Target::Kubernetes, SidecarMode::Native);
    opts.redact_secrets = true;
    let redacted = render(&f.workload(), &opts).unwrap();
    let spec = deployment(&redacted).spec.clone().unwrap();
    assert_eq!(spec.template.metadata.unwrap().annotations.unwrap(), before);
}

/// Component `x` with plug-in `y-plugin-z` and component `x-plugin-y` with plug-in `z` live in
/// one namespace: joined with `-plugin-`, both Secrets were `x-plugin-y-plugin-z`, and applying
/// one component overwrote the other's.
#[test]
fn plugin_secrets_of_two_components_of_a_team_never_share_a_name() {
    let named = |component: &str, plugin: &str| {
        let mut f = Fixture::load("general");
        f.component.name = component.parse().unwrap();
        let p = &mut f.plugins[0];
        p.installation.plugin = plugin.parse().unwrap();
        p.version.spec.name = plugin.parse().unwrap();
        f
    };
    let (one, two) = (named("x", "y-plugin-z"), named("x-plugin-y", "z"));
    for (mode, target) in common::COMBINATIONS {
        let (r1, r2) = (rendered(&one, mode, target), rendered(&two, mode, target));
        let name = |r| secrets(r)[0].metadata.name.clone().unwrap();
        assert_ne!(name(&r1), name(&r2), "{mode:?} {target:?}");
        assert_ne!(pod_or_deployment_name(&r1, target), pod_or_deployment_name(&r2, target));
    }
}

fn pod_or_deployment_name(r: &kato_render::Rendered, target: Target) -> String {
    match target {
        Target::Podman => pod(r).metadata.name.clone().unwrap(),
        Target::Kubernetes => deployment(r).metadata.name.clone().unwrap(),
    }
}
