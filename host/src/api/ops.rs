//! Operations endpoints and the fallbacks that keep every error `{code, detail}`.

use std::any::Any;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::deliveries::BACKLOG;
use crate::error::ApiError;
use crate::store::{KvError, KvExt, decode_counter};

pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the store answers.
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.kv.health().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({
                    "code": "store_unavailable",
                    "detail": format!("the {} store is not answering", state.kv.name()),
                })),
            )
                .into_response()
        }
    }
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let (begin, end) = state.keys.counters(BACKLOG);
    let backlog = state
        .kv
        .run(move |txn| {
            let (begin, end) = (begin.clone(), end.clone());
            async move {
                let rows = txn.get_range(&begin, &end, 0, false, true).await?;
                Ok::<_, KvError>(
                    rows.iter()
                        .map(|(_, v)| decode_counter(Some(v)))
                        .sum::<i64>(),
                )
            }
        })
        .await;
    if let Ok(backlog) = backlog {
        state.metrics.backlog.set(backlog);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed("method not allowed on this route".into())
}

pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    ApiError::Internal(format!("handler panicked: {detail}")).into_response()
}
