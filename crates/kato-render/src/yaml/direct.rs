//! The objects written straight from their fields, down to each container's env.
//!
//! Through serde a container cost ~900 instructions per env var, and a workload with a few
//! plug-ins has ~100 of them (every plug-in container gets the app's env too). Here the fields are written in the order k8s-openapi serializes
//! them; the fields this does not write itself (probes, affinity, status, …) go through the serde
//! emitter at their place, so the output is the serde path's, byte for byte (`tests/yaml_direct.rs`
//! checks it). Structs are destructured in full, so a field a new k8s-openapi adds fails the
//! build here instead of going missing from the YAML.

use std::collections::BTreeMap;

use k8s_openapi::Resource;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, Pod, PodSpec, PodTemplateSpec, ResourceRequirements, Secret, Service, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{Compound, Error};
use crate::Object;

pub(super) fn object(out: &mut String, o: &Object) -> Result<(), Error> {
    match o {
        Object::Secret(s) => secret(out, s),
        Object::Service(s) => service(out, s),
        Object::Deployment(d) => deployment(out, d),
        Object::Pod(p) => pod(out, p),
    }
}

fn secret(out: &mut String, s: &Secret) -> Result<(), Error> {
    let Secret {
        data,
        immutable,
        metadata,
        string_data,
        type_,
    } = s;
    let mut doc = Compound::document(out);
    doc.str_field("apiVersion", Secret::API_VERSION);
    doc.str_field("kind", Secret::KIND);
    doc.opt_field("data", data)?;
    doc.opt_field("immutable", immutable)?;
    doc.field_key("metadata");
    object_meta(doc.nested(), metadata)?;
    if let Some(string_data) = string_data {
        doc.field_key("stringData");
        string_map(doc.nested(), string_data)?;
    }
    doc.opt_str_field("type", type_);
    doc.end("{}")
}

fn service(out: &mut String, s: &Service) -> Result<(), Error> {
    let Service { metadata, spec, status } = s;
    let mut doc = Compound::document(out);
    doc.str_field("apiVersion", Service::API_VERSION);
    doc.str_field("kind", Service::KIND);
    doc.field_key("metadata");
    object_meta(doc.nested(), metadata)?;
    doc.opt_field("spec", spec)?;
    doc.opt_field("status", status)?;
    doc.end("{}")
}

fn deployment(out: &mut String, d: &Deployment) -> Result<(), Error> {
    let Deployment { metadata, spec, status } = d;
    let mut doc = Compound::document(out);
    doc.str_field("apiVersion", Deployment::API_VERSION);
    doc.str_field("kind", Deployment::KIND);
    doc.field_key("metadata");
    object_meta(doc.nested(), metadata)?;
    if let Some(spec) = spec {
        doc.field_key("spec");
        deployment_spec(doc.nested(), spec)?;
    }
    doc.opt_field("status", status)?;
    doc.end("{}")
}

fn pod(out: &mut String, p: &Pod) -> Result<(), Error> {
    let Pod { metadata, spec, status } = p;
    let mut doc = Compound::document(out);
    doc.str_field("apiVersion", Pod::API_VERSION);
    doc.str_field("kind", Pod::KIND);
    doc.field_key("metadata");
    object_meta(doc.nested(), metadata)?;
    if let Some(spec) = spec {
        doc.field_key("spec");
        pod_spec(doc.nested(), spec)?;
    }
    doc.opt_field("status", status)?;
    doc.end("{}")
}

fn deployment_spec(mut m: Compound<'_>, spec: &DeploymentSpec) -> Result<(), Error> {
    let DeploymentSpec {
        min_ready_seconds,
        paused,
        progress_deadline_seconds,
        replicas,
        revision_history_limit,
        selector,
        strategy,
        template,
    } = spec;
    m.opt_field("minReadySeconds", min_ready_seconds)?;
    m.opt_field("paused", paused)?;
    m.opt_field("progressDeadlineSeconds", progress_deadline_seconds)?;
    m.opt_field("replicas", replicas)?;
    m.opt_field("revisionHistoryLimit", revision_history_limit)?;
    m.field("selector", selector)?;
    m.opt_field("strategy", strategy)?;
    m.field_key("template");
    pod_template(m.nested(), template)?;
    m.end("{}")
}

fn pod_template(mut m: Compound<'_>, template: &PodTemplateSpec) -> Result<(), Error> {
    let PodTemplateSpec { metadata, spec } = template;
    if let Some(metadata) = metadata {
        m.field_key("metadata");
        object_meta(m.nested(), metadata)?;
    }
    if let Some(spec) = spec {
        m.field_key("spec");
        pod_spec(m.nested(), spec)?;
    }
    m.end("{}")
}

fn object_meta(mut m: Compound<'_>, meta: &ObjectMeta) -> Result<(), Error> {
    let ObjectMeta {
        annotations,
        creation_timestamp,
        deletion_grace_period_seconds,
        deletion_timestamp,
        finalizers,
        generate_name,
        generation,
        labels,
        managed_fields,
        name,
        namespace,
        owner_references,
        resource_version,
        self_link,
        uid,
    } = meta;
    if let Some(annotations) = annotations {
        m.field_key("annotations");
        string_map(m.nested(), annotations)?;
    }
    m.opt_field("creationTimestamp", creation_timestamp)?;
    m.opt_field("deletionGracePeriodSeconds", deletion_grace_period_seconds)?;
    m.opt_field("deletionTimestamp", deletion_timestamp)?;
    m.opt_field("finalizers", finalizers)?;
    m.opt_str_field("generateName", generate_name);
    m.opt_field("generation", generation)?;
    if let Some(labels) = labels {
        m.field_key("labels");
        string_map(m.nested(), labels)?;
    }
    m.opt_field("managedFields", managed_fields)?;
    m.opt_str_field("name", name);
    m.opt_str_field("namespace", namespace);
    m.opt_field("ownerReferences", owner_references)?;
    m.opt_str_field("resourceVersion", resource_version);
    m.opt_str_field("selfLink", self_link);
    m.opt_str_field("uid", uid);
    m.end("{}")
}

fn string_map(mut m: Compound<'_>, map: &BTreeMap<String, String>) -> Result<(), Error> {
    for (key, value) in map {
        m.str_entry(key, value);
    }
    m.end("{}")
}

fn pod_spec(mut m: Compound<'_>, spec: &PodSpec) -> Result<(), Error> {
    let PodSpec {
        active_deadline_seconds,
        affinity,
        automount_service_account_token,
        containers,
        dns_config,
        dns_policy,
        enable_service_links,
        ephemeral_containers,
        host_aliases,
        host_ipc,
        host_network,
        host_pid,
        host_users,
        hostname,
        image_pull_secrets,
        init_containers,
        node_name,
        node_selector,
        os,
        overhead,
        preemption_policy,
        priority,
        priority_class_name,
        readiness_gates,
        resource_claims,
        resources,
        restart_policy,
        runtime_class_name,
        scheduler_name,
        scheduling_gates,
        security_context,
        service_account,
        service_account_name,
        set_hostname_as_fqdn,
        share_process_namespace,
        subdomain,
        termination_grace_period_seconds,
        tolerations,
        topology_spread_constraints,
        volumes,
    } = spec;
    m.opt_field("activeDeadlineSeconds", active_deadline_seconds)?;
    m.opt_field("affinity", affinity)?;
    m.opt_field("automountServiceAccountToken", automount_service_account_token)?;
    m.field_key("containers");
    container_list(m.nested(), containers)?;
    m.opt_field("dnsConfig", dns_config)?;
    m.opt_str_field("dnsPolicy", dns_policy);
    m.opt_field("enableServiceLinks", enable_service_links)?;
    m.opt_field("ephemeralContainers", ephemeral_containers)?;
    m.opt_field("hostAliases", host_aliases)?;
    m.opt_field("hostIPC", host_ipc)?;
    m.opt_field("hostNetwork", host_network)?;
    m.opt_field("hostPID", host_pid)?;
    m.opt_field("hostUsers", host_users)?;
    m.opt_str_field("hostname", hostname);
    m.opt_field("imagePullSecrets", image_pull_secrets)?;
    if let Some(init) = init_containers {
        m.field_key("initContainers");
        container_list(m.nested(), init)?;
    }
    m.opt_str_field("nodeName", node_name);
    m.opt_field("nodeSelector", node_selector)?;
    m.opt_field("os", os)?;
    m.opt_field("overhead", overhead)?;
    m.opt_str_field("preemptionPolicy", preemption_policy);
    m.opt_field("priority", priority)?;
    m.opt_str_field("priorityClassName", priority_class_name);
    m.opt_field("readinessGates", readiness_gates)?;
    m.opt_field("resourceClaims", resource_claims)?;
    m.opt_field("resources", resources)?;
    m.opt_str_field("restartPolicy", restart_policy);
    m.opt_str_field("runtimeClassName", runtime_class_name);
    m.opt_str_field("schedulerName", scheduler_name);
    m.opt_field("schedulingGates", scheduling_gates)?;
    m.opt_field("securityContext", security_context)?;
    m.opt_str_field("serviceAccount", service_account);
    m.opt_str_field("serviceAccountName", service_account_name);
    m.opt_field("setHostnameAsFQDN", set_hostname_as_fqdn)?;
    m.opt_field("shareProcessNamespace", share_process_namespace)?;
    m.opt_str_field("subdomain", subdomain);
    m.opt_field("terminationGracePeriodSeconds", termination_grace_period_seconds)?;
    m.opt_field("tolerations", tolerations)?;
    m.opt_field("topologySpreadConstraints", topology_spread_constraints)?;
    m.opt_field("volumes", volumes)?;
    m.end("{}")
}

fn container_list(mut list: Compound<'_>, containers: &[Container]) -> Result<(), Error> {
    for c in containers {
        container(list.item(), c)?;
    }
    list.end("[]")
}

fn container(mut m: Compound<'_>, c: &Container) -> Result<(), Error> {
    let Container {
        args,
        command,
        env,
        env_from,
        image,
        image_pull_policy,
        lifecycle,
        liveness_probe,
        name,
        ports,
        readiness_probe,
        resize_policy,
        resources,
        restart_policy,
        security_context,
        startup_probe,
        stdin,
        stdin_once,
        termination_message_path,
        termination_message_policy,
        tty,
        volume_devices,
        volume_mounts,
        working_dir,
    } = c;
    if let Some(args) = args {
        m.field_key("args");
        str_list(m.nested(), args)?;
    }
    if let Some(command) = command {
        m.field_key("command");
        str_list(m.nested(), command)?;
    }
    if let Some(env) = env {
        m.field_key("env");
        env_list(m.nested(), env)?;
    }
    m.opt_field("envFrom", env_from)?;
    m.opt_str_field("image", image);
    m.opt_str_field("imagePullPolicy", image_pull_policy);
    m.opt_field("lifecycle", lifecycle)?;
    m.opt_field("livenessProbe", liveness_probe)?;
    m.str_field("name", name);
    m.opt_field("ports", ports)?;
    m.opt_field("readinessProbe", readiness_probe)?;
    m.opt_field("resizePolicy", resize_policy)?;
    if let Some(resources) = resources {
        m.field_key("resources");
        resource_requirements(m.nested(), resources)?;
    }
    m.opt_str_field("restartPolicy", restart_policy);
    m.opt_field("securityContext", security_context)?;
    m.opt_field("startupProbe", startup_probe)?;
    m.opt_field("stdin", stdin)?;
    m.opt_field("stdinOnce", stdin_once)?;
    m.opt_str_field("terminationMessagePath", termination_message_path);
    m.opt_str_field("terminationMessagePolicy", termination_message_policy);
    m.opt_field("tty", tty)?;
    m.opt_field("volumeDevices", volume_devices)?;
    if let Some(mounts) = volume_mounts {
        m.field_key("volumeMounts");
        mount_list(m.nested(), mounts)?;
    }
    m.opt_str_field("workingDir", working_dir);
    m.end("{}")
}

fn str_list(mut list: Compound<'_>, items: &[String]) -> Result<(), Error> {
    for s in items {
        list.str_item(s);
    }
    list.end("[]")
}

fn env_list(mut list: Compound<'_>, env: &[EnvVar]) -> Result<(), Error> {
    for EnvVar {
        name,
        value,
        value_from,
    } in env
    {
        let mut m = list.item();
        m.str_field("name", name);
        m.opt_str_field("value", value);
        m.opt_field("valueFrom", value_from)?;
        m.end("{}")?;
    }
    list.end("[]")
}

fn resource_requirements(mut m: Compound<'_>, r: &ResourceRequirements) -> Result<(), Error> {
    let ResourceRequirements {
        claims,
        limits,
        requests,
    } = r;
    m.opt_field("claims", claims)?;
    for (key, amounts) in [("limits", limits), ("requests", requests)] {
        if let Some(amounts) = amounts {
            m.field_key(key);
            quantities(m.nested(), amounts)?;
        }
    }
    m.end("{}")
}

fn quantities(mut m: Compound<'_>, amounts: &BTreeMap<String, Quantity>) -> Result<(), Error> {
    for (name, Quantity(amount)) in amounts {
        m.str_entry(name, amount);
    }
    m.end("{}")
}

fn mount_list(mut list: Compound<'_>, mounts: &[VolumeMount]) -> Result<(), Error> {
    for mount in mounts {
        let VolumeMount {
            mount_path,
            mount_propagation,
            name,
            read_only,
            recursive_read_only,
            sub_path,
            sub_path_expr,
        } = mount;
        let mut m = list.item();
        m.str_field("mountPath", mount_path);
        m.opt_str_field("mountPropagation", mount_propagation);
        m.str_field("name", name);
        m.opt_field("readOnly", read_only)?;
        m.opt_str_field("recursiveReadOnly", recursive_read_only);
        m.opt_str_field("subPath", sub_path);
        m.opt_str_field("subPathExpr", sub_path_expr);
        m.end("{}")?;
    }
    list.end("[]")
}
