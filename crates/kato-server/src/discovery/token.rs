//! Discovery tokens. A token is `kd_` + HMAC-SHA256(server key, "team/component/plugin/nonce"):
//! the store keeps only the nonce (to derive the token again when rendering the plug-in's
//! environment) and the token's SHA-256 (to find the installation a token belongs to). A copy of
//! the database alone therefore reveals no token; rotating replaces the nonce.

use std::path::Path;

use hmac::{Hmac, Mac};
use kato_store::{DiscoveryCredential, InstallationKey};
use sha2::Sha256;

use crate::auth::hash_token;

/// The server's discovery key, kept in the data dir (`discovery.key`, mode 0600). Replicas
/// sharing one database must share this file too (mount the same Secret).
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut out).ok()?;
    Some(out)
}

impl TokenKey {
    pub fn random() -> TokenKey {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the operating system's random source failed");
        TokenKey(bytes)
    }

    /// Reads the key file, or creates it with a new random key.
    pub fn load_or_create(path: &Path) -> std::io::Result<TokenKey> {
        match std::fs::read_to_string(path) {
            Ok(text) => unhex(&text).map(TokenKey).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the discovery key file must hold 64 hex digits: restore it, or delete it to make a new key (running plug-ins then need a redeploy)",
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = TokenKey::random();
                crate::write_private(path, &hex::encode(key.0))?;
                Ok(key)
            }
            Err(e) => Err(e),
        }
    }

    /// The clear token of an installation with this nonce.
    pub fn token(&self, key: &InstallationKey, nonce: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(format!("{}/{}/{}/{nonce}", key.team, key.component, key.plugin).as_bytes());
        format!("kd_{}", hex::encode(mac.finalize().into_bytes()))
    }

    /// The credential stored for a nonce.
    pub fn credential(&self, key: &InstallationKey, nonce: String) -> DiscoveryCredential {
        let hash = hash_token(&self.token(key, &nonce));
        DiscoveryCredential { nonce, hash }
    }

    /// A credential with a fresh random nonce: a new installation, or a rotation.
    pub fn new_credential(&self, key: &InstallationKey) -> DiscoveryCredential {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).expect("the operating system's random source failed");
        self.credential(key, hex::encode(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(plugin: &str) -> InstallationKey {
        InstallationKey {
            team: "t".parse().unwrap(),
            component: "web".parse().unwrap(),
            plugin: plugin.parse().unwrap(),
        }
    }

    #[test]
    fn tokens_derive_from_key_installation_and_nonce() {
        let k = TokenKey::random();
        let a = k.new_credential(&key("a"));
        assert_eq!(hash_token(&k.token(&key("a"), &a.nonce)), a.hash);
        assert_ne!(k.token(&key("a"), &a.nonce), k.token(&key("b"), &a.nonce));
        assert_ne!(k.new_credential(&key("a")).nonce, a.nonce);
        assert_ne!(
            TokenKey::random().token(&key("a"), &a.nonce),
            k.token(&key("a"), &a.nonce)
        );
        assert!(k.token(&key("a"), "n").starts_with("kd_"));
    }

    #[test]
    fn key_file_is_created_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("discovery.key");
        let k1 = TokenKey::load_or_create(&path).unwrap();
        let k2 = TokenKey::load_or_create(&path).unwrap();
        assert_eq!(k1.token(&key("a"), "n"), k2.token(&key("a"), "n"));
        std::fs::write(&path, "nope").unwrap();
        let e = TokenKey::load_or_create(&path).unwrap_err().to_string();
        assert!(e.contains("64 hex digits"), "{e}");
    }
}
