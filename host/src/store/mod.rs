//! Temporary storage: the [`Kv`] abstraction with FoundationDB semantics.
//!
//! Everything above this module is written against [`Kv`] and [`Txn`], so the
//! code that runs on FoundationDB is the code the embedded tests exercise.
//!
//! # Contract
//! - Ordered byte keys.
//! - Serializable transactions through [`KvExt::run`]: the closure may run more
//!   than once (on conflict, or when the transaction grew too old), so it must
//!   be idempotent and must not have side effects outside the transaction.
//! - Reads see the transaction's own writes. Snapshot reads add no read
//!   conflict; atomic adds add no read conflict either.
//! - A commit returns only once the write is durable.
//! - FoundationDB's limits hold on every backend (see [`limits`]), so a layout
//!   that passes here also fits a real cluster.
//! - Monotonic ids come from [`ids::IdAllocator`], built on transactions, so it
//!   is the same code on every backend.
//!
//! # Keyspace
//! All keys are tuples (`foundationdb-tuple`) under one root subspace per
//! deployment. `keys.rs` builds them; this table is the layout:
//!
//! | key | value |
//! |---|---|
//! | `("topic", name)` | topic record (JSON) |
//! | `("sub", sub_id)` | subscription record (JSON) |
//! | `("topic_sub", topic, sub_id)` | `""`: the topic's subscriptions |
//! | `("msg", topic, msg_id)` | message header (JSON) |
//! | `("msgb", topic, msg_id, chunk)` | message body, in chunks of ≤ 90,000 bytes |
//! | `("msgref", topic, msg_id)` | deliveries not yet finished (little-endian i64) |
//! | `("fanout", shard, msg_id)` | fan-out task (JSON: topic and cursor) |
//! | `("due", shard, due_ms, sub_id, msg_id)` | delivery state (JSON), ordered by due time |
//! | `("parked", sub_id, msg_id)` | delivery state of a paused subscription |
//! | `("dlq", sub_id, msg_id)` | dead letter (JSON: header, attempts, last error) |
//! | `("dlqb", sub_id, msg_id, chunk)` | the dead letter's own copy of the body |
//! | `("plugin", name)` | plugin record: kind and versions (JSON) |
//! | `("pluginbin", name, version, chunk)` | the `.wasm` component, in chunks |
//! | `("plugin_use", name, owner)` | `""`: `owner` (`topic:…` or `sub:…`) attaches the plugin |
//! | `("counter", name, shard)` | sharded counters (little-endian i64) |
//! | `("ids", name)` | id allocator high-water mark (little-endian u64) |
//! | `("meta_version",)` | bumped by every metadata write (little-endian i64) |

pub mod conformance;
pub mod embedded;
#[cfg(feature = "fdb")]
pub mod fdb;
pub mod ids;
pub mod keys;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

/// FoundationDB's limits, enforced by every backend.
pub mod limits {
    /// Largest key, in bytes.
    pub const MAX_KEY_BYTES: usize = 10_000;
    /// Largest value, in bytes.
    pub const MAX_VALUE_BYTES: usize = 100_000;
    /// Most bytes (keys plus values of all mutations) one transaction may write.
    pub const MAX_TXN_BYTES: usize = 10_000_000;
    /// Longest a transaction may live, from its first read to its commit.
    pub const MAX_TXN_AGE: std::time::Duration = std::time::Duration::from_secs(5);
}

/// Errors from the store itself.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KvError {
    #[error("transaction conflict")]
    Conflict,
    #[error("transaction is older than the 5 s limit")]
    TooOld,
    #[error("key of {0} bytes is over the {max} byte limit", max = limits::MAX_KEY_BYTES)]
    KeyTooLarge(usize),
    #[error("value of {0} bytes is over the {max} byte limit", max = limits::MAX_VALUE_BYTES)]
    ValueTooLarge(usize),
    #[error("transaction writes more than {max} bytes", max = limits::MAX_TXN_BYTES)]
    TxnTooLarge,
    #[error("transaction retried {0} times without committing")]
    RetriesExhausted(u32),
    /// The store cannot answer now (a cluster that is unreachable or
    /// recovering); worth trying again later, not within this transaction.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("storage backend: {0}")]
    Backend(String),
}

impl KvError {
    /// Whether running the transaction again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, KvError::Conflict | KvError::TooOld)
    }
}

pub type KvResult<T> = Result<T, KvError>;

/// A key-value pair as read from a range.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// The operations of one transaction. Handles are cheap to clone (`Arc`), so a
/// transaction closure can move one into a `'static` future.
#[async_trait]
pub trait TxnOps: Send + Sync {
    /// Reads one key, adding it to the read conflict set unless `snapshot`.
    async fn get(&self, key: &[u8], snapshot: bool) -> KvResult<Option<Vec<u8>>>;
    /// Reads keys in `[begin, end)`, at most `limit` of them (0: no limit), in
    /// descending order when `reverse`. Adds the range actually read to the
    /// read conflict set unless `snapshot`.
    async fn get_range(
        &self,
        begin: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
        snapshot: bool,
    ) -> KvResult<Vec<KeyValue>>;
    fn set(&self, key: &[u8], value: &[u8]) -> KvResult<()>;
    fn clear(&self, key: &[u8]) -> KvResult<()>;
    /// Clears keys in `[begin, end)`.
    fn clear_range(&self, begin: &[u8], end: &[u8]) -> KvResult<()>;
    /// Adds `delta` to the little-endian i64 at `key` (absent counts as 0),
    /// without a read conflict.
    fn atomic_add(&self, key: &[u8], delta: i64) -> KvResult<()>;
}

/// A transaction handle given to [`KvExt::run`] closures.
pub type Txn = Arc<dyn TxnOps>;

/// Marker the boxed closure returns when the caller's own error stopped it.
#[derive(Debug)]
pub enum TxnAbort {
    /// A store error: the backend retries it when it is retryable.
    Kv(KvError),
    /// The caller's domain error, kept aside by [`KvExt::run`]: stop, no commit.
    Domain,
}

pub type BoxTxnFuture = Pin<Box<dyn Future<Output = Result<(), TxnAbort>> + Send>>;
pub type TxnBody<'a> = Box<dyn FnMut(Txn) -> BoxTxnFuture + Send + 'a>;

/// A store backend.
#[async_trait]
pub trait Kv: Send + Sync + 'static {
    /// Runs `body` in a serializable transaction, again on retryable errors,
    /// and commits durably when it returns `Ok`. Backends implement the retry
    /// loop (FoundationDB uses its own); callers use [`KvExt::run`].
    async fn run_boxed(&self, body: TxnBody<'_>) -> Result<(), TxnAbort>;

    /// Whether the backend is able to serve, for `/readyz`.
    async fn health(&self) -> KvResult<()> {
        Ok(())
    }

    /// Returns once `key` may hold something other than `seen` (its value
    /// as the caller last read it; `None` when absent), or after `timeout`.
    /// FoundationDB wakes on the change (a watch); the default only waits out
    /// the timeout, which makes callers poll. Callers read the key again
    /// either way.
    async fn wait_for_change(&self, key: &[u8], seen: Option<&[u8]>, timeout: std::time::Duration) {
        let _ = (key, seen);
        tokio::time::sleep(timeout).await;
    }

    /// A short name for logs and metrics.
    fn name(&self) -> &'static str;
}

/// Domain errors that a transaction closure may return, in the style of
/// foundationdb-rs's `TransactError`: store errors retry, the rest stop.
pub trait TransactError: From<KvError> + Send + 'static {
    fn as_kv(&self) -> Option<&KvError>;
}

impl TransactError for KvError {
    fn as_kv(&self) -> Option<&KvError> {
        Some(self)
    }
}

/// The typed entry point to transactions, for every [`Kv`].
#[async_trait]
pub trait KvExt {
    /// Runs `f` as a retried, serializable transaction and returns its value.
    async fn run<T, E, F, Fut>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: TransactError,
        F: FnMut(Txn) -> Fut + Send,
        Fut: Future<Output = Result<T, E>> + Send + 'static;
}

#[async_trait]
impl<K: Kv + ?Sized> KvExt for K {
    async fn run<T, E, F, Fut>(&self, mut f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: TransactError,
        F: FnMut(Txn) -> Fut + Send,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let outcome: Arc<Mutex<Option<Result<T, E>>>> = Arc::new(Mutex::new(None));
        let slot = outcome.clone();
        let body: TxnBody<'_> = Box::new(move |txn| {
            let fut = f(txn);
            let slot = slot.clone();
            Box::pin(async move {
                match fut.await {
                    Ok(value) => {
                        *slot.lock().expect("txn slot") = Some(Ok(value));
                        Ok(())
                    }
                    Err(err) => match err.as_kv() {
                        Some(kv) => Err(TxnAbort::Kv(kv.clone())),
                        None => {
                            *slot.lock().expect("txn slot") = Some(Err(err));
                            Err(TxnAbort::Domain)
                        }
                    },
                }
            })
        });
        let result = self.run_boxed(body).await;
        let kept = outcome.lock().expect("txn slot").take();
        match (result, kept) {
            (Ok(()), Some(Ok(value))) => Ok(value),
            (Err(TxnAbort::Domain), Some(Err(err))) => Err(err),
            (Err(TxnAbort::Kv(err)), _) => Err(E::from(err)),
            _ => Err(E::from(KvError::Backend(
                "transaction finished without an outcome".into(),
            ))),
        }
    }
}

/// Checks a mutation against the per-key and per-value limits.
pub fn check_sizes(key: &[u8], value: Option<&[u8]>) -> KvResult<()> {
    if key.len() > limits::MAX_KEY_BYTES {
        return Err(KvError::KeyTooLarge(key.len()));
    }
    if let Some(value) = value
        && value.len() > limits::MAX_VALUE_BYTES
    {
        return Err(KvError::ValueTooLarge(value.len()));
    }
    Ok(())
}

/// Decodes a little-endian i64 counter value; absent or short values count as 0.
pub fn decode_counter(value: Option<&[u8]>) -> i64 {
    match value {
        Some(bytes) if bytes.len() >= 8 => {
            i64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))
        }
        _ => 0,
    }
}
