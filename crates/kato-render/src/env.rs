//! The env of a plug-in container (DESIGN §5 rule 2) and the Secret data it refers to.
//!
//! Order: the app's env, the system vars, the Kato/Rainbond compatibility vars, then the
//! installation's env-injected values. A later name overrides an earlier one in place (the
//! variable keeps the position where it first appeared), so no name is emitted twice.
//!
//! Plug-in values may reference variables with `${VAR}` / `${VAR:default}`. They are expanded
//! against the container's final env (every variable above, plug-in values included, in their
//! unexpanded form); a value referencing its own name sees the value it replaced (the app's or a
//! system var), so `PATH=${PATH}:/opt/bin` works.
//!
//! No secret is ever copied into a plain value, which would sit in clear in the pod spec (on
//! podman, in `kube play`'s file and in every tool that shows the spec): a variable whose value
//! holds a secret is itself secret-backed, a key of the plug-in's Secret holding the value in
//! full. That covers the discovery token inside `DISCOVER_URL` and `DISCOVER_URL_NOHOST`, a
//! `${SECRET}` reference in a plain value, and a `$(SECRET)` the kubelet would expand at
//! container start: Kato does that expansion itself for such a variable
//! ([`hide_secret_references`]), so the container sees what it would have seen.

use std::borrow::Cow;

use kato_model::{ConfigItem, ConfigValue, Injection, Meta, PluginSpec, Values};
use sha2::{Digest, Sha256};

use crate::PluginInstance;
use crate::expand::{expand_dependent_into, expand_into};
use crate::text::{Decimal, concat};

pub(crate) const TOKEN_VAR: &str = "KATO_DISCOVERY_TOKEN";
/// 128 bits of the digest: enough to tell one Secret from the next.
const SECRET_DIGEST_BYTES: usize = 16;
const REDACTED: &str = "<redacted>";

/// What the env of a plug-in container is built from, besides the installation itself.
pub(crate) struct EnvContext<'a> {
    pub team: &'a str,
    pub component: &'a kato_model::ComponentSpec,
    pub discovery_base_url: &'a str,
    pub redact_secrets: bool,
}

/// A plug-in container's env and the data of its Secret.
pub(crate) struct PluginEnv<'v> {
    pub env: Vec<Var<'v>>,
    /// Sorted by key, values in clear (or redacted).
    pub secret_data: Vec<(&'v str, Cow<'v, str>)>,
    /// A digest of the Secret's data in clear, redacted or not: it changes when the Secret does
    /// (a rotated token, a changed secret value). It covers the random discovery token, so it
    /// tells nothing about the other values.
    pub secret_digest: String,
}

/// One variable of a container's env: a plain value, or (`secret`) a reference to the key of
/// that name in the plug-in's Secret, which holds `value`.
pub(crate) struct Var<'v> {
    pub name: &'v str,
    pub value: Cow<'v, str>,
    pub secret: bool,
}

impl<'v> Var<'v> {
    pub fn plain(name: &'v str, value: &'v str) -> Self {
        Var {
            name,
            value: Cow::Borrowed(value),
            secret: false,
        }
    }
}

/// Variables in order of first appearance; a handful of names, so a scan beats hashing.
struct Vars<'v>(Vec<Var<'v>>);

impl<'v> Vars<'v> {
    /// Sets a variable, keeping the position of an earlier one of that name; returns the
    /// variable it replaced.
    fn set(&mut self, name: &'v str, value: Cow<'v, str>, secret: bool) -> Option<Var<'v>> {
        let var = Var { name, value, secret };
        match self.0.iter_mut().find(|v| v.name == name) {
            Some(old) => Some(std::mem::replace(old, var)),
            None => {
                self.0.push(var);
                None
            }
        }
    }
    fn plain(&mut self, name: &'v str, value: impl Into<Cow<'v, str>>) {
        self.set(name, value.into(), false);
    }
    fn get(&self, name: &str) -> Option<&Var<'v>> {
        self.0.iter().find(|v| v.name == name)
    }
}

/// The env-injected values of an installation: its `meta: none` items, set or default, in the
/// version's item order. The same values `Values::resolve` gives as `base`, without resolving
/// the port groups, which only discovery serves.
pub(crate) fn env_values<'v>(
    values: &'v Values,
    spec: &'v PluginSpec,
) -> impl Iterator<Item = (&'v ConfigItem, &'v ConfigValue)> {
    spec.group(Meta::None)
        .filter(|g| g.injection == Injection::Env)
        .into_iter()
        .flat_map(|g| &g.items)
        .filter_map(|item| Some((item, values.base.get(item.name.as_str()).or(item.default.as_ref())?)))
}

/// The env of `inst`'s container and the data of its Secret.
pub(crate) fn plugin_env<'v>(ctx: &EnvContext<'v>, inst: &'v PluginInstance<'v>) -> PluginEnv<'v> {
    let spec = &inst.version.spec;
    let plugin = inst.installation.plugin.as_str();
    let (team, component) = (ctx.team, ctx.component.name.as_str());
    let base_url = ctx.discovery_base_url.trim_end_matches('/');
    let token = inst.discovery_token;
    let compat_path = concat(&["/v1/resources/", team, "/", component, "/", plugin, "?token=", token]);
    let plugin_vars = || env_values(&inst.installation.values, spec);

    let items = spec.group(Meta::None).map_or(0, |g| g.items.len());
    let mut vars = Vars(Vec::with_capacity(ctx.component.env.len() + 11 + items));
    for e in &ctx.component.env {
        vars.plain(e.name.as_str(), e.value.as_str());
    }
    vars.plain("KATO_TEAM", team);
    vars.plain("KATO_COMPONENT", component);
    vars.plain("KATO_PLUGIN", plugin);
    vars.plain(
        "KATO_PLUGIN_VERSION",
        Decimal::new(inst.version.number).as_str().to_owned(),
    );
    vars.plain(
        "KATO_DISCOVERY_URL",
        concat(&[base_url, "/discovery/v1/", team, "/", component, "/", plugin]),
    );
    vars.set(TOKEN_VAR, Cow::Borrowed(token), true);
    vars.plain("TENANT_ID", team);
    vars.plain("SERVICE_NAME", component);
    vars.plain("PLUGIN_ID", plugin);
    // The token inside: both are secret-backed.
    vars.set("DISCOVER_URL", Cow::Owned(concat(&[base_url, &compat_path])), true);
    vars.set("DISCOVER_URL_NOHOST", Cow::Owned(compat_path), true);

    // The values plug-in vars replaced, for self-references.
    let mut replaced = Vec::new();
    for (item, value) in plugin_vars() {
        let value = match value {
            ConfigValue::Text(s) => Cow::Borrowed(s.as_str()),
            list => Cow::Owned(list.to_env_string()),
        };
        if let Some(old) = vars.set(item.name.as_str(), value, item.secret) {
            replaced.push(old);
        }
    }
    let holding_secrets = expand_plugin_vars(&mut vars, plugin_vars().map(|(i, _)| i.name.as_str()), &replaced);
    hide_secret_references(&mut vars, &holding_secrets);
    finish(ctx.redact_secrets, inst, vars)
}

/// Expands every plug-in var against the unexpanded variables, then stores the results; answers
/// the plain variables that took a secret's value. That value goes in with its `$` doubled: it is
/// still to pass through the kubelet's expansion ([`hide_secret_references`]), which gives it
/// back as it is, as the kubelet does with the value of a `$(SECRET)`.
fn expand_plugin_vars<'n>(
    vars: &mut Vars<'n>,
    names: impl Iterator<Item = &'n str>,
    replaced: &[Var<'_>],
) -> Vec<&'n str> {
    let mut expanded: Vec<(&str, String)> = Vec::new();
    let mut holding_secrets = Vec::new();
    for name in names {
        let Some(own) = vars.get(name) else { continue };
        if !own.value.contains("${") {
            continue;
        }
        let mut out = String::with_capacity(own.value.len() + 16);
        expand_into(&own.value, &mut out, |var, out| {
            let found = if var == name {
                replaced.iter().find(|v| v.name == var)
            } else {
                vars.get(var)
            };
            let Some(found) = found else { return false };
            if found.secret && !own.secret {
                holding_secrets.push(name);
                for (i, part) in found.value.split('$').enumerate() {
                    if i > 0 {
                        out.push_str("$$");
                    }
                    out.push_str(part);
                }
            } else {
                out.push_str(&found.value);
            }
            true
        });
        expanded.push((name, out));
    }
    for (name, value) in expanded {
        if let Some(v) = vars.0.iter_mut().find(|v| v.name == name) {
            v.value = Cow::Owned(value);
        }
    }
    holding_secrets
}

/// The kubelet's `$(VAR)` expansion of the container's env, in order, each variable seeing the
/// ones before it: a plain variable it would fill with a secret (or one in `holding_secrets`)
/// becomes secret-backed, holding the value the kubelet would have given it. Every other
/// variable is left for the kubelet (and for the podman engine, which expands plain references).
fn hide_secret_references(vars: &mut Vars<'_>, holding_secrets: &[&str]) {
    if holding_secrets.is_empty() && !vars.0.iter().any(|v| !v.secret && v.value.contains("$(")) {
        return;
    }
    // What the kubelet resolves each variable to, where that is not its value as written.
    let mut resolved: Vec<Option<String>> = Vec::with_capacity(vars.0.len());
    for i in 0..vars.0.len() {
        let (earlier, rest) = vars.0.split_at_mut(i);
        let var = &mut rest[0];
        let mut reads_secret = holding_secrets.contains(&var.name);
        if var.secret || !(reads_secret || var.value.contains('$')) {
            resolved.push(None);
            continue;
        }
        let mut out = String::with_capacity(var.value.len() + 32);
        expand_dependent_into(&var.value, &mut out, |name, out| {
            let Some(j) = earlier.iter().position(|v| v.name == name) else {
                return false;
            };
            reads_secret |= earlier[j].secret;
            out.push_str(resolved[j].as_deref().unwrap_or(&earlier[j].value));
            true
        });
        if reads_secret {
            var.value = Cow::Owned(out);
            var.secret = true;
            resolved.push(None);
        } else {
            resolved.push(Some(out));
        }
    }
}

fn finish<'v>(redact: bool, inst: &'v PluginInstance<'v>, vars: Vars<'v>) -> PluginEnv<'v> {
    let mut secret_data: Vec<(&'v str, Cow<'v, str>)> = Vec::with_capacity(2);
    let mut put = |key: &'v str, value: Cow<'v, str>| match secret_data.binary_search_by(|(k, _)| (*k).cmp(key)) {
        Ok(i) => secret_data[i].1 = value,
        Err(i) => secret_data.insert(i, (key, value)),
    };
    put(TOKEN_VAR, Cow::Borrowed(inst.discovery_token));
    for var in vars.0.iter().filter(|v| v.secret) {
        put(var.name, var.value.clone());
    }
    let mut digest = Sha256::new();
    for (key, value) in &secret_data {
        for part in [key.as_bytes(), b"\0", value.as_bytes(), b"\0"] {
            digest.update(part);
        }
    }
    let secret_digest = hex::encode(&digest.finalize()[..SECRET_DIGEST_BYTES]);
    if redact {
        for (_, value) in &mut secret_data {
            *value = Cow::Borrowed(REDACTED);
        }
    }
    PluginEnv {
        env: vars.0,
        secret_data,
        secret_digest,
    }
}

#[cfg(test)]
mod tests {
    use kato_model::{ComponentSpec, PluginSpec, Values};

    use super::env_values;

    #[test]
    fn env_values_are_the_resolved_base_values() {
        let component: ComponentSpec =
            serde_yaml::from_str("{name: web, image: nginx, ports: [{port: 80, protocol: http}]}").unwrap();
        let mut spec: PluginSpec = serde_yaml::from_str(
            "{name: p, kind: general, source: {image: x}, config_groups: [
               {name: g, items: [{name: A, default: a}, {name: B}, {name: C, default: c},
                                 {name: L, type: multi, options: [x, y], default: [x, y]}]},
               {name: h, meta: component-port, injection: discovery, items: [{name: P, default: p}]}]}",
        )
        .unwrap();
        spec.validate().unwrap();
        let values: Values = serde_yaml::from_str("{base: {C: set, L: [y]}, ports: {'80': {P: q}}}").unwrap();
        let values = values.validate(&spec, &component, &[]).unwrap();
        let resolved = values.resolve(&spec, &component, &[]);
        assert!(resolved.base_is_env);
        let ours: Vec<_> = env_values(&values, &spec)
            .map(|(i, v)| (i.name.to_string(), v.clone()))
            .collect();
        let model: Vec<_> = resolved.base.into_iter().collect();
        assert_eq!(ours, model);
        assert_eq!(
            ours.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["A", "C", "L"]
        );
    }

    #[test]
    fn discovery_groups_give_no_env() {
        let spec: PluginSpec = serde_yaml::from_str(
            "{name: p, kind: general, source: {image: x}, config_groups: [
               {name: g, injection: discovery, items: [{name: A, default: a}]}]}",
        )
        .unwrap();
        assert_eq!(env_values(&Values::default(), &spec).count(), 0);
    }
}
