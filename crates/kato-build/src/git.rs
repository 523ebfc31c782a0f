//! The clone of a Dockerfile source: git, run with the build's credentials, at the wanted ref.

use std::path::Path;

use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use crate::build_error::BuildError;
use crate::dockerfile::{BuildRequest, run_tool};
use crate::process::{BuildLog, Containment, tool};

/// Clones the repo into `dir` and checks out the ref; answers the commit.
pub(crate) async fn checkout(
    req: &BuildRequest,
    dir: &Path,
    log: &BuildLog,
    cancel: &CancellationToken,
) -> Result<String, BuildError> {
    let src = &req.source;
    log.line(format!("cloning {}", src.repo));
    let mut clone = git(req, None);
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
        let mut rev = git(req, Some(dir));
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
    let mut co = git(req, Some(dir));
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

fn git(req: &BuildRequest, dir: Option<&Path>) -> Command {
    let mut cmd = tool("git", Containment::DeathSignal);
    if let Some(d) = dir {
        cmd.arg("-C").arg(d);
    }
    // Never wait on a prompt: a build has no terminal.
    cmd.env("GIT_TERMINAL_PROMPT", "0")
        .env(
            "GIT_SSH_COMMAND",
            "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
        )
        .envs(req.git_env.iter().map(|(k, v)| (k, v)))
        .envs(git_credentials(&req.source.repo, &req.credentials))
        .kill_on_drop(true);
    cmd
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
