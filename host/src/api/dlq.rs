//! `/v1/subscriptions/{id}/dlq`: list, redrive and purge dead letters.

use axum::extract::{Path, State};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{AppState, ListResponse, PageQuery, Query};
use crate::deliveries;
use crate::error::{ApiError, ApiResult};
use crate::messages::{format_id, parse_id};

#[derive(Serialize)]
pub struct DeadLetterView {
    pub id: String,
    pub topic: String,
    pub content_type: Option<String>,
    pub attributes: std::collections::BTreeMap<String, String>,
    pub published_at_ms: u64,
    pub body_len: usize,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub dead_at_ms: u64,
}

pub async fn list(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(page): Query<PageQuery>,
) -> ApiResult<axum::Json<ListResponse<DeadLetterView>>> {
    state.metadata.require_subscription(&id).await?;
    let limit = page.limit()?;
    let after = match page.cursor.as_deref() {
        Some(cursor) => Some(parse_id(cursor).ok_or_else(|| {
            ApiError::bad_request("invalid_cursor", "cursor is not one this list returned")
        })?),
        None => None,
    };
    let letters = deliveries::list_dlq(state.kv.as_ref(), &state.keys, &id, after, limit).await?;
    let next_cursor = (letters.len() == limit)
        .then(|| letters.last().map(|l| format_id(l.header.id)))
        .flatten();
    let items = letters
        .into_iter()
        .map(|l| DeadLetterView {
            id: format_id(l.header.id),
            topic: l.header.topic,
            content_type: l.header.content_type,
            attributes: l.header.attributes,
            published_at_ms: l.header.published_at_ms,
            body_len: l.header.body_len,
            attempts: l.attempts,
            last_error: l.last_error,
            dead_at_ms: l.dead_at_ms,
        })
        .collect();
    Ok(axum::Json(ListResponse { items, next_cursor }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedriveRequest {
    /// Message ids to redrive; absent means all.
    pub ids: Option<Vec<String>>,
}

#[derive(Serialize)]
pub struct CountResponse {
    pub count: usize,
}

pub async fn redrive(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<axum::Json<CountResponse>> {
    state.metadata.require_subscription(&id).await?;
    let request: RedriveRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RedriveRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|err| ApiError::bad_request("invalid_json", err.to_string()))?
    };
    let ids = match request.ids {
        Some(ids) => {
            if ids.len() > 1000 {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    "at most 1000 ids per redrive",
                ));
            }
            let parsed = ids
                .iter()
                .map(|text| {
                    parse_id(text).ok_or_else(|| {
                        ApiError::bad_request("invalid_id", format!("{text:?} is not a message id"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Some(parsed)
        }
        None => None,
    };
    let count = deliveries::redrive(state.kv.as_ref(), &state.keys, &id, ids).await?;
    if count > 0 {
        state.wakers.deliveries.notify_one();
    }
    Ok(axum::Json(CountResponse { count }))
}

pub async fn purge(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<CountResponse>> {
    state.metadata.require_subscription(&id).await?;
    let count = deliveries::purge_dlq(state.kv.as_ref(), &state.keys, &id).await?;
    Ok(axum::Json(CountResponse { count }))
}
