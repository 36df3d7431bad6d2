//! Conformance cases: conflicts, retries and serializability under
//! concurrent transactions.

use super::*;

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
