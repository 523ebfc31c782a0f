//! Running a build tool (git, podman) as its own process group: every output line goes to the
//! build log, the last lines are kept for error messages, and cancel kills the whole group.
//!
//! No tool outlives the server, even one killed with SIGKILL (no destructor runs then). Tools are
//! started through util-linux's `setpriv --pdeathsig KILL`, so the kernel kills them when the
//! server goes; and the builder, whose `RUN` steps run in containers that leave its process group
//! and session, is started as the first process of a PID namespace of its own
//! (`unshare --pid --fork --mount-proc --kill-child`): when it dies, the kernel kills everything
//! in that namespace, the containers' processes included. Both wrappers are programs, not code
//! run between fork and exec, so the crate stays free of `unsafe`.
//!
//! The kernel sends the death signal when the *thread* that started the process exits, not the
//! process. Tools are started from async tasks, which run on the runtime's worker threads (or the
//! thread blocking on a current-thread runtime); those live as long as the runtime. Never start
//! one from `spawn_blocking`, whose threads exit when idle and would take the tool with them.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;

use rustix::process::{Pid, Signal, kill_process_group};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

/// How many of a tool's last output lines an error message quotes.
pub const TAIL_LINES: usize = 12;

/// Where build output goes, one line at a time (the server timestamps and stores them).
#[derive(Clone)]
pub struct BuildLog {
    tx: UnboundedSender<String>,
}

impl BuildLog {
    pub fn new(tx: UnboundedSender<String>) -> Self {
        Self { tx }
    }

    pub fn line(&self, line: impl Into<String>) {
        // A closed receiver means nobody records the log any more: the build goes on.
        let _ = self.tx.send(line.into());
    }
}

/// A finished tool run.
pub struct Finished {
    pub status: ExitStatus,
    /// The last output lines (stdout and stderr interleaved as they came).
    pub tail: VecDeque<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start `{program}`: {source}: install it on the Kato server")]
    Spawn { program: String, source: std::io::Error },
    #[error("stopped")]
    Cancelled,
    #[error("reading the output of `{program}`: {source}")]
    Io { program: String, source: std::io::Error },
}

/// Kills the process group when dropped: a build future dropped half-way (server shutdown, a
/// panic) leaves no builder behind.
struct Group(Option<Pid>);

impl Group {
    fn kill(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = kill_process_group(pid, Signal::KILL);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How closely a tool is tied to the server's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Containment {
    /// Killed when the server dies (`setpriv --pdeathsig KILL`).
    DeathSignal,
    /// Also its whole PID namespace, containers included (`unshare --pid … --kill-child`).
    Namespace,
}

/// What this host allows, probed once: a PID namespace needs CAP_SYS_ADMIN, and both need
/// util-linux's `setpriv` and `unshare`.
pub(crate) fn host_allows() -> Option<Containment> {
    static ALLOWED: OnceLock<Option<Containment>> = OnceLock::new();
    *ALLOWED.get_or_init(|| {
        let works = |args: &[&str]| {
            std::process::Command::new(args[0])
                .args(&args[1..])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let allowed = if works(&[
            SETPRIV,
            DEATH_SIGNAL[0],
            DEATH_SIGNAL[1],
            "--",
            UNSHARE,
            NAMESPACE[0],
            NAMESPACE[1],
            NAMESPACE[2],
            NAMESPACE[3],
            "--",
            "true",
        ]) {
            Some(Containment::Namespace)
        } else if works(&[SETPRIV, DEATH_SIGNAL[0], DEATH_SIGNAL[1], "--", "true"]) {
            Some(Containment::DeathSignal)
        } else {
            None
        };
        match allowed {
            Some(c) => tracing::debug!(containment = ?c, "build tools are tied to the server's life"),
            None => tracing::warn!(
                "neither `unshare --pid` nor `setpriv --pdeathsig` works here (install util-linux, run as \
                 root for PID namespaces): build tools of a server killed mid-build may outlive it"
            ),
        }
        allowed
    })
}

const SETPRIV: &str = "setpriv";
const DEATH_SIGNAL: [&str; 2] = ["--pdeathsig", "KILL"];
const UNSHARE: &str = "unshare";
const NAMESPACE: [&str; 4] = ["--pid", "--fork", "--mount-proc", "--kill-child=KILL"];

/// A command for `program` that dies with the server, as closely as `wanted` and the host allow.
/// A program that is not installed is started directly, so that starting it fails with its name.
pub fn tool(program: &str, wanted: Containment) -> Command {
    let allowed = host_allows();
    if allowed.is_none() || on_path(program).is_none() {
        return Command::new(program);
    }
    let mut cmd = Command::new(SETPRIV);
    cmd.args(DEATH_SIGNAL).arg("--");
    if wanted == Containment::Namespace && allowed == Some(Containment::Namespace) {
        cmd.arg(UNSHARE).args(NAMESPACE).arg("--");
    }
    cmd.arg(program);
    cmd
}

fn on_path(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program)).filter(|p| p.is_file());
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Lines a tool prints that say nothing about the build (podman on hosts without syslog).
fn is_noise(line: &str) -> bool {
    line.contains("failed to connect to syslog")
}

/// Runs `cmd` to completion, logging its output; `cancel` kills its process group.
pub async fn run(mut cmd: Command, log: &BuildLog, cancel: &CancellationToken) -> Result<Finished, RunError> {
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| RunError::Spawn {
        program: program.clone(),
        source,
    })?;
    let mut group = Group(child.id().and_then(|id| Pid::from_raw(id as i32)));
    let (lines_tx, mut lines) = tokio::sync::mpsc::channel::<std::io::Result<String>>(256);
    forward(child.stdout.take(), lines_tx.clone());
    forward(child.stderr.take(), lines_tx);
    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    let io = |source| RunError::Io {
        program: program.clone(),
        source,
    };
    loop {
        let line = tokio::select! {
            () = cancel.cancelled() => {
                group.kill();
                let _ = child.wait().await;
                return Err(RunError::Cancelled);
            }
            l = lines.recv() => match l {
                None => break,
                Some(l) => l.map_err(io)?,
            },
        };
        if is_noise(&line) {
            continue;
        }
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.clone());
        log.line(line);
    }
    let status = tokio::select! {
        () = cancel.cancelled() => {
            group.kill();
            let _ = child.wait().await;
            return Err(RunError::Cancelled);
        }
        s = child.wait() => s.map_err(io)?,
    };
    // The leader exited; helpers it left in the group must not outlive the build.
    group.kill();
    Ok(Finished { status, tail })
}

/// Sends each line of `stream` to `to` until it closes.
fn forward<R>(stream: Option<R>, to: tokio::sync::mpsc::Sender<std::io::Result<String>>)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    let Some(stream) = stream else { return };
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf).await {
                Ok(0) => return,
                Ok(_) => {
                    // Progress bars redraw with \r: keep what the line ended as.
                    let text = String::from_utf8_lossy(&buf);
                    let text = text.trim_end_matches(['\n', '\r']);
                    let text = text.rsplit('\r').next().unwrap_or(text).to_owned();
                    if to.send(Ok(text)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = to.send(Err(e)).await;
                    return;
                }
            }
        }
    });
}
