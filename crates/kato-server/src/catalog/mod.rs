//! The default plug-in catalog (DESIGN §12): what `POST /teams/{team}/plugins/defaults` gives a
//! team. Each entry is a `kind: Plugin` document embedded in the binary, read with the code
//! `kato apply` uses, its Dockerfile source pointed at the operator's defaults repo
//! (`kato serve --defaults-repo`); each version is built by the ordinary build queue.

use kato_model::{PluginKind, PluginSpec, TeamName, VersionStatus};
use kato_store::VersionRecord;
use serde::Serialize;
use serde_json::Value;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::ops::{queue_build, require_team};
use crate::state::AppState;

/// Where the catalog's Dockerfiles are: a git URL or a directory on the server, at `git_ref`
/// (the repo's default branch when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultsRepo {
    pub repo: String,
    pub git_ref: Option<String>,
}

/// The catalog, in the order it is installed: where each definition comes from, and its text.
/// Adding a plug-in is one more entry.
const DEFINITIONS: &[(&str, &str)] = &[
    ("catalog/inbound-net.yaml", include_str!("inbound-net.yaml")),
    ("catalog/outbound-net.yaml", include_str!("outbound-net.yaml")),
    ("catalog/inout-net.yaml", include_str!("inout-net.yaml")),
    ("catalog/perf-analysis.yaml", include_str!("perf-analysis.yaml")),
    // The docs' log collector, exactly as its example defines it.
    (
        "examples/log-collector/plugin.yaml",
        include_str!("../../../../examples/log-collector/plugin.yaml"),
    ),
];

/// The answer when the server has no defaults repo.
pub const NO_DEFAULTS_REPO: &str = "this server has no repo to build the default plug-ins from: start `kato serve` with \
     --defaults-repo <git URL or directory> [--defaults-ref <ref>] (KATO_DEFAULTS_REPO, KATO_DEFAULTS_REF). \
     `scripts/defaults` stages one for a machine without network and prints the flags (`scripts/serve` passes \
     them); with network, give this project's own git repository (docs/defaults.md)";

/// The catalog's plug-ins, their sources pointed at `repo`.
pub fn definitions(team: &TeamName, repo: &DefaultsRepo) -> ApiResult<Vec<PluginSpec>> {
    DEFINITIONS
        .iter()
        .map(|(origin, text)| {
            let broken = |why: String| ApiError::Internal(format!("default plug-in {origin}: {why}"));
            let mut doc: Value = serde_yaml::from_str(text).map_err(|e| broken(e.to_string()))?;
            let dockerfile = doc
                .pointer_mut("/spec/source/dockerfile")
                .and_then(Value::as_object_mut)
                .ok_or_else(|| broken("has no spec.source.dockerfile".into()))?;
            dockerfile.insert("repo".into(), repo.repo.clone().into());
            match &repo.git_ref {
                Some(r) => dockerfile.insert("ref".into(), r.clone().into()),
                None => dockerfile.remove("ref"),
            };
            crate::apply::plugin_document(team, &doc).map_err(|e| broken(e.to_string()))
        })
        .collect()
}

/// One plug-in of the catalog, as the team has it after the call.
#[derive(Debug, Serialize)]
pub struct Installed {
    pub name: String,
    pub kind: PluginKind,
    /// `created` by this call, or `kept` as the team had it.
    pub state: &'static str,
    /// The version that counts: the newest queued, building or succeeded one (this call's, when
    /// it queued one), else the newest; none when the plug-in has no version.
    pub version: Option<VersionBrief>,
}

#[derive(Debug, Serialize)]
pub struct VersionBrief {
    pub number: u32,
    pub status: VersionStatus,
}

impl From<&VersionRecord> for VersionBrief {
    fn from(v: &VersionRecord) -> Self {
        Self {
            number: v.version.number,
            status: v.version.status,
        }
    }
}

fn live(status: VersionStatus) -> bool {
    matches!(
        status,
        VersionStatus::Queued | VersionStatus::Building | VersionStatus::Succeeded
    )
}

/// Creates the catalog's plug-ins the team lacks and queues a build of each that has no live
/// version, in one transaction. A plug-in the team has under a catalog name is kept as it is; one
/// that still is the catalog's definition gets a new build when its versions all failed.
pub async fn install(state: &AppState, who: &Caller, team: &TeamName) -> ApiResult<Vec<Installed>> {
    let repo = state
        .builds
        .settings
        .defaults
        .as_ref()
        .ok_or_else(|| ApiError::Conflict(NO_DEFAULTS_REPO.into()))?;
    let specs = definitions(team, repo)?;
    let author = who.author();
    let mut tx = state.begin().await?;
    require_team(&mut tx, team).await?;
    let mut out = Vec::new();
    let mut queued = false;
    for spec in &specs {
        let (word, ours) = match tx.get_plugin(team, &spec.name).await? {
            None => {
                tx.insert_plugin(team, spec).await?;
                ("created", true)
            }
            Some(existing) => ("kept", existing.spec == *spec),
        };
        let versions = tx.list_versions(team, &spec.name).await?;
        let version = match versions.iter().rev().find(|v| live(v.version.status)) {
            Some(v) => Some(v.into()),
            None if ours => {
                queued = true;
                Some((&queue_build(&mut tx, state, team, spec, &author).await?).into())
            }
            None => versions.last().map(Into::into),
        };
        out.push(Installed {
            name: spec.name.to_string(),
            kind: spec.kind,
            state: word,
            version,
        });
    }
    state.commit(tx).await?;
    if queued {
        state.builds.wake();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use kato_model::{Injection, ItemType, Meta, Protocol, Ready, Source};

    use super::*;

    fn catalog() -> Vec<PluginSpec> {
        let repo = DefaultsRepo {
            repo: "https://git.example/kato.git".into(),
            git_ref: Some("v1".into()),
        };
        definitions(&"demo".parse().unwrap(), &repo).expect("the definitions are valid")
    }

    fn find<'a>(specs: &'a [PluginSpec], name: &str) -> &'a PluginSpec {
        specs.iter().find(|s| s.name.as_str() == name).unwrap()
    }

    /// (name, default, protocols, type) of each item of `spec`'s group `group`.
    fn items(spec: &PluginSpec, group: &str) -> Vec<(String, String, Vec<Protocol>, ItemType)> {
        let g = spec.config_groups.iter().find(|g| g.name == group).unwrap();
        assert_eq!(g.injection, Injection::Discovery, "{group}");
        g.items
            .iter()
            .map(|i| {
                let default = serde_json::to_value(&i.default).unwrap();
                let default = default.as_str().unwrap_or_default().to_owned();
                (i.name.to_string(), default, i.protocols.clone(), i.item_type)
            })
            .collect()
    }

    #[test]
    fn every_definition_passes_the_models_validation_and_builds_from_the_defaults_repo() {
        let specs = catalog();
        let names: Vec<_> = specs.iter().map(|s| (s.name.as_str(), s.kind.as_str())).collect();
        assert_eq!(
            names,
            [
                ("inbound-net", "inbound-net"),
                ("outbound-net", "outbound-net"),
                ("inout-net", "inout-net"),
                ("perf-analysis", "perf-analysis"),
                ("logtail", "general")
            ]
        );
        for spec in &specs {
            let mut again = spec.clone();
            again.validate().unwrap();
            assert_eq!(&again, spec, "already normalised");
            assert_eq!(spec.memory_mib, 64, "{}", spec.name);
            let Source::Dockerfile(d) = &spec.source else {
                panic!("{} builds from a Dockerfile", spec.name)
            };
            assert_eq!(d.repo, "https://git.example/kato.git");
            assert_eq!(d.git_ref.as_deref(), Some("v1"));
            let path = match spec.kind {
                PluginKind::General => "examples/log-collector/Dockerfile",
                PluginKind::PerfAnalysis => "crates/kato-perf/Dockerfile",
                _ => "crates/kato-mesh/Dockerfile",
            };
            assert_eq!(d.path, path);
            // The proxies hold back the app until they listen (`kato-mesh ready`).
            let ready = spec
                .kind
                .is_net()
                .then(|| Ready::Exec(vec!["/usr/local/bin/kato-mesh".into(), "ready".into()]));
            assert_eq!(spec.ready, ready, "{}", spec.name);
            for g in &spec.config_groups {
                for i in &g.items {
                    assert!(!i.description.is_empty(), "{}: {} has a description", spec.name, i.name);
                }
            }
        }
    }

    #[test]
    fn without_a_ref_the_repos_default_branch_is_built() {
        let repo = DefaultsRepo {
            repo: "/srv/defaults".into(),
            git_ref: None,
        };
        for spec in definitions(&"demo".parse().unwrap(), &repo).unwrap() {
            let Source::Dockerfile(d) = &spec.source else { panic!() };
            assert_eq!((d.repo.as_str(), d.git_ref.as_deref()), ("/srv/defaults", None));
        }
    }

    #[test]
    fn logtail_is_the_log_collector_example_exactly() {
        let example: Value =
            serde_yaml::from_str(include_str!("../../../../examples/log-collector/plugin.yaml")).unwrap();
        let mut example = crate::apply::plugin_document(&"demo".parse().unwrap(), &example).unwrap();
        let ours = find(&catalog(), "logtail").clone();
        let Source::Dockerfile(d) = &mut example.source else {
            panic!()
        };
        d.repo = "https://git.example/kato.git".into();
        d.git_ref = Some("v1".into());
        assert_eq!(ours, example);
    }

    #[test]
    fn the_proxy_groups_carry_the_contracts_names_and_defaults() {
        let specs = catalog();
        let http = vec![Protocol::Http];
        let all = Vec::new();
        let general = vec![
            (
                "METRICS_PORT".to_owned(),
                "65533".to_owned(),
                all.clone(),
                ItemType::String,
            ),
            ("LOG_LEVEL".into(), "info".into(), all.clone(), ItemType::Single),
            ("DRAIN_SECONDS".into(), "5".into(), all.clone(), ItemType::String),
        ];
        let inbound = [
            ("OPEN_LIMIT", "NO", &http, ItemType::Single),
            ("LIMIT_DOMAIN", "limit.common", &http, ItemType::String),
            ("LIMIT_RPS", "100", &http, ItemType::String),
            ("MaxConnections", "10240", &all, ItemType::String),
            ("MaxPendingRequests", "1024", &http, ItemType::String),
            ("MaxRequests", "1024", &http, ItemType::String),
            ("MaxRequestsPerConnection", "", &http, ItemType::String),
            ("MaxActiveRetries", "5", &http, ItemType::String),
            ("ConnectionTimeout", "250", &all, ItemType::String),
            ("RequestTimeout", "15", &http, ItemType::String),
            ("TCPIdleTimeout", "7200", &all, ItemType::String),
        ]
        .map(|(n, d, p, t)| (n.to_owned(), d.to_owned(), p.clone(), t))
        .to_vec();
        let grpc = vec![Protocol::Grpc];
        let outbound = |max: &str| {
            [
                ("Domains", "*", &http, ItemType::String),
                ("Prefix", "/", &http, ItemType::String),
                ("Headers", "", &http, ItemType::String),
                ("Weight", "100", &http, ItemType::String),
                ("MaxConnections", max, &all, ItemType::String),
                ("MaxPendingRequests", "1024", &http, ItemType::String),
                ("MaxRequests", max, &http, ItemType::String),
                ("MaxActiveRetries", "5", &http, ItemType::String),
                ("IntervalMS", "10", &all, ItemType::String),
                ("ConsecutiveErrors", "5", &all, ItemType::String),
                ("BaseEjectionTimeMS", "30000", &all, ItemType::String),
                ("MaxEjectionPercent", "20", &all, ItemType::String),
                ("HealthCheckInterval", "4", &all, ItemType::String),
                ("HealthCheckTimeout", "5", &all, ItemType::String),
                ("PROXY", "YES", &all, ItemType::Single),
                ("GrpcHealthServiceName", "", &grpc, ItemType::String),
                ("ConnectionTimeout", "250", &all, ItemType::String),
                ("RequestTimeout", "15", &http, ItemType::String),
                ("TCPIdleTimeout", "7200", &all, ItemType::String),
            ]
            .map(|(n, d, p, t)| (n.to_owned(), d.to_owned(), p.clone(), t))
            .to_vec()
        };
        let groups = |spec: &PluginSpec| {
            spec.config_groups
                .iter()
                .map(|g| (g.name.clone(), g.meta))
                .collect::<Vec<_>>()
        };

        let inb = find(&specs, "inbound-net");
        assert_eq!(
            groups(inb),
            [("general".into(), Meta::None), ("inbound".into(), Meta::ComponentPort)]
        );
        assert_eq!(items(inb, "general"), general);
        assert_eq!(items(inb, "inbound"), inbound);

        let out = find(&specs, "outbound-net");
        assert_eq!(
            groups(out),
            [
                ("general".into(), Meta::None),
                ("outbound".into(), Meta::DownstreamPort)
            ]
        );
        assert_eq!(items(out, "general"), general);
        assert_eq!(items(out, "outbound"), outbound("10240"));

        let inout = find(&specs, "inout-net");
        assert_eq!(
            groups(inout),
            [
                ("general".into(), Meta::None),
                ("inbound".into(), Meta::ComponentPort),
                ("outbound".into(), Meta::DownstreamPort)
            ]
        );
        assert_eq!(items(inout, "general"), general);
        assert_eq!(items(inout, "inbound"), inbound);
        assert_eq!(items(inout, "outbound"), outbound("1024"));

        for spec in [inb, out, inout] {
            for g in &spec.config_groups {
                for i in &g.items {
                    let options: &[&str] = match i.name.as_str() {
                        "LOG_LEVEL" => &["info", "debug", "warn", "error"],
                        "OPEN_LIMIT" | "PROXY" => &["YES", "NO"],
                        _ => &[],
                    };
                    assert_eq!(i.options, options, "{}: {}", spec.name, i.name);
                    assert_eq!(i.changeable, i.name.as_str() != "PROXY", "{}: {}", spec.name, i.name);
                    assert!(!i.secret);
                }
            }
        }
    }

    #[test]
    fn the_perf_analyser_has_rainbonds_open_per_http_and_mysql_port_and_its_own_port() {
        let specs = catalog();
        let perf = find(&specs, "perf-analysis");
        let groups: Vec<_> = perf.config_groups.iter().map(|g| (g.name.as_str(), g.meta)).collect();
        assert_eq!(groups, [("general", Meta::None), ("perf", Meta::ComponentPort)]);
        let value = |v: &Option<kato_model::ConfigValue>| serde_json::to_value(v).unwrap();
        let port = &perf.config_groups[0].items[0];
        assert_eq!(
            (port.name.as_str(), value(&port.default)),
            ("PERF_PORT", serde_json::json!("65532"))
        );
        let open = &perf.config_groups[1].items[0];
        assert_eq!(open.name.as_str(), "OPEN");
        assert_eq!(open.options, ["YES", "NO"]);
        assert_eq!(value(&open.default), serde_json::json!("YES"));
        let protocols: Vec<String> = open.protocols.iter().map(|p| p.to_string()).collect();
        assert_eq!(protocols, ["http", "mysql"]);
        assert_eq!(perf.ready, None, "nothing waits for it: it is in nobody's path");
    }

    /// The catalog's inbound proxy installed on a component, rendered in this sidecar mode.
    fn render_inbound_proxy(mode: kato_render::SidecarMode) -> k8s_openapi::api::core::v1::PodSpec {
        use kato_model::{ComponentSpec, InstallRequest, Installation, Version, VersionStatus};
        let spec = find(&catalog(), "inbound-net").clone();
        let version = Version {
            number: 1,
            status: VersionStatus::Succeeded,
            spec,
            image: Some(format!(
                "registry.kato.local/demo/inbound-net@sha256:{}",
                "a".repeat(64)
            )),
            error: None,
        };
        let component: ComponentSpec = serde_json::from_value(
            serde_json::json!({"name": "web", "image": "nginx:1.27", "ports": [{"port": 8080, "protocol": "http"}]}),
        )
        .unwrap();
        let installation = Installation::apply_request(
            None,
            &version.spec.name,
            &InstallRequest::default(),
            &version,
            &component,
            &[],
            &[],
        )
        .unwrap();
        let team = "demo".parse().unwrap();
        let workload = kato_render::Workload {
            team: &team,
            component: &component,
            downstream: Vec::new(),
            plugins: vec![kato_render::PluginInstance {
                installation: &installation,
                version: &version,
                discovery_token: "tok",
            }],
        };
        let opts = kato_render::RenderOptions {
            target: kato_render::Target::Kubernetes,
            sidecars: Some(mode),
            discovery_base_url: "http://kato.kato-system:7070".into(),
            redact_secrets: false,
        };
        let rendered = kato_render::render(&workload, &opts).unwrap();
        let Some(kato_render::Object::Deployment(d)) = rendered.objects.last() else {
            panic!("a Deployment comes last")
        };
        d.spec.clone().unwrap().template.spec.unwrap()
    }

    #[test]
    fn the_inbound_proxy_starts_before_the_app_and_only_once_it_is_ready() {
        let argv = vec!["/usr/local/bin/kato-mesh".to_owned(), "ready".to_owned()];

        // Native: a restartable init container, so Kubernetes starts the app container only
        // once the proxy's startup probe has passed.
        let pod = render_inbound_proxy(kato_render::SidecarMode::Native);
        let names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["web"], "the app is the only regular container");
        let inits = pod.init_containers.as_deref().unwrap_or_default();
        let proxy = inits
            .iter()
            .find(|c| c.name == "plugin-inbound-net")
            .expect("an init container");
        assert_eq!(proxy.restart_policy.as_deref(), Some("Always"));
        let startup = proxy.startup_probe.as_ref().expect("a startup probe");
        assert_eq!(startup.exec.as_ref().and_then(|e| e.command.as_ref()), Some(&argv));
        assert_eq!(
            (startup.period_seconds, startup.failure_threshold),
            (Some(1), Some(120))
        );
        assert!(proxy.readiness_probe.is_some());

        // Classic: an ordinary container before the app, with both probes.
        let pod = render_inbound_proxy(kato_render::SidecarMode::Classic);
        let names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["plugin-inbound-net", "web"]);
        assert!(pod.init_containers.is_none());
        let proxy = &pod.containers[0];
        assert_eq!(proxy.restart_policy, None);
        for probe in [&proxy.startup_probe, &proxy.readiness_probe] {
            let probe = probe.as_ref().expect("both probes");
            assert_eq!(probe.exec.as_ref().and_then(|e| e.command.as_ref()), Some(&argv));
        }
        assert_eq!(proxy.readiness_probe.as_ref().unwrap().period_seconds, Some(5));
    }
}
