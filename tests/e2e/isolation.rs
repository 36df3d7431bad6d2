//! Isolation: a dead endpoint holds only its own share of the pool, so a
//! live endpoint on the same topic is served as if it were alone.

use std::time::Duration;

use herald_tests::{TestReceiver, TestServer};
use serde_json::json;

#[tokio::test]
async fn dead_endpoint_does_not_delay_live_one() {
    let server = TestServer::start_with(|c| {
        c.sender.max_in_flight = 32;
        c.sender.max_in_flight_per_endpoint = 4;
    })
    .await;
    let mut dead = TestReceiver::start().await;
    dead.hang();
    let mut live = TestReceiver::start().await;
    let client = &server.client;
    client.create_topic("shared").await;
    // The dead endpoint accepts connections and never answers; its timeout
    // is far longer than this test, so its attempts stay in flight.
    client
        .subscribe("shared", &dead.url, json!({"timeout_ms": 120000}))
        .await;
    client.subscribe("shared", &live.url, json!({})).await;

    let messages = 100;
    let mut ids = Vec::new();
    for i in 0..messages {
        ids.push(client.publish("shared", format!("m{i}"), None).await);
    }
    let mut latencies = Vec::new();
    let mut seen = std::collections::HashSet::new();
    while seen.len() < messages {
        let got = live.next(Duration::from_secs(20)).await;
        seen.insert(got.header("webhook-id").to_string());
        latencies.push(got.at);
    }
    assert!(
        ids.iter().all(|id| seen.contains(id)),
        "live endpoint got every message"
    );

    // The dead endpoint got exactly its per-endpoint share, all still hanging.
    let mut hanging = 0;
    while tokio::time::timeout(
        Duration::from_millis(300),
        dead.next(Duration::from_secs(1)),
    )
    .await
    .is_ok()
    {
        hanging += 1;
    }
    assert_eq!(
        hanging, 4,
        "dead endpoint holds exactly its cap of in-flight attempts"
    );
    println!(
        "live endpoint received {messages} messages while the dead one held {hanging} attempts"
    );
}
