//! What a component's deploys leave in podman — pods, secrets, volumes — found and removed.

use super::*;

impl PodmanRuntime {
    /// The pods of a component (normally one), found by label.
    pub(super) async fn pods(&self, c: ComponentRef<'_>) -> Result<Vec<String>, RuntimeError> {
        let out = self
            .run(
                &args([
                    "pod",
                    "ls",
                    "--filter",
                    &format!("label={COMPONENT_LABEL}={}", c.component),
                    "--format",
                    "json",
                ]),
                None,
                self.config.call_timeout,
            )
            .await?;
        let pods: Vec<PodLs> = parse_json(&out)?;
        Ok(pods
            .into_iter()
            .filter(|p| owned_by(&p.labels, c))
            .map(|p| p.name)
            .collect())
    }

    /// What podman says of the pod named `name`, when it exists and belongs to `c` (by its
    /// labels): a name alone never decides whose a pod is.
    pub(super) async fn inspect_pod(
        &self,
        name: &str,
        c: ComponentRef<'_>,
    ) -> Result<Option<PodInspect>, RuntimeError> {
        let (ok, out, err) = self
            .output(&args(["pod", "inspect", name]), None, self.config.call_timeout)
            .await?;
        if !ok {
            if err.contains("no such pod") || err.contains("no pod with name") {
                return Ok(None);
            }
            return Err(engine(err));
        }
        let inspect: PodInspect = parse_json(&out)?;
        Ok(owned_by(&inspect.labels, c).then_some(inspect))
    }

    pub(super) async fn remove_pods(&self, names: &[String]) -> Result<(), RuntimeError> {
        if names.is_empty() {
            return Ok(());
        }
        let mut a = args(["pod", "rm", "--force", "--time", &self.config.stop_grace.to_string()]);
        a.extend(names.iter().map(OsString::from));
        let limit = self.config.call_timeout + Duration::from_secs(u64::from(self.config.stop_grace) * 2);
        let (ok, _, err) = self.output(&a, None, limit).await?;
        if ok || err.contains("no pod with name or ID") {
            Ok(())
        } else {
            Err(engine(err))
        }
    }

    /// The podman secrets a component's deploys created, found by name prefix and label: named
    /// `{hash}_…`, or `{team}-{component}-…` by an older Kato (a redeploy or stop removes those).
    pub(super) async fn secrets(&self, c: ComponentRef<'_>) -> Result<Vec<String>, RuntimeError> {
        let out = self
            .run(
                &args(["secret", "ls", "--format", "{{.Name}}"]),
                None,
                self.config.call_timeout,
            )
            .await?;
        let prefix = format!("{}_", kato_render::names::component_hash(c.team, c.component));
        let legacy = format!("{}-{}-", c.team, c.component);
        let candidates: Vec<&str> = out
            .lines()
            .map(str::trim)
            .filter(|n| n.starts_with(&prefix) || n.starts_with(&legacy))
            .collect();
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let mut a = args(["secret", "inspect"]);
        a.extend(candidates.iter().map(OsString::from));
        let (_, out, _) = self.output(&a, None, self.config.call_timeout).await?;
        let found: Vec<SecretInspect> = if out.trim().is_empty() {
            Vec::new()
        } else {
            parse_json(&out)?
        };
        Ok(found
            .into_iter()
            .filter(|s| owned_by(&s.spec.labels, c))
            .map(|s| s.spec.name)
            .collect())
    }

    pub(super) async fn remove_secrets(&self, names: &[String]) -> Result<(), RuntimeError> {
        if names.is_empty() {
            return Ok(());
        }
        let mut a = args(["secret", "rm"]);
        a.extend(names.iter().map(OsString::from));
        let (ok, _, err) = self.output(&a, None, self.config.call_timeout).await?;
        if ok || err.contains("no such secret") {
            Ok(())
        } else {
            Err(engine(err))
        }
    }

    /// The volumes the last deploy of `pod` created.
    pub(super) async fn recorded_volumes(&self, pod: &str) -> Vec<String> {
        let text = tokio::fs::read(volumes_file(&self.config.data_dir, pod)).await;
        text.ok()
            .and_then(|t| serde_json::from_slice(&t).ok())
            .unwrap_or_default()
    }

    pub(super) async fn remove_volumes(&self, names: &[String]) -> Result<(), RuntimeError> {
        let mut names: Vec<&String> = names.iter().collect();
        names.sort();
        names.dedup();
        for name in names {
            let (ok, _, err) = self
                .output(&args(["volume", "rm", "--force", name]), None, self.config.call_timeout)
                .await?;
            if !ok && !err.contains("no such volume") && !err.contains("no volume with name") {
                return Err(engine(err));
            }
        }
        Ok(())
    }
}

/// True when `labels` name the component `c`: its team and its name.
pub(super) fn owned_by(labels: &BTreeMap<String, String>, c: ComponentRef<'_>) -> bool {
    labels.get(TEAM_LABEL).map(String::as_str) == Some(c.team)
        && labels.get(COMPONENT_LABEL).map(String::as_str) == Some(c.component)
}

#[derive(Deserialize)]
pub(super) struct PodInspect {
    #[serde(rename = "Created", default)]
    pub created: String,
    #[serde(rename = "InfraContainerID", default)]
    pub infra_container_id: String,
    #[serde(rename = "Containers", default)]
    pub containers: Vec<PodCtr>,
    #[serde(rename = "Labels", default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
pub(super) struct PodCtr {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Name", default)]
    pub name: String,
}

#[derive(Deserialize)]
struct PodLs {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Labels", default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct SecretInspect {
    #[serde(rename = "Spec")]
    spec: SecretSpec,
}

#[derive(Deserialize)]
struct SecretSpec {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Labels", default)]
    labels: BTreeMap<String, String>,
}
