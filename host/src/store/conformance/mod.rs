//! The [`Kv`] contract as executable cases, for every backend.
//!
//! Each case takes a store and panics when the backend breaks the contract.
//! Every case works under its own random key prefix, so all of them can share
//! one store (a FoundationDB cluster) and run in parallel.
//!
//! [`kv_conformance_tests!`](crate::kv_conformance_tests) turns the list into
//! one `#[tokio::test]` per case; the calling crate needs `tokio` with the
//! `macros` and `rt-multi-thread` features:
//!
//! ```ignore
//! mod embedded_conformance {
//!     herald::kv_conformance_tests!(my_crate::make_store());
//! }
//! ```
//!
//! Durability across a restart needs a way to reopen the store, so it is the
//! separate [`durability_across_reopen`].

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rand::Rng;
use rand::seq::SliceRandom;
use tokio::sync::{Barrier, Mutex, Notify};

use super::ids::IdAllocator;
use super::{KeyValue, Kv, KvError, KvExt, TransactError, Txn, decode_counter, limits};

/// What a test instantiation hands each case: a store, possibly with
/// something (a temporary directory) that must outlive it.
pub trait Fixture {
    fn kv(&self) -> Arc<dyn Kv>;
}

impl Fixture for Arc<dyn Kv> {
    fn kv(&self) -> Arc<dyn Kv> {
        self.clone()
    }
}

impl<G> Fixture for (Arc<dyn Kv>, G) {
    fn kv(&self) -> Arc<dyn Kv> {
        self.0.clone()
    }
}

/// Expands to one `#[tokio::test]` per conformance case. `$make` is evaluated
/// afresh for each test and must yield a [`Fixture`].
///
/// With `optional:`, `$make` yields an `Option` of a fixture, and each test
/// prints `skipped: …` and returns when it is `None` (no cluster to run on).
#[macro_export]
macro_rules! kv_conformance_tests {
    (optional: $make:expr) => {
        $crate::kv_conformance_tests!(@list $make;);
    };
    ($make:expr) => {
        $crate::kv_conformance_tests!(@list Some($make););
    };
    (@list $make:expr;) => {
        $crate::kv_conformance_tests!(@cases $make;
            // Slowest first, so it overlaps the others.
            old_transaction_is_too_old,
            read_your_writes,
            range_reads_merge_buffered_writes,
            committed_writes_are_visible,
            range_order_limit_reverse_empty,
            atomic_add_semantics,
            atomic_add_adds_no_read_conflict,
            concurrent_atomic_adds_sum_exactly,
            conflicting_read_modify_write_retries,
            concurrent_transfers_are_serializable,
            write_skew_is_prevented,
            snapshot_reads_add_no_conflict,
            limited_range_read_conflicts_only_on_what_it_read,
            domain_error_stops_without_commit,
            size_limits_are_enforced,
            ids_unique_and_monotonic,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(fixture) = $make else {
                    println!("skipped: no store to run {} on", stringify!($case));
                    return;
                };
                let kv = $crate::store::conformance::Fixture::kv(&fixture);
                $crate::store::conformance::$case(kv).await;
            }
        )*
    };
}

mod basics;
mod bounds;
mod concurrency;

pub use basics::*;
pub use bounds::*;
pub use concurrency::*;

// ---------------------------------------------------------------- helpers

fn prefix() -> Vec<u8> {
    format!("conformance/{:016x}/", rand::random::<u64>()).into_bytes()
}

fn key(prefix: &[u8], name: impl AsRef<[u8]>) -> Vec<u8> {
    [prefix, name.as_ref()].concat()
}

/// The end of the range of every key under `prefix`.
fn end_of(prefix: &[u8]) -> Vec<u8> {
    key(prefix, [0xff])
}

fn counter(value: i64) -> Vec<u8> {
    value.to_le_bytes().to_vec()
}

async fn put(kv: &dyn Kv, key: &[u8], value: &[u8]) {
    let (key, value) = (key.to_vec(), value.to_vec());
    kv.run(move |txn| {
        let (key, value) = (key.clone(), value.clone());
        async move { txn.set(&key, &value) }
    })
    .await
    .expect("put");
}

async fn read(kv: &dyn Kv, key: &[u8]) -> Option<Vec<u8>> {
    let key = key.to_vec();
    kv.run(move |txn| {
        let key = key.clone();
        async move { txn.get(&key, false).await }
    })
    .await
    .expect("read")
}

async fn read_counter(kv: &dyn Kv, key: &[u8]) -> i64 {
    decode_counter(read(kv, key).await.as_deref())
}

async fn read_range(
    kv: &dyn Kv,
    begin: &[u8],
    end: &[u8],
    limit: usize,
    reverse: bool,
) -> Vec<KeyValue> {
    let (begin, end) = (begin.to_vec(), end.to_vec());
    kv.run(move |txn| {
        let (begin, end) = (begin.clone(), end.clone());
        async move { txn.get_range(&begin, &end, limit, reverse, false).await }
    })
    .await
    .expect("read range")
}

fn keys_of(entries: &[KeyValue]) -> Vec<Vec<u8>> {
    entries.iter().map(|(key, _)| key.clone()).collect()
}

/// What a range read must return, computed from a model of the store.
fn expected_range(
    model: &BTreeMap<Vec<u8>, Vec<u8>>,
    begin: &[u8],
    end: &[u8],
    limit: usize,
    reverse: bool,
) -> Vec<KeyValue> {
    let mut all: Vec<KeyValue> = model
        .range(begin.to_vec()..end.to_vec())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if reverse {
        all.reverse();
    }
    if limit != 0 {
        all.truncate(limit);
    }
    all
}

/// Lets a test hold a transaction's first attempt at a chosen point while
/// another transaction commits, then counts the attempts.
#[derive(Clone, Default)]
struct Pause {
    attempts: Arc<AtomicU32>,
    reached: Arc<Notify>,
    resume: Arc<Notify>,
}

impl Pause {
    /// Call at the start of the closure; returns the attempt number (from 1).
    fn attempt(&self) -> u32 {
        self.attempts.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Holds attempt 1 until [`Pause::release`]; later attempts pass.
    async fn hold(&self, attempt: u32) {
        if attempt == 1 {
            self.reached.notify_one();
            self.resume.notified().await;
        }
    }

    async fn reached(&self) {
        self.reached.notified().await;
    }

    fn release(&self) {
        self.resume.notify_one();
    }

    fn attempts(&self) -> u32 {
        self.attempts.load(Ordering::SeqCst)
    }
}

/// Runs `victim` in the background, and `intruder` to completion while the
/// victim's first attempt is held; returns the victim's attempt count.
async fn with_intrusion<F, Fut, I>(kv: &Arc<dyn Kv>, pause: &Pause, victim: F, intruder: I) -> u32
where
    F: FnMut(Txn) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), KvError>> + Send + 'static,
    I: Future<Output = ()>,
{
    let task = {
        let kv = kv.clone();
        tokio::spawn(async move { kv.run(victim).await })
    };
    pause.reached().await;
    intruder.await;
    pause.release();
    task.await.expect("victim task").expect("victim commit");
    pause.attempts()
}

/// A domain error, to check that [`KvExt::run`] stops on it.
#[derive(Debug, PartialEq)]
enum CaseError {
    Kv(KvError),
    Refused,
}

impl From<KvError> for CaseError {
    fn from(err: KvError) -> Self {
        CaseError::Kv(err)
    }
}

impl TransactError for CaseError {
    fn as_kv(&self) -> Option<&KvError> {
        match self {
            CaseError::Kv(err) => Some(err),
            CaseError::Refused => None,
        }
    }
}

// ---------------------------------------------------------------- cases
