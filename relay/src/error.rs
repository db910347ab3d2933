//! Errors and how they become HTTP replies.
//!
//! Every refusal is an [`ApiError`]: a status, a stable machine-readable code and a message for
//! people, sent as [`glowworm_protocol::wire::ErrorBody`]. Database and other internal failures are logged
//! and answered with 500 `internal` (503 `unavailable` when the database is busy, 503
//! `storage_unavailable` when the disk is full or failing), never with their details.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use glowworm_protocol::wire::{ErrorBody, ErrorDetail};
use std::path::PathBuf;

/// A request the relay refused or could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request was wrong; the caller is told why.
    #[error("{status} {code}: {message}")]
    Refused {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    /// Too many requests from one address or with one key ([`crate::http::limits`]); 429.
    #[error("rate limited: {message}")]
    RateLimited {
        message: String,
        retry_after_seconds: u64,
    },
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// The blob store on disk failed (a full disk, say); answered with 503.
    #[error("blob store: {0}")]
    Storage(String),
    /// Anything else that should not happen.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Refused {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 413 `code` for a job upload larger than `max_upload_bytes` (`limit`); `seen` is its size
    /// when known (from Content-Length). Says the limit in MiB and what to do.
    pub fn upload_too_large(limit: usize, seen: Option<u64>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "upload_too_large",
            format!(
                "the upload{} is larger than the relay's limit of {}; split the job into \
                 smaller ones, or ask the relay's operator to raise max_upload_bytes \
                 (GLOWWORM_MAX_UPLOAD_BYTES)",
                seen_size(seen),
                mib(limit as u64)
            ),
        )
    }

    /// 413 `body_too_large` for a request body larger than `max_body_bytes` (`limit`).
    pub fn body_too_large(limit: usize, seen: Option<u64>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "the request body{} is larger than the relay's limit of {}; send less at once \
                 (split the job into smaller ones), or ask the relay's operator to raise \
                 max_body_bytes (GLOWWORM_MAX_BODY_BYTES; job uploads are limited by \
                 max_upload_bytes, GLOWWORM_MAX_UPLOAD_BYTES)",
                seen_size(seen),
                mib(limit as u64)
            ),
        )
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// The status and code this error is answered with.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Refused { status, code, .. } => (*status, code),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Database(e) if is_busy(e) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Database(e) if is_storage_failure(e) => {
                (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
            }
            ApiError::Storage(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable"),
            ApiError::Database(_) | ApiError::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        }
    }
}

/// `bytes` in MiB for people: "256 MiB", or "0.01 MiB (10000 bytes)" when not a whole number.
pub fn mib(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    if bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{:.2} MiB ({bytes} bytes)", bytes as f64 / MIB as f64)
    }
}

fn seen_size(seen: Option<u64>) -> String {
    seen.map(|bytes| format!(" ({})", mib(bytes)))
        .unwrap_or_default()
}

/// Whether SQLite refused because another connection holds a lock.
fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Whether SQLite could not write its files: a full disk, an I/O error, a read-only file.
fn is_storage_failure(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(
            rusqlite::ErrorCode::DiskFull
                | rusqlite::ErrorCode::SystemIoFailure
                | rusqlite::ErrorCode::ReadOnly
                | rusqlite::ErrorCode::CannotOpen
        )
    )
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            ApiError::Refused { message, .. } | ApiError::RateLimited { message, .. } => {
                message.clone()
            }
            _ if code == "storage_unavailable" => {
                tracing::error!("{self}");
                "the relay cannot write its storage (is the disk full?); nothing was lost, try \
                 again later"
                    .to_string()
            }
            _ if status == StatusCode::SERVICE_UNAVAILABLE => {
                tracing::warn!("{self}");
                "the relay is busy; try again shortly".to_string()
            }
            _ => {
                tracing::error!("{self}");
                "the relay hit an internal error; it has been logged".to_string()
            }
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message,
            },
        };
        let retry_after = match &self {
            ApiError::RateLimited {
                retry_after_seconds,
                ..
            } => Some(*retry_after_seconds),
            _ if status == StatusCode::SERVICE_UNAVAILABLE
                || status == StatusCode::TOO_MANY_REQUESTS =>
            {
                Some(1)
            }
            _ => None,
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

/// Why [`crate::AppState::open`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open database {path}: {source}")]
    Database {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot start a database thread: {0}")]
    Thread(String),
    #[error("the relay key file {path}: {message}")]
    RelayKey { path: PathBuf, message: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Why the settings could not be loaded, naming the layer and setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    ParseFile { path: PathBuf, message: String },
    #[error("environment variable {name}={value:?}: {message}")]
    BadEnv {
        name: String,
        value: String,
        message: String,
    },
    #[error("invalid setting: {0}")]
    Invalid(String),
}
