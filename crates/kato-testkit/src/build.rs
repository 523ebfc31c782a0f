//! Build fixtures: a busybox base image made without any network pull, and git repos with commits,
//! branches and tags, made with real git.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The containers.conf the project ships (settings podman needs on hosts like CI's).
pub fn containers_conf() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/containers.conf")
}

/// `localhost/kato-test/busybox:1`: busybox-static and a few applet links, imported into podman's
/// local store (once; later calls find it there). Dockerfiles in tests build `FROM` it.
pub fn base_image() -> &'static str {
    const NAME: &str = "localhost/kato-test/busybox:1";
    static MADE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    MADE.get_or_init(|| {
        import_busybox(
            NAME,
            &["sh", "echo", "true", "false", "cat", "sleep", "ls", "mkdir", "touch"],
        )
    });
    NAME
}

/// `localhost/kato-test/busybox-full:1`: busybox-static with every applet (`nc`, `sed`,
/// `printf`…), for plug-ins in tests that speak HTTP from a shell script.
pub fn busybox_full_image() -> &'static str {
    const NAME: &str = "localhost/kato-test/busybox-full:1";
    static MADE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    MADE.get_or_init(|| {
        let listed = run(Command::new("/bin/busybox").arg("--list"));
        let applets: Vec<&str> = listed.lines().filter(|a| *a != "busybox").collect();
        import_busybox(NAME, &applets);
    });
    NAME
}

/// Imports `/bin/busybox` with links for `applets` as `name`, unless podman has it already.
fn import_busybox(name: &str, applets: &[&str]) {
    let exists = podman().args(["image", "exists", name]).status();
    if exists.is_ok_and(|s| s.success()) {
        return;
    }
    let dir = tempfile::tempdir().expect("a temp dir");
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .expect("/bin/busybox exists: install the busybox-static package");
    for applet in applets {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    let tar = dir.path().join("base.tar");
    run(Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tar).arg("."));
    run(podman().args(["import", "--quiet"]).arg(&tar).arg(name));
}

fn podman() -> Command {
    let mut cmd = Command::new("podman");
    cmd.env("CONTAINERS_CONF", containers_conf());
    cmd
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A git repository in a temp dir, on branch `main`; removed on drop.
pub struct GitRepo {
    dir: tempfile::TempDir,
}

impl Default for GitRepo {
    fn default() -> Self {
        Self::new()
    }
}

impl GitRepo {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("kato-test-repo-")
            .tempdir()
            .expect("a temp dir");
        let repo = Self { dir };
        repo.git(&["init", "--quiet", "--initial-branch=main"]);
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `file:///…` for this repo.
    pub fn url(&self) -> String {
        format!("file://{}", self.dir.path().display())
    }

    /// Writes a file (creating its folders), relative to the repo root.
    pub fn write(&self, path: &str, contents: &str) -> &Self {
        let p = self.dir.path().join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, contents).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
        self
    }

    /// Commits every change and answers the new commit's hash.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&[
            "-c",
            "user.name=Kato Test",
            "-c",
            "user.email=test@kato.invalid",
            "commit",
            "--quiet",
            "--allow-empty",
            "-m",
            message,
        ]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// Creates and switches to a new branch.
    pub fn branch(&self, name: &str) {
        self.git(&["checkout", "--quiet", "-b", name]);
    }

    pub fn checkout(&self, name: &str) {
        self.git(&["checkout", "--quiet", name]);
    }

    pub fn tag(&self, name: &str) {
        self.git(&["tag", name]);
    }

    pub fn git(&self, args: &[&str]) -> String {
        run(Command::new("git").arg("-C").arg(self.dir.path()).args(args))
    }
}
