//! `/v1/plugins`: upload, list, get and delete WebAssembly plugins.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;

use super::{AppState, ListResponse, PageQuery, Query};
use crate::error::{ApiError, ApiResult};
use crate::plugins::PluginKind;
use crate::plugins::registry::{PluginRecord, PluginVersion};

#[derive(Serialize)]
pub struct UploadResponse {
    pub name: String,
    pub kind: PluginKind,
    pub version: u32,
    /// `sha256:` and the hex digest of the component.
    pub digest: String,
    pub size: usize,
}

#[derive(Serialize)]
pub struct PluginView {
    pub name: String,
    pub kind: PluginKind,
    pub latest_version: Option<u32>,
    pub versions: Vec<VersionView>,
    pub created_at_ms: u64,
}

/// A version as the API shows it: the digest in the same `sha256:…` form
/// that the upload answered with.
#[derive(Serialize)]
pub struct VersionView {
    pub version: u32,
    pub digest: String,
    pub size: usize,
    pub uploaded_at_ms: u64,
}

fn digest_label(hex: &str) -> String {
    format!("sha256:{hex}")
}

impl From<&PluginVersion> for VersionView {
    fn from(version: &PluginVersion) -> Self {
        VersionView {
            version: version.version,
            digest: digest_label(&version.digest),
            size: version.size,
            uploaded_at_ms: version.uploaded_at_ms,
        }
    }
}

impl From<&PluginRecord> for PluginView {
    fn from(record: &PluginRecord) -> Self {
        PluginView {
            name: record.name.clone(),
            kind: record.kind,
            latest_version: record.latest().map(|v| v.version),
            versions: record.versions.iter().map(VersionView::from).collect(),
            created_at_ms: record.created_at_ms,
        }
    }
}

/// The body is the `.wasm` component itself.
pub async fn upload(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult<(StatusCode, axum::Json<UploadResponse>)> {
    let max = state.config.plugins.max_upload_bytes;
    let bytes = axum::body::to_bytes(body, max).await.map_err(|_| {
        ApiError::PayloadTooLarge(format!("plugin is over the {max} byte upload limit"))
    })?;
    let uploaded = state.plugins.registry.upload(&name, bytes.to_vec()).await?;
    tracing::info!(
        plugin = %name,
        version = uploaded.version.version,
        kind = uploaded.record.kind.as_str(),
        "plugin uploaded"
    );
    let status = if uploaded.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        axum::Json(UploadResponse {
            name,
            kind: uploaded.record.kind,
            version: uploaded.version.version,
            digest: digest_label(&uploaded.version.digest),
            size: uploaded.version.size,
        }),
    ))
}

pub async fn list(
    State(state): State<AppState>,
    Query(page): Query<PageQuery>,
) -> ApiResult<axum::Json<ListResponse<PluginView>>> {
    let (items, next_cursor) = state
        .plugins
        .registry
        .list(page.cursor.as_deref(), page.limit()?)
        .await?;
    Ok(axum::Json(ListResponse {
        items: items.iter().map(PluginView::from).collect(),
        next_cursor,
    }))
}

pub async fn get_one(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<PluginView>> {
    let record = state.plugins.registry.require(&name).await?;
    Ok(axum::Json(PluginView::from(record.as_ref())))
}

pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    state.plugins.registry.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
