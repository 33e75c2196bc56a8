//! The HTTP API. It reads the hub and asks the snapshot service; it holds no logic of its own.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use livesnap_core::hub::{Hub, LiveStream};
use livesnap_core::snapshot::{Precision, Snapshot, SnapshotRequest, Snapshotter};
use media::picture::{EncodeOptions, ImageFormat, DEFAULT_JPEG_QUALITY};
use media::stream::{StreamKey, DEFAULT_DOMAIN};
use serde::Deserialize;
use serde_json::json;

use crate::error::AppError;

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
    /// Automatic snapshots, storage and the index.
    pub auto: Arc<livesnap_core::auto::Automation>,
    /// Webhooks.
    pub callbacks: Arc<crate::callbacks::Callbacks>,
    /// Base URL of this server for links.
    pub public_url: String,
    /// The Prometheus registry.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Longest a readiness check waits for the index or one storage location.
pub const READY_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// The object `/readyz` writes (then deletes) in each storage location to prove it writable.
pub const READY_PROBE_KEY: &str = "livesnap-readyz.probe";
/// The header that carries a request's id (set here when the client sent none).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The whole API as a router, so tests can call it without a socket. Every request gets an id
/// (`x-request-id`, the client's if it sent one), answered back and put in the span of every
/// log line of that request, and a time limit (`request_timeout_s`, then 408).
pub fn app(state: AppState) -> Router {
    use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
    let limit = state.max_request_bytes;
    let timeout = state.request_timeout;
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
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/streams", get(list_streams))
        .route("/v1/pictures", get(picture_stats))
        .route("/v1/streams/{app}/{stream}", get(get_stream))
        .route("/v1/streams/{app}/{stream}/snapshot.jpg", get(snapshot_jpg))
        .route("/v1/streams/{app}/{stream}/snapshot.png", get(snapshot_png))
        .route("/rest-api/stream/snapshot", post(wcs_snapshot))
        .merge(crate::auto_api::routes())
        .fallback(|| async { AppError::NotFound("no such endpoint".into()) })
        .layer(DefaultBodyLimit::max(limit))
        .layer(layers)
        .with_state(state)
}

/// `GET /metrics`: Prometheus text.
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

/// `GET /readyz`: 200 when the index answers and every storage location takes a write (a small
/// probe object, deleted again); else 503 naming each failing part.
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
            failing.push(json!({ "part": part, "name": name, "error": error }));
        }
    }
    storage.sort();
    failing.sort_by_key(|f| f["name"].as_str().map(str::to_string));
    if failing.is_empty() {
        Json(json!({ "status": "ready", "index": st.auto.index().backend(), "storage": storage }))
            .into_response()
    } else {
        tracing::warn!(failing = %serde_json::Value::from(failing.clone()), "not ready");
        let mut r = (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not ready", "failing": failing })),
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

async fn list_streams(State(st): State<AppState>) -> Json<serde_json::Value> {
    let streams: Vec<_> = st.hub.list().iter().map(|s| s.stats()).collect();
    Json(json!({ "streams": streams }))
}

/// What the picture service has done since start, and with which backends: an ingested stream
/// nobody asks a picture of shows up nowhere here (nothing is decoded for it).
async fn picture_stats(State(st): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "counters": st.snapshots.counters,
        "decoder": media::decode::default_decoder_name(),
        "jpeg_encoder": media::picture::jpeg_encoder_name(),
    }))
}

#[derive(Deserialize)]
struct DomainQuery {
    domain: Option<String>,
}

fn lookup(
    hub: &Hub,
    domain: Option<&str>,
    app: &str,
    stream: &str,
) -> Result<Arc<LiveStream>, AppError> {
    let domain = domain.unwrap_or(DEFAULT_DOMAIN);
    let key =
        StreamKey::new(domain, app, stream).map_err(|e| AppError::BadRequest(e.to_string()))?;
    hub.get(&key)
        .ok_or_else(|| AppError::Core(livesnap_core::Error::NotLive(key.to_string())))
}

async fn get_stream(
    State(st): State<AppState>,
    Path((app, stream)): Path<(String, String)>,
    Query(q): Query<DomainQuery>,
) -> Result<Json<serde_json::Value>, AppError> {
    let s = lookup(&st.hub, q.domain.as_deref(), &app, &stream)?;
    Ok(Json(serde_json::to_value(s.stats()).unwrap_or_default()))
}

/// Reads `width`, `height`, `quality`, `precision`, `domain` from the query by hand, so that a
/// bad value gets a JSON 400 naming the parameter.
fn image_request(
    format: ImageFormat,
    q: &HashMap<String, String>,
) -> Result<(SnapshotRequest, Option<String>), AppError> {
    let num = |name: &str| -> Result<Option<u32>, AppError> {
        q.get(name)
            .map(|v| {
                v.parse::<u32>().map_err(|_| {
                    AppError::BadRequest(format!("{name} must be a positive integer, got {v:?}"))
                })
            })
            .transpose()
    };
    let quality = match num("quality")? {
        Some(q @ 1..=100) => q as u8,
        Some(q) => {
            return Err(AppError::BadRequest(format!(
                "quality must be 1..=100, got {q}"
            )))
        }
        None => DEFAULT_JPEG_QUALITY,
    };
    let precision = match q.get("precision") {
        None => Precision::Keyframe,
        Some(p) => Precision::parse(p).ok_or_else(|| {
            AppError::BadRequest(format!("precision must be keyframe or latest, got {p:?}"))
        })?,
    };
    let options = EncodeOptions {
        format,
        width: num("width")?,
        height: num("height")?,
        quality,
    };
    Ok((
        SnapshotRequest { options, precision },
        q.get("domain").cloned(),
    ))
}

async fn snapshot_jpg(
    st: State<AppState>,
    path: Path<(String, String)>,
    q: Query<HashMap<String, String>>,
) -> Response {
    direct_image(st, path, q, ImageFormat::Jpeg)
        .await
        .unwrap_or_else(|e| e.into_response())
}

async fn snapshot_png(
    st: State<AppState>,
    path: Path<(String, String)>,
    q: Query<HashMap<String, String>>,
) -> Response {
    direct_image(st, path, q, ImageFormat::Png)
        .await
        .unwrap_or_else(|e| e.into_response())
}

async fn direct_image(
    State(st): State<AppState>,
    Path((app, stream)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    format: ImageFormat,
) -> Result<Response, AppError> {
    let (request, domain) = image_request(format, &q)?;
    let s = lookup(&st.hub, domain.as_deref(), &app, &stream)?;
    let snap = st.snapshots.take(&s, request).await?;
    Ok(image_response(format, &snap))
}

fn image_response(format: ImageFormat, snap: &Snapshot) -> Response {
    let mut headers = HeaderMap::new();
    let age_ms = SystemTime::now()
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
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WcsRequest {
    stream_name: String,
    format: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    quality: Option<u8>,
}

const WCS_PATH: &str = "/rest-api/stream/snapshot";

/// WCS's own error body for a snapshot that could not be made in time.
fn wcs_timeout() -> Response {
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let body = json!({
        "exception": "com.flashphoner.rest.server.exception.InternalErrorException",
        "reason": format!("com.flashphoner.rest.server.exception.InternalErrorException, Internal Server Error, Snapshot response timeout, ts: {ts}, path: {WCS_PATH}"),
        "path": WCS_PATH,
        "error": "Internal Server Error",
        "message": "Snapshot response timeout",
        "timestamp": ts,
        "status": 500,
    });
    (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
}

async fn wcs_snapshot(State(st): State<AppState>, body: Bytes) -> Response {
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
    let quality = match req.quality {
        None => DEFAULT_JPEG_QUALITY,
        Some(q @ 1..=100) => q,
        Some(q) => {
            return AppError::BadRequest(format!("quality must be 1..=100, got {q}"))
                .into_response()
        }
    };
    let request = SnapshotRequest {
        options: EncodeOptions {
            format,
            width: req.width,
            height: req.height,
            quality,
        },
        precision: Precision::Keyframe,
    };
    let stream = match st.hub.find(&req.stream_name) {
        Ok(s) => s,
        Err(e) => return AppError::Core(e).into_response(),
    };
    match st.snapshots.take(&stream, request).await {
        Ok(snap) => {
            Json(json!({ "data": base64::engine::general_purpose::STANDARD.encode(&snap.image) }))
                .into_response()
        }
        Err(livesnap_core::Error::Timeout(why)) => {
            tracing::warn!(stream = %stream.key, %why, "WCS snapshot timed out");
            wcs_timeout()
        }
        Err(e) => AppError::Core(e).into_response(),
    }
}
