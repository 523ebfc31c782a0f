//! The YAML of a [`Plan`], written without building its objects.
//!
//! The layout and field order are those of the objects [`Plan::into_objects`] builds, as the
//! direct writer prints them (k8s-openapi's field order, which is alphabetical); `render_yaml`'s
//! tests check the two byte for byte on every fixture.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::Resource;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kato_model::{Command, Ready};

use super::Compound;
use super::scalar::write_int;
use crate::objects::{LABEL_COMPONENT, LABEL_MANAGED_BY, LABEL_NAME, LABEL_TEAM};
use crate::plan::{ContainerPlan, Plan, SecretPlan};
use crate::probe::{self, Timing};
use crate::text::Decimal;

pub(crate) fn write(plan: &Plan<'_>) -> String {
    let docs = plan.secrets.len() + 2;
    let mut out = String::with_capacity(docs * 1024 + plan.containers.len() * 4096 + plan.init_containers.len() * 4096);
    let mut scratch = String::new();
    for s in &plan.secrets {
        secret(&mut out, plan, s, &mut scratch);
        out.push_str("---\n");
    }
    if !plan.service_ports.is_empty() {
        service(&mut out, plan);
        out.push_str("---\n");
    }
    workload(&mut out, plan);
    out
}

impl Compound<'_> {
    fn int_field(&mut self, key: &'static str, value: impl Into<i128>) {
        self.field_key(key);
        self.out.push(' ');
        write_int(self.out, value.into());
        self.out.push('\n');
    }
}

fn secret(out: &mut String, plan: &Plan<'_>, s: &SecretPlan<'_>, scratch: &mut String) {
    let mut doc = Compound::document(out);
    doc.str_field("apiVersion", Secret::API_VERSION);
    doc.str_field("kind", Secret::KIND);
    doc.field_key("data");
    let mut data = doc.nested();
    for (key, value) in &s.data {
        scratch.clear();
        STANDARD.encode_string(value.as_bytes(), scratch);
        data.str_entry(key, scratch);
    }
    end(data, "{}");
    metadata(&mut doc, plan, &s.name, false);
    doc.str_field("type", "Opaque");
}

fn service(out: &mut String, plan: &Plan<'_>) {
    let mut doc = Compound::document(out);
    doc.str_field("apiVersion", Service::API_VERSION);
    doc.str_field("kind", Service::KIND);
    metadata(&mut doc, plan, plan.component.name.as_str(), false);
    doc.field_key("spec");
    let mut spec = doc.nested();
    spec.field_key("ports");
    let mut ports = spec.nested();
    for p in &plan.service_ports {
        let mut m = ports.item();
        m.str_field("name", &p.name);
        m.int_field("port", p.port);
        m.str_field("protocol", p.protocol);
        m.int_field("targetPort", p.target_port);
    }
    spec.field_key("selector");
    selector(spec.nested(), plan);
}

fn workload(out: &mut String, plan: &Plan<'_>) {
    let mut doc = Compound::document(out);
    match plan.target {
        crate::Target::Kubernetes => {
            doc.str_field("apiVersion", Deployment::API_VERSION);
            doc.str_field("kind", Deployment::KIND);
            metadata(&mut doc, plan, plan.component.name.as_str(), true);
            doc.field_key("spec");
            let mut spec = doc.nested();
            spec.int_field("replicas", i32::try_from(plan.component.replicas).unwrap_or(i32::MAX));
            spec.field_key("selector");
            let mut sel = spec.nested();
            sel.field_key("matchLabels");
            selector(sel.nested(), plan);
            spec.field_key("template");
            let mut template = spec.nested();
            template.field_key("metadata");
            let mut meta = template.nested();
            annotations(&mut meta, &plan.template_annotations);
            meta.field_key("labels");
            labels(meta.nested(), plan);
            template.field_key("spec");
            pod_spec(template.nested(), plan, None);
        }
        crate::Target::Podman => {
            doc.str_field("apiVersion", Pod::API_VERSION);
            doc.str_field("kind", Pod::KIND);
            metadata(&mut doc, plan, &plan.pod_name(), true);
            doc.field_key("spec");
            pod_spec(doc.nested(), plan, Some(plan.pod_restart_policy()));
        }
    }
}

fn metadata(doc: &mut Compound<'_>, plan: &Plan<'_>, name: &str, annotated: bool) {
    doc.field_key("metadata");
    let mut m = doc.nested();
    if annotated {
        annotations(&mut m, &plan.annotations);
    }
    m.field_key("labels");
    labels(m.nested(), plan);
    m.str_field("name", name);
    if let Some(ns) = plan.namespace {
        m.str_field("namespace", ns);
    }
}

/// `annotations:` with these entries (already in key order); nothing when there are none.
fn annotations(m: &mut Compound<'_>, entries: &[(String, String)]) {
    if entries.is_empty() {
        return;
    }
    m.field_key("annotations");
    let mut a = m.nested();
    for (k, v) in entries {
        a.str_entry(k, v);
    }
}

/// The workload's labels, in key order.
fn labels(mut m: Compound<'_>, plan: &Plan<'_>) {
    let component = plan.component.name.as_str();
    m.str_entry(LABEL_MANAGED_BY, "kato");
    m.str_entry(LABEL_NAME, component);
    m.str_entry(LABEL_COMPONENT, component);
    m.str_entry(LABEL_TEAM, plan.team);
}

/// What selects the workload's pods, in key order.
fn selector(mut m: Compound<'_>, plan: &Plan<'_>) {
    m.str_entry(LABEL_COMPONENT, plan.component.name.as_str());
    m.str_entry(LABEL_TEAM, plan.team);
}

fn pod_spec(mut m: Compound<'_>, plan: &Plan<'_>, restart_policy: Option<&str>) {
    m.field_key("containers");
    containers(m.nested(), plan, &plan.containers);
    if !plan.init_containers.is_empty() {
        m.field_key("initContainers");
        containers(m.nested(), plan, &plan.init_containers);
    }
    if let Some(policy) = restart_policy {
        m.str_field("restartPolicy", policy);
    }
    if !plan.component.volumes.is_empty() {
        m.field_key("volumes");
        let mut list = m.nested();
        for v in &plan.component.volumes {
            let mut item = list.item();
            item.field_key("emptyDir");
            end(item.nested(), "{}");
            item.str_field("name", v.name.as_str());
        }
    }
}

fn containers(mut list: Compound<'_>, plan: &Plan<'_>, containers: &[ContainerPlan<'_>]) {
    for c in containers {
        container(list.item(), plan, c);
    }
    end(list, "[]");
}

fn container(mut m: Compound<'_>, plan: &Plan<'_>, c: &ContainerPlan<'_>) {
    if let Some(command) = c.command {
        m.field_key("command");
        let mut list = m.nested();
        match command {
            Command::Shell(script) => {
                list.str_item("/bin/sh");
                list.str_item("-c");
                list.str_item(script);
            }
            Command::Exec(argv) => {
                for arg in argv {
                    list.str_item(arg);
                }
            }
        }
        end(list, "[]");
    }
    if !c.env.is_empty() {
        m.field_key("env");
        let mut list = m.nested();
        for var in &c.env {
            let mut item = list.item();
            item.str_field("name", var.name);
            if var.secret {
                item.field_key("valueFrom");
                let mut from = item.nested();
                from.field_key("secretKeyRef");
                let mut key = from.nested();
                key.str_field("key", var.name);
                key.str_field("name", c.secret.as_deref().unwrap_or_default());
            } else {
                item.str_field("value", &var.value);
            }
        }
    }
    m.str_field("image", c.image);
    m.str_field("name", &c.name);
    if !c.ports.is_empty() {
        m.field_key("ports");
        let mut list = m.nested();
        for (port, protocol) in &c.ports {
            let mut item = list.item();
            item.int_field("containerPort", *port);
            item.str_field("protocol", protocol);
        }
    }
    if let Some(ready) = c.ready {
        m.field_key("readinessProbe");
        write_probe(m.nested(), ready, probe::READINESS);
    }
    m.field_key("resources");
    let mut resources = m.nested();
    for key in ["limits", "requests"] {
        resources.field_key(key);
        let mut amounts = resources.nested();
        if let Some(cpu) = c.cpu_millis {
            amount(&mut amounts, "cpu", cpu, "m");
        }
        amount(&mut amounts, "memory", c.memory_mib, "Mi");
    }
    if c.restart_always {
        m.str_field("restartPolicy", "Always");
    }
    if c.privileged {
        m.field_key("securityContext");
        let mut sc = m.nested();
        sc.field_key("privileged");
        sc.out.push_str(" true\n");
    }
    if let Some(ready) = c.ready {
        m.field_key("startupProbe");
        write_probe(m.nested(), ready, probe::STARTUP);
    }
    if !plan.component.volumes.is_empty() {
        m.field_key("volumeMounts");
        let mut list = m.nested();
        for v in &plan.component.volumes {
            let mut item = list.item();
            item.str_field("mountPath", &v.path);
            item.str_field("name", v.name.as_str());
        }
    }
}

/// A probe's fields in k8s-openapi's order (`exec`, `failureThreshold`, `httpGet`,
/// `periodSeconds`, `tcpSocket`, `timeoutSeconds`), as [`probe::probe`] builds them.
fn write_probe(mut m: Compound<'_>, ready: &Ready, t: Timing) {
    if let Ready::Exec(argv) = ready {
        m.field_key("exec");
        let mut exec = m.nested();
        exec.field_key("command");
        let mut list = exec.nested();
        for arg in argv {
            list.str_item(arg);
        }
        end(list, "[]");
    }
    m.int_field("failureThreshold", t.failure_threshold);
    if let Ready::Http(h) = ready {
        m.field_key("httpGet");
        let mut get = m.nested();
        get.str_field("path", &h.path);
        get.int_field("port", h.port);
    }
    m.int_field("periodSeconds", t.period_seconds);
    if let Ready::Tcp(tcp) = ready {
        m.field_key("tcpSocket");
        m.nested().int_field("port", tcp.port);
    }
    m.int_field("timeoutSeconds", t.timeout_seconds);
}

/// `name: {n}{unit}`: a Kubernetes quantity, always plain YAML.
fn amount(m: &mut Compound<'_>, name: &'static str, n: u32, unit: &str) {
    m.field_key(name);
    m.out.push(' ');
    m.out.push_str(Decimal::new(n).as_str());
    m.out.push_str(unit);
    m.out.push('\n');
}

fn end(c: Compound<'_>, empty: &str) {
    c.end(empty).expect("an empty mapping or sequence is written as text");
}
