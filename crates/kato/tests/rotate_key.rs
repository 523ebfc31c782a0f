//! `kato rotate-key`, run as the binary on a stopped server's data dir: every secret re-sealed
//! with a new key that replaces `secrets.key`; a key given in the environment is refused.

use std::process::Command;

use kato_store::{Keyring, SecretKey, Store};

fn key_in(dir: &std::path::Path) -> SecretKey {
    SecretKey::from_base64(&std::fs::read_to_string(dir.join("secrets.key")).unwrap()).unwrap()
}

#[tokio::test]
async fn rotate_key_reseals_the_stores_secrets_with_a_new_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = kato_server::sqlite_url(dir.path());
    let source = kato_server::SecretKeySource::DataDir;
    // As `kato serve` opens it: the data dir's key created at first start.
    let store = kato_server::secret_key::open_store(&url, &source, dir.path())
        .await
        .unwrap();
    let team = "demo".parse().unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.create_team(&team).await.unwrap();
    tx.put_credential(&team, "r.example.com", "u", "rotate-me-8812")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    store.close().await;
    let old = key_in(dir.path());

    let out = Command::new(env!("CARGO_BIN_EXE_kato"))
        .args(["rotate-key", "--data-dir"])
        .arg(dir.path())
        .env_remove("KATO_DATABASE_URL")
        .env_remove("KATO_SECRET_KEY")
        .env_remove("KATO_SECRET_KEY_FILE")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    let new = key_in(dir.path());
    assert_ne!(new, old);
    assert!(
        said.contains(&format!(
            "re-sealed 1 secret values with key {} (was {})",
            new.id(),
            old.id()
        )),
        "{said}"
    );

    assert!(
        Store::open(&url, Keyring::new(old)).await.is_err(),
        "the old key opens nothing"
    );
    let store = Store::open(&url, Keyring::new(new.clone())).await.unwrap();
    assert_eq!(
        store.credential_secrets(&team).await.unwrap()[0].password,
        "rotate-me-8812"
    );
    store.close().await;

    let out = Command::new(env!("CARGO_BIN_EXE_kato"))
        .args(["rotate-key", "--data-dir"])
        .arg(dir.path())
        .env("KATO_SECRET_KEY", new.to_base64())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot be rotated in place"), "{err}");
    assert_eq!(key_in(dir.path()), new, "a refused rotation changes nothing");
}
