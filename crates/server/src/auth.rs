//! Who may ask: the API key in `Authorization: Bearer <key>`, checked by one layer before any
//! handler runs.
//!
//! With no `admin_key` the API is open, as it always was (the server warns at start when it
//! listens beyond loopback). With one, every route needs it but `/healthz`, `/readyz` and, with
//! `metrics_public`, `/metrics`. A missing or wrong key is a `401` with `WWW-Authenticate`; an
//! address that sent `auth_failures_per_minute` wrong keys within a minute is answered `429`
//! until the minute is over, whatever key it sends. Keys are compared as SHA-256 digests in
//! constant time, and never logged, echoed or counted by value.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use livesnap_core::accounts::digest;
use livesnap_core::clock::Clock;
use tracing::warn;

use crate::error::AppError;
use livesnap_core::accounts::{Accounts, Role};

/// Routes every caller may reach, key or not: what load balancers and orchestrators probe.
pub const PUBLIC_PATHS: [&str; 2] = ["/healthz", "/readyz"];
/// Paths under these need no API key: WHIP publishes are checked by their publish signature
/// (`publish_secret`), as RTMP and RTSP publishes are.
pub const PUBLIC_PREFIXES: [&str; 1] = ["/whip/"];
/// Wrong keys one address may send per minute by default before it is answered `429`.
pub const DEFAULT_FAILURES_PER_MINUTE: u32 = 10;
/// The window failures are counted in.
pub const FAILURE_WINDOW_MS: i64 = 60_000;
/// Addresses whose failures are remembered at once; past it the oldest windows are forgotten
/// (a flood from many addresses costs bounded memory).
pub const MAX_TRACKED_ADDRESSES: usize = 10_000;
/// Longest key read from a header, in bytes: longer is wrong without hashing it.
pub const MAX_KEY_LEN: usize = 256;

/// Who a request comes from, put in its extensions by [`authenticate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The API is open (no `admin_key`): anyone is the administrator.
    Open,
    /// The holder of `admin_key`.
    Admin,
    /// A key of an account.
    Account {
        /// The account.
        name: String,
        /// What the key may do.
        role: Role,
    },
}

impl Caller {
    /// Whether the caller sees everything (the open API, the administrator).
    pub fn is_admin(&self) -> bool {
        matches!(self, Caller::Open | Caller::Admin)
    }

    /// Whether the caller may see what is in `domain`: the administrator everything, an
    /// account its own domains only.
    pub fn sees_domain(&self, accounts: &Accounts, domain: &str) -> bool {
        match self {
            Caller::Open | Caller::Admin => true,
            Caller::Account { name, .. } => accounts.owner_of(domain).as_deref() == Some(name),
        }
    }

    /// Whether the caller may see account `account`.
    pub fn sees_account(&self, account: &str) -> bool {
        match self {
            Caller::Open | Caller::Admin => true,
            Caller::Account { name, .. } => name == account,
        }
    }
}

/// The routes an account's key reaches: its account and keys, its streams (by its domains) and
/// their pictures, publish URLs for them, its templates, bindings, jobs and usage, and the API
/// document, and the stored snapshots of its domains and jobs. The others (callbacks and the
/// operations routes) are the administrator's.
fn account_may_use(path: &str) -> bool {
    path == "/openapi.json"
        || path == "/v1/accounts"
        || path.starts_with("/v1/accounts/")
        || path == "/v1/streams"
        || path.starts_with("/v1/streams/")
        || path == "/v1/publish-urls"
        || path == "/v1/templates"
        || path.starts_with("/v1/templates/")
        || path == "/v1/bindings"
        || path == "/v1/jobs"
        || path.starts_with("/v1/jobs/")
        || path == "/v1/usage"
        || path == "/v1/snapshots"
        || path.starts_with("/v1/snapshots/")
        || path == "/rest-api/stream/snapshot"
}

/// Compares two digests in time that does not depend on where they differ.
fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// The key of a request: `Authorization: Bearer <key>` (the scheme in any case).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| key.trim())
        .filter(|k| !k.is_empty())
}

/// The address failures are counted under: an IPv6 client is its /64, as the connection limits
/// count it (one host holds a whole /64).
fn counted_address(ip: IpAddr) -> IpAddr {
    // The connection limits' own rule: an IPv4 client on a dual-stack listener
    // (`::ffff:a.b.c.d`) is its IPv4 address, an IPv6 one its /64.
    ingest::frontend::source_of(ip)
}

/// Wrong keys per address in the current minute.
#[derive(Debug, Default)]
struct Failures {
    /// Address -> (start of its window, Unix ms; failures in it).
    by_address: HashMap<IpAddr, (i64, u32)>,
}

/// The API's keys and the failures of wrong ones.
#[derive(Debug)]
pub struct Auth {
    admin: Option<[u8; 32]>,
    accounts: Option<Arc<Accounts>>,
    metrics_public: bool,
    failures_per_minute: u32,
    failures: Mutex<Failures>,
    clock: Arc<dyn Clock>,
}

impl Auth {
    /// Keys from the settings: `admin_key` (none: the API is open).
    pub fn new(
        admin_key: Option<&str>,
        metrics_public: bool,
        failures_per_minute: u32,
        clock: Arc<dyn Clock>,
    ) -> Auth {
        Auth {
            admin: admin_key.map(digest),
            accounts: None,
            metrics_public,
            failures_per_minute: failures_per_minute.max(1),
            failures: Mutex::new(Failures::default()),
            clock,
        }
    }

    /// Accounts' keys are checked against `accounts` too.
    pub fn with_accounts(mut self, accounts: Arc<Accounts>) -> Auth {
        self.accounts = Some(accounts);
        self
    }

    /// Whether the API is open to anyone.
    pub fn is_open(&self) -> bool {
        self.admin.is_none()
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, Failures> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `ip` has used up its wrong keys for this minute; if so, the seconds left.
    fn blocked(&self, ip: IpAddr, now_ms: i64) -> Option<u64> {
        let f = self.failures();
        let (start, n) = *f.by_address.get(&counted_address(ip))?;
        let left = start + FAILURE_WINDOW_MS - now_ms;
        (left > 0 && n >= self.failures_per_minute).then(|| (left as u64).div_ceil(1000))
    }

    /// Counts a wrong key from `ip`.
    fn record_failure(&self, ip: IpAddr, now_ms: i64) {
        let mut f = self.failures();
        if f.by_address.len() >= MAX_TRACKED_ADDRESSES {
            f.by_address
                .retain(|_, (start, _)| *start + FAILURE_WINDOW_MS > now_ms);
            if f.by_address.len() >= MAX_TRACKED_ADDRESSES {
                // Still full of live windows: forget the oldest half.
                let mut starts: Vec<i64> = f.by_address.values().map(|v| v.0).collect();
                starts.sort_unstable();
                let cut = starts[starts.len() / 2];
                f.by_address.retain(|_, (start, _)| *start > cut);
            }
        }
        let entry = f
            .by_address
            .entry(counted_address(ip))
            .or_insert((now_ms, 0));
        if entry.0 + FAILURE_WINDOW_MS <= now_ms {
            *entry = (now_ms, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }

    /// Who `key` is, if anyone.
    fn caller(&self, key: &str) -> Option<Caller> {
        if key.len() > MAX_KEY_LEN {
            return None;
        }
        let d = digest(key);
        match &self.admin {
            Some(admin) if same_digest(&d, admin) => Some(Caller::Admin),
            _ => {
                let owner = self.accounts.as_ref()?.key_owner(key)?;
                Some(Caller::Account {
                    name: owner.account,
                    role: owner.role,
                })
            }
        }
    }

    fn is_public(&self, path: &str) -> bool {
        PUBLIC_PATHS.contains(&path)
            || PUBLIC_PREFIXES.iter().any(|p| path.starts_with(p))
            || crate::console::PUBLIC_PATHS.contains(&path)
            || crate::console::PUBLIC_PREFIXES
                .iter()
                .any(|p| path.starts_with(p))
            || (self.metrics_public && path == "/metrics")
    }
}

/// The layer: lets a request through with its [`Caller`] in its extensions, or answers it
/// `401` (no key, or a wrong one) or `429` (too many wrong keys from its address).
pub async fn authenticate(State(auth): State<Arc<Auth>>, mut req: Request, next: Next) -> Response {
    if auth.is_open() {
        req.extensions_mut().insert(Caller::Open);
        return next.run(req).await;
    }
    if auth.is_public(req.uri().path()) {
        return next.run(req).await;
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let now = auth.clock.unix_ms();
    if let Some(retry_s) = peer.and_then(|ip| auth.blocked(ip, now)) {
        return AppError::TooManyAuthFailures {
            retry_after_s: retry_s,
        }
        .into_response();
    }
    let Some(key) = bearer(req.headers()) else {
        return AppError::Unauthorized {
            message: "this server needs an API key: Authorization: Bearer <key>".into(),
            invalid: false,
        }
        .into_response();
    };
    match auth.caller(key) {
        Some(caller) => {
            if let Caller::Account { role, .. } = &caller {
                let reads = matches!(
                    *req.method(),
                    axum::http::Method::GET | axum::http::Method::HEAD
                );
                if *role == Role::Read && !reads {
                    return AppError::Forbidden("a read key cannot change anything".into())
                        .into_response();
                }
                if !account_may_use(req.uri().path()) {
                    return AppError::Forbidden(format!(
                        "{} is the administrator's: an account's key reaches its account, its streams and their publish URLs",
                        req.uri().path().chars().take(100).collect::<String>()
                    ))
                    .into_response();
                }
            }
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        None => {
            if let Some(ip) = peer {
                auth.record_failure(ip, now);
            }
            let shown = peer.map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
            warn!(peer = %shown, path = %req.uri().path(), "request with a wrong API key refused");
            AppError::Unauthorized {
                message: "the API key is not valid".into(),
                invalid: true,
            }
            .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use livesnap_core::clock::ManualClock;
    use std::time::Duration;

    #[test]
    fn bearer_keys_are_read_from_the_header() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert("authorization", "bearer  abc ".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        for other in ["Basic abc", "Bearer ", "Bearer", "abc"] {
            h.insert("authorization", other.parse().unwrap());
            assert_eq!(bearer(&h), None, "{other}");
        }
    }

    #[test]
    fn only_the_admin_key_is_the_admin() {
        let auth = Auth::new(
            Some("s3cret-key"),
            false,
            3,
            Arc::new(ManualClock::default()),
        );
        assert_eq!(auth.caller("s3cret-key"), Some(Caller::Admin));
        for wrong in ["s3cret-ke", "s3cret-key ", "", "S3CRET-KEY"] {
            assert_eq!(auth.caller(wrong), None, "{wrong:?}");
        }
        assert_eq!(auth.caller(&"x".repeat(MAX_KEY_LEN + 1)), None);
        assert!(!auth.is_open());
        assert!(Auth::new(None, false, 3, Arc::new(ManualClock::default())).is_open());
        assert!(auth.is_public("/healthz") && !auth.is_public("/metrics"));
    }

    #[test]
    fn wrong_keys_block_an_address_for_the_rest_of_its_minute() {
        let clock = Arc::new(ManualClock::default());
        let auth = Auth::new(Some("k"), false, 3, clock.clone());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let now = || clock.unix_ms();
        for _ in 0..2 {
            auth.record_failure(a, now());
        }
        assert_eq!(auth.blocked(a, now()), None);
        auth.record_failure(a, now());
        assert_eq!(auth.blocked(a, now()), Some(60));
        assert_eq!(
            auth.blocked(b, now()),
            None,
            "another address is not blocked"
        );
        clock.advance(Duration::from_millis(59_500));
        assert_eq!(auth.blocked(a, now()), Some(1));
        clock.advance(Duration::from_millis(500));
        assert_eq!(auth.blocked(a, now()), None, "a new minute");
        // One IPv6 host is its /64.
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        for i in 0..3 {
            auth.record_failure(v6(&format!("2001:db8::{i}")), now());
        }
        assert!(auth.blocked(v6("2001:db8::ffff"), now()).is_some());
        assert!(auth.blocked(v6("2001:db8:0:1::1"), now()).is_none());
        // IPv4 clients of a dual-stack listener are each their own.
        for _ in 0..3 {
            auth.record_failure(v6("::ffff:198.51.100.1"), now());
        }
        assert!(auth.blocked(v6("::ffff:198.51.100.1"), now()).is_some());
        assert!(auth.blocked(v6("::ffff:198.51.100.2"), now()).is_none());
    }

    #[test]
    fn a_flood_from_many_addresses_is_bounded() {
        let clock = Arc::new(ManualClock::default());
        let auth = Auth::new(Some("k"), false, 3, clock.clone());
        for i in 0..(MAX_TRACKED_ADDRESSES as u32 * 2) {
            auth.record_failure(IpAddr::from(i.to_be_bytes()), clock.unix_ms());
            if i % 1000 == 0 {
                clock.advance(Duration::from_millis(1));
            }
        }
        assert!(auth.failures().by_address.len() <= MAX_TRACKED_ADDRESSES);
    }
}
