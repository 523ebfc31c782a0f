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
        assert_eq!(
            keys,
            [
                "DISCOVER_URL",
                "DISCOVER_URL_NOHOST",
                "KATO_DISCOVERY_TOKEN",
                "LOG_ENDPOINT",
                "LOG_TOKEN"
            ]
        );
        assert_eq!(data["LOG_TOKEN"].0, b"lt-9f8e7d");
        assert_eq!(data["KATO_DISCOVERY_TOKEN"].0, b"tok-logs-0001");
        let yaml = r.to_yaml();
        for clear in ["lt-9f8e7d", "tok-logs-0001", "s3cret"] {
            assert!(!yaml.contains(clear), "{clear} appears in clear");
        }
    }
}

/// Every plain env value of every container, of every fixture on every target and mode.
fn plain_values(r: &kato_render::Rendered) -> Vec<(String, String, String)> {
    all_containers(pod_spec(r))
        .into_iter()
        .flat_map(|c| {
            c.env
                .iter()
                .flatten()
                .filter_map(|e| Some((c.name.clone(), e.name.clone(), e.value.clone()?)))
        })
        .collect()
}

/// What the kubelet, or podman's `kube play`, would show in clear: no plain value holds a
/// discovery token or a secret value, whether written in it or reached through `${VAR}` or
/// `$(VAR)`.
#[test]
fn no_plain_value_holds_a_token_or_a_secret() {
    for name in [
        "general",
        "inbound-net",
        "init",
        "inout-net",
        "log-collector",
        "no-plugins",
        "outbound-net",
        "perf-analysis",
        "several-plugins",
    ] {
        let f = Fixture::load(name);
        let mut clear: Vec<String> = f.plugins.iter().map(|p| p.token.clone()).collect();
        clear.extend(["lt-9f8e7d".into(), "s3cret".into()]);
        for (mode, target) in common::COMBINATIONS {
            let r = rendered(&f, mode, target);
            for (container, var, value) in plain_values(&r) {
                for c in &clear {
                    assert!(!value.contains(c.as_str()), "{name} {container} {var}={value}");
                }
                assert!(!value.contains("$(KATO_DISCOVERY_TOKEN)"), "{name} {container} {var}");
            }
        }
    }
}

/// A fixture plug-in `p` on component `web` whose env group holds `items`, with `values`; the
/// component's env is `env`.
fn one_plugin(env: &str, items: &str, values: &str) -> Fixture {
    Fixture::parse(&format!(
        "team: t
component: {{name: web, image: 'nginx:1', env: {env}}}
plugins:
  - token: tok-p
    version:
      number: 1
      status: succeeded
      image: r.local/p@sha256:1111111111111111111111111111111111111111111111111111111111111111
      spec: {{name: p, kind: general, source: {{image: x}}, config_groups: [{{name: g, items: {items}}}]}}
    installation: {{plugin: p, version: 1, enabled: true, memory_mib: 16, revision: 1, values: {{base: {values}}}}}
"
    ))
}

/// `(env as `env` shows it, the Secret's data in clear)` of plug-in `p`.
fn plugin_env_and_secret(f: &Fixture, target: Target) -> (Vec<(String, String)>, BTreeMap<String, String>) {
    let r = rendered(f, SidecarMode::Classic, target);
    let env = env(container(pod_spec(&r), "plugin-p"));
    let data = secret(&r, "web.plugin-p").data.clone().unwrap();
    let data = data
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
        .collect();
    (env, data)
}

/// A `$(VAR)` the kubelet would fill with a secret (written in a plug-in value, in the app's
/// env that the plug-in shares, or inside a secret a `${VAR}` brought in) is resolved by Kato
/// as the kubelet would, into the Secret; plain references stay for the kubelet.
#[test]
fn dependent_references_to_secrets_move_into_the_secret() {
    let f = one_plugin(
        "[{name: KATO_DISCOVERY_TOKEN, value: app-own}, {name: APP_URL, value: 'u?t=$(KATO_DISCOVERY_TOKEN)'}]",
        "[{name: PASS, secret: true}, {name: DSN, default: 'user:$(PASS)@$(HOST) $$(PASS)'},
          {name: HOST, default: db}, {name: EARLY, default: '$(LATE)'}, {name: LATE, secret: true},
          {name: WRAP, default: 'x${ODD}y'}, {name: ODD, secret: true},
          {name: PLAIN, default: '$(HOST) $$(HOST)'}]",
        "{PASS: pw, LATE: late-secret, ODD: 'a$(HOST)$$b'}",
    );
    for target in [Target::Kubernetes, Target::Podman] {
        let (env, data) = plugin_env_and_secret(&f, target);
        let get = |n: &str| env.iter().find(|(k, _)| k == n).unwrap().1.clone();
        // The app's variable, shared with the plug-in, reads the token the plug-in gets.
        assert_eq!(get("APP_URL"), "secret:web.plugin-p/APP_URL");
        assert_eq!(data["APP_URL"], "u?t=tok-p");
        // `$(HOST)` is defined later: the kubelet leaves it, and so does Kato.
        assert_eq!(get("DSN"), "secret:web.plugin-p/DSN");
        assert_eq!(data["DSN"], "user:pw@$(HOST) $(PASS)");
        // A forward reference the kubelet would leave as written copies nothing.
        assert_eq!(get("EARLY"), "$(LATE)");
        // A secret brought in by `${VAR}` is taken as it is, `$` and all.
        assert_eq!(get("WRAP"), "secret:web.plugin-p/WRAP");
        assert_eq!(data["WRAP"], "xa$(HOST)$$by");
        assert_eq!(get("PLAIN"), "$(HOST) $$(HOST)", "plain references are the kubelet's");
        for (_, value) in &env {
            for clear in ["pw", "late-secret", "tok-p"] {
                assert!(!value.contains(clear), "{value}");
            }
        }
    }
    // The app container keeps its own env, where the variable is not a secret.
    let r = rendered(&f, SidecarMode::Classic, Target::Podman);
    assert_eq!(
        env_value(container(pod_spec(&r), "web"), "APP_URL"),
        "u?t=$(KATO_DISCOVERY_TOKEN)"
    );
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
