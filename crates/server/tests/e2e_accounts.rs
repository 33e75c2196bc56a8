//! End-to-end: accounts and their API keys in the real binary. The administrator makes accounts
//! and keys; a key is shown once and works at once; an account's key sees its own account and
//! the streams of its own domains only (another's answers 404), a read key changes nothing
//! (403), routes not yet scoped to accounts are the administrator's (403); a domain's publishes
//! need its account's publish secret; a revoked key and a deleted account's keys stop at once;
//! accounts and keys survive a restart; no key appears in the log.

#[path = "common/auto.rs"]
mod auto;
mod common;
#[path = "common/rtsp_peer.rs"]
mod rtsp_peer;

use auto::*;
use common::*;
use serde_json::{json, Value};

const ADMIN: &str = "e2e-accounts-admin-key";

fn call(s: &Server, method: &str, path: &str, key: &str, body: Option<&Value>) -> Resp {
    let auth = format!("Bearer {key}");
    let text = body.map(|b| b.to_string());
    request_with(
        method,
        &s.url(path),
        text.as_deref(),
        &[("authorization", &auth)],
    )
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn ok(r: Resp, status: u16, what: &str) -> Value {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    if r.body.is_empty() {
        Value::Null
    } else {
        r.json()
    }
}

#[test]
fn accounts_keys_roles_and_their_streams() {
    let work = workdir();
    let src = per_second_source(work.path(), "src", 4);
    let env = [
        ("LIVESNAP_ADMIN_KEY", ADMIN),
        ("LIVESNAP_AUTH_FAILURES_PER_MINUTE", "1000"),
    ];
    let s = Server::start_in(work.path(), &env, &[], None);

    let acme = ok(
        call(
            &s,
            "POST",
            "/v1/accounts",
            ADMIN,
            Some(&json!({
                "name": "acme", "domains": ["acme.example"], "max_jobs": 5, "max_streams": 1,
                "publish_secret": "acme-publish-secret"
            })),
        ),
        201,
        "create acme",
    );
    assert_eq!(acme["domains"], json!(["acme.example"]));
    assert_eq!(acme["publish_secret_set"], true);
    assert!(acme.get("publish_secret").is_none(), "{acme}");
    ok(
        call(
            &s,
            "POST",
            "/v1/accounts",
            ADMIN,
            Some(&json!({"name": "beta", "domains": ["beta.example"]})),
        ),
        201,
        "create beta",
    );
    // A name taken, a domain owned, a domain no account may own, a bad field.
    ok(
        call(
            &s,
            "POST",
            "/v1/accounts",
            ADMIN,
            Some(&json!({"name": "acme"})),
        ),
        409,
        "dup",
    );
    ok(
        call(
            &s,
            "POST",
            "/v1/accounts",
            ADMIN,
            Some(&json!({"name": "c", "domains": ["acme.example"]})),
        ),
        409,
        "owned domain",
    );
    let v = ok(
        call(
            &s,
            "POST",
            "/v1/accounts",
            ADMIN,
            Some(&json!({"name": "c", "domains": ["_default"]})),
        ),
        400,
        "_default",
    );
    assert_eq!(v["field"], "domains");

    let acme_admin = ok(
        call(
            &s,
            "POST",
            "/v1/accounts/acme/keys",
            ADMIN,
            Some(&json!({"role": "admin", "label": "ops"})),
        ),
        201,
        "acme admin key",
    );
    let acme_key = acme_admin["key"].as_str().unwrap().to_string();
    assert!(
        acme_key.starts_with("lsk_") && acme_key.len() == 68,
        "{acme_key}"
    );
    let beta_key = ok(
        call(
            &s,
            "POST",
            "/v1/accounts/beta/keys",
            ADMIN,
            Some(&json!({"role": "admin"})),
        ),
        201,
        "beta key",
    )["key"]
        .as_str()
        .unwrap()
        .to_string();
    // An account's admin key makes its own keys, not another's.
    let acme_read = ok(
        call(
            &s,
            "POST",
            "/v1/accounts/acme/keys",
            &acme_key,
            Some(&json!({"role": "read"})),
        ),
        201,
        "acme read key",
    );
    let read_key = acme_read["key"].as_str().unwrap().to_string();
    ok(
        call(
            &s,
            "POST",
            "/v1/accounts/beta/keys",
            &acme_key,
            Some(&json!({"role": "read"})),
        ),
        404,
        "beta's keys",
    );

    // What an account's key sees of accounts.
    let list = ok(
        call(&s, "GET", "/v1/accounts", &acme_key, None),
        200,
        "list",
    );
    assert_eq!(list["accounts"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["accounts"][0]["name"], "acme");
    ok(
        call(&s, "GET", "/v1/accounts/beta", &acme_key, None),
        404,
        "beta's account",
    );
    ok(
        call(&s, "GET", "/v1/accounts/beta/keys", &acme_key, None),
        404,
        "beta's keys",
    );
    ok(
        call(
            &s,
            "POST",
            "/v1/accounts",
            &acme_key,
            Some(&json!({"name": "x"})),
        ),
        403,
        "create",
    );
    ok(
        call(
            &s,
            "PATCH",
            "/v1/accounts/acme",
            &acme_key,
            Some(&json!({"max_jobs": 9})),
        ),
        403,
        "patch",
    );
    let keys = ok(
        call(&s, "GET", "/v1/accounts/acme/keys", &read_key, None),
        200,
        "keys",
    );
    let listed = keys.to_string();
    assert!(
        !listed.contains(&acme_key) && !listed.contains(&read_key),
        "a key is listed: {keys}"
    );
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2);
    assert!(
        keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["last_used_at"].is_string()),
        "{keys}"
    );
    // A read key changes nothing; routes not scoped to accounts are the administrator's.
    let r = call(
        &s,
        "POST",
        "/v1/accounts/acme/keys",
        &read_key,
        Some(&json!({"role": "read"})),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("read key"));
    ok(
        call(&s, "GET", "/v1/callbacks/deliveries", &acme_key, None),
        403,
        "deliveries",
    );
    ok(call(&s, "GET", "/metrics", &acme_key, None), 403, "metrics");

    // Publishing in acme's domain needs acme's secret: its publish URL works, unsigned does not.
    let urls = ok(
        call(
            &s,
            "POST",
            "/v1/publish-urls",
            &acme_key,
            Some(&json!({"app": "live", "stream": "cam", "domain": "acme.example"})),
        ),
        200,
        "acme's publish URL",
    );
    assert_eq!(urls["signed"], true);
    ok(
        call(
            &s,
            "POST",
            "/v1/publish-urls",
            &acme_key,
            Some(&json!({"app": "live", "stream": "cam", "domain": "beta.example"})),
        ),
        404,
        "beta's publish URL",
    );
    let mut unsigned = Publisher::start(
        &src.path,
        &format!("rtmp://{}/live/x?domain=acme.example", s.rtmp),
    );
    assert!(!unsigned
        .wait_exit(std::time::Duration::from_secs(20))
        .success());
    let mut theirs = Publisher::start(&src.path, urls["rtmp"].as_str().unwrap());
    let mut mine = Publisher::start(&src.path, &s.rtmp_url("live", "admin-cam"));
    let wait_live = |path: &str| {
        poll(WAIT, path, || {
            (call(&s, "GET", path, ADMIN, None).status == 200).then_some(())
        })
    };
    wait_live("/v1/streams/live/cam?domain=acme.example");
    wait_live("/v1/streams/live/admin-cam");
    // acme's max_streams is 1: a second stream in its domain is refused, signed or not.
    let second = ok(
        call(
            &s,
            "POST",
            "/v1/publish-urls",
            &acme_key,
            Some(&json!({"app": "live", "stream": "cam2", "domain": "acme.example"})),
        ),
        200,
        "a second publish URL",
    );
    let mut over = Publisher::start(&src.path, second["rtmp"].as_str().unwrap());
    assert!(!over.wait_exit(std::time::Duration::from_secs(20)).success());
    assert!(
        s.log_text().contains("max_streams"),
        "the refusal names the limit"
    );

    // Each sees its own: acme its stream, beta nothing, the administrator both.
    let names = |key: &str| -> Vec<String> {
        let v = ok(call(&s, "GET", "/v1/streams", key, None), 200, "streams");
        v["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                format!(
                    "{}/{}/{}",
                    x["domain"].as_str().unwrap(),
                    x["app"].as_str().unwrap(),
                    x["stream"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(names(&acme_key), ["acme.example/live/cam"]);
    assert_eq!(names(&read_key), ["acme.example/live/cam"]);
    assert!(names(&beta_key).is_empty());
    assert_eq!(names(ADMIN).len(), 2);
    ok(
        call(
            &s,
            "GET",
            "/v1/streams/live/cam?domain=acme.example",
            &beta_key,
            None,
        ),
        404,
        "acme's stream",
    );
    ok(
        call(&s, "GET", "/v1/streams/live/admin-cam", &acme_key, None),
        404,
        "the admin's stream",
    );
    let pic = call(
        &s,
        "GET",
        "/v1/streams/live/cam/snapshot.jpg?domain=acme.example",
        &read_key,
        None,
    );
    assert_eq!(pic.status, 200, "{}", pic.text());
    assert_shows_source(&src, &pic.body, 30.0, "acme's picture with its read key");
    ok(
        call(
            &s,
            "GET",
            "/v1/streams/live/cam/snapshot.jpg?domain=acme.example",
            &beta_key,
            None,
        ),
        404,
        "beta",
    );

    // Revoked: at once.
    let read_id = acme_read["id"].as_str().unwrap();
    ok(
        call(
            &s,
            "DELETE",
            &format!("/v1/accounts/acme/keys/{read_id}"),
            &acme_key,
            None,
        ),
        204,
        "revoke",
    );
    ok(
        call(&s, "GET", "/v1/streams", &read_key, None),
        401,
        "a revoked key",
    );

    // A restart keeps accounts and keys.
    theirs.kill();
    mine.kill();
    unsigned.kill();
    s.stop();
    let s = Server::start_in(work.path(), &env, &[], None);
    let again = ok(
        call(&s, "GET", "/v1/accounts/acme", &acme_key, None),
        200,
        "after restart",
    );
    assert_eq!(again["max_jobs"], 5);
    ok(
        call(&s, "GET", "/v1/streams", &read_key, None),
        401,
        "still revoked",
    );

    // Deleting an account: refused while its domain has live streams, unless forced; its keys
    // stop at once.
    let urls = ok(
        call(
            &s,
            "POST",
            "/v1/publish-urls",
            &acme_key,
            Some(&json!({"app": "live", "stream": "cam", "domain": "acme.example"})),
        ),
        200,
        "publish URL",
    );
    let mut p = Publisher::start(&src.path, urls["rtmp"].as_str().unwrap());
    poll(WAIT, "acme's stream", || {
        (call(
            &s,
            "GET",
            "/v1/streams/live/cam?domain=acme.example",
            &acme_key,
            None,
        )
        .status
            == 200)
            .then_some(())
    });
    let r = call(&s, "DELETE", "/v1/accounts/acme", ADMIN, None);
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("live streams"));
    ok(
        call(&s, "DELETE", "/v1/accounts/acme?force=true", ADMIN, None),
        204,
        "forced",
    );
    ok(
        call(&s, "GET", "/v1/streams", &acme_key, None),
        401,
        "a deleted account's key",
    );
    p.kill();
    let log = s.log_text();
    for k in [&acme_key, &read_key, &beta_key] {
        assert!(!log.contains(k.as_str()), "a key is in the log");
    }
    s.stop();
}

fn key_of(s: &Server, account: &str) -> String {
    ok(
        call(
            s,
            "POST",
            &format!("/v1/accounts/{account}/keys"),
            ADMIN,
            Some(&json!({"role": "admin"})),
        ),
        201,
        "key",
    )["key"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Templates, bindings, jobs and usage belong to the account that made them: two accounts may
/// name a template alike, neither sees the other's (404), an account binds only its domains,
/// its `max_jobs` holds, and the administrator sees all.
#[test]
fn templates_bindings_jobs_and_usage_are_each_accounts_own() {
    let work = workdir();
    let camera = rtsp_peer::GstRtspServer::start(None);
    let env = [
        ("LIVESNAP_ADMIN_KEY", ADMIN),
        ("LIVESNAP_AUTH_FAILURES_PER_MINUTE", "1000"),
    ];
    let s = Server::start_in(work.path(), &env, &[], None);
    for (name, domain) in [("acme", "acme.example"), ("beta", "beta.example")] {
        ok(
            call(
                &s,
                "POST",
                "/v1/accounts",
                ADMIN,
                Some(&json!({"name": name, "domains": [domain], "max_jobs": 1})),
            ),
            201,
            name,
        );
    }
    let acme = key_of(&s, "acme");
    let beta = key_of(&s, "beta");

    // The same template name in both accounts, each its own.
    for (key, interval) in [(&acme, 1), (&beta, 7)] {
        let t = ok(
            call(
                &s,
                "POST",
                "/v1/templates",
                key,
                Some(&json!({"name": "every", "interval_s": interval})),
            ),
            201,
            "template",
        );
        assert_eq!(t["name"], "every", "{t}");
    }
    let mine = ok(
        call(&s, "GET", "/v1/templates", &acme, None),
        200,
        "templates",
    );
    assert_eq!(mine["templates"].as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(mine["templates"][0]["interval_s"], 1);
    let theirs = ok(
        call(&s, "GET", "/v1/templates/every", &beta, None),
        200,
        "beta's",
    );
    assert_eq!(theirs["interval_s"], 7);
    ok(
        call(&s, "GET", "/v1/templates/acme:every", &beta, None),
        404,
        "acme's, named by beta",
    );
    let all = ok(call(&s, "GET", "/v1/templates", ADMIN, None), 200, "all");
    let names: Vec<&str> = all["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme:every", "beta:every"]);

    // Bindings: only in one's own domains.
    ok(
        call(
            &s,
            "POST",
            "/v1/bindings",
            &acme,
            Some(&json!({"domain": "beta.example", "template": "every"})),
        ),
        404,
        "a binding in beta's domain",
    );
    let b = ok(
        call(
            &s,
            "POST",
            "/v1/bindings",
            &acme,
            Some(&json!({"domain": "acme.example", "app": "live", "template": "every"})),
        ),
        201,
        "a binding in acme's domain",
    );
    assert_eq!(b["template"], "every");
    assert!(ok(
        call(&s, "GET", "/v1/bindings", &beta, None),
        200,
        "beta's bindings"
    )["bindings"]
        .as_array()
        .unwrap()
        .is_empty());
    ok(
        call(
            &s,
            "DELETE",
            "/v1/bindings?domain=acme.example&app=live",
            &beta,
            None,
        ),
        404,
        "beta deletes acme's",
    );

    // Jobs: acme's job is acme's; beta sees nothing of it; acme's max_jobs is 1.
    let job = ok(
        call(
            &s,
            "POST",
            "/v1/jobs",
            &acme,
            Some(
                &json!({"name": "gate", "input_url": camera.url("", "/test"), "template": "every"}),
            ),
        ),
        201,
        "acme's job",
    );
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(job["template"], "every");
    assert_eq!(job["account"], "acme");
    let r = call(
        &s,
        "POST",
        "/v1/jobs",
        &acme,
        Some(&json!({"name": "two", "input_url": camera.url("", "/test"), "template": "every"})),
    );
    assert_eq!(r.status, 429, "{}", r.text());
    poll(WAIT, "acme's job running", || {
        (ok(
            call(&s, "GET", &format!("/v1/jobs/{id}"), &acme, None),
            200,
            "job",
        )["state"]
            == "running")
            .then_some(())
    });
    for (method, path) in [
        ("GET", format!("/v1/jobs/{id}")),
        ("POST", format!("/v1/jobs/{id}/stop")),
        ("GET", format!("/v1/jobs/{id}/snapshot.jpg")),
        ("DELETE", format!("/v1/jobs/{id}")),
    ] {
        ok(
            call(&s, method, &path, &beta, None),
            404,
            &format!("beta: {method} {path}"),
        );
    }
    assert!(
        ok(call(&s, "GET", "/v1/jobs", &beta, None), 200, "beta's jobs")["jobs"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let pic = call(
        &s,
        "GET",
        &format!("/v1/jobs/{id}/snapshot.jpg"),
        &acme,
        None,
    );
    assert_eq!(pic.status, 200, "{}", pic.text());
    // Its stream is acme's to see, not beta's.
    let streams = ok(call(&s, "GET", "/v1/streams", &acme, None), 200, "streams");
    assert!(streams.to_string().contains(&id), "{streams}");
    assert!(
        !ok(call(&s, "GET", "/v1/streams", &beta, None), 200, "streams")
            .to_string()
            .contains(&id)
    );
    // beta runs its own job alongside: its limit is its own.
    let bj = ok(
        call(
            &s,
            "POST",
            "/v1/jobs",
            &beta,
            Some(&json!({"name": "b", "input_url": camera.url("", "/test"), "template": "every"})),
        ),
        201,
        "beta's job",
    );
    // Pictures of acme's job follow acme's template, named by its own name.
    let rows = poll(WAIT, "a picture of acme's job", || {
        let v = ok(
            call(&s, "GET", &format!("/v1/snapshots?job={id}"), ADMIN, None),
            200,
            "rows",
        );
        let items = v["items"].as_array().unwrap().clone();
        (!items.is_empty()).then_some(items)
    });
    assert_eq!(rows[0]["domain"], "_jobs");
    assert_eq!(rows[0]["job"], id.as_str());
    // The WCS call finds only the caller's streams.
    let wcs = ok(
        call(
            &s,
            "POST",
            "/rest-api/stream/snapshot",
            &acme,
            Some(&json!({"streamName": id})),
        ),
        200,
        "WCS by acme",
    );
    assert!(wcs["data"].as_str().is_some_and(|d| d.len() > 100), "{wcs}");
    ok(
        call(
            &s,
            "POST",
            "/rest-api/stream/snapshot",
            &beta,
            Some(&json!({"streamName": id})),
        ),
        404,
        "WCS by beta",
    );
    // Stored snapshots: acme sees its job's, by id and in lists; beta sees none of them.
    let row_id = rows[0]["id"].as_str().unwrap().to_string();
    let mine = ok(
        call(&s, "GET", &format!("/v1/snapshots?job={id}"), &acme, None),
        200,
        "acme's rows",
    );
    assert!(!mine["items"].as_array().unwrap().is_empty(), "{mine}");
    let listed = ok(
        call(&s, "GET", "/v1/snapshots", &acme, None),
        200,
        "acme's rows",
    );
    assert!(
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["job"] == id.as_str()),
        "{listed}"
    );
    ok(
        call(&s, "GET", &format!("/v1/snapshots/{row_id}"), &acme, None),
        200,
        "acme's row",
    );
    let img = call(
        &s,
        "GET",
        &format!("/v1/snapshots/{row_id}/image"),
        &acme,
        None,
    );
    assert_eq!(img.status, 200);
    let theirs = ok(
        call(&s, "GET", "/v1/snapshots", &beta, None),
        200,
        "beta's rows",
    );
    assert!(
        theirs["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["job"] != id.as_str()),
        "{theirs}"
    );
    ok(
        call(&s, "GET", &format!("/v1/snapshots?job={id}"), &beta, None),
        200,
        "beta filters acme's job",
    );
    for (method, path) in [
        ("GET", format!("/v1/snapshots/{row_id}")),
        ("GET", format!("/v1/snapshots/{row_id}/image")),
        ("DELETE", format!("/v1/snapshots/{row_id}")),
    ] {
        ok(
            call(&s, method, &path, &beta, None),
            404,
            &format!("beta: {method} {path}"),
        );
    }
    let batch = ok(
        call(
            &s,
            "POST",
            "/v1/snapshots/batch-delete",
            &beta,
            Some(&json!({"ids": [row_id]})),
        ),
        200,
        "beta's batch delete",
    );
    assert_eq!(batch["results"][0]["deleted"], false, "{batch}");
    ok(
        call(&s, "GET", &format!("/v1/snapshots/{row_id}"), ADMIN, None),
        200,
        "still there",
    );

    // Usage: each its own; the administrator all. Both jobs run a while first.
    let bid = bj["id"].as_str().unwrap().to_string();
    poll(WAIT, "beta's job running", || {
        (ok(
            call(&s, "GET", &format!("/v1/jobs/{bid}"), &beta, None),
            200,
            "job",
        )["state"]
            == "running")
            .then_some(())
    });
    std::thread::sleep(std::time::Duration::from_millis(1500));
    ok(
        call(&s, "POST", &format!("/v1/jobs/{id}/stop"), &acme, None),
        200,
        "stop",
    );
    ok(
        call(
            &s,
            "POST",
            &format!("/v1/jobs/{}/stop", bj["id"].as_str().unwrap()),
            &beta,
            None,
        ),
        200,
        "stop",
    );
    let usage = |key: &str| -> Vec<String> {
        ok(call(&s, "GET", "/v1/usage", key, None), 200, "usage")["usage"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["job"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(usage(&acme), [id.as_str()]);
    assert_eq!(usage(&beta), [bj["id"].as_str().unwrap().to_string()]);
    assert_eq!(usage(ADMIN).len(), 2);

    // allowed_hosts: the account's jobs and callbacks reach only the hosts it names.
    ok(
        call(
            &s,
            "PATCH",
            "/v1/accounts/acme",
            ADMIN,
            Some(&json!({"allowed_hosts": ["*.cams.internal", "10.0.0.0/8"]})),
        ),
        200,
        "allowed_hosts",
    );
    ok(
        call(&s, "DELETE", &format!("/v1/jobs/{id}"), &acme, None),
        204,
        "delete acme's job",
    );
    let r = call(
        &s,
        "POST",
        "/v1/jobs",
        &acme,
        Some(&json!({"name": "x", "input_url": camera.url("", "/test"), "template": "every"})),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["field"], "input_url");
    assert!(r.text().contains("allowed_hosts"), "{}", r.text());
    let r = call(
        &s,
        "POST",
        "/v1/templates",
        &acme,
        Some(&json!({"name": "cb", "interval_s": 5, "callback_url": "http://127.0.0.1:9/hook"})),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["field"], "callback_url");
    ok(
        call(
            &s,
            "POST",
            "/v1/templates",
            &acme,
            Some(
                &json!({"name": "cb", "interval_s": 5, "callback_url": "http://hooks.cams.internal/x"}),
            ),
        ),
        201,
        "a callback to an allowed host",
    );
    ok(
        call(
            &s,
            "PATCH",
            "/v1/accounts/acme",
            ADMIN,
            Some(&json!({"allowed_hosts": ["127.0.0.0/8"]})),
        ),
        200,
        "allowed_hosts",
    );
    let y = ok(
        call(
            &s,
            "POST",
            "/v1/jobs",
            &acme,
            Some(&json!({"name": "y", "input_url": camera.url("", "/test"), "template": "every"})),
        ),
        201,
        "a job on an allowed host",
    );
    // An account whose job runs is deleted only by force, which stops the job.
    let r = call(&s, "DELETE", "/v1/accounts/acme", ADMIN, None);
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("running jobs"), "{}", r.text());
    ok(
        call(&s, "DELETE", "/v1/accounts/acme?force=true", ADMIN, None),
        204,
        "forced",
    );
    let left = ok(
        call(
            &s,
            "GET",
            &format!("/v1/jobs/{}", y["id"].as_str().unwrap()),
            ADMIN,
            None,
        ),
        200,
        "its job",
    );
    assert_eq!(left["state"], "stopped", "{left}");
    s.stop();
}

/// Accounts need an admin key; an account without a publish secret of its own gets no URL signed
/// with the server's (whose signature does not cover the domain); an admin key too weak to be
/// one stops the start.
#[test]
fn accounts_need_an_admin_key_and_their_own_publish_secret() {
    let open = Server::start();
    let r = open.post_json("/v1/accounts", &json!({"name": "acme"}));
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("admin_key"));
    open.stop();

    let s = Server::start_with(
        &[
            ("LIVESNAP_ADMIN_KEY", ADMIN),
            ("LIVESNAP_PUBLISH_SECRET", "the-servers-own-secret"),
        ],
        &[],
    );
    ok(
        call(
            &s,
            "POST",
            "/v1/accounts",
            ADMIN,
            Some(&json!({"name": "plain", "domains": ["plain.example"]})),
        ),
        201,
        "an account without a secret",
    );
    ok(
        call(
            &s,
            "POST",
            "/v1/accounts",
            ADMIN,
            Some(&json!({"name": "weak", "publish_secret": "short"})),
        ),
        400,
        "a short secret",
    );
    let key = ok(
        call(
            &s,
            "POST",
            "/v1/accounts/plain/keys",
            ADMIN,
            Some(&json!({"role": "admin"})),
        ),
        201,
        "key",
    )["key"]
        .as_str()
        .unwrap()
        .to_string();
    let r = call(
        &s,
        "POST",
        "/v1/publish-urls",
        &key,
        Some(&json!({"app": "live", "stream": "c", "domain": "plain.example"})),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("publish_secret"));
    // The administrator's URL for the server's domains is signed with the server's secret.
    let v = ok(
        call(
            &s,
            "POST",
            "/v1/publish-urls",
            ADMIN,
            Some(&json!({"app": "live", "stream": "c"})),
        ),
        200,
        "the administrator's URL",
    );
    assert_eq!(v["signed"], true);
    s.stop();

    let work = workdir();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_livesnap"))
        .args([
            "serve",
            "--http",
            "127.0.0.1:0",
            "--rtmp",
            "127.0.0.1:0",
            "--rtsp",
            "127.0.0.1:0",
            "--webrtc-udp",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(work.path().join("data"))
        .args(["--admin-key", "short"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(said.contains("admin_key must be"), "{said}");
    assert!(!said.contains("short\""), "{said}");
}
