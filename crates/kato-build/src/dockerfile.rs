//! Dockerfile builds: clone the repo with git at the wanted ref, build with podman, push the image
//! to the platform registry and answer the pushed digest with the build's provenance.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kato_model::ImageRef;
use kato_model::plugin::DockerfileSource;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use crate::build_error::BuildError;
use crate::confine::{Resolved, resolve_inside};
use crate::process::{BuildLog, Containment, Finished, RunError, run, tool};
use crate::registry::is_loopback_registry;
use crate::resolve::Resolver;
use crate::retry::{Attempt, RetryPolicy, retrying};

/// How the [`Builder`] runs its tools.
/// Where buildah (`podman build`) records the digest of the image a build started from.
const BASE_DIGEST_ANNOTATION: &str = "org.opencontainers.image.base.digest";

#[derive(Debug, Clone)]

pub struct BuilderConfig {
    /// Where each build gets a scratch directory for its clone (removed after the build).
    pub work_dir: PathBuf,
    /// A containers.conf for podman (`CONTAINERS_CONF`), for hosts that need settings.
    pub containers_conf: Option<PathBuf>,
    /// A registry auth file (`auth.json`) podman uses to pull bases and push.
    pub authfile: Option<PathBuf>,
    /// The builder program (`podman`).
    pub program: String,
    /// Retries of a push that failed on the network (never of a failed build step).
    pub retry: RetryPolicy,
    /// Reads the pushed image's manifest back (what the builder recorded about its base); it
    /// needs the platform registry's credentials.
    pub registry: Resolver,
}

/// One build to run.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub source: DockerfileSource,
    /// Where the image goes: `registry[/namespace]/repository:tag`.
    pub target: String,
    /// Extra environment for git.
    pub git_env: Vec<(String, String)>,
    /// Credentials for registries (base images, the push) and git hosts (https repos), by host.
    /// They reach the tools through a private auth file and the environment, never the argv.
    pub credentials: Vec<crate::RegistryCredential>,
    /// The team's SSH keys by git host: an ssh repo is cloned with its host's key only.
    pub ssh_keys: Vec<crate::SshKey>,
    /// Whether the repo may be a directory on the server or a `file://` URL (git's file
    /// protocol is off otherwise).
    pub allow_local_repos: bool,
}

/// What a successful build made, and from what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// `registry/repository@sha256:…` as pushed.
    pub reference: String,
    pub digest: String,
    /// The commit the ref resolved to.
    pub commit: String,
    /// The Dockerfile path inside the repo.
    pub dockerfile: String,
    /// The final stage's base image and, when the builder knows it, its digest.
    pub base_image: Option<String>,
    pub base_image_digest: Option<String>,
}

/// Runs Dockerfile builds. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Builder {
    cfg: BuilderConfig,
    /// With a platform registry shared by every team: the Dockerfile may name images there
    /// only in the namespace the build pushes to.
    platform: Option<crate::PlatformScope>,
}

const INSPECT_TIMEOUT: Duration = Duration::from_secs(30);

impl Builder {
    pub fn new(cfg: BuilderConfig) -> Self {
        // Probed here, at start, rather than blocking the first build.
        crate::process::host_allows();
        Self { cfg, platform: None }
    }

    /// Keeps builds out of other teams' repositories in the platform registry: a Dockerfile
    /// that names one (`FROM`, `COPY --from`, `RUN --mount=from=`, an `ADD` URL) fails before
    /// the builder runs. A build's team is the directory of the platform it pushes to.
    pub fn confined_to(mut self, platform: crate::PlatformScope) -> Self {
        self.platform = Some(platform);
        self
    }

    /// Clones, builds and pushes. `cancel` stops whichever tool is running (its whole process
    /// group) and answers [`BuildError::Cancelled`].
    pub async fn build(
        &self,
        req: &BuildRequest,
        log: &BuildLog,
        cancel: &CancellationToken,
    ) -> Result<Built, BuildError> {
        std::fs::create_dir_all(&self.cfg.work_dir)
            .map_err(|e| BuildError::Tool(format!("cannot create {}: {e}", self.cfg.work_dir.display())))?;
        let scratch = tempfile::Builder::new()
            .prefix("build-")
            .tempdir_in(&self.cfg.work_dir)
            .map_err(|e| BuildError::Tool(format!("cannot create a build directory: {e}")))?;
        let repo_dir = scratch.path().join("repo");
        let src = &req.source;
        let authfile = write_authfile(scratch.path(), &req.credentials)?.or_else(|| self.cfg.authfile.clone());
        let commit = {
            // The SSH key's files go as soon as the clone is done.
            let git = crate::git::Git::prepare(req, scratch.path())?;
            crate::git::checkout(&git, req, &repo_dir, log, cancel).await?
        };
        // Both must be inside the checkout once symlinks are followed: a symlink committed to
        // the repo (`ctx -> /`) would otherwise hand the builder the server's own files.
        let dockerfile = match resolve_inside(&repo_dir, "source.dockerfile.path", &src.path)? {
            Resolved::Inside(p) if p.is_file() => p,
            _ => {
                return Err(BuildError::NoDockerfile {
                    repo: src.repo.clone(),
                    path: src.path.clone(),
                    commit,
                });
            }
        };
        let context = match resolve_inside(
            &repo_dir,
            "source.dockerfile.context",
            src.context.as_deref().unwrap_or("."),
        )? {
            Resolved::Inside(p) if p.is_dir() => p,
            _ => {
                return Err(BuildError::NoContext {
                    repo: src.repo.clone(),
                    context: src.context.clone().unwrap_or_default(),
                });
            }
        };
        self.check_references(req, &dockerfile, log)?;
        let base_image = std::fs::read_to_string(&dockerfile).ok().and_then(|t| final_base(&t));
        let image_id = self
            .podman_build(
                req,
                scratch.path(),
                &dockerfile,
                &context,
                authfile.as_deref(),
                log,
                cancel,
            )
            .await?;
        let digest = self
            .push(req, &image_id, scratch.path(), authfile.as_deref(), log, cancel)
            .await?;
        let reference = format!("{}@{digest}", strip_tag(&req.target));
        log.line(format!("pushed {reference}"));
        let base_image_digest = match &base_image {
            Some(base) => self.base_digest(&reference, base).await,
            None => None,
        };
        Ok(Built {
            reference,
            digest,
            commit,
            dockerfile: src.path.clone(),
            base_image,
            base_image_digest,
        })
    }

    /// Refuses a Dockerfile that names another team's repository in the platform registry.
    fn check_references(&self, req: &BuildRequest, dockerfile: &Path, log: &BuildLog) -> Result<(), BuildError> {
        let Some(platform) = &self.platform else {
            return Ok(());
        };
        let path = req.source.path.clone();
        // What the builder is handed: the name after symlinks.
        if dockerfile.extension().is_some_and(|e| e == "in") {
            return Err(BuildError::PreprocessedDockerfile { path });
        }
        let text = std::fs::read_to_string(dockerfile)
            .map_err(|e| BuildError::Tool(format!("cannot read the Dockerfile {path}: {e}")))?;
        let team = platform.team_of(&req.target).unwrap_or_default();
        let args = req
            .source
            .build_args
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let checked =
            crate::dockerfile_refs::check(&text, &args, platform, team).map_err(|r| BuildError::ForeignImage {
                path,
                line: r.line,
                instruction: r.instruction,
                why: r.why,
            })?;
        log.line(format!(
            "{checked} image reference(s) checked: none reaches another team's repository in the platform registry"
        ));
        Ok(())
    }

    /// Builds without a tag and answers the image ID. Builds of identical content made side by
    /// side (two versions, two replicas) share one image ID, and podman's read-modify-write of an
    /// image's names can then drop one build's tag under the other; an ID cannot be lost that way.
    #[allow(clippy::too_many_arguments)]
    async fn podman_build(
        &self,
        req: &BuildRequest,
        scratch: &Path,
        dockerfile: &Path,
        context: &Path,
        authfile: Option<&Path>,
        log: &BuildLog,
        cancel: &CancellationToken,
    ) -> Result<String, BuildError> {
        let iidfile = scratch.join("image-id");
        // Its RUN steps are containers, which leave podman's process group: only the PID
        // namespace takes them down with the server.
        let mut cmd = self.podman_contained(Containment::Namespace);
        cmd.arg("build")
            .arg("--layers")
            .arg("-f")
            .arg(dockerfile)
            .arg("--iidfile")
            .arg(&iidfile);
        self.registry_args(&mut cmd, req, authfile);
        for (k, v) in &req.source.build_args {
            cmd.arg("--build-arg").arg(format!("{k}={v}"));
        }
        cmd.arg(context);
        log.line(format!("building {} with {}", req.source.path, self.cfg.program));
        let done = run_tool(cmd, log, cancel).await?;
        if done.status.success() {
            let id = std::fs::read_to_string(&iidfile).unwrap_or_default();
            let id = id.trim().trim_start_matches("sha256:");
            if id.is_empty() {
                return Err(BuildError::Tool(format!(
                    "{} build succeeded but wrote no image ID",
                    self.cfg.program
                )));
            }
            return Ok(id.to_owned());
        }
        let last_lines: Vec<String> = done.tail.into_iter().collect();
        Err(BuildError::StepFailed {
            step: failed_step(&last_lines),
            last_lines,
        })
    }

    /// Pushes the image; a push that failed on the network (the builder's last lines say so) is
    /// tried again with the retry policy.
    async fn push(
        &self,
        req: &BuildRequest,
        image_id: &str,
        scratch: &Path,
        authfile: Option<&Path>,
        log: &BuildLog,
        cancel: &CancellationToken,
    ) -> Result<String, BuildError> {
        let digest_file = scratch.join("digest");
        let registry = req.target.split('/').next().unwrap_or(&req.target);
        log.line(format!("pushing {}", req.target));
        let attempt = || async {
            let _ = std::fs::remove_file(&digest_file);
            let mut cmd = self.podman();
            cmd.arg("push")
                .arg("--format")
                .arg("oci")
                .arg("--digestfile")
                .arg(&digest_file);
            self.registry_args(&mut cmd, req, authfile);
            cmd.arg(image_id).arg(format!("docker://{}", req.target));
            let done = run_tool(cmd, log, cancel).await.map_err(Attempt::fatal)?;
            let digest = std::fs::read_to_string(&digest_file).unwrap_or_default();
            let digest = digest.trim();
            if done.status.success() && digest.starts_with("sha256:") {
                return Ok(digest.to_owned());
            }
            let last_lines: Vec<String> = done.tail.into_iter().collect();
            let transient = (!done.status.success())
                .then(|| network_failure(&last_lines))
                .flatten()
                .map(|why| format!("registry `{registry}` unreachable ({why})"));
            Err(Attempt {
                error: BuildError::PushFailed {
                    target: req.target.clone(),
                    last_lines,
                },
                transient,
            })
        };
        tokio::select! {
            pushed = retrying(&self.cfg.retry, Some(log), attempt) => pushed,
            // Also while waiting to try again.
            () = cancel.cancelled() => Err(BuildError::Cancelled),
        }
    }

    /// The digest of the base a build used: what the builder recorded in the pushed manifest
    /// (exact even if the base's tag has moved since; one read from the registry), else what
    /// the engine holds under the base's name now (a podman call, which contends with other
    /// builds for podman's storage lock).
    async fn base_digest(&self, pushed: &str, base: &str) -> Option<String> {
        let recorded = match pushed.parse::<ImageRef>() {
            Ok(image) => match self.cfg.registry.annotations(&image).await {
                Ok(mut annotations) => annotations.remove(BASE_DIGEST_ANNOTATION),
                Err(e) => {
                    tracing::debug!(image = pushed, error = %e, "cannot read the pushed manifest's annotations");
                    None
                }
            },
            Err(_) => None,
        };
        match recorded {
            Some(d) if d.starts_with("sha256:") => Some(d),
            _ => self.image_digest(base).await,
        }
    }

    /// How podman reaches registries for this build: plain HTTP to a loopback platform registry,
    /// and the build's auth file.
    fn registry_args(&self, cmd: &mut Command, req: &BuildRequest, authfile: Option<&Path>) {
        if self.insecure(&req.target) {
            cmd.arg("--tls-verify=false");
        }
        if let Some(a) = authfile {
            cmd.arg("--authfile").arg(a);
        }
    }

    /// The repo digest podman recorded for a local image, if any.
    async fn image_digest(&self, image: &str) -> Option<String> {
        let mut cmd = self.podman();
        cmd.args(["image", "inspect", "--format", "{{.Digest}}", image]);
        let out = tokio::time::timeout(INSPECT_TIMEOUT, cmd.output()).await.ok()?.ok()?;
        let d = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (out.status.success() && d.starts_with("sha256:")).then_some(d)
    }

    fn insecure(&self, target: &str) -> bool {
        is_loopback_registry(target.split('/').next().unwrap_or(target))
    }

    fn podman(&self) -> Command {
        self.podman_contained(Containment::DeathSignal)
    }

    fn podman_contained(&self, containment: Containment) -> Command {
        let mut cmd = tool(&self.cfg.program, containment);
        if let Some(conf) = &self.cfg.containers_conf {
            cmd.env("CONTAINERS_CONF", conf);
        }
        cmd.kill_on_drop(true);
        cmd
    }
}

/// A podman auth file (mode 0600) in the build's scratch dir, when there are credentials.
fn write_authfile(dir: &Path, credentials: &[crate::RegistryCredential]) -> Result<Option<PathBuf>, BuildError> {
    if credentials.is_empty() {
        return Ok(None);
    }
    let mut auths = serde_json::Map::new();
    for c in credentials {
        let token = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{}:{}", c.username, c.password),
        );
        auths.insert(c.registry.clone(), serde_json::json!({ "auth": token }));
    }
    let path = dir.join("auth.json");
    let text = serde_json::json!({ "auths": auths }).to_string();
    let mut options = std::fs::OpenOptions::new();
    std::os::unix::fs::OpenOptionsExt::mode(options.write(true).create_new(true), 0o600);
    let written = options
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
    written.map_err(|e| BuildError::Tool(format!("cannot write the build's auth file: {e}")))?;
    Ok(Some(path))
}

pub(crate) async fn run_tool(cmd: Command, log: &BuildLog, cancel: &CancellationToken) -> Result<Finished, BuildError> {
    run(cmd, log, cancel).await.map_err(|e| match e {
        RunError::Cancelled => BuildError::Cancelled,
        other => BuildError::Tool(other.to_string()),
    })
}

/// The final stage's `FROM` image (None for `scratch` or a stage name).
pub fn final_base(dockerfile: &str) -> Option<String> {
    let mut stages = Vec::new();
    let mut base = None;
    for line in dockerfile.lines() {
        let mut words = line.split_whitespace();
        if !words.next().is_some_and(|w| w.eq_ignore_ascii_case("FROM")) {
            continue;
        }
        let rest: Vec<&str> = words.filter(|w| !w.starts_with("--")).collect();
        let image = rest.first().map(|s| (*s).to_owned());
        if let (Some(_), Some(as_kw), Some(name)) = (rest.first(), rest.get(1), rest.get(2))
            && as_kw.eq_ignore_ascii_case("as")
        {
            stages.push((*name).to_owned());
        }
        base = image;
    }
    base.filter(|b| b != "scratch" && !stages.contains(b))
}

/// The step a failed podman build names (`building at STEP "RUN false"`), or its last STEP line.
fn failed_step(lines: &[String]) -> String {
    for l in lines.iter().rev() {
        if let Some(rest) = l.split_once("building at STEP \"").map(|(_, r)| r)
            && let Some((step, _)) = rest.split_once('"')
        {
            return step.to_owned();
        }
    }
    lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("STEP "))
        .map_or_else(|| "the builder failed".to_owned(), |s| format!("STEP {s}"))
}

/// What the builder's last lines say went wrong on the network, if that is why it failed:
/// a refused or reset connection, a timeout, a registry answering 429 or 5xx, or a registry
/// that lost track of a blob while pushes of the same content crossed (docker-registry answers
/// the manifest with `blob unknown` then; pushing again succeeds).
fn network_failure(last_lines: &[String]) -> Option<&'static str> {
    const SIGNS: [(&str, &str); 12] = [
        (
            "blob unknown to registry",
            "the registry lost a blob while another push of the same content crossed",
        ),
        ("connection refused", "connection refused"),
        ("connection reset", "the connection was reset"),
        ("i/o timeout", "i/o timeout"),
        ("tls handshake timeout", "TLS handshake timeout"),
        ("unexpected eof", "the connection was closed"),
        ("too many requests", "HTTP 429 too many requests"),
        ("bad gateway", "HTTP 502 bad gateway"),
        ("service unavailable", "HTTP 503 service unavailable"),
        ("gateway timeout", "HTTP 504 gateway timeout"),
        ("unexpected http status: 5", "an HTTP 5xx status"),
        ("status code from registry 5", "an HTTP 5xx status"),
    ];
    // The error is told last; earlier lines may be the builder's own retries or unrelated.
    let error = last_lines.iter().rev().filter(|l| !l.trim().is_empty()).take(3);
    let text = error.map(|l| l.to_ascii_lowercase()).collect::<Vec<_>>().join("\n");
    SIGNS
        .iter()
        .find(|(sign, _)| text.contains(sign))
        .map(|(_, words)| *words)
}

/// `host/ns/repo:tag` → `host/ns/repo` (a port's colon is not a tag).
fn strip_tag(target: &str) -> &str {
    match target.rsplit_once(':') {
        Some((head, tag)) if !tag.contains('/') => head,
        _ => target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_stage_base_is_found() {
        assert_eq!(final_base("FROM a:1\nRUN x\n").as_deref(), Some("a:1"));
        assert_eq!(
            final_base("FROM --platform=linux/amd64 a:1 AS b\nFROM c\n").as_deref(),
            Some("c")
        );
        assert_eq!(final_base("FROM a AS b\nFROM b\n"), None);
        assert_eq!(final_base("FROM scratch\n"), None);
    }

    #[test]
    fn the_failed_step_is_named() {
        let lines = vec![
            "STEP 2/3: RUN false".to_owned(),
            "Error: building at STEP \"RUN false\": while running runtime: exit status 1".to_owned(),
        ];
        assert_eq!(failed_step(&lines), "RUN false");
        assert_eq!(failed_step(&lines[..1]), "STEP 2/3: RUN false");
    }

    #[test]
    fn only_network_failures_of_a_push_are_worth_another_attempt() {
        let lines = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let refused = lines(&[
            "Copying blob sha256:5dfb",
            "Error: trying to reuse blob sha256:5dfb at destination: pinging container registry \
             127.0.0.1:9: Get \"http://127.0.0.1:9/v2/\": dial tcp 127.0.0.1:9: connect: connection refused",
        ]);
        assert_eq!(network_failure(&refused), Some("connection refused"));
        let crossed: Vec<String> = [
            "Writing manifest to image destination",
            "Error: writing manifest: uploading manifest v1 to 127.0.0.1:36055/platform/demo/many: errors:",
            "digest invalid",
            "manifest blob unknown: blob unknown to registry",
        ]
        .map(String::from)
        .to_vec();
        assert!(network_failure(&crossed).is_some_and(|w| w.contains("lost a blob")));
        let unavailable = lines(&[
            "Error: writing blob: initiating layer upload to /v2/t/p/blobs/uploads/ in 127.0.0.1:5000: \
             received unexpected HTTP status: 503 Service Unavailable",
        ]);
        assert_eq!(network_failure(&unavailable), Some("HTTP 503 service unavailable"));
        let ping = lines(&[
            "Error: trying to reuse blob sha256:5dfb at destination: pinging container registry \
             127.0.0.1:37891: invalid status code from registry 500 (Internal Server Error)",
        ]);
        assert_eq!(network_failure(&ping), Some("an HTTP 5xx status"));
        let denied = lines(&[
            "Error: writing blob: initiating layer upload to /v2/t/p/blobs/uploads/ in 127.0.0.1:5000: \
             requested access to the resource is denied",
        ]);
        assert_eq!(network_failure(&denied), None);
        let unauthorized = lines(&["Error: authenticating creds for \"127.0.0.1:5000\": unauthorized"]);
        assert_eq!(network_failure(&unauthorized), None);
    }

    #[test]
    fn tags_are_stripped_but_ports_kept() {
        assert_eq!(strip_tag("127.0.0.1:5000/t/p:v1"), "127.0.0.1:5000/t/p");
        assert_eq!(strip_tag("127.0.0.1:5000/t/p"), "127.0.0.1:5000/t/p");
    }
}
