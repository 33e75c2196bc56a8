//! The console at `/`, in a real browser (headless Chromium over WebDriver) against the real
//! binary: each page is run and checked by what a user sees, every name the server sends is
//! shown as text (a stream named `<img src=x onerror=...>` runs nothing), the key prompt keeps
//! the key in the tab, and the grid of live pictures costs at most one decode per keyframe
//! whatever the number of viewers. Screenshots of each page are kept in
//! `target/test-artifacts/`. Any browser console error fails a test, but the refusals it
//! provokes on purpose (named where they happen).

#[path = "common/browser.rs"]
mod browser;
mod common;

use browser::Browser;
use common::*;
use serde_json::{json, Value};
use thirtyfour::prelude::*;

const H264_OFFER: &str = include_str!("peers/whip/chromium-h264.sdp");
const ADMIN: &str = "console-e2e-admin-key-0123456789";
const HOSTILE: &str = "<img src=x onerror=window.__xss=1>";

/// Console errors since the last call must be exactly the refusals named (by status).
fn assert_only_refusals(b: &Browser, page: &str, statuses: &[u16]) {
    let errors = b.console_errors();
    let unexpected: Vec<&String> = errors
        .iter()
        .filter(|e| {
            !statuses
                .iter()
                .any(|s| e.contains(&format!("status of {s}")))
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "console errors on {page}: {unexpected:#?}"
    );
}

/// Submits the form `form` (a CSS selector) after setting its inputs by name.
fn fill_and_submit(b: &Browser, form: &str, fields: Value) {
    b.run(
        r#"
        const form = document.querySelector(args.form);
        if (!form) throw new Error("no form " + args.form);
        for (const [name, value] of Object.entries(args.fields)) {
            const el = form.querySelector(`[name="${name}"]`);
            if (!el) throw new Error("no field " + name);
            if (el.type === "checkbox") el.checked = !!value; else el.value = value;
        }
        form.requestSubmit();
        return null;
        "#,
        json!({ "form": form, "fields": fields }),
    );
}

fn text_of(b: &Browser, selector: &str) -> String {
    b.run(
        "const el = document.querySelector(args); return el ? el.textContent : null;",
        json!(selector),
    )
    .as_str()
    .unwrap_or("")
    .to_string()
}

#[test]
fn the_console_asks_for_a_key_and_keeps_it_in_the_tab() {
    let s = Server::start_with(&[("LIVESNAP_ADMIN_KEY", ADMIN)], &[]);
    let b = Browser::start(None);
    b.goto(&s.url("/"));
    b.wait_for(
        "document.getElementById('key-dialog').open",
        "the key prompt",
    );
    let d = b.driver();
    let type_key = |k: &str| {
        runtime().block_on(async {
            let input = d.find(By::Id("key-input")).await.unwrap();
            input.clear().await.unwrap();
            input.send_keys(k).await.unwrap();
            d.find(By::Css("#key-form button[type=submit]"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
        })
    };
    type_key("not-the-key-at-all-0000000000");
    b.wait_for(
        "document.getElementById('key-dialog').open && document.getElementById('key-why').textContent.includes('not valid')",
        "the prompt again, saying the key is not valid",
    );
    type_key(ADMIN);
    b.wait_for(
        "document.querySelector('main p') && document.querySelector('main p').textContent.includes('No live streams')",
        "the live page with the key",
    );
    // Kept for the tab: a reload asks no more.
    runtime().block_on(d.refresh()).unwrap();
    b.wait_for(
        "document.querySelector('main p') && document.querySelector('main p').textContent.includes('No live streams')",
        "the live page after a reload",
    );
    assert_eq!(
        b.run(
            "return document.getElementById('key-dialog').open;",
            Value::Null
        ),
        false
    );
    assert_eq!(
        b.run(
            "return sessionStorage.getItem('livesnap.apiKey');",
            Value::Null
        ),
        ADMIN
    );
    b.screenshot("console-key");
    // The 401s of the first load and of the wrong key, on purpose.
    assert_only_refusals(&b, "the key prompt", &[401]);

    // Accounts and keys (accounts need admin_key).
    b.goto(&s.url("/#/accounts"));
    b.wait_for(
        "document.getElementById('account-form')",
        "the accounts page",
    );
    fill_and_submit(
        &b,
        "#account-form",
        json!({"name": "acme", "domains": "cams.acme.test", "max_streams": "5"}),
    );
    b.wait_for(
        "document.getElementById('account-list').textContent.includes('cams.acme.test')",
        "the account in the list",
    );
    b.run(
        "[...document.querySelectorAll('#account-list button')].find(x => x.textContent === 'Keys').click(); return null;",
        Value::Null,
    );
    b.wait_for(
        "document.querySelector('#account-keys form')",
        "the keys of acme",
    );
    b.run(
        "document.querySelector('#account-keys form').requestSubmit(); return null;",
        Value::Null,
    );
    b.wait_for(
        "document.querySelector('#account-keys code') && document.querySelector('#account-keys code').textContent.startsWith('lsk_')",
        "the new key, shown once",
    );
    b.screenshot("console-accounts");
    assert_only_refusals(&b, "the accounts page", &[]);
}

#[test]
fn the_console_pages_work_and_show_names_as_text() {
    let work = workdir();
    let src = Source::generate(work.path(), "src", SourceSpec::testsrc(640, 360, 4.0, 25));
    let s = Server::start_with(&[], &["--webrtc-connect-timeout-s", "600"]);
    let _p = Publisher::start(&src.path, &s.rtmp_url("live", "cam1"));
    s.wait_keyframes("live", "cam1", None, 1);
    // A stream named like markup (a WHIP offer holds the name while it waits to connect).
    let hostile_path = format!(
        "/whip/live/{}",
        "%3Cimg%20src%3Dx%20onerror%3Dwindow.__xss%3D1%3E"
    );
    let r = request_with(
        "POST",
        &s.url(&hostile_path),
        Some(H264_OFFER),
        &[("content-type", "application/sdp")],
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());

    let b = Browser::start(None);
    b.goto(&s.url("/"));
    // Live: both cards, the real one with its picture; the hostile name is text.
    b.wait_for(
        "[...document.querySelectorAll('.card img')].some(i => i.complete && i.naturalWidth === 480)",
        "the picture of live/cam1 in the grid",
    );
    let cards = b.run(
        "return [...document.querySelectorAll('.card .name')].map(n => n.textContent);",
        Value::Null,
    );
    assert!(
        cards
            .as_array()
            .unwrap()
            .contains(&json!(format!("live/{HOSTILE}"))),
        "{cards}"
    );
    assert!(
        cards.as_array().unwrap().contains(&json!("live/cam1")),
        "{cards}"
    );
    assert_eq!(
        b.run("return window.__xss === undefined;", Value::Null),
        true
    );
    assert_eq!(
        b.run(
            "return document.querySelectorAll('[onerror]').length;",
            Value::Null
        ),
        0
    );
    b.screenshot("console-live");
    // On a phone's screen: the grid fits the width (no sideways scrolling).
    runtime()
        .block_on(b.driver().set_window_rect(0, 0, 390, 844))
        .unwrap();
    b.wait_for(
        "document.documentElement.scrollWidth <= window.innerWidth",
        "the live page to fit a phone's width",
    );
    b.screenshot("console-live-phone");
    runtime()
        .block_on(b.driver().set_window_rect(0, 0, 1280, 900))
        .unwrap();

    // A stream's page: details, and a snapshot through the browser module.
    b.goto(&s.url("/#/stream/_default/live/cam1"));
    b.wait_for(
        "document.querySelector('dl.details') && document.querySelector('dl.details').textContent.includes('rtmp')",
        "the stream's details",
    );
    b.run(
        "document.getElementById('snapshot-button').click(); return null;",
        Value::Null,
    );
    b.wait_for(
        "document.getElementById('snapshot-image') && document.getElementById('snapshot-image').naturalWidth === 640",
        "the snapshot",
    );
    let meta = text_of(&b, "#snapshot-meta");
    assert!(
        meta.contains("640×360") && meta.contains("frame time"),
        "{meta}"
    );
    b.screenshot("console-stream");

    // Templates: a refused one shows the API's field inline; a good one is listed.
    b.goto(&s.url("/#/templates"));
    b.wait_for(
        "document.getElementById('template-new')",
        "the templates page",
    );
    b.run(
        "document.getElementById('template-new').click(); return null;",
        Value::Null,
    );
    b.run(
        r#"document.getElementById('template-json').value = JSON.stringify({name: "every-1s", modes: ["sequence"], interval_s: 0, format: "jpg"});
           document.querySelector('#template-editor form').requestSubmit(); return null;"#,
        Value::Null,
    );
    b.wait_for(
        "document.querySelector('#template-editor .field-error') && document.querySelector('#template-editor .field-error').textContent.startsWith('interval_s')",
        "the field error of interval_s",
    );
    assert_only_refusals(&b, "a refused template", &[400]);
    b.run(
        r#"document.getElementById('template-json').value = JSON.stringify({name: "every-1s", modes: ["sequence"], interval_s: 1, format: "jpg", width: 320});
           document.querySelector('#template-editor form').requestSubmit(); return null;"#,
        Value::Null,
    );
    b.wait_for(
        "document.getElementById('template-list').textContent.includes('every-1s')",
        "the new template in the list",
    );
    fill_and_submit(
        &b,
        "#binding-form",
        json!({"app": "live", "stream": "cam1", "template": "every-1s", "apply_to_live": true}),
    );
    b.wait_for(
        "document.getElementById('binding-list').textContent.includes('every-1s')",
        "the binding in the list",
    );
    b.screenshot("console-templates");

    // Stored pictures: filter, select all, batch delete with a result per item.
    poll(WAIT, "three stored pictures of live/cam1", || {
        let r = s.get("/v1/snapshots?stream=cam1");
        (r.json()["items"].as_array()?.len() >= 3).then_some(())
    });
    b.goto(&s.url("/#/snapshots?app=live&stream=cam1"));
    b.wait_for(
        "document.querySelectorAll('#snapshot-list figure img').length >= 3 && [...document.querySelectorAll('#snapshot-list figure img')].every(i => i.complete && i.naturalWidth === 320)",
        "the thumbnails",
    );
    b.screenshot("console-snapshots");
    let shown: Vec<String> = b
        .run(
            "return [...document.querySelectorAll('#snapshot-list figure')].map(f => f.dataset.id);",
            Value::Null,
        )
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    b.run(
        r#"window.confirm = () => true;
           [...document.querySelectorAll('.row button')].find(x => x.textContent.startsWith('Select all')).click();
           document.getElementById('delete-selected').click(); return null;"#,
        Value::Null,
    );
    b.wait_for(
        "document.querySelector('#delete-results p') && document.querySelector('#delete-results p').textContent.includes('deleted')",
        "the delete results",
    );
    let result = text_of(&b, "#delete-results p");
    assert!(
        result.starts_with(&format!("{} deleted", shown.len())),
        "{result}"
    );
    for id in &shown {
        assert_eq!(
            s.get(&format!("/v1/snapshots/{id}")).status,
            404,
            "{id} still there"
        );
    }

    // Jobs: a refused one shows why; a good one is listed with its state, then stopped and
    // deleted from the page.
    b.goto(&s.url("/#/jobs"));
    b.wait_for("document.getElementById('job-form')", "the jobs page");
    fill_and_submit(
        &b,
        "#job-form",
        json!({"name": "bad", "input_url": "ftp://nowhere/x", "template": "every-1s"}),
    );
    b.wait_for(
        "document.querySelector('.field-error') && document.querySelector('.field-error').textContent.includes('input_url')",
        "the job's field error",
    );
    assert_only_refusals(&b, "a refused job", &[400]);
    fill_and_submit(
        &b,
        "#job-form",
        json!({"name": "door-cam", "input_url": "rtsp://127.0.0.1:9/none", "template": "every-1s"}),
    );
    b.wait_for(
        "document.getElementById('job-list').textContent.includes('door-cam')",
        "the job in the list",
    );
    b.run(
        r#"window.confirm = () => true;
           [...document.querySelectorAll('#job-list tr[data-job] button')].find(x => x.textContent === 'Stop').click(); return null;"#,
        Value::Null,
    );
    b.wait_for(
        "[...document.querySelectorAll('#job-list tr[data-job] td')].some(td => td.textContent === 'stopped')",
        "the job stopped",
    );
    b.screenshot("console-jobs");
    b.run(
        "[...document.querySelectorAll('#job-list tr[data-job] button')].find(x => x.textContent === 'Delete').click(); return null;",
        Value::Null,
    );
    b.wait_for(
        "!document.getElementById('job-list').textContent.includes('door-cam')",
        "the job deleted",
    );
    assert_eq!(s.get("/v1/jobs").json()["jobs"], json!([]));

    // Usage: the chart and the total.
    b.goto(&s.url("/#/usage"));
    b.wait_for(
        "document.getElementById('usage-total') && document.getElementById('usage-total').textContent.includes('job hours')",
        "the usage total",
    );
    b.screenshot("console-usage");

    assert_only_refusals(&b, "the console", &[]);
}

#[test]
fn the_console_publishes_this_browsers_camera_and_pictures_it() {
    let s = Server::start();
    let b = Browser::start(None);
    b.goto(&s.url("/#/publish"));
    b.wait_for(
        "document.getElementById('publish-start')",
        "the publish page",
    );
    fill_and_submit(&b, "form.inline", json!({"name": "live/browser"}));
    b.wait_for(
        "document.getElementById('publish-status').textContent.includes('(connected)')",
        "the camera published",
    );
    let live = s.wait_keyframes("live", "browser", None, 1);
    assert_eq!(live["protocol"], "whip", "{live}");
    b.run(
        "document.getElementById('publish-snapshot').click(); return null;",
        Value::Null,
    );
    b.wait_for(
        "document.getElementById('publish-snapshot-image') && document.getElementById('publish-snapshot-image').naturalWidth > 0",
        "the snapshot of the camera",
    );
    b.screenshot("console-publish");
    b.run(
        "document.getElementById('publish-stop').click(); return null;",
        Value::Null,
    );
    s.wait_gone("live", "browser", None);
    b.assert_no_console_errors("the publish page");
}

#[test]
fn the_grid_costs_one_decode_per_keyframe_whatever_the_viewers() {
    let work = workdir();
    // A keyframe every 2 s (50 frames at 25 fps).
    let src = Source::generate(work.path(), "src", SourceSpec::testsrc(640, 360, 8.0, 50));
    let s = Server::start();
    let _p = Publisher::start(&src.path, &s.rtmp_url("live", "cam1"));
    s.wait_keyframes("live", "cam1", None, 1);
    let viewers = [
        Browser::start(None),
        Browser::start(None),
        Browser::start(None),
    ];
    for v in &viewers {
        v.goto(&s.url("/"));
    }
    for v in &viewers {
        v.wait_for(
            "[...document.querySelectorAll('.card img')].some(i => i.complete && i.naturalWidth === 480)",
            "the grid's picture",
        );
    }
    let counters = || s.get("/v1/pictures").json()["counters"].clone();
    let keyframes = || {
        s.stream("live", "cam1").unwrap()["keyframes"]
            .as_u64()
            .unwrap()
    };
    let (c0, k0) = (counters(), keyframes());
    // Three viewers refresh every 2 s for as long as five keyframes take.
    poll(WAIT, "five more keyframes", || {
        (keyframes() >= k0 + 5).then_some(())
    });
    let (c1, k1) = (counters(), keyframes());
    let made = c1["pictures_made"].as_u64().unwrap() - c0["pictures_made"].as_u64().unwrap();
    let hits = c1["cache_hits"].as_u64().unwrap() - c0["cache_hits"].as_u64().unwrap();
    assert!(
        made <= k1 - k0 + 1,
        "{made} pictures for {} keyframes",
        k1 - k0
    );
    assert!(
        hits >= 1,
        "the viewers' pictures never came from the cache: {c1}"
    );
    assert_eq!(s.stream("live", "cam1").unwrap()["keyframe_requests"], 0);
    for v in &viewers {
        v.assert_no_console_errors("the grid");
    }
}
