//! The HTTP surface: the router, its middleware and one small handler per endpoint.
//!
//! Handlers only translate between HTTP and the modules that do the work ([`crate::work::leasing`],
//! [`crate::work::results`], [`crate::work::jobs`], ...); database work runs through [`crate::store::Db::call`].

use crate::accounts::statements::{self, Page};
use crate::accounts::{links, nonces, partners};
use crate::config::Config;
use crate::error::ApiError;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::network::ClientNetwork;
use crate::http::state::AppState;
use crate::http::{embedding, job_api, middleware, ops, page, possession};
use crate::ids::{canonical_address, canonical_key};
use crate::telemetry::telemetry;
use crate::work::leasing;
use crate::work::{jobs, results, stats};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any, delete, get, post};
use axum::{Json, Router};
use glowworm_protocol::hash::ContentHash;
use glowworm_protocol::kernels;
use glowworm_protocol::wire::{
    AccountInfo, AdapterClass, ContributorInfo, Health, KernelSource, LeaseRequest, LinkReply,
    LinkRequest, NonceReply, PartnerInfo, ReleaseReason, ReleaseReceipt, ReleaseRequest,
    ResultReceipt, ResultSubmission, Stats,
};
use serde::Deserialize;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

/// The OpenAPI 3.1 document describing every route in [`routes`].
pub const OPENAPI_JSON: &str = include_str!("../../openapi.json");

/// Cache-Control of content-addressed replies: the same hash always names the same bytes.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Every API route: method, path and handler. [`app`] serves exactly these.
fn api_routes() -> Vec<(Method, &'static str, MethodRouter<AppState>)> {
    vec![
        (Method::GET, "/v1/health", get(health)),
        (Method::GET, "/v1/stats", get(get_stats)),
        (
            Method::GET,
            "/v1/contributors/{public_key}",
            get(get_contributor),
        ),
        (Method::POST, "/v1/leases", post(create_lease)),
        (
            Method::POST,
            "/v1/leases/{lease_id}/release",
            post(release_lease),
        ),
        (Method::POST, "/v1/results", post(submit_result)),
        (Method::GET, "/v1/kernels/{hash}", get(get_kernel)),
        (Method::GET, "/v1/blobs/{hash}", get(get_blob)),
        (
            Method::POST,
            "/v1/jobs",
            // The upload's own limit (max_upload_bytes) is enforced as it is read.
            post(job_api::create_job).layer(DefaultBodyLimit::disable()),
        ),
        (Method::GET, "/v1/jobs", get(job_api::list_jobs)),
        (Method::GET, "/v1/budget", get(job_api::get_budget)),
        (Method::GET, "/v1/jobs/{id}", get(job_api::get_job)),
        (Method::DELETE, "/v1/jobs/{id}", delete(job_api::cancel_job)),
        (
            Method::GET,
            "/v1/jobs/{id}/result",
            get(job_api::get_result),
        ),
        (Method::POST, "/v1/auth/nonce", post(create_nonce)),
        (Method::POST, "/v1/auth/link", post(link_wallet)),
        (Method::GET, "/v1/accounts/{address}", get(get_account)),
        (Method::GET, "/v1/partners/{address}", get(get_partner)),
        (Method::GET, "/v1/openapi.json", get(openapi)),
    ]
}

/// The method and path of every API route the relay serves.
pub fn routes() -> Vec<(Method, &'static str)> {
    api_routes()
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect()
}

/// The whole relay as a router: the `/v1` API (CORS, rate limits, deadlines, body limit, JSON
/// errors), the liveness and readiness checks (`/healthz`, `/readyz`, [`ops`]) and the static
/// page ([`page`]: built in, or from `www_dir`) for every other path. Every request is timed
/// for `/metrics`.
pub fn app(state: AppState) -> Router {
    let mut api = Router::new();
    for (_, path, handler) in api_routes() {
        api = api.route(path, handler);
    }
    let api = api
        .route("/v1/{*rest}", any(no_such_route))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::deadline,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::per_address,
        ))
        .layer(cors(&state.config));
    let page = page::router(state.config.www_dir.as_deref());
    let frames = embedding::FrameHeaders::new(&state);
    // The probes are rate limited per address like the API: /readyz reads the database.
    let probes = ops::probes().layer(axum::middleware::from_fn_with_state(
        state.clone(),
        middleware::per_address,
    ));
    api.merge(probes)
        .fallback_service(page)
        .layer(axum::middleware::from_fn(ops::time_requests))
        .layer(axum::middleware::from_fn_with_state(
            frames,
            embedding::frame_headers,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Browsers may call the contributor API from any origin, unless `cors_origins` lists the
/// allowed ones: pages and widgets on other sites contribute through it. The requester API
/// ([`is_requester_path`]) is never open to other origins: a page elsewhere must not use a
/// requester's key that a browser might hold, nor read its jobs.
fn cors(config: &Config) -> CorsLayer {
    let allowed: Vec<HeaderValue> = config
        .cors_origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    let origins = AllowOrigin::predicate(move |origin, request| {
        !is_requester_path(request.uri.path()) && (allowed.is_empty() || allowed.contains(origin))
    });
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::CONTENT_TYPE])
        .expose_headers([header::RETRY_AFTER])
        .max_age(Duration::from_secs(3600))
}

/// Whether a path belongs to the requester API (API key, never cross-origin).
pub fn is_requester_path(path: &str) -> bool {
    path == "/v1/jobs" || path.starts_with("/v1/jobs/") || path == "/v1/budget"
}

async fn no_such_route() -> ApiError {
    ApiError::not_found("no_such_route", "no such API route; see /v1/openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this API route does not accept that method; see /v1/openapi.json",
    )
}

async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

async fn get_stats(State(state): State<AppState>) -> Result<Json<Stats>, ApiError> {
    let now = state.now_ms();
    let mut stats = state.db.read(move |conn| stats::stats(conn, now)).await?;
    stats.relay_key = state.relay_key.public_hex();
    Ok(Json(stats))
}

async fn get_contributor(
    State(state): State<AppState>,
    ApiPath(public_key): ApiPath<String>,
) -> Result<Json<ContributorInfo>, ApiError> {
    let key = canonical_key(&public_key)?;
    let config = state.config.clone();
    let info = state
        .db
        .read(move |conn| statements::contributor(conn, &config, &key))
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "unknown_contributor",
                "this relay knows nothing of this public key: it has earned nothing, sent no \
                 result and linked no address",
            )
        })?;
    Ok(Json(info))
}

/// 200 with a lease, or 204 with `Retry-After: 1` when there is no work. A partner widget's
/// attribution is checked before anything is written, and recorded with the lease.
async fn create_lease(
    State(state): State<AppState>,
    ClientNetwork { network, source }: ClientNetwork,
    ApiJson(request): ApiJson<LeaseRequest>,
) -> Result<Response, ApiError> {
    let public_key = canonical_key(&request.public_key)?;
    let now = state.now_ms();
    possession::check_lease_request(&state.signed_requests, &request, &public_key, now)?;
    state.limit_contributor(&public_key)?;
    let asker = leasing::Asker {
        public_key,
        network,
        source,
        adapter_class: request.adapter.as_ref().map(adapter_class).transpose()?,
    };
    let attribution = partners::registered_attribution(&state.db, &state.config, &request).await?;
    let config = state.config.clone();
    let issued = state
        .db
        .batch_refusing_first(move |conn| {
            let issued = leasing::lease_next(conn, &config, &asker, now)?;
            if let (Some(issued), Some(attribution)) = (&issued, &attribution) {
                let share_bps = config.partner_share_bps;
                partners::record_lease(conn, &issued.row.lease_id, attribution, share_bps)?;
            }
            Ok(issued)
        })
        .await?;
    Ok(match issued {
        Some(issued) => {
            state.leases.remember(issued.row, issued.unit, now);
            telemetry().leases_issued.inc();
            Json(issued.lease).into_response()
        }
        None => (StatusCode::NO_CONTENT, [(header::RETRY_AFTER, "1")]).into_response(),
    })
}

/// "vendor/architecture", lowercase, of an adapter a contributor described. Adapters name
/// themselves freely ("llvmpipe (LLVM 15.0.6, 256 bits)"), so any printable text is accepted;
/// it is only compared with other adapters' names.
fn adapter_class(adapter: &AdapterClass) -> Result<String, ApiError> {
    let fits = |text: &str| text.len() <= 128 && !text.chars().any(char::is_control);
    if !fits(&adapter.vendor) || !fits(&adapter.architecture) {
        return Err(ApiError::bad_request(
            "bad_adapter",
            "adapter vendor and architecture are at most 128 bytes of printable text",
        ));
    }
    Ok(format!("{}/{}", adapter.vendor, adapter.architecture).to_lowercase())
}

async fn release_lease(
    State(state): State<AppState>,
    ApiPath(lease_id): ApiPath<String>,
    ApiJson(request): ApiJson<ReleaseRequest>,
) -> Result<Json<ReleaseReceipt>, ApiError> {
    let key = canonical_key(&request.public_key)?;
    possession::check_release(&request, &key, &lease_id)?;
    state.limit_contributor(&key)?;
    let now = state.now_ms();
    state.leases.forget(&lease_id);
    let reason = request.reason.unwrap_or(ReleaseReason::Stopped);
    let config = state.config.clone();
    state
        .db
        .batch(move |conn| leasing::release(conn, &config, &lease_id, &key, reason, now))
        .await?;
    Ok(Json(ReleaseReceipt { released: true }))
}

/// `POST /v1/results`; each answer is counted by verdict, each refusal by its code
/// ([`crate::telemetry`]).
async fn submit_result(
    state: State<AppState>,
    submission: ApiJson<ResultSubmission>,
) -> Result<Json<ResultReceipt>, ApiError> {
    let answer = check_and_verify(state, submission).await;
    let telemetry = telemetry();
    match &answer {
        Ok(receipt) if receipt.status == "pending" => telemetry.results_pending.inc(),
        Ok(_) => telemetry.results_valid.inc(),
        Err(refused) => {
            let code = refused.status_and_code().1;
            if code == "verification_failed" {
                telemetry.results_invalid.inc();
            }
            telemetry.result_refused(code);
        }
    }
    answer
}

async fn check_and_verify(
    State(state): State<AppState>,
    ApiJson(submission): ApiJson<ResultSubmission>,
) -> Result<Json<ResultReceipt>, ApiError> {
    // The key's rate limit is charged once the result's signature is checked.
    let checked = results::check(&state.db, &state.leases, submission).await?;
    // Charged only now that the key is known to have signed the submission.
    state.limit_contributor(&checked.public_key)?;
    let receipt = results::verify(
        &state.db,
        &state.config,
        &state.relay_key,
        &state.leases,
        checked,
        state.now_ms(),
    )
    .await?;
    Ok(Json(receipt))
}

fn parse_hash(text: &str) -> Result<ContentHash, ApiError> {
    text.parse()
        .map_err(|e| ApiError::bad_request("bad_hash", format!("{e}")))
}

/// A catalogue kernel, or a custom kernel a requester submitted.
async fn get_kernel(
    State(state): State<AppState>,
    ApiPath(hash): ApiPath<String>,
) -> Result<Response, ApiError> {
    let hash = parse_hash(&hash)?;
    let source = match kernels::by_hash(&hash) {
        Some(kernel) => Some(kernel.source()),
        None => {
            state
                .db
                .read(move |conn| jobs::custom_kernel(conn, &hash))
                .await?
        }
    };
    let source: KernelSource = source.ok_or_else(|| {
        ApiError::not_found("unknown_kernel", format!("no kernel with hash {hash}"))
    })?;
    Ok(([(header::CACHE_CONTROL, IMMUTABLE)], Json(source)).into_response())
}

async fn get_blob(
    State(state): State<AppState>,
    ApiPath(hash): ApiPath<String>,
) -> Result<Response, ApiError> {
    let hash = parse_hash(&hash)?;
    let bytes =
        state.db.blob(hash).await?.ok_or_else(|| {
            ApiError::not_found("unknown_blob", format!("no blob with hash {hash}"))
        })?;
    let headers = [
        (header::CONTENT_TYPE, "application/octet-stream".to_string()),
        (header::CACHE_CONTROL, IMMUTABLE.to_string()),
        (header::ETAG, format!("\"{hash}\"")),
    ];
    Ok((headers, bytes).into_response())
}

async fn create_nonce(
    State(state): State<AppState>,
    requester: nonces::Requester,
) -> Result<Json<NonceReply>, ApiError> {
    let now = state.now_ms();
    let config = state.config.clone();
    let nonce = state
        .db
        .call(move |conn| nonces::issue(conn, &config, &requester, now))
        .await?;
    Ok(Json(nonce))
}

async fn link_wallet(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<LinkRequest>,
) -> Result<Json<LinkReply>, ApiError> {
    Ok(Json(
        links::link(&state.db, &state.config, state.now_ms(), request).await?,
    ))
}

#[derive(Deserialize)]
struct AccountQuery {
    limit: Option<u32>,
    before: Option<i64>,
}

/// 200 for any well-formed address; one nothing was credited to has zeros.
async fn get_account(
    State(state): State<AppState>,
    ApiPath(address): ApiPath<String>,
    ApiQuery(query): ApiQuery<AccountQuery>,
) -> Result<Json<AccountInfo>, ApiError> {
    let address = canonical_address(&address)?;
    let page = Page::new(query.limit, query.before)?;
    let config = state.config.clone();
    let info = state
        .db
        .read(move |conn| statements::info(conn, &config, &address, page))
        .await?;
    Ok(Json(info))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

/// `GET /v1/partners/{address}`: 200 for any well-formed address.
pub async fn get_partner(
    State(state): State<AppState>,
    ApiPath(address): ApiPath<String>,
) -> Result<Json<PartnerInfo>, ApiError> {
    let address = canonical_address(&address)?;
    let info = state
        .db
        .read(move |conn| partners::info(conn, &address))
        .await?;
    Ok(Json(info))
}
