//! DKIM signing keys from the secrets store: RSA (PKCS#1 or PKCS#8 PEM) or Ed25519 (PKCS#8
//! PEM or a base64 seed), refused with the reason when they are not what they claim.

use base64::Engine as _;
use lettre::message::dkim::{DkimSigningAlgorithm, DkimSigningKey};

/// Parses an RSA (PKCS#1 or PKCS#8 PEM) or Ed25519 (PKCS#8 PEM or base64 seed) key.
pub fn dkim_key(algorithm: &str, text: &str) -> Result<DkimSigningKey, String> {
    let text = text.trim();
    match algorithm {
        "rsa" => {
            let pkcs1 = if text.contains("BEGIN RSA PRIVATE KEY") {
                text.to_string()
            } else if text.contains("BEGIN PRIVATE KEY") {
                use rsa::pkcs1::EncodeRsaPrivateKey;
                use rsa::pkcs8::DecodePrivateKey;
                let key = rsa::RsaPrivateKey::from_pkcs8_pem(text)
                    .map_err(|e| format!("is not an RSA key in PKCS#8 PEM: {e}"))?;
                key.to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)
                    .map_err(|e| format!("cannot be converted to PKCS#1: {e}"))?
                    .to_string()
            } else {
                return Err(
                    "is not a PEM RSA private key (BEGIN RSA PRIVATE KEY or BEGIN PRIVATE KEY)"
                        .into(),
                );
            };
            DkimSigningKey::new(&pkcs1, DkimSigningAlgorithm::Rsa)
                .map_err(|e| format!("is not a usable RSA key: {e}"))
        }
        "ed25519" => {
            let seed = if text.contains("BEGIN PRIVATE KEY") {
                let body: String = text
                    .lines()
                    .filter(|l| !l.starts_with("-----"))
                    .collect::<Vec<_>>()
                    .concat();
                let der = base64::engine::general_purpose::STANDARD
                    .decode(body.trim())
                    .map_err(|e| format!("is not valid PEM: {e}"))?;
                // PKCS#8 of an Ed25519 key: a fixed 16-byte prefix, then the 32-byte seed.
                const PREFIX: [u8; 16] = [
                    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04,
                    0x22, 0x04, 0x20,
                ];
                if der.len() != 48 || der[..16] != PREFIX {
                    return Err("is not an Ed25519 private key in PKCS#8 PEM".into());
                }
                base64::engine::general_purpose::STANDARD.encode(&der[16..])
            } else {
                text.to_string()
            };
            DkimSigningKey::new(&seed, DkimSigningAlgorithm::Ed25519)
                .map_err(|e| format!("is not a usable Ed25519 key (base64 of 32 bytes): {e}"))
        }
        other => Err(format!("uses unknown algorithm `{other}`")),
    }
}
