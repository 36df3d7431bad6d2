//! Fan-out: expands a published message into one delivery per subscription,
//! in batches, after the publish has returned.
//!
//! The publish transaction wrote the message, a task `("fanout", shard, msg)`
//! and a reference count of 1: the task's own hold, so that deliveries that
//! finish while later batches are still being expanded cannot delete the
//! message under it. The last batch drops that hold.

use serde::{Deserialize, Serialize};

use crate::deliveries::{DeliveryState, count_backlog, due_key};
use crate::messages::delete_message;
use crate::metadata::{Subscription, decode, encode};
use crate::store::keys::{Keys, SHARDS};
use crate::store::{Kv, KvError, KvExt, Txn, decode_counter};
use crate::time::now_ms;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FanoutTask {
    pub topic: String,
    /// The last subscription id expanded, when a batch stopped short.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// Writes the task in the publish transaction.
pub fn enqueue(txn: &Txn, keys: &Keys, topic: &str, msg: u64) -> Result<(), KvError> {
    let shard = (msg % u64::from(SHARDS)) as u16;
    let task = FanoutTask {
        topic: topic.to_string(),
        cursor: None,
    };
    txn.set(&keys.fanout(shard, msg), &encode(&task))?;
    txn.set(&keys.msg_refs(topic, msg), &1i64.to_le_bytes())
}

/// Pending tasks of one shard: `(key, msg)`.
pub async fn pending(
    kv: &dyn Kv,
    keys: &Keys,
    shard: u16,
    limit: usize,
) -> Result<Vec<(Vec<u8>, u64)>, KvError> {
    let (begin, end) = keys.fanouts(shard);
    let keys = keys.clone();
    kv.run(move |txn| {
        let (begin, end, keys) = (begin.clone(), end.clone(), keys.clone());
        async move {
            let rows = txn.get_range(&begin, &end, limit, false, true).await?;
            Ok::<_, KvError>(
                rows.into_iter()
                    .filter_map(|(k, _)| {
                        let (_, _, msg) = keys.unpack::<(String, u16, u64)>(&k)?;
                        Some((k, msg))
                    })
                    .collect(),
            )
        }
    })
    .await
}

/// Expands one batch of a task. Returns `(deliveries created, task done)`.
pub async fn expand_batch(
    kv: &dyn Kv,
    keys: &Keys,
    task_key: Vec<u8>,
    msg: u64,
    batch: usize,
) -> Result<(usize, bool), KvError> {
    let keys = keys.clone();
    kv.run(move |txn| {
        let (keys, task_key) = (keys.clone(), task_key.clone());
        async move {
            // Reading the task puts it in our conflict set: a node expanding
            // the same batch concurrently makes one of us retry and see it moved.
            let Some(bytes) = txn.get(&task_key, false).await? else {
                return Ok((0, true));
            };
            let task: FanoutTask = decode(&bytes)?;
            let (mut begin, end) = keys.topic_subs(&task.topic);
            if let Some(cursor) = &task.cursor {
                begin = keys.topic_sub(&task.topic, cursor);
                begin.push(0);
            }
            let rows = txn.get_range(&begin, &end, batch, false, false).await?;
            let now = now_ms();
            let mut created = 0usize;
            let mut last = None;
            for (key, _) in &rows {
                let Some((_, _, sub_id)) = keys.unpack::<(String, String, String)>(key) else {
                    continue;
                };
                last = Some(sub_id.clone());
                let Some(sub_bytes) = txn.get(&keys.sub(&sub_id), false).await? else {
                    continue;
                };
                let sub: Subscription = decode(&sub_bytes)?;
                let state = DeliveryState {
                    topic: task.topic.clone(),
                    attempts: 0,
                    created_ms: now,
                    last_error: None,
                    lease: None,
                };
                let record = encode(&state);
                if sub.paused {
                    txn.set(&keys.parked(&sub_id, msg), &record)?;
                } else {
                    txn.set(&due_key(&keys, now, &sub_id, msg), &record)?;
                }
                count_backlog(&txn, &keys, &sub_id, msg, 1)?;
                created += 1;
            }
            let refs_key = keys.msg_refs(&task.topic, msg);
            let done = rows.len() < batch;
            if done {
                txn.clear(&task_key)?;
                // Drop the task's own hold; with no deliveries left the
                // message has nobody to go to.
                let refs = decode_counter(txn.get(&refs_key, false).await?.as_deref())
                    + created as i64
                    - 1;
                if refs <= 0 {
                    delete_message(&txn, &keys, &task.topic, msg)?;
                } else {
                    txn.set(&refs_key, &refs.to_le_bytes())?;
                }
            } else {
                txn.atomic_add(&refs_key, created as i64)?;
                let next = FanoutTask {
                    topic: task.topic.clone(),
                    cursor: last,
                };
                txn.set(&task_key, &encode(&next))?;
            }
            Ok((created, done))
        }
    })
    .await
}
