//! The objects are written straight from their fields; the output must be the serde path's byte
//! for byte, for every fixture and for fields Kato does not set itself.

mod common;

use common::{COMBINATIONS, Fixture, fixture_names, options};
use k8s_openapi::api::core::v1::{Container, PodSpec};
use kato_render::{Object, Rendered, SidecarMode, Target, render, render_yaml};

fn assert_same(r: &Rendered, what: &str) {
    let direct = r.to_yaml();
    let serde = r.to_yaml_through_serde();
    if direct != serde {
        let line = direct.lines().zip(serde.lines()).position(|(a, b)| a != b);
        panic!("{what}: direct and serde output differ at line {line:?}\ndirect:\n{direct}\nserde:\n{serde}");
    }
    let docs: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&direct)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    assert_eq!(serde_json::Value::Array(docs), r.to_json(), "{what}");
}

#[test]
fn every_fixture_writes_the_same_through_both_paths() {
    for name in fixture_names() {
        let f = Fixture::load(&name);
        for (mode, target) in COMBINATIONS {
            let r = render(&f.workload(), &options(target, mode)).unwrap();
            assert_same(&r, &format!("{name} {mode} {target}"));
        }
    }
}

#[test]
fn yaml_straight_from_the_model_is_the_objects_yaml() {
    for name in fixture_names() {
        let f = Fixture::load(&name);
        for (mode, target) in COMBINATIONS {
            for redact_secrets in [false, true] {
                let opts = kato_render::RenderOptions {
                    redact_secrets,
                    ..options(target, mode)
                };
                let objects = render(&f.workload(), &opts).unwrap().to_yaml();
                let direct = render_yaml(&f.workload(), &opts).unwrap();
                let what = format!("{name} {mode} {target} redact={redact_secrets}");
                if direct != objects {
                    let line = direct.lines().zip(objects.lines()).position(|(a, b)| a != b);
                    panic!("{what}: differ at line {line:?}\nfrom the model:\n{direct}\nfrom the objects:\n{objects}");
                }
            }
        }
    }
}

/// Fields Kato never sets, in JSON as a user of the objects would add them.
fn with_json<T: serde::Serialize + serde::de::DeserializeOwned>(value: &T, extra: serde_json::Value) -> T {
    let mut json = serde_json::to_value(value).unwrap();
    let (serde_json::Value::Object(map), serde_json::Value::Object(extra)) = (&mut json, extra) else {
        panic!("objects are JSON maps");
    };
    map.extend(extra);
    serde_json::from_value(json).unwrap()
}

fn add_unhandled_fields(c: &Container) -> Container {
    let mut c = with_json(
        c,
        serde_json::json!({
            "args": ["--verbose", "yes", ""],
            "envFrom": [{"configMapRef": {"name": "shared"}}],
            "imagePullPolicy": "IfNotPresent",
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10},
            "stdin": true,
            "terminationMessagePath": "/dev/termination-log",
            "workingDir": "/srv/app: x",
        }),
    );
    let env = c.env.get_or_insert_with(Vec::new);
    env.push(
        serde_json::from_value(
            serde_json::json!({"name": "FROM_FIELD", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}),
        )
        .unwrap(),
    );
    env.push(serde_json::from_value(serde_json::json!({"name": "ONLY_NAME"})).unwrap());
    if let Some(mount) = c.volume_mounts.as_mut().and_then(|m| m.first_mut()) {
        mount.read_only = Some(true);
        mount.sub_path = Some("data".into());
    }
    let resources = c.resources.get_or_insert_with(Default::default);
    resources.claims = Some(vec![
        serde_json::from_value(serde_json::json!({"name": "gpu"})).unwrap(),
    ]);
    resources.limits = Some(Default::default());
    c
}

fn add_pod_fields(spec: &mut PodSpec) {
    *spec = with_json(
        &*spec,
        serde_json::json!({
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
            "hostNetwork": true,
            "nodeSelector": {"disk": "ssd"},
            "serviceAccountName": "runner",
            "tolerations": [{"key": "dedicated", "operator": "Exists"}],
        }),
    );
    spec.containers = spec.containers.iter().map(add_unhandled_fields).collect();
    if let Some(init) = &mut spec.init_containers {
        *init = init.iter().map(add_unhandled_fields).collect();
    }
    if let Some(env) = spec.containers.first_mut().and_then(|c| c.env.as_mut()) {
        env.clear();
    }
}

fn add_metadata_fields(o: &mut Object) {
    let extra = serde_json::json!({
        "finalizers": ["kato/cleanup"],
        "generateName": "web-",
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": "1-2"}],
        "uid": "0b7e-11",
    });
    let meta = match o {
        Object::Secret(s) => &mut s.metadata,
        Object::Service(s) => &mut s.metadata,
        Object::Deployment(d) => &mut d.metadata,
        Object::Pod(p) => &mut p.metadata,
    };
    *meta = with_json(&*meta, extra);
}

#[test]
fn fields_kato_does_not_set_go_through_serde_in_place() {
    let f = Fixture::load("several-plugins");
    for target in [Target::Kubernetes, Target::Podman] {
        let mut r = render(&f.workload(), &options(target, SidecarMode::Native)).unwrap();
        for o in &mut r.objects {
            add_metadata_fields(o);
            match o {
                Object::Deployment(d) => {
                    let spec = d.spec.as_mut().unwrap();
                    *spec = with_json(
                        &*spec,
                        serde_json::json!({"minReadySeconds": 5, "strategy": {"type": "Recreate"}}),
                    );
                    add_pod_fields(spec.template.spec.as_mut().unwrap());
                    d.status = Some(Default::default());
                }
                Object::Pod(p) => add_pod_fields(p.spec.as_mut().unwrap()),
                Object::Secret(s) => {
                    s.immutable = Some(true);
                    s.string_data = Some([("plain".to_owned(), "text: here".to_owned())].into());
                }
                Object::Service(s) => s.status = Some(Default::default()),
            }
        }
        assert_same(&r, &format!("several-plugins with unhandled fields, {target}"));
    }
}
