//! Who may frame the relay's pages: the widget page ([`WIDGET_PAGE`]) any site while
//! `embed_origins` is empty, else the sites listed there and every registered partner's sites
//! ([`crate::accounts::partners::frame_origins`]); every other page none.
//!
//! The widget page gets `Content-Security-Policy: frame-ancestors ...`; every other page gets
//! `frame-ancestors 'none'` and `X-Frame-Options: DENY` (for browsers without CSP level 2), so
//! the main page cannot be framed and clicked through. API replies (`/v1/...`) are left alone.
//! Partners are registered while the relay runs (`glowworm-relay partners add`, another
//! process), so the widget's list is read from the database again at most every
//! [`REFRESH`]. `netlify.toml` sets the same for static hosting.

use crate::accounts::partners;
use crate::http::state::AppState;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The page the widget loader (`www/widget.js`) frames on partner sites.
pub const WIDGET_PAGE: &str = "/widget.html";
/// How long the widget's frame-ancestors are kept before the registered partners are read again.
pub const REFRESH: Duration = Duration::from_secs(5);

/// The frame headers: the widget's from the settings and the registered partners.
#[derive(Clone)]
pub struct FrameHeaders {
    state: AppState,
    widget: Arc<Mutex<Option<(Instant, HeaderValue)>>>,
    other: HeaderValue,
}

impl FrameHeaders {
    pub fn new(state: &AppState) -> Self {
        FrameHeaders {
            state: state.clone(),
            widget: Arc::new(Mutex::new(None)),
            other: HeaderValue::from_static("frame-ancestors 'none'"),
        }
    }

    /// The widget page's policy, read again when older than [`REFRESH`].
    async fn widget(&self) -> HeaderValue {
        if let Some((at, value)) = &*self.widget.lock().unwrap_or_else(|e| e.into_inner())
            && at.elapsed() < REFRESH
        {
            return value.clone();
        }
        let config = self.state.config.clone();
        let value = if config.embed_origins.is_empty() {
            HeaderValue::from_static("frame-ancestors *")
        } else {
            match self
                .state
                .db
                .read(move |conn| partners::frame_origins(conn, &config))
                .await
            {
                // Registered origins are canonical: plain ASCII without quotes or semicolons.
                Ok(origins) => {
                    HeaderValue::from_str(&format!("frame-ancestors {}", origins.join(" ")))
                        .unwrap_or_else(|_| HeaderValue::from_static("frame-ancestors 'none'"))
                }
                Err(e) => {
                    tracing::warn!("reading the partners' sites for frame-ancestors: {e}");
                    let listed = self.state.config.embed_origins.join(" ");
                    HeaderValue::from_str(&format!("frame-ancestors {listed}"))
                        .unwrap_or_else(|_| HeaderValue::from_static("frame-ancestors 'none'"))
                }
            }
        };
        *self.widget.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), value.clone()));
        value
    }
}

/// Middleware: sets the frame headers of every page that is not an API reply.
pub async fn frame_headers(
    State(frames): State<FrameHeaders>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    let mut response = next.run(request).await;
    if path.starts_with("/v1/") {
        return response;
    }
    if path == WIDGET_PAGE {
        let widget = frames.widget().await;
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, widget);
    } else {
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_SECURITY_POLICY, frames.other);
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    response
}
