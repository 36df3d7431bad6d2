//! Conformance cases: reading your own writes, visibility, range order
//! and limits, atomic adds, durability.

use super::*;

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
