//! End-to-end: API keys in the real binary. With `admin_key` set, every route of the OpenAPI
//! document but `/healthz` and `/readyz` answers `401` with `WWW-Authenticate: Bearer` without
//! the key and with a wrong one, and does not with the key; `metrics_public` opens `/metrics`
//! alone; an address that sends too many wrong keys is answered `429` until its minute is over,
//! even with the right key; the key appears nowhere in the log.

mod common;

use common::*;
use serde_json::Value;

const KEY: &str = "e2e-admin-key-0123456789abcdef";

fn call(s: &Server, method: &str, path: &str, key: Option<&str>) -> Resp {
    let auth = key.map(|k| format!("Bearer {k}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    let body = matches!(method, "POST" | "PUT" | "PATCH").then_some("{}");
    request_with(method, &s.url(path), body, &headers)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// Every (method, path) of the OpenAPI document, its path parameters filled in.
fn routes(doc: &Value) -> Vec<(String, String)> {
    let mut out = vec![];
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                let mut p = String::new();
                for part in path.split('/') {
                    if !p.is_empty() || !part.is_empty() {
                        p.push('/');
                    }
                    p.push_str(if part.starts_with('{') { "x1" } else { part });
                }
                out.push((method.to_uppercase(), p));
            }
        }
    }
    out
}

#[test]
fn every_route_but_health_needs_the_admin_key() {
    let s = Server::start_with(
        &[
            ("LIVESNAP_ADMIN_KEY", KEY),
            ("LIVESNAP_AUTH_FAILURES_PER_MINUTE", "100000"),
        ],
        &[],
    );
    let doc = call(&s, "GET", "/openapi.json", Some(KEY)).json();
    let routes = routes(&doc);
    assert!(
        routes.len() >= 30,
        "{} routes in the document",
        routes.len()
    );
    assert!(routes.iter().any(|(_, p)| p == "/rest-api/stream/snapshot"));
    for (method, path) in &routes {
        let public = path == "/healthz" || path == "/readyz";
        for (what, key) in [("no key", None), ("a wrong key", Some("wrong"))] {
            let r = call(&s, method, path, key);
            if public {
                assert_ne!(r.status, 401, "{method} {path} with {what}");
                continue;
            }
            assert_eq!(r.status, 401, "{method} {path} with {what}: {}", r.text());
            let challenge = r.header("www-authenticate").unwrap_or("");
            assert!(
                challenge.starts_with("Bearer"),
                "{method} {path}: {challenge:?}"
            );
            assert_eq!(
                challenge.contains("invalid_token"),
                key.is_some(),
                "{method} {path} with {what}: {challenge:?}"
            );
            let body = r.json();
            assert_eq!(body["status"], 401, "{body}");
        }
        let r = call(&s, method, path, Some(KEY));
        assert_ne!(r.status, 401, "{method} {path} with the key: {}", r.text());
    }
    // An unknown path says nothing without the key, and is a 404 with it.
    assert_eq!(call(&s, "GET", "/v1/nothing", None).status, 401);
    assert_eq!(call(&s, "GET", "/v1/nothing", Some(KEY)).status, 404);
    // The scheme's case does not matter.
    let r = request_with(
        "GET",
        &s.url("/v1/streams"),
        None,
        &[("authorization", &format!("bearer {KEY}"))],
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(!s.log_text().contains(KEY), "the key is in the log");
    assert!(
        !s.log_text().contains("wrong\""),
        "a wrong key is in the log"
    );
    s.stop();
}

#[test]
fn wrong_keys_are_rate_limited_per_address_and_metrics_can_be_public() {
    let s = Server::start_with(
        &[
            ("LIVESNAP_ADMIN_KEY", KEY),
            ("LIVESNAP_AUTH_FAILURES_PER_MINUTE", "3"),
            ("LIVESNAP_METRICS_PUBLIC", "true"),
        ],
        &[],
    );
    // /metrics is public; nothing else is.
    let m = call(&s, "GET", "/metrics", None);
    assert_eq!(m.status, 200);
    assert!(m.text().contains("livesnap_connections"));
    assert_eq!(call(&s, "GET", "/openapi.json", None).status, 401);
    // Missing keys are not guesses: they do not count.
    for _ in 0..5 {
        assert_eq!(call(&s, "GET", "/v1/streams", None).status, 401);
    }
    assert_eq!(call(&s, "GET", "/v1/streams", Some(KEY)).status, 200);
    for i in 0..3 {
        let r = call(&s, "GET", "/v1/streams", Some(&format!("guess-{i}")));
        assert_eq!(r.status, 401, "guess {i}");
    }
    // The fourth request of the minute is refused, whatever its key.
    for key in [Some("guess-3"), Some(KEY), None] {
        let r = call(&s, "GET", "/v1/streams", key);
        assert_eq!(r.status, 429, "{key:?}: {}", r.text());
        let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "retry-after {retry}");
        assert!(r.text().contains("wrong API key"), "{}", r.text());
    }
    // Health checks go on.
    assert_eq!(call(&s, "GET", "/healthz", None).status, 200);
    assert_eq!(call(&s, "GET", "/metrics", None).status, 200);
    let log = s.log_text();
    assert!(log.contains("wrong API key refused"), "{log}");
    assert!(!log.contains("guess-"), "a wrong key is in the log");
    s.stop();
}
