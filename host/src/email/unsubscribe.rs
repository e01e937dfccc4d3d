//! Unsubscribe tokens: who unsubscribes from what, signed so a link cannot be forged.
//! The same keyring signs other links in mail (a lead's accept/reject links), each use
//! with a context of its own in the MAC ([`Keyring::sign_as`]).
//!
//! A token is `KEY_ID.PAYLOAD.MAC` (base64url without padding): the payload names the
//! address, the purpose and the locale of the confirmation page; the MAC is HMAC-SHA256
//! under a key from the secrets store (`email.unsubscribe-keys`, created on first use).
//! Rotating adds a new key that signs from then on; older keys keep verifying, so links
//! in mail already sent keep working. Rotating the master key re-seals the keyring and
//! changes nothing here.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::secrets::MasterKey;
use crate::store::Store;

/// The secret holding the keyring.
pub const KEYRING_SECRET: &str = "kontor.email.unsubscribe-keys";
/// Where the keyring lived before the reserved namespace; moved on first start.
const LEGACY_KEYRING_SECRET: &str = "email.unsubscribe-keys";

/// What a token says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unsubscribe {
    #[serde(rename = "a")]
    pub address: String,
    #[serde(rename = "p")]
    pub purpose: String,
    #[serde(rename = "l")]
    pub locale: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Key {
    id: String,
    /// hex
    key: String,
}

/// The signing keys, newest first.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("Keyring").field("ids", &ids).finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Secrets(#[from] crate::secrets::SecretsError),
    #[error(
        "the unsubscribe keyring (secret `{KEYRING_SECRET}`) cannot be read: {0}. Restore the \
         database from a backup, or start a new keyring with \
         `kontor secret delete {KEYRING_SECRET}` (unsubscribe links already sent then stop working)"
    )]
    Corrupt(String),
}

fn new_key() -> Key {
    let mut secret = [0u8; 32];
    rand::fill(&mut secret);
    let mut id = [0u8; 4];
    rand::fill(&mut id);
    Key {
        id: hex::encode(id),
        key: hex::encode(secret),
    }
}

fn seal(master: &MasterKey, keys: &[Key]) -> crate::store::Sealed {
    let text = zeroize::Zeroizing::new(serde_json::to_vec(keys).expect("keys serialize"));
    master.seal(KEYRING_SECRET, &text)
}

impl Keyring {
    /// Loads the keyring, creating it with one key if the store has none. Processes
    /// starting together on one database each propose a key; the first stored wins and
    /// everyone uses it.
    pub async fn load(store: &Store, master: &MasterKey) -> Result<Keyring, KeyringError> {
        move_legacy_keyring(store, master).await?;
        let keys = stored_keys(store, master).await?;
        if !keys.is_empty() {
            return Keyring::from_keys(keys);
        }
        let proposed = seal(master, &[new_key()]);
        store
            .secrets()
            .put_if_absent(KEYRING_SECRET, &proposed, chrono::Utc::now())
            .await?;
        Keyring::from_keys(stored_keys(store, master).await?)
    }

    /// Adds a new signing key (keeping the old ones for verification) and stores the ring.
    pub async fn rotate(store: &Store, master: &MasterKey) -> Result<Keyring, KeyringError> {
        let mut keys = stored_keys(store, master).await?;
        keys.insert(0, new_key());
        store
            .secrets()
            .put(
                KEYRING_SECRET,
                &seal(master, &keys),
                &crate::store::Actor::named("server"),
                chrono::Utc::now(),
            )
            .await?;
        Keyring::from_keys(keys)
    }

    fn from_keys(keys: Vec<Key>) -> Result<Keyring, KeyringError> {
        let keys = keys
            .into_iter()
            .map(|k| {
                hex::decode(&k.key)
                    .map(|bytes| (k.id, bytes))
                    .map_err(|e| KeyringError::Corrupt(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Keyring { keys })
    }

    /// The id of the key that signs new tokens.
    pub fn current_id(&self) -> &str {
        &self.keys[0].0
    }

    /// A token for `what`, signed with the newest key.
    pub fn sign(&self, what: &Unsubscribe) -> String {
        self.sign_as("", what)
    }

    /// What `token` says, if one of our keys signed it.
    pub fn verify(&self, token: &str) -> Option<Unsubscribe> {
        self.verify_as("", token)
    }

    /// A token for `what` in `context` (a lead's decision link, say): the MAC covers the
    /// context, so a token made for one use is no token for another. The empty context is
    /// the unsubscribe links'.
    pub fn sign_as<T: Serialize>(&self, context: &str, what: &T) -> String {
        let (id, key) = &self.keys[0];
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(what).expect("serializes"));
        let signed = format!("{id}.{payload}");
        let mac = URL_SAFE_NO_PAD.encode(mac(key, &format!("{context}{signed}")));
        format!("{signed}.{mac}")
    }

    /// What `token` says in `context`, if one of our keys signed it for that context.
    pub fn verify_as<T: DeserializeOwned>(&self, context: &str, token: &str) -> Option<T> {
        let mut parts = token.split('.');
        let (Some(id), Some(payload), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let (_, key) = self.keys.iter().find(|(k, _)| k == id)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let mut check = Hmac::<Sha256>::new_from_slice(key).ok()?;
        check.update(format!("{context}{id}.{payload}").as_bytes());
        check.verify_slice(&tag).ok()?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
    }
}

/// The keys in the secrets store, newest first; none before the first start.
async fn stored_keys(store: &Store, master: &MasterKey) -> Result<Vec<Key>, KeyringError> {
    let plain = crate::secrets::read(store, master, KEYRING_SECRET)
        .await
        .map_err(|e| match e {
            crate::secrets::SecretsError::Store(e) => KeyringError::Store(e),
            other => KeyringError::Corrupt(other.to_string()),
        })?;
    let Some(plain) = plain else {
        return Ok(Vec::new());
    };
    let keys: Vec<Key> =
        serde_json::from_slice(plain.expose()).map_err(|e| KeyringError::Corrupt(e.to_string()))?;
    if keys.is_empty() {
        return Err(KeyringError::Corrupt("it holds no key".into()));
    }
    Ok(keys)
}

/// Moves a keyring stored under its old name (writable through the secrets API then) to
/// the reserved one, once.
async fn move_legacy_keyring(store: &Store, master: &MasterKey) -> Result<(), KeyringError> {
    if store.secrets().get(KEYRING_SECRET).await?.is_some() {
        return Ok(());
    }
    let Ok(Some(plain)) = crate::secrets::read(store, master, LEGACY_KEYRING_SECRET).await else {
        return Ok(());
    };
    if serde_json::from_slice::<Vec<Key>>(plain.expose()).is_ok_and(|keys| !keys.is_empty()) {
        let sealed = master.seal(KEYRING_SECRET, plain.expose());
        store
            .secrets()
            .put_if_absent(KEYRING_SECRET, &sealed, chrono::Utc::now())
            .await?;
        store
            .secrets()
            .delete(
                LEGACY_KEYRING_SECRET,
                &crate::store::Actor::named("server"),
                chrono::Utc::now(),
            )
            .await?;
        tracing::info!(
            from = LEGACY_KEYRING_SECRET,
            to = KEYRING_SECRET,
            "unsubscribe keyring moved to the reserved namespace"
        );
    }
    Ok(())
}

fn mac(key: &[u8], text: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(text.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Purposes that never carry an unsubscribe link and that an unsubscribe cannot block:
/// a product recall or an order confirmation must arrive. Bounces and complaints still
/// block them.
pub const REQUIRED_PURPOSES: &[&str] = &["safety", "transactional"];

pub fn may_unsubscribe(purpose: &str) -> bool {
    !REQUIRED_PURPOSES.contains(&purpose)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(keys: &[(&str, u8)]) -> Keyring {
        Keyring {
            keys: keys
                .iter()
                .map(|(id, b)| (id.to_string(), vec![*b; 32]))
                .collect(),
        }
    }

    #[test]
    fn tokens_verify_and_resist_tampering() {
        let what = Unsubscribe {
            address: "jürgen.müller@example.de".into(),
            purpose: "marketing".into(),
            locale: "de".into(),
        };
        let old = ring(&[("a1", 1)]);
        let token = old.sign(&what);
        assert_eq!(old.verify(&token), Some(what.clone()));
        // After a rotation the old token still verifies; new tokens use the new key.
        let rotated = ring(&[("b2", 2), ("a1", 1)]);
        assert_eq!(rotated.verify(&token), Some(what.clone()));
        assert!(rotated.sign(&what).starts_with("b2."));
        // A changed payload, a foreign key or garbage do not.
        let (head, tag) = token.rsplit_once('.').unwrap();
        let (id, _) = head.split_once('.').unwrap();
        let forged_payload = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&Unsubscribe {
                purpose: "safety".into(),
                ..what.clone()
            })
            .unwrap(),
        );
        assert_eq!(old.verify(&format!("{id}.{forged_payload}.{tag}")), None);
        assert_eq!(ring(&[("a1", 9)]).verify(&token), None);
        assert_eq!(old.verify("a1.bm9wZQ"), None);
        assert_eq!(old.verify(""), None);
    }

    #[test]
    fn a_token_of_one_context_is_no_token_of_another() {
        let ring = ring(&[("a1", 1)]);
        let lead = serde_json::json!({"lead": "L-1", "owner": "anna"});
        let token = ring.sign_as("lead-decision|", &lead);
        assert_eq!(
            ring.verify_as::<serde_json::Value>("lead-decision|", &token),
            Some(lead)
        );
        assert_eq!(ring.verify_as::<serde_json::Value>("", &token), None);
        let unsubscribe = ring.sign(&Unsubscribe {
            address: "a@example.de".into(),
            purpose: "marketing".into(),
            locale: "de".into(),
        });
        assert_eq!(
            ring.verify_as::<serde_json::Value>("lead-decision|", &unsubscribe),
            None
        );
    }
}
