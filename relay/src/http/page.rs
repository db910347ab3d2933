//! The static page (www/: the contributor page, the partner widget and the contributor module in
//! www/pkg), served at every path outside the API.
//!
//! By default the relay serves the copy of www/ built into its binary ([`Www`]), so a relay
//! started in any directory serves the page. `relay/build.rs` makes cargo rebuild the relay
//! whenever www/ changes; `cargo xtask run` and `cargo xtask test` build www/pkg before the
//! relay. A relay built without www/pkg still builds and serves the page, says so in a log line
//! at start ([`warn_if_incomplete`]), and answers 503 with an explanation for the module's
//! files. With `www_dir` set, the page is read from that directory at each request instead
//! (for developing it).
//!
//! HTML is sent with `Cache-Control: no-cache` (a browser checks for a new page each time it
//! opens one); everything else, as from a directory, carries a validator (an ETag of its
//! content here, Last-Modified from a directory) and no Cache-Control, so browsers revalidate
//! it. The content type comes from the file's extension (`application/wasm` for the module).
//! Text and the module are sent gzipped to clients that accept it, compressed once per file and
//! kept in memory (the module shrinks to about two fifths).

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{LazyLock, Mutex};
use tower_http::services::ServeDir;

/// www/ as it was when the relay was built.
#[derive(rust_embed::Embed)]
#[folder = "../www"]
pub struct Www;

/// What a relay built without www/pkg answers for the module's files.
pub const NO_MODULE: &str = "this relay was built without www/pkg, the contributor module the \
page needs; build it with `cargo xtask build` (or `cargo xtask run`) and rebuild the relay, or \
serve a directory that has it with --www-dir\n";

/// Whether the built-in copy of www/ has the contributor module (www/pkg/glowworm.js).
pub fn has_module() -> bool {
    Www::get("pkg/glowworm.js").is_some()
}

/// Logs a warning at start when the page served is missing its module.
pub fn warn_if_incomplete(www_dir: Option<&Path>) {
    match www_dir {
        None if !has_module() => tracing::warn!(
            "this relay was built without www/pkg, so its page cannot contribute (its module \
             is answered 503); run cargo xtask run (or cargo xtask build, then rebuild the \
             relay), or serve a directory with --www-dir"
        ),
        Some(dir) if !dir.join("pkg/glowworm.js").is_file() => tracing::warn!(
            "{} has no pkg/glowworm.js: the page's contributor module is missing (cargo xtask \
             build makes it)",
            dir.display()
        ),
        _ => {}
    }
}

/// The page as a router for every path: from `www_dir` when set, else the built-in copy.
pub fn router(www_dir: Option<&Path>) -> Router {
    let page = match www_dir {
        Some(dir) => Router::new()
            .fallback_service(ServeDir::new(dir).append_index_html_on_directories(true)),
        None => Router::new().fallback(embedded),
    };
    page.layer(axum::middleware::from_fn(no_cache_for_html))
}

/// Serves a file of the built-in copy of www/.
async fn embedded(request: Request) -> Response {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD")],
            "the page accepts GET and HEAD\n",
        )
            .into_response();
    }
    let path = request.uri().path().trim_start_matches('/');
    let path = if path.is_empty() || path.ends_with('/') {
        format!("{path}index.html")
    } else {
        path.to_string()
    };
    let Some(file) = Www::get(&path) else {
        if path.starts_with("pkg/") && !has_module() {
            return (StatusCode::SERVICE_UNAVAILABLE, NO_MODULE).into_response();
        }
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let mimetype = file.metadata.mimetype();
    let hash = hex::encode(&file.metadata.sha256_hash()[..16]);
    let gzip = compressible(mimetype) && accepts_gzip(request.headers());
    // Each encoding is its own representation, with its own tag.
    let etag = match gzip {
        true => format!("\"{hash}-gzip\""),
        false => format!("\"{hash}\""),
    };
    let fresh = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = match fresh {
        true => StatusCode::NOT_MODIFIED.into_response(),
        // A HEAD request's reply loses its body on the way out, keeping its Content-Length.
        false if gzip => {
            let mut response = Body::from(gzipped(&path, &file.data)).into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            response
        }
        false => Body::from(file.data).into_response(),
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(mimetype) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    if compressible(mimetype) {
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    response
}

/// Middleware: `Cache-Control: no-cache` on HTML.
async fn no_cache_for_html(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/html"));
    if is_html {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    response
}

/// Whether a file of this type is worth compressing (text, and the wasm module).
fn compressible(mimetype: &str) -> bool {
    mimetype.starts_with("text/")
        || mimetype.contains("javascript")
        || mimetype.contains("json")
        || mimetype == "application/wasm"
        || mimetype == "image/svg+xml"
}

/// Whether the request accepts gzip (and does not refuse it with q=0).
fn accepts_gzip(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|p| p.replace(' ', "") == "q=0" || p == "q=0.0");
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}

/// The gzip of a built-in file, made once (at the best compression) on its first request and
/// kept: the files are few and fixed.
fn gzipped(path: &str, data: &[u8]) -> Bytes {
    static CACHE: LazyLock<Mutex<HashMap<String, Bytes>>> = LazyLock::new(Default::default);
    if let Some(done) = CACHE.lock().unwrap_or_else(|e| e.into_inner()).get(path) {
        return done.clone();
    }
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    let compressed = encoder
        .write_all(data)
        .and_then(|()| encoder.finish())
        .map(Bytes::from)
        .expect("compressing into memory does not fail");
    CACHE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(path.to_string(), compressed.clone());
    compressed
}
