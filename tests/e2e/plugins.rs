//! Plugins end to end: every example plugin built to wasm, uploaded through
//! the API, attached, and checked by what the receiver got or by the
//! publish being refused.

use std::time::Duration;

use herald_tests::{TestClient, TestReceiver, TestServer, plugin_wasm};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

/// Uploads a built plugin; returns the response.
pub async fn push(client: &TestClient, name: &str, crate_name: &str) -> Value {
    client.push_plugin(name, crate_name).await
}

async fn topic_with(client: &TestClient, topic: &str, plugins: Value) {
    let reply = client.put_topic(topic, json!({ "plugins": plugins })).await;
    assert!(
        matches!(reply.status, 200 | 201),
        "topic {topic}: {}",
        reply.text
    );
}

#[tokio::test]
async fn upload_reports_kind_version_and_digest() {
    let server = TestServer::start().await;
    let client = &server.client;
    let first = push(client, "router", "attribute-router").await;
    assert_eq!(first["kind"], "filter");
    assert_eq!(first["version"], 1);
    assert!(first["digest"].as_str().unwrap().starts_with("sha256:"));
    // The same bytes again are not a new version.
    let again = push(client, "router", "attribute-router").await;
    assert_eq!(again["version"], 1);
    let listed = client.call("GET", "/v1/plugins", None, 200).await;
    assert_eq!(listed["items"][0]["name"], "router");
    let one = client.call("GET", "/v1/plugins/router", None, 200).await;
    assert_eq!(one["latest_version"], 1);
    assert_eq!(one["versions"].as_array().unwrap().len(), 1);
    assert_eq!(one["versions"][0]["digest"], first["digest"]);
    // A transform cannot become a version of a filter.
    let bytes = std::fs::read(plugin_wasm("redact-pii")).unwrap();
    let reply = client.put_plugin("router", bytes).await;
    assert_eq!(reply.status, 409, "{}", reply.text);
}

#[tokio::test]
async fn bad_uploads_are_refused_with_reasons() {
    let server = TestServer::start().await;
    let client = &server.client;
    let core_module = b"\0asm\x01\0\0\0".to_vec();
    let empty_component = b"\0asm\x0d\0\x01\0".to_vec();
    let evil_import =
        wat::parse_str(r#"(component (import "evil:net/socket" (instance)))"#).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "garbage",
            b"definitely not wasm".to_vec(),
            "not a WebAssembly binary",
        ),
        ("core module", core_module, "core WebAssembly module"),
        ("no world", empty_component, "exports no Herald world"),
        ("foreign import", evil_import, "evil:net/socket"),
    ];
    for (what, bytes, reason) in cases {
        let reply = client.put_plugin("bad", bytes).await;
        assert_eq!(reply.status, 400, "{what}: {}", reply.text);
        assert_eq!(reply.json["code"], "invalid_plugin", "{what}");
        assert!(
            reply.json["detail"].as_str().unwrap().contains(reason),
            "{what}: {}",
            reply.text
        );
    }
    client.call("GET", "/v1/plugins/bad", None, 404).await;
    let bad_name = client.put_plugin("bad%20name", b"x".to_vec()).await;
    assert_eq!(bad_name.json["code"], "invalid_plugin_name");
}

#[tokio::test]
async fn json_schema_filter_refuses_bad_messages_at_publish() {
    let server = TestServer::start().await;
    let mut receiver = TestReceiver::start().await;
    let client = &server.client;
    push(client, "schema", "json-schema-filter").await;
    let schema = json!({"type": "object", "required": ["order"], "properties": {"order": {"type": "integer"}}});
    topic_with(
        client,
        "orders",
        json!([{"name": "schema", "config": {"schema": schema, "on_fail": "reject"}}]),
    )
    .await;
    client.subscribe("orders", &receiver.url, json!({})).await;

    let refused = client.post_message("orders", r#"{"order": "nope"}"#).await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert_eq!(refused.json["code"], "rejected_by_plugin");
    assert!(
        refused.json["detail"]
            .as_str()
            .unwrap()
            .contains("schema@1"),
        "{}",
        refused.text
    );

    let id = client
        .publish("orders", r#"{"order": 42}"#, Some("application/json"))
        .await;
    let got = receiver.next(WAIT).await;
    assert_eq!(got.header("webhook-id"), id);
    assert_eq!(got.body.as_ref(), br#"{"order": 42}"#);
    receiver.assert_quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn attribute_router_picks_subscriptions() {
    let server = TestServer::start().await;
    let mut eu = TestReceiver::start().await;
    let mut us = TestReceiver::start().await;
    let client = &server.client;
    push(client, "router", "attribute-router").await;
    client.create_topic("events").await;
    let route = |expr: &str| json!({"plugins": [{"name": "router", "config": {"expr": expr}}]});
    client
        .subscribe("events", &eu.url, route(r#"region == "eu""#))
        .await;
    client
        .subscribe(
            "events",
            &us.url,
            route(r#"region == "us" && kind != "noise""#),
        )
        .await;

    let to_eu = client
        .publish_with("events", "a", None, &[("herald-attr-region", "eu")])
        .await;
    let to_us = client
        .publish_with("events", "b", None, &[("herald-attr-region", "us")])
        .await;
    client
        .publish_with(
            "events",
            "c",
            None,
            &[("herald-attr-region", "us"), ("herald-attr-kind", "noise")],
        )
        .await;
    assert_eq!(eu.next(WAIT).await.header("webhook-id"), to_eu);
    assert_eq!(us.next(WAIT).await.header("webhook-id"), to_us);
    eu.assert_quiet(Duration::from_millis(500)).await;
    us.assert_quiet(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn redact_pii_masks_before_storing() {
    let server = TestServer::start().await;
    let mut receiver = TestReceiver::start().await;
    let client = &server.client;
    push(client, "redact", "redact-pii").await;
    topic_with(client, "users", json!([{"name": "redact"}])).await;
    let (_, secret) = client.subscribe("users", &receiver.url, json!({})).await;
    let body =
        r#"{"note": "mail ann@example.com or call +1 415 555 0100, card 4111 1111 1111 1111"}"#;
    client
        .publish("users", body, Some("application/json"))
        .await;
    let got = receiver.next(WAIT).await;
    let text = String::from_utf8(got.body.to_vec()).unwrap();
    let parsed: Value = serde_json::from_str(&text).expect("still valid JSON");
    let note = parsed["note"].as_str().unwrap();
    for secret in ["ann@example.com", "555 0100", "4111 1111 1111 1111"] {
        assert!(!note.contains(secret), "{secret} was not redacted: {note}");
    }
    // The signature covers the body as rewritten.
    standardwebhooks::Webhook::new(&secret)
        .unwrap()
        .verify(&got.body, &got.headers)
        .expect("signed over the redacted body");
}

#[tokio::test]
async fn slack_formatter_shapes_the_request() {
    let server = TestServer::start().await;
    let mut receiver = TestReceiver::start().await;
    let client = &server.client;
    push(client, "slack", "slack-formatter").await;
    client.create_topic("alerts").await;
    let (_, secret) = client
        .subscribe(
            "alerts",
            &receiver.url,
            json!({"plugins": [{"name": "slack", "config": {"template": "{topic}: {body}"}}]}),
        )
        .await;
    client
        .publish("alerts", "disk full", Some("text/plain"))
        .await;
    let got = receiver.next(WAIT).await;
    let payload: Value = serde_json::from_slice(&got.body).expect("a Slack JSON payload");
    assert_eq!(payload["text"], "alerts: disk full");
    assert!(got.header("content-type").starts_with("application/json"));
    standardwebhooks::Webhook::new(&secret)
        .unwrap()
        .verify(&got.body, &got.headers)
        .expect("signed over the shaped body");
}

#[tokio::test]
async fn cloudevents_envelope_wraps_the_body() {
    let server = TestServer::start().await;
    let mut receiver = TestReceiver::start().await;
    let client = &server.client;
    push(client, "ce", "cloudevents-envelope").await;
    client.create_topic("orders").await;
    client
        .subscribe(
            "orders",
            &receiver.url,
            json!({"plugins": [{"name": "ce", "config": {"type": "com.example.order"}}]}),
        )
        .await;
    let id = client
        .publish("orders", r#"{"order": 7}"#, Some("application/json"))
        .await;
    let got = receiver.next(WAIT).await;
    let event: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["id"], id);
    assert_eq!(event["type"], "com.example.order");
    assert_eq!(event["source"], "herald://orders");
    assert_eq!(event["data"]["order"], 7);
    assert_eq!(got.header("content-type"), "application/cloudevents+json");
}

#[tokio::test]
async fn attached_plugins_cannot_be_deleted_and_kinds_are_checked() {
    let server = TestServer::start().await;
    let client = &server.client;
    push(client, "slack", "slack-formatter").await;
    push(client, "redact", "redact-pii").await;
    let reply = client
        .put_topic("t", json!({"plugins": [{"name": "slack"}]}))
        .await;
    assert_eq!(
        reply.status, 400,
        "delivery plugins belong to subscriptions: {}",
        reply.text
    );
    let missing = client
        .put_topic("t", json!({"plugins": [{"name": "nope"}]}))
        .await;
    assert_eq!(missing.status, 404, "{}", missing.text);
    let pinned = client
        .put_topic("t", json!({"plugins": [{"name": "redact", "version": 9}]}))
        .await;
    assert_eq!(pinned.status, 404, "{}", pinned.text);

    topic_with(client, "t", json!([{"name": "redact", "version": 1}])).await;
    let refused = client.call("DELETE", "/v1/plugins/redact", None, 409).await;
    assert!(
        refused["detail"].as_str().unwrap().contains("topic:t"),
        "{refused}"
    );
    topic_with(client, "t", json!([])).await;
    client.call("DELETE", "/v1/plugins/redact", None, 204).await;
    client.call("GET", "/v1/plugins/redact", None, 404).await;
}

#[tokio::test]
async fn new_version_takes_over_while_traffic_flows() {
    let server = TestServer::start().await;
    let mut receiver = TestReceiver::start().await;
    let client = server.client.clone();
    // Version 1 masks e-mail addresses; version 2 wraps bodies as CloudEvents.
    let v1 = push(&client, "shape", "redact-pii").await;
    assert_eq!(v1["version"], 1);
    topic_with(&client, "flow", json!([{"name": "shape"}])).await;
    client.subscribe("flow", &receiver.url, json!({})).await;

    let total = 120;
    let upgrade_after = 40;
    let (upgraded_tx, upgraded_rx) = tokio::sync::oneshot::channel::<()>();
    let publisher = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut upgraded_rx = Some(upgraded_rx);
            let mut first_after_upgrade = None;
            for i in 0..total {
                if i == upgrade_after {
                    // Keep publishing until the upload has returned.
                    upgraded_rx.take().unwrap().await.unwrap();
                    first_after_upgrade = Some(i);
                }
                let body = format!(r#"{{"n": {i}, "mail": "x{i}@example.com"}}"#);
                ids.push(client.publish("flow", body, Some("application/json")).await);
            }
            (ids, first_after_upgrade.unwrap())
        })
    };
    // Upload version 2 while the publisher is mid-stream.
    let mut bodies = std::collections::HashMap::new();
    let first = receiver.next(WAIT).await;
    bodies.insert(first.header("webhook-id").to_string(), first.body.to_vec());
    let v2 = push(&client, "shape", "cloudevents-envelope").await;
    assert_eq!(v2["version"], 2);
    upgraded_tx.send(()).unwrap();
    let (ids, first_after_upgrade) = publisher.await.unwrap();

    while bodies.len() < total {
        let got = receiver.next(WAIT).await;
        bodies.insert(got.header("webhook-id").to_string(), got.body.to_vec());
    }
    for (i, id) in ids.iter().enumerate().skip(first_after_upgrade) {
        let body: Value = serde_json::from_slice(&bodies[id]).unwrap();
        assert_eq!(
            body["specversion"], "1.0",
            "message {i} went through version 2"
        );
    }
    assert!(
        ids.iter().all(|id| bodies.contains_key(id)),
        "nothing was lost"
    );
    for id in &ids[..first_after_upgrade] {
        let body: Value = serde_json::from_slice(&bodies[id]).unwrap();
        let text = body.to_string();
        let wrapped = body["specversion"] == "1.0";
        assert!(
            wrapped || !text.contains("@example.com"),
            "earlier messages went through version 1 or 2: {text}"
        );
    }
}
