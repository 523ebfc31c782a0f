//! A real OCI registry on a loopback port: Debian's `docker-registry`, one per test, killed on drop.

use std::fmt::Debug;
use std::fs::File;
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kato_model::ImageRef;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, HeaderValue};

use crate::image::{self, Blob, INDEX_MEDIA_TYPE, ImageParts, MANIFEST_MEDIA_TYPE, PushedImage};

const BINARY: &str = "docker-registry";
const START_DEADLINE: Duration = Duration::from_secs(20);
const POLL_EVERY: Duration = Duration::from_millis(20);
const CALL_DEADLINE: Duration = Duration::from_secs(30);
const START_ATTEMPTS: u32 = 3;

/// A running `docker-registry` on `127.0.0.1:<free port>`, storing in a temp dir; stopped on drop.
///
/// Every call panics with a message saying what failed: it is a test fixture.
pub struct TestRegistry {
    // Declared first so the process is killed before its storage directory is removed.
    _process: Process,
    host: String,
    auth: Option<(String, String)>,
    client: Client,
    http: reqwest::Client,
    pushes: AtomicU64,
    _dir: tempfile::TempDir,
}

/// Kills and reaps the registry, also when a test panics half-way through starting it.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl TestRegistry {
    /// Starts a registry that anyone may pull from and push to.
    pub async fn start() -> Self {
        Self::launch(None).await
    }

    /// Starts a registry that requires HTTP basic auth (htpasswd, bcrypt) for every request.
    pub async fn start_with_auth(username: &str, password: &str) -> Self {
        Self::launch(Some((username.to_owned(), password.to_owned()))).await
    }

    /// `127.0.0.1:<port>`: the registry part of image references pointing at this registry.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The username and password the registry accepts, when started with auth.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// An image reference on this registry, e.g. `image("team/app:1")`.
    pub fn image(&self, repository_and_tag: &str) -> ImageRef {
        let text = format!("{}/{repository_and_tag}", self.host);
        text.parse()
            .unwrap_or_else(|e| panic!("test image reference `{text}`: {e}"))
    }

    /// Pushes a new single-platform (linux/amd64) image as `repository:tag`; each push has a new digest.
    pub async fn push_image(&self, repository: &str, tag: &str) -> PushedImage {
        let parts = image::image_parts(&self.label(repository, tag), "amd64");
        self.upload(repository, &parts).await;
        self.put_manifest(repository, tag, &parts.manifest).await;
        self.pushed(repository, tag, parts.manifest.digest)
    }

    /// Pushes a multi-arch image (an OCI index over linux/amd64 and linux/arm64) as `repository:tag`.
    /// The returned digest is the index's, which is what `docker pull` pins.
    pub async fn push_multi_arch(&self, repository: &str, tag: &str) -> PushedImage {
        let label = self.label(repository, tag);
        let amd64 = image::image_parts(&format!("{label} amd64"), "amd64");
        let arm64 = image::image_parts(&format!("{label} arm64"), "arm64");
        for parts in [&amd64, &arm64] {
            self.upload(repository, parts).await;
            self.put_manifest(repository, &parts.manifest.digest, &parts.manifest)
                .await;
        }
        let index = image::index(&[(&amd64.manifest, "amd64"), (&arm64.manifest, "arm64")]);
        self.put_manifest(repository, tag, &index).await;
        self.pushed(repository, tag, index.digest)
    }

    /// The `Docker-Content-Digest` the registry answers for a raw `GET /v2/<repo>/manifests/<ref>`,
    /// checked against the body's sha256; `None` when the registry answers 404.
    pub async fn registry_digest(&self, repository: &str, tag_or_digest: &str) -> Option<String> {
        let url = format!("http://{}/v2/{repository}/manifests/{tag_or_digest}", self.host);
        let accept = format!("{MANIFEST_MEDIA_TYPE}, {INDEX_MEDIA_TYPE}");
        let mut request = self.http.get(&url).header(ACCEPT, accept);
        if let Some((user, password)) = &self.auth {
            request = request.basic_auth(user, Some(password));
        }
        let response = within(&format!("GET {url}"), request.send()).await;
        if response.status() == StatusCode::NOT_FOUND {
            return None;
        }
        assert!(
            response.status().is_success(),
            "GET {url} answered {}",
            response.status()
        );
        let header = response
            .headers()
            .get("docker-content-digest")
            .unwrap_or_else(|| panic!("GET {url} answered no Docker-Content-Digest"))
            .to_str()
            .expect("a digest header is ASCII")
            .to_owned();
        let body = within(&format!("read {url}"), response.bytes()).await;
        assert_eq!(
            image::sha256_digest(&body),
            header,
            "the registry's digest header matches its body"
        );
        Some(header)
    }

    /// Deletes a manifest by digest (`DELETE /v2/<repo>/manifests/<digest>`), as an operator
    /// cleaning up the registry would.
    pub async fn delete_manifest(&self, repository: &str, digest: &str) {
        let url = format!("http://{}/v2/{repository}/manifests/{digest}", self.host);
        let mut request = self.http.delete(&url);
        if let Some((user, password)) = &self.auth {
            request = request.basic_auth(user, Some(password));
        }
        let response = within(&format!("DELETE {url}"), request.send()).await;
        assert!(
            response.status().is_success(),
            "DELETE {url} answered {}",
            response.status()
        );
    }

    async fn launch(auth: Option<(String, String)>) -> Self {
        let binary = find_binary();
        let dir = tempfile::Builder::new()
            .prefix("kato-test-registry-")
            .tempdir()
            .expect("create a temp dir for the test registry");
        if let Some((user, password)) = &auth {
            let hash = bcrypt::hash(password, 4).expect("bcrypt-hash the test password");
            std::fs::write(dir.path().join("htpasswd"), format!("{user}:{hash}\n")).expect("write htpasswd");
        }
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("build an HTTP client");
        for attempt in 1..=START_ATTEMPTS {
            let host = format!("127.0.0.1:{}", free_port());
            let config = write_config(dir.path(), &host, auth.is_some());
            let log_path = dir.path().join("registry.log");
            let mut process = Process(spawn(&binary, &config, &log_path));
            match wait_ready(&mut process.0, &host, &http).await {
                Ok(()) => return Self::connected(process, host, auth, http, dir).await,
                Err(why) => {
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    // The free port can be taken between finding it and the registry binding it.
                    if log.contains("address already in use") && attempt < START_ATTEMPTS {
                        continue;
                    }
                    panic!("the test registry on {host} {why}; its log:\n{log}");
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    async fn connected(
        process: Process,
        host: String,
        auth: Option<(String, String)>,
        http: reqwest::Client,
        dir: tempfile::TempDir,
    ) -> Self {
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::Http,
            ..ClientConfig::default()
        });
        let registry_auth = match &auth {
            Some((user, password)) => RegistryAuth::Basic(user.clone(), password.clone()),
            None => RegistryAuth::Anonymous,
        };
        client.store_auth_if_needed(&host, &registry_auth).await;
        Self {
            _process: process,
            host,
            auth,
            client,
            http,
            pushes: AtomicU64::new(0),
            _dir: dir,
        }
    }

    fn label(&self, repository: &str, tag: &str) -> String {
        let n = self.pushes.fetch_add(1, Ordering::Relaxed);
        format!("{}/{repository}:{tag} push #{n}", self.host)
    }

    fn reference(&self, repository: &str, tag_or_digest: &str) -> Reference {
        let (registry, repository) = (self.host.clone(), repository.to_owned());
        if tag_or_digest.starts_with("sha256:") {
            Reference::with_digest(registry, repository, tag_or_digest.to_owned())
        } else {
            Reference::with_tag(registry, repository, tag_or_digest.to_owned())
        }
    }

    async fn upload(&self, repository: &str, parts: &ImageParts) {
        let reference = self.reference(repository, "upload");
        for blob in [&parts.layer, &parts.config] {
            let what = format!("push blob {} to {}/{repository}", blob.digest, self.host);
            let push = self.client.push_blob(&reference, blob.bytes.clone(), &blob.digest);
            within(&what, push).await;
        }
    }

    async fn put_manifest(&self, repository: &str, tag_or_digest: &str, manifest: &Blob) {
        let reference = self.reference(repository, tag_or_digest);
        let what = format!("push manifest {}", reference.whole());
        let content_type = HeaderValue::from_static(manifest.media_type);
        let push = self
            .client
            .push_manifest_raw(&reference, manifest.bytes.clone(), content_type);
        within(&what, push).await;
    }

    fn pushed(&self, repository: &str, tag: &str, digest: String) -> PushedImage {
        PushedImage {
            image: self.image(&format!("{repository}:{tag}")),
            digest,
        }
    }
}

/// Awaits a fixture step, panicking with `what` if it fails or hangs.
async fn within<T, E: Debug>(what: &str, step: impl Future<Output = Result<T, E>>) -> T {
    match tokio::time::timeout(CALL_DEADLINE, step).await {
        Ok(Ok(value)) => value,
        Ok(Err(e)) => panic!("test registry: {what} failed: {e:?}"),
        Err(_) => panic!("test registry: {what} took over {CALL_DEADLINE:?}"),
    }
}

fn find_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(BINARY))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!("the test registry needs Debian's `{BINARY}` binary on PATH: apt-get install docker-registry")
        })
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("a bound socket has an address").port()
}

/// Writes a config of our own: Debian's default one listens on every interface and wants htpasswd.
fn write_config(dir: &Path, host: &str, with_auth: bool) -> PathBuf {
    let quoted = |p: PathBuf| serde_json::to_string(&p.to_string_lossy()).expect("a string serialises");
    let mut config = format!(
        "version: 0.1\n\
         log:\n  level: warn\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  \
         maintenance:\n    uploadpurging:\n      enabled: false\n\
         http:\n  addr: {host}\n  secret: kato-test-registry\n",
        quoted(dir.join("storage")),
    );
    if with_auth {
        config += &format!(
            "auth:\n  htpasswd:\n    realm: kato-test\n    path: {}\n",
            quoted(dir.join("htpasswd"))
        );
    }
    let path = dir.join("config.yml");
    std::fs::write(&path, config).expect("write the test registry config");
    path
}

fn spawn(binary: &Path, config: &Path, log_path: &Path) -> Child {
    let log = File::create(log_path).expect("create the test registry log");
    let log_err = log.try_clone().expect("clone the log file handle");
    Command::new(binary)
        .arg("serve")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()))
}

/// Polls `GET /v2/` until the registry answers (200, or 401 when it wants auth) or the deadline.
async fn wait_ready(child: &mut Child, host: &str, http: &reqwest::Client) -> Result<(), String> {
    let url = format!("http://{host}/v2/");
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("could not be watched: {e}"))? {
            return Err(format!("exited before answering ({status})"));
        }
        let answer = http.get(&url).timeout(Duration::from_secs(1)).send().await;
        if let Ok(response) = answer
            && matches!(response.status(), StatusCode::OK | StatusCode::UNAUTHORIZED)
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("did not answer GET /v2/ within {START_DEADLINE:?}"));
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}
