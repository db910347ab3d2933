//! What operators watch: `GET /metrics` (Prometheus' text format, [`crate::telemetry`]), the
//! liveness check `GET /healthz` and the readiness check `GET /readyz`, and the middleware that
//! times every request ([`time_requests`]).
//!
//! `/healthz` and `/readyz` are served on the public listener and on the metrics listener;
//! `/metrics` only on the metrics listener (`metrics_listen`), which the operator binds to a
//! private address: the series say how busy the relay is, and reading the queue's depth costs a
//! database read per scrape.

use crate::error::ApiError;
use crate::http::state::AppState;
use crate::telemetry::{self, telemetry};
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use std::time::{Duration, Instant};

/// How long each readiness check may take before the relay counts as not ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The route label of requests no route matched: the static page, or refusals before routing.
const PAGE: &str = "page";

/// The routes of the metrics listener: `/metrics`, `/healthz`, `/readyz`.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .merge(probes())
        .with_state(state)
}

/// `/healthz` and `/readyz`, for the public router.
pub fn probes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// Middleware: records each request's time in `glowworm_http_request_duration_seconds`, by the
/// route's template (never the path asked for), its method and its status class.
pub async fn time_requests(request: Request, next: Next) -> Response {
    let began = Instant::now();
    let route = match request.extensions().get::<MatchedPath>() {
        Some(path) => RouteLabel::Matched(path.clone()),
        None => RouteLabel::Fixed(PAGE),
    };
    let method = method_label(request.method());
    let response = next.run(request).await;
    let route = match &route {
        RouteLabel::Matched(path) => path.as_str(),
        RouteLabel::Fixed(name) => name,
    };
    telemetry().request_served(route, method, response.status().as_u16(), began.elapsed());
    response
}

enum RouteLabel {
    Matched(MatchedPath),
    Fixed(&'static str),
}

/// A method as a label: the standard ones by name, any other as "other".
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// `GET /metrics`: every series, the database's figures read now.
async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let (leases, queued) = state
        .db
        .read(|conn| {
            let leases: i64 = conn
                .prepare_cached("SELECT count(*) FROM leases WHERE state = 'active'")?
                .query_row([], |row| row.get(0))?;
            // Per queued job, a count over the (job_id, state) index: no pass over all units.
            let mut statement = conn.prepare_cached(
                "SELECT kind, sum((SELECT count(*) FROM units \
                     WHERE units.job_id = jobs.id AND units.state = 'pending')) \
                 FROM jobs WHERE state = 'queued' GROUP BY kind",
            )?;
            let queued = statement
                .query_map([], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((leases, queued))
        })
        .await?;
    let telemetry = telemetry();
    telemetry.set_database_figures(leases, &queued);
    Ok((
        [(header::CONTENT_TYPE, telemetry::CONTENT_TYPE)],
        telemetry.render(),
    )
        .into_response())
}

/// `GET /healthz`: 200 while the process serves requests.
async fn healthz() -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({"status": "ok"})),
    )
        .into_response()
}

/// `GET /readyz`: 200 when the database answers a read, its writer thread commits, and the
/// assembler thread runs; otherwise 503, with what failed.
async fn readyz(State(state): State<AppState>) -> Response {
    let read = tokio::time::timeout(
        READY_TIMEOUT,
        state.db.read(|conn| {
            conn.query_row("SELECT 1", [], |row| row.get::<_, i64>(0))
                .map_err(ApiError::from)
        }),
    );
    // Joins the writer's current group (a call of its own would commit the group early) and is
    // answered once that group has committed.
    let write = tokio::time::timeout(READY_TIMEOUT, state.db.batch(|_| Ok(())));
    let (read, write) = tokio::join!(read, write);
    let check = |outcome: Result<Result<_, ApiError>, _>| match outcome {
        Ok(Ok(_)) => "ok".to_string(),
        Ok(Err(e)) => format!("failed: {}", e.status_and_code().1),
        Err(_) => format!("no answer within {} s", READY_TIMEOUT.as_secs()),
    };
    let database = check(read.map(|r| r.map(drop)));
    let writer = check(write);
    let assembler = match state.assembler.is_running() {
        true => "ok".to_string(),
        false => "not running".to_string(),
    };
    let ready = [&database, &writer, &assembler].iter().all(|c| *c == "ok");
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": {"database": database, "writer": writer, "assembler": assembler},
    });
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(body),
    )
        .into_response()
}
