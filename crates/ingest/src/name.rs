//! Which live stream a publish names, for every front end: `{domain}/{app}/{stream}` from the
//! app and stream name it gives (with their queries) and the URL it connected to (RTMP's tcUrl,
//! an RTSP or WHIP URL).
//!
//! The domain is a `domain=` or `vhost=` query parameter (on the stream name, the app or the
//! URL), else the URL's host when that host is one of the configured domains, else
//! [`DEFAULT_DOMAIN`]. An IP address or `localhost` is never a domain.

use media::stream::{StreamKey, DEFAULT_DOMAIN};

/// Splits `s` at the first `?` into the part before and the query after.
fn split_query(s: &str) -> (&str, &str) {
    match s.split_once('?') {
        Some((a, b)) => (a, b),
        None => (s, ""),
    }
}

/// The value of `domain=` or `vhost=` in a query string, when it is a host name: letters,
/// digits, `-`, `_` and `.`, not starting with `_` (livesnap's own domains, `_default` and pull
/// jobs' `_jobs`, are not a publisher's to name), and not an IP address or `localhost`.
fn domain_param(query: &str) -> Option<&str> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        let host_chars = v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        (matches!(k, "domain" | "vhost") && host_chars && !v.starts_with('_') && is_domain_name(v))
            .then_some(v)
    })
}

/// The host of an `rtmp://host[:port]/...` URL, lowercased.
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.split(':').next()?
    };
    Some(host.to_ascii_lowercase())
}

/// True when `host` can be a domain: not an IP address and not `localhost`.
pub fn is_domain_name(host: &str) -> bool {
    !host.is_empty() && host != "localhost" && host.parse::<std::net::IpAddr>().is_err()
}

/// Refuses a control character (a newline, an escape...) anywhere in `s`.
fn no_control_characters(what: &str, s: &str) -> media::Result<()> {
    match s.chars().find(|c| c.is_control()) {
        Some(c) => Err(media::Error::BadName(format!(
            "{what} contains the control character {c:?}"
        ))),
        None => Ok(()),
    }
}

/// Resolves the stream key of a publish. `url` is the URL the publisher connected to (RTMP's
/// tcUrl); `domains` are the configured domain names.
pub fn resolve(
    app: &str,
    name: &str,
    tc_url: Option<&str>,
    domains: &[String],
) -> media::Result<StreamKey> {
    // The whole of what the publisher sent, queries and URL included: only the parts that
    // become the key are checked by the key, and a newline elsewhere would still reach logs.
    no_control_characters("app", app)?;
    no_control_characters("stream", name)?;
    no_control_characters("URL", tc_url.unwrap_or(""))?;
    let (app, app_query) = split_query(app);
    let (stream, name_query) = split_query(name);
    let tc_query = tc_url.map(|u| split_query(u).1).unwrap_or("");
    let domain = domain_param(name_query)
        .or_else(|| domain_param(app_query))
        .or_else(|| domain_param(tc_query))
        .map(|d| d.to_ascii_lowercase())
        .or_else(|| {
            let host = url_host(tc_url?)?;
            (is_domain_name(&host) && domains.iter().any(|d| d.eq_ignore_ascii_case(&host)))
                .then_some(host)
        })
        .unwrap_or_else(|| DEFAULT_DOMAIN.to_string());
    // ffmpeg sends "live/cam1" as app "live" and name "cam1"; OBS may send an app with a
    // trailing slash. A name with a slash inside stays refused by the key check.
    StreamKey::new(&domain, app.trim_matches('/'), stream)
}

/// [`resolve`] for a publish named by a URL path (`/{app}/{stream}?{query}`: RTSP, WHIP): the
/// query goes with the stream name, as RTMP's does.
pub fn resolve_path(
    app: &str,
    stream: &str,
    query: &str,
    url: &str,
    domains: &[String],
) -> media::Result<StreamKey> {
    if query.is_empty() {
        resolve(app, stream, Some(url), domains)
    } else {
        resolve(app, &format!("{stream}?{query}"), Some(url), domains)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(app: &str, name: &str, tc: Option<&str>) -> String {
        resolve(app, name, tc, &["cams.example.com".to_string()])
            .map(|k| k.to_string())
            .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn default_domain_for_ip_and_localhost() {
        assert_eq!(
            key("live", "cam1", Some("rtmp://127.0.0.1:1935/live")),
            "_default/live/cam1"
        );
        assert_eq!(
            key("live", "cam1", Some("rtmp://localhost/live")),
            "_default/live/cam1"
        );
        assert_eq!(
            key("live", "cam1", Some("rtmp://[::1]:1935/live")),
            "_default/live/cam1"
        );
    }

    #[test]
    fn domain_from_query_and_configured_host() {
        assert_eq!(
            key("live", "cam1?domain=a.example&t=1", None),
            "a.example/live/cam1"
        );
        assert_eq!(
            key("live?vhost=b.example", "cam1", None),
            "b.example/live/cam1"
        );
        assert_eq!(
            key("live", "cam1", Some("rtmp://CAMS.example.com:1935/live")),
            "cams.example.com/live/cam1"
        );
        // A host that is not configured is not a domain.
        assert_eq!(
            key("live", "cam1", Some("rtmp://other.example.com/live")),
            "_default/live/cam1"
        );
        // livesnap's own domains are not a publisher's to name: pull jobs' streams live in
        // `_jobs`, and a publisher naming it must not take a job's name.
        assert_eq!(
            key("job", "1796475158239977481?domain=_jobs", None),
            "_default/job/1796475158239977481"
        );
        assert_eq!(key("live?vhost=_x", "cam1", None), "_default/live/cam1");
    }

    #[test]
    fn refuses_bad_names() {
        assert!(resolve("live", "", None, &[]).is_err());
        assert!(resolve("live", "..", None, &[]).is_err());
        assert!(resolve("", "cam", None, &[]).is_err());
        assert!(resolve("live", "a\u{0}b", None, &[]).is_err());
        // Control characters anywhere, queries and the URL included: none reaches a log line.
        for (app, name, url) in [
            ("live", "cam\nINFO forged line", None),
            ("live", "cam?x=1\r\nforged", None),
            ("live\n", "cam", None),
            ("live?domain=a.example\u{1b}[31m", "cam", None),
            ("live", "cam", Some("rtmp://host/live\n")),
            ("live", "cam\u{85}", None),
        ] {
            let err = resolve(app, name, url, &[]).unwrap_err().to_string();
            assert!(
                err.contains("control character"),
                "{app:?} {name:?} {url:?}: {err}"
            );
        }
    }
}
