//! Messages as stored: a small JSON header and the body in chunks that fit
//! the store's value limit. Bodies are kept byte for byte and never
//! re-serialized.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::metadata::{decode, encode};
use crate::store::keys::Keys;
use crate::store::{KvError, Txn};

/// Body bytes per chunk; below the 100,000-byte value limit.
pub const CHUNK_BYTES: usize = 90_000;
pub const MAX_ATTRIBUTES: usize = 10;
pub const MAX_ATTRIBUTE_NAME: usize = 64;
pub const MAX_ATTRIBUTE_VALUE: usize = 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MessageHeader {
    pub id: u64,
    pub topic: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    pub published_at_ms: u64,
    pub body_len: usize,
}

#[derive(Debug, Clone)]
pub struct Message {
    pub header: MessageHeader,
    pub body: Bytes,
}

/// The id as the API shows it.
pub fn format_id(id: u64) -> String {
    format!("msg_{id:016x}")
}

pub fn parse_id(text: &str) -> Option<u64> {
    let hex = text.strip_prefix("msg_")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Checks attribute names and values.
pub fn validate_attributes(attributes: &BTreeMap<String, String>) -> Result<(), ApiError> {
    let bad = |detail: String| Err(ApiError::bad_request("invalid_attributes", detail));
    if attributes.len() > MAX_ATTRIBUTES {
        return bad(format!("at most {MAX_ATTRIBUTES} attributes per message"));
    }
    for (name, value) in attributes {
        let name_ok = !name.is_empty()
            && name.len() <= MAX_ATTRIBUTE_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !name_ok {
            return bad(format!(
                "attribute name {name:?} must be 1-{MAX_ATTRIBUTE_NAME} characters of A-Z a-z 0-9 - _ ."
            ));
        }
        if value.len() > MAX_ATTRIBUTE_VALUE {
            return bad(format!(
                "attribute {name} is longer than {MAX_ATTRIBUTE_VALUE} bytes"
            ));
        }
        if !is_header_safe(value) {
            return bad(format!(
                "attribute {name} must be printable ASCII: it is delivered as a header"
            ));
        }
    }
    Ok(())
}

/// Whether `value` can go out as an HTTP header value as it is: printable
/// ASCII, spaces and tabs. Deliveries carry attributes and the content type
/// as headers, so anything else would fail every attempt.
pub fn is_header_safe(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

/// Writes a header and its body chunks under `header_key` / `chunk_key(i)`.
pub fn write_chunked(
    txn: &Txn,
    header_key: &[u8],
    header: &impl Serialize,
    body: &[u8],
    chunk_key: impl Fn(u32) -> Vec<u8>,
) -> Result<(), KvError> {
    txn.set(header_key, &encode(header))?;
    for (i, chunk) in body.chunks(CHUNK_BYTES).enumerate() {
        txn.set(&chunk_key(i as u32), chunk)?;
    }
    Ok(())
}

/// Reads a body written by [`write_chunked`] and checks its length.
pub async fn read_body(
    txn: &Txn,
    range: &(Vec<u8>, Vec<u8>),
    len: usize,
    snapshot: bool,
) -> Result<Bytes, KvError> {
    let mut body = Vec::with_capacity(len);
    if len > 0 {
        for (_, chunk) in txn
            .get_range(&range.0, &range.1, 0, false, snapshot)
            .await?
        {
            body.extend_from_slice(&chunk);
        }
    }
    if body.len() != len {
        return Err(KvError::Backend(format!(
            "stored body has {} bytes, expected {len}",
            body.len()
        )));
    }
    Ok(Bytes::from(body))
}

pub fn write_message(
    txn: &Txn,
    keys: &Keys,
    header: &MessageHeader,
    body: &[u8],
) -> Result<(), KvError> {
    write_chunked(
        txn,
        &keys.msg(&header.topic, header.id),
        header,
        body,
        |i| keys.msg_body_chunk(&header.topic, header.id, i),
    )
}

pub async fn read_message(
    txn: &Txn,
    keys: &Keys,
    topic: &str,
    id: u64,
) -> Result<Option<Message>, KvError> {
    let Some(bytes) = txn.get(&keys.msg(topic, id), true).await? else {
        return Ok(None);
    };
    let header: MessageHeader = decode(&bytes)?;
    let body = read_body(txn, &keys.msg_body(topic, id), header.body_len, true).await?;
    Ok(Some(Message { header, body }))
}

pub fn delete_message(txn: &Txn, keys: &Keys, topic: &str, id: u64) -> Result<(), KvError> {
    txn.clear(&keys.msg(topic, id))?;
    txn.clear(&keys.msg_refs(topic, id))?;
    let (begin, end) = keys.msg_body(topic, id);
    txn.clear_range(&begin, &end)
}

/// Releases one delivery's hold on a message, deleting it with the last one.
pub async fn release(txn: &Txn, keys: &Keys, topic: &str, id: u64) -> Result<(), KvError> {
    let refs_key = keys.msg_refs(topic, id);
    let refs = crate::store::decode_counter(txn.get(&refs_key, false).await?.as_deref());
    if refs <= 1 {
        delete_message(txn, keys, topic, id)
    } else {
        txn.set(&refs_key, &(refs - 1).to_le_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_safe_values() {
        assert!(is_header_safe("application/json; charset=utf-8"));
        assert!(is_header_safe("a\tb ~"));
        assert!(!is_header_safe("line\nbreak"));
        assert!(!is_header_safe("caf\u{e9}"));
        let attributes = BTreeMap::from([("kind".to_string(), "a\r\nb".to_string())]);
        let err = validate_attributes(&attributes).unwrap_err();
        assert!(err.to_string().contains("printable ASCII"), "{err}");
    }
}
