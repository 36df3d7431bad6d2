//! The real binary under `kill -9` and SIGTERM.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_tests::{HeraldProcess, TestReceiver, free_port};
use serde_json::json;

#[tokio::test]
async fn kill_9_under_load_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut herald = HeraldProcess::start(dir.path(), port).await.unwrap();
    let mut receiver = TestReceiver::start().await;
    herald.client.create_topic("load").await;
    herald
        .client
        .subscribe("load", &receiver.url, json!({}))
        .await;

    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let (enough_tx, mut enough_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut publishers = Vec::new();
    for worker in 0..8 {
        let (client, acked, enough_tx) = (herald.client.clone(), acked.clone(), enough_tx.clone());
        publishers.push(tokio::spawn(async move {
            for i in 0.. {
                let request = client
                    .http
                    .post(client.url("/v1/topics/load/messages"))
                    .body(format!("w{worker}-{i}"));
                // Errors are expected once the process is gone.
                let Ok(response) = request.send().await else {
                    return;
                };
                if response.status().as_u16() != 202 {
                    return;
                }
                let Ok(body) = response.json::<serde_json::Value>().await else {
                    return;
                };
                let mut acked = acked.lock().unwrap();
                acked.insert(body["id"].as_str().unwrap().to_string());
                if acked.len() >= 300 {
                    let _ = enough_tx.send(());
                }
            }
        }));
    }
    // Kill mid-stream: publishers are still sending when it happens.
    enough_rx.recv().await.unwrap();
    herald.kill_9();
    for publisher in publishers {
        publisher.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 300);

    let _restarted = HeraldProcess::start(dir.path(), port).await.unwrap();
    let mut delivered = HashSet::new();
    let mut duplicates = 0;
    while !acked.iter().all(|id| delivered.contains(id)) {
        let got = receiver.next(Duration::from_secs(30)).await;
        if !delivered.insert(got.header("webhook-id").to_string()) {
            duplicates += 1;
        }
    }
    println!(
        "kill -9: {} acknowledged, all delivered; {} extra (unacknowledged) delivered, {duplicates} duplicates",
        acked.len(),
        delivered.len() - acked.len()
    );
}

#[tokio::test]
async fn sigterm_drains_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut herald = HeraldProcess::start(dir.path(), port).await.unwrap();
    let mut receiver = TestReceiver::start().await;
    herald.client.create_topic("t").await;
    herald.client.subscribe("t", &receiver.url, json!({})).await;
    let id = herald.client.publish("t", "before stop", None).await;
    assert_eq!(
        receiver
            .next(Duration::from_secs(10))
            .await
            .header("webhook-id"),
        id
    );
    let status = herald.terminate();
    assert!(status.success(), "herald exited with {status}");
    let refused = reqwest::get(herald.client.url("/healthz")).await;
    assert!(refused.is_err(), "the listener is closed after shutdown");
}
