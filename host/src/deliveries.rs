//! Delivery records and the transactions that move them.
//!
//! A delivery is one record: its state lives in the value of its due-index key
//! `("due", shard, due_ms, sub, msg)`, so scheduling, leasing, retrying and
//! finishing each rewrite or clear that one key. A lease is the same key moved
//! to `now + lease` with the owner's token in the state: invisible to other
//! nodes until it expires, and found again by anyone once it has.

use serde::{Deserialize, Serialize};

use crate::messages::{self, MessageHeader};
use crate::metadata::{decode, encode};
use crate::store::keys::{Keys, shard_of};
use crate::store::{Kv, KvError, KvExt, Txn};
use crate::time::now_ms;

/// Counter of unfinished deliveries, for the backlog gauge.
pub const BACKLOG: &str = "backlog";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeliveryState {
    pub topic: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the delivery was created; the retry policy's age starts here.
    pub created_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Lease owner's token, on shared stores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<String>,
}

/// A delivery as found in the due index.
#[derive(Debug, Clone)]
pub struct DueEntry {
    pub key: Vec<u8>,
    pub due_ms: u64,
    pub sub: String,
    pub msg: u64,
    pub state: DeliveryState,
}

impl DueEntry {
    pub fn decode(keys: &Keys, key: Vec<u8>, value: &[u8]) -> Option<DueEntry> {
        let (_, _shard, due_ms, sub, msg) = keys.unpack::<(String, u16, u64, String, u64)>(&key)?;
        let state = decode(value).ok()?;
        Some(DueEntry {
            key,
            due_ms,
            sub,
            msg,
            state,
        })
    }
}

pub fn shard(sub: &str, msg: u64) -> u16 {
    shard_of(&[sub.as_bytes(), &msg.to_be_bytes()])
}

pub fn due_key(keys: &Keys, due_ms: u64, sub: &str, msg: u64) -> Vec<u8> {
    keys.due(shard(sub, msg), due_ms, sub, msg)
}

/// Adds to the sharded backlog counter; the shard follows the delivery so
/// the counter is no hotter than the due index.
pub fn count_backlog(
    txn: &Txn,
    keys: &Keys,
    sub: &str,
    msg: u64,
    delta: i64,
) -> Result<(), KvError> {
    txn.atomic_add(&keys.counter(BACKLOG, shard(sub, msg)), delta)
}

/// Due entries of one shard with due time ≤ `until_ms`, from key `from` on.
pub async fn scan_due(
    kv: &dyn Kv,
    keys: &Keys,
    shard: u16,
    until_ms: u64,
    from: Option<Vec<u8>>,
    limit: usize,
) -> Result<Vec<DueEntry>, KvError> {
    let (head, end) = keys.due_until(shard, until_ms + 1);
    let begin = from.filter(|from| *from > head).unwrap_or(head);
    let keys_owned = keys.clone();
    let rows = kv
        .run(move |txn| {
            let (begin, end) = (begin.clone(), end.clone());
            async move { txn.get_range(&begin, &end, limit, false, true).await }
        })
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(k, v)| DueEntry::decode(&keys_owned, k, &v))
        .collect())
}

/// The earliest due time in a shard at or after `from_ms`, if any.
pub async fn next_due(
    kv: &dyn Kv,
    keys: &Keys,
    shard: u16,
    from_ms: u64,
) -> Result<Option<u64>, KvError> {
    let (begin, _) = keys.due_until(shard, from_ms);
    let (_, end) = keys.due_shard(shard);
    let keys = keys.clone();
    kv.run(move |txn| {
        let (begin, end, keys) = (begin.clone(), end.clone(), keys.clone());
        async move {
            let rows = txn.get_range(&begin, &end, 1, false, true).await?;
            Ok::<_, KvError>(rows.first().and_then(|(k, _)| {
                keys.unpack::<(String, u16, u64, String, u64)>(k)
                    .map(|t| t.2)
            }))
        }
    })
    .await
}

/// Whether `entry` is still ours: present under its key with the lease we
/// hold (if any). Another node may have taken it after our lease expired.
async fn still_ours(txn: &Txn, entry: &DueEntry) -> Result<bool, KvError> {
    Ok(match txn.get(&entry.key, false).await? {
        Some(value) => decode::<DeliveryState>(&value)?.lease == entry.state.lease,
        None => false,
    })
}

/// What happens to a delivery after an attempt, or instead of one.
#[derive(Debug, Clone)]
pub enum Transition {
    /// Delivered, or dropped because its subscription or message is gone.
    Finish,
    /// Back into the due index at `due_ms` with a new state.
    Reschedule { due_ms: u64, state: DeliveryState },
    /// Into the subscription's dead-letter queue.
    DeadLetter { state: DeliveryState },
    /// Out of the due index until the subscription resumes; due again at
    /// once if the store says it is not paused after all.
    Park,
    /// Moved to `due_ms` with a lease token, by the node that claims it.
    Lease { due_ms: u64, token: String },
}

/// Applies a transition in one transaction. Returns the entry as it now is
/// (for a lease or reschedule), or `Ok(None)` for a final one. Returns
/// `Err(LostLease)` when another node owns the delivery now.
pub async fn apply(
    kv: &dyn Kv,
    keys: &Keys,
    entry: &DueEntry,
    transition: Transition,
) -> Result<Option<DueEntry>, TransitionError> {
    let keys = keys.clone();
    let entry = entry.clone();
    kv.run(move |txn| {
        let (keys, entry, transition) = (keys.clone(), entry.clone(), transition.clone());
        async move {
            if !still_ours(&txn, &entry).await? {
                return Err(TransitionError::LostLease);
            }
            txn.clear(&entry.key)?;
            let moved = |due_ms: u64, state: DeliveryState| -> Result<Option<DueEntry>, KvError> {
                let key = due_key(&keys, due_ms, &entry.sub, entry.msg);
                txn.set(&key, &encode(&state))?;
                Ok(Some(DueEntry {
                    key,
                    due_ms,
                    sub: entry.sub.clone(),
                    msg: entry.msg,
                    state,
                }))
            };
            match transition {
                Transition::Finish => {
                    messages::release(&txn, &keys, &entry.state.topic, entry.msg).await?;
                    count_backlog(&txn, &keys, &entry.sub, entry.msg, -1)?;
                    Ok(None)
                }
                Transition::Reschedule { due_ms, state } => Ok(moved(due_ms, state)?),
                Transition::Lease { due_ms, token } => {
                    let mut state = entry.state.clone();
                    state.lease = Some(token);
                    Ok(moved(due_ms, state)?)
                }
                Transition::Park => {
                    let mut state = entry.state.clone();
                    state.lease = None;
                    // The caller's view of the subscription may be stale (a
                    // cache on another node): park only what the store says
                    // is paused, so a resume can never miss a delivery.
                    if !is_paused(&txn, &keys, &entry.sub).await? {
                        return Ok(moved(now_ms(), state)?);
                    }
                    txn.set(&keys.parked(&entry.sub, entry.msg), &encode(&state))?;
                    Ok(None)
                }
                Transition::DeadLetter { state } => {
                    dead_letter(&txn, &keys, &entry, state).await?;
                    Ok(None)
                }
            }
        }
    })
    .await
}

/// Whether the stored subscription is paused; a deleted one is not (the
/// sender then drops its deliveries).
async fn is_paused(txn: &Txn, keys: &Keys, sub: &str) -> Result<bool, KvError> {
    Ok(match txn.get(&keys.sub(sub), false).await? {
        Some(bytes) => decode::<crate::metadata::Subscription>(&bytes)?.paused,
        None => false,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    #[error("another node holds this delivery now")]
    LostLease,
    #[error(transparent)]
    Store(#[from] KvError),
}

impl crate::store::TransactError for TransitionError {
    fn as_kv(&self) -> Option<&KvError> {
        match self {
            TransitionError::Store(err) => Some(err),
            TransitionError::LostLease => None,
        }
    }
}

/// A dead letter as stored and listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    pub header: MessageHeader,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_ms: u64,
    pub dead_at_ms: u64,
}

async fn dead_letter(
    txn: &Txn,
    keys: &Keys,
    entry: &DueEntry,
    state: DeliveryState,
) -> Result<(), KvError> {
    if let Some(message) = messages::read_message(txn, keys, &state.topic, entry.msg).await? {
        let letter = DeadLetter {
            header: message.header.clone(),
            attempts: state.attempts,
            last_error: state.last_error.clone(),
            created_ms: state.created_ms,
            dead_at_ms: now_ms(),
        };
        messages::write_chunked(
            txn,
            &keys.dlq(&entry.sub, entry.msg),
            &letter,
            &message.body,
            |i| keys.dlq_body_chunk(&entry.sub, entry.msg, i),
        )?;
    }
    messages::release(txn, keys, &state.topic, entry.msg).await?;
    count_backlog(txn, keys, &entry.sub, entry.msg, -1)
}

/// Dead letters moved per transaction: bodies are up to 256 KiB and copied
/// back, so this keeps a transaction far below the 10 MB limit.
const REDRIVE_BATCH: usize = 16;

/// Moves a subscription's dead letters back into the due index, as fresh
/// deliveries with the same message id. `ids` of `None` means all of them.
/// Returns how many were redriven.
pub async fn redrive(
    kv: &dyn Kv,
    keys: &Keys,
    sub: &str,
    ids: Option<Vec<u64>>,
) -> Result<usize, KvError> {
    let mut total = 0;
    let mut chunks = ids.map(|ids| {
        ids.chunks(REDRIVE_BATCH)
            .map(<[u64]>::to_vec)
            .collect::<Vec<_>>()
            .into_iter()
    });
    loop {
        let chosen = match chunks.as_mut() {
            Some(chunks) => match chunks.next() {
                Some(chunk) => Some(chunk),
                None => return Ok(total),
            },
            None => None,
        };
        let (keys, sub) = (keys.clone(), sub.to_string());
        let moved = kv
            .run(move |txn| {
                let (keys, sub, chosen) = (keys.clone(), sub.clone(), chosen.clone());
                async move {
                    let targets: Vec<u64> = match chosen {
                        Some(ids) => ids,
                        None => {
                            let (b, e) = keys.dlq_all(&sub);
                            txn.get_range(&b, &e, REDRIVE_BATCH, false, false)
                                .await?
                                .iter()
                                .filter_map(|(k, _)| {
                                    keys.unpack::<(String, String, u64)>(k).map(|t| t.2)
                                })
                                .collect()
                        }
                    };
                    let mut moved = 0;
                    for msg in targets {
                        if redrive_one(&txn, &keys, &sub, msg).await? {
                            moved += 1;
                        }
                    }
                    Ok::<_, KvError>(moved)
                }
            })
            .await?;
        total += moved;
        if chunks.is_none() && moved < REDRIVE_BATCH {
            return Ok(total);
        }
    }
}

async fn redrive_one(txn: &Txn, keys: &Keys, sub: &str, msg: u64) -> Result<bool, KvError> {
    let range = keys.dlq_body(sub, msg);
    let Some(bytes) = txn.get(&keys.dlq(sub, msg), false).await? else {
        return Ok(false);
    };
    let letter: DeadLetter = decode(&bytes)?;
    let body = messages::read_body(txn, &range, letter.header.body_len, false).await?;
    let topic = letter.header.topic.clone();
    let refs_key = keys.msg_refs(&topic, msg);
    if txn.get(&keys.msg(&topic, msg), false).await?.is_some() {
        // Other subscriptions still hold the message: share it.
        txn.atomic_add(&refs_key, 1)?;
    } else {
        messages::write_message(txn, keys, &letter.header, &body)?;
        txn.set(&refs_key, &1i64.to_le_bytes())?;
    }
    let now = now_ms();
    let state = DeliveryState {
        topic,
        attempts: 0,
        created_ms: now,
        last_error: None,
        lease: None,
    };
    txn.set(&due_key(keys, now, sub, msg), &encode(&state))?;
    count_backlog(txn, keys, sub, msg, 1)?;
    txn.clear(&keys.dlq(sub, msg))?;
    txn.clear_range(&range.0, &range.1)?;
    Ok(true)
}

/// Moves every parked delivery of a subscription back to the due index, due now.
pub async fn unpark_all(kv: &dyn Kv, keys: &Keys, sub: &str) -> Result<usize, KvError> {
    let mut total = 0;
    loop {
        let keys = keys.clone();
        let sub = sub.to_string();
        let moved = kv
            .run(move |txn| {
                let (keys, sub) = (keys.clone(), sub.clone());
                async move {
                    let (b, e) = keys.parked_all(&sub);
                    let rows = txn.get_range(&b, &e, 500, false, false).await?;
                    let now = now_ms();
                    for (key, value) in &rows {
                        let Some((_, _, msg)) = keys.unpack::<(String, String, u64)>(key) else {
                            continue;
                        };
                        txn.set(&due_key(&keys, now, &sub, msg), value)?;
                        txn.clear(key)?;
                    }
                    Ok::<_, KvError>(rows.len())
                }
            })
            .await?;
        total += moved;
        if moved < 500 {
            return Ok(total);
        }
    }
}

/// Purges a subscription's dead-letter queue; returns how many were removed.
pub async fn purge_dlq(kv: &dyn Kv, keys: &Keys, sub: &str) -> Result<usize, KvError> {
    let keys = keys.clone();
    let sub = sub.to_string();
    kv.run(move |txn| {
        let (keys, sub) = (keys.clone(), sub.clone());
        async move {
            let (b, e) = keys.dlq_all(&sub);
            let count = txn.get_range(&b, &e, 0, false, true).await?.len();
            txn.clear_range(&b, &e)?;
            let (b, e) = keys.dlq_bodies(&sub);
            txn.clear_range(&b, &e)?;
            Ok::<_, KvError>(count)
        }
    })
    .await
}

/// One page of a subscription's dead letters.
pub async fn list_dlq(
    kv: &dyn Kv,
    keys: &Keys,
    sub: &str,
    after: Option<u64>,
    limit: usize,
) -> Result<Vec<DeadLetter>, KvError> {
    let (mut begin, end) = keys.dlq_all(sub);
    if let Some(after) = after {
        begin = keys.dlq(sub, after);
        begin.push(0);
    }
    let rows = kv
        .run(move |txn| {
            let (begin, end) = (begin.clone(), end.clone());
            async move { txn.get_range(&begin, &end, limit, false, true).await }
        })
        .await?;
    rows.iter().map(|(_, v)| decode(v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{Protocol, RetryPolicy, Subscription};
    use crate::store::embedded::EmbeddedKv;

    /// Applies `Park` to a due delivery whose stored subscription is
    /// `paused` or not; returns the entry if it was requeued, and whether a
    /// parked record exists afterwards.
    async fn park_with_stored(paused: bool) -> (Option<DueEntry>, bool) {
        let dir = tempfile::tempdir().expect("tempdir");
        let kv = EmbeddedKv::open(&dir.path().join("store.redb")).expect("open");
        let keys = Keys::new("test");
        let sub = Subscription {
            id: "sub_1".into(),
            topic: "t".into(),
            protocol: Protocol::Http,
            endpoint: "http://127.0.0.1:1/hook".into(),
            secret: "whsec_AAAA".into(),
            retry: RetryPolicy::default(),
            timeout_ms: 1000,
            envelope: false,
            paused,
            created_at_ms: 1,
            plugins: Vec::new(),
        };
        let state = DeliveryState {
            topic: "t".into(),
            attempts: 1,
            created_ms: 1,
            last_error: None,
            lease: None,
        };
        let entry = DueEntry {
            key: due_key(&keys, 5, &sub.id, 7),
            due_ms: 5,
            sub: sub.id.clone(),
            msg: 7,
            state,
        };
        {
            let (keys, sub, entry) = (keys.clone(), sub.clone(), entry.clone());
            kv.run(move |txn| {
                let (keys, sub, entry) = (keys.clone(), sub.clone(), entry.clone());
                async move {
                    txn.set(&keys.sub(&sub.id), &encode(&sub))?;
                    txn.set(&entry.key, &encode(&entry.state))
                }
            })
            .await
            .expect("seed");
        }
        let requeued = apply(&kv, &keys, &entry, Transition::Park)
            .await
            .expect("park");
        let parked_key = keys.parked(&sub.id, 7);
        let parked = kv
            .run(move |txn| {
                let key = parked_key.clone();
                async move { txn.get(&key, false).await }
            })
            .await
            .expect("read")
            .is_some();
        (requeued, parked)
    }

    #[tokio::test]
    async fn park_parks_what_the_store_says_is_paused() {
        let (requeued, parked) = park_with_stored(true).await;
        assert!(requeued.is_none());
        assert!(parked);
    }

    #[tokio::test]
    async fn park_requeues_what_the_store_says_was_resumed() {
        let before = now_ms();
        let (requeued, parked) = park_with_stored(false).await;
        let entry = requeued.expect("due again instead of parked");
        assert!(!parked);
        assert!(entry.due_ms >= before, "due now, not at its old time");
        assert_eq!(entry.state.attempts, 1);
    }
}
