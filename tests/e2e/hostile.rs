//! Hostile plugins, built from source in tests/fixtures: each one fails with
//! its reason or finds nothing, and the server stays healthy.

use std::time::{Duration, Instant};

use herald_tests::{TestClient, TestReceiver, TestServer, hostile, plugin_wasm};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

async fn upload(client: &TestClient, name: &str, bytes: Vec<u8>) {
    let reply = client.put_plugin(name, bytes).await;
    assert_eq!(reply.status, 201, "upload {name}: {}", reply.text);
}

/// A topic whose only plugin is `attachment`; returns what publishing gets.
async fn publish_through(
    client: &TestClient,
    topic: &str,
    attachment: Value,
) -> herald_tests::Reply {
    let reply = client
        .put_topic(topic, json!({"plugins": [attachment]}))
        .await;
    assert_eq!(reply.status, 201, "topic {topic}: {}", reply.text);
    client.post_message(topic, "payload").await
}

/// The server still serves and delivers after a hostile call.
async fn assert_healthy(client: &TestClient) {
    let mut receiver = TestReceiver::start().await;
    let health = client.send(client.http.get(client.url("/healthz"))).await;
    assert_eq!(health.status, 200);
    client.create_topic("plain").await;
    client.subscribe("plain", &receiver.url, json!({})).await;
    let id = client.publish("plain", "still here", None).await;
    assert_eq!(receiver.next(WAIT).await.header("webhook-id"), id);
}

fn assert_refused(reply: &herald_tests::Reply, reason: &str) {
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert_eq!(reply.json["code"], "plugin_failed", "{}", reply.text);
    let detail = reply.json["detail"].as_str().unwrap();
    assert!(detail.contains(reason), "expected {reason:?} in {detail:?}");
}

#[tokio::test]
async fn infinite_loop_is_stopped_by_its_cpu_limit() {
    let server = TestServer::start().await;
    let client = &server.client;
    upload(
        client,
        "spin",
        std::fs::read(plugin_wasm("spin-forever")).unwrap(),
    )
    .await;
    let started = Instant::now();
    let reply = publish_through(client, "spin", json!({"name": "spin", "timeout_ms": 100})).await;
    let elapsed = started.elapsed();
    assert_refused(&reply, "CPU limit of 100 ms");
    assert!(
        elapsed < Duration::from_secs(10),
        "the deadline fired, after {elapsed:?}"
    );
    println!("spinning plugin stopped after {elapsed:?} with a 100 ms limit");
    assert_healthy(client).await;
}

#[tokio::test]
async fn sleeping_plugin_is_refused_not_waited_for() {
    let server = TestServer::start().await;
    let client = &server.client;
    upload(
        client,
        "doze",
        std::fs::read(plugin_wasm("sleep-forever")).unwrap(),
    )
    .await;
    let started = Instant::now();
    let reply = publish_through(client, "doze", json!({"name": "doze"})).await;
    let elapsed = started.elapsed();
    assert_refused(&reply, "may not sleep");
    assert!(
        elapsed < Duration::from_secs(10),
        "answered after {elapsed:?}"
    );
    assert_healthy(client).await;
}

#[tokio::test]
async fn memory_bomb_hits_its_memory_limit() {
    let server = TestServer::start().await;
    let client = &server.client;
    upload(
        client,
        "bomb",
        std::fs::read(plugin_wasm("memory-bomb")).unwrap(),
    )
    .await;
    let reply = publish_through(
        client,
        "bomb",
        json!({"name": "bomb", "memory_bytes": 8 * 1024 * 1024}),
    )
    .await;
    assert_refused(&reply, "memory limit of 8388608 bytes");
    assert_healthy(client).await;
}

#[tokio::test]
async fn table_bomb_hits_the_table_limit() {
    let server = TestServer::start().await;
    let client = &server.client;
    upload(client, "tables", hostile::table_bomb_component()).await;
    let reply = publish_through(
        client,
        "tables",
        json!({"name": "tables", "timeout_ms": 5000}),
    )
    .await;
    assert_refused(&reply, "table");
    assert_healthy(client).await;
}

#[tokio::test]
async fn trap_and_oversize_output_fail_with_reasons() {
    let server = TestServer::start().await;
    let client = &server.client;
    upload(client, "trap", std::fs::read(plugin_wasm("trap")).unwrap()).await;
    upload(
        client,
        "big",
        std::fs::read(plugin_wasm("oversize-output")).unwrap(),
    )
    .await;
    let reply = publish_through(client, "trap", json!({"name": "trap"})).await;
    assert_refused(&reply, "trapped");
    let reply = publish_through(
        client,
        "big",
        json!({"name": "big", "memory_bytes": 256 * 1024 * 1024, "timeout_ms": 5000}),
    )
    .await;
    assert_refused(&reply, "over its limit");
    assert_healthy(client).await;
}

#[tokio::test]
async fn sandbox_grants_no_files_sockets_or_environment() {
    let server = TestServer::start().await;
    let mut receiver = TestReceiver::start().await;
    let client = &server.client;
    let bait = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bait_addr = bait.local_addr().unwrap().to_string();
    for (name, crate_name) in [
        ("files", "read-host-file"),
        ("net", "open-socket"),
        ("env", "read-env"),
    ] {
        upload(
            client,
            name,
            std::fs::read(plugin_wasm(crate_name)).unwrap(),
        )
        .await;
    }
    client.create_topic("snoop").await;
    let mut seen = std::collections::HashMap::new();
    for (name, config) in [
        ("files", json!({})),
        ("net", json!({"addr": bait_addr, "lookup": "localhost:80"})),
        ("env", json!({})),
    ] {
        let (sub, _) = client
            .subscribe(
                "snoop",
                &receiver.url,
                json!({"plugins": [{"name": name, "config": config}]}),
            )
            .await;
        seen.insert(sub, name);
    }
    client.publish("snoop", "x", None).await;
    let mut found = std::collections::HashMap::new();
    for _ in 0..3 {
        let got = receiver.next(WAIT).await;
        let report: Value = serde_json::from_slice(&got.body).unwrap();
        found.insert(seen[got.header("herald-subscription")], report);
    }
    let files = &found["files"];
    assert!(
        files["hostname"]["error"].is_string(),
        "no host file: {files}"
    );
    assert!(
        files["root"]["error"].is_string(),
        "no directory listing: {files}"
    );
    let net = &found["net"];
    assert!(net["connect"]["error"].is_string(), "no connection: {net}");
    assert!(net["lookup"]["error"].is_string(), "no name lookup: {net}");
    let env = &found["env"];
    assert_eq!(env["vars"], json!([]), "no environment: {env}");
    assert_eq!(env["args"], json!([]), "no arguments: {env}");
    // Nothing ever reached the bait listener.
    let accepted = tokio::time::timeout(Duration::from_millis(200), bait.accept()).await;
    assert!(accepted.is_err(), "the plugin connected to the host");
}

#[tokio::test]
async fn failing_delivery_plugin_follows_the_retry_policy() {
    let server = TestServer::start().await;
    let mut receiver = TestReceiver::start().await;
    let client = &server.client;
    upload(client, "trap", std::fs::read(plugin_wasm("trap")).unwrap()).await;
    client.create_topic("t").await;
    let (sub, _) = client
        .subscribe(
            "t",
            &receiver.url,
            json!({"plugins": [{"name": "trap"}], "retry": {"max_attempts": 2, "min_backoff_ms": 10}}),
        )
        .await;
    client.publish("t", "x", None).await;
    let dlq = client
        .wait_for(&format!("/v1/subscriptions/{sub}/dlq"), WAIT, |v| {
            v["items"].as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
    assert_eq!(dlq["items"][0]["attempts"], 2);
    let error = dlq["items"][0]["last_error"].as_str().unwrap();
    assert!(
        error.contains("trap@1") && error.contains("trapped"),
        "{error}"
    );
    receiver.assert_quiet(Duration::from_millis(200)).await;
}
