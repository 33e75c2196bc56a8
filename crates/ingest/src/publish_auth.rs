//! Signed publish URLs, for every front end: with a `publish_secret`, a publish must carry
//! `expires=<unix seconds>&sign=<hex>` where `sign` is
//! `hex(HMAC-SHA256(secret, "{app}/{stream}:{expires}"))` of the stream key's app and stream.
//! RTMP publishers put it in the stream key's query (`rtmp://host/live/cam1?expires=...&sign=...`,
//! as OBS users paste it), or the app's or the URL's; RTSP publishers in the URL's query.
//! RTMP players (`rtmp_play`) sign `"play:{app}/{stream}:{expires}"` instead, so that a URL
//! handed to a viewer cannot publish into the name, nor a publisher's URL play it.
//!
//! Sans-IO: the front ends hand in what the publisher sent and the time; [`PublishAuth::check`]
//! says whether it may publish, and why not.

use hmac::{Hmac, Mac};
use media::stream::StreamKey;
use sha2::Sha256;

/// Longest `sign` value read, in characters (a SHA-256 HMAC is 64 hex digits).
const SIGN_HEX_LEN: usize = 64;

/// Why a publish was refused. The texts name what to fix, never the secret or the signature
/// expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `expires` or no `sign`.
    #[error("not signed: add ?expires=<unix seconds>&sign=<hex HMAC-SHA256> to the stream name")]
    Unsigned,
    /// `expires` is not a number, or `sign` not 64 hex digits.
    #[error("the signature is malformed: {0}")]
    Malformed(&'static str),
    /// The signature's time has passed.
    #[error("the signature expired at {expires} (unix seconds; now {now})")]
    Expired {
        /// When it expired.
        expires: u64,
        /// The server's time.
        now: u64,
    },
    /// The signature does not match the stream and time.
    #[error("the signature does not match this stream, expiry and use (publish or play)")]
    BadSignature,
    /// The address sent too many refused publishes this minute.
    #[error("too many refused publishes from this address; try again in {retry_after_s} s")]
    TooManyFailures {
        /// Seconds until its minute is over.
        retry_after_s: u64,
    },
}

/// Refused publishes one address (an IPv6 /64) may make per minute before every publish of it
/// is refused until the minute is over.
pub const FAILURES_PER_MINUTE: u32 = 10;
/// Addresses whose refusals are remembered at once; past it the expired ones are forgotten,
/// then all (a flood from many addresses costs bounded memory).
pub const MAX_TRACKED_ADDRESSES: usize = 10_000;
const WINDOW_S: u64 = 60;

/// The secrets publishes are checked against: a domain's own (its account's), else the
/// server's. Without either, a publish may go. Clones share the domains' secrets, which the
/// server replaces as accounts change.
#[derive(Clone, Default)]
pub struct PublishAuth {
    secret: Option<Vec<u8>>,
    by_domain: std::sync::Arc<std::sync::RwLock<std::collections::HashMap<String, Vec<u8>>>>,
    /// Address -> (start of its minute, Unix s; refusals in it).
    failures:
        std::sync::Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, (u64, u32)>>>,
}

impl std::fmt::Debug for PublishAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let domains = self.by_domain.read().map_or(0, |d| d.len());
        f.debug_struct("PublishAuth")
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("domains_with_secrets", &domains)
            .finish()
    }
}

/// What a signature lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Publish the stream (RTMP, RTSP, WHIP).
    Publish,
    /// Play it (RTMP play).
    Play,
}

/// `hex(HMAC-SHA256(secret, "{app}/{stream}:{expires}"))`: a publish signature.
pub fn sign(secret: &[u8], app: &str, stream: &str, expires: u64) -> String {
    sign_for(Purpose::Publish, secret, app, stream, expires)
}

/// The signature for `purpose`: plays sign `"play:{app}/{stream}:{expires}"`.
pub fn sign_for(purpose: Purpose, secret: &[u8], app: &str, stream: &str, expires: u64) -> String {
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    if purpose == Purpose::Play {
        mac.update(b"play:");
    }
    mac.update(format!("{app}/{stream}:{expires}").as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The value of `key` in the first of `queries` (`a=1&b=2` texts) that has it.
fn param<'a>(queries: &[&'a str], key: &str) -> Option<&'a str> {
    queries.iter().find_map(|q| {
        q.split('&').find_map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| v)
        })
    })
}

/// Decodes 64 hex digits.
fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != SIGN_HEX_LEN {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

impl PublishAuth {
    /// Publishes are checked against `secret`; `None` lets every publish go.
    pub fn new(secret: Option<&str>) -> PublishAuth {
        PublishAuth {
            secret: secret.map(|s| s.as_bytes().to_vec()),
            by_domain: Default::default(),
            failures: Default::default(),
        }
    }

    /// Replaces the domains' own secrets (domain -> secret).
    pub fn set_domain_secrets(&self, secrets: std::collections::HashMap<String, String>) {
        let secrets = secrets
            .into_iter()
            .map(|(d, s)| (d, s.into_bytes()))
            .collect();
        *self.by_domain.write().unwrap_or_else(|p| p.into_inner()) = secrets;
    }

    /// The secret a publish in `domain` is checked against, if any.
    fn secret_for(&self, domain: &str) -> Option<Vec<u8>> {
        self.by_domain
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(domain)
            .cloned()
            .or_else(|| self.secret.clone())
    }

    /// Checks the publish of `key` whose queries (the stream name's, the app's, the URL's:
    /// the first that has a parameter wins) are `queries`, at `now` (Unix seconds). A
    /// signature is good until `expires`, not at it.
    pub fn check(&self, key: &StreamKey, queries: &[&str], now: u64) -> Result<(), AuthError> {
        self.check_for(Purpose::Publish, key, queries, now)
    }

    /// [`PublishAuth::check`] of a signature for `purpose`.
    pub fn check_for(
        &self,
        purpose: Purpose,
        key: &StreamKey,
        queries: &[&str],
        now: u64,
    ) -> Result<(), AuthError> {
        let Some(secret) = self.secret_for(&key.domain) else {
            return Ok(());
        };
        let (Some(expires), Some(given)) = (param(queries, "expires"), param(queries, "sign"))
        else {
            return Err(AuthError::Unsigned);
        };
        let expires: u64 = expires
            .parse()
            .map_err(|_| AuthError::Malformed("expires must be unix seconds"))?;
        let given = unhex(&given.to_ascii_lowercase())
            .ok_or(AuthError::Malformed("sign must be 64 hex digits"))?;
        if now >= expires {
            return Err(AuthError::Expired { expires, now });
        }
        let want = unhex(&sign_for(purpose, &secret, &key.app, &key.stream, expires))
            .ok_or(AuthError::BadSignature)?;
        // In time that does not depend on where they differ.
        let differ = want
            .iter()
            .zip(&given)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if differ == 0 {
            Ok(())
        } else {
            Err(AuthError::BadSignature)
        }
    }
}

impl PublishAuth {
    /// [`PublishAuth::check`] for a publisher at `peer`: an address that had
    /// [`FAILURES_PER_MINUTE`] publishes refused this minute is refused whatever it sends, and
    /// every refusal counts.
    pub fn check_from(
        &self,
        peer: std::net::IpAddr,
        key: &StreamKey,
        queries: &[&str],
        now: u64,
    ) -> Result<(), AuthError> {
        self.check_from_for(Purpose::Publish, peer, key, queries, now)
    }

    /// [`PublishAuth::check_from`] of a signature for `purpose` (refusals of either count).
    pub fn check_from_for(
        &self,
        purpose: Purpose,
        peer: std::net::IpAddr,
        key: &StreamKey,
        queries: &[&str],
        now: u64,
    ) -> Result<(), AuthError> {
        let peer = crate::frontend::source_of(peer);
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&(start, n)) = failures.get(&peer) {
            if now < start + WINDOW_S && n >= FAILURES_PER_MINUTE {
                return Err(AuthError::TooManyFailures {
                    retry_after_s: start + WINDOW_S - now,
                });
            }
        }
        drop(failures);
        let result = self.check_for(purpose, key, queries, now);
        if result.is_err() {
            let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            if failures.len() >= MAX_TRACKED_ADDRESSES {
                failures.retain(|_, (start, _)| now < *start + WINDOW_S);
                if failures.len() >= MAX_TRACKED_ADDRESSES {
                    failures.clear();
                }
            }
            let entry = failures.entry(peer).or_insert((now, 0));
            if now >= entry.0 + WINDOW_S {
                *entry = (now, 0);
            }
            entry.1 = entry.1.saturating_add(1);
        }
        result
    }
}

/// The time publishes are checked at: the system's, in Unix seconds (the front ends read no
/// injected clock yet).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The query texts of a publish, in the order they are searched: the stream name's, the
/// app's, the URL's.
pub fn queries<'a>(app: &'a str, name: &'a str, url: Option<&'a str>) -> [&'a str; 3] {
    let q = |s: &'a str| s.split_once('?').map_or("", |(_, q)| q);
    [q(name), q(app), url.map_or("", q)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &str = "publish-secret";

    /// A play signature does not publish, nor a publish signature play.
    #[test]
    fn play_and_publish_signatures_are_not_interchangeable() {
        let auth = PublishAuth::new(Some(SECRET));
        let k = key("live", "cam1");
        let q = |purpose| {
            format!(
                "expires=2000&sign={}",
                sign_for(purpose, SECRET.as_bytes(), "live", "cam1", 2000)
            )
        };
        let (publish, play) = (q(Purpose::Publish), q(Purpose::Play));
        assert_eq!(
            auth.check_for(Purpose::Publish, &k, &[&publish], 1000),
            Ok(())
        );
        assert_eq!(auth.check_for(Purpose::Play, &k, &[&play], 1000), Ok(()));
        assert_eq!(
            auth.check_for(Purpose::Publish, &k, &[&play], 1000),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            auth.check_for(Purpose::Play, &k, &[&publish], 1000),
            Err(AuthError::BadSignature)
        );
    }

    fn key(app: &str, stream: &str) -> StreamKey {
        StreamKey::new("_default", app, stream).unwrap()
    }

    fn signed(app: &str, stream: &str, expires: u64) -> String {
        format!(
            "expires={expires}&sign={}",
            sign(SECRET.as_bytes(), app, stream, expires)
        )
    }

    #[test]
    fn a_signed_publish_goes_and_others_are_refused_with_the_reason() {
        let auth = PublishAuth::new(Some(SECRET));
        let k = key("live", "cam1");
        let good = signed("live", "cam1", 2000);
        assert_eq!(auth.check(&k, &[&good], 1000), Ok(()));
        // In the app's or the URL's query too, and the sign in upper case.
        assert_eq!(auth.check(&k, &["", &good, ""], 1000), Ok(()));
        assert_eq!(auth.check(&k, &["x=1", "", &good], 1000), Ok(()));
        assert_eq!(
            auth.check(
                &k,
                &[&good
                    .to_ascii_uppercase()
                    .replace("EXPIRES", "expires")
                    .replace("SIGN", "sign")],
                1000
            ),
            Ok(())
        );
        assert_eq!(
            auth.check(&k, &["", "", ""], 1000),
            Err(AuthError::Unsigned)
        );
        assert_eq!(
            auth.check(&k, &["expires=2000"], 1000),
            Err(AuthError::Unsigned)
        );
        assert!(matches!(
            auth.check(&k, &["expires=soon&sign=00"], 1000),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            auth.check(&k, &["expires=2000&sign=abc"], 1000),
            Err(AuthError::Malformed(_))
        ));
        assert_eq!(
            auth.check(&k, &[&good], 2000),
            Err(AuthError::Expired {
                expires: 2000,
                now: 2000
            })
        );
        assert_eq!(
            auth.check(&key("live", "cam2"), &[&good], 1000),
            Err(AuthError::BadSignature)
        );
        // Without a secret, anything goes.
        let open = PublishAuth::new(None);
        assert_eq!(open.check(&k, &[""], 5), Ok(()));
        // A domain's own secret: publishes there need it, and only it; others stay open.
        let shared = open.clone();
        shared.set_domain_secrets([("cams.example".to_string(), "theirs".to_string())].into());
        let theirs = StreamKey::new("cams.example", "live", "cam1").unwrap();
        assert_eq!(open.check(&theirs, &[""], 5), Err(AuthError::Unsigned));
        let q = format!("expires=10&sign={}", sign(b"theirs", "live", "cam1", 10));
        assert_eq!(open.check(&theirs, &[&q], 5), Ok(()));
        assert_eq!(
            open.check(&theirs, &[&good], 5),
            Err(AuthError::BadSignature)
        );
        assert_eq!(open.check(&k, &[""], 5), Ok(()));
        // No message holds the signature.
        let e = auth
            .check(&key("live", "cam2"), &[&good], 1000)
            .unwrap_err();
        assert!(!e.to_string().contains(&good[20..]), "{e}");
    }

    #[test]
    fn refused_publishes_are_counted_per_address() {
        let auth = PublishAuth::new(Some(SECRET));
        let k = key("live", "cam1");
        let a: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        let b: std::net::IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..FAILURES_PER_MINUTE {
            assert_eq!(auth.check_from(a, &k, &[""], 100), Err(AuthError::Unsigned));
        }
        // Blocked for the rest of its minute, even signed; another address is not.
        let good = signed("live", "cam1", 1000);
        assert_eq!(
            auth.check_from(a, &k, &[&good], 130),
            Err(AuthError::TooManyFailures { retry_after_s: 30 })
        );
        assert_eq!(auth.check_from(b, &k, &[&good], 130), Ok(()));
        assert_eq!(auth.check_from(a, &k, &[&good], 160), Ok(()));
        // Without a secret nothing is refused, so nothing is counted.
        let open = PublishAuth::new(None);
        for _ in 0..(FAILURES_PER_MINUTE * 2) {
            assert_eq!(open.check_from(a, &k, &[""], 100), Ok(()));
        }
    }

    #[test]
    fn queries_come_from_the_name_the_app_and_the_url() {
        assert_eq!(
            queries("live?a=1", "cam?b=2", Some("rtmp://h/live?c=3")),
            ["b=2", "a=1", "c=3"]
        );
        assert_eq!(queries("live", "cam", None), ["", "", ""]);
    }

    proptest! {
        /// Any change to the app, the stream or the expiry fails the signature; a signature
        /// fails at exactly its expiry and holds the second before.
        #[test]
        fn any_change_fails_and_expiry_is_exact(
            app in "[a-z0-9]{1,12}",
            stream in "[a-z0-9]{1,12}",
            other in "[a-z0-9]{1,12}",
            expires in 1u64..4_000_000_000,
            delta in 1u64..1000,
        ) {
            let auth = PublishAuth::new(Some(SECRET));
            let good = signed(&app, &stream, expires);
            let k = key(&app, &stream);
            prop_assert_eq!(auth.check(&k, &[&good], expires - 1), Ok(()));
            prop_assert_eq!(
                auth.check(&k, &[&good], expires),
                Err(AuthError::Expired { expires, now: expires })
            );
            if other != app {
                prop_assert_eq!(auth.check(&key(&other, &stream), &[&good], 0), Err(AuthError::BadSignature));
            }
            if other != stream {
                prop_assert_eq!(auth.check(&key(&app, &other), &[&good], 0), Err(AuthError::BadSignature));
            }
            // The signature of one expiry with another expiry.
            let sig = sign(SECRET.as_bytes(), &app, &stream, expires);
            let moved = format!("expires={}&sign={sig}", expires + delta);
            prop_assert_eq!(auth.check(&k, &[&moved], 0), Err(AuthError::BadSignature));
            // Another secret's signature.
            let theirs = format!("expires={expires}&sign={}", sign(b"another", &app, &stream, expires));
            prop_assert_eq!(auth.check(&k, &[&theirs], 0), Err(AuthError::BadSignature));
        }
    }
}
