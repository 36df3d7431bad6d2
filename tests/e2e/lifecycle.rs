//! Topics and subscriptions through their whole life, restarts, and the
//! operations endpoints.

use std::time::Duration;

use herald_tests::{TestReceiver, TestServer};
use serde_json::json;

#[tokio::test]
async fn topics_are_idempotent_listed_and_deleted() {
    let server = TestServer::start().await;
    let client = &server.client;
    let created = client.call("PUT", "/v1/topics/alpha", None, 201).await;
    assert_eq!(created["name"], "alpha");
    let again = client.call("PUT", "/v1/topics/alpha", None, 200).await;
    assert_eq!(again["created_at_ms"], created["created_at_ms"]);
    for name in ["beta", "gamma", "delta.v1", "e_x-y"] {
        client
            .call("PUT", &format!("/v1/topics/{name}"), None, 201)
            .await;
    }
    // Two pages of 3, in name order.
    let first = client.call("GET", "/v1/topics?limit=3", None, 200).await;
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_string();
    let second = client
        .call(
            "GET",
            &format!("/v1/topics?limit=3&cursor={cursor}"),
            None,
            200,
        )
        .await;
    let names: Vec<String> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["items"].as_array().unwrap())
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["alpha", "beta", "delta.v1", "e_x-y", "gamma"]);
    assert!(second["next_cursor"].is_null());

    client.call("GET", "/v1/topics/beta", None, 200).await;
    client.call("DELETE", "/v1/topics/beta", None, 204).await;
    let gone = client.call("GET", "/v1/topics/beta", None, 404).await;
    assert_eq!(gone["code"], "not_found");
    client.call("DELETE", "/v1/topics/beta", None, 404).await;
}

#[tokio::test]
async fn deleting_a_topic_removes_subscriptions_and_pending_deliveries() {
    let server = TestServer::start().await;
    let mut receiver = TestReceiver::start().await;
    receiver.set_default(500);
    let client = &server.client;
    client.create_topic("doomed").await;
    let (sub, _) = client
        .subscribe(
            "doomed",
            &receiver.url,
            json!({"retry": {"min_backoff_ms": 200, "max_backoff_ms": 200}}),
        )
        .await;
    client.publish("doomed", "pending", None).await;
    receiver.next(Duration::from_secs(5)).await;
    client.call("DELETE", "/v1/topics/doomed", None, 204).await;
    client
        .call("GET", &format!("/v1/subscriptions/{sub}"), None, 404)
        .await;
    // The pending retry is dropped, not delivered.
    receiver.assert_quiet(Duration::from_millis(800)).await;
    // A new topic of the same name starts empty.
    client.create_topic("doomed").await;
    let subs = client
        .call("GET", "/v1/topics/doomed/subscriptions", None, 200)
        .await;
    assert!(subs["items"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn subscriptions_hide_secrets_pause_and_resume() {
    let server = TestServer::start().await;
    let mut receiver = TestReceiver::start().await;
    let client = &server.client;
    client.create_topic("paused").await;
    let created = client
        .call(
            "POST",
            "/v1/topics/paused/subscriptions",
            Some(json!({"endpoint": receiver.url, "timeout_ms": 5000})),
            201,
        )
        .await;
    let id = created["id"].as_str().unwrap();
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    let fetched = client
        .call("GET", &format!("/v1/subscriptions/{id}"), None, 200)
        .await;
    assert!(
        fetched.get("secret").is_none(),
        "secret shown only on create"
    );
    assert_eq!(fetched["timeout_ms"], 5000);
    let listed = client
        .call("GET", "/v1/topics/paused/subscriptions", None, 200)
        .await;
    assert_eq!(listed["items"][0]["id"], id);
    assert!(listed["items"][0].get("secret").is_none());

    let paused = client
        .call(
            "PATCH",
            &format!("/v1/subscriptions/{id}"),
            Some(json!({"paused": true})),
            200,
        )
        .await;
    assert_eq!(paused["paused"], true);
    let msg = client.publish("paused", "held", None).await;
    receiver.assert_quiet(Duration::from_millis(700)).await;
    client
        .call(
            "PATCH",
            &format!("/v1/subscriptions/{id}"),
            Some(json!({"paused": false})),
            200,
        )
        .await;
    let got = receiver.next(Duration::from_secs(5)).await;
    assert_eq!(got.header("webhook-id"), msg);

    client
        .call("DELETE", &format!("/v1/subscriptions/{id}"), None, 204)
        .await;
    client.publish("paused", "nobody", None).await;
    receiver.assert_quiet(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn pending_deliveries_survive_a_restart() {
    // The first node only takes publishes: nothing is delivered before the stop.
    let mut server = TestServer::start_with(|c| c.roles.sender = false).await;
    let mut receiver = TestReceiver::start().await;
    server.client.create_topic("durable").await;
    server
        .client
        .subscribe("durable", &receiver.url, json!({}))
        .await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            server
                .client
                .publish("durable", format!("n{i}"), None)
                .await,
        );
    }
    receiver.assert_quiet(Duration::from_millis(300)).await;

    server.restart_with(|_| {}).await;
    let mut seen = std::collections::HashSet::new();
    while seen.len() < ids.len() {
        seen.insert(
            receiver
                .next(Duration::from_secs(10))
                .await
                .header("webhook-id")
                .to_string(),
        );
    }
    assert!(ids.iter().all(|id| seen.contains(id)));
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let server = TestServer::start().await;
    let mut receiver = TestReceiver::start().await;
    let client = &server.client;
    let health = client.send(client.http.get(client.url("/healthz"))).await;
    assert_eq!(health.status, 200);
    let ready = client.send(client.http.get(client.url("/readyz"))).await;
    assert_eq!(ready.status, 200);

    client.create_topic("counted").await;
    client.subscribe("counted", &receiver.url, json!({})).await;
    client.publish("counted", "1", None).await;
    receiver.next(Duration::from_secs(5)).await;
    // The outcome is recorded just after the 2xx; wait for the counter.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = client
            .send(client.http.get(client.url("/metrics")))
            .await
            .text;
        if metrics.contains("herald_deliveries_total{outcome=\"delivered\"} 1") {
            assert!(metrics.contains("herald_publishes_total 1"), "{metrics}");
            assert!(
                metrics.contains("herald_delivery_latency_seconds_count 1"),
                "{metrics}"
            );
            assert!(metrics.contains("herald_backlog 0"), "{metrics}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "metrics never showed the delivery:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
