//! Middleware every request passes: the per-address rate limit ([`per_address`], before
//! anything else of the request is read) and the deadline for serving it ([`deadline`]).

use crate::error::ApiError;
use crate::http::network::client_ip;
use crate::http::state::AppState;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// Middleware: the per-address limit, before anything else of the request is read.
pub async fn per_address(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(address) = client_ip(&state.config, request.headers(), request.extensions())
        && let Err(refused) = state.limits.check_address(address)
    {
        return refused.into_response();
    }
    next.run(request).await
}

/// Middleware: 408 `request_timeout` when the request is not served in time.
pub async fn deadline(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let upload = request.method() == Method::POST && request.uri().path() == "/v1/jobs";
    let seconds = if upload {
        state.config.upload_timeout_seconds
    } else {
        state.config.request_timeout_seconds
    };
    match tokio::time::timeout(Duration::from_secs(seconds), next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the request was not received and served within {seconds} s"),
        )
        .into_response(),
    }
}
