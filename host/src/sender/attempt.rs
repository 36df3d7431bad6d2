//! One delivery attempt: build the signed request, send it, and decide what
//! the outcome means under the subscription's retry policy.

use std::time::Duration;

use base64::Engine;
use rand::Rng;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use serde_json::json;

use crate::deliveries::{DeliveryState, Transition};
use crate::messages::{Message, format_id};
use crate::metadata::Subscription;
use crate::metadata::model::ClientErrorPolicy;
use crate::signing;

/// The request before signing, in the shape delivery plugins see.
pub use crate::plugins::bindings::OutgoingRequest;

/// The default request for a delivery: the body byte for byte (or the
/// envelope), its content type, and Herald's headers. Unsigned: the
/// signature is added last, over whatever body finally goes out.
pub fn build_request(sub: &Subscription, message: &Message, attempt: u32) -> OutgoingRequest {
    let (body, content_type) = if sub.envelope {
        (envelope(message), Some("application/json".to_string()))
    } else {
        (message.body.clone(), message.header.content_type.clone())
    };
    let mut headers = vec![
        ("herald-topic".to_string(), message.header.topic.clone()),
        ("herald-subscription".to_string(), sub.id.clone()),
        ("herald-attempt".to_string(), attempt.to_string()),
    ];
    if !sub.envelope {
        for (name, value) in &message.header.attributes {
            headers.push((format!("herald-attr-{name}"), value.clone()));
        }
    }
    if let Some(content_type) = content_type {
        headers.push((CONTENT_TYPE.as_str().to_string(), content_type));
    }
    OutgoingRequest {
        method: "POST".into(),
        url: sub.endpoint.clone(),
        headers,
        body: body.to_vec(),
    }
}

/// Adds the Standard Webhooks headers over the final body.
pub fn sign(request: &mut OutgoingRequest, secret: &str, id: &str, now_s: i64) {
    let key = signing::secret_key(secret).unwrap_or_default();
    let signature = signing::sign(&key, id, now_s, &request.body);
    request
        .headers
        .retain(|(name, _)| !name.eq_ignore_ascii_case("webhook-signature"));
    request.headers.push(("webhook-id".into(), id.to_string()));
    request
        .headers
        .push(("webhook-timestamp".into(), now_s.to_string()));
    request
        .headers
        .push(("webhook-signature".into(), signature));
}

fn header_map(headers: &[(String, String)]) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name {name:?}"))?;
        let value =
            HeaderValue::from_str(value).map_err(|_| format!("invalid value for header {name}"))?;
        map.insert(name, value);
    }
    Ok(map)
}

/// The JSON envelope: the body as a string when it is UTF-8, else base64.
fn envelope(message: &Message) -> bytes::Bytes {
    let header = &message.header;
    let mut value = json!({
        "id": format_id(header.id),
        "topic": header.topic,
        "timestamp_ms": header.published_at_ms,
        "attributes": header.attributes,
        "content_type": header.content_type,
    });
    match std::str::from_utf8(&message.body) {
        Ok(text) => value["body"] = json!(text),
        Err(_) => {
            value["body_base64"] =
                json!(base64::engine::general_purpose::STANDARD.encode(&message.body))
        }
    }
    bytes::Bytes::from(serde_json::to_vec(&value).expect("JSON values serialize"))
}

/// What the endpoint did with the attempt.
#[derive(Debug)]
pub enum AttemptOutcome {
    Delivered,
    /// Worth retrying: 408, 429, 5xx, timeout, connection or TLS error.
    Transient {
        error: String,
        retry_after: Option<Duration>,
    },
    /// Any other 4xx (or 3xx): the retry policy decides.
    Rejected {
        error: String,
    },
}

pub async fn send(
    client: &reqwest::Client,
    request: OutgoingRequest,
    timeout: Duration,
) -> AttemptOutcome {
    let shaped = reqwest::Method::from_bytes(request.method.as_bytes())
        .map_err(|_| format!("invalid method {:?}", request.method))
        .and_then(|method| Ok((method, header_map(&request.headers)?)));
    let (method, headers) = match shaped {
        Ok(shaped) => shaped,
        Err(error) => {
            return AttemptOutcome::Rejected {
                error: format!("request shape: {error}"),
            };
        }
    };
    let result = client
        .request(method, &request.url)
        .headers(headers)
        .body(request.body)
        .timeout(timeout)
        .send()
        .await;
    let response = match result {
        Ok(response) => response,
        Err(err) => {
            let kind = if err.is_timeout() {
                "timeout"
            } else if err.is_connect() {
                "connection error"
            } else {
                "request error"
            };
            return AttemptOutcome::Transient {
                error: format!("{kind}: {}", error_chain(&err)),
                retry_after: None,
            };
        }
    };
    let status = response.status();
    if status.is_success() {
        return AttemptOutcome::Delivered;
    }
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let error = format!("HTTP {}", status.as_u16());
    if status.as_u16() == 408 || status.as_u16() == 429 || status.is_server_error() {
        AttemptOutcome::Transient { error, retry_after }
    } else {
        AttemptOutcome::Rejected { error }
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    if let Ok(seconds) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value.trim()).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// The exponential delay before retry number `attempts` (1 for the first
/// retry), with jitter over the upper half so retries spread out.
pub fn backoff(policy: &crate::metadata::RetryPolicy, attempts: u32) -> Duration {
    let exponent = attempts.saturating_sub(1).min(40);
    let base = policy
        .min_backoff_ms
        .saturating_mul(1u64 << exponent)
        .min(policy.max_backoff_ms);
    let jittered = rand::rng().random_range(base / 2..=base);
    Duration::from_millis(jittered.max(1))
}

/// Turns an attempt's outcome into the delivery's next transition.
pub fn decide(
    sub: &Subscription,
    mut state: DeliveryState,
    outcome: &AttemptOutcome,
    now_ms: u64,
) -> Transition {
    let (error, retry_after) = match outcome {
        AttemptOutcome::Delivered => return Transition::Finish,
        AttemptOutcome::Transient { error, retry_after } => (error.clone(), *retry_after),
        AttemptOutcome::Rejected { error } => {
            if sub.retry.client_errors == ClientErrorPolicy::DeadLetter {
                state.last_error = Some(error.clone());
                state.lease = None;
                return Transition::DeadLetter { state };
            }
            (error.clone(), None)
        }
    };
    state.last_error = Some(error);
    state.lease = None;
    let delay = match retry_after {
        // Honour the endpoint's wish, within the policy's longest delay.
        Some(wanted) => wanted.min(Duration::from_millis(sub.retry.max_backoff_ms)),
        None => backoff(&sub.retry, state.attempts),
    };
    let due_ms = now_ms + delay.as_millis() as u64;
    let too_old = due_ms.saturating_sub(state.created_ms) > sub.retry.max_age_s * 1000;
    if state.attempts >= sub.retry.max_attempts || too_old {
        Transition::DeadLetter { state }
    } else {
        Transition::Reschedule { due_ms, state }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::RetryPolicy;

    #[test]
    fn backoff_grows_and_caps() {
        let policy = RetryPolicy {
            min_backoff_ms: 100,
            max_backoff_ms: 1000,
            ..RetryPolicy::default()
        };
        for _ in 0..50 {
            let first = backoff(&policy, 1).as_millis();
            assert!((50..=100).contains(&first), "{first}");
            let late = backoff(&policy, 30).as_millis();
            assert!((500..=1000).contains(&late), "{late}");
        }
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT").is_some());
        assert_eq!(parse_retry_after("soon"), None);
    }
}
