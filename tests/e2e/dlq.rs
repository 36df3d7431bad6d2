//! Dead-letter queue: exhausted deliveries land there with their last
//! error, and redrive delivers them.

use std::time::Duration;

use herald_tests::{TestReceiver, TestServer};
use serde_json::json;

#[tokio::test]
async fn exhausted_delivery_is_dead_lettered_then_redriven() {
    let server = TestServer::start().await;
    let mut receiver = TestReceiver::start().await;
    receiver.set_default(503);
    let client = &server.client;
    client.create_topic("doomed").await;
    let (sub, secret) = client
        .subscribe(
            "doomed",
            &receiver.url,
            json!({"retry": {"max_attempts": 3, "min_backoff_ms": 10, "max_backoff_ms": 50}}),
        )
        .await;
    let first = client.publish("doomed", "one", Some("text/plain")).await;
    let second = client.publish("doomed", "two", Some("text/plain")).await;
    for _ in 0..6 {
        assert_eq!(receiver.next(Duration::from_secs(10)).await.status, 503);
    }
    let dlq_path = format!("/v1/subscriptions/{sub}/dlq");
    let dlq = client
        .wait_for(&dlq_path, Duration::from_secs(10), |v| {
            v["items"].as_array().is_some_and(|a| a.len() == 2)
        })
        .await;
    for item in dlq["items"].as_array().unwrap() {
        assert_eq!(item["attempts"], 3);
        assert_eq!(item["last_error"], "HTTP 503");
    }
    receiver.assert_quiet(Duration::from_millis(300)).await;

    // Redrive one by id, then the rest.
    receiver.set_default(200);
    let redriven = client
        .call(
            "POST",
            &format!("{dlq_path}/redrive"),
            Some(json!({"ids": [first]})),
            200,
        )
        .await;
    assert_eq!(redriven["count"], 1);
    let got = receiver.next(Duration::from_secs(10)).await;
    assert_eq!(got.header("webhook-id"), first);
    assert_eq!(got.body.as_ref(), b"one");
    assert_eq!(got.header("herald-attempt"), "1");
    let webhook = standardwebhooks::Webhook::new(&secret).unwrap();
    webhook
        .verify(&got.body, &got.headers)
        .expect("redriven delivery is signed");

    let redriven = client
        .call("POST", &format!("{dlq_path}/redrive"), None, 200)
        .await;
    assert_eq!(redriven["count"], 1);
    let got = receiver.next(Duration::from_secs(10)).await;
    assert_eq!(got.header("webhook-id"), second);
    assert_eq!(got.body.as_ref(), b"two");
    let dlq = client.call("GET", &dlq_path, None, 200).await;
    assert_eq!(dlq["items"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn purge_empties_the_queue() {
    let server = TestServer::start().await;
    let mut receiver = TestReceiver::start().await;
    receiver.set_default(500);
    let client = &server.client;
    client.create_topic("purged").await;
    let (sub, _) = client
        .subscribe(
            "purged",
            &receiver.url,
            json!({"retry": {"max_attempts": 1}}),
        )
        .await;
    client.publish("purged", "gone", None).await;
    receiver.next(Duration::from_secs(10)).await;
    let dlq_path = format!("/v1/subscriptions/{sub}/dlq");
    client
        .wait_for(&dlq_path, Duration::from_secs(10), |v| {
            v["items"].as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
    let purged = client.call("DELETE", &dlq_path, None, 200).await;
    assert_eq!(purged["count"], 1);
    let dlq = client.call("GET", &dlq_path, None, 200).await;
    assert!(dlq["items"].as_array().unwrap().is_empty());
    let redriven = client
        .call("POST", &format!("{dlq_path}/redrive"), None, 200)
        .await;
    assert_eq!(redriven["count"], 0);
}
