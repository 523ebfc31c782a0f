//! The secret key the store seals secrets with (see docs/security.md, "Secrets at rest"): where
//! it comes from, its creation at first start, and `kato rotate-key`.
//!
//! A rotation writes the new key beside the old one (`secrets.key.new`), re-seals every secret in
//! one transaction that also records the new key's id in the database, then renames the new
//! key over the old. A crash anywhere leaves the database under one of the two keys, and the
//! next start (or rotation) reads which from the database: it finishes the rename, or drops the
//! new key.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use kato_store::{Keyring, SecretKey, Store, StoreError};

use crate::StartError;

/// The file name of the key in the data dir.
pub const KEY_FILE: &str = "secrets.key";

/// Where the server's secret key comes from.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum SecretKeySource {
    /// `secrets.key` in the data dir, created at first start.
    #[default]
    DataDir,
    /// A file holding the key in base64 (`--secret-key-file`), created if missing: the one
    /// file every replica on a shared database is given.
    File(PathBuf),
    /// The key itself, in base64 (`KATO_SECRET_KEY`).
    Value(String),
}

impl fmt::Debug for SecretKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DataDir => f.write_str("DataDir"),
            Self::File(p) => f.debug_tuple("File").field(p).finish(),
            Self::Value(_) => f.write_str("Value(<redacted>)"),
        }
    }
}

impl SecretKeySource {
    /// The key's file, if it is kept in one.
    pub fn file(&self, data_dir: &Path) -> Option<PathBuf> {
        match self {
            Self::DataDir => Some(data_dir.join(KEY_FILE)),
            Self::File(p) => Some(p.clone()),
            Self::Value(_) => None,
        }
    }

    fn origin(&self, data_dir: &Path) -> String {
        match self.file(data_dir) {
            Some(p) => p.display().to_string(),
            None => "KATO_SECRET_KEY".into(),
        }
    }
}

fn pending_file(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".new");
    PathBuf::from(name)
}

fn failed(source: &SecretKeySource, data_dir: &Path, message: impl ToString) -> StartError {
    StartError::SecretKey {
        origin: source.origin(data_dir),
        message: message.to_string(),
    }
}

/// The keys to open the store with: the source's key and, while a rotation is unresolved, the
/// new one it wrote.
pub fn keyring(source: &SecretKeySource, data_dir: &Path) -> Result<(Keyring, Option<SecretKey>), StartError> {
    let fail = |m: String| failed(source, data_dir, m);
    let Some(file) = source.file(data_dir) else {
        let SecretKeySource::Value(text) = source else {
            unreachable!("only a key given as a value has no file")
        };
        let key = SecretKey::from_base64(text).map_err(|e| fail(e.to_string()))?;
        return Ok((Keyring::new(key), None));
    };
    let key = match std::fs::read_to_string(&file) {
        Ok(text) => SecretKey::from_base64(&text).map_err(|e| fail(e.to_string()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SecretKey::generate();
            match write_key(&file, &key) {
                Ok(()) => key,
                // Another replica sharing the file made it first.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(&file).map_err(|e| fail(e.to_string()))?;
                    SecretKey::from_base64(&text).map_err(|e| fail(e.to_string()))?
                }
                Err(e) => return Err(fail(format!("cannot create it: {e}"))),
            }
        }
        Err(e) => return Err(fail(format!("cannot read it: {e}"))),
    };
    let pending = match std::fs::read_to_string(pending_file(&file)) {
        Ok(text) => SecretKey::from_base64(&text).ok(),
        Err(_) => None,
    };
    let ring = match &pending {
        Some(new) => Keyring::new(key).with(new.clone()),
        None => Keyring::new(key),
    };
    Ok((ring, pending))
}

/// Writes a new key file: 0600, never over an existing one (`AlreadyExists`), and whole or not
/// at all, so a replica starting at the same moment reads either no file or the whole key.
fn write_key(path: &Path, key: &SecretKey) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&tmp).and_then(|mut f| {
        f.write_all(format!("{}\n", key.to_base64()).as_bytes())?;
        f.sync_all()
    });
    // A hard link, unlike a rename, fails when the name exists.
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    linked?;
    sync_dir(path)
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// Opens the store with the server's key; a rotation a crash interrupted is finished or undone
/// first, as the database says.
pub async fn open_store(url: &str, source: &SecretKeySource, data_dir: &Path) -> Result<Store, StartError> {
    let (ring, pending) = keyring(source, data_dir)?;
    let store = Store::open(url, ring).await.map_err(|e| match e {
        StoreError::SecretKey(m) => failed(source, data_dir, m),
        other => StartError::Store(other),
    })?;
    if let (Some(new), Some(file)) = (pending, source.file(data_dir)) {
        let fail = |e: std::io::Error| failed(source, data_dir, e);
        let new_file = pending_file(&file);
        if store.secret_key_id().await? == new.id() {
            std::fs::rename(&new_file, &file).map_err(fail)?;
            sync_dir(&file).map_err(fail)?;
            tracing::warn!(key = new.id(), "finished a key rotation a crash had interrupted");
        } else {
            std::fs::remove_file(&new_file).map_err(fail)?;
            tracing::warn!("undid a key rotation a crash had interrupted: the old key stays");
        }
    }
    Ok(store)
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    pub old_key: String,
    pub new_key: String,
    /// How many sealed values were re-sealed.
    pub values: usize,
    /// Where the new key is now.
    pub file: PathBuf,
}

/// `kato rotate-key`: a new key, every secret re-sealed with it in one transaction, the key
/// file replaced. Run it while no server uses the database (see docs/security.md).
pub async fn rotate(url: &str, source: &SecretKeySource, data_dir: &Path) -> Result<Rotated, StartError> {
    let Some(file) = source.file(data_dir) else {
        return Err(failed(
            source,
            data_dir,
            "a key given in the environment cannot be rotated in place: write it to a file, run \
             `kato rotate-key --secret-key-file FILE`, then give every server the new key from FILE",
        ));
    };
    let store = open_store(url, source, data_dir).await?;
    let old_key = store.secret_key_id().await?;
    let new = SecretKey::generate();
    let new_file = pending_file(&file);
    let fail = |e: std::io::Error| failed(source, data_dir, e);
    write_key(&new_file, &new).map_err(fail)?;
    // The database and the files agree again only once both moved; until then each start
    // resolves it (see `open_store`).
    let values = match store.rotate_key(new.clone()).await {
        Ok(n) => n,
        Err(e) => {
            // Dropped only when the database surely stayed on the old key; else the next
            // start decides.
            if store.secret_key_id().await.is_ok_and(|id| id == old_key) {
                let _ = std::fs::remove_file(&new_file);
            }
            store.close().await;
            return Err(e.into());
        }
    };
    std::fs::rename(&new_file, &file).map_err(fail)?;
    sync_dir(&file).map_err(fail)?;
    store.close().await;
    Ok(Rotated {
        old_key,
        new_key: new.id().to_owned(),
        values,
        file,
    })
}
