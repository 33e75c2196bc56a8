//! `POST /v1/publish-urls`: signed publish URLs for one stream (see `ingest::publish_auth`), so
//! that an application can hand a camera or an encoder a URL that works until it expires.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use ingest::publish_auth::{sign_for, Purpose};
use media::stream::{StreamKey, DEFAULT_DOMAIN};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::AppState;
use crate::error::AppError;
use crate::openapi::{ErrorBody, TAG_STREAMS};

/// How long a minted URL works when the request names no `ttl_s`.
pub const DEFAULT_PUBLISH_TTL_S: u64 = 3600;
/// The longest `ttl_s` a request may ask for: a year.
pub const MAX_PUBLISH_TTL_S: u64 = 366 * 86_400;

/// What the URLs are made with: the secret, and where publishers reach this server.
#[derive(Clone)]
pub struct PublishUrlMaker {
    /// `publish_secret`; without it the URLs are unsigned (and work as they are).
    pub secret: Option<String>,
    /// The host publishers reach, when the settings name it (`public_url`); else the request's
    /// `Host` is used.
    pub host: Option<String>,
    /// The RTMP listener's port.
    pub rtmp_port: u16,
    /// The RTSP listener's port.
    pub rtsp_port: u16,
    /// Base of HTTP URLs (`public_url`).
    pub public_url: String,
}

impl std::fmt::Debug for PublishUrlMaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishUrlMaker")
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("host", &self.host)
            .field("rtmp_port", &self.rtmp_port)
            .field("rtsp_port", &self.rtsp_port)
            .finish()
    }
}

/// The routes with their OpenAPI operations.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(publish_urls))
}

/// `POST /v1/publish-urls`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PublishUrlRequest {
    /// Application name.
    app: String,
    /// Stream name.
    stream: String,
    /// Domain (virtual host), when not `_default`.
    #[serde(default)]
    domain: Option<String>,
    /// Seconds the URLs work (default 3600, at most a year).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 31_622_400)]
    ttl_s: Option<serde_json::Value>,
}

/// Publish URLs of one stream.
#[derive(Debug, Serialize, ToSchema)]
struct PublishUrls {
    /// `rtmp://host:port/app/stream?expires=...&sign=...` (OBS: server `rtmp://host:port/app`,
    /// stream key `stream?expires=...&sign=...`).
    rtmp: String,
    /// `rtsp://host:port/app/stream?expires=...&sign=...`.
    rtsp: String,
    /// The WHIP endpoint with the same query (WebRTC ingest).
    whip: String,
    /// `rtmp://host:port/app/stream?expires=...&sign=...` signed for playing, not publishing
    /// (players need it when the server has `rtmp_play` on and a `publish_secret`).
    rtmp_play: String,
    /// When they stop working, Unix seconds (absent when publishes need no signature).
    expires: Option<u64>,
    /// Whether they are signed: false when the server has no `publish_secret`, and any publish
    /// goes.
    signed: bool,
}

/// The host part (no port) of a `Host` header or a URL's authority.
fn host_only(authority: &str) -> &str {
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// `POST /v1/publish-urls`: RTMP, RTSP and WHIP URLs that may publish one stream until they
/// expire.
#[utoipa::path(
    post,
    path = "/v1/publish-urls",
    tag = TAG_STREAMS,
    request_body = PublishUrlRequest,
    responses(
        (status = 200, description = "The URLs", body = PublishUrls),
        (status = 400, description = "Bad JSON, a bad name, or `ttl_s` out of range",
            body = ErrorBody),
    )
)]
async fn publish_urls(
    State(st): State<AppState>,
    axum::Extension(caller): axum::Extension<crate::auth::Caller>,
    headers: HeaderMap,
    b: Bytes,
) -> Result<Json<PublishUrls>, AppError> {
    let req: PublishUrlRequest = serde_json::from_slice(&b)
        .map_err(|e| AppError::BadRequest(format!("invalid JSON body: {e}")))?;
    let domain = req
        .domain
        .as_deref()
        .unwrap_or(DEFAULT_DOMAIN)
        .to_ascii_lowercase();
    let domain = domain.as_str();
    // Names go into URLs as they are: refuse what a URL would read otherwise.
    for (field, v) in [
        ("app", &req.app),
        ("stream", &req.stream),
        ("domain", &domain.to_string()),
    ] {
        if v.chars()
            .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(AppError::BadRequest(format!(
                "{field} may hold only letters, digits, -, _ and . in a publish URL"
            )));
        }
    }
    if !caller.sees_domain(&st.accounts, domain) {
        return Err(AppError::NotFound(format!(
            "no domain {}",
            domain.chars().take(64).collect::<String>()
        )));
    }
    let key = StreamKey::new(domain, &req.app, &req.stream)
        .map_err(|e| AppError::BadRequest(e.to_string()))?;
    let ttl = match &req.ttl_s {
        None => DEFAULT_PUBLISH_TTL_S,
        Some(v) => crate::api::bounded("ttl_s", &v.to_string(), (1, MAX_PUBLISH_TTL_S))?,
    };
    let maker = &st.publish;
    let host = maker
        .host
        .clone()
        .or_else(|| {
            headers
                .get(axum::http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(|h| host_only(h).to_string())
        })
        .unwrap_or_else(|| "127.0.0.1".into());
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    let mut query = Vec::new();
    let mut play_query = Vec::new();
    let mut expires = None;
    // The domain's own secret (its account's), else the server's. An account without one of
    // its own gets no URL signed with the server's: the signature does not cover the domain,
    // so it would publish in any domain that takes the server's secret.
    let own = st.accounts.publish_secret_of(&key.domain);
    if own.is_none() && maker.secret.is_some() && !caller.is_admin() {
        return Err(AppError::Forbidden(
            "this account has no publish_secret of its own; the administrator sets one (PATCH /v1/accounts/{name})".into(),
        ));
    }
    let secret = own.or_else(|| maker.secret.clone());
    if let Some(secret) = &secret {
        // On the server's clock, as everything it times.
        let now = u64::try_from(st.hub.clock().unix_ms() / 1000).unwrap_or(0);
        let at = now.saturating_add(ttl);
        for (purpose, query) in [
            (Purpose::Publish, &mut query),
            (Purpose::Play, &mut play_query),
        ] {
            let sign = sign_for(purpose, secret.as_bytes(), &key.app, &key.stream, at);
            query.push(format!("expires={at}&sign={sign}"));
        }
        expires = Some(at);
    }
    if key.domain != DEFAULT_DOMAIN {
        query.push(format!("domain={}", key.domain));
        play_query.push(format!("domain={}", key.domain));
    }
    let joined = |q: Vec<String>| {
        if q.is_empty() {
            String::new()
        } else {
            format!("?{}", q.join("&"))
        }
    };
    let path = format!("{}/{}{}", key.app, key.stream, joined(query));
    let play_path = format!("{}/{}{}", key.app, key.stream, joined(play_query));
    Ok(Json(PublishUrls {
        rtmp: format!("rtmp://{host}:{}/{path}", maker.rtmp_port),
        rtsp: format!("rtsp://{host}:{}/{path}", maker.rtsp_port),
        whip: format!("{}/whip/{path}", maker.public_url.trim_end_matches('/')),
        rtmp_play: format!("rtmp://{host}:{}/{play_path}", maker.rtmp_port),
        expires,
        signed: secret.is_some(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lose_their_port() {
        assert_eq!(host_only("cams.example.com:8081"), "cams.example.com");
        assert_eq!(host_only("10.0.0.5"), "10.0.0.5");
        assert_eq!(host_only("[::1]:8081"), "::1");
    }
}
