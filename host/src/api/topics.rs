//! `/v1/topics`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use bytes::Bytes;
use serde::Deserialize;

use super::{AppState, ListResponse, PageQuery, Query};
use crate::error::{ApiError, ApiResult};
use crate::metadata::{PluginAttachment, Topic};
use crate::plugins::chain::Owner;

/// The body of `PUT /v1/topics/{topic}`; it may be empty.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    /// FIFO ordering per group id: reserved, refused until FIFO topics exist.
    #[serde(default)]
    pub fifo: bool,
    /// Filters and transforms run at publish, in order; absent keeps the
    /// current chain, `[]` clears it.
    pub plugins: Option<Vec<PluginAttachment>>,
}

pub async fn put(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let spec: TopicSpec = if body.iter().all(u8::is_ascii_whitespace) {
        TopicSpec::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|err| ApiError::bad_request("invalid_json", err.to_string()))?
    };
    if spec.fifo {
        return Err(ApiError::bad_request(
            "unsupported",
            "FIFO topics are not available yet",
        ));
    }
    if let Some(plugins) = &spec.plugins {
        state
            .plugins
            .validate_attachments(Owner::Topic, plugins)
            .await?;
    }
    let (topic, created) = state.metadata.put_topic(&topic, spec.plugins).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(topic)))
}

pub async fn get_one(
    State(state): State<AppState>,
    Path(topic): Path<String>,
) -> ApiResult<axum::Json<Topic>> {
    let topic = state.metadata.require_topic(&topic).await?;
    Ok(axum::Json((*topic).clone()))
}

pub async fn list(
    State(state): State<AppState>,
    Query(page): Query<PageQuery>,
) -> ApiResult<axum::Json<ListResponse<Topic>>> {
    let page = state
        .metadata
        .list_topics(page.cursor.as_deref(), page.limit()?)
        .await?;
    Ok(axum::Json(ListResponse {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

pub async fn delete(
    State(state): State<AppState>,
    Path(topic): Path<String>,
) -> ApiResult<StatusCode> {
    if state.metadata.delete_topic(&topic).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("topic {topic} does not exist")))
    }
}
