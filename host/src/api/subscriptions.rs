//! `/v1/topics/{topic}/subscriptions` and `/v1/subscriptions/{id}`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::{AppState, Json, ListResponse, PageQuery, Query};
use crate::deliveries;
use crate::error::{ApiError, ApiResult};
use crate::metadata::endpoint::validate_endpoint;
use crate::metadata::model::{DEFAULT_TIMEOUT_MS, validate_timeout};
use crate::metadata::{
    PluginAttachment, Protocol, RetryPolicy, Subscription, SubscriptionView, new_subscription_id,
};
use crate::plugins::chain::Owner;
use crate::signing;
use crate::time::now_ms;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscription {
    pub endpoint: Option<String>,
    #[serde(default)]
    pub protocol: Protocol,
    pub secret: Option<String>,
    #[serde(default)]
    pub retry: RetryPolicy,
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub envelope: bool,
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub plugins: Vec<PluginAttachment>,
}

/// The create response: the only time the secret is shown.
#[derive(Serialize)]
pub struct CreatedSubscription {
    #[serde(flatten)]
    pub subscription: SubscriptionView,
    pub secret: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateSubscription {
    pub endpoint: Option<String>,
    pub retry: Option<RetryPolicy>,
    pub timeout_ms: Option<u64>,
    pub envelope: Option<bool>,
    pub paused: Option<bool>,
    pub plugins: Option<Vec<PluginAttachment>>,
}

pub async fn create(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    Json(spec): Json<CreateSubscription>,
) -> ApiResult<(StatusCode, axum::Json<CreatedSubscription>)> {
    state.metadata.require_topic(&topic).await?;
    if spec.protocol == Protocol::Queue {
        return Err(ApiError::bad_request(
            "unsupported",
            "pull-queue subscriptions are not available yet",
        ));
    }
    let Some(endpoint) = spec.endpoint else {
        return Err(ApiError::bad_request(
            "invalid_endpoint",
            "an http subscription needs an endpoint URL",
        ));
    };
    let endpoint = validate_endpoint(&endpoint, state.config.security.allow_private_endpoints)?;
    let secret = match spec.secret {
        Some(secret) => {
            signing::secret_key(&secret)?;
            secret
        }
        None => signing::generate_secret(),
    };
    spec.retry.validate()?;
    state
        .plugins
        .validate_attachments(Owner::Subscription, &spec.plugins)
        .await?;
    let timeout_ms = spec.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    validate_timeout(timeout_ms)?;
    let sub = Subscription {
        id: new_subscription_id(),
        topic,
        protocol: spec.protocol,
        endpoint: endpoint.to_string(),
        secret,
        retry: spec.retry,
        timeout_ms,
        envelope: spec.envelope,
        paused: spec.paused,
        created_at_ms: now_ms(),
        plugins: spec.plugins,
    };
    let sub = state.metadata.create_subscription(sub).await?;
    tracing::info!(sub = %sub.id, topic = %sub.topic, "subscription created");
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedSubscription {
            subscription: SubscriptionView::from(&sub),
            secret: sub.secret.clone(),
        }),
    ))
}

pub async fn list(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    Query(page): Query<PageQuery>,
) -> ApiResult<axum::Json<ListResponse<SubscriptionView>>> {
    state.metadata.require_topic(&topic).await?;
    let page = state
        .metadata
        .list_subscriptions(&topic, page.cursor.as_deref(), page.limit()?)
        .await?;
    Ok(axum::Json(ListResponse {
        items: page
            .items
            .iter()
            .map(|s| SubscriptionView::from(s.as_ref()))
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

pub async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<SubscriptionView>> {
    let sub = state.metadata.require_subscription(&id).await?;
    Ok(axum::Json(SubscriptionView::from(sub.as_ref())))
}

/// Changes fields; `{"paused": true}` pauses and `{"paused": false}` resumes.
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(patch): Json<UpdateSubscription>,
) -> ApiResult<axum::Json<SubscriptionView>> {
    let endpoint = match &patch.endpoint {
        Some(raw) => {
            Some(validate_endpoint(raw, state.config.security.allow_private_endpoints)?.to_string())
        }
        None => None,
    };
    if let Some(retry) = &patch.retry {
        retry.validate()?;
    }
    if let Some(timeout_ms) = patch.timeout_ms {
        validate_timeout(timeout_ms)?;
    }
    if let Some(plugins) = &patch.plugins {
        state
            .plugins
            .validate_attachments(Owner::Subscription, plugins)
            .await?;
    }
    let (retry, timeout_ms, envelope, paused, plugins) = (
        patch.retry,
        patch.timeout_ms,
        patch.envelope,
        patch.paused,
        patch.plugins,
    );
    let sub = state
        .metadata
        .update_subscription(&id, move |sub| {
            if let Some(endpoint) = &endpoint {
                sub.endpoint = endpoint.clone();
            }
            if let Some(retry) = &retry {
                sub.retry = retry.clone();
            }
            if let Some(timeout_ms) = timeout_ms {
                sub.timeout_ms = timeout_ms;
            }
            if let Some(envelope) = envelope {
                sub.envelope = envelope;
            }
            if let Some(paused) = paused {
                sub.paused = paused;
            }
            if let Some(plugins) = &plugins {
                sub.plugins = plugins.clone();
            }
            Ok(())
        })
        .await?;
    if !sub.paused {
        // Resuming, or a no-op: anything parked goes back to the due index.
        let moved = deliveries::unpark_all(state.kv.as_ref(), &state.keys, &sub.id).await?;
        if moved > 0 {
            state.wakers.deliveries.notify_one();
        }
    }
    Ok(axum::Json(SubscriptionView::from(&sub)))
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if state.metadata.delete_subscription(&id).await? {
        state.wakers.deliveries.notify_one();
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "subscription {id} does not exist"
        )))
    }
}
