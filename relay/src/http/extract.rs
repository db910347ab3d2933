//! Request extractors whose rejections are JSON [`ApiError`]s, like every other refusal.
//!
//! axum's own `Json`, `Path` and `Query` answer bad input with plain text; [`ApiJson`],
//! [`ApiPath`] and [`ApiQuery`] wrap them and turn their rejections into
//! `{"error": {"code", "message"}}`.
//!
//! The extractors that read the relay's own state live here too: where a request comes from
//! ([`ClientNetwork`]), who asks for a sign-in nonce ([`nonces::Requester`]: the client's
//! address bucket) and which requester an API key names ([`Authenticated`], [`of_request`]).

use crate::accounts::nonces;
use crate::accounts::requesters::{self, Authenticated, Requester};
use crate::error::ApiError;
use crate::http::network::{ClientNetwork, client_ip, network_of};
use crate::http::state::AppState;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRef, FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use std::convert::Infallible;

/// A JSON request body of type `T`.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let seen = content_length(req.headers());
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            // The settings are looked up only for a refusal, not on every request.
            Err(rejection) => {
                let limit = AppState::from_ref(state).config.max_body_bytes;
                Err(json_rejection(rejection, limit, seen))
            }
        }
    }
}

/// The request's Content-Length, when it sends one.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn json_rejection(rejection: JsonRejection, limit: usize, seen: Option<u64>) -> ApiError {
    let message = rejection.body_text();
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the request body must be JSON, with Content-Type: application/json",
        ),
        _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::body_too_large(limit, seen)
        }
        _ => ApiError::bad_request("malformed_request", message),
    }
}

/// Path parameters of type `T`.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(rejection: PathRejection) -> ApiError {
    if rejection.status().is_server_error() {
        ApiError::Internal(rejection.body_text())
    } else {
        ApiError::bad_request("bad_path", rejection.body_text())
    }
}

/// Query-string parameters of type `T`.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(ApiError::bad_request("bad_query", rejection.body_text())),
        }
    }
}

impl FromRequestParts<AppState> for nonces::Requester {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        let ip = client_ip(&state.config, &parts.headers, &parts.extensions);
        Ok(nonces::Requester(ip.map(nonces::requester_of)))
    }
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match of_request(state, &parts.headers).await? {
            Some(requester) => Ok(Authenticated(requester)),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing_api_key",
                "requester endpoints need an API key: send 'Authorization: Bearer gw_...' \
                 (the relay's operator creates keys with 'glowworm-relay keys create')",
            )),
        }
    }
}

/// The requester whose key the request carries, `None` when it carries none; a key that is
/// malformed, unknown or revoked is refused.
pub async fn of_request(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Requester>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .and_then(|text| text.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|key| key.starts_with(requesters::KEY_PREFIX) && key.len() <= 128)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "bad_api_key",
                "the Authorization header must be 'Bearer gw_...' with a relay API key",
            )
        })?
        .to_string();
    let requester = state
        .db
        .read(move |conn| requesters::authenticate(conn, &key))
        .await?;
    state
        .limits
        .check_key(&format!("requester:{}", requester.id))?;
    Ok(Some(requester))
}

impl FromRequestParts<AppState> for ClientNetwork {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        let address = client_ip(&state.config, &parts.headers, &parts.extensions);
        let local_only = state.config.listen.ip().is_loopback();
        let network = address.and_then(|ip| network_of(ip, local_only));
        let source = network
            .clone()
            .or_else(|| address.map(|ip| format!("{ip}/{}", if ip.is_ipv4() { 32 } else { 128 })));
        Ok(ClientNetwork { network, source })
    }
}
