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

/// Reads inside a transaction see its own sets, clears, range clears and adds.
pub async fn read_your_writes(kv: Arc<dyn Kv>) {
    let p = prefix();
    let [a, b, c, d, e, n] = ["a", "b", "c", "d", "e", "n"].map(|name| key(&p, name));
    put(&*kv, &a, b"old-a").await;
    put(&*kv, &c, b"old-c").await;
    put(&*kv, &d, b"old-d").await;
    put(&*kv, &n, &counter(5)).await;

    let keys = (
        a.clone(),
        b.clone(),
        c.clone(),
        d.clone(),
        e.clone(),
        n.clone(),
    );
    kv.run(move |txn| {
        let (a, b, c, d, e, n) = keys.clone();
        async move {
            assert_eq!(txn.get(&a, false).await?.as_deref(), Some(&b"old-a"[..]));
            txn.set(&a, b"new-a")?;
            assert_eq!(txn.get(&a, false).await?.as_deref(), Some(&b"new-a"[..]));
            assert_eq!(txn.get(&a, true).await?.as_deref(), Some(&b"new-a"[..]));

            txn.set(&b, b"b")?;
            assert_eq!(txn.get(&b, false).await?.as_deref(), Some(&b"b"[..]));
            txn.clear(&b)?;
            assert_eq!(txn.get(&b, false).await?, None);

            txn.clear_range(&c, &e)?;
            assert_eq!(txn.get(&c, false).await?, None);
            assert_eq!(txn.get(&d, false).await?, None);
            txn.set(&d, b"revived")?;
            assert_eq!(txn.get(&d, false).await?.as_deref(), Some(&b"revived"[..]));

            // A pending add reads as the committed value plus the delta.
            txn.atomic_add(&n, 3)?;
            assert_eq!(txn.get(&n, false).await?, Some(counter(8)));
            txn.atomic_add(&n, -1)?;
            assert_eq!(txn.get(&n, true).await?, Some(counter(7)));
            // Over a cleared key, an add starts from 0.
            txn.atomic_add(&c, 2)?;
            assert_eq!(txn.get(&c, false).await?, Some(counter(2)));
            // Over a value set in this transaction, it adds to that value.
            txn.set(&b, &counter(10))?;
            txn.atomic_add(&b, 1)?;
            assert_eq!(txn.get(&b, false).await?, Some(counter(11)));
            Ok::<_, KvError>(())
        }
    })
    .await
    .expect("transaction");

    assert_eq!(read(&*kv, &a).await.as_deref(), Some(&b"new-a"[..]));
    assert_eq!(read(&*kv, &b).await, Some(counter(11)));
    assert_eq!(read(&*kv, &c).await, Some(counter(2)));
    assert_eq!(read(&*kv, &d).await.as_deref(), Some(&b"revived"[..]));
    assert_eq!(read(&*kv, &e).await, None);
    assert_eq!(read(&*kv, &n).await, Some(counter(7)));
}

/// Range reads merge the transaction's writes with committed data, in both
/// directions and with limits, before and after the commit.
pub async fn range_reads_merge_buffered_writes(kv: Arc<dyn Kv>) {
    let p = prefix();
    let mut model = BTreeMap::new();
    for i in 0..10 {
        model.insert(key(&p, format!("k{i}")), format!("c{i}").into_bytes());
    }
    model.insert(key(&p, "k6n"), counter(40));
    {
        let model = model.clone();
        kv.run(move |txn| {
            let model = model.clone();
            async move {
                for (k, v) in &model {
                    txn.set(k, v)?;
                }
                Ok::<_, KvError>(())
            }
        })
        .await
        .expect("seed");
    }

    // The same edits, applied to the model by hand.
    model.insert(key(&p, "k3"), b"t3".to_vec());
    model.insert(key(&p, "k45"), b"new".to_vec());
    model.remove(&key(&p, "k5"));
    model.insert(key(&p, "k6n"), counter(42));
    model.insert(key(&p, "k6z"), counter(-1));
    for k in ["k7", "k8"] {
        model.remove(&key(&p, k));
    }
    model.insert(key(&p, "k75"), b"after-clear".to_vec());
    model.remove(&key(&p, "k0"));

    let (begin, end) = (p.clone(), end_of(&p));
    let reads: Vec<(Vec<u8>, Vec<u8>, usize, bool)> = vec![
        (begin.clone(), end.clone(), 0, false),
        (begin.clone(), end.clone(), 0, true),
        (begin.clone(), end.clone(), 4, false),
        (begin.clone(), end.clone(), 4, true),
        (key(&p, "k4"), key(&p, "k8"), 0, false),
        (key(&p, "k4"), key(&p, "k8"), 0, true),
        (key(&p, "k6"), key(&p, "k9"), 2, true),
        (key(&p, "k7"), key(&p, "k75"), 0, false),
        (begin.clone(), end.clone(), 100, false),
    ];
    let expected: Vec<Vec<KeyValue>> = reads
        .iter()
        .map(|(b, e, limit, reverse)| expected_range(&model, b, e, *limit, *reverse))
        .collect();

    {
        let (p, reads, expected) = (p.clone(), reads.clone(), expected.clone());
        kv.run(move |txn| {
            let (p, reads, expected) = (p.clone(), reads.clone(), expected.clone());
            async move {
                txn.set(&key(&p, "k3"), b"t3")?;
                txn.set(&key(&p, "k45"), b"new")?;
                txn.clear(&key(&p, "k5"))?;
                txn.atomic_add(&key(&p, "k6n"), 2)?;
                txn.atomic_add(&key(&p, "k6z"), -1)?;
                txn.clear_range(&key(&p, "k7"), &key(&p, "k9"))?;
                txn.set(&key(&p, "k75"), b"after-clear")?;
                txn.clear_range(&key(&p, "k0"), &key(&p, "k1"))?;
                for ((b, e, limit, reverse), want) in reads.iter().zip(&expected) {
                    for snapshot in [false, true] {
                        let got = txn.get_range(b, e, *limit, *reverse, snapshot).await?;
                        assert_eq!(
                            &got, want,
                            "in-txn range limit={limit} reverse={reverse} snapshot={snapshot}"
                        );
                    }
                }
                Ok::<_, KvError>(())
            }
        })
        .await
        .expect("edit");
    }

    for ((b, e, limit, reverse), want) in reads.iter().zip(&expected) {
        let got = read_range(&*kv, b, e, *limit, *reverse).await;
        assert_eq!(
            &got, want,
            "committed range limit={limit} reverse={reverse}"
        );
    }
}

/// What one transaction commits, later ones read.
pub async fn committed_writes_are_visible(kv: Arc<dyn Kv>) {
    let p = prefix();
    let [a, b, c, n] = ["a", "b", "c", "n"].map(|name| key(&p, name));
    let keys = (a.clone(), b.clone(), c.clone(), n.clone());
    kv.run(move |txn| {
        let (a, b, c, n) = keys.clone();
        async move {
            txn.set(&a, b"1")?;
            txn.set(&b, b"2")?;
            txn.set(&c, b"3")?;
            txn.atomic_add(&n, 9)?;
            Ok::<_, KvError>(())
        }
    })
    .await
    .expect("write");
    assert_eq!(read(&*kv, &a).await.as_deref(), Some(&b"1"[..]));
    assert_eq!(read(&*kv, &b).await.as_deref(), Some(&b"2"[..]));
    assert_eq!(read_counter(&*kv, &n).await, 9);

    let (a2, b2) = (a.clone(), b.clone());
    kv.run(move |txn| {
        let (a, b) = (a2.clone(), b2.clone());
        async move {
            txn.clear(&a)?;
            txn.clear_range(&b, &key(&b, [0]))
        }
    })
    .await
    .expect("clear");
    assert_eq!(read(&*kv, &a).await, None);
    assert_eq!(read(&*kv, &b).await, None);
    assert_eq!(read(&*kv, &c).await.as_deref(), Some(&b"3"[..]));
    let rest = read_range(&*kv, &p, &end_of(&p), 0, false).await;
    assert_eq!(keys_of(&rest), vec![c, n]);
}

/// Range reads come back in byte order, honour limit and reverse, and empty
/// or inverted ranges return nothing.
pub async fn range_order_limit_reverse_empty(kv: Arc<dyn Kv>) {
    let p = prefix();
    let names: Vec<Vec<u8>> = vec![
        vec![0x00],
        vec![0x00, 0x00],
        vec![0x01],
        b"A".to_vec(),
        b"a".to_vec(),
        b"aa".to_vec(),
        b"b".to_vec(),
        vec![0x7f],
        vec![0x80],
        vec![0xfe],
        vec![0xfe, 0xff],
    ];
    let mut shuffled = names.clone();
    shuffled.shuffle(&mut rand::rng());
    let model: BTreeMap<Vec<u8>, Vec<u8>> = shuffled
        .iter()
        .enumerate()
        .map(|(i, name)| (key(&p, name), format!("v{i}").into_bytes()))
        .collect();
    // One transaction per key, in random order, so order is the store's doing.
    for (k, v) in &model {
        put(&*kv, k, v).await;
    }
    let sorted: Vec<Vec<u8>> = model.keys().cloned().collect();
    let (begin, end) = (p.clone(), end_of(&p));

    let all = read_range(&*kv, &begin, &end, 0, false).await;
    assert_eq!(keys_of(&all), sorted);
    assert!(all.iter().all(|(k, v)| model[k] == *v));
    let mut descending = sorted.clone();
    descending.reverse();
    assert_eq!(
        keys_of(&read_range(&*kv, &begin, &end, 0, true).await),
        descending
    );
    assert_eq!(
        keys_of(&read_range(&*kv, &begin, &end, 3, false).await),
        sorted[..3]
    );
    assert_eq!(
        keys_of(&read_range(&*kv, &begin, &end, 3, true).await),
        descending[..3]
    );
    assert_eq!(read_range(&*kv, &begin, &end, 1000, false).await, all);
    // Begin is inclusive, end exclusive.
    let (b, e) = (key(&p, b"a"), key(&p, b"b"));
    let middle = read_range(&*kv, &b, &e, 0, false).await;
    assert_eq!(keys_of(&middle), vec![key(&p, b"a"), key(&p, b"aa")]);
    assert_eq!(read_range(&*kv, &b, &b, 0, false).await, vec![]);
    assert_eq!(read_range(&*kv, &e, &b, 0, false).await, vec![]);
    assert_eq!(read_range(&*kv, &e, &b, 0, true).await, vec![]);
    let (gap_begin, gap_end) = (key(&p, b"c"), key(&p, b"d"));
    assert_eq!(
        read_range(&*kv, &gap_begin, &gap_end, 0, true).await,
        vec![]
    );
}

/// Adds treat absent values as 0, sum within a transaction, and wrap.
pub async fn atomic_add_semantics(kv: Arc<dyn Kv>) {
    let p = prefix();
    let [fresh, existing, wraps] = ["fresh", "existing", "wraps"].map(|name| key(&p, name));
    put(&*kv, &existing, &counter(100)).await;
    put(&*kv, &wraps, &counter(i64::MAX)).await;
    let keys = (fresh.clone(), existing.clone(), wraps.clone());
    kv.run(move |txn| {
        let (fresh, existing, wraps) = keys.clone();
        async move {
            txn.atomic_add(&fresh, 5)?;
            txn.atomic_add(&fresh, 6)?;
            txn.atomic_add(&existing, -150)?;
            txn.atomic_add(&wraps, 1)?;
            Ok::<_, KvError>(())
        }
    })
    .await
    .expect("adds");
    assert_eq!(read_counter(&*kv, &fresh).await, 11);
    assert_eq!(read_counter(&*kv, &existing).await, -50);
    assert_eq!(read_counter(&*kv, &wraps).await, i64::MIN);
    assert_eq!(read(&*kv, &fresh).await.map(|v| v.len()), Some(8));
}

/// A transaction that only adds to a key does not conflict with a concurrent
/// write of that key, and its add applies on top of it.
pub async fn atomic_add_adds_no_read_conflict(kv: Arc<dyn Kv>) {
    let p = prefix();
    let (n, other) = (key(&p, "n"), key(&p, "other"));
    let pause = Pause::default();
    let victim = {
        let (pause, n, other) = (pause.clone(), n.clone(), other.clone());
        move |txn: Txn| {
            let (pause, n, other) = (pause.clone(), n.clone(), other.clone());
            async move {
                let attempt = pause.attempt();
                // A read of an unrelated key pins the read version first.
                txn.get(&other, false).await?;
                txn.atomic_add(&n, 1)?;
                pause.hold(attempt).await;
                Ok(())
            }
        }
    };
    let attempts = with_intrusion(&kv, &pause, victim, put(&*kv, &n, &counter(100))).await;
    assert_eq!(attempts, 1, "an atomic add caused a conflict");
    assert_eq!(read_counter(&*kv, &n).await, 101);
}

/// Many concurrent adds to one key lose nothing.
pub async fn concurrent_atomic_adds_sum_exactly(kv: Arc<dyn Kv>) {
    const TASKS: i64 = 64;
    let p = prefix();
    let (total, count) = (key(&p, "total"), key(&p, "count"));
    let tasks: Vec<_> = (1..=TASKS)
        .map(|i| {
            let (kv, total, count) = (kv.clone(), total.clone(), count.clone());
            tokio::spawn(async move {
                kv.run(move |txn| {
                    let (total, count) = (total.clone(), count.clone());
                    async move {
                        txn.atomic_add(&total, i)?;
                        txn.atomic_add(&count, 1)
                    }
                })
                .await
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("add");
    }
    assert_eq!(read_counter(&*kv, &total).await, TASKS * (TASKS + 1) / 2);
    assert_eq!(read_counter(&*kv, &count).await, TASKS);
}

/// Two read-modify-writes of one key: the one that read first and committed
/// second must run again, and both increments land.
pub async fn conflicting_read_modify_write_retries(kv: Arc<dyn Kv>) {
    let p = prefix();
    let k = key(&p, "k");
    let increment = |k: Vec<u8>, pause: Option<Pause>| {
        move |txn: Txn| {
            let (k, pause) = (k.clone(), pause.clone());
            async move {
                let attempt = pause.as_ref().map_or(0, Pause::attempt);
                let current = decode_counter(txn.get(&k, false).await?.as_deref());
                if let Some(pause) = &pause {
                    pause.hold(attempt).await;
                }
                txn.set(&k, &counter(current + 1))
            }
        }
    };
    let pause = Pause::default();
    let other = async {
        kv.run(increment(k.clone(), None)).await.expect("intruder");
    };
    let attempts = with_intrusion(
        &kv,
        &pause,
        increment(k.clone(), Some(pause.clone())),
        other,
    )
    .await;
    assert!(
        attempts >= 2,
        "the stale transaction committed without a retry"
    );
    assert_eq!(read_counter(&*kv, &k).await, 2, "an increment was lost");
}

/// Concurrent transfers between a few accounts conserve the total and never
/// overdraw, and concurrent audits always see the full total.
pub async fn concurrent_transfers_are_serializable(kv: Arc<dyn Kv>) {
    const ACCOUNTS: usize = 6;
    const INITIAL: i64 = 100;
    const TASKS: usize = 40;
    const AUDITS: usize = 20;
    let p = prefix();
    let accounts: Vec<Vec<u8>> = (0..ACCOUNTS)
        .map(|i| key(&p, format!("acct/{i}")))
        .collect();
    let (acct_begin, acct_end) = (key(&p, "acct/"), key(&p, "acct0"));
    let done = key(&p, "done");
    for account in &accounts {
        put(&*kv, account, &counter(INITIAL)).await;
    }
    let attempts = Arc::new(AtomicU32::new(0));

    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (from, to, amount) = {
            let mut rng = rand::rng();
            let from = rng.random_range(0..ACCOUNTS);
            let to = (from + rng.random_range(1..ACCOUNTS)) % ACCOUNTS;
            (from, to, rng.random_range(1..=60))
        };
        let (from, to) = (accounts[from].clone(), accounts[to].clone());
        let (kv, done, attempts) = (kv.clone(), done.clone(), attempts.clone());
        tasks.push(tokio::spawn(async move {
            kv.run(move |txn| {
                let (from, to, done, attempts) =
                    (from.clone(), to.clone(), done.clone(), attempts.clone());
                async move {
                    attempts.fetch_add(1, Ordering::Relaxed);
                    let from_balance = decode_counter(txn.get(&from, false).await?.as_deref());
                    let to_balance = decode_counter(txn.get(&to, false).await?.as_deref());
                    // Widen the window in which another transfer can interleave.
                    tokio::task::yield_now().await;
                    if from_balance >= amount {
                        txn.set(&from, &counter(from_balance - amount))?;
                        txn.set(&to, &counter(to_balance + amount))?;
                    }
                    txn.atomic_add(&done, 1)
                }
            })
            .await
        }));
    }
    let auditor = {
        let kv = kv.clone();
        let (begin, end) = (acct_begin.clone(), acct_end.clone());
        tokio::spawn(async move {
            for _ in 0..AUDITS {
                let all = read_range(&*kv, &begin, &end, 0, false).await;
                let total: i64 = all.iter().map(|(_, v)| decode_counter(Some(v))).sum();
                assert_eq!(
                    total,
                    INITIAL * ACCOUNTS as i64,
                    "an audit saw a partial transfer"
                );
                tokio::task::yield_now().await;
            }
        })
    };
    for task in tasks {
        task.await.expect("transfer task").expect("transfer");
    }
    auditor.await.expect("auditor");

    let all = read_range(&*kv, &acct_begin, &acct_end, 0, false).await;
    assert_eq!(all.len(), ACCOUNTS);
    let balances: Vec<i64> = all.iter().map(|(_, v)| decode_counter(Some(v))).collect();
    assert!(balances.iter().all(|b| *b >= 0), "overdrawn: {balances:?}");
    assert_eq!(
        balances.iter().sum::<i64>(),
        INITIAL * ACCOUNTS as i64,
        "{balances:?}"
    );
    assert_eq!(read_counter(&*kv, &done).await, TASKS as i64);
    assert!(attempts.load(Ordering::Relaxed) as usize >= TASKS);
}

/// Two transactions each read x and y and take one unit from their own key
/// when x + y >= 1. Under snapshot isolation both would commit (write skew,
/// x + y = -1); serializability lets only one.
pub async fn write_skew_is_prevented(kv: Arc<dyn Kv>) {
    let p = prefix();
    let (x, y) = (key(&p, "x"), key(&p, "y"));
    put(&*kv, &x, &counter(1)).await;
    put(&*kv, &y, &counter(0)).await;
    let both_read = Arc::new(Barrier::new(2));
    let attempts = Arc::new(AtomicU32::new(0));
    let take = |own: Vec<u8>| {
        let (kv, x, y) = (kv.clone(), x.clone(), y.clone());
        let (both_read, attempts) = (both_read.clone(), attempts.clone());
        tokio::spawn(async move {
            let first = Arc::new(AtomicU32::new(0));
            kv.run(move |txn| {
                let (x, y, own) = (x.clone(), y.clone(), own.clone());
                let (both_read, attempts, first) =
                    (both_read.clone(), attempts.clone(), first.clone());
                async move {
                    attempts.fetch_add(1, Ordering::SeqCst);
                    let xv = decode_counter(txn.get(&x, false).await?.as_deref());
                    let yv = decode_counter(txn.get(&y, false).await?.as_deref());
                    if first.fetch_add(1, Ordering::SeqCst) == 0 {
                        both_read.wait().await;
                    }
                    if xv + yv >= 1 {
                        let mine = if own == x { xv } else { yv };
                        txn.set(&own, &counter(mine - 1))?;
                    }
                    Ok::<_, KvError>(())
                }
            })
            .await
        })
    };
    let (tx, ty) = (take(x.clone()), take(y.clone()));
    tx.await.expect("task").expect("txn x");
    ty.await.expect("task").expect("txn y");
    let (xv, yv) = (read_counter(&*kv, &x).await, read_counter(&*kv, &y).await);
    assert_eq!(xv + yv, 0, "write skew: x={xv} y={yv}");
    assert!(
        attempts.load(Ordering::SeqCst) >= 3,
        "the loser did not retry"
    );
}

/// Snapshot reads, point and range, do not make a transaction conflict.
pub async fn snapshot_reads_add_no_conflict(kv: Arc<dyn Kv>) {
    let p = prefix();
    let (k, r1, r2, out) = (key(&p, "k"), key(&p, "r/1"), key(&p, "r/2"), key(&p, "out"));
    put(&*kv, &k, b"before").await;
    put(&*kv, &r1, b"before").await;
    let pause = Pause::default();
    let victim = {
        let (pause, k, out, p) = (pause.clone(), k.clone(), out.clone(), p.clone());
        move |txn: Txn| {
            let (pause, k, out, p) = (pause.clone(), k.clone(), out.clone(), p.clone());
            async move {
                let attempt = pause.attempt();
                let seen = txn.get(&k, true).await?;
                let range = txn
                    .get_range(&key(&p, "r/"), &key(&p, "r0"), 0, false, true)
                    .await?;
                pause.hold(attempt).await;
                if attempt == 1 {
                    assert_eq!(seen.as_deref(), Some(&b"before"[..]), "snapshot moved");
                    assert_eq!(range.len(), 1, "snapshot range moved");
                }
                txn.set(&out, b"done")
            }
        }
    };
    let intruder = async {
        put(&*kv, &k, b"after").await;
        put(&*kv, &r2, b"after").await;
    };
    let attempts = with_intrusion(&kv, &pause, victim, intruder).await;
    assert_eq!(attempts, 1, "a snapshot read caused a conflict");
    assert_eq!(read(&*kv, &out).await.as_deref(), Some(&b"done"[..]));
}

/// A range read that stopped at its limit conflicts only with writes up to
/// the last key it returned, in either direction.
pub async fn limited_range_read_conflicts_only_on_what_it_read(kv: Arc<dyn Kv>) {
    let p = prefix();
    let rows = |name: &str| key(&p, format!("r/{name}"));
    for name in ["a", "b", "c", "d"] {
        put(&*kv, &rows(name), b"v").await;
    }
    let (begin, end) = (rows(""), key(&p, "r0"));
    // (reverse, key written meanwhile, whether that must conflict)
    let cases = [
        (false, "c2", false),
        (false, "a5", true),
        (true, "a5", false),
        (true, "c5", true),
    ];
    for (reverse, written, conflicts) in cases {
        let pause = Pause::default();
        let victim = {
            let (pause, begin, end, out) =
                (pause.clone(), begin.clone(), end.clone(), key(&p, "out"));
            move |txn: Txn| {
                let (pause, begin, end, out) =
                    (pause.clone(), begin.clone(), end.clone(), out.clone());
                async move {
                    let attempt = pause.attempt();
                    let got = txn.get_range(&begin, &end, 2, reverse, false).await?;
                    assert_eq!(got.len(), 2);
                    pause.hold(attempt).await;
                    txn.set(&out, b"x")
                }
            }
        };
        let written = rows(written);
        let attempts = with_intrusion(&kv, &pause, victim, put(&*kv, &written, b"w")).await;
        assert_eq!(
            attempts > 1,
            conflicts,
            "limit-2 read (reverse={reverse}) vs a write of {:?}: {attempts} attempts",
            String::from_utf8_lossy(&written)
        );
        kv.run(move |txn| {
            let written = written.clone();
            async move { txn.clear(&written) }
        })
        .await
        .expect("undo");
    }
}

/// A domain error stops the transaction at once: no retry, no commit.
pub async fn domain_error_stops_without_commit(kv: Arc<dyn Kv>) {
    let p = prefix();
    let k = key(&p, "k");
    let attempts = Arc::new(AtomicU32::new(0));
    let result: Result<(), CaseError> = {
        let (k, attempts) = (k.clone(), attempts.clone());
        kv.run(move |txn| {
            let (k, attempts) = (k.clone(), attempts.clone());
            async move {
                attempts.fetch_add(1, Ordering::SeqCst);
                txn.set(&k, b"must not commit")?;
                Err(CaseError::Refused)
            }
        })
        .await
    };
    assert_eq!(result, Err(CaseError::Refused));
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
    assert_eq!(read(&*kv, &k).await, None);

    // A domain value on success passes through too.
    let value: Result<u32, CaseError> = kv.run(|_txn| async { Ok(7) }).await;
    assert_eq!(value, Ok(7));
}

/// FoundationDB's key, value and transaction size limits hold.
pub async fn size_limits_are_enforced(kv: Arc<dyn Kv>) {
    let p = prefix();
    let sized_key = |len: usize| {
        let mut k = key(&p, "big/");
        k.resize(len, b'k');
        k
    };
    let write = |k: Vec<u8>, value_len: usize| {
        let kv = kv.clone();
        async move {
            kv.run(move |txn| {
                let k = k.clone();
                async move { txn.set(&k, &vec![b'v'; value_len]) }
            })
            .await
        }
    };

    let max_key = limits::MAX_KEY_BYTES;
    assert_eq!(write(sized_key(max_key), 1).await, Ok(()));
    assert_eq!(
        read(&*kv, &sized_key(max_key)).await.map(|v| v.len()),
        Some(1)
    );
    assert_eq!(
        write(sized_key(max_key + 1), 1).await,
        Err(KvError::KeyTooLarge(max_key + 1))
    );
    for op in ["clear", "add"] {
        let k = sized_key(max_key + 1);
        let result = kv
            .run(move |txn| {
                let k = k.clone();
                async move {
                    match op {
                        "clear" => txn.clear(&k),
                        _ => txn.atomic_add(&k, 1),
                    }
                }
            })
            .await;
        assert_eq!(result, Err(KvError::KeyTooLarge(max_key + 1)), "{op}");
    }

    let max_value = limits::MAX_VALUE_BYTES;
    let (ok, big) = (key(&p, "value/ok"), key(&p, "value/big"));
    assert_eq!(write(ok.clone(), max_value).await, Ok(()));
    assert_eq!(read(&*kv, &ok).await.map(|v| v.len()), Some(max_value));
    assert_eq!(
        write(big.clone(), max_value + 1).await,
        Err(KvError::ValueTooLarge(max_value + 1))
    );
    assert_eq!(read(&*kv, &big).await, None);

    // Just over the transaction limit, from values that are each legal.
    let count = limits::MAX_TXN_BYTES / max_value + 1;
    let (begin, end) = (key(&p, "txn/"), key(&p, "txn0"));
    let result = {
        let begin = begin.clone();
        kv.run(move |txn| {
            let begin = begin.clone();
            async move {
                let value = vec![b'v'; max_value];
                for i in 0..count {
                    txn.set(&key(&begin, format!("{i:04}")), &value)?;
                }
                Ok::<_, KvError>(())
            }
        })
        .await
    };
    assert_eq!(result, Err(KvError::TxnTooLarge));
    assert_eq!(read_range(&*kv, &begin, &end, 1, false).await, vec![]);
}

/// Ids are unique across allocators and restarts and increase per caller.
pub async fn ids_unique_and_monotonic(kv: Arc<dyn Kv>) {
    const CALLERS: usize = 4;
    const PER_CALLER: usize = 25;
    let ids_key = key(&prefix(), "ids");
    let allocators = [
        Arc::new(IdAllocator::new(kv.clone(), ids_key.clone(), 7)),
        Arc::new(IdAllocator::new(kv.clone(), ids_key.clone(), 7)),
    ];
    let mut tasks = Vec::new();
    for allocator in &allocators {
        for _ in 0..CALLERS {
            let allocator = allocator.clone();
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::with_capacity(PER_CALLER);
                for _ in 0..PER_CALLER {
                    ids.push(allocator.next().await.expect("id"));
                    tokio::task::yield_now().await;
                }
                ids
            }));
        }
    }
    let seen: Arc<Mutex<BTreeSet<u64>>> = Arc::default();
    for task in tasks {
        let ids = task.await.expect("caller");
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "not increasing: {ids:?}"
        );
        let mut seen = seen.lock().await;
        for id in ids {
            assert_ne!(id, 0);
            assert!(seen.insert(id), "id {id} handed out twice");
        }
    }
    let seen = seen.lock().await;
    assert_eq!(seen.len(), 2 * CALLERS * PER_CALLER);

    // A fresh allocator (a restart) starts above everything handed out.
    let restarted = IdAllocator::new(kv.clone(), ids_key, 7);
    let first = restarted.next().await.expect("id");
    let second = restarted.next().await.expect("id");
    let max = *seen.last().expect("ids");
    assert!(
        first > max && second > first,
        "{first}, {second} after {max}"
    );
}

/// A transaction older than the age limit fails with the retryable
/// [`KvError::TooOld`], and the retry commits. Sleeps for the age limit.
pub async fn old_transaction_is_too_old(kv: Arc<dyn Kv>) {
    let p = prefix();
    let k = key(&p, "k");
    let attempts = Arc::new(AtomicU32::new(0));
    let first_error: Arc<std::sync::Mutex<Option<KvError>>> = Arc::default();
    {
        let (k, attempts, first_error) = (k.clone(), attempts.clone(), first_error.clone());
        kv.run(move |txn| {
            let (k, attempts, first_error) = (k.clone(), attempts.clone(), first_error.clone());
            async move {
                let attempt = attempts.fetch_add(1, Ordering::SeqCst) + 1;
                txn.get(&k, false).await?;
                if attempt == 1 {
                    tokio::time::sleep(limits::MAX_TXN_AGE + Duration::from_millis(200)).await;
                    let late = txn.get(&k, false).await;
                    *first_error.lock().expect("slot") = late.as_ref().err().cloned();
                    late?;
                }
                txn.set(&k, b"committed")
            }
        })
        .await
        .expect("retry commits");
    }
    assert_eq!(*first_error.lock().expect("slot"), Some(KvError::TooOld));
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!(read(&*kv, &k).await.as_deref(), Some(&b"committed"[..]));
}

/// What was committed survives closing and reopening the store. `open` must
/// open the same store each time; the first handle is dropped before the
/// second is opened.
pub async fn durability_across_reopen(open: impl Fn() -> Arc<dyn Kv>) {
    let p = prefix();
    let (a, n, gone) = (key(&p, "a"), key(&p, "n"), key(&p, "gone"));
    {
        let kv = open();
        put(&*kv, &gone, b"x").await;
        let keys = (a.clone(), n.clone(), gone.clone());
        kv.run(move |txn| {
            let (a, n, gone) = keys.clone();
            async move {
                txn.set(&a, b"kept")?;
                txn.atomic_add(&n, 3)?;
                txn.clear(&gone)
            }
        })
        .await
        .expect("commit");
    }
    let kv = open();
    assert_eq!(read(&*kv, &a).await.as_deref(), Some(&b"kept"[..]));
    assert_eq!(read_counter(&*kv, &n).await, 3);
    assert_eq!(read(&*kv, &gone).await, None);
}
