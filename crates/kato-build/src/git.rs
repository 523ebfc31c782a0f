//! The clone of a Dockerfile source: git, run with the team's credentials only, at the wanted ref.
//!
//! git never acts as the server's user: it reads no system or global config and no credential
//! helper, has an empty home and no terminal, never runs `ext::` transports, reads local
//! repos only when the build allows them, and reaches ssh repos only with the team's own key and
//! known_hosts (never the server's keys, never trusting a new host key).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use kato_model::plugin::RepoKind;

use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use crate::build_error::BuildError;
use crate::dockerfile::{BuildRequest, run_tool};
use crate::process::{BuildLog, Containment, tool};

/// An SSH key a team gave for a git host, and the known_hosts line(s) that vouch for the host.
/// `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct SshKey {
    /// The host as the repo URL names it (`git.example.com`, `git.example.com:2222`).
    pub host: String,
    /// The user to log in as when the URL names none.
    pub username: String,
    pub private_key: String,
    pub known_hosts: String,
}

impl std::fmt::Debug for SshKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshKey")
            .field("host", &self.host)
            .field("username", &self.username)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

/// How git runs for one build: its empty home, and the team's SSH key for an ssh repo (files
/// of mode 0600 in a directory removed when this is dropped, right after the clone).
pub(crate) struct Git {
    home: PathBuf,
    allow_local: bool,
    ssh_command: Option<String>,
    _ssh_dir: Option<tempfile::TempDir>,
}

impl Git {
    /// Prepares git for `req` in the build's `scratch` dir; refuses a local repo the build may not
    /// read and an ssh repo the team has no key for.
    pub(crate) fn prepare(req: &BuildRequest, scratch: &Path) -> Result<Git, BuildError> {
        let src = &req.source;
        let kind = src.repo_kind().map_err(|e| BuildError::Tool(e.to_string()))?;
        let home = scratch.join("home");
        std::fs::create_dir_all(&home).map_err(|e| BuildError::Tool(format!("cannot create git's home: {e}")))?;
        let mut git = Git {
            home,
            allow_local: req.allow_local_repos,
            ssh_command: None,
            _ssh_dir: None,
        };
        match kind {
            RepoKind::Local if !req.allow_local_repos => {
                return Err(BuildError::LocalRepoRefused { repo: src.repo.clone() });
            }
            RepoKind::Ssh { host } => {
                let Some(key) = req.ssh_keys.iter().find(|k| k.host == host) else {
                    return Err(BuildError::NoSshCredential {
                        repo: src.repo.clone(),
                        host,
                    });
                };
                let dir = tempfile::Builder::new()
                    .prefix("ssh-")
                    .tempdir_in(scratch)
                    .map_err(|e| BuildError::Tool(format!("cannot create the SSH key's directory: {e}")))?;
                git.ssh_command = Some(ssh_command(dir.path(), key)?);
                git._ssh_dir = Some(dir);
            }
            _ => {}
        }
        Ok(git)
    }

    /// A git command in `dir` (or none), with this build's environment and nothing of the
    /// server's.
    fn command(&self, req: &BuildRequest, dir: Option<&Path>) -> Command {
        let mut cmd = tool("git", Containment::DeathSignal);
        if let Some(d) = dir {
            cmd.arg("-C").arg(d);
        }
        let file = if self.allow_local { "always" } else { "never" };
        cmd.arg("-c")
            .arg(format!("protocol.file.allow={file}"))
            .args(["-c", "protocol.ext.allow=never"]);
        cmd.env_clear();
        for keep in ["PATH", "TMPDIR", "LANG"] {
            if let Some(v) = std::env::var_os(keep) {
                cmd.env(keep, v);
            }
        }
        cmd.env("HOME", &self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            // Never wait on a prompt: a build has no terminal.
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", "/bin/false")
            .env("SSH_ASKPASS", "/bin/false")
            .env(
                "GIT_SSH_COMMAND",
                self.ssh_command.as_deref().unwrap_or(
                    // No key: ssh must fail rather than try the server's own identity.
                    "ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityFile=none \
                     -o IdentityAgent=none -o StrictHostKeyChecking=yes -o UserKnownHostsFile=/dev/null \
                     -o GlobalKnownHostsFile=/dev/null",
                ),
            )
            .envs(req.git_env.iter().map(|(k, v)| (k, v)))
            .envs(git_credentials(&req.source.repo, &req.credentials))
            .kill_on_drop(true);
        cmd
    }
}

/// Writes the key and the known_hosts (mode 0600) into `dir` and answers the ssh command git
/// runs: that key only, that known_hosts only, no agent, no config file, no new host keys.
fn ssh_command(dir: &Path, key: &SshKey) -> Result<String, BuildError> {
    let mut private_key = key.private_key.clone();
    if !private_key.ends_with('\n') {
        private_key.push('\n');
    }
    let identity = dir.join("id");
    let known_hosts = dir.join("known_hosts");
    write_private(&identity, &private_key)?;
    write_private(&known_hosts, &format!("{}\n", key.known_hosts.trim_end()))?;
    let mut cmd = format!(
        "ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o IdentityAgent=none -o BatchMode=yes \
         -o StrictHostKeyChecking=yes -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null",
        quote(&identity.display().to_string()),
        quote(&known_hosts.display().to_string()),
    );
    if !key.username.is_empty() {
        cmd.push_str(&format!(" -l {}", quote(&key.username)));
    }
    Ok(cmd)
}

fn write_private(path: &Path, text: &str) -> Result<(), BuildError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true).mode(0o600);
    options
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| BuildError::Tool(format!("cannot write {}: {e}", path.display())))
}

/// `s` quoted for the shell git runs `GIT_SSH_COMMAND` with.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Clones the repo into `dir` and checks out the ref; answers the commit.
pub(crate) async fn checkout(
    git: &Git,
    req: &BuildRequest,
    dir: &Path,
    log: &BuildLog,
    cancel: &CancellationToken,
) -> Result<String, BuildError> {
    let src = &req.source;
    log.line(format!("cloning {}", src.repo));
    let mut clone = git.command(req, None);
    clone
        .arg("clone")
        .arg("--no-checkout")
        .arg("--")
        .arg(&src.repo)
        .arg(dir);
    let done = run_tool(clone, log, cancel).await?;
    if !done.status.success() {
        return Err(BuildError::RepoUnreachable {
            repo: src.repo.clone(),
            detail: done
                .tail
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .cloned()
                .unwrap_or_default(),
        });
    }
    let wanted = src.git_ref.as_deref().unwrap_or("HEAD");
    let mut commit = None;
    for candidate in ref_candidates(wanted) {
        let mut rev = git.command(req, Some(dir));
        rev.args(["rev-parse", "--verify", "--quiet", &format!("{candidate}^{{commit}}")]);
        let out = rev
            .output()
            .await
            .map_err(|e| BuildError::Tool(format!("cannot run git: {e}: install git on the Kato server")))?;
        if out.status.success() {
            commit = Some(String::from_utf8_lossy(&out.stdout).trim().to_owned());
            break;
        }
    }
    let Some(commit) = commit else {
        return Err(BuildError::RefNotFound {
            repo: src.repo.clone(),
            git_ref: wanted.to_owned(),
        });
    };
    log.line(format!("checking out {wanted} at {commit}"));
    let mut co = git.command(req, Some(dir));
    co.args([
        "-c",
        "advice.detachedHead=false",
        "checkout",
        "--quiet",
        "--detach",
        &commit,
    ]);
    let done = run_tool(co, log, cancel).await?;
    if !done.status.success() {
        return Err(BuildError::Tool(format!(
            "git could not check out {commit}: {}",
            done.tail.into_iter().collect::<Vec<_>>().join("\n")
        )));
    }
    Ok(commit)
}

/// Git configuration through the environment (not the argv, not the log) that sends the
/// credential for an https repo's host.
fn git_credentials(repo: &str, credentials: &[crate::RegistryCredential]) -> Vec<(String, String)> {
    let Some(rest) = repo.strip_prefix("https://") else {
        return Vec::new();
    };
    let host = rest.split('/').next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let Some(c) = credentials.iter().find(|c| c.registry == host) else {
        return Vec::new();
    };
    let token = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{}:{}", c.username, c.password),
    );
    vec![
        ("GIT_CONFIG_COUNT".into(), "1".into()),
        ("GIT_CONFIG_KEY_0".into(), format!("http.https://{host}/.extraHeader")),
        ("GIT_CONFIG_VALUE_0".into(), format!("Authorization: Basic {token}")),
    ]
}

/// Where a ref name may live after a clone: a branch is a remote-tracking ref, a tag a tag, and
/// anything else (a commit) is taken as written.
fn ref_candidates(wanted: &str) -> Vec<String> {
    if wanted == "HEAD" {
        return vec!["HEAD".into()];
    }
    vec![
        format!("refs/remotes/origin/{wanted}"),
        format!("refs/tags/{wanted}"),
        wanted.to_owned(),
    ]
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use kato_model::plugin::DockerfileSource;

    use super::*;

    fn request(repo: &str, ssh_keys: Vec<SshKey>, allow_local_repos: bool) -> BuildRequest {
        BuildRequest {
            source: DockerfileSource {
                repo: repo.into(),
                git_ref: None,
                path: "Dockerfile".into(),
                context: None,
                build_args: Default::default(),
            },
            target: "127.0.0.1:5000/t/p:v1".into(),
            git_env: vec![],
            credentials: vec![],
            ssh_keys,
            allow_local_repos,
        }
    }

    fn key(host: &str) -> SshKey {
        SshKey {
            host: host.into(),
            username: "git".into(),
            private_key: "-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n-----END OPENSSH PRIVATE KEY-----".into(),
            known_hosts: "git.example.com ssh-ed25519 AAAAC3Nza".into(),
        }
    }

    #[test]
    fn local_repos_are_read_only_when_the_build_allows_them() {
        let dir = tempfile::tempdir().unwrap();
        for repo in ["/srv/repo", "file:///srv/repo", "relative/dir"] {
            let refused = Git::prepare(&request(repo, vec![], false), dir.path()).err();
            assert!(
                matches!(refused, Some(BuildError::LocalRepoRefused { .. })),
                "{repo}: {refused:?}"
            );
            assert!(Git::prepare(&request(repo, vec![], true), dir.path()).is_ok());
        }
    }

    #[test]
    fn an_ssh_repo_needs_the_teams_key_for_its_host() {
        let dir = tempfile::tempdir().unwrap();
        let req = request(
            "git@git.example.com:team/agent.git",
            vec![key("other.example.com")],
            false,
        );
        let Err(e) = Git::prepare(&req, dir.path()) else {
            panic!("refused")
        };
        assert!(matches!(&e, BuildError::NoSshCredential { host, .. } if host == "git.example.com"));
        assert!(e.to_string().contains("--ssh-key FILE --known-hosts FILE"), "{e}");
    }

    #[test]
    fn an_ssh_clone_uses_only_the_teams_key_and_known_hosts_which_go_after() {
        let dir = tempfile::tempdir().unwrap();
        let req = request(
            "ssh://git.example.com/team/agent.git",
            vec![key("git.example.com")],
            false,
        );
        let git = Git::prepare(&req, dir.path()).unwrap();
        let ssh = git.ssh_command.clone().unwrap();
        for option in [
            "-F /dev/null",
            "-o IdentitiesOnly=yes",
            "-o IdentityAgent=none",
            "-o StrictHostKeyChecking=yes",
            "-o GlobalKnownHostsFile=/dev/null",
            "-l 'git'",
        ] {
            assert!(ssh.contains(option), "{option} in {ssh}");
        }
        assert!(!ssh.contains("accept-new"), "{ssh}");
        let ssh_dir = git._ssh_dir.as_ref().unwrap().path().to_owned();
        for file in ["id", "known_hosts"] {
            let path = ssh_dir.join(file);
            assert!(ssh.contains(&format!("'{}'", path.display())), "{ssh}");
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{file}");
        }
        let key_text = std::fs::read_to_string(ssh_dir.join("id")).unwrap();
        assert!(key_text.ends_with("-----END OPENSSH PRIVATE KEY-----\n"));
        drop(git);
        assert!(!ssh_dir.exists(), "the key and known_hosts are removed after the clone");
    }

    #[test]
    fn git_reads_nothing_of_the_servers_user() {
        let dir = tempfile::tempdir().unwrap();
        let req = request("https://git.example.com/a.git", vec![], false);
        let git = Git::prepare(&req, dir.path()).unwrap();
        let cmd = git.command(&req, None);
        let cmd = cmd.as_std();
        let envs: std::collections::BTreeMap<_, _> = cmd
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        let env = |k: &str| envs.get(k).cloned().flatten();
        assert_eq!(env("GIT_CONFIG_NOSYSTEM").as_deref(), Some("1"));
        assert_eq!(env("GIT_CONFIG_GLOBAL").as_deref(), Some("/dev/null"));
        assert_eq!(env("GIT_TERMINAL_PROMPT").as_deref(), Some("0"));
        assert_eq!(env("HOME"), Some(dir.path().join("home").display().to_string()));
        assert!(env("SSH_AUTH_SOCK").is_none() && env("XDG_CONFIG_HOME").is_none());
        let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(
            args.windows(2).any(|w| w == ["-c", "protocol.file.allow=never"]),
            "{args:?}"
        );
        assert!(
            args.windows(2).any(|w| w == ["-c", "protocol.ext.allow=never"]),
            "{args:?}"
        );
        let ssh = env("GIT_SSH_COMMAND").unwrap();
        assert!(
            ssh.contains("StrictHostKeyChecking=yes") && ssh.contains("IdentityAgent=none"),
            "{ssh}"
        );
    }
}
