//! The HTTP API in-process: the server is started through the library (`livesnap::start`, on
//! ports 0 and a temporary data folder), a recorded clip (testdata/720p.h264) is published into
//! its hub directly, and the router (`api::app`) is called with `tower::ServiceExt::oneshot`: no
//! ffmpeg, no child process, no sleeping. Each route family is checked with its error statuses.

#[path = "common/auto.rs"]
mod auto;
mod common;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use base64::Engine;
use http_body_util::BodyExt;
use livesnap::api::{self, AppState};
use livesnap::config::Settings;
use livesnap::RunningServer;
use livesnap_core::hub::HubWriter;
use livesnap_store::index::{Mode, NewSnapshot};
use media::stream::{PublisherInfo, StreamKey, StreamWriter};
use serde_json::{json, Value};
use tower::ServiceExt;

const CLIP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/720p.h264");

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn settings(dir: &std::path::Path) -> Settings {
    Settings {
        http: "127.0.0.1:0".parse().unwrap(),
        rtmp: "127.0.0.1:0".parse().unwrap(),
        rtsp: "127.0.0.1:0".parse().unwrap(),
        rtsp_udp_ports: "any".into(),
        webrtc_udp: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        ..Settings::default()
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn call(app: &Router, method: &str, uri: &str, body: Option<&str>) -> Answer {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body,
    }
}

/// Calls and checks the status, naming the call on failure.
async fn expect(app: &Router, method: &str, uri: &str, body: Option<&str>, want: u16) -> Answer {
    let a = call(app, method, uri, body).await;
    assert_eq!(
        a.status.as_u16(),
        want,
        "{method} {uri}: {}",
        String::from_utf8_lossy(&a.body)
    );
    a
}

/// Publishes the clip into the hub as `live/{name}` (it stays live while the writer lives).
fn publish(state: &AppState, app: &str, name: &str) -> HubWriter {
    let key = StreamKey::new("_default", app, name).unwrap();
    let info = PublisherInfo {
        addr: "127.0.0.1:1".parse().unwrap(),
        protocol: "rtmp",
    };
    let mut w = state.hub.start(key, info).ok().unwrap();
    let data = std::fs::read(CLIP).unwrap();
    let (config, frames) = media::avc::annexb_to_frames(&data).unwrap();
    w.config(config.into());
    for f in frames {
        w.frame(f);
    }
    w
}

fn png_size(b: &[u8]) -> (u32, u32) {
    assert!(b.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let be = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    (be(16), be(20))
}

async fn started(dir: &std::path::Path) -> (RunningServer, Router) {
    let server = livesnap::start(settings(dir)).await.unwrap();
    let app = api::app(server.state().clone());
    (server, app)
}

#[test]
fn streams_wcs_and_direct_images_with_their_errors() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let (server, app) = started(dir.path()).await;
        let v = expect(&app, "GET", "/v1/streams", None, 200).await.json();
        assert_eq!(v["streams"], json!([]));
        let _cam = publish(server.state(), "live", "cam");

        let v = expect(&app, "GET", "/v1/streams", None, 200).await.json();
        assert_eq!(v["streams"].as_array().unwrap().len(), 1, "{v}");
        let s = expect(&app, "GET", "/v1/streams/live/cam", None, 200)
            .await
            .json();
        assert_eq!(
            (s["width"].clone(), s["height"].clone()),
            (json!(1280), json!(720)),
            "{s}"
        );
        assert_eq!(s["codec"], "h264", "{s}");
        expect(&app, "GET", "/v1/streams/live/nope", None, 404).await;
        expect(
            &app,
            "GET",
            "/v1/streams/live/cam?domain=other.example",
            None,
            404,
        )
        .await;
        let bad = expect(&app, "GET", "/v1/streams/live/%2E%2E", None, 400)
            .await
            .json();
        assert!(
            bad["error"].as_str().unwrap().contains("stream name"),
            "{bad}"
        );

        // WCS: a base64 PNG of the whole frame; the same frame again comes from the cache.
        let body = r#"{"streamName":"cam"}"#;
        let v = expect(&app, "POST", "/rest-api/stream/snapshot", Some(body), 200)
            .await
            .json();
        let png = base64::engine::general_purpose::STANDARD
            .decode(v["data"].as_str().unwrap())
            .unwrap();
        assert_eq!(png_size(&png), (1280, 720));
        let direct = expect(&app, "GET", "/v1/streams/live/cam/snapshot.png", None, 200).await;
        assert_eq!(direct.header("content-type"), "image/png");
        assert_eq!(
            direct.header("x-livesnap-cache"),
            "hit",
            "the same keyframe again"
        );
        assert!(
            direct.body == png,
            "WCS and direct PNG of one keyframe differ"
        );
        assert_eq!(direct.header("x-livesnap-keyframe"), "true");
        assert!(!direct.header("x-request-id").is_empty(), "no request id");

        let jpg = expect(
            &app,
            "GET",
            "/v1/streams/live/cam/snapshot.jpg?width=320",
            None,
            200,
        )
        .await;
        assert_eq!(jpg.header("content-type"), "image/jpeg");
        assert_eq!(jpg.header("x-livesnap-size"), "320x180");
        assert!(jpg.body.starts_with(&[0xff, 0xd8]), "not a JPEG");
        for q in [
            "quality=0",
            "quality=x",
            "precision=exact",
            "width=-1",
            "width=100000",
        ] {
            let uri = format!("/v1/streams/live/cam/snapshot.jpg?{q}");
            let a = expect(&app, "GET", &uri, None, 400).await.json();
            assert_eq!(a["status"], 400, "{uri}: {a}");
        }
        expect(&app, "GET", "/v1/streams/live/nope/snapshot.jpg", None, 404).await;

        for (body, want) in [
            (r#"{"streamName":"nope"}"#, 404),
            ("not json", 400),
            (r#"{"stream":"cam"}"#, 400),
            (r#"{"streamName":"cam","format":"gif"}"#, 400),
            (r#"{"streamName":"cam","quality":0}"#, 400),
        ] {
            expect(&app, "POST", "/rest-api/stream/snapshot", Some(body), want).await;
        }
        // A bare name live in two apps is ambiguous; app/stream picks one.
        let _other = publish(server.state(), "other", "cam");
        let v = expect(&app, "POST", "/rest-api/stream/snapshot", Some(body), 409)
            .await
            .json();
        assert_eq!(
            v["candidates"],
            json!(["_default/live/cam", "_default/other/cam"]),
            "{v}"
        );
        let body = r#"{"streamName":"other/cam","format":"jpg","width":64}"#;
        expect(&app, "POST", "/rest-api/stream/snapshot", Some(body), 200).await;

        expect(&app, "GET", "/no/such/route", None, 404).await;
        let report = server.shutdown().await;
        assert!(report.clean, "{report:?}");
    });
}

#[test]
fn templates_and_bindings_with_their_errors() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let (server, app) = started(dir.path()).await;
        let t = r#"{"name":"t1","interval_s":5,"format":"jpg"}"#;
        let made = expect(&app, "POST", "/v1/templates", Some(t), 201)
            .await
            .json();
        assert_eq!(made["name"], "t1");
        expect(&app, "POST", "/v1/templates", Some(t), 409).await;
        let v = expect(&app, "GET", "/v1/templates", None, 200).await.json();
        assert_eq!(v["templates"].as_array().unwrap().len(), 1, "{v}");
        expect(&app, "GET", "/v1/templates/t1", None, 200).await;
        expect(&app, "GET", "/v1/templates/t2", None, 404).await;
        let put = r#"{"interval_s":10,"format":"png"}"#;
        let v = expect(&app, "PUT", "/v1/templates/t1", Some(put), 200)
            .await
            .json();
        assert_eq!(v["interval_s"], 10, "{v}");
        expect(
            &app,
            "PUT",
            "/v1/templates/t1",
            Some(r#"{"name":"t2"}"#),
            400,
        )
        .await;
        expect(&app, "PUT", "/v1/templates/t9", Some(put), 404).await;
        let bad = r#"{"name":"t3","interval_s":0}"#;
        let v = expect(&app, "POST", "/v1/templates", Some(bad), 400)
            .await
            .json();
        assert_eq!(v["field"], "interval_s", "{v}");
        let bad = r#"{"name":"t3","interval_s":5,"storage":"nowhere"}"#;
        let v = expect(&app, "POST", "/v1/templates", Some(bad), 400)
            .await
            .json();
        assert_eq!(v["field"], "storage", "{v}");
        expect(&app, "POST", "/v1/templates", Some("[]"), 400).await;

        expect(&app, "POST", "/v1/bindings", Some(r#"{"app":"live"}"#), 400).await;
        let unknown = r#"{"app":"live","template":"zz"}"#;
        let v = expect(&app, "POST", "/v1/bindings", Some(unknown), 400)
            .await
            .json();
        assert_eq!(v["field"], "template", "{v}");
        let b = r#"{"app":"live","template":"t1"}"#;
        expect(&app, "POST", "/v1/bindings", Some(b), 201).await;
        let v = expect(&app, "GET", "/v1/bindings", None, 200).await.json();
        assert_eq!(v["bindings"][0]["app"], "live", "{v}");
        // A template in use cannot go; its binding can, once.
        expect(&app, "DELETE", "/v1/templates/t1", None, 409).await;
        expect(&app, "DELETE", "/v1/bindings?app=live", None, 204).await;
        expect(&app, "DELETE", "/v1/bindings?app=live", None, 404).await;
        expect(&app, "DELETE", "/v1/templates/t1", None, 204).await;
        expect(&app, "DELETE", "/v1/templates/t1", None, 404).await;
        assert!(server.shutdown().await.clean);
    });
}

/// Numbers from outside (template fields, query parameters, the WCS body) out of their range or
/// of the wrong shape: 1e16, 2^64-1, 2^64, -1, 1.5, "5". Each is a 400 with the one JSON error
/// body naming the field, never serde's message about the body, a wrap or a panic.
#[test]
fn numbers_from_outside_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let (server, app) = started(dir.path()).await;
        let refused = |a: Answer, field: &str, what: &str| {
            let v = a.json();
            assert_eq!(v["status"], 400, "{what}: {v}");
            assert_eq!(v["field"], field, "{what}: {v}");
            let error = v["error"].as_str().unwrap_or_default();
            assert!(error.starts_with(&format!("{field}: ")), "{what}: {v}");
            assert!(error.contains("..="), "{what}: the range is said: {v}");
        };
        let shapes = [
            "1e16",
            "18446744073709551615",
            "18446744073709551616",
            "-1",
            "1.5",
            "\"5\"",
            "0",
        ];
        for field in [
            "interval_s",
            "every_n_frames",
            "quality",
            "width",
            "height",
            "retention.keep_last",
            "retention.max_age_s",
        ] {
            for n in shapes {
                let trigger = if matches!(field, "interval_s" | "every_n_frames") {
                    ""
                } else {
                    r#""interval_s":5,"#
                };
                let number = match field.split_once('.') {
                    Some((outer, inner)) => format!(r#""{outer}":{{"{inner}":{n}}}"#),
                    None => format!(r#""{field}":{n}"#),
                };
                let body = format!(r#"{{"name":"t",{trigger}{number}}}"#);
                let a = expect(&app, "POST", "/v1/templates", Some(&body), 400).await;
                refused(a, field, &body);
                let body = format!(r#"{{{trigger}{number}}}"#).replace(",}", "}");
                let a = expect(&app, "PUT", "/v1/templates/t", Some(&body), 400).await;
                refused(a, field, &body);
            }
        }
        // The largest accepted values are accepted as given.
        let body = r#"{"name":"t","interval_s":86400,"quality":100,"width":8192,"height":8192,
            "retention":{"keep_last":100000000,"max_age_s":315360000}}"#;
        let v = expect(&app, "POST", "/v1/templates", Some(body), 201)
            .await
            .json();
        assert_eq!(v["retention"]["max_age_s"], 315_360_000u64, "{v}");
        // A body that is not an object is refused, not a panic.
        for body in ["[]", "5", "\"t\"", "null"] {
            expect(&app, "PUT", "/v1/templates/t", Some(body), 400).await;
        }

        for (field, values) in [
            ("width", &shapes[..]),
            ("height", &shapes[..]),
            ("quality", &shapes[..]),
        ] {
            for n in values {
                let q = format!("{field}={}", n.trim_matches('"').replace('\\', ""));
                // Checked before the stream is looked up: no stream needs to be live.
                let uri = format!("/v1/streams/live/cam/snapshot.jpg?{q}");
                if q.ends_with("=5") {
                    continue; // "5" in a query is just 5
                }
                refused(expect(&app, "GET", &uri, None, 400).await, field, &uri);
                let body = format!(r#"{{"streamName":"cam","{field}":{n}}}"#);
                let a = expect(&app, "POST", "/rest-api/stream/snapshot", Some(&body), 400).await;
                refused(a, field, &body);
            }
        }
        for q in [
            "limit=1e16",
            "limit=-1",
            "limit=1001",
            "limit=1.5",
            "limit=18446744073709551616",
            "limit=0",
        ] {
            let uri = format!("/v1/snapshots?{q}");
            refused(expect(&app, "GET", &uri, None, 400).await, "limit", &uri);
        }
        expect(&app, "GET", "/v1/snapshots?limit=1000", None, 200).await;
        assert!(server.shutdown().await.clean);
    });
}

#[test]
fn snapshots_list_get_delete_and_batch_delete_with_their_errors() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let (server, app) = started(dir.path()).await;
        let auto = server.state().auto.clone();
        let local = auto.location("local").unwrap().clone();
        let mut ids = Vec::new();
        for i in 0..3u64 {
            let key = format!("live/cam/{i}.jpg");
            let data = Bytes::from(format!("picture {i}"));
            local.put(&key, data.clone()).await.unwrap();
            let row = auto
                .index()
                .insert(&NewSnapshot {
                    domain: "_default".into(),
                    app: "live".into(),
                    stream: "cam".into(),
                    job: "t1".into(),
                    time_ms: 1_700_000_000_000 + i as i64,
                    sequence: Some(i + 1),
                    mode: Mode::Sequence,
                    storage: "local".into(),
                    key,
                    size: data.len() as u64,
                    width: 1,
                    height: 1,
                    format: "jpg".into(),
                })
                .await
                .unwrap();
            ids.push(row.id);
        }
        let v = expect(&app, "GET", "/v1/snapshots?app=live&stream=cam", None, 200)
            .await
            .json();
        let listed: Vec<&str> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            listed,
            vec![&ids[2][..], &ids[1][..], &ids[0][..]],
            "newest first: {v}"
        );
        let v = expect(&app, "GET", "/v1/snapshots?limit=1", None, 200)
            .await
            .json();
        let next = v["next_cursor"].as_str().unwrap().to_string();
        let v = expect(
            &app,
            "GET",
            &format!("/v1/snapshots?limit=1&cursor={next}"),
            None,
            200,
        )
        .await
        .json();
        assert_eq!(v["items"][0]["id"], ids[1].as_str(), "{v}");
        for q in [
            "limit=0",
            "limit=x",
            "mode=both",
            "from=yesterday",
            "cursor=zz",
            "nope=1",
        ] {
            expect(&app, "GET", &format!("/v1/snapshots?{q}"), None, 400).await;
        }

        let row = expect(&app, "GET", &format!("/v1/snapshots/{}", ids[0]), None, 200)
            .await
            .json();
        assert!(row["url"].as_str().unwrap().ends_with("/image"), "{row}");
        let img = expect(
            &app,
            "GET",
            &format!("/v1/snapshots/{}/image", ids[0]),
            None,
            200,
        )
        .await;
        assert_eq!(&img.body[..], b"picture 0");
        assert_eq!(img.header("content-type"), "image/jpeg");
        expect(&app, "GET", "/v1/snapshots/0000000000000000001", None, 404).await;
        expect(
            &app,
            "GET",
            "/v1/snapshots/0000000000000000001/image",
            None,
            404,
        )
        .await;

        expect(
            &app,
            "DELETE",
            &format!("/v1/snapshots/{}", ids[0]),
            None,
            204,
        )
        .await;
        assert!(
            !dir.path().join("snapshots/live/cam/0.jpg").exists(),
            "the object stayed"
        );
        // A missing snapshot's DELETE is a 404, not a 500.
        let v = expect(
            &app,
            "DELETE",
            &format!("/v1/snapshots/{}", ids[0]),
            None,
            404,
        )
        .await
        .json();
        assert!(v["error"].as_str().unwrap().contains("not found"), "{v}");

        let body = json!({ "ids": [ids[1], "0000000000000000001"] }).to_string();
        let v = expect(&app, "POST", "/v1/snapshots/batch-delete", Some(&body), 200)
            .await
            .json();
        assert_eq!(
            v["results"][0],
            json!({"id": ids[1], "deleted": true}),
            "{v}"
        );
        assert_eq!(v["results"][1]["deleted"], false, "{v}");
        let too_many: Vec<String> = (0..201).map(|i| format!("{i}")).collect();
        let body = json!({ "ids": too_many }).to_string();
        expect(&app, "POST", "/v1/snapshots/batch-delete", Some(&body), 400).await;
        expect(
            &app,
            "POST",
            "/v1/snapshots/batch-delete",
            Some(r#"{"ids":[]}"#),
            400,
        )
        .await;
        expect(
            &app,
            "POST",
            "/v1/snapshots/batch-delete",
            Some(r#"{"id":["x"]}"#),
            400,
        )
        .await;
        let v = expect(&app, "GET", "/v1/snapshots", None, 200).await.json();
        assert_eq!(v["items"].as_array().unwrap().len(), 1, "{v}");
        assert!(server.shutdown().await.clean);
    });
}

/// The value of one series in Prometheus text (`name{labels}` exactly as written).
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

#[test]
fn metrics_move_with_pictures_and_ingest() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let (server, app) = started(dir.path()).await;
        let before = expect(&app, "GET", "/metrics", None, 200).await;
        assert!(before.header("content-type").starts_with("text/plain"));
        let before = String::from_utf8(before.body.to_vec()).unwrap();
        assert_eq!(
            metric(&before, "livesnap_pictures_total{trigger=\"on_demand\"}"),
            0.0
        );
        assert_eq!(
            metric(&before, "livesnap_streams_live{protocol=\"rtmp\"}"),
            0.0
        );

        let cam = publish(server.state(), "live", "cam");
        expect(&app, "GET", "/v1/streams/live/cam/snapshot.jpg", None, 200).await;
        expect(&app, "GET", "/v1/streams/live/cam/snapshot.jpg", None, 200).await;
        let after = expect(&app, "GET", "/metrics", None, 200).await;
        let after = String::from_utf8(after.body.to_vec()).unwrap();
        assert_eq!(
            metric(&after, "livesnap_pictures_total{trigger=\"on_demand\"}"),
            2.0
        );
        assert_eq!(metric(&after, "livesnap_cache_misses_total"), 1.0);
        assert_eq!(metric(&after, "livesnap_cache_hits_total"), 1.0);
        assert_eq!(metric(&after, "livesnap_decode_seconds_count"), 1.0);
        assert_eq!(metric(&after, "livesnap_encode_seconds_count"), 1.0);
        assert_eq!(
            metric(&after, "livesnap_encode_seconds_bucket{le=\"+Inf\"}"),
            1.0
        );
        assert_eq!(
            metric(&after, "livesnap_decode_seconds_bucket{le=\"+Inf\"}"),
            1.0
        );
        assert_eq!(
            metric(&after, "livesnap_decode_seconds_bucket{le=\"0.001\"}"),
            0.0,
            "a 720p decode under 1 ms?"
        );
        assert!(metric(&after, "livesnap_decode_seconds_sum") > 0.0);
        assert_eq!(
            metric(&after, "livesnap_streams_live{protocol=\"rtmp\"}"),
            1.0
        );
        let frames = metric(&after, "livesnap_ingest_frames_total{protocol=\"rtmp\"}");
        assert!(frames > 0.0, "{after}");
        // Ingest totals stay counted once the stream has ended.
        drop(cam);
        let ended = String::from_utf8(
            expect(&app, "GET", "/metrics", None, 200)
                .await
                .body
                .to_vec(),
        )
        .unwrap();
        assert_eq!(
            metric(&ended, "livesnap_streams_live{protocol=\"rtmp\"}"),
            0.0
        );
        assert_eq!(
            metric(&ended, "livesnap_ingest_frames_total{protocol=\"rtmp\"}"),
            frames
        );
        assert_eq!(
            metric(&ended, "livesnap_storage_writes_total{location=\"local\"}"),
            0.0
        );
        assert!(server.shutdown().await.clean);
    });
}

#[test]
fn readyz_names_the_s3_location_when_its_endpoint_stops() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = auto::S3Server::start(&dir.path().join("s3"));
    let mut s: Settings = toml::from_str(&s3.config_table("s3", None)).unwrap();
    s.http = "127.0.0.1:0".parse().unwrap();
    s.rtmp = "127.0.0.1:0".parse().unwrap();
    s.rtsp = "127.0.0.1:0".parse().unwrap();
    s.rtsp_udp_ports = "any".into();
    s.data_dir = dir.path().join("data");
    let rt = runtime();
    let (server, app) = rt.block_on(async {
        let server = livesnap::start(s).await.unwrap();
        let app = api::app(server.state().clone());
        (server, app)
    });
    let server = Arc::new(tokio::sync::Mutex::new(Some(server)));
    rt.block_on(async {
        let v = expect(&app, "GET", "/readyz", None, 200).await.json();
        assert_eq!(v["storage"], json!(["local", "s3"]), "{v}");
        assert!(
            !s3.object_file(api::READY_PROBE_KEY).exists(),
            "the probe object was left behind"
        );
    });
    s3.stop();
    rt.block_on(async {
        let a = expect(&app, "GET", "/readyz", None, 503).await;
        assert!(!a.header("retry-after").is_empty());
        let v = a.json();
        let failing = v["failing"].as_array().unwrap();
        assert_eq!(failing.len(), 1, "only the S3 location fails: {v}");
        assert_eq!(
            (failing[0]["part"].as_str(), failing[0]["name"].as_str()),
            (Some("storage"), Some("s3")),
            "{v}"
        );
        assert!(
            !v.to_string().contains(auto::S3_SECRET_KEY),
            "the secret leaked: {v}"
        );
    });
    s3.restart();
    rt.block_on(async {
        expect(&app, "GET", "/readyz", None, 200).await;
        let server = server.lock().await.take().unwrap();
        assert!(server.shutdown().await.clean);
    });
}

#[test]
fn shutdown_ends_publishers_and_closes_the_listeners() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let (server, _app) = started(dir.path()).await;
        let (http, rtmp) = (server.http, server.rtmp);
        // A publisher connected over RTMP (mid-handshake) and an idle HTTP client.
        let mut publisher = tokio::net::TcpStream::connect(rtmp).await.unwrap();
        let _client = tokio::net::TcpStream::connect(http).await.unwrap();
        let report = server.shutdown().await;
        assert!(report.clean, "{report:?}");
        assert_eq!(report.callbacks_left, 0);
        // The publisher's connection was closed by the server.
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), publisher.read(&mut buf))
            .await
            .expect("the RTMP connection stayed open after shutdown")
            .unwrap_or(0);
        assert_eq!(n, 0, "the RTMP connection sent data after shutdown");
        assert!(
            tokio::net::TcpStream::connect(rtmp).await.is_err(),
            "RTMP still accepts"
        );
        assert!(
            tokio::net::TcpStream::connect(http).await.is_err(),
            "HTTP still accepts"
        );
    });
}

/// Every route of the API, as (method, path) in the OpenAPI document's spelling. A route added
/// to the router must be added here and documented, or `openapi_documents_every_route` fails.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/v1/streams"),
    ("GET", "/v1/pictures"),
    ("GET", "/v1/streams/{app}/{stream}"),
    ("GET", "/v1/streams/{app}/{stream}/snapshot.jpg"),
    ("GET", "/v1/streams/{app}/{stream}/snapshot.png"),
    ("POST", "/rest-api/stream/snapshot"),
    ("GET", "/v1/templates"),
    ("POST", "/v1/templates"),
    ("GET", "/v1/templates/{name}"),
    ("PUT", "/v1/templates/{name}"),
    ("DELETE", "/v1/templates/{name}"),
    ("GET", "/v1/bindings"),
    ("POST", "/v1/bindings"),
    ("DELETE", "/v1/bindings"),
    ("GET", "/v1/snapshots"),
    ("POST", "/v1/snapshots/batch-delete"),
    ("GET", "/v1/snapshots/{id}"),
    ("DELETE", "/v1/snapshots/{id}"),
    ("GET", "/v1/snapshots/{id}/image"),
    ("GET", "/v1/callbacks/deliveries"),
    ("GET", "/v1/automation"),
    ("GET", "/v1/jobs"),
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs/{id}"),
    ("DELETE", "/v1/jobs/{id}"),
    ("POST", "/v1/jobs/{id}/stop"),
    ("POST", "/v1/jobs/{id}/start"),
    ("GET", "/v1/jobs/{id}/snapshot.jpg"),
    ("GET", "/v1/jobs/{id}/snapshot.png"),
    ("GET", "/v1/usage"),
    ("POST", "/v1/publish-urls"),
    ("POST", "/whip/{app}/{stream}"),
    ("OPTIONS", "/whip/{app}/{stream}"),
    ("DELETE", "/whip/{app}/{stream}/{session}"),
    ("OPTIONS", "/whip/{app}/{stream}/{session}"),
    ("GET", "/v1/accounts"),
    ("POST", "/v1/accounts"),
    ("GET", "/v1/accounts/{name}"),
    ("PATCH", "/v1/accounts/{name}"),
    ("DELETE", "/v1/accounts/{name}"),
    ("GET", "/v1/accounts/{name}/keys"),
    ("POST", "/v1/accounts/{name}/keys"),
    ("DELETE", "/v1/accounts/{name}/keys/{id}"),
];

/// True when the answer is the router's fallback: no route has this path.
fn is_fallback(a: &Answer) -> bool {
    a.status == StatusCode::NOT_FOUND
        && serde_json::from_slice::<Value>(&a.body).is_ok_and(|v| v["error"] == "no such endpoint")
}

/// A schema from `components.schemas`.
fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    let s = &doc["components"]["schemas"][name];
    assert!(s.is_object(), "no schema {name}");
    s
}

#[test]
fn openapi_documents_every_route() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let (server, app) = started(dir.path()).await;
        let answer = expect(&app, "GET", "/openapi.json", None, 200).await;
        assert!(answer
            .header("content-type")
            .starts_with("application/json"));
        let doc = answer.json();
        let version = doc["openapi"].as_str().unwrap_or("");
        assert!(version.starts_with("3.1"), "openapi {version:?}");

        // The documented routes are exactly the hard-coded list.
        let mut documented = std::collections::BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in [
                "get", "put", "post", "delete", "patch", "head", "options", "trace",
            ] {
                if let Some(op) = item.get(method) {
                    documented.insert((method.to_uppercase(), path.clone()));
                    assert!(
                        op["responses"]["408"].is_object(),
                        "{method} {path}: no 408"
                    );
                    // Each `{param}` of the path is a documented path parameter.
                    let params: Vec<&str> = op["parameters"]
                        .as_array()
                        .map(|ps| {
                            ps.iter()
                                .filter(|p| p["in"] == "path")
                                .filter_map(|p| p["name"].as_str())
                                .collect()
                        })
                        .unwrap_or_default();
                    for seg in path.split('/').filter(|s| s.starts_with('{')) {
                        let name = seg.trim_matches(|c| c == '{' || c == '}');
                        assert!(
                            params.contains(&name),
                            "{method} {path}: no parameter {name}"
                        );
                    }
                }
            }
        }
        let listed: std::collections::BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        assert!(
            documented == listed,
            "undocumented: {:?}; documented but not listed: {:?}",
            listed.difference(&documented).collect::<Vec<_>>(),
            documented.difference(&listed).collect::<Vec<_>>()
        );

        // And the router serves each one: not the fallback, and not 405 (the path served with
        // another method only). Path parameters get a made-up value.
        assert!(is_fallback(
            &call(&app, "GET", "/v1/no-such-route", None).await
        ));
        for (method, path) in &documented {
            let uri = path
                .split('/')
                .map(|s| if s.starts_with('{') { "nope" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            let a = call(&app, method, &uri, None).await;
            assert!(
                !is_fallback(&a) && a.status != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is documented but not served: {} {}",
                a.status,
                String::from_utf8_lossy(&a.body)
            );
        }

        // The schemas are the real ones.
        let template = schema(&doc, "TemplateSpec");
        assert!(
            template["properties"]["interval_s"].is_object(),
            "{template}"
        );
        let error = schema(&doc, "ErrorBody");
        for field in ["error", "status", "field", "candidates"] {
            assert!(
                error["properties"][field].is_object(),
                "ErrorBody.{field}: {error}"
            );
        }
        assert_eq!(error["required"], json!(["error", "status"]), "{error}");
        let row = schema(&doc, "SnapshotRow");
        for field in ["id", "time", "time_ms", "mode", "key"] {
            assert!(
                row["properties"][field].is_object(),
                "SnapshotRow.{field}: {row}"
            );
        }
        // Errors use the one error body; pictures are typed and carry their headers.
        let stream = &doc["paths"]["/v1/streams/{app}/{stream}"]["get"]["responses"];
        assert_eq!(
            stream["404"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody",
            "{stream}"
        );
        for (path, mime) in [
            ("/v1/streams/{app}/{stream}/snapshot.jpg", "image/jpeg"),
            ("/v1/streams/{app}/{stream}/snapshot.png", "image/png"),
        ] {
            let ok = &doc["paths"][path]["get"]["responses"]["200"];
            assert!(ok["content"][mime].is_object(), "{path}: {ok}");
            assert!(
                ok["headers"]["x-livesnap-frame-time"].is_object(),
                "{path}: {ok}"
            );
            assert!(ok["headers"]["x-livesnap-size"].is_object(), "{path}: {ok}");
        }
        let image = &doc["paths"]["/v1/snapshots/{id}/image"]["get"]["responses"]["200"];
        assert!(image["content"]["image/jpeg"].is_object(), "{image}");
        assert!(image["content"]["image/png"].is_object(), "{image}");
        let wcs = &doc["paths"]["/rest-api/stream/snapshot"]["post"];
        assert_eq!(
            wcs["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/WcsRequest",
            "{wcs}"
        );
        assert!(wcs["responses"]["409"].is_object(), "{wcs}");
        assert!(schema(&doc, "WcsTimeout")["properties"]["message"].is_object());
        assert!(server.shutdown().await.clean);
    });
}

/// A request body that never arrives.
struct NeverBody;

impl http_body::Body for NeverBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Pending
    }
}

/// Sends `request` and checks that the answer is `want` with the one JSON error body.
async fn expect_error_body(app: &Router, request: Request<Body>, want: u16, what: &str) -> Value {
    let resp = app.clone().oneshot(request).await.unwrap();
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, want, "{what}: {text}");
    assert!(
        content_type.starts_with("application/json"),
        "{what}: content-type {content_type:?}, body {text:?}"
    );
    let v: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{what}: not the JSON error body ({e}): {text:?}"));
    assert_eq!(v["status"], json!(want), "{what}: {v}");
    assert!(
        v["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: {v}"
    );
    v
}

#[test]
fn every_error_of_the_layers_is_the_json_error_body() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let (server, app) = started(dir.path()).await;
        let req = |method: &str, uri: &str| Request::builder().method(method).uri(uri);

        // 405 from the router, its Allow header kept.
        let resp = app
            .clone()
            .oneshot(req("DELETE", "/healthz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert!(resp.headers().contains_key("allow"), "{:?}", resp.headers());
        expect_error_body(
            &app,
            req("DELETE", "/healthz").body(Body::empty()).unwrap(),
            405,
            "a method the path does not serve",
        )
        .await;
        // 404 from the fallback.
        expect_error_body(
            &app,
            req("GET", "/nowhere").body(Body::empty()).unwrap(),
            404,
            "no such route",
        )
        .await;

        // 413: a declared length over max_request_bytes, refused before the body is read, and a
        // body over it without a declared length, refused by the extractor.
        let huge = req("POST", "/v1/templates")
            .header("content-type", "application/json")
            .header("content-length", "100000000")
            .body(Body::new(NeverBody))
            .unwrap();
        expect_error_body(&app, huge, 413, "a declared 100 MB body").await;
        let too_big = vec![b' '; 70 * 1024];
        let v = expect_error_body(
            &app,
            req("POST", "/v1/templates")
                .header("content-type", "application/json")
                .body(Body::from(too_big))
                .unwrap(),
            413,
            "a 70 KiB body",
        )
        .await;
        assert!(v["error"].as_str().unwrap().contains("limit"), "{v}");

        // 431: too many headers, or too large ones.
        let mut many = req("GET", "/healthz");
        for i in 0..=api::MAX_REQUEST_HEADERS {
            many = many.header(format!("x-h{i}"), "1");
        }
        expect_error_body(&app, many.body(Body::empty()).unwrap(), 431, "101 headers").await;
        let large = req("GET", "/healthz")
            .header("x-big", "a".repeat(api::MAX_REQUEST_HEADER_BYTES))
            .body(Body::empty())
            .unwrap();
        expect_error_body(&app, large, 431, "a 32 KiB header").await;

        // 408 from the request timeout, and 408 from the body deadline.
        let mut st = server.state().clone();
        st.request_timeout = std::time::Duration::from_millis(100);
        let slow_app = api::app(st);
        let pending = || {
            req("POST", "/v1/templates")
                .header("content-type", "application/json")
                .body(Body::new(NeverBody))
                .unwrap()
        };
        expect_error_body(&slow_app, pending(), 408, "request timeout").await;
        let mut st = server.state().clone();
        st.body_timeout = std::time::Duration::from_millis(100);
        let body_app = api::app(st);
        let v = expect_error_body(&body_app, pending(), 408, "body timeout").await;
        assert!(v["error"].as_str().unwrap().contains("body"), "{v}");

        // The answer of a connection over the limits, which no router makes.
        let raw = livesnap::error::AppError::Overloaded("too many connections".into()).raw_http1();
        let raw = String::from_utf8(raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["status"], json!(503));

        // A success is left alone.
        expect(&app, "GET", "/healthz", None, 200).await;
        assert!(server.shutdown().await.clean);
    });
}

/// The width of the template the live stream `live/{name}` takes pictures with now.
fn applied_width(state: &AppState, name: &str) -> Option<u32> {
    let s = state
        .hub
        .list()
        .into_iter()
        .find(|s| s.key.app == "live" && s.key.stream == name)
        .expect("stream is live");
    s.template().and_then(|t| t.spec.width)
}

/// Templates and bindings are saved in the index before they are applied: a change the index
/// does not take answers 500 and changes nothing (not the list, not a live stream's template),
/// and a change it took is there after a restart.
#[test]
fn a_change_the_index_refuses_is_not_applied_and_a_saved_one_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let (server, app) = started(dir.path()).await;
        let t = r#"{"name":"t1","interval_s":5,"format":"jpg","width":320}"#;
        expect(&app, "POST", "/v1/templates", Some(t), 201).await;
        let b = r#"{"app":"live","template":"t1"}"#;
        expect(&app, "POST", "/v1/bindings", Some(b), 201).await;
        let _w = publish(server.state(), "live", "cam");
        assert_eq!(applied_width(server.state(), "cam"), Some(320));
        let put = r#"{"interval_s":5,"format":"jpg","width":640}"#;
        expect(&app, "PUT", "/v1/templates/t1", Some(put), 200).await;
        assert_eq!(applied_width(server.state(), "cam"), Some(640));
        let listed = expect(&app, "GET", "/v1/templates", None, 200).await.json();
        let bindings = expect(&app, "GET", "/v1/bindings", None, 200).await.json();

        // The index fails from here on.
        server.state().auto.index().close().await;
        let put = r#"{"interval_s":5,"format":"jpg","width":1280}"#;
        let v = expect(&app, "PUT", "/v1/templates/t1", Some(put), 500)
            .await
            .json();
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .contains("cannot save automation settings"),
            "{v}"
        );
        let t2 = r#"{"name":"t2","interval_s":5}"#;
        expect(&app, "POST", "/v1/templates", Some(t2), 500).await;
        let b2 = r#"{"app":"other","template":"t1","apply_to_live":true}"#;
        expect(&app, "POST", "/v1/bindings", Some(b2), 500).await;
        let del = "/v1/bindings?app=live&apply_to_live=true";
        expect(&app, "DELETE", del, None, 500).await;
        assert_eq!(
            expect(&app, "GET", "/v1/templates", None, 200).await.json(),
            listed
        );
        assert_eq!(
            expect(&app, "GET", "/v1/bindings", None, 200).await.json(),
            bindings
        );
        assert_eq!(applied_width(server.state(), "cam"), Some(640));
        drop(_w);
        server.shutdown().await;

        // A restart on the same data folder: what was saved, and only that.
        let (server, app) = started(dir.path()).await;
        assert_eq!(
            expect(&app, "GET", "/v1/templates", None, 200).await.json(),
            listed
        );
        assert_eq!(
            expect(&app, "GET", "/v1/bindings", None, 200).await.json(),
            bindings
        );
        let _w = publish(server.state(), "live", "cam");
        assert_eq!(applied_width(server.state(), "cam"), Some(640));
        drop(_w);
        assert!(server.shutdown().await.clean);
    });
}

/// `automation.json`, where templates and bindings were kept before the index, is imported
/// once into an empty index and renamed; what it holds that is no longer valid is skipped.
#[test]
fn automation_json_is_imported_once_and_renamed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("automation.json");
    let saved = json!({
        "templates": [
            {"name": "t1", "interval_s": 5, "format": "jpg", "width": 320},
            {"name": "bad", "interval_s": 0},
        ],
        "bindings": [
            {"domain": "_default", "app": "live", "stream": "*", "template": "t1"},
            {"domain": "_default", "app": "gone", "stream": "*", "template": "missing"},
        ],
    });
    std::fs::write(&file, saved.to_string()).unwrap();
    runtime().block_on(async {
        let (server, app) = started(dir.path()).await;
        assert!(!file.exists(), "the imported file is renamed");
        let renamed = dir.path().join("automation.json.imported");
        assert_eq!(
            serde_json::from_slice::<Value>(&std::fs::read(&renamed).unwrap()).unwrap(),
            saved
        );
        let v = expect(&app, "GET", "/v1/templates", None, 200).await.json();
        let names: Vec<&str> = v["templates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["t1"], "{v}");
        assert_eq!(v["templates"][0]["width"], 320, "{v}");
        let v = expect(&app, "GET", "/v1/bindings", None, 200).await.json();
        assert_eq!(v["bindings"].as_array().unwrap().len(), 1, "{v}");
        assert_eq!(v["bindings"][0]["template"], "t1", "{v}");
        let t2 = r#"{"name":"t2","interval_s":7}"#;
        expect(&app, "POST", "/v1/templates", Some(t2), 201).await;
        assert!(server.shutdown().await.clean);

        // A file that appears again is not imported over what the index holds, nor renamed.
        let again = json!({"templates": [{"name": "t9", "interval_s": 5}], "bindings": []});
        std::fs::write(&file, again.to_string()).unwrap();
        let (server, app) = started(dir.path()).await;
        let v = expect(&app, "GET", "/v1/templates", None, 200).await.json();
        let names: Vec<&str> = v["templates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["t1", "t2"], "{v}");
        assert!(file.exists());
        assert!(server.shutdown().await.clean);
    });
}

/// At `MAX_TEMPLATES` templates and `MAX_BINDINGS` bindings, one more is a 409 naming the
/// limit; replacing one still works, and so does a create once one is deleted.
#[test]
fn the_count_limits_refuse_one_more() {
    use livesnap_core::template::{MAX_BINDINGS, MAX_TEMPLATES};
    use livesnap_store::index::{BindingRow, Index, TemplateRow};
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        // Filled straight through the index (one transaction), as fast as a test should be.
        let url = format!("sqlite://{}", dir.path().join("index.db").display());
        let index = Index::open(&url).await.unwrap();
        let templates: Vec<TemplateRow> = (0..MAX_TEMPLATES)
            .map(|i| TemplateRow {
                name: format!("t{i}"),
                spec: json!({"name": format!("t{i}"), "interval_s": 60}).to_string(),
                created_ms: 1,
                updated_ms: 1,
            })
            .collect();
        let bindings: Vec<BindingRow> = (0..MAX_BINDINGS)
            .map(|i| BindingRow {
                domain: "_default".into(),
                app: format!("a{i}"),
                stream: "*".into(),
                template: "t0".into(),
                spec: json!({"domain": "_default", "app": format!("a{i}"), "stream": "*",
                    "template": "t0"})
                .to_string(),
            })
            .collect();
        assert!(index
            .import_automation(&templates, &bindings)
            .await
            .unwrap());
        index.close().await;

        let (server, app) = started(dir.path()).await;
        let v = expect(&app, "GET", "/v1/templates", None, 200).await.json();
        assert_eq!(v["templates"].as_array().unwrap().len(), MAX_TEMPLATES);
        let one_more = r#"{"name":"extra","interval_s":5}"#;
        let v = expect(&app, "POST", "/v1/templates", Some(one_more), 409)
            .await
            .json();
        let said = v["error"].as_str().unwrap();
        assert!(said.contains("MAX_TEMPLATES"), "{v}");
        assert!(said.contains(&MAX_TEMPLATES.to_string()), "{v}");
        let put = r#"{"interval_s":30}"#;
        expect(&app, "PUT", "/v1/templates/t5", Some(put), 200).await;
        expect(&app, "DELETE", "/v1/templates/t5", None, 204).await;
        expect(&app, "POST", "/v1/templates", Some(one_more), 201).await;
        expect(
            &app,
            "POST",
            "/v1/templates",
            Some(r#"{"name":"x2","interval_s":5}"#),
            409,
        )
        .await;

        let b = r#"{"app":"b-extra","template":"t1"}"#;
        let v = expect(&app, "POST", "/v1/bindings", Some(b), 409)
            .await
            .json();
        assert!(v["error"].as_str().unwrap().contains("MAX_BINDINGS"), "{v}");
        // Replacing a binding at the limit is no new one.
        expect(
            &app,
            "POST",
            "/v1/bindings",
            Some(r#"{"app":"a7","template":"t1"}"#),
            201,
        )
        .await;
        expect(&app, "DELETE", "/v1/bindings?app=a8", None, 204).await;
        expect(&app, "POST", "/v1/bindings", Some(b), 201).await;
        let v = expect(&app, "GET", "/v1/bindings", None, 200).await.json();
        assert_eq!(v["bindings"].as_array().unwrap().len(), MAX_BINDINGS);
        assert!(server.shutdown().await.clean);
    });
}
