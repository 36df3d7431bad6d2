//! Retries: transient failures are retried with growing attempt numbers,
//! and a success ends them.

use std::time::Duration;

use herald_tests::{TestReceiver, TestServer};
use serde_json::json;

const FAST_RETRY: &str = r#"{"retry": {"min_backoff_ms": 20, "max_backoff_ms": 100}}"#;

#[tokio::test]
async fn two_failures_then_success_delivers_once() {
    let server = TestServer::start().await;
    let mut receiver = TestReceiver::start().await;
    receiver.script(&[500, 500]);
    let client = &server.client;
    client.create_topic("flaky").await;
    let extra: serde_json::Value = serde_json::from_str(FAST_RETRY).unwrap();
    client.subscribe("flaky", &receiver.url, extra).await;
    let id = client.publish("flaky", "payload", Some("text/plain")).await;

    let mut attempts = Vec::new();
    for _ in 0..3 {
        let got = receiver.next(Duration::from_secs(10)).await;
        assert_eq!(got.header("webhook-id"), id);
        assert_eq!(got.body.as_ref(), b"payload");
        attempts.push((got.header("herald-attempt").to_string(), got.status));
    }
    assert_eq!(
        attempts,
        vec![("1".into(), 500), ("2".into(), 500), ("3".into(), 200)],
        "attempt numbers and answers"
    );
    // Delivered once: nothing more comes after the 200.
    receiver.assert_quiet(Duration::from_millis(800)).await;
}

#[tokio::test]
async fn retry_after_is_honoured_and_429_retried() {
    let server = TestServer::start().await;
    let mut receiver = TestReceiver::start().await;
    receiver.script(&[429]);
    let client = &server.client;
    client.create_topic("limited").await;
    client
        .subscribe(
            "limited",
            &receiver.url,
            json!({"retry": {"min_backoff_ms": 20}}),
        )
        .await;
    client.publish("limited", "x", None).await;
    let first = receiver.next(Duration::from_secs(5)).await;
    let second = receiver.next(Duration::from_secs(10)).await;
    assert_eq!(first.status, 429);
    assert_eq!(second.header("herald-attempt"), "2");
    assert_eq!(second.status, 200);
}

#[tokio::test]
async fn client_errors_follow_the_policy() {
    let server = TestServer::start().await;
    let mut receiver = TestReceiver::start().await;
    receiver.set_default(400);
    let client = &server.client;
    client.create_topic("strict").await;
    let (sub, _) = client
        .subscribe(
            "strict",
            &receiver.url,
            json!({"retry": {"client_errors": "dead_letter"}}),
        )
        .await;
    client.publish("strict", "rejected", None).await;
    assert_eq!(receiver.next(Duration::from_secs(5)).await.status, 400);
    let dlq = client
        .wait_for(
            &format!("/v1/subscriptions/{sub}/dlq"),
            Duration::from_secs(10),
            |v| v["items"].as_array().is_some_and(|a| a.len() == 1),
        )
        .await;
    assert_eq!(dlq["items"][0]["attempts"], 1);
    assert_eq!(dlq["items"][0]["last_error"], "HTTP 400");
    receiver.assert_quiet(Duration::from_millis(500)).await;
}
