//! Publish and receive: bodies arrive byte for byte, and signatures verify
//! with an independent Standard Webhooks implementation.

use std::time::Duration;

use herald_tests::{TestReceiver, TestServer};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

/// Verifies a delivery's signature without Herald's own signing code: with
/// the `standardwebhooks` crate, or for bodies that are not UTF-8 (which
/// that crate refuses) by the spec's recipe over the raw bytes.
fn verify(secret: &str, delivery: &herald_tests::Delivery) {
    if std::str::from_utf8(&delivery.body).is_ok() {
        let webhook = standardwebhooks::Webhook::new(secret).expect("secret parses");
        webhook
            .verify(&delivery.body, &delivery.headers)
            .expect("signature verifies with the standardwebhooks crate");
        return;
    }
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let mut signed = format!(
        "{}.{}.",
        delivery.header("webhook-id"),
        delivery.header("webhook-timestamp")
    )
    .into_bytes();
    signed.extend_from_slice(&delivery.body);
    let expected = format!("v1,{}", b64.encode(hmac_sha256::HMAC::mac(&signed, &key)));
    assert!(
        delivery
            .header("webhook-signature")
            .split(' ')
            .any(|s| s == expected),
        "signature over binary body verifies"
    );
}

#[tokio::test]
async fn bodies_arrive_byte_for_byte_and_signed() {
    let server = TestServer::start().await;
    let mut receiver = TestReceiver::start().await;
    let client = &server.client;
    client.create_topic("orders").await;
    let (sub, secret) = client.subscribe("orders", &receiver.url, json!({})).await;

    let binary: Vec<u8> = (0..=255u8).rev().chain(0..=255u8).collect();
    let cases: Vec<(Vec<u8>, Option<&str>)> = vec![
        (
            br#"{ "b":2,   "a" : [1, 2 ,3],"z":null }"#.to_vec(),
            Some("application/json"),
        ),
        (
            b"plain text, with trailing newline\n".to_vec(),
            Some("text/plain; charset=utf-8"),
        ),
        (binary, Some("application/octet-stream")),
        (Vec::new(), None),
        (vec![b'x'; 200 * 1024], Some("application/x-big")),
    ];
    for (body, content_type) in &cases {
        let id = client.publish("orders", body.clone(), *content_type).await;
        let got = receiver.next(WAIT).await;
        assert_eq!(got.body.as_ref(), body.as_slice(), "body of {id}");
        assert_eq!(got.header("webhook-id"), id);
        assert_eq!(got.header("herald-topic"), "orders");
        assert_eq!(got.header("herald-subscription"), sub);
        assert_eq!(got.header("herald-attempt"), "1");
        assert_eq!(got.header("content-type"), content_type.unwrap_or(""));
        verify(&secret, &got);
    }
}

#[tokio::test]
async fn attributes_and_envelope() {
    let server = TestServer::start().await;
    let mut raw = TestReceiver::start().await;
    let mut wrapped = TestReceiver::start().await;
    let client = &server.client;
    client.create_topic("events").await;
    client.subscribe("events", &raw.url, json!({})).await;
    let (_, secret) = client
        .subscribe("events", &wrapped.url, json!({"envelope": true}))
        .await;

    let id = client
        .publish_with(
            "events",
            "hello",
            Some("text/plain"),
            &[("herald-attr-kind", "greeting")],
        )
        .await;
    let got = raw.next(WAIT).await;
    assert_eq!(got.header("herald-attr-kind"), "greeting");
    assert_eq!(got.body.as_ref(), b"hello");

    let got = wrapped.next(WAIT).await;
    verify(&secret, &got);
    let envelope: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(envelope["id"], id);
    assert_eq!(envelope["topic"], "events");
    assert_eq!(envelope["body"], "hello");
    assert_eq!(envelope["attributes"]["kind"], "greeting");
    assert_eq!(got.header("content-type"), "application/json");
}

#[tokio::test]
async fn fan_out_reaches_every_subscription() {
    let server = TestServer::start().await;
    let client = &server.client;
    client.create_topic("wide").await;
    let mut receivers = Vec::new();
    for _ in 0..5 {
        let receiver = TestReceiver::start().await;
        client.subscribe("wide", &receiver.url, json!({})).await;
        receivers.push(receiver);
    }
    let id = client.publish("wide", "to all", None).await;
    for receiver in &mut receivers {
        assert_eq!(receiver.next(WAIT).await.header("webhook-id"), id);
        receiver.assert_quiet(Duration::from_millis(300)).await;
    }
}
