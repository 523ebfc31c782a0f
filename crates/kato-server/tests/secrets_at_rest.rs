//! Secrets at rest, through the API: a registry password, a git credential's SSH key and
//! known_hosts, an installation's secret value and a secret default are never in clear in any
//! file of the data dir (the SQLite database, its WAL and shared memory, everything else), nor
//! in PostgreSQL's columns, nor in any API answer; builds and renders still get them. Every file
//! in the data dir is 0600 after start, whatever it was; and a key rotation a crash interrupted
//! is finished or undone at the next start.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use axum::http::{Method, StatusCode};
use base64::Engine;
use common::Server;
use kato_store::{Keyring, SecretKey, Store};
use serde_json::json;

const PASSWORD: &str = "marker-registry-pass-8d2e";
const SSH_KEY: &str = "marker-ssh-key-41b7";
const KNOWN_HOSTS: &str = "marker-known-hosts-e90a";
const VALUE: &str = "marker-install-value-27fc";
const DEFAULT: &str = "marker-secret-default-c3d1";
const MARKERS: [&str; 5] = [PASSWORD, SSH_KEY, KNOWN_HOSTS, VALUE, DEFAULT];

/// Each marker, and its base64 (how it would sit in a Secret or an auth file).
fn needles() -> Vec<String> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    MARKERS
        .iter()
        .flat_map(|m| [m.to_string(), b64(m)])
        .chain([b64(&format!("puller:{PASSWORD}"))])
        .collect()
}

fn assert_clean(what: &str, bytes: &[u8]) {
    for n in needles() {
        assert!(
            !bytes.windows(n.len()).any(|w| w == n.as_bytes()),
            "{what} holds `{n}` in clear"
        );
    }
}

/// Every regular file under `dir`, with its bytes.
fn files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            out.extend(files(&path));
        } else if meta.is_file() {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out
}

fn assert_data_dir_clean(dir: &Path) {
    let found = files(dir);
    let names: Vec<_> = found
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy())
        .collect();
    assert!(names.iter().any(|n| n == "kato.db"), "{names:?}");
    for (path, bytes) in &found {
        assert_clean(&path.display().to_string(), bytes);
    }
}

/// Sets every kind of secret through the API; answers the private registry (it must outlive
/// the test's builds).
async fn set_secrets(s: &Server) -> kato_testkit::TestRegistry {
    s.team("demo").await;
    let private = kato_testkit::TestRegistry::start_with_auth("puller", PASSWORD).await;
    let pushed = private.push_image("vendor/agent", "2").await;
    for body in [
        json!({"host": private.host(), "username": "puller", "password": PASSWORD}),
        json!({"host": "git.example.com", "username": "git",
               "ssh_key": format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{SSH_KEY}\n-----END OPENSSH PRIVATE KEY-----\n"),
               "known_hosts": format!("git.example.com ssh-ed25519 {KNOWN_HOSTS}")}),
    ] {
        let c = s
            .ok(Method::POST, "/teams/demo/credentials", Some(body), StatusCode::CREATED)
            .await;
        assert_clean("a credential's answer", c.to_string().as_bytes());
    }
    let spec = json!({"name": "agent", "kind": "general", "source": {"image": pushed.image.as_str()},
    "config_groups": [{"name": "agent", "meta": "none", "injection": "env", "items": [
        {"name": "API_TOKEN", "secret": true, "default": DEFAULT},
        {"name": "PASSWORD", "secret": true},
        {"name": "LEVEL", "default": "info"},
    ]}]});
    s.ok(Method::POST, "/teams/demo/plugins", Some(spec), StatusCode::CREATED)
        .await;
    // Pinning the image reads the private registry with the team's (sealed) password.
    let v = s
        .ok(
            Method::POST,
            "/teams/demo/plugins/agent/versions",
            None,
            StatusCode::CREATED,
        )
        .await;
    let v = if v["status"] == "succeeded" {
        v
    } else {
        s.finished_version("demo", "agent", 1).await
    };
    assert_eq!(v["status"], "succeeded", "the build used the credential: {v}");
    s.ok(
        Method::POST,
        "/teams/demo/components",
        Some(json!({"name": "web", "image": "nginx"})),
        StatusCode::CREATED,
    )
    .await;
    s.ok(
        Method::PUT,
        "/teams/demo/components/web/plugins/agent",
        Some(json!({"values": {"base": {"PASSWORD": VALUE}}})),
        StatusCode::CREATED,
    )
    .await;
    private
}

/// Every read of the team's API shows no secret.
async fn assert_answers_clean(s: &Server) {
    for path in [
        "/teams/demo/credentials",
        "/teams/demo/plugins",
        "/teams/demo/plugins/agent",
        "/teams/demo/plugins/agent/versions",
        "/teams/demo/plugins/agent/versions/1",
        "/teams/demo/components/web",
        "/teams/demo/components/web/plugins",
        "/teams/demo/components/web/plugins/agent",
        "/teams/demo/components/web/status",
    ] {
        let (status, v) = s.call(Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {v}");
        assert_clean(path, v.to_string().as_bytes());
    }
    for target in ["kubernetes", "podman"] {
        let path = format!("/api/v1/teams/demo/components/web/manifests?target={target}");
        let (status, text) = s.raw(Method::GET, &path, Some(&s.admin), None).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert_clean(&path, text.as_bytes());
    }
}

/// What `web` runs on Kubernetes, secrets in (the manifests endpoint redacts them).
async fn rendered(s: &Server) -> String {
    let (team, web) = ("demo".parse().unwrap(), "web".parse().unwrap());
    let ctx = kato_server::ops::component_context(&mut &s.state.store, &team, &web)
        .await
        .unwrap();
    kato_server::api::render_objects(&s.state, &team, &ctx, kato_render::Target::Kubernetes, None, false)
        .unwrap()
        .to_yaml()
}

async fn assert_secrets_reach_their_users(s: &Server) {
    let yaml = rendered(s).await;
    let b64 = |v: &str| base64::engine::general_purpose::STANDARD.encode(v);
    assert!(
        yaml.contains(&b64(VALUE)),
        "the value is rendered into the Secret: {yaml}"
    );
    assert!(yaml.contains(&b64(DEFAULT)), "so is the default: {yaml}");
    let team = "demo".parse().unwrap();
    let secrets = s.state.store.credential_secrets(&team).await.unwrap();
    assert!(secrets.iter().any(|c| c.password == PASSWORD));
    let ssh = secrets.iter().find_map(|c| c.ssh.as_ref()).unwrap();
    assert!(ssh.private_key.contains(SSH_KEY) && ssh.known_hosts.contains(KNOWN_HOSTS));
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_is_in_clear_in_the_data_dir_or_any_answer_yet_builds_and_renders_get_them() {
    let s = Server::start_building(|_| {}).await;
    let _private = set_secrets(&s).await;
    assert_answers_clean(&s).await;
    assert_secrets_reach_their_users(&s).await;
    // While the server runs (the WAL holds the latest pages), and once it stopped.
    assert_data_dir_clean(s.dir.path());
    s.state.store.close().await;
    assert_data_dir_clean(s.dir.path());
}

/// A fresh PostgreSQL schema from `KATO_TEST_DATABASE_URL`; `None` with `KATO_TEST_SKIP_POSTGRES=1`.
async fn postgres_schema() -> Option<(String, String, String)> {
    use sqlx::{Connection, Executor};
    let Ok(admin) = std::env::var("KATO_TEST_DATABASE_URL") else {
        if std::env::var("KATO_TEST_SKIP_POSTGRES").as_deref() == Ok("1") {
            return None;
        }
        panic!("set KATO_TEST_DATABASE_URL (eval \"$(scripts/pg-test-setup.sh)\"), or KATO_TEST_SKIP_POSTGRES=1");
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let schema = format!("kato_sealed_{}_{nanos}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .await
        .unwrap();
    let sep = if admin.contains('?') { '&' } else { '?' };
    Some((format!("{admin}{sep}options[search_path]={schema}"), schema, admin))
}

#[tokio::test(flavor = "multi_thread")]
async fn on_postgresql_the_secret_columns_hold_no_secret() {
    use sqlx::{Connection, Executor};
    let Some((url, schema, admin)) = postgres_schema().await else {
        return;
    };
    let registry = kato_testkit::TestRegistry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::config(dir.path());
    cfg.database_url = Some(url.clone());
    cfg.builds.registry = Some(format!("{}/platform", registry.host()).parse().unwrap());
    let (state, token) = kato_server::prepare(&cfg).await.unwrap();
    let s = Server {
        router: kato_server::router(state.clone()),
        admin: std::fs::read_to_string(token).unwrap().trim().to_owned(),
        state,
        registry,
        dir,
    };
    let _private = set_secrets(&s).await;
    assert_answers_clean(&s).await;
    assert_secrets_reach_their_users(&s).await;
    let mut raw = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut columns = String::new();
    for sql in [
        "SELECT password || ssh_key || known_hosts FROM credentials",
        "SELECT doc || sealed_values FROM installations",
        "SELECT spec || sealed_defaults FROM plugins",
        "SELECT spec || sealed_defaults FROM versions",
    ] {
        let rows: Vec<(String,)> = sqlx::query_as(sql).fetch_all(&mut raw).await.unwrap();
        assert!(!rows.is_empty(), "{sql}");
        rows.iter().for_each(|(r,)| columns.push_str(r));
    }
    assert!(columns.contains("sealed:v1:"), "{columns}");
    assert_clean("PostgreSQL's secret columns", columns.as_bytes());
    assert_data_dir_clean_of_files(s.dir.path());
    s.state.store.close().await;
    raw.close().await.unwrap();
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    conn.execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .await
        .unwrap();
}

/// Like [`assert_data_dir_clean`], for a data dir without a database.
fn assert_data_dir_clean_of_files(dir: &Path) {
    for (path, bytes) in files(dir) {
        assert_clean(&path.display().to_string(), &bytes);
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn every_file_in_the_data_dir_is_private_after_start_whatever_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // As an older version, or another umask, left them.
    std::fs::create_dir_all(data.join("podman/pods")).unwrap();
    std::fs::write(data.join("admin.token"), "kt_old-admin-token\n").unwrap();
    std::fs::write(data.join("discovery.key"), "ab".repeat(32)).unwrap();
    std::fs::write(data.join("containers.conf"), "old").unwrap();
    std::fs::write(data.join("podman/pods/p.yaml"), "kind: Pod").unwrap();
    for p in ["admin.token", "discovery.key", "containers.conf", "podman/pods/p.yaml"] {
        std::fs::set_permissions(data.join(p), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    for d in [&data, &data.join("podman"), &data.join("podman/pods")] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let (state, _) = kato_server::prepare(&common::config(&data)).await.unwrap();
    // A write through the store reaches the WAL and shared-memory files.
    let mut tx = state.store.begin().await.unwrap();
    tx.create_team(&"demo".parse().unwrap()).await.unwrap();
    tx.commit().await.unwrap();

    let mut seen = Vec::new();
    for (path, _) in files(&data) {
        seen.push(path.file_name().unwrap().to_string_lossy().into_owned());
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    seen.sort();
    for name in [
        "admin.token",
        "kato.db",
        "kato.db-shm",
        "kato.db-wal",
        "p.yaml",
        "secrets.key",
    ] {
        assert!(seen.iter().any(|s| s == name), "{name} in {seen:?}");
    }
    for d in [&data, &data.join("podman"), &data.join("podman/pods")] {
        assert_eq!(mode(d), 0o700, "{}", d.display());
    }
    state.store.close().await;
}

/// The key in a data dir's `secrets.key`.
fn key_in(dir: &Path) -> SecretKey {
    SecretKey::from_base64(&std::fs::read_to_string(dir.join("secrets.key")).unwrap()).unwrap()
}

async fn credential_password(state: &kato_server::AppState) -> String {
    let team = "demo".parse().unwrap();
    state.store.credential_secrets(&team).await.unwrap()[0].password.clone()
}

/// A server's data dir with a team and a credential; the server stopped.
async fn stopped_server_with_a_credential(dir: &Path) {
    let (state, _) = kato_server::prepare(&common::config(dir)).await.unwrap();
    let mut tx = state.store.begin().await.unwrap();
    tx.create_team(&"demo".parse().unwrap()).await.unwrap();
    tx.put_credential(&"demo".parse().unwrap(), "r.example.com", "u", PASSWORD)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    state.store.close().await;
}

#[tokio::test]
async fn rotate_key_replaces_the_key_and_the_old_one_no_longer_opens_the_store() {
    let dir = tempfile::tempdir().unwrap();
    stopped_server_with_a_credential(dir.path()).await;
    let old = key_in(dir.path());
    let url = kato_server::sqlite_url(dir.path());
    let done = kato_server::secret_key::rotate(&url, &Default::default(), dir.path())
        .await
        .unwrap();
    let new = key_in(dir.path());
    assert_eq!((done.old_key.as_str(), done.new_key.as_str()), (old.id(), new.id()));
    assert_eq!(done.values, 1);
    assert_eq!(mode(&dir.path().join("secrets.key")), 0o600);
    assert!(!dir.path().join("secrets.key.new").exists());
    let e = Store::open(&url, Keyring::new(old)).await.unwrap_err().to_string();
    assert!(e.contains(new.id()), "{e}");
    let (state, _) = kato_server::prepare(&common::config(dir.path())).await.unwrap();
    assert_eq!(credential_password(&state).await, PASSWORD);
    assert_data_dir_clean_of_files(dir.path());
    state.store.close().await;

    let from_env = kato_server::SecretKeySource::Value(new.to_base64());
    let e = kato_server::secret_key::rotate(&url, &from_env, dir.path())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("--secret-key-file"), "{e}");
}

#[tokio::test]
async fn a_rotation_a_crash_interrupted_is_undone_or_finished_at_start() {
    // Crashed before the transaction committed: the database is under the old key.
    let dir = tempfile::tempdir().unwrap();
    stopped_server_with_a_credential(dir.path()).await;
    let old = key_in(dir.path());
    let pending = SecretKey::generate();
    std::fs::write(dir.path().join("secrets.key.new"), pending.to_base64()).unwrap();
    let (state, _) = kato_server::prepare(&common::config(dir.path())).await.unwrap();
    assert_eq!(credential_password(&state).await, PASSWORD);
    assert_eq!(key_in(dir.path()), old, "the old key stays");
    assert!(!dir.path().join("secrets.key.new").exists());
    state.store.close().await;

    // Crashed after it committed, before the new key replaced the old: finished at start.
    let url = kato_server::sqlite_url(dir.path());
    let store = Store::open(&url, Keyring::new(old.clone())).await.unwrap();
    let new = SecretKey::generate();
    std::fs::write(dir.path().join("secrets.key.new"), new.to_base64()).unwrap();
    store.rotate_key(new.clone()).await.unwrap();
    store.close().await;
    let (state, _) = kato_server::prepare(&common::config(dir.path())).await.unwrap();
    assert_eq!(credential_password(&state).await, PASSWORD);
    assert_eq!(key_in(dir.path()), new, "the new key replaced the old");
    assert!(!dir.path().join("secrets.key.new").exists());
    state.store.close().await;
}

#[tokio::test]
async fn a_server_given_another_key_than_the_databases_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    stopped_server_with_a_credential(dir.path()).await;
    let sealed_with = key_in(dir.path());
    let mut cfg = common::config(dir.path());
    cfg.secret_key = kato_server::SecretKeySource::Value(SecretKey::generate().to_base64());
    let e = kato_server::prepare(&cfg).await.err().unwrap().to_string();
    assert!(e.contains("KATO_SECRET_KEY") && e.contains(sealed_with.id()), "{e}");
    // The same key from a file shared by replicas works.
    let shared = dir.path().join("shared.key");
    std::fs::write(&shared, sealed_with.to_base64()).unwrap();
    cfg.secret_key = kato_server::SecretKeySource::File(shared);
    let (state, _) = kato_server::prepare(&cfg).await.unwrap();
    assert_eq!(credential_password(&state).await, PASSWORD);
    state.store.close().await;
}
