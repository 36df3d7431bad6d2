//! Topic and subscription records as stored, and the rules their fields obey.

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Topic {
    pub name: String,
    pub created_at_ms: u64,
    /// Filters and transforms run at publish, in order.
    #[serde(default)]
    pub plugins: Vec<PluginAttachment>,
}

/// A plugin attached to a topic or subscription.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginAttachment {
    pub name: String,
    /// A pinned version; the latest when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// Given to the plugin as JSON through the host `config` import.
    #[serde(default = "empty_config")]
    pub config: serde_json::Value,
    /// Per-call memory cap in bytes, within the server's ceiling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<usize>,
    /// Per-call CPU cap in milliseconds, within the server's ceiling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Cap on the plugin's output in bytes, within the server's ceiling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_bytes: Option<usize>,
}

fn empty_config() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

impl Eq for PluginAttachment {}

/// How a subscription receives messages.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    #[default]
    Http,
    /// Pull queue: reserved for the pull-queue work; refused for now.
    Queue,
}

/// What to do when an endpoint answers with a 4xx other than 408 and 429.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientErrorPolicy {
    /// Retry like a 5xx: a receiver that is misconfigured for a while
    /// (a 401 during a key rotation, a 404 during a deploy) loses nothing.
    #[default]
    Retry,
    /// Dead-letter at once: the receiver said the request itself is wrong.
    DeadLetter,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; then the dead-letter queue.
    pub max_attempts: u32,
    /// Delay before the first retry; it doubles per attempt, with jitter.
    pub min_backoff_ms: u64,
    /// Largest delay between two attempts.
    pub max_backoff_ms: u64,
    /// Longest a message keeps being retried, from its first attempt.
    pub max_age_s: u64,
    pub client_errors: ClientErrorPolicy,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 15,
            min_backoff_ms: 1000,
            max_backoff_ms: 3_600_000,
            max_age_s: 86_400,
            client_errors: ClientErrorPolicy::Retry,
        }
    }
}

impl RetryPolicy {
    pub fn validate(&self) -> Result<(), ApiError> {
        let bad = |detail: &str| Err(ApiError::bad_request("invalid_retry_policy", detail));
        if !(1..=100).contains(&self.max_attempts) {
            return bad("retry.max_attempts must be between 1 and 100");
        }
        if !(10..=86_400_000).contains(&self.min_backoff_ms) {
            return bad("retry.min_backoff_ms must be between 10 and 86400000");
        }
        if self.max_backoff_ms < self.min_backoff_ms || self.max_backoff_ms > 86_400_000 {
            return bad(
                "retry.max_backoff_ms must be at least min_backoff_ms and at most 86400000",
            );
        }
        if !(1..=14 * 86_400).contains(&self.max_age_s) {
            return bad("retry.max_age_s must be between 1 and 1209600 (14 days)");
        }
        Ok(())
    }
}

pub const DEFAULT_TIMEOUT_MS: u64 = 15_000;
pub const MAX_TIMEOUT_MS: u64 = 120_000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Subscription {
    pub id: String,
    pub topic: String,
    pub protocol: Protocol,
    pub endpoint: String,
    /// `whsec_` plus base64 key bytes. Never logged, never listed.
    pub secret: String,
    pub retry: RetryPolicy,
    pub timeout_ms: u64,
    /// Wrap the body in a JSON envelope instead of sending it raw.
    pub envelope: bool,
    pub paused: bool,
    pub created_at_ms: u64,
    /// Filters, transforms and at most one delivery plugin, run before sending.
    #[serde(default)]
    pub plugins: Vec<PluginAttachment>,
}

/// A subscription as the API shows it: everything but the secret.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionView {
    pub id: String,
    pub topic: String,
    pub protocol: Protocol,
    pub endpoint: String,
    pub retry: RetryPolicy,
    pub timeout_ms: u64,
    pub envelope: bool,
    pub paused: bool,
    pub created_at_ms: u64,
    pub plugins: Vec<PluginAttachment>,
}

impl From<&Subscription> for SubscriptionView {
    fn from(sub: &Subscription) -> Self {
        SubscriptionView {
            id: sub.id.clone(),
            topic: sub.topic.clone(),
            protocol: sub.protocol,
            endpoint: sub.endpoint.clone(),
            retry: sub.retry.clone(),
            timeout_ms: sub.timeout_ms,
            envelope: sub.envelope,
            paused: sub.paused,
            created_at_ms: sub.created_at_ms,
            plugins: sub.plugins.clone(),
        }
    }
}

/// Topic names: 1–256 characters of `A–Z a–z 0–9 - _ .`.
pub fn validate_topic_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_topic_name",
            "topic names are 1-256 characters of A-Z a-z 0-9 - _ .",
        ))
    }
}

pub fn validate_timeout(timeout_ms: u64) -> Result<(), ApiError> {
    if (100..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_timeout",
            format!("timeout_ms must be between 100 and {MAX_TIMEOUT_MS}"),
        ))
    }
}
