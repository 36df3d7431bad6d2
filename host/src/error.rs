//! The one API error type: every failure renders as
//! `{"code": "snake_case", "detail": "a sentence"}` with a fitting status.
//!
//! Input errors are the caller's and are not logged as errors. The cause of a
//! 5xx is logged here and hidden from the client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::store::{KvError, TransactError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    #[error("{0}")]
    NotFound(String),
    /// Well-formed, but refused: a plugin rejected it or failed on it.
    #[error("{detail}")]
    Unprocessable { code: &'static str, detail: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("store: {0}")]
    Store(#[from] KvError),
    #[error("internal: {0}")]
    Internal(String),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    detail: String,
}

impl ApiError {
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            detail: detail.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Store(
                KvError::Conflict
                | KvError::TooOld
                | KvError::RetriesExhausted(_)
                | KvError::Unavailable(_),
            ) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } => code,
            ApiError::NotFound(_) => "not_found",
            ApiError::Unprocessable { code, .. } => code,
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Store(
                KvError::Conflict
                | KvError::TooOld
                | KvError::RetriesExhausted(_)
                | KvError::Unavailable(_),
            ) => "store_busy",
            ApiError::Store(_) | ApiError::Internal(_) => "internal",
        }
    }
}

impl TransactError for ApiError {
    fn as_kv(&self) -> Option<&KvError> {
        match self {
            ApiError::Store(err) => Some(err),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
            match status {
                StatusCode::SERVICE_UNAVAILABLE => {
                    "the store is busy; retry the request".to_string()
                }
                _ => "internal error; the cause is in the server log".to_string(),
            }
        } else {
            self.to_string()
        };
        let body = ErrorBody {
            code: self.code(),
            detail,
        };
        (status, axum::Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
