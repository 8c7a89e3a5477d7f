//! Secrets at rest: the passwords administrators put in CSV files.
//!
//! Each secret is sealed with XChaCha20-Poly1305 under a 256-bit key, with a
//! random 192-bit nonce (random nonces are safe at this size, so no counter
//! has to survive crashes) and the secret's *binding* as associated data:
//! the row it belongs to, say `batch 7/user kari@example.org/Password`. A
//! sealed value copied into another row does not open there.
//!
//! The key comes from `FLYTT_SECRET_KEY` (base64, 32 bytes) or from the key
//! file `secret.key` in the data directory, created on first use with mode
//! 0600. A sealed value starts with the key's id, so a value sealed under
//! another key is refused with a clear error instead of failing to decrypt
//! anonymously, and keys can later be rotated.
//!
//! This crate is the only one that decrypts (ARCHITECTURE.md, invariant 5).

use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

/// The environment variable that may hold the key (base64 of 32 bytes).
pub const KEY_ENV: &str = "FLYTT_SECRET_KEY";
/// The key file's name in the data directory.
pub const KEY_FILE: &str = "secret.key";

const VERSION: &str = "v1";
const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{KEY_ENV} must be the base64 of 32 bytes")]
    BadEnvKey,
    #[error("the key file {path} is not 32 bytes of base64")]
    BadKeyFile { path: String },
    #[error("cannot read or create the key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error("the key file {path} is readable by others (mode {mode:o}); it must be 0600")]
    KeyFileMode { path: String, mode: u32 },
    #[error(
        "the key file {path} is missing, and the database holds secrets sealed with key {sealed_with}: \
         restore the key file (or set {KEY_ENV}) rather than make a new key that cannot open them"
    )]
    MissingKeyFile { path: String, sealed_with: String },
    #[error("no random numbers from the operating system: {0}")]
    Random(String),
    #[error("this secret was sealed under key {found}, not the current key {current}")]
    OtherKey { found: String, current: String },
    #[error("this secret is damaged or does not belong here")]
    Unsealable,
    #[error("not a sealed secret")]
    Format,
}

/// A secret in memory: no `Display`, a redacted `Debug`, wiped when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        SecretString(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for SecretString {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(***)")
    }
}

/// The sealing key.
pub struct Keyring {
    cipher: XChaCha20Poly1305,
    id: String,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keyring(id {})", self.id)
    }
}

impl Keyring {
    /// The key from `FLYTT_SECRET_KEY`, or else from the data directory's
    /// key file, which is created (mode 0600) if it does not exist.
    pub fn load(data_dir: &Path) -> Result<Keyring, Error> {
        Self::load_for(data_dir, None)
    }

    /// Like `load`, for a database that already holds a secret sealed with
    /// key `sealed_with` (if any): then a missing key file is an error, not
    /// a new key.
    pub fn load_for(data_dir: &Path, sealed_with: Option<&str>) -> Result<Keyring, Error> {
        match std::env::var(KEY_ENV) {
            Ok(text) => {
                let key = decode_key(&text).ok_or(Error::BadEnvKey)?;
                Ok(Self::from_key(&key))
            }
            Err(_) => Self::from_file(&data_dir.join(KEY_FILE), sealed_with),
        }
    }

    fn from_file(path: &Path, sealed_with: Option<&str>) -> Result<Keyring, Error> {
        let shown = path.display().to_string();
        let io = |source| Error::KeyFile {
            path: shown.clone(),
            source,
        };
        if !path.exists() {
            if let Some(sealed_with) = sealed_with {
                return Err(Error::MissingKeyFile {
                    path: shown,
                    sealed_with: sealed_with.to_string(),
                });
            }
            match Self::create_key_file(path) {
                Ok(keyring) => return Ok(keyring),
                // Another process made it first: read theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io(e)),
            }
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::KeyFileMode { path: shown, mode });
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
        let key = decode_key(&text).ok_or(Error::BadKeyFile { path: shown })?;
        Ok(Self::from_key(&key))
    }

    /// A new random key, written whole to a private temporary file and then
    /// linked into place: a process reading the key file never sees it half
    /// written, and two processes creating it at once agree on one key (the
    /// link fails for the second).
    fn create_key_file(path: &Path) -> std::io::Result<Keyring> {
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::fill(key.as_mut()).map_err(|e| std::io::Error::other(e.to_string()))?;
        let text = Zeroizing::new(STANDARD.encode(key.as_ref()));
        let mut suffix = [0u8; 8];
        getrandom::fill(&mut suffix).map_err(|e| std::io::Error::other(e.to_string()))?;
        let temporary = path.with_extension(format!("new-{}", u64::from_le_bytes(suffix)));
        let written = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temporary)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::hard_link(&temporary, path)
        })();
        let _ = std::fs::remove_file(&temporary);
        written.map(|()| Self::from_key(&key))
    }

    fn from_key(key: &[u8; 32]) -> Keyring {
        let digest = Sha256::digest(key);
        let id = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        Keyring {
            cipher: XChaCha20Poly1305::new(key.into()),
            id,
        }
    }

    /// The key's short public id (first bytes of its SHA-256).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The id of the key a sealed value was sealed with, if it is one.
    pub fn sealed_with(sealed: &str) -> Option<&str> {
        let mut parts = sealed.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(VERSION), Some(id), Some(_)) => Some(id),
            _ => None,
        }
    }

    /// Seals `secret` for the row named by `binding`:
    /// `v1:<key id>:<base64(nonce ‖ ciphertext)>`.
    pub fn seal(&self, secret: &SecretString, binding: &str) -> Result<String, Error> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| Error::Random(e.to_string()))?;
        let sealed = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: secret.expose().as_bytes(),
                    aad: binding.as_bytes(),
                },
            )
            .map_err(|_| Error::Unsealable)?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        Ok(format!("{VERSION}:{}:{}", self.id, STANDARD.encode(blob)))
    }

    /// Opens a value sealed for the row named by `binding`.
    pub fn open(&self, sealed: &str, binding: &str) -> Result<SecretString, Error> {
        let mut parts = sealed.splitn(3, ':');
        let (Some(VERSION), Some(id), Some(data)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::Format);
        };
        if id != self.id {
            return Err(Error::OtherKey {
                found: id.to_string(),
                current: self.id.clone(),
            });
        }
        let blob = STANDARD.decode(data).map_err(|_| Error::Format)?;
        if blob.len() < NONCE_LEN {
            return Err(Error::Format);
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| Error::Format)?;
        let plain = Zeroizing::new(
            self.cipher
                .decrypt(
                    &XNonce::from(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: binding.as_bytes(),
                    },
                )
                .map_err(|_| Error::Unsealable)?,
        );
        let text = std::str::from_utf8(&plain).map_err(|_| Error::Unsealable)?;
        Ok(SecretString::new(text))
    }
}

fn decode_key(text: &str) -> Option<[u8; 32]> {
    let bytes = Zeroizing::new(STANDARD.decode(text.trim()).ok()?);
    bytes.as_slice().try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn keyring() -> (tempfile::TempDir, Keyring) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let keyring =
            Keyring::from_file(&dir.path().join(KEY_FILE), None).unwrap_or_else(|e| panic!("{e}"));
        (dir, keyring)
    }

    #[test]
    fn sealed_secrets_open_only_in_their_row() -> Result<(), Error> {
        let (_dir, keys) = keyring();
        let secret = SecretString::new("Sommer2026!");
        let sealed = keys.seal(&secret, "batch 1/user kari@example.org/Password")?;
        assert!(!sealed.contains("Sommer2026"));
        assert!(sealed.starts_with(&format!("v1:{}:", keys.id())));
        assert_eq!(
            keys.open(&sealed, "batch 1/user kari@example.org/Password")?,
            secret
        );
        assert!(matches!(
            keys.open(&sealed, "batch 1/user ola@example.org/Password"),
            Err(Error::Unsealable)
        ));
        // Two seals of one secret differ (random nonces).
        assert_ne!(sealed, keys.seal(&secret, "x")?);
        Ok(())
    }

    #[test]
    fn tampering_and_other_keys_are_refused() -> Result<(), Error> {
        let (_dir, keys) = keyring();
        let (_other_dir, other) = keyring();
        let sealed = keys.seal(&SecretString::new("passord123"), "row")?;
        let mut flipped = sealed.clone().into_bytes();
        let last = flipped.len() - 3;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap_or_default();
        assert!(matches!(keys.open(&flipped, "row"), Err(Error::Unsealable)));
        assert!(matches!(
            other.open(&sealed, "row"),
            Err(Error::OtherKey { .. })
        ));
        assert!(matches!(keys.open("plain text", "row"), Err(Error::Format)));
        Ok(())
    }

    #[test]
    fn the_key_file_is_created_private_and_reused() -> Result<(), Error> {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join(KEY_FILE);
        let first = Keyring::from_file(&path, None)?;
        let mode = std::fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        assert_eq!(mode, 0o600);
        let again = Keyring::from_file(&path, None)?;
        assert_eq!(first.id(), again.id());
        let sealed = first.seal(&SecretString::new("passord123"), "row")?;
        assert_eq!(again.open(&sealed, "row")?.expose(), "passord123");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            Keyring::from_file(&path, None),
            Err(Error::KeyFileMode { mode: 0o644, .. })
        ));
        Ok(())
    }

    #[test]
    fn processes_creating_the_key_at_once_agree_and_a_lost_key_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join(KEY_FILE);
        let ids: Vec<String> = std::thread::scope(|scope| {
            let makers: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| Keyring::from_file(&path, None).map(|k| k.id().to_string()))
                })
                .collect();
            makers
                .into_iter()
                .map(|m| m.join().unwrap_or_else(|_| panic!("thread")))
                .collect::<Result<_, _>>()
                .unwrap_or_else(|e| panic!("{e}"))
        });
        assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
        let leftovers = std::fs::read_dir(dir.path())
            .map(|entries| entries.count())
            .unwrap_or(0);
        assert_eq!(leftovers, 1, "temporary key files were left behind");

        std::fs::remove_file(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            Keyring::from_file(&path, Some(&ids[0])),
            Err(Error::MissingKeyFile { .. })
        ));
        assert!(!path.exists(), "a new key was made beside sealed secrets");
    }

    #[test]
    fn keys_from_the_environment_must_be_32_bytes() {
        let key = [7u8; 32];
        assert_eq!(
            decode_key(&format!(" {}\n", STANDARD.encode(key))),
            Some(key)
        );
        assert_eq!(decode_key(&STANDARD.encode([7u8; 16])), None);
        assert_eq!(decode_key("not base64!"), None);
        // The same key gives the same id wherever it is loaded.
        assert_eq!(Keyring::from_key(&key).id(), Keyring::from_key(&key).id());
    }

    #[test]
    fn secrets_do_not_print() {
        let secret = SecretString::new("hemmelig1");
        assert_eq!(format!("{secret:?}"), "SecretString(***)");
        let (_dir, keys) = keyring();
        assert_eq!(format!("{keys:?}"), format!("Keyring(id {})", keys.id()));
    }
}
