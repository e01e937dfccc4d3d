//! The secrets store: values encrypted at rest with XChaCha20-Poly1305 under a master key
//! that never enters the database.
//!
//! The master key is 32 random bytes, hex-encoded, taken from `KONTOR_MASTER_KEY` or else
//! from `secrets.master_key_file` (default `data/master.key`, created with mode 0600 on
//! first use). Each value gets a fresh 24-byte nonce; the secret's name is authenticated
//! data, so a ciphertext cannot be moved to another name. Each row records the fingerprint
//! of the key that sealed it, so a wrong key is reported as such, not as corruption.
//!
//! Values are never logged, never returned by the API and never part of an error message:
//! they exist in plaintext only inside [`Plaintext`], which zeroes its memory on drop and
//! prints as `[redacted]`.

use std::fmt;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::store::Sealed;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("the master key is invalid: {0} (expected 64 hex characters: 32 random bytes)")]
    BadMasterKey(String),
    #[error("cannot read or create the master key file {path}: {reason}")]
    KeyFile { path: PathBuf, reason: String },
    #[error(
        "secret `{name}` was sealed with master key {stored}, but the current key is {current}; \
         start with the key it was sealed with, or set the secret again"
    )]
    WrongKey {
        name: String,
        stored: String,
        current: String,
    },
    #[error("secret `{0}` cannot be decrypted: the stored data was changed")]
    Tampered(String),
    #[error("invalid secret name `{0}`: use 1 to 100 letters, digits, `_`, `-` or `.`")]
    InvalidName(String),
    #[error("secret names starting with `kontor.` are reserved for the server's own keys: `{0}`")]
    Reserved(String),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
}

/// A decrypted secret value. Zeroed on drop; `Debug` and `Display` never show it.
pub struct Plaintext(Zeroizing<Vec<u8>>);

impl Plaintext {
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

pub struct MasterKey {
    key: Zeroizing<[u8; 32]>,
    id: String,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

/// Secrets the server keeps for itself (the unsubscribe keyring) are named `kontor.…`:
/// the secrets API and plugins can neither read nor write them; only `kontor secret`
/// on the server's machine can delete one.
pub const RESERVED_PREFIX: &str = "kontor.";

pub fn is_reserved(name: &str) -> bool {
    name.starts_with(RESERVED_PREFIX)
}

/// A name the API and plugins may use: valid and outside the reserved namespace.
pub fn check_client_name(name: &str) -> Result<(), SecretsError> {
    check_name(name)?;
    if is_reserved(name) {
        return Err(SecretsError::Reserved(name.to_string()));
    }
    Ok(())
}

pub fn check_name(name: &str) -> Result<(), SecretsError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(SecretsError::InvalidName(name.chars().take(100).collect()))
    }
}

impl MasterKey {
    pub fn generate() -> MasterKey {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(key.as_mut());
        MasterKey::from_bytes(key)
    }

    fn from_bytes(key: Zeroizing<[u8; 32]>) -> MasterKey {
        let id = hex::encode(&Sha256::digest(key.as_ref())[..6]);
        MasterKey { key, id }
    }

    pub fn from_hex(text: &str) -> Result<MasterKey, SecretsError> {
        let mut bytes = Zeroizing::new(
            hex::decode(text.trim()).map_err(|_| SecretsError::BadMasterKey("not hex".into()))?,
        );
        if bytes.len() != 32 {
            return Err(SecretsError::BadMasterKey(format!("{} bytes", bytes.len())));
        }
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&bytes);
        bytes.zeroize();
        Ok(MasterKey::from_bytes(key))
    }

    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.key.as_ref()))
    }

    /// The key from `env_value` (`KONTOR_MASTER_KEY`) if given, else from `file`, which is
    /// created with a new random key (mode 0600) if it does not exist.
    pub fn load(env_value: Option<&str>, file: &Path) -> Result<MasterKey, SecretsError> {
        if let Some(value) = env_value {
            return MasterKey::from_hex(value);
        }
        let key_file_error = |reason: String| SecretsError::KeyFile {
            path: file.to_path_buf(),
            reason,
        };
        match std::fs::read_to_string(file) {
            Ok(text) => MasterKey::from_hex(&Zeroizing::new(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = MasterKey::generate();
                match create_key_file(file, &key) {
                    Ok(()) => {}
                    // Another process (a server and a CLI started together) created it
                    // first: use that one.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let text = std::fs::read_to_string(file)
                            .map_err(|e| key_file_error(e.to_string()))?;
                        return MasterKey::from_hex(&Zeroizing::new(text));
                    }
                    Err(e) => return Err(key_file_error(e.to_string())),
                }
                tracing::warn!(path = %file.display(), key = %key.id, "created a new master key; back it up: secrets cannot be read without it");
                Ok(key)
            }
            Err(e) => Err(key_file_error(e.to_string())),
        }
    }

    /// Fingerprint of the key (not secret): the first 6 bytes of its SHA-256, in hex.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn seal(&self, name: &str, value: &[u8]) -> Sealed {
        let cipher = XChaCha20Poly1305::new(self.key.as_ref().into());
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: value,
                    aad: name.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
        Sealed {
            key_id: self.id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    pub fn open(&self, name: &str, sealed: &Sealed) -> Result<Plaintext, SecretsError> {
        if sealed.key_id != self.id {
            return Err(SecretsError::WrongKey {
                name: name.to_string(),
                stored: sealed.key_id.clone(),
                current: self.id.clone(),
            });
        }
        if sealed.nonce.len() != 24 {
            return Err(SecretsError::Tampered(name.to_string()));
        }
        let cipher = XChaCha20Poly1305::new(self.key.as_ref().into());
        cipher
            .decrypt(
                XNonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: name.as_bytes(),
                },
            )
            .map(|v| Plaintext(Zeroizing::new(v)))
            .map_err(|_| SecretsError::Tampered(name.to_string()))
    }
}

/// The value of the stored secret `name`, if there is one.
pub async fn read(
    store: &crate::store::Store,
    key: &MasterKey,
    name: &str,
) -> Result<Option<Plaintext>, SecretsError> {
    match store.secrets().get(name).await? {
        Some(sealed) => Ok(Some(key.open(name, &sealed)?)),
        None => Ok(None),
    }
}

/// Re-encrypts every stored secret from `old` to `new` in one transaction; returns how
/// many. If any secret cannot be opened with `old`, nothing changes.
pub async fn reseal_all(
    store: &crate::store::Store,
    old: &MasterKey,
    new: &MasterKey,
) -> anyhow::Result<usize> {
    let resealed = store
        .secrets()
        .reseal(
            |name, sealed| {
                old.open(name, sealed)
                    .map(|plain| new.seal(name, plain.expose()))
            },
            chrono::Utc::now(),
        )
        .await??;
    Ok(resealed)
}

/// Creates the first key file; fails with `AlreadyExists` if another process won.
fn create_key_file(path: &Path, key: &MasterKey) -> std::io::Result<()> {
    let temp = write_temp_key(path, key)?;
    let linked = std::fs::hard_link(&temp, path);
    let _ = std::fs::remove_file(&temp);
    linked
}

/// Writes a key file readable by the owner only, atomically (temp file, then rename).
pub fn write_key_file(path: &Path, key: &MasterKey) -> std::io::Result<()> {
    let temp = write_temp_key(path, key)?;
    std::fs::rename(&temp, path)
}

/// The key in a temp file beside `path`, unique to this process, owner-readable only.
fn write_temp_key(path: &Path, key: &MasterKey) -> std::io::Result<std::path::PathBuf> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let temp = path.with_extension(format!("{}.tmp", std::process::id()));
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&temp)?;
        file.write_all(key.to_hex().as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
    }
    Ok(temp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_bound_to_the_name() {
        let key = MasterKey::generate();
        let sealed = key.seal("erp.password", "Geheimnis-ÄÖÜ".as_bytes());
        assert_ne!(sealed.ciphertext, "Geheimnis-ÄÖÜ".as_bytes());
        assert_eq!(
            key.open("erp.password", &sealed).unwrap().expose(),
            "Geheimnis-ÄÖÜ".as_bytes()
        );
        assert!(matches!(
            key.open("other.name", &sealed),
            Err(SecretsError::Tampered(_))
        ));
        let other = MasterKey::generate();
        assert!(matches!(
            other.open("erp.password", &sealed),
            Err(SecretsError::WrongKey { .. })
        ));
        assert_eq!(
            format!("{:?}", key.open("erp.password", &sealed).unwrap()),
            "[redacted]"
        );
        assert!(!format!("{key:?}").contains(&*key.to_hex()));
    }

    #[test]
    fn key_file_is_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/master.key");
        let first = MasterKey::load(None, &path).unwrap();
        let again = MasterKey::load(None, &path).unwrap();
        assert_eq!(first.id(), again.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert!(matches!(
            MasterKey::load(Some("zz"), &path),
            Err(SecretsError::BadMasterKey(_))
        ));
    }
}
