//! `POST /v1/topics/{topic}/messages`: the body is the message, byte for byte.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::Serialize;

use super::AppState;
use crate::error::{ApiError, ApiResult};
use crate::messages::{self, MessageHeader, format_id, validate_attributes};
use crate::plugins::chain::{ChainOutcome, apply_to_header, to_plugin_message};
use crate::sender::fanout;
use crate::store::{KvError, KvExt};
use crate::time::now_ms;

const ATTRIBUTE_PREFIX: &str = "herald-attr-";

#[derive(Serialize)]
pub struct Published {
    pub id: String,
    /// Set when a topic filter dropped the message: nothing was stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped_by: Option<String>,
}

fn attributes_from(headers: &HeaderMap) -> ApiResult<BTreeMap<String, String>> {
    let mut attributes = BTreeMap::new();
    for (name, value) in headers {
        let Some(attr) = name.as_str().strip_prefix(ATTRIBUTE_PREFIX) else {
            continue;
        };
        let value = value.to_str().map_err(|_| {
            ApiError::bad_request(
                "invalid_attributes",
                format!("attribute {attr} is not visible ASCII"),
            )
        })?;
        attributes.insert(attr.to_string(), value.to_string());
    }
    validate_attributes(&attributes)?;
    Ok(attributes)
}

pub async fn publish_one(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, axum::Json<Published>)> {
    let max = state.config.limits.max_body_bytes;
    let body = axum::body::to_bytes(body, max).await.map_err(|_| {
        ApiError::PayloadTooLarge(format!("message body is over the {max} byte limit"))
    })?;
    let topic = state.metadata.require_topic(&topic).await?;
    if headers.contains_key("herald-group-id") {
        return Err(ApiError::bad_request(
            "unsupported",
            "herald-group-id needs a FIFO topic, and FIFO topics are not available yet",
        ));
    }
    let content_type = match headers.get(header::CONTENT_TYPE) {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| {
                    ApiError::bad_request(
                        "invalid_content_type",
                        "Content-Type is not visible ASCII",
                    )
                })?
                .to_string(),
        ),
        None => None,
    };
    let attributes = attributes_from(&headers)?;
    let id = state.message_ids.next().await?;
    let mut message = MessageHeader {
        id,
        topic: topic.name.clone(),
        content_type,
        attributes,
        published_at_ms: now_ms(),
        body_len: body.len(),
    };
    let mut body = body;
    if !topic.plugins.is_empty() {
        let seen = to_plugin_message(&message, &body);
        match state.plugins.run_chain(&topic.plugins, seen, max).await {
            Ok(ChainOutcome::Pass(transformed)) => {
                apply_to_header(&mut message, &transformed);
                body = transformed.body.into();
            }
            Ok(ChainOutcome::Dropped { plugin }) => {
                let published = Published {
                    id: format_id(id),
                    dropped_by: Some(plugin),
                };
                return Ok((StatusCode::OK, axum::Json(published)));
            }
            Ok(ChainOutcome::Rejected { plugin, reason }) => {
                return Err(ApiError::Unprocessable {
                    code: "rejected_by_plugin",
                    detail: format!("plugin {plugin} rejected the message: {reason}"),
                });
            }
            // The engine itself failed (the store, a compile task): not the
            // publisher's fault, so a 5xx, with the cause in the log.
            Err(failure) if matches!(failure.error, crate::plugins::PluginError::Engine(_)) => {
                return Err(ApiError::Internal(failure.to_string()));
            }
            Err(failure) => {
                return Err(ApiError::Unprocessable {
                    code: "plugin_failed",
                    detail: failure.to_string(),
                });
            }
        }
    }
    let keys = state.keys.clone();
    state
        .kv
        .run(move |txn| {
            let (keys, message, body) = (keys.clone(), message.clone(), body.clone());
            async move {
                messages::write_message(&txn, &keys, &message, &body)?;
                fanout::enqueue(&txn, &keys, &message.topic, message.id)?;
                Ok::<_, KvError>(())
            }
        })
        .await?;
    state.metrics.publishes.inc();
    state.wakers.fanout.notify_one();
    tracing::debug!(msg = %format_id(id), "published");
    let published = Published {
        id: format_id(id),
        dropped_by: None,
    };
    Ok((StatusCode::ACCEPTED, axum::Json(published)))
}
