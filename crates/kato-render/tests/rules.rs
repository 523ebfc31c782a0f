//! The rendering rules (DESIGN §5), asserted on the objects rather than on YAML text.

mod common;

use std::collections::BTreeMap;

use common::objects::*;
use common::render;
use common::{Fixture, options};
use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kato_render::{SidecarMode, Target};

const SYSTEM_AND_COMPAT: [&str; 11] = [
    "KATO_TEAM",
    "KATO_COMPONENT",
    "KATO_PLUGIN",
    "KATO_PLUGIN_VERSION",
    "KATO_DISCOVERY_URL",
    "KATO_DISCOVERY_TOKEN",
    "TENANT_ID",
    "SERVICE_NAME",
    "PLUGIN_ID",
    "DISCOVER_URL",
    "DISCOVER_URL_NOHOST",
];

#[test]
fn plugin_env_order_override_and_no_duplicates() {
    let f = Fixture::load("several-plugins");
    let r = native(&f);
    let mesh = env(container(pod_spec(&r), "plugin-mesh"));
    let got: Vec<&str> = mesh.iter().map(|(n, _)| n.as_str()).collect();
    let mut want = vec!["LOG_LEVEL", "DB_HOST", "REGION", "FEATURE_X", "BACKUP_AT"];
    want.extend(SYSTEM_AND_COMPAT);
    want.push("MESH_UPSTREAM");
    assert_eq!(got, want, "the plug-in's LOG_LEVEL overrides the app's in place");
    assert_eq!(mesh[0].1, "debug");
    for c in all_containers(pod_spec(&r)) {
        let mut seen = std::collections::BTreeSet::new();
        for (n, _) in env(c) {
            assert!(seen.insert(n.clone()), "{} has {n} twice", c.name);
        }
    }
}

#[test]
fn system_and_compat_vars() {
    let f = Fixture::load("several-plugins");
    let mut opts = options(Target::Kubernetes, SidecarMode::Native);
    opts.discovery_base_url = "https://kato.example.com/".into();
    let r = render(&f.workload(), &opts).unwrap();
    let logs = container(pod_spec(&r), "plugin-logs");
    let expect = [
        ("KATO_TEAM", "shop"),
        ("KATO_COMPONENT", "api"),
        ("KATO_PLUGIN", "logs"),
        ("KATO_PLUGIN_VERSION", "2"),
        (
            "KATO_DISCOVERY_URL",
            "https://kato.example.com/discovery/v1/shop/api/logs",
        ),
        ("KATO_DISCOVERY_TOKEN", "secret:api.plugin-logs/KATO_DISCOVERY_TOKEN"),
        ("TENANT_ID", "shop"),
        ("SERVICE_NAME", "api"),
        ("PLUGIN_ID", "logs"),
        ("DISCOVER_URL", "secret:api.plugin-logs/DISCOVER_URL"),
        ("DISCOVER_URL_NOHOST", "secret:api.plugin-logs/DISCOVER_URL_NOHOST"),
    ];
    for (name, value) in expect {
        assert_eq!(env_value(logs, name), value, "{name}");
    }
    // The compatibility URLs hold the token: they come whole from the Secret.
    let data = secret(&r, "api.plugin-logs").data.clone().unwrap();
    assert_eq!(
        data["DISCOVER_URL"].0,
        b"https://kato.example.com/v1/resources/shop/api/logs?token=tok-logs-0001"
    );
    assert_eq!(
        data["DISCOVER_URL_NOHOST"].0,
        b"/v1/resources/shop/api/logs?token=tok-logs-0001"
    );
}

#[test]
fn app_container_gets_only_its_own_env() {
    let f = Fixture::load("several-plugins");
    let own: Vec<(String, String)> = f
        .component
        .env
        .iter()
        .map(|e| (e.name.to_string(), e.value.clone()))
        .collect();
    for (mode, target) in common::COMBINATIONS {
        let r = rendered(&f, mode, target);
        assert_eq!(env(container(pod_spec(&r), "api")), own, "{mode} {target}");
    }
}

#[test]
fn variables_expand_against_the_plugin_env() {
    let f = Fixture::load("several-plugins");
    let r = native(&f);
    let spec = pod_spec(&r);
    let logs = container(spec, "plugin-logs");
    assert_eq!(env_value(container(spec, "plugin-seed"), "SEED_DIR"), "/data/seed");
    assert_eq!(env_value(container(spec, "plugin-mesh"), "MESH_UPSTREAM"), "db:5432");
    assert_eq!(env_value(logs, "LOG_PREFIX"), "shop/api//data/logs");
    assert_eq!(
        env_value(logs, "REGION"),
        "eu-1-b",
        "a self-reference sees the value it replaces"
    );
    assert_eq!(env_value(logs, "LOG_EXTRA"), "${NOT_SET} $${LOG_DIR} $(LOG_DIR)");
    assert_eq!(
        env_value(logs, "LOG_LEVELS"),
        "error,warn",
        "multi values join with commas"
    );
    assert_eq!(
        env_value(logs, "LOG_ENDPOINT"),
        "secret:api.plugin-logs/LOG_ENDPOINT",
        "a value holding a secret is never plain"
    );
    let logs_data = secret(&r, "api.plugin-logs").data.clone().unwrap();
    assert_eq!(
        logs_data["LOG_ENDPOINT"].0,
        b"https://logs.internal/ingest?token=lt-9f8e7d"
    );
    let migrate = container(spec, "plugin-migrate");
    assert_eq!(env_value(migrate, "DB_URL"), "secret:api.plugin-migrate/DB_URL");
    let data = secret(&r, "api.plugin-migrate").data.clone().unwrap();
    assert_eq!(data["DB_URL"].0, b"postgres://app:s3cret@db:5432/app");
    assert_eq!(
        data["DB_DSN"].0, b"host=db password=s3cret",
        "inside a secret value, secrets expand in full"
    );
}

#[test]
fn every_container_mounts_every_volume() {
    let f = Fixture::load("several-plugins");
    for (mode, target) in common::COMBINATIONS {
        let r = rendered(&f, mode, target);
        let spec = pod_spec(&r);
        let volumes: Vec<(&str, bool)> = spec
            .volumes
            .iter()
            .flatten()
            .map(|v| (v.name.as_str(), v.empty_dir.is_some()))
            .collect();
        assert_eq!(volumes, [("data", true), ("scratch", true)]);
        let cs = all_containers(spec);
        assert_eq!(cs.len(), 6);
        for c in cs {
            let mounts: Vec<(&str, &str)> = c
                .volume_mounts
                .iter()
                .flatten()
                .map(|m| (m.name.as_str(), m.mount_path.as_str()))
                .collect();
            assert_eq!(mounts, [("data", "/data"), ("scratch", "/var/cache/api")], "{}", c.name);
        }
    }
}

fn resources(c: &Container) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let r = c.resources.as_ref().unwrap();
    let text =
        |m: &Option<BTreeMap<String, Quantity>>| m.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect();
    (text(&r.requests), text(&r.limits))
}

#[test]
fn memory_and_cpu() {
    let f = Fixture::load("several-plugins");
    let r = native(&f);
    let spec = pod_spec(&r);
    for (name, memory, cpu) in [
        ("api", "512Mi", Some("500m")),
        ("plugin-mesh", "64Mi", Some("200m")),
        ("plugin-logs", "48Mi", None),
        ("plugin-apm", "96Mi", Some("100m")),
        ("plugin-seed", "32Mi", None),
    ] {
        let (requests, limits) = resources(container(spec, name));
        assert_eq!(requests, limits, "{name}: request = limit");
        assert_eq!(limits.get("memory").map(String::as_str), Some(memory), "{name}");
        assert_eq!(limits.get("cpu").map(String::as_str), cpu, "{name}");
    }
}

#[test]
fn native_sidecars_are_restartable_init_containers_in_order() {
    let f = Fixture::load("several-plugins");
    let r = native(&f);
    let spec = pod_spec(&r);
    let init = spec.init_containers.as_deref().unwrap();
    assert_eq!(
        names(init),
        [
            "plugin-mesh",
            "plugin-logs",
            "plugin-apm",
            "plugin-seed",
            "plugin-migrate"
        ],
        "net sidecars, other sidecars, then init plug-ins, each in install order"
    );
    assert_eq!(names(&spec.containers), ["api"]);
    for c in &init[..3] {
        assert_eq!(c.restart_policy.as_deref(), Some("Always"), "{}", c.name);
    }
    for c in &init[3..] {
        assert_eq!(c.restart_policy, None, "{}", c.name);
    }
    assert_eq!(
        spec.restart_policy, None,
        "a Deployment keeps the default restart policy"
    );
}

#[test]
fn classic_sidecars_surround_the_app() {
    let f = Fixture::load("several-plugins");
    for target in [Target::Kubernetes, Target::Podman] {
        let r = rendered(&f, SidecarMode::Classic, target);
        let spec = pod_spec(&r);
        assert_eq!(
            names(&spec.containers),
            ["plugin-mesh", "api", "plugin-logs", "plugin-apm"]
        );
        let init = spec.init_containers.as_deref().unwrap();
        assert_eq!(names(init), ["plugin-seed", "plugin-migrate"]);
        assert!(all_containers(spec).iter().all(|c| c.restart_policy.is_none()));
    }
}

#[test]
fn init_plugins_are_privileged_only_when_asked() {
    let f = Fixture::load("several-plugins");
    let r = native(&f);
    let spec = pod_spec(&r);
    let migrate = container(spec, "plugin-migrate").security_context.as_ref().unwrap();
    assert_eq!(migrate.privileged, Some(true));
    for c in all_containers(spec).iter().filter(|c| c.name != "plugin-migrate") {
        assert!(c.security_context.is_none(), "{}", c.name);
    }
}

#[test]
fn inbound_net_plugin_takes_over_the_service_ports() {
    let mut f = Fixture::load("several-plugins");
    let r = native(&f);
    let svc = service(&r).unwrap().spec.as_ref().unwrap();
    let ports: Vec<(Option<&str>, i32, Option<&IntOrString>)> = svc
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.as_deref(), p.port, p.target_port.as_ref()))
        .collect();
    assert_eq!(
        ports,
        [
            (Some("http-8080"), 8080, Some(&IntOrString::Int(65301))),
            (Some("tcp-9000"), 9000, Some(&IntOrString::Int(65302))),
        ]
    );
    let mesh_ports: Vec<i32> = container(pod_spec(&r), "plugin-mesh")
        .ports
        .iter()
        .flatten()
        .map(|p| p.container_port)
        .collect();
    assert_eq!(mesh_ports, [65301, 65302]);
    let app_ports: Vec<i32> = container(pod_spec(&r), "api")
        .ports
        .iter()
        .flatten()
        .map(|p| p.container_port)
        .collect();
    assert_eq!(app_ports, [8080, 9000]);

    let mesh = f
        .plugins
        .iter_mut()
        .find(|p| p.installation.plugin.as_str() == "mesh")
        .unwrap();
    mesh.installation.enabled = false;
    let r = native(&f);
    let targets: Vec<_> = service(&r)
        .unwrap()
        .spec
        .as_ref()
        .unwrap()
        .ports
        .iter()
        .flatten()
        .map(|p| p.target_port.clone())
        .collect();
    assert_eq!(targets, [Some(IntOrString::Int(8080)), Some(IntOrString::Int(9000))]);
}

#[test]
fn service_ports_names_and_protocols() {
    let f = Fixture::load("inout-net");
    let r = native(&f);
    let svc = service(&r).unwrap();
    assert_eq!(svc.metadata.name.as_deref(), Some("web"));
    let ports: Vec<(String, String)> = svc
        .spec
        .as_ref()
        .unwrap()
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone().unwrap(), p.protocol.clone().unwrap()))
        .collect();
    assert_eq!(
        ports,
        [("http-8080".into(), "TCP".into()), ("udp-5353".into(), "UDP".into())]
    );
    let selector = svc.spec.as_ref().unwrap().selector.clone().unwrap();
    assert_eq!(selector.keys().collect::<Vec<_>>(), ["kato/component", "kato/team"]);

    let mut f = Fixture::load("no-plugins");
    assert!(service(&native(&f)).is_none(), "no ports, no Service");
    f.component.ports = serde_yaml::from_str("[{port: 15432, protocol: postgresql}]").unwrap();
    let r = native(&f);
    let port = &service(&r).unwrap().spec.as_ref().unwrap().ports.as_ref().unwrap()[0];
    assert_eq!(
        port.name.as_deref(),
        Some("p-15432"),
        "postgresql-15432 is longer than 15"
    );
}

#[test]
fn disabled_and_unbuilt_installations_render_nothing() {
    let f = Fixture::load("several-plugins");
    let r = native(&f);
    let spec = pod_spec(&r);
    let rendered: Vec<&str> = all_containers(spec).iter().map(|c| c.name.as_str()).collect();
    for absent in ["plugin-old-agent", "plugin-tracer"] {
        assert!(!rendered.contains(&absent), "{absent}");
    }
    assert_eq!(rendered.len(), 6, "the five running plug-ins and the app stay");
    let secret_names: Vec<&str> = secrets(&r).iter().filter_map(|s| s.metadata.name.as_deref()).collect();
    assert_eq!(
        secret_names,
        [
            "api.plugin-apm",
            "api.plugin-logs",
            "api.plugin-mesh",
            "api.plugin-migrate",
            "api.plugin-seed"
        ],
        "one Secret per running plug-in, sorted by name"
    );
    let annotations = deployment(&r).metadata.annotations.clone().unwrap();
    assert!(
        annotations
            .keys()
            .all(|k| !k.ends_with("/old-agent") && !k.ends_with("/tracer"))
    );
}

#[test]
fn labels_everywhere_and_annotations_on_the_workload_only() {
    let f = Fixture::load("several-plugins");
    let want: BTreeMap<String, String> = [
        ("app.kubernetes.io/managed-by", "kato"),
        ("app.kubernetes.io/name", "api"),
        ("kato/component", "api"),
        ("kato/team", "shop"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let r = native(&f);
    for o in &r.objects {
        assert_eq!(o.metadata().labels.as_ref(), Some(&want), "{} {}", o.kind(), o.name());
        assert_eq!(o.metadata().namespace.as_deref(), Some("shop"), "{}", o.name());
    }
    let d = deployment(&r);
    let spec = d.spec.as_ref().unwrap();
    let template = spec.template.metadata.as_ref().unwrap();
    assert_eq!(template.labels.as_ref(), Some(&want));
    // Only the Secrets' digests: a revision alone (a discovery change) must not restart pods.
    let digests: Vec<&str> = template
        .annotations
        .as_ref()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        digests,
        [
            "secrets.plugin.kato/apm",
            "secrets.plugin.kato/logs",
            "secrets.plugin.kato/mesh",
            "secrets.plugin.kato/migrate",
            "secrets.plugin.kato/seed"
        ]
    );
    let annotations = d.metadata.annotations.as_ref().unwrap();
    assert_eq!(annotations["version.plugin.kato/mesh"], "4");
    assert_eq!(annotations["revision.plugin.kato/mesh"], "5");
    assert_eq!(annotations.len(), 10);
    assert_eq!(spec.replicas, Some(3));
    let selector = spec.selector.match_labels.as_ref().unwrap();
    assert_eq!(selector.len(), 2);
    assert!(selector.iter().all(|(k, v)| want[k] == *v));
}

#[test]
fn podman_gets_a_pod_without_namespace() {
    let f = Fixture::load("several-plugins");
    let r = rendered(&f, SidecarMode::Native, Target::Podman);
    let p = pod(&r);
    assert_eq!(
        p.metadata.name.as_deref(),
        Some(kato_render::names::podman_pod_name("shop", "api").as_str())
    );
    assert_eq!(p.spec.as_ref().unwrap().restart_policy.as_deref(), Some("OnFailure"));
    assert!(p.metadata.annotations.as_ref().is_some_and(|a| a.len() == 10));
    assert!(r.objects.iter().all(|o| o.metadata().namespace.is_none()));
    assert!(service(&r).is_some(), "podman ignores the Service, but it is rendered");

    let general = Fixture::load("general");
    let r = rendered(&general, SidecarMode::Classic, Target::Podman);
    let spec = pod(&r).spec.as_ref().unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"), "no init containers");
    assert!(spec.init_containers.is_none());
}

#[test]
fn the_log_collector_shares_the_log_volume() {
    let f = Fixture::load("log-collector");
    let r = native(&f);
    let spec = pod_spec(&r);
    let logtail = container(spec, "plugin-logtail");
    assert_eq!(logtail.restart_policy.as_deref(), Some("Always"));
    let mount = &logtail.volume_mounts.as_ref().unwrap()[0];
    assert_eq!(mount.mount_path, "/var/log/nginx");
    assert_eq!(
        container(spec, "nginx").command.as_deref().unwrap(),
        ["/bin/sh", "-c", "nginx -g 'daemon off;'"]
    );
    for (name, value) in [
        ("ALIYUN_LOGTAIL_USER_ID", "1234567890123456"),
        ("ALIYUN_LOGTAIL_USER_DEFINED_ID", "nginx-access-log"),
        (
            "ALIYUN_LOGTAIL_CONFIG",
            "/etc/ilogtail/conf/cn-hangzhou/ilogtail_config.json",
        ),
        ("ALIYUN_LOG_ENV_TAGS", "_pod_name_|_pod_ip_|_node_name_"),
    ] {
        assert_eq!(env_value(logtail, name), value);
    }
}

#[test]
fn ready_checks_become_startup_and_readiness_probes() {
    let f = Fixture::load("ready-probes");
    for mode in [SidecarMode::Native, SidecarMode::Classic] {
        let r = rendered(&f, mode, Target::Kubernetes);
        let spec = pod_spec(&r);
        let mesh = container(spec, "plugin-mesh");
        let startup = mesh.startup_probe.as_ref().expect("a startup probe");
        let readiness = mesh.readiness_probe.as_ref().expect("a readiness probe");
        let argv = vec!["/usr/local/bin/kato-mesh".to_owned(), "ready".to_owned()];
        for p in [startup, readiness] {
            assert_eq!(p.exec.as_ref().unwrap().command.as_ref(), Some(&argv), "{mode}");
            assert_eq!(p.timeout_seconds, Some(1));
        }
        assert_eq!(
            (startup.period_seconds, startup.failure_threshold),
            (Some(1), Some(120))
        );
        assert_eq!(
            (readiness.period_seconds, readiness.failure_threshold),
            (Some(5), Some(3))
        );
        let stats = container(spec, "plugin-stats").startup_probe.as_ref().unwrap();
        let get = stats.http_get.as_ref().unwrap();
        assert_eq!(
            (get.path.as_deref(), &get.port),
            (Some("/ready?full=yes"), &IntOrString::Int(9102))
        );
        let cache = container(spec, "plugin-cache").readiness_probe.as_ref().unwrap();
        assert_eq!(cache.tcp_socket.as_ref().unwrap().port, IntOrString::Int(6379));
        for plain in ["web", "plugin-seed"] {
            let c = container(spec, plain);
            assert!(
                c.startup_probe.is_none() && c.readiness_probe.is_none(),
                "{plain} {mode}"
            );
        }
    }
}

#[test]
fn an_init_plugin_never_gets_a_probe() {
    // The model refuses `ready` on an init plug-in; the renderer does not rely on it.
    let mut f = Fixture::load("ready-probes");
    let seed = f
        .plugins
        .iter_mut()
        .find(|p| p.installation.plugin.as_str() == "seed")
        .unwrap();
    seed.version.spec.ready = Some(serde_json::from_value(serde_json::json!({"tcp": {"port": 80}})).unwrap());
    for mode in [SidecarMode::Native, SidecarMode::Classic] {
        let r = rendered(&f, mode, Target::Kubernetes);
        let seed = container(pod_spec(&r), "plugin-seed");
        assert!(seed.startup_probe.is_none() && seed.readiness_probe.is_none(), "{mode}");
    }
}
