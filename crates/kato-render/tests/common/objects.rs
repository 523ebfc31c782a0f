//! Finding the rendered objects and their parts, for tests that assert on objects rather than
//! on YAML text.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Secret, Service};
use kato_render::{Object, Rendered, SidecarMode, Target};

use super::{Fixture, options, render};

pub fn rendered(f: &Fixture, mode: SidecarMode, target: Target) -> Rendered {
    render(&f.workload(), &options(target, mode)).unwrap()
}

pub fn native(f: &Fixture) -> Rendered {
    rendered(f, SidecarMode::Native, Target::Kubernetes)
}

pub fn deployment(r: &Rendered) -> &Deployment {
    r.objects
        .iter()
        .find_map(|o| match o {
            Object::Deployment(d) => Some(d),
            _ => None,
        })
        .expect("a Deployment")
}

pub fn pod(r: &Rendered) -> &Pod {
    r.objects
        .iter()
        .find_map(|o| match o {
            Object::Pod(p) => Some(p),
            _ => None,
        })
        .expect("a Pod")
}

pub fn pod_spec(r: &Rendered) -> &PodSpec {
    match r.objects.last() {
        Some(Object::Deployment(d)) => d.spec.as_ref().unwrap().template.spec.as_ref().unwrap(),
        Some(Object::Pod(p)) => p.spec.as_ref().unwrap(),
        other => panic!("the workload comes last, got {other:?}"),
    }
}

pub fn service(r: &Rendered) -> Option<&Service> {
    r.objects.iter().find_map(|o| match o {
        Object::Service(s) => Some(s),
        _ => None,
    })
}

pub fn secrets(r: &Rendered) -> Vec<&Secret> {
    r.objects
        .iter()
        .filter_map(|o| match o {
            Object::Secret(s) => Some(s),
            _ => None,
        })
        .collect()
}

pub fn all_containers(spec: &PodSpec) -> Vec<&Container> {
    spec.init_containers.iter().flatten().chain(&spec.containers).collect()
}

pub fn container<'a>(spec: &'a PodSpec, name: &str) -> &'a Container {
    all_containers(spec)
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

pub fn names(cs: &[Container]) -> Vec<&str> {
    cs.iter().map(|c| c.name.as_str()).collect()
}

/// `(name, value)`, with `secret:<secret>/<key>` for secret references.
pub fn env(c: &Container) -> Vec<(String, String)> {
    c.env
        .iter()
        .flatten()
        .map(|e| {
            let value = match (&e.value, &e.value_from) {
                (Some(v), None) => v.clone(),
                (None, Some(from)) => {
                    let r = from.secret_key_ref.as_ref().expect("only secret references");
                    format!("secret:{}/{}", r.name, r.key)
                }
                other => panic!("{}: {other:?}", e.name),
            };
            (e.name.clone(), value)
        })
        .collect()
}

pub fn env_value(c: &Container, name: &str) -> String {
    env(c)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{} has no {name}", c.name))
        .1
}

pub fn secret<'a>(r: &'a Rendered, name: &str) -> &'a Secret {
    secrets(r)
        .into_iter()
        .find(|s| s.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no Secret {name}"))
}
