//! On one machine with no `--registry`, Kato runs Debian's `docker-registry` on loopback as the
//! platform registry, storing in the data dir, and stops it when the server stops.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const BINARY: &str = "docker-registry";
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
    if tokio::net::TcpStream::connect(addr).await.is_ok() {
        // Left by a previous run that was killed: the same storage, so the same images.
        tracing::info!(%addr, "a registry already answers on the local registry address; using it");
        return Ok(Some(LocalRegistry { _child: None, addr }));
    }
    let Some(binary) = find(BINARY) else {
        return Ok(None);
    };
    let dir = data_dir.join("registry");
    let io = |source| LocalRegistryError::Io {
        path: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir.join("storage")).map_err(io)?;
    let config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
        serde_json::Value::from(dir.join("storage").display().to_string())
    );
    let config_path = dir.join("config.yml");
    std::fs::write(&config_path, config).map_err(io)?;
    let log_path = dir.join("registry.log");
    let log = std::fs::File::create(&log_path).map_err(io)?;
    let child = tokio::process::Command::new(binary)
        .arg("serve")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(io)?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(io)?;
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

fn find(binary: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(binary))
        .find(|p| p.is_file())
}
