//! Who may frame the relay's pages: the widget page ([`WIDGET_PAGE`]) the sites of
//! `embed_origins` (any site when it is empty), every other page none.
//!
//! The widget page gets `Content-Security-Policy: frame-ancestors ...`; every other page gets
//! `frame-ancestors 'none'` and `X-Frame-Options: DENY` (for browsers without CSP level 2), so
//! the main page cannot be framed and clicked through. API replies (`/v1/...`) are left alone.
//! `netlify.toml` sets the same for static hosting.

use crate::config::Config;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// The page the widget loader (`www/widget.js`) frames on partner sites.
pub const WIDGET_PAGE: &str = "/widget.html";

/// The frame headers, computed once from the settings.
#[derive(Clone)]
pub struct FrameHeaders {
    widget: HeaderValue,
    other: HeaderValue,
}

impl FrameHeaders {
    pub fn new(config: &Config) -> Self {
        let ancestors = if config.embed_origins.is_empty() {
            "*".to_string()
        } else {
            config.embed_origins.join(" ")
        };
        FrameHeaders {
            // Validated origins are plain ASCII without quotes or semicolons.
            widget: HeaderValue::from_str(&format!("frame-ancestors {ancestors}"))
                .unwrap_or_else(|_| HeaderValue::from_static("frame-ancestors 'none'")),
            other: HeaderValue::from_static("frame-ancestors 'none'"),
        }
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
    let headers = response.headers_mut();
    if path == WIDGET_PAGE {
        headers.insert(header::CONTENT_SECURITY_POLICY, frames.widget);
    } else {
        headers.insert(header::CONTENT_SECURITY_POLICY, frames.other);
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    response
}
