//! The HTTP API. It reads the hub and asks the snapshot service; it holds no logic of its own.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use base64::Engine;
use livesnap_core::hub::{Hub, LiveStream, StreamStats};
use livesnap_core::snapshot::{
    Precision, Snapshot, SnapshotCounters, SnapshotRequest, Snapshotter,
};
use livesnap_core::template::FieldError;
use media::picture::{EncodeOptions, ImageFormat, DEFAULT_JPEG_QUALITY, MAX_OUTPUT_SIDE};
use media::stream::{StreamKey, DEFAULT_DOMAIN};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::AppError;
use crate::openapi::{ErrorBody, TAG_OPERATIONS, TAG_STREAMS, TAG_WCS};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// Live streams.
    pub hub: Arc<Hub>,
    /// Picture maker.
    pub snapshots: Arc<Snapshotter>,
    /// Largest request body.
    pub max_request_bytes: usize,
    /// Longest time a request may take (then 408).
    pub request_timeout: std::time::Duration,
    /// Longest time a request's body may take to arrive whole, from its head (then 408).
    pub body_timeout: std::time::Duration,
    /// Automatic snapshots, storage and the index.
    pub auto: Arc<livesnap_core::auto::Automation>,
    /// Webhooks.
    pub callbacks: Arc<crate::callbacks::Callbacks>,
    /// Pull jobs.
    pub jobs: Arc<livesnap_core::jobs::Jobs>,
    /// API keys.
    pub auth: Arc<crate::auth::Auth>,
    /// Accounts and their keys.
    pub accounts: Arc<livesnap_core::accounts::Accounts>,
    /// Signed publish URLs.
    pub publish: Arc<crate::publish_api::PublishUrlMaker>,
    /// Base URL of this server for links.
    pub public_url: String,
    /// The Prometheus registry.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Where WHIP offers go.
    pub whip: ingest::whip::WhipHandle,
    /// Origins whose pages may call the API when it is open (`cors_origins`).
    pub cors_origins: Arc<Vec<String>>,
    /// Each client's rate of on-demand pictures (`picture_requests_per_s`).
    pub picture_rate: Arc<crate::rate::PictureRate>,
}

/// Paces an on-demand picture request to its client's `picture_requests_per_s`: returns when
/// it is the request's turn, or the `429` to answer.
pub(crate) async fn pace(
    st: &AppState,
    caller: &crate::auth::Caller,
    peer: Option<std::net::IpAddr>,
) -> Result<(), AppError> {
    use crate::rate::Admit;
    let Some(client) = crate::rate::client_of(caller, peer) else {
        return Ok(());
    };
    match st.picture_rate.admit(client) {
        Admit::Now => Ok(()),
        Admit::After(wait) => {
            st.hub.clock().sleep(wait).await;
            Ok(())
        }
        Admit::Refused { retry_after_s } => Err(AppError::TooManyPictureRequests {
            per_s: st.picture_rate.per_s(),
            retry_after_s,
        }),
    }
}

/// Longest a readiness check waits for the index or one storage location.
pub const READY_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// The object `/readyz` writes (then deletes) in each storage location to prove it writable.
pub const READY_PROBE_KEY: &str = "livesnap-readyz.probe";
/// The header that carries a request's id (set here when the client sent none).
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Most headers a request may have; more is answered 431.
pub const MAX_REQUEST_HEADERS: usize = 100;
/// Most bytes of request target and headers; more is answered 431.
pub const MAX_REQUEST_HEADER_BYTES: usize = 32 * 1024;
/// Largest plain-text answer of a layer that [`json_error_bodies`] reads to reword as JSON.
const MAX_LAYER_ERROR_BYTES: usize = 4096;

/// The whole API as a router, so tests can call it without a socket. Every request gets an id
/// (`x-request-id`, the client's if it sent one), answered back and put in the span of every
/// log line of that request, and a time limit (`request_timeout_s`, then 408); its headers and
/// declared body size are checked (431, 413) and its body must arrive within
/// `http_body_timeout_s` (408). Every error, the layers' and the router's own included, is
/// answered with the one JSON error body ([`json_error_bodies`]). Each route is
/// registered with its OpenAPI operation (`routes!`), and the document they make up is served
/// at `/openapi.json`.
pub fn app(state: AppState) -> Router {
    use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
    let limit = state.max_request_bytes;
    let timeout = state.request_timeout;
    let request_limits = RequestLimits {
        body_bytes: limit,
        body_timeout: state.body_timeout,
    };
    let id = HeaderName::from_static(REQUEST_ID_HEADER);
    let layers = tower::ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(id.clone(), MakeRequestUuid))
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(
                |req: &axum::http::Request<axum::body::Body>| {
                    let id = req
                        .headers()
                        .get(REQUEST_ID_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                },
            ),
        )
        .layer(PropagateRequestIdLayer::new(id))
        // Inside the request id and the trace (they see and log the JSON answer), outside every
        // layer that answers by itself.
        .layer(axum::middleware::map_response(json_error_bodies))
        .layer(axum::middleware::from_fn_with_state(
            request_limits,
            check_request,
        ))
        // After the size checks (a huge request is refused before its key is looked at), and
        // before any route, the fallback's 404 included: without a key nothing is revealed.
        .layer(axum::middleware::from_fn_with_state(
            state.auth.clone(),
            crate::auth::authenticate,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ));
    let (router, mut doc) =
        OpenApiRouter::with_openapi(<crate::openapi::ApiDoc as utoipa::OpenApi>::openapi())
            .routes(routes!(healthz))
            .routes(routes!(readyz))
            .routes(routes!(metrics))
            .routes(routes!(list_streams))
            .routes(routes!(picture_stats))
            .routes(routes!(get_stream))
            .routes(routes!(snapshot_jpg))
            .routes(routes!(snapshot_png))
            .routes(routes!(wcs_snapshot))
            .merge(crate::auto_api::routes())
            .merge(crate::jobs_api::routes())
            .merge(crate::publish_api::routes())
            .merge(crate::accounts_api::routes())
            .merge(crate::whip_api::routes())
            .routes(routes!(crate::openapi::openapi_json))
            .split_for_parts();
    crate::openapi::add_common_responses(&mut doc);
    router
        .merge(crate::console::routes())
        .fallback(|| async { AppError::NotFound("no such endpoint".into()) })
        .layer(Extension(Arc::new(doc)))
        .layer(DefaultBodyLimit::max(limit))
        .layer(layers)
        .layer(cors(
            state.auth.is_open(),
            state.publish.secret.is_some(),
            state.cors_origins.clone(),
        ))
        .with_state(state)
}

/// Which pages on other origins a browser lets call this server (the browser module):
/// - the module itself: any page (it is a file);
/// - WHIP, when publishes must be signed (`publish_secret`): any page (the signature is what
///   it needs, as RTMP's);
/// - the API, when it needs a key (`admin_key`): any page, since a caller proves who it is
///   with a bearer key, never with cookies, so an origin gains nothing the key would not give;
/// - otherwise (an open API, unsigned WHIP): only the origins of `cors_origins` (`*` for any).
///   Else any website opened by someone on the server's network could read and change it, or
///   publish into it.
///
/// Outside the key check, so that preflights (which carry no key) are answered.
fn cors(open: bool, signed: bool, origins: Arc<Vec<String>>) -> tower_http::cors::CorsLayer {
    use axum::http::{header, Method};
    let allowed = move |origin: &HeaderValue, parts: &axum::http::request::Parts| {
        let path = parts.uri.path();
        let gated = if path.starts_with("/whip/") {
            signed
        } else {
            !open
        };
        path.starts_with("/sdk/")
            || gated
            || origins
                .iter()
                .any(|o| o == "*" || origin.as_bytes() == o.trim_end_matches('/').as_bytes())
    };
    tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::AllowOrigin::predicate(allowed))
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
        ])
        .expose_headers([
            header::LOCATION,
            header::ETAG,
            header::RETRY_AFTER,
            HeaderName::from_static(REQUEST_ID_HEADER),
            HeaderName::from_static("x-livesnap-frame-time"),
            HeaderName::from_static("x-livesnap-frame-age-ms"),
            HeaderName::from_static("x-livesnap-frame-pts-ms"),
            HeaderName::from_static("x-livesnap-keyframe"),
            HeaderName::from_static("x-livesnap-cache"),
            HeaderName::from_static("x-livesnap-size"),
        ])
        .max_age(std::time::Duration::from_secs(600))
}

/// Every error answer as the one JSON error body ([`AppError`]): the router's and the layers'
/// own answers (405, the 408 of the timeout layer, an extractor's 413 or 400) come as plain text
/// or empty. Their headers (`Allow`, `Retry-After`, the request id) are kept.
pub async fn json_error_bodies(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let message = axum::body::to_bytes(body, MAX_LAYER_ERROR_BYTES)
        .await
        .ok()
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_lowercase());
    let mut answer = AppError::from_layer(status, message).into_response();
    for (name, value) in &parts.headers {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}

/// What [`check_request`] holds a request to.
#[derive(Clone, Copy)]
struct RequestLimits {
    body_bytes: usize,
    body_timeout: std::time::Duration,
}

/// Refuses a request whose headers are too many or too large (431) or whose declared body is
/// over `max_request_bytes` (413, before a byte of it is read), and gives its body an absolute
/// deadline: a body still incomplete `http_body_timeout_s` after the head is ended, and the
/// request answered 408 (a slow or partial body would otherwise hold the connection until
/// `request_timeout_s`).
async fn check_request(
    State(limits): State<RequestLimits>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = request.headers();
    if headers.len() > MAX_REQUEST_HEADERS {
        return AppError::HeadersTooLarge(format!(
            "more than {MAX_REQUEST_HEADERS} request headers"
        ))
        .into_response();
    }
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    let header_bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if target + header_bytes > MAX_REQUEST_HEADER_BYTES {
        return AppError::HeadersTooLarge(format!(
            "request target and headers over {MAX_REQUEST_HEADER_BYTES} bytes"
        ))
        .into_response();
    }
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.body_bytes as u64) {
        return AppError::TooLarge(format!(
            "the request body is larger than max_request_bytes ({})",
            limits.body_bytes
        ))
        .into_response();
    }
    let timed_out = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let request = request.map(|body| {
        axum::body::Body::new(crate::http::DeadlineBody::new(
            body,
            limits.body_timeout,
            timed_out.clone(),
        ))
    });
    let response = next.run(request).await;
    if timed_out.load(std::sync::atomic::Ordering::Acquire) {
        return AppError::RequestTimeout(format!(
            "the request body did not arrive within {} s",
            limits.body_timeout.as_secs_f64()
        ))
        .into_response();
    }
    response
}

/// `GET /healthz`: the server is listening.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = TAG_OPERATIONS,
    responses((status = 200, description = "The server is listening", body = String,
        content_type = "text/plain", example = "ok"))
)]
async fn healthz() -> &'static str {
    "ok"
}

/// `GET /metrics`: Prometheus text.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = TAG_OPERATIONS,
    responses(
        (status = 200, description = "Prometheus text exposition, names prefixed `livesnap_`",
            body = String, content_type = "text/plain; version=0.0.4"),
        (status = 500, description = "The metrics could not be rendered", body = ErrorBody),
    )
)]
async fn metrics(State(st): State<AppState>) -> Result<Response, AppError> {
    let text = st
        .metrics
        .render()
        .map_err(|e| AppError::Core(livesnap_core::Error::Internal(format!("metrics: {e}"))))?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// `GET /readyz` when every part is ready.
#[derive(Serialize, ToSchema)]
struct Ready {
    /// `ready`.
    #[schema(example = "ready")]
    status: &'static str,
    /// The index's backend: `sqlite` or `postgres`.
    #[schema(example = "sqlite")]
    index: &'static str,
    /// The storage locations checked, by name.
    storage: Vec<String>,
}

/// `GET /readyz` when a part is not ready.
#[derive(Serialize, ToSchema)]
struct NotReady {
    /// `not ready`.
    #[schema(example = "not ready")]
    status: &'static str,
    /// Each part that failed its check.
    failing: Vec<FailingCheck>,
}

/// A part that failed its readiness check.
#[derive(Clone, Serialize, ToSchema)]
struct FailingCheck {
    /// `index`, `storage`, or `check` (a check that could not run).
    part: String,
    /// The storage location's name (`null` for the index).
    name: Option<String>,
    /// What failed.
    error: String,
}

/// `GET /readyz`: 200 when the index answers and every storage location takes a write (a small
/// probe object, deleted again); else 503 naming each failing part.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = TAG_OPERATIONS,
    responses(
        (status = 200, description = "The index answers and every storage location takes a write",
            body = Ready),
        (status = 503, description = "A part failed its check (each waits at most 2 s)",
            body = NotReady, headers(("retry-after" = u32, description = "Seconds to wait"))),
    )
)]
async fn readyz(State(st): State<AppState>) -> Response {
    let mut checks = tokio::task::JoinSet::new();
    let index = st.auto.index().clone();
    checks.spawn(async move {
        let r = tokio::time::timeout(READY_CHECK_TIMEOUT, index.ping()).await;
        ("index".to_string(), None, flatten(r))
    });
    for (name, location) in st.auto.locations() {
        let (name, location) = (name.clone(), location.clone());
        checks.spawn(async move {
            let probe = async {
                location
                    .put(
                        READY_PROBE_KEY,
                        Bytes::from_static(b"livesnap readiness probe\n"),
                    )
                    .await?;
                location.delete(READY_PROBE_KEY).await
            };
            let r = tokio::time::timeout(READY_CHECK_TIMEOUT, probe).await;
            ("storage".to_string(), Some(name), flatten(r))
        });
    }
    let mut failing = Vec::new();
    let mut storage = Vec::new();
    while let Some(done) = checks.join_next().await {
        let (part, name, result) = match done {
            Ok(x) => x,
            Err(e) => ("check".to_string(), None, Err(e.to_string())),
        };
        if let Some(n) = &name {
            storage.push(n.clone());
        }
        if let Err(error) = result {
            failing.push(FailingCheck { part, name, error });
        }
    }
    storage.sort();
    failing.sort_by(|a, b| a.name.cmp(&b.name));
    if failing.is_empty() {
        Json(Ready {
            status: "ready",
            index: st.auto.index().backend(),
            storage,
        })
        .into_response()
    } else {
        let logged = serde_json::to_string(&failing).unwrap_or_default();
        tracing::warn!(failing = %logged, "not ready");
        let mut r = (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(NotReady {
                status: "not ready",
                failing,
            }),
        )
            .into_response();
        r.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            HeaderValue::from_static("5"),
        );
        r
    }
}

/// A timed-out or failed check as its message.
fn flatten(
    r: Result<Result<(), livesnap_store::Error>, tokio::time::error::Elapsed>,
) -> Result<(), String> {
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "no answer within {} s",
            READY_CHECK_TIMEOUT.as_secs()
        )),
    }
}

/// `GET /v1/streams`.
#[derive(Serialize, ToSchema)]
struct StreamList {
    /// Every live stream.
    streams: Vec<StreamStats>,
}

/// `GET /v1/streams`: every live stream.
#[utoipa::path(
    get,
    path = "/v1/streams",
    tag = TAG_STREAMS,
    responses((status = 200, description = "Every live stream", body = StreamList))
)]
async fn list_streams(
    State(st): State<AppState>,
    Extension(caller): Extension<crate::auth::Caller>,
) -> Json<StreamList> {
    let streams = st
        .hub
        .list()
        .iter()
        .filter(|s| sees_stream(&st, &caller, &s.key))
        .map(|s| s.stats())
        .collect();
    Json(StreamList { streams })
}

/// `GET /v1/pictures`.
#[derive(Serialize, ToSchema)]
struct PictureStats<'a> {
    /// What the picture service has done since start.
    #[schema(value_type = crate::openapi::external::SnapshotCountersSchema)]
    counters: &'a SnapshotCounters,
    /// The H.264 decoder: `openh264` or `libavcodec`.
    decoder: &'static str,
    /// The JPEG encoder.
    jpeg_encoder: &'static str,
}

/// What the picture service has done since start, and with which backends: an ingested stream
/// nobody asks a picture of shows up nowhere here (nothing is decoded for it).
#[utoipa::path(
    get,
    path = "/v1/pictures",
    tag = TAG_STREAMS,
    responses((status = 200, description = "The picture service's counters and backends",
        body = PictureStats))
)]
async fn picture_stats(State(st): State<AppState>) -> Response {
    Json(PictureStats {
        counters: &st.snapshots.counters,
        decoder: media::decode::default_decoder_name(),
        jpeg_encoder: media::picture::jpeg_encoder_name(),
    })
    .into_response()
}

/// The domain of a stream, when it is not `_default`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DomainQuery {
    /// The stream's domain (virtual host); `_default` when not given.
    domain: Option<String>,
}

/// Whether the caller may see stream `key`: one in its domains, or its pull job's.
fn sees_stream(st: &AppState, caller: &crate::auth::Caller, key: &StreamKey) -> bool {
    if caller.sees_domain(&st.accounts, &key.domain) {
        return true;
    }
    match caller {
        crate::auth::Caller::Account { name, .. } => {
            key.domain == livesnap_core::jobs::JOBS_DOMAIN
                && st
                    .jobs
                    .get(&key.stream, livesnap_core::jobs::JobScope::Account(name))
                    .is_ok()
        }
        _ => true,
    }
}

/// The live stream `domain/app/stream`, if the caller may see it: another account's stream
/// is not live as far as it is told.
fn lookup(
    st: &AppState,
    caller: &crate::auth::Caller,
    domain: Option<&str>,
    app: &str,
    stream: &str,
) -> Result<Arc<LiveStream>, AppError> {
    let domain = domain.unwrap_or(DEFAULT_DOMAIN);
    let key =
        StreamKey::new(domain, app, stream).map_err(|e| AppError::BadRequest(e.to_string()))?;
    st.hub
        .get(&key)
        .filter(|_| sees_stream(st, caller, &key))
        .ok_or_else(|| AppError::Core(livesnap_core::Error::NotLive(key.to_string())))
}

/// `GET /v1/streams/{app}/{stream}`: one live stream.
#[utoipa::path(
    get,
    path = "/v1/streams/{app}/{stream}",
    tag = TAG_STREAMS,
    params(
        ("app" = String, Path, description = "Application name"),
        ("stream" = String, Path, description = "Stream name"),
        DomainQuery,
    ),
    responses(
        (status = 200, description = "The stream", body = StreamStats),
        (status = 400, description = "An invalid domain, app or stream name", body = ErrorBody),
        (status = 404, description = "The stream is not live", body = ErrorBody),
    )
)]
async fn get_stream(
    State(st): State<AppState>,
    Extension(caller): Extension<crate::auth::Caller>,
    Path((app, stream)): Path<(String, String)>,
    Query(q): Query<DomainQuery>,
) -> Result<Json<StreamStats>, AppError> {
    let s = lookup(&st, &caller, q.domain.as_deref(), &app, &stream)?;
    Ok(Json(s.stats()))
}

/// The query of a direct image. Each value is taken as text and read by [`image_request`], so
/// that a bad one gets a JSON 400 naming the parameter.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ImageQuery {
    /// Output width; given alone, the height keeps the aspect ratio.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 8192)]
    width: Option<String>,
    /// Output height; given alone, the width keeps the aspect ratio.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 8192)]
    height: Option<String>,
    /// JPEG quality (default 85).
    #[param(value_type = Option<u8>, minimum = 1, maximum = 100)]
    quality: Option<String>,
    /// `keyframe` (default): the newest keyframe, one decode. `latest`: decode on from the
    /// keyframe and picture the newest frame in presentation order.
    #[param(pattern = "^(keyframe|latest)$")]
    precision: Option<String>,
    /// The stream's domain (virtual host); `_default` when not given.
    domain: Option<String>,
    /// `false`: picture the newest keyframe there is, without asking a WHIP publisher for a
    /// fresh one (`keyframe_request_after_ms`); what the console's grid asks, so that viewers
    /// never cost publishers keyframes. Default `true`.
    #[param(value_type = Option<bool>)]
    ask_keyframe: Option<String>,
}

/// Output width or height a request may ask for.
pub const SIDE_RANGE: (u64, u64) = (1, MAX_OUTPUT_SIDE as u64);
/// JPEG quality a request may ask for.
pub const QUALITY_RANGE: (u64, u64) = (
    livesnap_core::template::QUALITY_RANGE.0 as u64,
    livesnap_core::template::QUALITY_RANGE.1 as u64,
);

/// Reads a number from outside (a query parameter's text, or a JSON number of a request body as
/// serde_json prints it): a plain decimal integer within `range`, else a 400 naming `field` and
/// the range. Negative, fractional (`1.5`), exponent (`1e16`) and overlong (`2^64`) forms are all
/// refused, never wrapped or truncated.
pub fn bounded<T: TryFrom<u64>>(
    field: &'static str,
    text: &str,
    (min, max): (u64, u64),
) -> Result<T, AppError> {
    let refuse = || {
        let mut shown: String = text.chars().take(40).collect();
        if shown.len() < text.len() {
            shown.push_str("...");
        }
        AppError::Field(FieldError {
            field,
            message: format!("must be an integer in {min}..={max}, got {shown:?}"),
        })
    };
    let v: u64 = text.parse().map_err(|_| refuse())?;
    if !(min..=max).contains(&v) {
        return Err(refuse());
    }
    T::try_from(v).map_err(|_| refuse())
}

/// [`bounded`] for an optional parameter.
fn bounded_opt<T: TryFrom<u64>>(
    field: &'static str,
    text: Option<&str>,
    range: (u64, u64),
) -> Result<Option<T>, AppError> {
    text.map(|t| bounded(field, t, range)).transpose()
}

/// Reads `width`, `height`, `quality`, `precision`, `domain` from the query by hand, so that a
/// bad value gets a JSON 400 naming the parameter.
fn image_request(
    format: ImageFormat,
    q: ImageQuery,
) -> Result<(SnapshotRequest, Option<String>, bool), AppError> {
    let ask_keyframe = match q.ask_keyframe.as_deref() {
        None | Some("true") => true,
        Some("false") => false,
        Some(v) => {
            return Err(AppError::BadRequest(format!(
                "ask_keyframe must be true or false, got {v:?}"
            )))
        }
    };
    let quality = bounded_opt("quality", q.quality.as_deref(), QUALITY_RANGE)?
        .unwrap_or(DEFAULT_JPEG_QUALITY);
    let precision = match q.precision {
        None => Precision::Keyframe,
        Some(p) => Precision::parse(&p).ok_or_else(|| {
            AppError::BadRequest(format!("precision must be keyframe or latest, got {p:?}"))
        })?,
    };
    let options = EncodeOptions {
        format,
        width: bounded_opt("width", q.width.as_deref(), SIDE_RANGE)?,
        height: bounded_opt("height", q.height.as_deref(), SIDE_RANGE)?,
        quality,
    };
    Ok((
        SnapshotRequest { options, precision },
        q.domain,
        ask_keyframe,
    ))
}

/// `GET /v1/streams/{app}/{stream}/snapshot.jpg`: a JPEG of the stream now.
#[utoipa::path(
    get,
    path = "/v1/streams/{app}/{stream}/snapshot.jpg",
    tag = TAG_STREAMS,
    params(
        ("app" = String, Path, description = "Application name"),
        ("stream" = String, Path, description = "Stream name"),
        ImageQuery,
    ),
    responses(
        (status = 200, description = "The picture; the headers say which frame it is",
            content(("image/jpeg")),
            headers(
                ("x-livesnap-frame-time" = String, description = "RFC 3339 wall-clock time the pictured frame arrived"),
                ("x-livesnap-frame-age-ms" = u64, description = "How old that frame is now"),
                ("x-livesnap-frame-pts-ms" = i64, description = "The frame's presentation timestamp on the stream's clock"),
                ("x-livesnap-keyframe" = bool, description = "Whether the frame is a keyframe"),
                ("x-livesnap-cache" = String, description = "`hit` (already made) or `miss`"),
                ("x-livesnap-size" = String, description = "`WIDTHxHEIGHT`"),
                ("last-modified" = String, description = "The arrival time again, as an HTTP date"),
            )),
        (status = 400, description = "A bad parameter or name", body = ErrorBody),
        (status = 404, description = "The stream is not live", body = ErrorBody),
        (status = 429, description = "More picture requests than `picture_requests_per_s` from this client",
            body = ErrorBody, headers(("retry-after" = u32, description = "Seconds to wait"))),
        (status = 503, description = "No picture could be made within `snapshot_taking_interval_ms`",
            body = ErrorBody, headers(("retry-after" = u32, description = "Seconds to wait"))),
        (status = 500, description = "The picture service failed", body = ErrorBody),
    )
)]
async fn snapshot_jpg(
    st: State<AppState>,
    caller: Extension<crate::auth::Caller>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    path: Path<(String, String)>,
    q: Result<Query<ImageQuery>, QueryRejection>,
) -> Response {
    let peer = peer.map(|Extension(ConnectInfo(a))| a.ip());
    direct_image(st, caller, peer, path, q, ImageFormat::Jpeg)
        .await
        .unwrap_or_else(|e| e.into_response())
}

/// `GET /v1/streams/{app}/{stream}/snapshot.png`: a PNG of the stream now.
#[utoipa::path(
    get,
    path = "/v1/streams/{app}/{stream}/snapshot.png",
    tag = TAG_STREAMS,
    params(
        ("app" = String, Path, description = "Application name"),
        ("stream" = String, Path, description = "Stream name"),
        ImageQuery,
    ),
    responses(
        (status = 200, description = "The picture; the headers say which frame it is",
            content(("image/png")),
            headers(
                ("x-livesnap-frame-time" = String, description = "RFC 3339 wall-clock time the pictured frame arrived"),
                ("x-livesnap-frame-age-ms" = u64, description = "How old that frame is now"),
                ("x-livesnap-frame-pts-ms" = i64, description = "The frame's presentation timestamp on the stream's clock"),
                ("x-livesnap-keyframe" = bool, description = "Whether the frame is a keyframe"),
                ("x-livesnap-cache" = String, description = "`hit` (already made) or `miss`"),
                ("x-livesnap-size" = String, description = "`WIDTHxHEIGHT`"),
                ("last-modified" = String, description = "The arrival time again, as an HTTP date"),
            )),
        (status = 400, description = "A bad parameter or name", body = ErrorBody),
        (status = 404, description = "The stream is not live", body = ErrorBody),
        (status = 429, description = "More picture requests than `picture_requests_per_s` from this client",
            body = ErrorBody, headers(("retry-after" = u32, description = "Seconds to wait"))),
        (status = 503, description = "No picture could be made within `snapshot_taking_interval_ms`",
            body = ErrorBody, headers(("retry-after" = u32, description = "Seconds to wait"))),
        (status = 500, description = "The picture service failed", body = ErrorBody),
    )
)]
async fn snapshot_png(
    st: State<AppState>,
    caller: Extension<crate::auth::Caller>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    path: Path<(String, String)>,
    q: Result<Query<ImageQuery>, QueryRejection>,
) -> Response {
    let peer = peer.map(|Extension(ConnectInfo(a))| a.ip());
    direct_image(st, caller, peer, path, q, ImageFormat::Png)
        .await
        .unwrap_or_else(|e| e.into_response())
}

async fn direct_image(
    State(st): State<AppState>,
    Extension(caller): Extension<crate::auth::Caller>,
    peer: Option<IpAddr>,
    Path((app, stream)): Path<(String, String)>,
    q: Result<Query<ImageQuery>, QueryRejection>,
    format: ImageFormat,
) -> Result<Response, AppError> {
    pace(&st, &caller, peer).await?;
    let Query(q) = q.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let (request, domain, ask) = image_request(format, q)?;
    let s = lookup(&st, &caller, domain.as_deref(), &app, &stream)?;
    let snap = st.snapshots.take_asking(&s, request, ask).await?;
    Ok(image_response(format, &snap, st.hub.clock().wall()))
}

/// A picture of `stream` now, as [`direct_image`] answers it (its `domain` parameter is not
/// used: the stream is found already).
pub(crate) async fn stream_image(
    st: &AppState,
    stream: &Arc<LiveStream>,
    q: ImageQuery,
    format: ImageFormat,
) -> Result<Response, AppError> {
    let (request, _, ask) = image_request(format, q)?;
    let snap = st.snapshots.take_asking(stream, request, ask).await?;
    Ok(image_response(format, &snap, st.hub.clock().wall()))
}

fn image_response(format: ImageFormat, snap: &Snapshot, now: SystemTime) -> Response {
    let mut headers = HeaderMap::new();
    let age_ms = now
        .duration_since(snap.frame_arrived)
        .unwrap_or_default()
        .as_millis();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    };
    set("content-type", format.mime().to_string());
    set("cache-control", "no-store".to_string());
    set("last-modified", httpdate::fmt_http_date(snap.frame_arrived));
    set(
        "x-livesnap-frame-time",
        humantime::format_rfc3339_millis(snap.frame_arrived).to_string(),
    );
    set("x-livesnap-frame-age-ms", age_ms.to_string());
    set("x-livesnap-frame-pts-ms", snap.frame_pts_ms.to_string());
    set("x-livesnap-keyframe", snap.keyframe.to_string());
    set(
        "x-livesnap-cache",
        if snap.cache_hit { "hit" } else { "miss" }.to_string(),
    );
    set("x-livesnap-size", format!("{}x{}", snap.width, snap.height));
    (StatusCode::OK, headers, snap.image.clone()).into_response()
}

/// The body of the Flashphoner WCS `/rest-api/stream/snapshot` call.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct WcsRequest {
    /// `cam1` (when only one live stream has that name), `live/cam1` or `domain/live/cam1`.
    stream_name: String,
    /// `png` (default) or `jpg`.
    #[schema(example = "png")]
    format: Option<String>,
    // The numbers are read as any JSON value and checked by [`bounded`], so that 1e16, -1, 1.5
    // or "5" are answered naming the field rather than as a bad body.
    /// Output width; given alone, the height keeps the aspect ratio.
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 8192)]
    width: Option<serde_json::Value>,
    /// Output height; given alone, the width keeps the aspect ratio.
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 8192)]
    height: Option<serde_json::Value>,
    /// JPEG quality (default 85).
    #[schema(value_type = Option<u8>, minimum = 1, maximum = 100)]
    quality: Option<serde_json::Value>,
}

impl WcsRequest {
    /// Width, height and quality, each checked.
    fn numbers(&self) -> Result<(Option<u32>, Option<u32>, u8), AppError> {
        // A number as serde_json prints it (`1e16`, `-1`, `1.5`); anything else as JSON text.
        let n = |n: &Option<serde_json::Value>| n.as_ref().map(|n| n.to_string());
        Ok((
            bounded_opt("width", n(&self.width).as_deref(), SIDE_RANGE)?,
            bounded_opt("height", n(&self.height).as_deref(), SIDE_RANGE)?,
            bounded_opt("quality", n(&self.quality).as_deref(), QUALITY_RANGE)?
                .unwrap_or(DEFAULT_JPEG_QUALITY),
        ))
    }
}

/// The answer of the WCS snapshot call.
#[derive(Serialize, ToSchema)]
struct WcsSnapshot {
    /// The picture, base64.
    #[schema(content_encoding = "base64")]
    data: String,
}

/// WCS's own 500 body for a snapshot that could not be made in time.
#[derive(Serialize, ToSchema)]
struct WcsTimeout {
    /// `com.flashphoner.rest.server.exception.InternalErrorException`.
    exception: &'static str,
    /// The exception, status, message, time and path in one line.
    reason: String,
    /// `/rest-api/stream/snapshot`.
    path: &'static str,
    /// `Internal Server Error`.
    error: &'static str,
    /// `Snapshot response timeout`.
    #[schema(example = "Snapshot response timeout")]
    message: &'static str,
    /// Unix milliseconds.
    timestamp: u64,
    /// 500.
    status: u16,
}

// Only a schema: each body is answered from its own type (`WcsTimeout`, `AppError`).
/// The two 500 bodies of the WCS call.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum WcsServerError {
    /// No picture in time.
    Timeout(WcsTimeout),
    /// The picture service failed.
    Failed(ErrorBody),
}

const WCS_PATH: &str = "/rest-api/stream/snapshot";

/// WCS's own error body for a snapshot that could not be made in time.
fn wcs_timeout(now: SystemTime) -> Response {
    let ts = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let body = WcsTimeout {
        exception: "com.flashphoner.rest.server.exception.InternalErrorException",
        reason: format!("com.flashphoner.rest.server.exception.InternalErrorException, Internal Server Error, Snapshot response timeout, ts: {ts}, path: {WCS_PATH}"),
        path: WCS_PATH,
        error: "Internal Server Error",
        message: "Snapshot response timeout",
        timestamp: ts,
        status: 500,
    };
    (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
}

/// `POST /rest-api/stream/snapshot`: Flashphoner WCS's snapshot call, answered the way WCS does.
#[utoipa::path(
    post,
    path = "/rest-api/stream/snapshot",
    tag = TAG_WCS,
    request_body = WcsRequest,
    responses(
        (status = 200, description = "The picture", body = WcsSnapshot),
        (status = 400, description = "Bad JSON, an unknown format or an absurd size", body = ErrorBody),
        (status = 404, description = "No such stream is live", body = ErrorBody),
        (status = 429, description = "More picture requests than `picture_requests_per_s` from this client",
            body = ErrorBody, headers(("retry-after" = u32, description = "Seconds to wait"))),
        (status = 409, description = "A bare stream name that more than one live stream has; \
            `candidates` lists them", body = ErrorBody),
        (status = 500, description = "No picture could be made in time (no keyframe yet, an \
            audio-only stream, a broken bitstream): WCS's own body; or the picture service \
            failed: the error body", body = WcsServerError),
    )
)]
async fn wcs_snapshot(
    State(st): State<AppState>,
    Extension(caller): Extension<crate::auth::Caller>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> Response {
    let peer = peer.map(|Extension(ConnectInfo(a))| a.ip());
    if let Err(e) = pace(&st, &caller, peer).await {
        return e.into_response();
    }
    let req: WcsRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return AppError::BadRequest(format!("invalid JSON body: {e}")).into_response(),
    };
    let format = match req.format.as_deref() {
        None => ImageFormat::Png,
        Some(f) => match ImageFormat::parse(f) {
            Some(f) => f,
            None => {
                return AppError::BadRequest(format!("format must be png or jpg, got {f:?}"))
                    .into_response()
            }
        },
    };
    let (width, height, quality) = match req.numbers() {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    let request = SnapshotRequest {
        options: EncodeOptions {
            format,
            width,
            height,
            quality,
        },
        precision: Precision::Keyframe,
    };
    let stream = match st
        .hub
        .find_among(&req.stream_name, |key| sees_stream(&st, &caller, key))
    {
        Ok(s) => s,
        Err(e) => return AppError::Core(e).into_response(),
    };
    match st.snapshots.take(&stream, request).await {
        Ok(snap) => Json(WcsSnapshot {
            data: base64::engine::general_purpose::STANDARD.encode(&snap.image),
        })
        .into_response(),
        Err(livesnap_core::Error::Timeout(why)) => {
            tracing::warn!(stream = %stream.key, %why, "WCS snapshot timed out");
            wcs_timeout(st.hub.clock().wall())
        }
        Err(e) => AppError::Core(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The field a refusal names, and that it is a 400.
    fn refused(e: AppError) -> &'static str {
        assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{e}");
        match e {
            AppError::Field(f) => f.field,
            e => panic!("not a field error: {e}"),
        }
    }

    #[test]
    fn numbers_from_outside_are_plain_integers_in_range() {
        assert_eq!(bounded::<u32>("width", "8192", SIDE_RANGE).unwrap(), 8192);
        assert_eq!(bounded::<u8>("quality", "1", QUALITY_RANGE).unwrap(), 1);
        for text in [
            "0",
            "8193",
            "-1",
            "1.5",
            "1e16",
            "18446744073709551615",
            "18446744073709551616",
            "",
            " 5",
            "0x10",
        ] {
            let e = bounded::<u32>("width", text, SIDE_RANGE).unwrap_err();
            assert_eq!(refused(e), "width", "{text:?}");
        }
        let e = bounded::<u32>("width", &"9".repeat(10_000), SIDE_RANGE).unwrap_err();
        assert!(
            e.to_string().len() < 200,
            "the answer quotes at most a little: {e}"
        );
    }

    proptest! {
        /// Any text, and any integer written out, as a query parameter: an in-range value or a
        /// 400 naming the parameter; never a panic, never a value outside the range.
        #[test]
        fn any_text_is_in_range_or_a_400_naming_the_parameter(
            text in prop_oneof![
                any::<String>(),
                any::<u64>().prop_map(|n| n.to_string()),
                any::<i64>().prop_map(|n| n.to_string()),
                any::<f64>().prop_map(|n| n.to_string()),
                (0u64..=10_000).prop_map(|n| n.to_string()),
            ],
        ) {
            for (field, range) in [("width", SIDE_RANGE), ("quality", QUALITY_RANGE), ("limit", (1, 1000))] {
                match bounded::<u32>(field, &text, range) {
                    Ok(v) => {
                        prop_assert!((range.0..=range.1).contains(&u64::from(v)));
                        prop_assert_eq!(text.parse::<u64>().ok(), Some(u64::from(v)));
                    }
                    Err(e) => {
                        let in_range = text.parse::<u64>().is_ok_and(|v| (range.0..=range.1).contains(&v));
                        prop_assert!(!in_range, "{:?} refused: {}", text, e);
                        prop_assert_eq!(refused(e), field);
                    }
                }
            }
        }
    }
}
