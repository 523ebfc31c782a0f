//! The keys secrets are sealed with at rest, and the sealing itself: XChaCha20-Poly1305 with a
//! random nonce per value and the value's place in the database (`table/key…/column`) as
//! associated data, so a sealed value copied into another row does not open there. Every
//! sealed value names its key's id, so rotation and a server given the wrong key tell old
//! from new.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

use crate::StoreError;
use crate::error::corrupt;

/// What a sealed value starts with: `sealed:v1:{key id}:{base64 of nonce and ciphertext}`.
const PREFIX: &str = "sealed:v1:";
const NONCE_LEN: usize = 24;

/// A 256-bit key. `Debug` shows only its id.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey {
    id: String,
    bytes: [u8; 32],
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl SecretKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> SecretKey {
        let key = chacha20poly1305::Key::generate();
        SecretKey::from_bytes(key.into())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> SecretKey {
        // The id is a hash of the key: the same key has the same id on every replica, and the
        // id tells nothing about the key.
        let digest = Sha256::new_with_prefix(b"kato secret key id\0")
            .chain_update(bytes)
            .finalize();
        SecretKey {
            id: hex::encode(&digest[..8]),
            bytes,
        }
    }

    /// Reads the base64 text of 32 bytes (surrounding whitespace ignored).
    pub fn from_base64(text: &str) -> Result<SecretKey, StoreError> {
        let bad = |why: &str| {
            StoreError::SecretKey(format!(
                "the secret key must be the base64 text of 32 random bytes ({why}): make one with `head -c 32 /dev/urandom | base64`"
            ))
        };
        let bytes = STANDARD.decode(text.trim()).map_err(|_| bad("it is not base64"))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| bad(&format!("it holds {} bytes", b.len())))?;
        Ok(SecretKey::from_bytes(bytes))
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.bytes)
    }

    /// Names the key in every value sealed with it.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.bytes.into())
    }
}

/// The keys a store may open values with. The first seals a database that has no key yet;
/// afterwards the database records which key it is sealed with (see [`crate::Store::open`]).
#[derive(Debug, Clone)]
pub struct Keyring {
    keys: Vec<SecretKey>,
}

impl Keyring {
    pub fn new(key: SecretKey) -> Keyring {
        Keyring { keys: vec![key] }
    }

    /// Also accepts values sealed with `key` (a rotation that may or may not have finished).
    pub fn with(mut self, key: SecretKey) -> Keyring {
        if self.get(key.id()).is_none() {
            self.keys.push(key);
        }
        self
    }

    pub fn first(&self) -> &SecretKey {
        &self.keys[0]
    }

    pub fn get(&self, id: &str) -> Option<&SecretKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    pub fn ids(&self) -> String {
        let ids: Vec<_> = self.keys.iter().map(|k| format!("`{}`", k.id)).collect();
        ids.join(", ")
    }
}

/// Seals `plain` for `place` (where it is stored) with `key`.
pub(crate) fn seal(key: &SecretKey, place: &str, plain: &[u8]) -> String {
    let nonce = XNonce::generate();
    let payload = Payload {
        msg: plain,
        aad: place.as_bytes(),
    };
    let sealed = key
        .cipher()
        .encrypt(&nonce, payload)
        .expect("XChaCha20-Poly1305 seals any message of a database column");
    let mut bytes = nonce.to_vec();
    bytes.extend_from_slice(&sealed);
    format!("{PREFIX}{}:{}", key.id, STANDARD.encode(bytes))
}

/// The key id a sealed value names.
pub(crate) fn key_of<'a>(place: &str, sealed: &'a str) -> Result<&'a str, StoreError> {
    sealed
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once(':'))
        .map(|(id, _)| id)
        .ok_or_else(|| corrupt(format!("the sealed value of {place}"), "it is not a sealed value"))
}

/// Opens a value [`seal`] made for `place`, with whichever key of `keys` it names.
pub(crate) fn open(keys: &Keyring, place: &str, sealed: &str) -> Result<Vec<u8>, StoreError> {
    let id = key_of(place, sealed)?;
    let key = keys.get(id).ok_or_else(|| {
        StoreError::SecretKey(format!(
            "{place} is sealed with secret key `{id}`, which this server does not have (it has {}): start it with the key the database is sealed with",
            keys.ids()
        ))
    })?;
    let data = STANDARD
        .decode(&sealed[PREFIX.len() + id.len() + 1..])
        .map_err(|e| corrupt(format!("the sealed value of {place}"), e))?;
    if data.len() < NONCE_LEN {
        return Err(corrupt(format!("the sealed value of {place}"), "it is too short"));
    }
    let (nonce, ciphertext) = data.split_at(NONCE_LEN);
    let nonce = XNonce::try_from(nonce).expect("split at the nonce's length");
    let payload = Payload {
        msg: ciphertext,
        aad: place.as_bytes(),
    };
    key.cipher().decrypt(&nonce, payload).map_err(|_| {
        StoreError::SecretKey(format!(
            "{place} does not open with secret key `{id}`: the value was altered or moved from another row"
        ))
    })
}

/// [`open`] for text.
pub(crate) fn open_text(keys: &Keyring, place: &str, sealed: &str) -> Result<String, StoreError> {
    String::from_utf8(open(keys, place, sealed)?).map_err(|e| corrupt(format!("the sealed value of {place}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_place() {
        let key = SecretKey::generate();
        let ring = Keyring::new(key.clone());
        let a = seal(&key, "credentials/t/h/password", b"hunter2");
        let b = seal(&key, "credentials/t/h/password", b"hunter2");
        assert_ne!(a, b, "a random nonce per value");
        assert!(!a.contains("hunter2"));
        assert!(a.starts_with(&format!("sealed:v1:{}:", key.id())), "{a}");
        assert_eq!(open_text(&ring, "credentials/t/h/password", &a).unwrap(), "hunter2");

        let e = open(&ring, "credentials/u/h/password", &a).unwrap_err().to_string();
        assert!(e.contains("altered or moved"), "{e}");
        let other = Keyring::new(SecretKey::generate());
        let e = open(&other, "credentials/t/h/password", &a).unwrap_err().to_string();
        assert!(e.contains(&format!("sealed with secret key `{}`", key.id())), "{e}");
        assert!(open(&ring, "p", "hunter2").is_err());
        assert!(open(&ring, "p", &format!("sealed:v1:{}:AAAA", key.id())).is_err());
    }

    #[test]
    fn keys_read_from_base64_keep_their_id() {
        let key = SecretKey::generate();
        let again = SecretKey::from_base64(&format!("{}\n", key.to_base64())).unwrap();
        assert_eq!(again, key);
        assert_eq!(key.id().len(), 16);
        assert!(!format!("{key:?}").contains(&key.to_base64()));
        let e = SecretKey::from_base64("c2hvcnQ=").unwrap_err().to_string();
        assert!(e.contains("holds 5 bytes"), "{e}");
        assert!(SecretKey::from_base64("not base64!").is_err());
    }
}
