//! The embedded backend: FoundationDB's transaction semantics on one redb file.
//!
//! # Why this shape
//! - **Optimistic concurrency over redb.** redb gives snapshot reads and one
//!   writer at a time, which is not enough for [`Kv`]'s serializable
//!   transactions with FoundationDB's retry model. So each transaction reads a
//!   redb snapshot taken at `begin`, buffers its writes, and records what it
//!   read; the commit is refused with [`KvError::Conflict`] if anything it read
//!   was written by a transaction that committed after its snapshot. That is
//!   FoundationDB's own scheme, so code that is correct here is correct there.
//! - **Group commit.** A commit returns only once durable, and every redb
//!   commit is an fsync. One committer thread validates and applies every
//!   queued transaction in a single redb write transaction, so concurrent
//!   transactions share one fsync instead of queueing for one each.
//! - **A B-tree.** The layout relies on ordered range reads (due times,
//!   per-topic prefixes) and deletes ranges; redb's copy-on-write B-tree gives
//!   both, plus cheap consistent snapshots for reads that never block the
//!   committer.
//!
//! # Versions
//! The committer publishes a batch's version only after its redb commit
//! returned, and `begin` reads the version *before* opening its snapshot. A
//! snapshot is therefore never older than its read version; at worst it is
//! newer, which only makes a conflict check stricter than needed.

mod buffer;
mod committer;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rand::Rng;
use redb::{Database, ReadOnlyTable, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use self::buffer::{KeySet, Local, WriteBuffer, add_over, key_after};
use self::committer::{CommitRequest, Shared};
use super::{KeyValue, Kv, KvError, KvResult, Txn, TxnAbort, TxnBody, TxnOps, check_sizes, limits};

/// The single table: raw keys to raw values, as FoundationDB stores them.
const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");

const MAX_ATTEMPTS: u32 = 100;
const INITIAL_BACKOFF: Duration = Duration::from_millis(1);
const MAX_BACKOFF: Duration = Duration::from_millis(50);

/// Bytes an atomic add's operand counts for against [`limits::MAX_TXN_BYTES`].
const ADD_OPERAND_BYTES: usize = 8;

fn backend(context: &str, err: impl std::fmt::Display) -> KvError {
    KvError::Backend(format!("{context}: {err}"))
}

/// A [`Kv`] on a local redb file.
pub struct EmbeddedKv {
    shared: Arc<Shared>,
    // Options so that `drop` can close the queue and then wait for the
    // committer, releasing the file before the store is reported gone.
    requests: Option<Sender<CommitRequest>>,
    committer: Option<JoinHandle<()>>,
}

impl EmbeddedKv {
    /// Opens (or creates) the store at `path`, creating missing parent
    /// directories. Commits use redb's immediate durability: fsync per batch.
    pub fn open(path: &Path) -> KvResult<Self> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .map_err(|err| backend(&format!("creating {}", parent.display()), err))?;
        }
        let db = Database::create(path)
            .map_err(|err| backend(&format!("opening {}", path.display()), err))?;
        // Snapshots open the table by name, which fails until it exists.
        let txn = db.begin_write().map_err(|err| backend("init", err))?;
        txn.open_table(TABLE).map_err(|err| backend("init", err))?;
        txn.commit().map_err(|err| backend("init", err))?;

        let shared = Arc::new(Shared {
            db,
            version: Default::default(),
            commits: Default::default(),
        });
        let (requests, queue) = mpsc::channel();
        let committer = std::thread::Builder::new()
            .name("herald-kv-commit".into())
            .spawn({
                let shared = shared.clone();
                move || committer::run(shared, queue)
            })
            .map_err(|err| backend("starting the committer", err))?;
        Ok(EmbeddedKv {
            shared,
            requests: Some(requests),
            committer: Some(committer),
        })
    }

    /// redb commits performed so far: one per batch of transactions.
    pub fn commits_performed(&self) -> u64 {
        self.shared.commits.load(Ordering::Relaxed)
    }

    fn begin(&self) -> KvResult<EmbeddedTxn> {
        // Version first, snapshot second: see the module docs.
        let read_version = self.shared.version.load(Ordering::Acquire);
        let snapshot = self
            .shared
            .db
            .begin_read()
            .map_err(|err| backend("begin", err))?
            .open_table(TABLE)
            .map_err(|err| backend("begin", err))?;
        Ok(EmbeddedTxn {
            read_version,
            started: Instant::now(),
            state: Mutex::new(TxnState {
                snapshot: Some(snapshot),
                writes: WriteBuffer::default(),
                reads: KeySet::default(),
                bytes: 0,
                failed: None,
            }),
        })
    }

    async fn commit(&self, txn: &EmbeddedTxn) -> KvResult<()> {
        let (reads, writes) = {
            let mut state = txn.state.lock().expect("txn state");
            state.snapshot.take().ok_or_else(finished)?;
            if let Some(err) = state.failed.take() {
                return Err(err);
            }
            (
                std::mem::take(&mut state.reads),
                std::mem::take(&mut state.writes),
            )
        };
        // A read-only transaction read one consistent snapshot, so it is
        // already serializable; like FoundationDB, it has nothing to commit.
        if writes.is_empty() {
            return Ok(());
        }
        if txn.started.elapsed() > limits::MAX_TXN_AGE {
            return Err(KvError::TooOld);
        }
        let (reply, outcome) = oneshot::channel();
        let request = CommitRequest {
            read_version: txn.read_version,
            reads,
            writes,
            reply,
        };
        self.requests
            .as_ref()
            .and_then(|requests| requests.send(request).ok())
            .ok_or_else(committer_gone)?;
        outcome.await.map_err(|_| committer_gone())?
    }
}

fn committer_gone() -> KvError {
    KvError::Backend("the committer has stopped".into())
}

fn finished() -> KvError {
    KvError::Backend("transaction used after it finished".into())
}

impl Drop for EmbeddedKv {
    fn drop(&mut self) {
        drop(self.requests.take());
        if let Some(committer) = self.committer.take() {
            let _ = committer.join();
        }
    }
}

#[async_trait]
impl Kv for EmbeddedKv {
    async fn run_boxed(&self, mut body: TxnBody<'_>) -> Result<(), TxnAbort> {
        let mut backoff = INITIAL_BACKOFF;
        for attempt in 1..=MAX_ATTEMPTS {
            let txn = Arc::new(self.begin().map_err(TxnAbort::Kv)?);
            let err = match body(txn.clone() as Txn).await {
                Ok(()) => match self.commit(&txn).await {
                    Ok(()) => return Ok(()),
                    Err(err) => err,
                },
                Err(TxnAbort::Domain) => {
                    txn.finish();
                    return Err(TxnAbort::Domain);
                }
                Err(TxnAbort::Kv(err)) => {
                    txn.finish();
                    err
                }
            };
            if !err.is_retryable() {
                return Err(TxnAbort::Kv(err));
            }
            if attempt < MAX_ATTEMPTS {
                // Jitter keeps transactions that collided from colliding again.
                let pause = rand::rng().random_range(backoff / 2..=backoff);
                tokio::time::sleep(pause).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        Err(TxnAbort::Kv(KvError::RetriesExhausted(MAX_ATTEMPTS)))
    }

    async fn health(&self) -> KvResult<()> {
        self.shared
            .db
            .begin_read()
            .map_err(|err| backend("health", err))?
            .open_table(TABLE)
            .map_err(|err| backend("health", err))?;
        if self.committer.as_ref().is_some_and(|c| c.is_finished()) {
            return Err(committer_gone());
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        "embedded"
    }
}

/// One attempt of a transaction.
struct EmbeddedTxn {
    read_version: u64,
    started: Instant,
    state: Mutex<TxnState>,
}

struct TxnState {
    /// `None` once the attempt finished; dropping it releases the redb pages
    /// the snapshot pins, even if the closure kept a handle.
    snapshot: Option<ReadOnlyTable<&'static [u8], &'static [u8]>>,
    writes: WriteBuffer,
    reads: KeySet,
    bytes: usize,
    /// A limit error from a mutation. It also fails the commit, as on
    /// FoundationDB, so a closure that ignores it cannot commit a partial
    /// transaction.
    failed: Option<KvError>,
}

impl EmbeddedTxn {
    fn live(&self) -> KvResult<MutexGuard<'_, TxnState>> {
        if self.started.elapsed() > limits::MAX_TXN_AGE {
            return Err(KvError::TooOld);
        }
        let state = self.state.lock().expect("txn state");
        if state.snapshot.is_none() {
            return Err(finished());
        }
        Ok(state)
    }

    fn finish(&self) {
        self.state.lock().expect("txn state").snapshot = None;
    }

    fn mutate(
        &self,
        sizes: KvResult<()>,
        bytes: usize,
        apply: impl FnOnce(&mut WriteBuffer),
    ) -> KvResult<()> {
        let mut state = self.live()?;
        let total = state.bytes.saturating_add(bytes);
        let checked = if total > limits::MAX_TXN_BYTES {
            sizes.and(Err(KvError::TxnTooLarge))
        } else {
            sizes
        };
        if let Err(err) = checked {
            state.failed.get_or_insert(err.clone());
            return Err(err);
        }
        state.bytes = total;
        apply(&mut state.writes);
        Ok(())
    }
}

#[async_trait]
impl TxnOps for EmbeddedTxn {
    async fn get(&self, key: &[u8], snapshot: bool) -> KvResult<Option<Vec<u8>>> {
        let mut state = self.live()?;
        let pending_add = match state.writes.local(key) {
            Local::Known(value) => return Ok(value.map(<[u8]>::to_vec)),
            Local::Add(delta) => Some(delta),
            Local::Untouched => None,
        };
        let committed = state
            .snapshot
            .as_ref()
            .ok_or_else(finished)?
            .get(key)
            .map_err(|err| backend("get", err))?
            .map(|value| value.value().to_vec());
        if !snapshot {
            state.reads.add_key(key);
        }
        Ok(match pending_add {
            Some(delta) => Some(add_over(committed.as_deref(), delta)),
            None => committed,
        })
    }

    async fn get_range(
        &self,
        begin: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
        snapshot: bool,
    ) -> KvResult<Vec<KeyValue>> {
        let mut state = self.live()?;
        if begin >= end {
            return Ok(Vec::new());
        }
        let found = {
            let state = &*state;
            let range = state
                .snapshot
                .as_ref()
                .ok_or_else(finished)?
                .range(begin..end)
                .map_err(|err| backend("get_range", err))?;
            let owned = |entry: Result<(redb::AccessGuard<&[u8]>, redb::AccessGuard<&[u8]>), _>| {
                entry.map(|(key, value)| (key.value().to_vec(), value.value().to_vec()))
            };
            let result = if reverse {
                state
                    .writes
                    .merge_range(range.rev().map(owned), begin, end, limit, true)
            } else {
                state
                    .writes
                    .merge_range(range.map(owned), begin, end, limit, false)
            };
            result.map_err(|err: redb::StorageError| backend("get_range", err))?
        };
        if !snapshot {
            // A read cut short by its limit depends only on the keys up to
            // the last one returned, so later writes beyond it do not conflict.
            match found.last() {
                Some((last, _)) if limit != 0 && found.len() >= limit => {
                    if reverse {
                        state.reads.add_range(last, end);
                    } else {
                        state.reads.add_range(begin, &key_after(last));
                    }
                }
                _ => state.reads.add_range(begin, end),
            }
        }
        Ok(found)
    }

    fn set(&self, key: &[u8], value: &[u8]) -> KvResult<()> {
        self.mutate(
            check_sizes(key, Some(value)),
            key.len() + value.len(),
            |writes| writes.set(key, value),
        )
    }

    fn clear(&self, key: &[u8]) -> KvResult<()> {
        self.mutate(check_sizes(key, None), key.len(), |writes| {
            writes.clear(key)
        })
    }

    fn clear_range(&self, begin: &[u8], end: &[u8]) -> KvResult<()> {
        self.mutate(
            check_sizes(begin, None).and_then(|()| check_sizes(end, None)),
            begin.len() + end.len(),
            |writes| writes.clear_range(begin, end),
        )
    }

    fn atomic_add(&self, key: &[u8], delta: i64) -> KvResult<()> {
        self.mutate(
            check_sizes(key, None),
            key.len() + ADD_OPERAND_BYTES,
            |writes| writes.atomic_add(key, delta),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::KvExt;

    fn fixture() -> (Arc<dyn Kv>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let kv = EmbeddedKv::open(&dir.path().join("store.redb")).expect("open");
        (Arc::new(kv), dir)
    }

    mod conformance {
        crate::kv_conformance_tests!(super::fixture());
    }

    #[tokio::test]
    async fn durability_across_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A nested path also checks that missing parents are created.
        let path = dir.path().join("nested/dir/store.redb");
        crate::store::conformance::durability_across_reopen(|| {
            Arc::new(EmbeddedKv::open(&path).expect("open")) as Arc<dyn Kv>
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn group_commit_shares_redb_commits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kv = Arc::new(EmbeddedKv::open(&dir.path().join("store.redb")).expect("open"));
        const TXNS: usize = 200;
        let before = kv.commits_performed();
        let tasks: Vec<_> = (0..TXNS)
            .map(|i| {
                let kv = kv.clone();
                tokio::spawn(async move {
                    let key = format!("group/{i:03}").into_bytes();
                    kv.run(move |txn| {
                        let key = key.clone();
                        async move { txn.set(&key, b"v") }
                    })
                    .await
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task").expect("commit");
        }
        let commits = kv.commits_performed() - before;
        let found = kv
            .run(|txn| async move { txn.get_range(b"group/", b"group0", 0, false, false).await })
            .await
            .expect("read back");
        assert_eq!(found.len(), TXNS);
        assert!(
            commits < TXNS as u64,
            "{commits} redb commits for {TXNS} transactions: no batching"
        );
    }

    #[tokio::test]
    async fn handle_kept_past_its_attempt_is_refused() {
        let (kv, _dir) = fixture();
        let kept: Arc<Mutex<Option<Txn>>> = Arc::default();
        let slot = kept.clone();
        kv.run(move |txn| {
            *slot.lock().unwrap() = Some(txn.clone());
            async move { txn.set(b"k", b"v") }
        })
        .await
        .expect("commit");
        let txn = kept.lock().unwrap().take().expect("kept");
        assert!(matches!(txn.set(b"k", b"w"), Err(KvError::Backend(_))));
        assert!(matches!(
            txn.get(b"k", false).await,
            Err(KvError::Backend(_))
        ));
    }

    #[tokio::test]
    async fn the_op_crossing_the_txn_limit_fails() {
        let (kv, _dir) = fixture();
        let failed_at: Arc<Mutex<Option<usize>>> = Arc::default();
        let slot = failed_at.clone();
        let result = kv
            .run(move |txn| {
                let slot = slot.clone();
                async move {
                    let value = vec![0u8; limits::MAX_VALUE_BYTES];
                    for i in 0..200usize {
                        if let Err(err) = txn.set(&i.to_be_bytes(), &value) {
                            *slot.lock().unwrap() = Some(i);
                            return Err(err);
                        }
                    }
                    Ok(())
                }
            })
            .await;
        assert_eq!(result, Err(KvError::TxnTooLarge));
        // 8-byte keys: op i brings the total to (i + 1) * 100,008 bytes.
        let crossing = limits::MAX_TXN_BYTES / (limits::MAX_VALUE_BYTES + 8);
        assert_eq!(*failed_at.lock().unwrap(), Some(crossing));
    }

    #[tokio::test]
    async fn ignored_limit_error_still_fails_the_commit() {
        let (kv, _dir) = fixture();
        let result = kv
            .run(|txn| async move {
                let _ = txn.set(&[0u8; limits::MAX_KEY_BYTES + 1], b"");
                txn.set(b"small", b"v")
            })
            .await;
        assert_eq!(result, Err(KvError::KeyTooLarge(limits::MAX_KEY_BYTES + 1)));
        let value = kv
            .run(|txn| async move { txn.get(b"small", false).await })
            .await
            .expect("read");
        assert_eq!(value, None);
    }
}
