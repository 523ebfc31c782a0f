//! From rendered objects to what podman 4 plays: podman secrets, expanded env, pod volumes, and
//! the names of them all.
//!
//! No secret leaves its podman secret here: the renderer already put every value holding one in
//! the Secret, and the `$(VAR)` expansion Kato does for podman reads only plain variables.

use super::*;

/// What one deploy plays: the podman secrets (name, JSON data) and the pod.
pub(crate) struct Plan {
    /// (podman name, rendered name, JSON data).
    pub secrets: Vec<(String, String, Vec<u8>)>,
    pub pod: Pod,
    /// The podman volumes of the pod's `emptyDir`s, named `{pod}_{volume}`.
    pub volumes: Vec<String>,
}

/// The podman volume of `pod` that the rendered pod calls `name`: the pod's name is unique to
/// the component (see [`kato_render::names`]) and holds no `_`, so neither can this name be
/// another component's.
pub(crate) fn volume_name(pod: &str, name: &str) -> String {
    format!("{pod}_{name}")
}

/// Turns the objects rendered for podman into what podman 4 runs: the pod is named and labelled
/// for `c` whatever the objects say (see [`kato_render::names::podman_pod_name`]), Secrets become
/// podman secrets ([`kato_render::names::podman_secret_name`]) holding the data as JSON (what
/// `secretKeyRef` reads), `$(VAR)` references to plain variables in env values are expanded
/// (podman does not), images are pulled by Kato beforehand, and the pod notes its init
/// containers.
pub(crate) fn plan(c: ComponentRef<'_>, rendered: &Rendered) -> Result<Plan, RuntimeError> {
    let pod_name = kato_render::names::podman_pod_name(c.team, c.component);
    let mut secrets = Vec::new();
    let mut pod = None;
    for object in &rendered.objects {
        match object {
            Object::Secret(s) => {
                let name = kato_render::names::podman_secret_name(c.team, c.component, object.name());
                let json: BTreeMap<&String, &k8s_openapi::ByteString> = s.data.iter().flat_map(|d| d.iter()).collect();
                let bytes = serde_json::to_vec(&json).map_err(|e| RuntimeError::Engine {
                    engine: ENGINE,
                    message: format!("cannot encode secret {name}: {e}"),
                })?;
                secrets.push((name, object.name().to_owned(), bytes));
            }
            Object::Pod(p) => pod = Some(p.clone()),
            Object::Service(_) | Object::Deployment(_) => {}
        }
    }
    let Some(mut pod) = pod else {
        return Err(RuntimeError::Engine {
            engine: ENGINE,
            message: "the objects hold no Pod: render them for the podman target".to_owned(),
        });
    };
    pod.metadata.name = Some(pod_name.clone());
    let labels = pod.metadata.labels.get_or_insert_with(Default::default);
    labels.insert(TEAM_LABEL.to_owned(), c.team.to_owned());
    labels.insert(COMPONENT_LABEL.to_owned(), c.component.to_owned());
    let spec = pod.spec.get_or_insert_with(Default::default);
    // podman 4 plays an `emptyDir` as a named volume shared by every pod that uses the same
    // name, and keeps it: name it after the pod, and deploys start it afresh.
    let mut volumes = Vec::new();
    let mut renamed = HashMap::new();
    for v in spec.volumes.iter_mut().flatten() {
        if v.empty_dir.is_some() {
            let name = volume_name(&pod_name, &v.name);
            renamed.insert(v.name.clone(), name.clone());
            v.name = name.clone();
            volumes.push(name);
        }
    }
    for ctr in spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut())
    {
        for m in ctr.volume_mounts.iter_mut().flatten() {
            if let Some(n) = renamed.get(&m.name) {
                m.name = n.clone();
            }
        }
    }
    let mut inits = Vec::new();
    for ctr in spec.init_containers.iter_mut().flatten() {
        inits.push(ctr.name.clone());
        prepare_container(ctr, c);
    }
    for ctr in &mut spec.containers {
        prepare_container(ctr, c);
    }
    let order: Vec<String> = spec.containers.iter().map(|c| c.name.clone()).collect();
    let annotations = pod.metadata.annotations.get_or_insert_with(Default::default);
    for (key, names) in [(INIT_ANNOTATION, &inits), (CONTAINERS_ANNOTATION, &order)] {
        for (i, name) in names.iter().enumerate() {
            annotations.insert(format!("{key}.{i}"), name.clone());
        }
    }
    Ok(Plan { secrets, pod, volumes })
}

/// Makes a container playable by podman 4: its image never pulled by podman (Kato pulled it),
/// its secret references renamed to the podman secrets, Kubernetes' `$(VAR)` expansion done,
/// which podman lacks, and its ports left out: podman 4 publishes every `containerPort` on the
/// host's port of the same number, so two components with one port (of one team or of two)
/// could not run side by side. Pods reach a component at `{component}.{team}:<port>` on
/// podman's network, which needs no published port. Its startup and readiness probes are left
/// out too: podman 4.3 does not run them the way Kubernetes does (no container waits for a
/// startup probe to pass, no Service drops a pod that is not ready); the classic layout podman
/// gets already starts net plug-ins before the app.
/// The expansion reads plain variables only: a reference to a secret-backed one stays as
/// written rather than copy the secret into a value podman shows (the renderer never makes
/// one; see `kato_render`'s env module).
pub(super) fn prepare_container(ctr: &mut Container, c: ComponentRef<'_>) {
    let podman_secret = |name: &str| kato_render::names::podman_secret_name(c.team, c.component, name);
    ctr.image_pull_policy = Some("Never".to_owned());
    ctr.ports = None;
    ctr.startup_probe = None;
    ctr.readiness_probe = None;
    trim_leading_line_breaks(ctr);
    let mut plain: HashMap<String, String> = HashMap::new();
    for var in ctr.env.iter_mut().flatten() {
        if let Some(v) = var.value.as_mut() {
            if v.contains('$') {
                *v = expand_refs(v, &plain);
            }
            plain.insert(var.name.clone(), v.clone());
        } else if let Some(r) = var.value_from.as_mut().and_then(|f| f.secret_key_ref.as_mut()) {
            r.name = podman_secret(&r.name);
        }
    }
    for from in ctr.env_from.iter_mut().flatten() {
        if let Some(r) = from.secret_ref.as_mut() {
            r.name = podman_secret(&r.name);
        }
    }
}

/// podman 4.3 cannot play a pod with a command or argument that starts with a line break (its
/// kind sorting fails with "did not find expected '-' indicator", whatever the YAML style). A
/// script written as a YAML block (`|`) often starts with one; a shell reads the leading blank
/// lines as nothing, so they are dropped from the script of a `sh -c` command. Any other
/// leading line break is kept, and podman's refusal is reported as it is.
pub(super) fn trim_leading_line_breaks(ctr: &mut Container) {
    let mut words: Vec<&mut String> = ctr.command.iter_mut().flatten().collect();
    words.extend(ctr.args.iter_mut().flatten());
    let shell = words.len() >= 3 && words[0].ends_with("sh") && words[1].as_str() == "-c";
    if shell {
        let script = &mut words[2];
        let trimmed = script.trim_start_matches(['\n', '\r']);
        if trimmed.len() != script.len() {
            **script = trimmed.to_owned();
        }
    }
}

/// Kubernetes' dependent variables ([`kato_render::expand_dependent_into`]): `$(NAME)` becomes
/// the value of an earlier variable in `known`; `$$` escapes; unknown references stay as they are.
pub(crate) fn expand_refs(value: &str, known: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(value.len());
    kato_render::expand_dependent_into(value, &mut out, |name, out| match known.get(name) {
        Some(v) => {
            out.push_str(v);
            true
        }
        None => false,
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_probes_are_left_to_kubernetes() {
        let probe = serde_json::json!({"exec": {"command": ["/usr/local/bin/kato-mesh", "ready"]}, "periodSeconds": 1});
        let mut ctr: Container = serde_json::from_value(serde_json::json!({
            "name": "plugin-mesh",
            "ports": [{"containerPort": 65301}],
            "startupProbe": probe,
            "readinessProbe": probe,
        }))
        .unwrap();
        prepare_container(
            &mut ctr,
            ComponentRef {
                team: "t",
                component: "web",
            },
        );
        assert_eq!(ctr.ports, None);
        assert_eq!((ctr.startup_probe, ctr.readiness_probe), (None, None));
        assert_eq!(ctr.image_pull_policy.as_deref(), Some("Never"));
    }
}
