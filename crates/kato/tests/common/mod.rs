//! `kato serve` as a user runs it: the binary, from a working directory, on its default data dir.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use kato_testkit::containers_conf;

/// `kato serve` in `dir`; killed on drop, with its pods.
pub struct Server {
    child: Child,
    pub dir: PathBuf,
    pub url: String,
    /// The team whose pods are removed on drop, and which the CLI works in.
    pub team: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let label = format!("label=kato/team={}", self.team);
        let pods = podman(&["pod", "ps", "-q", "--filter", &label]);
        for pod in String::from_utf8_lossy(&pods.stdout).split_whitespace() {
            podman(&["pod", "rm", "--force", "--time", "0", pod]);
        }
    }
}

pub fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(args)
        .env("CONTAINERS_CONF", containers_conf())
        .output()
        .expect("podman runs")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// No `--data-dir`, no `--public-url`, no CONTAINERS_CONF: what `scripts/serve` runs.
    pub fn start(dir: &Path, team: &str) -> Server {
        let (port, registry) = (free_port(), free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_kato"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--local-registry", &format!("127.0.0.1:{registry}")])
            .current_dir(dir)
            .env_remove("KATO_DATA_DIR")
            .env_remove("KATO_PUBLIC_URL")
            .env_remove("KATO_DATABASE_URL")
            .env_remove("KATO_TARGET")
            .env_remove("KATO_REGISTRY")
            .env_remove("CONTAINERS_CONF")
            .stdout(std::fs::File::create(dir.join("serve.out")).unwrap())
            .stderr(std::fs::File::create(dir.join("serve.err")).unwrap())
            .spawn()
            .unwrap();
        let s = Server {
            child,
            dir: dir.to_owned(),
            url: format!("http://127.0.0.1:{port}"),
            team: team.to_owned(),
        };
        s.wait_for("the server to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .map(drop)
                .map_err(|e| e.to_string())
        });
        s
    }

    pub fn output(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!("{}{}", read("serve.out"), read("serve.err"))
    }

    /// The CLI, run from the server's working directory with no `--data-dir` and no token.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_kato"))
            .args(args)
            .current_dir(&self.dir)
            .env_remove("KATO_DATA_DIR")
            .env_remove("KATO_TOKEN")
            .env("KATO_SERVER", &self.url)
            .env("KATO_TEAM", &self.team)
            .output()
            .unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kato {args:?} failed: {}{}\nserver:\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout),
            self.output()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls `probe` until it gives a value (bounded: two minutes); a timeout shows what the
    /// last probe saw.
    pub fn wait_for<T>(&self, what: &str, mut probe: impl FnMut() -> Result<T, String>) -> T {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let seen = match probe() {
                Ok(v) => return v,
                Err(seen) => seen,
            };
            assert!(
                Instant::now() < deadline,
                "waited for {what}; last seen: {seen}\nserver:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits for `needle` in the last lines of a container of `component`.
    pub fn wait_logs(&self, component: &str, container: &str, needle: &str) -> String {
        self.wait_for(&format!("`{needle}` in the logs of {container}"), || {
            let logs = self.ok(&["logs", component, "-c", container, "--tail", "4"]);
            if logs.contains(needle) { Ok(logs) } else { Err(logs) }
        })
    }
}
