//! Monotonic ids from transactions, identical on every backend.
//!
//! Each allocator reserves a block of ids by moving a shared high-water mark
//! forward in one serializable transaction, then hands the block out from
//! memory. Reservations never overlap, because two of them reading the same
//! mark conflict, and survive restarts, because the mark is committed before
//! any id of its block is handed out. Ids left in a block when a process stops
//! are skipped, never reused.

use std::sync::Arc;

use tokio::sync::Mutex;

use super::{Kv, KvError, KvExt, KvResult};

/// Hands out ids that are unique across every allocator on `key` in a store,
/// strictly increasing per allocator, and never 0 (free for "no id").
pub struct IdAllocator {
    kv: Arc<dyn Kv>,
    key: Vec<u8>,
    block: u64,
    // A tokio mutex: callers that find the block empty wait for the one
    // reservation in flight instead of each reserving another block.
    next: Mutex<Block>,
}

/// Ids `next..end` are reserved and not yet handed out.
#[derive(Default)]
struct Block {
    next: u64,
    end: u64,
}

impl IdAllocator {
    /// `block` ids are reserved per transaction (at least 1): larger blocks
    /// mean fewer transactions but bigger gaps after a restart.
    pub fn new(kv: Arc<dyn Kv>, key: Vec<u8>, block: u64) -> Self {
        IdAllocator {
            kv,
            key,
            block: block.max(1),
            next: Mutex::new(Block::default()),
        }
    }

    pub async fn next(&self) -> KvResult<u64> {
        let mut block = self.next.lock().await;
        if block.next == block.end {
            let (first, end) = self.reserve().await?;
            *block = Block { next: first, end };
        }
        let id = block.next;
        block.next += 1;
        Ok(id)
    }

    /// Moves the high-water mark forward by one block; returns the block.
    async fn reserve(&self) -> KvResult<(u64, u64)> {
        let size = self.block;
        let key = self.key.clone();
        let high_water = self
            .kv
            .run(move |txn| {
                let key = key.clone();
                async move {
                    let current = match txn.get(&key, false).await? {
                        None => 0,
                        Some(bytes) => decode_mark(&bytes)?,
                    };
                    // Below u64::MAX, so the block's end fits too.
                    let next = current
                        .checked_add(size)
                        .filter(|next| *next < u64::MAX)
                        .ok_or_else(|| KvError::Backend("id space exhausted".into()))?;
                    txn.set(&key, &next.to_le_bytes())?;
                    Ok::<_, KvError>(current)
                }
            })
            .await?;
        // The mark is the last id handed out, so 0 is never one.
        Ok((high_water + 1, high_water + size + 1))
    }
}

fn decode_mark(bytes: &[u8]) -> KvResult<u64> {
    let bytes: [u8; 8] = bytes
        .try_into()
        .map_err(|_| KvError::Backend(format!("id mark of {} bytes", bytes.len())))?;
    Ok(u64::from_le_bytes(bytes))
}
