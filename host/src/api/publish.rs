//! `POST /v1/topics/{topic}/messages`: the body is the message, byte for byte.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::Serialize;

use super::AppState;
use crate::error::{ApiError, ApiResult};
use crate::messages::{self, MessageHeader, format_id, validate_attributes};
use crate::sender::fanout;
use crate::store::{KvError, KvExt};
use crate::time::now_ms;

const ATTRIBUTE_PREFIX: &str = "herald-attr-";

#[derive(Serialize)]
pub struct Published {
    pub id: String,
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
    let message = MessageHeader {
        id,
        topic: topic.name.clone(),
        content_type,
        attributes,
        published_at_ms: now_ms(),
        body_len: body.len(),
    };
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
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(Published { id: format_id(id) }),
    ))
}
