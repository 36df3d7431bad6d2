//! The FoundationDB backend (cargo feature `fdb`): [`Kv`] on the
//! `foundationdb` crate, API 7.3.
//!
//! The adapter is deliberately thin. Transactions run in foundationdb-rs's
//! own retry loop (`Database::run`); every operation maps one to one onto a
//! FoundationDB call; the rest of Herald is the same code the embedded
//! backend runs and tests.
//!
//! # Errors
//! - An `FdbError` met inside a transaction is kept aside, and handed back
//!   to the retry loop when the closure gives up, so FoundationDB decides
//!   whether to retry (`on_error`), exactly as a native closure would.
//! - Herald's domain errors, and limit errors found before anything reached
//!   the cluster, stop the loop as `CustomError` and come back unchanged.
//! - Sizes are checked here too, with the embedded backend's errors, so a
//!   caller sees the same [`KvError`] on either backend.
//!
//! # Ids
//! [`super::ids::IdAllocator`] reserves blocks of ids with one serializable
//! transaction on a high-water key, identical on every backend. On
//! FoundationDB that key is touched once per block (1,024 message ids) per
//! node, so it is not hot. Versionstamps were the alternative: they are
//! 10 bytes and only known after commit, so they cannot number a block of
//! u64 ids ahead of the writes that use them.
//!
//! # Network
//! The client network boots once per process ([`boot_network`]); `herald
//! serve` stops it before exiting ([`stop_network`]).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use foundationdb::api::NetworkAutoStop;
use foundationdb::options::{DatabaseOption, MutationType, StreamingMode};
use foundationdb::{
    Database, FdbBindingError, FdbError, KeySelector, RangeOption, RetryableTransaction,
};

use super::{KeyValue, Kv, KvError, KvResult, Txn, TxnAbort, TxnBody, TxnOps, check_sizes, limits};

/// FoundationDB error codes that have a [`KvError`] of their own.
mod codes {
    pub const TRANSACTION_TOO_OLD: i32 = 1007;
    pub const NOT_COMMITTED: i32 = 1020;
    pub const TRANSACTION_TOO_LARGE: i32 = 2101;
    pub const TRANSACTION_TIMED_OUT: i32 = 1031;
}

/// How long one attempt of a transaction may take on the cluster, and how
/// often it is retried, so an unreachable cluster fails instead of hanging.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);
const TRANSACTION_RETRY_LIMIT: i32 = 100;

static NETWORK: OnceLock<Mutex<Option<NetworkAutoStop>>> = OnceLock::new();

/// Starts the FoundationDB client network, once per process.
pub fn boot_network() {
    NETWORK.get_or_init(|| {
        // SAFETY: `stop_network` drops the handle before `herald serve`
        // returns; a process that exits without it is one that aborts.
        Mutex::new(Some(unsafe { foundationdb::boot() }))
    });
}

/// Stops the client network; the process must not use FoundationDB after.
pub fn stop_network() {
    if let Some(network) = NETWORK.get() {
        drop(network.lock().expect("fdb network").take());
    }
}

fn fdb_error(err: FdbError) -> KvError {
    match err.code() {
        codes::TRANSACTION_TOO_OLD => KvError::TooOld,
        codes::NOT_COMMITTED => KvError::Conflict,
        codes::TRANSACTION_TOO_LARGE => KvError::TxnTooLarge,
        // The cluster is slow, unreachable or recovering: the caller may
        // try again later (the API answers 503).
        code if code == codes::TRANSACTION_TIMED_OUT
            || err.is_retryable()
            || err.is_maybe_committed() =>
        {
            KvError::Unavailable(format!("foundationdb: {err} (code {code})"))
        }
        _ => KvError::Backend(format!("foundationdb: {err} (code {})", err.code())),
    }
}

/// A [`Kv`] on a FoundationDB cluster.
pub struct FdbKv {
    db: Database,
}

impl FdbKv {
    /// Connects to the cluster that `cluster_file` names (the client's
    /// default file when `None`). Boots the network if needed.
    pub fn open(cluster_file: Option<&Path>) -> KvResult<FdbKv> {
        boot_network();
        let path = cluster_file.map(|p| p.to_string_lossy().into_owned());
        let db = Database::new(path.as_deref()).map_err(fdb_error)?;
        db.set_option(DatabaseOption::TransactionTimeout(
            TRANSACTION_TIMEOUT.as_millis() as i32,
        ))
        .map_err(fdb_error)?;
        db.set_option(DatabaseOption::TransactionRetryLimit(
            TRANSACTION_RETRY_LIMIT,
        ))
        .map_err(fdb_error)?;
        Ok(FdbKv { db })
    }
}

/// Why a closure stopped without an `FdbError`: passed through the retry
/// loop as a `CustomError` and turned back into a [`TxnAbort`].
#[derive(Debug, thiserror::Error)]
#[error("transaction stopped: {0:?}")]
struct Stopped(TxnAbort);

#[async_trait]
impl Kv for FdbKv {
    async fn run_boxed(&self, body: TxnBody<'_>) -> Result<(), TxnAbort> {
        let body = Mutex::new(body);
        let result = self
            .db
            .run(|trx, _maybe_committed| {
                let ops = Arc::new(FdbTxn::new(trx));
                let attempt = (body.lock().expect("txn body"))(ops.clone() as Txn);
                async move {
                    let outcome = attempt.await;
                    let (fdb, refused) = (ops.take_fdb_error(), ops.take_refusal());
                    drop(ops);
                    match (outcome, fdb) {
                        // A refused or failed operation fails the attempt even
                        // when the closure went on regardless.
                        (Ok(()), Some(err)) => Err(FdbBindingError::from(err)),
                        (Ok(()), None) => match refused {
                            None => Ok(()),
                            Some(err) => Err(FdbBindingError::CustomError(Box::new(Stopped(
                                TxnAbort::Kv(err),
                            )))),
                        },
                        // FoundationDB decides: retry after `on_error`, or stop.
                        (Err(TxnAbort::Kv(_)), Some(err)) => Err(FdbBindingError::from(err)),
                        (Err(abort), _) => {
                            Err(FdbBindingError::CustomError(Box::new(Stopped(abort))))
                        }
                    }
                }
            })
            .await;
        match result {
            Ok(()) => Ok(()),
            Err(FdbBindingError::CustomError(err)) => match err.downcast::<Stopped>() {
                Ok(stopped) => Err(stopped.0),
                Err(other) => Err(TxnAbort::Kv(KvError::Backend(other.to_string()))),
            },
            Err(err) => Err(TxnAbort::Kv(match err.get_fdb_error() {
                Some(fdb) => fdb_error(fdb),
                None => KvError::Backend(format!("foundationdb: {err}")),
            })),
        }
    }

    async fn health(&self) -> KvResult<()> {
        // A read needs a read version, which needs a reachable cluster.
        let trx = self.db.create_trx().map_err(fdb_error)?;
        let read = trx.get_read_version();
        match tokio::time::timeout(Duration::from_secs(2), read).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(fdb_error(err)),
            Err(_) => Err(KvError::Unavailable(
                "foundationdb: no read version within 2 s".into(),
            )),
        }
    }

    async fn wait_for_change(&self, key: &[u8], seen: Option<&[u8]>, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let watch = async {
            let trx = self.db.create_trx().ok()?;
            // A change that landed before the watch is set would not fire it:
            // compare first, at the watch's own read version.
            let current = trx.get(key, false).await.ok()?;
            if current.as_deref() != seen {
                return Some(());
            }
            let changed = trx.watch(key);
            trx.commit().await.ok()?;
            changed.await.ok()
        };
        // On an error the caller reads the key again after the timeout, not
        // at once, so a failing cluster is not polled in a tight loop.
        if tokio::time::timeout_at(deadline, watch)
            .await
            .ok()
            .flatten()
            .is_none()
        {
            tokio::time::sleep_until(deadline).await;
        }
    }

    fn name(&self) -> &'static str {
        "foundationdb"
    }
}

/// One attempt's operations: FoundationDB calls plus the local size checks.
struct FdbTxn {
    trx: RetryableTransaction,
    /// The first `FdbError` of this attempt, for the retry loop.
    fdb_error: Mutex<Option<FdbError>>,
    /// Bytes written so far, against [`limits::MAX_TXN_BYTES`].
    written: AtomicUsize,
    /// A mutation refused by a local limit check: the attempt fails with it
    /// even if the closure ignored the error, as on the embedded backend.
    refused: Mutex<Option<KvError>>,
}

impl FdbTxn {
    fn new(trx: RetryableTransaction) -> FdbTxn {
        FdbTxn {
            trx,
            fdb_error: Mutex::new(None),
            written: AtomicUsize::new(0),
            refused: Mutex::new(None),
        }
    }

    fn take_fdb_error(&self) -> Option<FdbError> {
        self.fdb_error.lock().expect("fdb error slot").take()
    }

    fn failed(&self, err: FdbError) -> KvError {
        self.fdb_error
            .lock()
            .expect("fdb error slot")
            .get_or_insert(err);
        fdb_error(err)
    }

    fn take_refusal(&self) -> Option<KvError> {
        self.refused.lock().expect("refusal slot").take()
    }

    /// Checks a mutation's sizes and counts it against the transaction limit.
    fn count(&self, key: &[u8], value: Option<&[u8]>, operand: usize) -> KvResult<()> {
        let checked = check_sizes(key, value).and_then(|()| {
            let bytes = key.len() + value.map_or(operand, <[u8]>::len);
            let total = self.written.fetch_add(bytes, Ordering::Relaxed) + bytes;
            if total > limits::MAX_TXN_BYTES {
                return Err(KvError::TxnTooLarge);
            }
            Ok(())
        });
        if let Err(err) = &checked {
            self.refused
                .lock()
                .expect("refusal slot")
                .get_or_insert(err.clone());
        }
        checked
    }
}

#[async_trait]
impl TxnOps for FdbTxn {
    async fn get(&self, key: &[u8], snapshot: bool) -> KvResult<Option<Vec<u8>>> {
        match self.trx.get(key, snapshot).await {
            Ok(value) => Ok(value.map(|v| v.to_vec())),
            Err(err) => Err(self.failed(err)),
        }
    }

    async fn get_range(
        &self,
        begin: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
        snapshot: bool,
    ) -> KvResult<Vec<KeyValue>> {
        let mut option = Some(RangeOption {
            begin: KeySelector::first_greater_or_equal(begin.to_vec()),
            end: KeySelector::first_greater_or_equal(end.to_vec()),
            limit: (limit > 0).then_some(limit),
            reverse,
            mode: StreamingMode::WantAll,
            ..RangeOption::default()
        });
        let mut rows = Vec::new();
        let mut iteration = 1;
        while let Some(current) = option {
            let page = match self.trx.get_range(&current, iteration, snapshot).await {
                Ok(page) => page,
                Err(err) => return Err(self.failed(err)),
            };
            rows.extend(
                page.iter()
                    .map(|kv| (kv.key().to_vec(), kv.value().to_vec())),
            );
            option = current.next_range(&page);
            iteration += 1;
        }
        Ok(rows)
    }

    fn set(&self, key: &[u8], value: &[u8]) -> KvResult<()> {
        self.count(key, Some(value), 0)?;
        self.trx.set(key, value);
        Ok(())
    }

    fn clear(&self, key: &[u8]) -> KvResult<()> {
        self.count(key, None, 0)?;
        self.trx.clear(key);
        Ok(())
    }

    fn clear_range(&self, begin: &[u8], end: &[u8]) -> KvResult<()> {
        self.count(begin, None, end.len())?;
        self.trx.clear_range(begin, end);
        Ok(())
    }

    fn atomic_add(&self, key: &[u8], delta: i64) -> KvResult<()> {
        self.count(key, None, 8)?;
        self.trx
            .atomic_op(key, &delta.to_le_bytes(), MutationType::Add);
        Ok(())
    }
}
