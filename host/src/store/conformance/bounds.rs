//! Conformance cases: FoundationDB's size and age limits, and ids.

use super::*;

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
