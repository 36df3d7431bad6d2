//! Bad input gets a 4xx with a stable code, never a 500, and loses nothing.

use herald_tests::{TestReceiver, TestServer};
use serde_json::json;

#[tokio::test]
async fn every_bad_request_gets_its_code() {
    let server = TestServer::start().await;
    let receiver = TestReceiver::start().await;
    let client = &server.client;
    client.create_topic("good").await;
    let (sub, _) = client.subscribe("good", &receiver.url, json!({})).await;
    let long_name = "x".repeat(257);
    let sub_path = format!("/v1/subscriptions/{sub}");
    let subs = "/v1/topics/good/subscriptions";

    let json_post = |path: &str, body: &str| {
        client
            .http
            .post(client.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
    };
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        (
            "malformed JSON",
            json_post(subs, "{\"endpoint\": "),
            400,
            "invalid_json",
        ),
        (
            "JSON of the wrong shape",
            json_post(subs, "[1,2]"),
            400,
            "invalid_request",
        ),
        (
            "unknown field",
            json_post(subs, r#"{"endpoint":"http://127.0.0.1:1/","colour":1}"#),
            400,
            "invalid_request",
        ),
        (
            "no content type",
            client.http.post(client.url(subs)).body("{}"),
            415,
            "unsupported_media_type",
        ),
        (
            "missing endpoint",
            json_post(subs, "{}"),
            400,
            "invalid_endpoint",
        ),
        (
            "not a URL",
            json_post(subs, r#"{"endpoint":"not a url"}"#),
            400,
            "invalid_endpoint",
        ),
        (
            "ftp URL",
            json_post(subs, r#"{"endpoint":"ftp://example.com/x"}"#),
            400,
            "invalid_endpoint",
        ),
        (
            "bad secret",
            json_post(
                subs,
                r#"{"endpoint":"http://127.0.0.1:1/","secret":"hunter2"}"#,
            ),
            400,
            "invalid_secret",
        ),
        (
            "bad retry",
            json_post(
                subs,
                r#"{"endpoint":"http://127.0.0.1:1/","retry":{"max_attempts":0}}"#,
            ),
            400,
            "invalid_retry_policy",
        ),
        (
            "bad timeout",
            json_post(subs, r#"{"endpoint":"http://127.0.0.1:1/","timeout_ms":1}"#),
            400,
            "invalid_timeout",
        ),
        (
            "subscribe to unknown topic",
            json_post(
                "/v1/topics/nope/subscriptions",
                r#"{"endpoint":"http://127.0.0.1:1/"}"#,
            ),
            404,
            "not_found",
        ),
        (
            "bad topic name",
            client.http.put(client.url("/v1/topics/bad%20name")),
            400,
            "invalid_topic_name",
        ),
        (
            "long topic name",
            client
                .http
                .put(client.url(&format!("/v1/topics/{long_name}"))),
            400,
            "invalid_topic_name",
        ),
        (
            "bad topic body",
            client.http.put(client.url("/v1/topics/t2")).body("{oops"),
            400,
            "invalid_json",
        ),
        (
            "publish to unknown topic",
            client
                .http
                .post(client.url("/v1/topics/nope/messages"))
                .body("x"),
            404,
            "not_found",
        ),
        (
            "oversize body",
            client
                .http
                .post(client.url("/v1/topics/good/messages"))
                .body(vec![0u8; 256 * 1024 + 1]),
            413,
            "payload_too_large",
        ),
        (
            "far oversize body",
            client
                .http
                .post(client.url("/v1/topics/good/messages"))
                .body(vec![0u8; 4 * 1024 * 1024]),
            413,
            "payload_too_large",
        ),
        (
            "too many attributes",
            {
                let mut r = client
                    .http
                    .post(client.url("/v1/topics/good/messages"))
                    .body("x");
                for i in 0..11 {
                    r = r.header(format!("herald-attr-a{i}"), "v");
                }
                r
            },
            400,
            "invalid_attributes",
        ),
        (
            "unknown subscription",
            client.http.get(client.url("/v1/subscriptions/sub_0000")),
            404,
            "not_found",
        ),
        (
            "patch unknown subscription",
            client
                .http
                .patch(client.url("/v1/subscriptions/sub_0000"))
                .json(&json!({"paused": true})),
            404,
            "not_found",
        ),
        (
            "delete unknown subscription",
            client.http.delete(client.url("/v1/subscriptions/sub_0000")),
            404,
            "not_found",
        ),
        (
            "bad patch",
            client
                .http
                .patch(client.url(&sub_path))
                .json(&json!({"endpoint": "gopher://x"})),
            400,
            "invalid_endpoint",
        ),
        (
            "unknown topic",
            client.http.get(client.url("/v1/topics/nope")),
            404,
            "not_found",
        ),
        (
            "bad limit",
            client.http.get(client.url("/v1/topics?limit=0")),
            400,
            "invalid_limit",
        ),
        (
            "non-numeric limit",
            client.http.get(client.url("/v1/topics?limit=many")),
            400,
            "invalid_query",
        ),
        (
            "bad redrive id",
            json_post(&format!("{sub_path}/dlq/redrive"), r#"{"ids":["nope"]}"#),
            400,
            "invalid_id",
        ),
        (
            "bad dlq cursor",
            client
                .http
                .get(client.url(&format!("{sub_path}/dlq?cursor=zzz"))),
            400,
            "invalid_cursor",
        ),
        (
            "unknown route",
            client.http.get(client.url("/v2/everything")),
            404,
            "not_found",
        ),
        (
            "wrong method",
            client.http.patch(client.url("/v1/topics")),
            405,
            "method_not_allowed",
        ),
        (
            "FIFO group on a standard topic",
            client
                .http
                .post(client.url("/v1/topics/good/messages"))
                .header("herald-group-id", "g")
                .body("x"),
            400,
            "unsupported",
        ),
    ];
    for (what, request, status, code) in cases {
        let reply = client.send(request).await;
        assert_eq!(reply.status, status, "{what}: {}", reply.text);
        assert_eq!(reply.json["code"], code, "{what}: {}", reply.text);
        assert!(
            reply.json["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{what}: a readable detail: {}",
            reply.text
        );
    }
    // Nothing stored was lost along the way.
    client.call("GET", "/v1/topics/good", None, 200).await;
    let fetched = client.call("GET", &sub_path, None, 200).await;
    assert_eq!(fetched["endpoint"], receiver.url);
}

#[tokio::test]
async fn private_endpoints_are_refused_outside_dev() {
    let server = TestServer::start_with(|c| {
        c.dev = false;
        c.security.allow_private_endpoints = false;
    })
    .await;
    let client = &server.client;
    client.create_topic("guarded").await;
    let reply = client
        .call(
            "POST",
            "/v1/topics/guarded/subscriptions",
            Some(json!({"endpoint": "http://127.0.0.1:9/hook"})),
            400,
        )
        .await;
    assert_eq!(reply["code"], "endpoint_not_allowed");
}
