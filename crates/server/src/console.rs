//! What the HTTP port serves to browsers, from the binary itself (no files to install, no CDN:
//! the machine may be offline): the browser module at `/sdk/livesnap.js`.
//! These need no API key: they hold no data; what they call does.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::api::AppState;

/// The browser module (an ES module).
const SDK_JS: &str = include_str!("../assets/sdk/livesnap.js");

/// Path prefixes served here without an API key.
pub const PUBLIC_PREFIXES: [&str; 2] = ["/sdk/", "/favicon.ico"];

/// The routes of what browsers load.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/sdk/livesnap.js",
            get(|| async { asset("text/javascript; charset=utf-8", SDK_JS) }),
        )
        .route(
            "/favicon.ico",
            get(|| async { asset("image/svg+xml", FAVICON_SVG) }),
        )
}

/// The icon browsers ask every page for: a camera's aperture.
const FAVICON_SVG: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#1f6feb"/><circle cx="8" cy="8" r="4.5" fill="none" stroke="#fff" stroke-width="2"/><circle cx="8" cy="8" r="1.5" fill="#fff"/></svg>"##;

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Short: a new binary serves new assets, and a page reloaded picks them up.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}
