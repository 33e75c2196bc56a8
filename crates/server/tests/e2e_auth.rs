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
        // WHIP takes no key: a publish is checked by its signature (`publish_secret`), as
        // over RTMP and RTSP (e2e_whip checks it).
        let public = path == "/healthz" || path == "/readyz" || path.starts_with("/whip/");
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

/// Every route of the OpenAPI document, with its path naming one account's resources: another
/// account's key never gets them (no 2xx, nothing of them in the answer), and a read key of
/// the owner changes nothing (403 for every method but GET).
#[test]
fn another_accounts_key_never_reaches_and_a_read_key_never_changes() {
    let s = Server::start_with(
        &[
            ("LIVESNAP_ADMIN_KEY", KEY),
            ("LIVESNAP_AUTH_FAILURES_PER_MINUTE", "100000"),
        ],
        &[],
    );
    let post = |path: &str, key: &str, body: serde_json::Value| -> Value {
        let auth = format!("Bearer {key}");
        let r = request_with(
            "POST",
            &s.url(path),
            Some(&body.to_string()),
            &[("authorization", &auth)],
        )
        .unwrap();
        assert!(
            r.status / 100 == 2,
            "POST {path}: {} {}",
            r.status,
            r.text()
        );
        r.json()
    };
    post(
        "/v1/accounts",
        KEY,
        serde_json::json!({"name": "acme", "domains": ["acme.example"]}),
    );
    post(
        "/v1/accounts",
        KEY,
        serde_json::json!({"name": "beta", "domains": ["beta.example"]}),
    );
    let acme = post(
        "/v1/accounts/acme/keys",
        KEY,
        serde_json::json!({"role": "admin"}),
    );
    let acme_key = acme["key"].as_str().unwrap().to_string();
    let acme_key_id = acme["id"].as_str().unwrap().to_string();
    let read = post(
        "/v1/accounts/acme/keys",
        KEY,
        serde_json::json!({"role": "read"}),
    )["key"]
        .as_str()
        .unwrap()
        .to_string();
    let beta = post(
        "/v1/accounts/beta/keys",
        KEY,
        serde_json::json!({"role": "admin"}),
    )["key"]
        .as_str()
        .unwrap()
        .to_string();
    post(
        "/v1/templates",
        &acme_key,
        serde_json::json!({"name": "every", "interval_s": 5}),
    );
    post(
        "/v1/bindings",
        &acme_key,
        serde_json::json!({"domain": "acme.example", "template": "every"}),
    );
    let job = post(
        "/v1/jobs",
        &acme_key,
        serde_json::json!({"name": "cam", "input_url": "rtsp://127.0.0.1:9/none", "template": "every"}),
    );
    let job_id = job["id"].as_str().unwrap().to_string();

    let doc = call(&s, "GET", "/openapi.json", Some(KEY)).json();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let method = method.to_uppercase();
            // acme's own resources in the path.
            let filled = path
                .replace(
                    "/v1/accounts/{name}/keys/{id}",
                    &format!("/v1/accounts/acme/keys/{acme_key_id}"),
                )
                .replace("/v1/accounts/{name}", "/v1/accounts/acme")
                .replace("/v1/templates/{name}", "/v1/templates/every")
                .replace("/v1/jobs/{id}", &format!("/v1/jobs/{job_id}"))
                .replace("{id}", "x1")
                .replace("{app}", "live")
                .replace("{stream}", "cam");
            // WHIP takes no key (a publish is checked by its signature, as over RTMP).
            let is_public =
                filled == "/healthz" || filled == "/readyz" || filled.starts_with("/whip/");
            if is_public {
                continue;
            }
            let names_acme = path.contains('{')
                && (filled.contains("acme")
                    || filled.contains(&job_id)
                    || filled.contains("every"));
            let r = call(&s, &method, &filled, Some(&beta));
            let text = r.text();
            // An id the request named may be echoed in its "not found"; nothing else of acme's.
            let shows = |secret: &str| !filled.contains(secret) && text.contains(secret);
            assert!(
                !shows(&job_id) && !shows("acme.example") && !shows(&acme_key_id),
                "{method} {filled} with beta's key shows acme's: {text}"
            );
            // 400: a body refused before anything is looked up, the same whoever owns what.
            if names_acme {
                assert!(
                    r.status == 404 || r.status == 403 || r.status == 400,
                    "{method} {filled} with beta's key: {} {text}",
                    r.status
                );
            }
            if method != "GET" {
                let r = call(&s, &method, &filled, Some(&read));
                assert_eq!(
                    r.status,
                    403,
                    "{method} {filled} with acme's read key: {}",
                    r.text()
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 40, "{checked} routes checked");
    // A valid body to another's template is not found.
    let auth = format!("Bearer {beta}");
    let r = request_with(
        "PUT",
        &s.url("/v1/templates/every"),
        Some(r#"{"interval_s": 5}"#),
        &[("authorization", &auth)],
    )
    .unwrap();
    assert_eq!(r.status, 404, "{}", r.text());
    // And acme's admin key does reach its own.
    assert_eq!(
        call(&s, "GET", &format!("/v1/jobs/{job_id}"), Some(&acme_key)).status,
        200
    );
    assert_eq!(
        call(&s, "GET", "/v1/templates/every", Some(&acme_key)).status,
        200
    );
    s.stop();
}
