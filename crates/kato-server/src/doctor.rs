//! What the chosen target and builds need from this machine, checked one by one, each failure
//! with the command that fixes it. `kato doctor` prints them; `kato serve` logs the failures at
//! start, instead of failing later inside a deploy or a build.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::{Config, TargetKind, choose_target};

/// Bound on each probe (a command, a connection).
const PROBE: Duration = Duration::from_secs(10);
/// Where podman looks for its helper binaries besides `PATH` (containers.conf `helper_binaries_dir`).
const HELPER_DIRS: [&str; 4] = [
    "/usr/local/libexec/podman",
    "/usr/local/lib/podman",
    "/usr/libexec/podman",
    "/usr/lib/podman",
];

/// What a server started with some configuration needs.
#[derive(Debug, Clone)]
pub struct Needs {
    pub target: TargetKind,
    pub data_dir: PathBuf,
    /// The platform registry builds push to (`host[:port]`), if any.
    pub registry: Option<String>,
    /// The loopback address of the registry `kato serve` runs itself, when it runs one.
    pub local_registry: Option<SocketAddr>,
}

impl Needs {
    pub fn of(config: &Config) -> Self {
        let local = config
            .builds
            .local_registry
            .filter(|_| config.builds.registry.is_none());
        Self {
            target: choose_target(config.target),
            data_dir: config.data_dir.clone(),
            registry: config
                .builds
                .registry
                .as_ref()
                .map(|r| r.host.clone())
                .or(local.map(|a| a.to_string())),
            local_registry: local,
        }
    }
}

/// One thing checked: ok, or what is missing and how to fix it.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }

    fn missing(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Runs every check that `needs` calls for, in a fixed order.
pub async fn check(needs: &Needs) -> Vec<Check> {
    let mut out = vec![data_dir(&needs.data_dir)];
    let builds = needs.registry.is_some();
    if needs.target == TargetKind::Podman || builds {
        out.push(version("podman", "podman", "podman", &["--version"]).await);
    }
    if needs.target == TargetKind::Podman {
        out.push(version("runc", "runc", "runc", &["--version"]).await);
        out.push(helper("pause binary", "catatonit", "catatonit"));
        out.push(helper("pod network", "netavark", "netavark"));
        out.push(helper("pod DNS", "aardvark-dns", "aardvark-dns"));
        out.push(engine(&needs.data_dir).await);
    }
    if builds {
        out.push(version("git", "git", "git", &["--version"]).await);
    }
    if let Some(addr) = needs.local_registry {
        out.push(local_registry(addr).await);
    } else if let Some(host) = &needs.registry {
        out.push(remote_registry(host).await);
    }
    out
}

fn install(package: &str) -> String {
    format!("apt-get install --no-install-recommends {package}")
}

fn data_dir(dir: &Path) -> Check {
    const NAME: &str = "data dir";
    let shown = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    let written = crate::resolve_data_dir(dir).and_then(|dir| {
        let probe = dir.join(".kato-doctor");
        let written = crate::files::write_private_bytes(&probe, b"ok");
        let _ = std::fs::remove_file(&probe);
        written.map_err(|source| crate::StartError::DataDir { path: dir, source })
    });
    match written {
        Ok(()) => Check::ok(NAME, format!("{} is writable", shown.display())),
        Err(e) => Check::missing(
            NAME,
            e.to_string(),
            format!(
                "give a directory this user can write with --data-dir, or: chown -R \"$(id -u)\" {}",
                shown.display()
            ),
        ),
    }
}

/// Runs `program args` and reports the first line it prints.
async fn version(name: &'static str, program: &str, package: &str, args: &[&str]) -> Check {
    let mut cmd = Command::new(program);
    cmd.args(args).env("CONTAINERS_CONF", "/dev/null").kill_on_drop(true);
    match run(cmd).await {
        Ok(out) => Check::ok(name, out.lines().next().unwrap_or(program).trim().to_owned()),
        Err(e) => Check::missing(name, format!("`{program}` does not run: {e}"), install(package)),
    }
}

/// A helper binary podman finds on `PATH` or in its helper directories.
fn helper(name: &'static str, binary: &str, package: &str) -> Check {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(binary)).collect::<Vec<_>>())
        .unwrap_or_default();
    let dirs = HELPER_DIRS.iter().map(|d| Path::new(d).join(binary));
    match on_path.into_iter().chain(dirs).find(|p| p.is_file()) {
        Some(found) => Check::ok(name, format!("{binary} at {}", found.display())),
        None => Check::missing(
            name,
            format!("podman's {binary} is not installed (apt installs it only as a recommendation)"),
            install(package),
        ),
    }
}

/// Asks podman, with the settings Kato gives it, which runtime and cgroup manager it uses.
async fn engine(data_dir: &Path) -> Check {
    const NAME: &str = "engine";
    let conf = data_dir.join("podman").join("containers.conf");
    let conf = if conf.is_file() {
        conf
    } else {
        let dir = std::env::temp_dir().join(format!("kato-doctor-{}", std::process::id()));
        let path = dir.join("containers.conf");
        if std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&path, kato_runtime::CONTAINERS_CONF))
            .is_err()
        {
            return Check::missing(
                NAME,
                "cannot write a containers.conf to ask podman",
                "check the temp dir",
            );
        }
        path
    };
    let mut cmd = Command::new("podman");
    cmd.args([
        "info",
        "--format",
        "{{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}} {{.Host.NetworkBackend}}",
    ])
    .env("CONTAINERS_CONF", &conf)
    .kill_on_drop(true);
    match run(cmd).await {
        Ok(out) => {
            let got: Vec<&str> = out.split_whitespace().collect();
            if got == ["runc", "cgroupfs", "netavark"] {
                Check::ok(NAME, "podman runs with runc, the cgroupfs cgroup manager and netavark")
            } else {
                Check::missing(
                    NAME,
                    format!(
                        "podman answers `{}` for runtime, cgroup manager and network; Kato needs runc cgroupfs netavark",
                        out.trim()
                    ),
                    format!(
                        "unset CONTAINERS_CONF so that Kato's own applies, and {}",
                        install("runc netavark aardvark-dns")
                    ),
                )
            }
        }
        Err(e) => Check::missing(
            NAME,
            format!("`podman info` fails: {e}"),
            install("podman runc catatonit netavark aardvark-dns uidmap"),
        ),
    }
}

async fn local_registry(addr: SocketAddr) -> Check {
    const NAME: &str = "platform registry";
    let installed = version(NAME, "docker-registry", "docker-registry", &["--version"]).await;
    if !installed.ok {
        return Check::missing(
            NAME,
            "Dockerfile builds need a platform registry: Debian's docker-registry, which `kato serve` runs on --local-registry, is not installed",
            format!("{} (or give --registry HOST)", install("docker-registry")),
        );
    }
    let answering = if registry_answers(&addr.to_string()).await.is_ok() {
        "answering"
    } else {
        "`kato serve` starts it"
    };
    Check::ok(NAME, format!("local, on {addr} ({answering})"))
}

async fn remote_registry(host: &str) -> Check {
    const NAME: &str = "platform registry";
    match registry_answers(host).await {
        Ok(()) => Check::ok(NAME, format!("{host} answers")),
        Err(e) => Check::missing(
            NAME,
            format!("{host} does not answer: {e}"),
            format!("start the registry at {host}, or give --registry the address of one that runs"),
        ),
    }
}

/// Connects to the registry; on a loopback address, also asks `GET /v2/` over plain HTTP and
/// takes any registry answer (200, or 401 when it asks for credentials).
async fn registry_answers(host: &str) -> Result<(), String> {
    let addr = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:443")
    };
    let work = async {
        let mut tcp = tokio::net::TcpStream::connect(&addr).await.map_err(|e| e.to_string())?;
        let loopback = tcp.peer_addr().is_ok_and(|a| a.ip().is_loopback());
        if !loopback {
            return Ok(());
        }
        let request = format!("GET /v2/ HTTP/1.0\r\nHost: {host}\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut head = [0u8; 12];
        tcp.read_exact(&mut head).await.map_err(|e| e.to_string())?;
        match &head[9..12] {
            b"200" | b"401" => Ok(()),
            other => Err(format!(
                "it answers /v2/ with {}: is it an OCI registry?",
                String::from_utf8_lossy(other)
            )),
        }
    };
    tokio::time::timeout(PROBE, work)
        .await
        .map_err(|_| format!("no answer within {}s", PROBE.as_secs()))?
}

/// Runs a probe command within [`PROBE`]; its stdout, or why it failed.
async fn run(mut cmd: Command) -> Result<String, String> {
    cmd.stdin(std::process::Stdio::null());
    let out = tokio::time::timeout(PROBE, cmd.output())
        .await
        .map_err(|_| format!("no answer within {}s", PROBE.as_secs()))?
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "not found on PATH".to_owned(),
            _ => e.to_string(),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr
            .lines()
            .rfind(|l| !l.contains("syslog"))
            .unwrap_or("")
            .trim()
            .to_owned();
        Err(format!("exit {}: {last}", out.status.code().unwrap_or(-1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_helper_names_the_package_that_brings_it() {
        let c = helper("pause binary", "kato-no-such-helper", "catatonit");
        assert!(!c.ok);
        assert!(
            c.detail.contains("kato-no-such-helper is not installed"),
            "{}",
            c.detail
        );
        assert_eq!(
            c.fix.as_deref(),
            Some("apt-get install --no-install-recommends catatonit")
        );
    }

    #[tokio::test]
    async fn a_program_that_does_not_run_is_missing_with_its_install_command() {
        let c = version("git", "kato-no-such-program", "git", &["--version"]).await;
        assert!(!c.ok);
        assert!(c.detail.contains("not found on PATH"), "{}", c.detail);
        assert_eq!(c.fix.as_deref(), Some("apt-get install --no-install-recommends git"));
    }
}
