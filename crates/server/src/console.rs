//! What the HTTP port serves to browsers, from the binary itself (no files to install, no CDN,
//! no Node to build: the machine may be offline): the console at `/` (one page, plain
//! JavaScript, `assets/console/`) and the browser module at `/sdk/livesnap.js`.
//! These need no API key: they hold no data; what they call does, with the key the console
//! asks for (kept in the tab's session storage).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::api::AppState;

/// The browser module (an ES module).
const SDK_JS: &str = include_str!("../assets/sdk/livesnap.js");
/// The console's page, script and style.
const INDEX_HTML: &str = include_str!("../assets/console/index.html");
const APP_JS: &str = include_str!("../assets/console/app.js");
const STYLE_CSS: &str = include_str!("../assets/console/style.css");

/// Paths served here without an API key.
pub const PUBLIC_PATHS: [&str; 2] = ["/", "/favicon.ico"];
/// Path prefixes served here without an API key.
pub const PUBLIC_PREFIXES: [&str; 2] = ["/sdk/", "/console/"];
/// The console's own content only: a name that slipped into markup still could not run, nor
/// style anything. Pictures are `blob:` URLs (fetched with the key); the camera preview is a
/// `MediaStream` (no URL); the chart's bars are sized through the CSSOM, which this allows.
const CONSOLE_CSP: &str = "default-src 'self'; img-src 'self' blob:; media-src 'self'; \
     style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// The routes of what browsers load.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { page() }))
        .route(
            "/console/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/console/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
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

fn page() -> Response {
    let mut r = asset("text/html; charset=utf-8", INDEX_HTML);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONSOLE_CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

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
