//! The REST API (v1): routing, shared state, and the extractors that turn
//! bad input into `{code, detail}` errors instead of axum's plain text.

mod dlq;
mod ops;
mod plugins;
mod publish;
mod subscriptions;
mod topics;

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::ApiError;
use crate::metadata::Metadata;
use crate::metrics::Metrics;
use crate::plugins::chain::PluginHost;
use crate::sender::Wakers;
use crate::store::Kv;
use crate::store::ids::IdAllocator;
use crate::store::keys::Keys;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub kv: Arc<dyn Kv>,
    pub keys: Keys,
    pub metadata: Metadata,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub wakers: Arc<Wakers>,
    pub message_ids: Arc<IdAllocator>,
    pub plugins: PluginHost,
}

pub fn router(state: AppState) -> Router {
    let max_body = state.config.limits.max_body_bytes;
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/v1/topics", get(topics::list))
        .route(
            "/v1/topics/{topic}",
            get(topics::get_one).put(topics::put).delete(topics::delete),
        )
        .route("/v1/topics/{topic}/messages", post(publish::publish_one))
        .route(
            "/v1/topics/{topic}/subscriptions",
            post(subscriptions::create).get(subscriptions::list),
        )
        .route(
            "/v1/subscriptions/{id}",
            get(subscriptions::get_one)
                .patch(subscriptions::update)
                .delete(subscriptions::delete),
        )
        .route("/v1/subscriptions/{id}/dlq", get(dlq::list).delete(dlq::purge))
        .route("/v1/subscriptions/{id}/dlq/redrive", post(dlq::redrive))
        .route("/v1/plugins", get(plugins::list))
        .route(
            "/v1/plugins/{name}",
            get(plugins::get_one).put(plugins::upload).delete(plugins::delete),
        )
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        // Publish reads its body with its own limit; this caps everything
        // else a little above it so no handler buffers unbounded input.
        .layer(axum::extract::DefaultBodyLimit::max(max_body + 64 * 1024))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(ops::panic_response))
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(|req: &Request| {
                tracing::info_span!("request", method = %req.method(), path = %req.uri().path())
            }),
        )
        .with_state(state)
}

/// `Json<T>` whose rejections are API errors.
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::UnsupportedMediaType("expected Content-Type: application/json".into())
        }
        JsonRejection::JsonDataError(err) => ApiError::bad_request(
            "invalid_request",
            std::error::Error::source(&err).map_or_else(|| err.body_text(), |s| s.to_string()),
        ),
        JsonRejection::JsonSyntaxError(err) => ApiError::bad_request(
            "invalid_json",
            std::error::Error::source(&err).map_or_else(|| err.body_text(), |s| s.to_string()),
        ),
        JsonRejection::BytesRejection(_) => {
            ApiError::PayloadTooLarge("request body is too large".into())
        }
        other => ApiError::bad_request("invalid_request", other.body_text()),
    }
}

/// `?limit=&cursor=`, as every list takes.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn limit(&self) -> Result<usize, ApiError> {
        match self.limit {
            None => Ok(100),
            Some(n) if (1..=1000).contains(&n) => Ok(n),
            Some(_) => Err(ApiError::bad_request(
                "invalid_limit",
                "limit must be between 1 and 1000",
            )),
        }
    }
}

/// `{"items": [...], "next_cursor": ...}`.
#[derive(Serialize)]
pub struct ListResponse<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Query strings whose parse errors are API errors.
pub struct Query<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|err| ApiError::bad_request("invalid_query", err.body_text()))
    }
}
