//! On one machine with no `--registry`, Kato runs Debian's `docker-registry` on loopback as the
//! platform registry, storing in the data dir, and stops it when the server stops.
//!
//! It dies with the server even when the server is killed (`setpriv --pdeathsig KILL`; it is
//! started from the thread that runs `kato serve`'s main future, which lives as long as the
//! server). Its pid is kept in `registry/registry.pid`: a registry that a previous run left
//! running anyway (a host without `setpriv`) is stopped at start.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const BINARY: &str = "docker-registry";
const SETPRIV: &str = "setpriv";
/// How long a stale registry gets to go after SIGKILL.
const REAP_DEADLINE: Duration = Duration::from_secs(10);
const START_DEADLINE: Duration = Duration::from_secs(15);

/// The running registry; killed on drop.
pub struct LocalRegistry {
    _child: Option<tokio::process::Child>,
    pub addr: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum LocalRegistryError {
    #[error("cannot prepare the local registry in {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(
        "the local registry did not start on {addr} (see {log}): pick another address with --local-registry, or give --registry"
    )]
    NotStarted { addr: SocketAddr, log: String },
}

/// Starts the registry on `addr` (loopback only); `None` when `docker-registry` is not installed.
pub async fn start(data_dir: &Path, addr: SocketAddr) -> Result<Option<LocalRegistry>, LocalRegistryError> {
    let dir = data_dir.join("registry");
    let config_path = dir.join("config.yml");
    let pid_path = dir.join("registry.pid");
    reap_stale(&pid_path, &config_path).await;
    if tokio::net::TcpStream::connect(addr).await.is_ok() {
        // Left by a previous run that was killed: the same storage, so the same images.
        tracing::info!(%addr, "a registry already answers on the local registry address; using it");
        return Ok(Some(LocalRegistry { _child: None, addr }));
    }
    let Some(binary) = find(BINARY) else {
        return Ok(None);
    };
    let io = |source| LocalRegistryError::Io {
        path: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir.join("storage")).map_err(io)?;
    let config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
        serde_json::Value::from(dir.join("storage").display().to_string())
    );
    crate::files::write_private_bytes(&config_path, config.as_bytes()).map_err(io)?;
    let log_path = dir.join("registry.log");
    let log = crate::files::create_private(&log_path).map_err(io)?;
    let mut cmd = match find(SETPRIV) {
        Some(setpriv) => {
            let mut c = tokio::process::Command::new(setpriv);
            c.args(["--pdeathsig", "KILL", "--"]).arg(&binary);
            c
        }
        None => tokio::process::Command::new(&binary),
    };
    let child = cmd
        .arg("serve")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(io)?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(io)?;
    if let Some(pid) = child.id() {
        crate::files::write_private_bytes(&pid_path, pid.to_string().as_bytes()).map_err(io)?;
    }
    let deadline = Instant::now() + START_DEADLINE;
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if Instant::now() > deadline {
            return Err(LocalRegistryError::NotStarted {
                addr,
                log: log_path.display().to_string(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Some(LocalRegistry {
        _child: Some(child),
        addr,
    }))
}

/// Stops the registry a previous run started, if it still runs: the pid in the pid file, when
/// that process is `docker-registry` serving this data dir's config (a reused pid is left alone).
async fn reap_stale(pid_path: &Path, config_path: &Path) {
    let Some(pid) = std::fs::read_to_string(pid_path)
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
    else {
        return;
    };
    let is_ours = |pid: i32| {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let config = config_path.as_os_str().as_encoded_bytes();
        args.iter().any(|a| a.ends_with(BINARY.as_bytes())) && args.contains(&config)
    };
    let Some(process) = rustix::process::Pid::from_raw(pid).filter(|_| is_ours(pid)) else {
        let _ = std::fs::remove_file(pid_path);
        return;
    };
    tracing::info!(
        pid,
        "stopping the local registry a previous run of the server left running"
    );
    let _ = rustix::process::kill_process(process, rustix::process::Signal::KILL);
    let deadline = Instant::now() + REAP_DEADLINE;
    // Gone, or a zombie its parent has yet to reap (it no longer holds the port).
    while is_ours(pid) && !is_zombie(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = std::fs::remove_file(pid_path);
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

fn find(binary: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(binary))
        .find(|p| p.is_file())
}
