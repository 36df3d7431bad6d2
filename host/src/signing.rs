//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256>`
//! over `"{id}.{timestamp}.{body}"`, keyed with the bytes behind `whsec_`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::error::ApiError;

pub const SECRET_PREFIX: &str = "whsec_";

/// A fresh signing secret: 32 random bytes.
pub fn generate_secret() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    format!("{SECRET_PREFIX}{}", B64.encode(key))
}

/// The key bytes of a `whsec_` secret, or a readable reason it is malformed.
pub fn secret_key(secret: &str) -> Result<Vec<u8>, ApiError> {
    let invalid = |detail: &str| Err(ApiError::bad_request("invalid_secret", detail));
    let Some(encoded) = secret.strip_prefix(SECRET_PREFIX) else {
        return invalid("secret must start with whsec_");
    };
    let Ok(key) = B64.decode(encoded) else {
        return invalid("secret must be whsec_ followed by standard base64");
    };
    if !(24..=64).contains(&key.len()) {
        return invalid("secret must encode 24 to 64 bytes");
    }
    Ok(key)
}

fn mac(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `webhook-signature` header value.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = mac(key, id, timestamp, body).finalize().into_bytes();
    format!("v1,{}", B64.encode(tag))
}

/// Whether any `v1,` signature in a space-separated header verifies.
pub fn verify(key: &[u8], id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    header.split(' ').any(|candidate| {
        let Some(encoded) = candidate.strip_prefix("v1,") else {
            return false;
        };
        let Ok(tag) = B64.decode(encoded) else {
            return false;
        };
        mac(key, id, timestamp, body).verify_slice(&tag).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let secret = generate_secret();
        let key = secret_key(&secret).unwrap();
        let header = sign(&key, "msg_1", 1_700_000_000, b"{\"a\":1}");
        assert!(verify(&key, "msg_1", 1_700_000_000, b"{\"a\":1}", &header));
        assert!(!verify(&key, "msg_1", 1_700_000_001, b"{\"a\":1}", &header));
    }
}
