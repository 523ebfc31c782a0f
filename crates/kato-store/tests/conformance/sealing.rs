//! Secrets at rest: credentials, installations' values and secret defaults are sealed in the
//! database (the raw columns, and on SQLite every byte of the files, hold no clear value), read
//! back in clear, sealed at open when an older version left them in clear, and re-sealed by a
//! key rotation that either finishes or leaves everything under the old key.

use kato_model::{Installation, PluginSpec, VersionStatus};
use kato_store::{Keyring, NewCredential, SecretKey, SshIdentity, Store, StoreError};
use serde_json::json;
use sqlx::{AnyConnection, Connection, Executor};

use crate::support::*;

const PASSWORD: &str = "marker-password-5f1c";
const SSH_KEY: &str = "marker-ssh-key-9a07";
const KNOWN_HOSTS: &str = "marker-known-hosts-33de";
const VALUE: &str = "marker-value-c4b2";
const DEFAULT: &str = "marker-default-71e8";
const MARKERS: [&str; 5] = [PASSWORD, SSH_KEY, KNOWN_HOSTS, VALUE, DEFAULT];

fn secret_spec() -> PluginSpec {
    serde_json::from_value(
        json!({"name": "agent", "kind": "general", "source": {"image": "nginx:1.27"},
        "config_groups": [{"name": "g", "meta": "none", "injection": "env", "items": [
            {"name": "LEVEL", "default": "info"},
            {"name": "TOKEN", "secret": true, "default": DEFAULT},
        ]}]}),
    )
    .unwrap()
}

fn secret_installation() -> Installation {
    serde_json::from_value(
        json!({"plugin": "agent", "version": 1, "enabled": true, "memory_mib": 64,
        "revision": 1, "values": {"base": {"TOKEN": VALUE, "LEVEL": "debug"}}}),
    )
    .unwrap()
}

fn credential() -> NewCredential {
    NewCredential {
        username: "puller".into(),
        password: PASSWORD.into(),
        ssh: Some(SshIdentity {
            private_key: SSH_KEY.into(),
            known_hosts: KNOWN_HOSTS.into(),
        }),
    }
}

/// A team with a credential, a plug-in with a secret default, its version and an installation.
async fn write_secrets(store: &Store) {
    let mut tx = store.begin().await.unwrap();
    tx.create_team(&team("t")).await.unwrap();
    tx.set_credential(&team("t"), "git.example.com", &credential())
        .await
        .unwrap();
    tx.insert_plugin(&team("t"), &secret_spec()).await.unwrap();
    tx.insert_version(
        &team("t"),
        &plugin_name("agent"),
        &secret_spec(),
        VersionStatus::Succeeded,
        "admin",
    )
    .await
    .unwrap();
    tx.insert_component(&team("t"), &component("web", &[])).await.unwrap();
    tx.put_installation(&team("t"), &component_name("web"), &secret_installation(), &cred("n"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// Every read gives the secrets back in clear.
async fn assert_reads_in_clear(store: &Store) {
    let t = team("t");
    let secrets = store.credential_secrets(&t).await.unwrap();
    assert_eq!(secrets[0].password, PASSWORD);
    let ssh = secrets[0].ssh.as_ref().unwrap();
    assert_eq!(
        (ssh.private_key.as_str(), ssh.known_hosts.as_str()),
        (SSH_KEY, KNOWN_HOSTS)
    );
    assert!(store.list_credentials(&t).await.unwrap()[0].ssh_key_set);
    assert_eq!(
        store.get_plugin(&t, &plugin_name("agent")).await.unwrap().unwrap().spec,
        secret_spec()
    );
    let v = store.get_version(&t, &plugin_name("agent"), 1).await.unwrap().unwrap();
    assert_eq!(v.version.spec, secret_spec());
    assert_eq!(
        store.list_versions(&t, &plugin_name("agent")).await.unwrap()[0]
            .version
            .spec,
        secret_spec()
    );
    let latest = store.latest_succeeded_version(&t, &plugin_name("agent")).await.unwrap();
    assert_eq!(latest.unwrap().spec, secret_spec());
    let i = store
        .get_installation(&t, &component_name("web"), &plugin_name("agent"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(i.installation, secret_installation());
    assert_eq!(store.list_plugins(&t).await.unwrap()[0].spec, secret_spec());
}

/// Every column of every table that may hold a secret, as the database has it.
async fn raw_rows(url: &str) -> String {
    let mut raw = AnyConnection::connect(url).await.unwrap();
    let mut all = String::new();
    for sql in [
        "SELECT host || username || password || ssh_key || known_hosts || COALESCE(sealed_with, 'NULL') FROM credentials",
        "SELECT doc || sealed_values || COALESCE(sealed_with, 'NULL') FROM installations",
        "SELECT spec || sealed_defaults || COALESCE(sealed_with, 'NULL') FROM plugins",
        "SELECT spec || sealed_defaults || COALESCE(sealed_with, 'NULL') FROM versions",
    ] {
        let rows: Vec<(String,)> = sqlx::query_as(sql).fetch_all(&mut raw).await.unwrap();
        for (r,) in rows {
            all.push_str(&r);
            all.push('\n');
        }
    }
    raw.close().await.unwrap();
    all
}

fn assert_no_marker(what: &str, haystack: &[u8]) {
    for m in MARKERS {
        assert!(
            !haystack.windows(m.len()).any(|w| w == m.as_bytes()),
            "{what} holds `{m}` in clear"
        );
    }
}

/// On SQLite, every byte of the database's files (the database, its WAL and shared memory).
fn sqlite_files(db: &Db) -> Vec<(String, Vec<u8>)> {
    let file = std::path::PathBuf::from(db.url.trim_start_matches("sqlite://"));
    let dir = file.parent().unwrap();
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

async fn assert_sealed_everywhere(db: &Db) {
    let rows = raw_rows(&db.url).await;
    assert_no_marker("a secret column", rows.as_bytes());
    assert!(!rows.contains("NULL"), "every row names its key: {rows}");
    if db.kind == Kind::Sqlite {
        for (path, bytes) in sqlite_files(db) {
            assert_no_marker(&path, &bytes);
        }
    }
}

pub async fn secrets_are_sealed_at_rest_and_read_in_clear(db: Db) {
    write_secrets(&db.store).await;
    assert_reads_in_clear(&db.store).await;
    let rows = raw_rows(&db.url).await;
    assert!(rows.contains(&format!("sealed:v1:{}:", db.key.id())), "{rows}");
    assert!(rows.contains("\"LEVEL\""), "what is not sealed stays readable: {rows}");
    assert_sealed_everywhere(&db).await;
    let db = db.reopen().await;
    assert_reads_in_clear(&db.store).await;
    db.store.close().await;
    assert_sealed_everywhere(&db).await;
}

pub async fn rows_an_older_version_left_in_clear_are_sealed_at_open(db: Db) {
    // As Kato wrote them before sealing: secrets in the documents and columns, no key named.
    let mut raw = AnyConnection::connect(&db.url).await.unwrap();
    let spec = serde_json::to_string(&secret_spec()).unwrap();
    let doc = serde_json::to_string(&secret_installation()).unwrap();
    for sql in [
        "INSERT INTO teams (name, created_at) VALUES ('t', 'now')".to_owned(),
        format!(
            "INSERT INTO credentials (team, host, username, password, ssh_key, known_hosts, created_at) \
             VALUES ('t', 'git.example.com', 'puller', '{PASSWORD}', '{SSH_KEY}', '{KNOWN_HOSTS}', 'now')"
        ),
        format!(
            "INSERT INTO plugins (team, name, spec, last_version, created_at, updated_at) VALUES ('t', 'agent', '{spec}', 1, 'now', 'now')"
        ),
        format!(
            "INSERT INTO versions (team, plugin, number, status, spec, created_at) VALUES ('t', 'agent', 1, 'succeeded', '{spec}', 'now')"
        ),
        "INSERT INTO components (team, name, spec, last_install, created_at, updated_at) \
         VALUES ('t', 'web', '{\"name\": \"web\", \"image\": \"nginx\"}', 1, 'now', 'now')"
            .to_owned(),
        format!(
            "INSERT INTO installations (team, component, plugin, version, seq, doc, discovery_nonce, discovery_hash, created_at, updated_at) \
             VALUES ('t', 'web', 'agent', 1, 1, '{doc}', 'n', 'hash-n', 'now', 'now')"
        ),
    ] {
        raw.execute(sqlx::AssertSqlSafe(sql)).await.unwrap();
    }
    raw.close().await.unwrap();
    assert!(raw_rows(&db.url).await.contains(PASSWORD));

    let db = db.reopen().await;
    assert_reads_in_clear(&db.store).await;
    assert_sealed_everywhere(&db).await;
    // Idempotent: opening again changes nothing and still reads.
    let db = db.reopen().await;
    assert_reads_in_clear(&db.store).await;
    db.store.close().await;
    assert_sealed_everywhere(&db).await;
}

pub async fn rotation_reseals_every_secret_with_the_new_key(db: Db) {
    write_secrets(&db.store).await;
    let old = db.key.clone();
    let new = SecretKey::generate();
    let resealed = db.store.rotate_key(new.clone()).await.unwrap();
    assert_eq!(
        resealed, 6,
        "password, ssh key, known_hosts, values, two sets of defaults"
    );
    assert_eq!(db.store.secret_key_id().await.unwrap(), new.id());
    assert_reads_in_clear(&db.store).await;
    let rows = raw_rows(&db.url).await;
    assert!(!rows.contains(old.id()), "nothing names the old key: {rows}");
    assert_sealed_everywhere(&db).await;
    // Sealing after the rotation uses the new key.
    let mut tx = db.store.begin().await.unwrap();
    tx.put_credential(&team("t"), "registry.example.com", "u", PASSWORD)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(!raw_rows(&db.url).await.contains(old.id()));

    db.store.close().await;
    let e = Store::open(&db.url, Keyring::new(old.clone())).await.unwrap_err();
    assert!(matches!(e, StoreError::SecretKey(_)), "{e}");
    assert!(e.to_string().contains(new.id()), "{e}");
    // A keyring with both keys (a rotation that may not have finished) opens, on the new one.
    let both = Store::open(&db.url, Keyring::new(old).with(new.clone())).await.unwrap();
    assert_eq!(both.secret_key_id().await.unwrap(), new.id());
    assert_reads_in_clear(&both).await;
    both.close().await;
    let db = Db { key: new, ..db }.reopen().await;
    assert_reads_in_clear(&db.store).await;
}

pub async fn a_rotation_that_fails_midway_leaves_every_secret_under_the_old_key(db: Db) {
    write_secrets(&db.store).await;
    // The versions are re-sealed last: a value there that does not open fails the rotation
    // after the credentials, installations and drafts were re-sealed in its transaction.
    let mut raw = AnyConnection::connect(&db.url).await.unwrap();
    let (good,): (String,) = sqlx::query_as("SELECT sealed_defaults FROM versions")
        .fetch_one(&mut raw)
        .await
        .unwrap();
    let (other,): (String,) = sqlx::query_as("SELECT sealed_defaults FROM plugins")
        .fetch_one(&mut raw)
        .await
        .unwrap();
    // The draft's sealed value, moved into the version's row, does not open there.
    sqlx::query("UPDATE versions SET sealed_defaults = $1")
        .bind(&other)
        .execute(&mut raw)
        .await
        .unwrap();
    let before = raw_rows(&db.url).await;
    let e = db.store.rotate_key(SecretKey::generate()).await.unwrap_err();
    assert!(e.to_string().contains("moved from another row"), "{e}");
    assert_eq!(raw_rows(&db.url).await, before, "nothing changed");
    assert_eq!(db.store.secret_key_id().await.unwrap(), db.key.id());
    sqlx::query("UPDATE versions SET sealed_defaults = $1")
        .bind(&good)
        .execute(&mut raw)
        .await
        .unwrap();
    raw.close().await.unwrap();
    assert_reads_in_clear(&db.store).await;
}

pub async fn a_server_without_the_databases_key_neither_opens_nor_seals(db: Db) {
    write_secrets(&db.store).await;
    let stranger = Keyring::new(SecretKey::generate());
    let e = Store::open(&db.url, stranger).await.unwrap_err();
    assert!(e.to_string().contains(db.key.id()), "{e}");

    // A replica still on the old key after another rotated: it refuses to seal with it.
    let replica = Store::open(&db.url, Keyring::new(db.key.clone())).await.unwrap();
    db.store.rotate_key(SecretKey::generate()).await.unwrap();
    let mut tx = replica.begin().await.unwrap();
    let e = tx.put_credential(&team("t"), "h", "u", "p").await.unwrap_err();
    assert!(matches!(e, StoreError::SecretKey(_)), "{e}");
    drop(tx);
    let e = replica.credential_secrets(&team("t")).await.unwrap_err();
    assert!(e.to_string().contains("does not have"), "{e}");
    replica.close().await;
}
