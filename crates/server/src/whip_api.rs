//! WHIP (RFC 9725), the HTTP half of WebRTC publish: `POST /whip/{app}/{stream}` with an SDP
//! offer answers `201` with the SDP answer, the session's resource in `Location` and an `ETag`;
//! `DELETE` on that resource ends the publish; `PATCH` (trickle ICE, ICE restarts) is `405`:
//! the offer must carry its candidates, as browsers' and OBS's do (the SDK waits for them). The media half is
//! `ingest::whip`.
//!
//! These routes need no API key: a publish is checked by its signature (`publish_secret`), in
//! the URL's query or as the bearer token (`expires=...&sign=...`), as RTMP and RTSP publishes.

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ingest::whip::{Offer, MAX_OFFER_BYTES};
use std::net::SocketAddr;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::AppState;
use crate::error::AppError;
use crate::openapi::{ErrorBody, TAG_STREAMS};

/// The media type of offers and answers.
pub const SDP_TYPE: &str = "application/sdp";
/// Methods of a session's resource.
const SESSION_METHODS: &str = "DELETE, OPTIONS";

/// The routes with their OpenAPI operations.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(whip_offer, whip_endpoint_options))
        // No PATCH (trickle ICE, ICE restarts): the router answers it 405 with `Allow`, as
        // RFC 9725 asks of a server that supports neither.
        .routes(routes!(whip_delete, whip_session_options))
}

/// The address a request came from (none when a test calls the router without a socket).
fn peer_of(req: &Request) -> SocketAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0)
}

/// The URL as the publisher named it, host included (a domain may be named by host).
fn url_of(headers: &HeaderMap, path: &str, query: &str) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    if query.is_empty() {
        format!("http://{host}{path}")
    } else {
        format!("http://{host}{path}?{query}")
    }
}

/// `POST /whip/{app}/{stream}`: publish with WebRTC.
#[utoipa::path(
    post,
    path = "/whip/{app}/{stream}",
    tag = TAG_STREAMS,
    params(
        ("app" = String, Path, description = "Application name"),
        ("stream" = String, Path, description = "Stream name; `?domain=`, `expires=` and `sign=` may follow"),
    ),
    request_body(content = String, content_type = "application/sdp", description = "The SDP offer"),
    responses(
        (status = 201, description = "The SDP answer; `Location` is the session's resource", body = String, content_type = "application/sdp"),
        (status = 400, description = "A malformed offer, no video livesnap can take, or a bad name", body = ErrorBody),
        (status = 401, description = "The publish signature is missing, wrong or expired", body = ErrorBody),
        (status = 409, description = "The stream is already being published", body = ErrorBody),
        (status = 413, description = "The offer is too large", body = ErrorBody),
        (status = 415, description = "The body is not `application/sdp`", body = ErrorBody),
        (status = 429, description = "Too many refused publishes from this address, or the account's `max_streams`", body = ErrorBody),
        (status = 503, description = "The session or stream limits are reached", body = ErrorBody),
    )
)]
async fn whip_offer(
    State(st): State<AppState>,
    Path((app, stream)): Path<(String, String)>,
    req: Request,
) -> Result<Response, AppError> {
    let peer = peer_of(&req);
    let (parts, body) = req.into_parts();
    let is_sdp = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(SDP_TYPE))
        });
    if !is_sdp {
        return Err(AppError::Refused {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message: format!("a WHIP offer is sent as Content-Type: {SDP_TYPE}"),
        });
    }
    let body: Bytes = axum::body::to_bytes(body, MAX_OFFER_BYTES)
        .await
        .map_err(|_| {
            AppError::TooLarge(format!(
                "an SDP offer may have at most {MAX_OFFER_BYTES} bytes"
            ))
        })?;
    let sdp = String::from_utf8(body.to_vec())
        .map_err(|_| AppError::BadRequest("the SDP offer is not UTF-8 text".into()))?;
    let query = parts.uri.query().unwrap_or("").to_string();
    let offer = Offer {
        url: url_of(&parts.headers, parts.uri.path(), &query),
        token: crate::auth::bearer(&parts.headers).map(str::to_string),
        app,
        stream,
        query,
        sdp,
        peer,
    };
    let answer = st.whip.offer(offer).await?;
    // Names may hold `#`, `?`, `%`, spaces or any Unicode: each segment is percent-encoded,
    // so that a client's DELETE reaches this session whatever the name.
    let segment = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let location = format!(
        "/whip/{}/{}/{}",
        segment(&answer.key.app),
        segment(&answer.key.stream),
        answer.session
    );
    let mut response = (StatusCode::CREATED, answer.sdp).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(SDP_TYPE));
    for (name, value) in [
        (header::LOCATION, location),
        (header::ETAG, format!("\"{}\"", answer.session)),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
    Ok(response)
}

/// `OPTIONS /whip/{app}/{stream}`: what the endpoint takes (CORS preflights are answered
/// before this).
#[utoipa::path(
    options,
    path = "/whip/{app}/{stream}",
    tag = TAG_STREAMS,
    params(("app" = String, Path), ("stream" = String, Path)),
    responses((status = 204, description = "`Accept-Post: application/sdp`"))
)]
async fn whip_endpoint_options() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut()
        .insert("accept-post", HeaderValue::from_static(SDP_TYPE));
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
    r
}

/// `DELETE /whip/{app}/{stream}/{session}`: end the publish.
#[utoipa::path(
    delete,
    path = "/whip/{app}/{stream}/{session}",
    tag = TAG_STREAMS,
    params(
        ("app" = String, Path), ("stream" = String, Path),
        ("session" = String, Path, description = "The session id, from the offer's `Location`"),
    ),
    responses(
        (status = 200, description = "The session and its stream ended"),
        (status = 404, description = "No such session of this stream", body = ErrorBody),
    )
)]
async fn whip_delete(
    State(st): State<AppState>,
    Path((app, stream, session)): Path<(String, String, String)>,
) -> Result<StatusCode, AppError> {
    st.whip.delete(&app, &stream, &session).await?;
    Ok(StatusCode::OK)
}

/// `OPTIONS /whip/{app}/{stream}/{session}`.
#[utoipa::path(
    options,
    path = "/whip/{app}/{stream}/{session}",
    tag = TAG_STREAMS,
    params(("app" = String, Path), ("stream" = String, Path), ("session" = String, Path)),
    responses((status = 204, description = "The methods of a session"))
)]
async fn whip_session_options() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(SESSION_METHODS));
    r
}
