//! What the end-to-end tests of automatic snapshots (`e2e_auto*.rs`) add to `common`: the
//! automation API of the one [`Server`] (templates, bindings, paged snapshot rows), sources whose
//! content changes once a second and the checks of pictures against them, times and dates as the
//! server formats them, and callback signatures.
//!
//! Used from a test file as
//! ```ignore
//! mod common;
//! #[path = "common/auto.rs"]
//! mod auto;
//! ```
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::common::*;

// ---------------------------------------------------------------------------------------------
// HTTP: `request` (any method) is the harness's one client, in common

/// The harness's one runtime (HTTP requests, database set-up).
pub fn rt() -> &'static tokio::runtime::Runtime {
    crate::common::runtime()
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// the automation API of the one `Server`

impl Server {
    /// POST /v1/templates; must be 201.
    pub fn create_template(&self, t: Value) -> Value {
        let r = self.post_json("/v1/templates", &t);
        self.expect(r, 201, &format!("POST /v1/templates {t}"))
    }

    /// POST /v1/bindings; must be 201.
    pub fn bind(&self, b: Value) -> Value {
        let r = self.post_json("/v1/bindings", &b);
        self.expect(r, 201, &format!("POST /v1/bindings {b}"))
    }

    /// Every row that `query` (without limit/cursor) lists, following `next_cursor`.
    pub fn rows(&self, query: &str) -> Vec<Value> {
        let mut out = vec![];
        let mut cursor: Option<String> = None;
        loop {
            let mut q = format!("limit=200&{query}");
            if let Some(c) = &cursor {
                q.push_str(&format!("&cursor={}", enc(c)));
            }
            let path = format!("/v1/snapshots?{q}");
            let v = self.expect(self.get(&path), 200, &format!("GET {path}"));
            let items = v["items"]
                .as_array()
                .unwrap_or_else(|| panic!("GET {path}: no items array in {v}"));
            out.extend(items.iter().cloned());
            match v["next_cursor"].as_str() {
                Some(c) if !items.is_empty() => cursor = Some(c.to_string()),
                _ => break,
            }
        }
        out
    }

    /// Rows of one stream and template, in sequence mode, sorted by sequence.
    pub fn seq_rows(&self, app: &str, stream: &str, job: &str) -> Vec<Value> {
        let mut rows = self.rows(&format!(
            "app={}&stream={}&job={}&mode=sequence",
            enc(app),
            enc(stream),
            enc(job)
        ));
        rows.sort_by_key(|r| r["sequence"].as_u64().unwrap_or(0));
        rows
    }

    /// Polls until `query` lists at least `n` rows.
    pub fn wait_rows(&self, query: &str, n: usize, what: &str) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let rows = self.rows(query);
            if rows.len() >= n {
                return rows;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {WAIT:?} waiting for {n} rows of {what} (query {query}); have {}: {rows:?}\nautomation: {}\nserver log:\n{}",
                    rows.len(),
                    self.automation(),
                    self.log_tail(30)
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Polls until `query` lists the same rows twice `quiet` apart (no picture in flight).
    pub fn settled_rows(&self, query: &str, quiet: Duration) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        let mut last = self.rows(query);
        loop {
            thread::sleep(quiet);
            let now = self.rows(query);
            if now == last {
                return now;
            }
            if Instant::now() >= deadline {
                panic!("rows of {query} never settled");
            }
            last = now;
        }
    }

    pub fn automation(&self) -> Value {
        self.expect(self.get("/v1/automation"), 200, "GET /v1/automation")
    }

    /// Polls the stream's `template` until it is `want`.
    pub fn wait_template(&self, app: &str, stream: &str, want: Option<&str>) -> Value {
        let mut last = Value::Null;
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(v) = self.stream(app, stream) {
                if v["template"].as_str() == want {
                    return v;
                }
                last = v;
            }
            if Instant::now() >= deadline {
                panic!("{app}/{stream}: template is not {want:?}; stream: {last}");
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The bytes of GET /v1/snapshots/{id}/image (must be 200).
    pub fn image(&self, id: &str) -> Vec<u8> {
        let path = format!("/v1/snapshots/{id}/image");
        let r = self.get(&path);
        assert_eq!(r.status, 200, "GET {path}: {} {}", r.status, r.text());
        r.body
    }
}

// ---------------------------------------------------------------------------------------------
// sources and pictures

/// A 25 fps High-profile stream, a keyframe every second, whose picture changes only at each
/// keyframe (testsrc2 sampled once a second, each picture held for 25 frames): any picture the
/// server takes shows one second of content, which is that second's keyframe.
pub fn per_second_source(dir: &Path, name: &str, seconds: u32) -> Source {
    Source::generate(
        dir,
        name,
        SourceSpec {
            lavfi: "testsrc2=size=320x180:rate=25".into(),
            vf: "fps=1,fps=25,gblur=sigma=1.5".into(),
            seconds: seconds as f64,
            gop: 25,
            bframes: 3,
            extra: vec![],
            colour: BT601_TV,
            container: "flv",
        },
    )
}

/// Compares `img` with every keyframe of `src`: (best frame, best dB, worst dB).
pub fn keyframe_match(src: &Source, img: &Image) -> (usize, f64, f64) {
    let mut best = (usize::MAX, f64::MIN);
    let mut worst = f64::MAX;
    for (i, f) in src.frames.iter().enumerate() {
        if !f.key {
            continue;
        }
        let p = src.psnr_to(img, i);
        if p > best.1 {
            best = (i, p);
        }
        worst = worst.min(p);
    }
    (best.0, best.1, worst)
}

/// Asserts that `bytes` decode to a picture of one second of `src`: above `min_db` against its
/// best keyframe and at least 6 dB lower against the least alike (so it is that second, not any).
pub fn assert_shows_source(src: &Source, bytes: &[u8], min_db: f64, what: &str) -> Image {
    let img = decode_image(bytes);
    let (i, best, worst) = keyframe_match(src, &img);
    eprintln!("{what}: best keyframe {i} at {best:.2} dB; least alike {worst:.2} dB");
    assert!(
        best > min_db,
        "{what}: the picture matches no keyframe of {}: best frame {i} at {best:.2} dB (want > {min_db})",
        src.path.display()
    );
    assert!(
        worst < best - 6.0,
        "{what}: the picture is as close to every second of the source ({worst:.2}..{best:.2} dB): it shows nothing specific"
    );
    img
}

/// Every file under `root`, as paths relative to it, sorted.
pub fn files_under(root: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    let mut out = vec![];
    walk(root, root, &mut out);
    out.sort();
    out
}

/// (year, month, day, hour, minute, second, millisecond) in UTC.
pub fn utc(ms: i64) -> (i64, u32, u32, u32, u32, u32, u32) {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = if m <= 2 { y + 1 } else { y };
    (
        y,
        m,
        d,
        (rem / 3_600_000) as u32,
        (rem / 60_000 % 60) as u32,
        (rem / 1000 % 60) as u32,
        (rem % 1000) as u32,
    )
}

/// `{Date}` of a time: YYYY-MM-DD (UTC).
pub fn date_var(ms: i64) -> String {
    let (y, m, d, ..) = utc(ms);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `{SnapshotTime}` of a time: YYYYMMDDHHMMSSmmm (UTC).
pub fn snapshot_time_var(ms: i64) -> String {
    let (y, mo, d, h, mi, s, milli) = utc(ms);
    format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}{milli:03}")
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Asserts the fields every row has, as the contract lists them.
pub fn check_row_shape(row: &Value) {
    for f in [
        "id", "domain", "app", "stream", "job", "time", "time_ms", "sequence", "mode", "storage",
        "key", "size", "width", "height", "format",
    ] {
        assert!(row.get(f).is_some(), "row has no field {f}: {row}");
    }
    let time = row["time"].as_str().unwrap();
    assert!(is_rfc3339(time), "row time is not RFC 3339: {row}");
    assert!(row["size"].as_u64().unwrap() > 0, "empty picture: {row}");
}

// ---------------------------------------------------------------------------------------------
// a real S3 endpoint (s3s-fs) and a callback receiver

// The S3 endpoint and the webhook receiver are the workspace's one copy (livesnap-testkit).
#[allow(unused_imports)] // each test binary uses a different subset
pub use livesnap_testkit::s3::{
    S3Server, ACCESS_KEY as S3_ACCESS_KEY, BUCKET as S3_BUCKET, SECRET_KEY as S3_SECRET_KEY,
};
#[allow(unused_imports)]
pub use livesnap_testkit::webhook::{Received, Receiver};

/// Hex HMAC-SHA256 of `msg` under `key`, computed here (not by livesnap's code).
pub fn hmac_sha256_hex(key: &[u8], msg: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).unwrap();
    mac.update(msg);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks `X-Livesnap-Signature: t=<unix>,v1=<hex>` of a received callback against `secret`.
pub fn verify_signature(r: &Received, secret: &str) {
    let sig = r
        .headers
        .get("x-livesnap-signature")
        .unwrap_or_else(|| panic!("callback without X-Livesnap-Signature: {:?}", r.headers));
    let mut t = None;
    let mut v1 = None;
    for part in sig.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = Some(v.to_string()),
            Some(("v1", v)) => v1 = Some(v.to_string()),
            _ => panic!("unexpected part {part:?} in signature {sig:?}"),
        }
    }
    let t = t.unwrap_or_else(|| panic!("no t= in signature {sig:?}"));
    let v1 = v1.unwrap_or_else(|| panic!("no v1= in signature {sig:?}"));
    let unix: i64 = t
        .parse()
        .unwrap_or_else(|_| panic!("t={t} is not a Unix time"));
    let now = now_ms() / 1000;
    assert!(
        (unix - now).abs() <= 300,
        "signature time {unix} is not now ({now})"
    );
    let mut msg = t.as_bytes().to_vec();
    msg.push(b'.');
    msg.extend_from_slice(&r.body);
    let want = hmac_sha256_hex(secret.as_bytes(), &msg);
    assert_eq!(
        v1, want,
        "signature does not verify: header {sig:?}, HMAC-SHA256(secret, \"t.body\") = {want}; body {}",
        r.text()
    );
    // And with another secret it must not.
    assert_ne!(v1, hmac_sha256_hex(b"not the secret", &msg));
}

/// Sequence numbers of rows.
pub fn sequences(rows: &[Value]) -> Vec<u64> {
    rows.iter()
        .map(|r| {
            r["sequence"]
                .as_u64()
                .unwrap_or_else(|| panic!("row without sequence: {r}"))
        })
        .collect()
}

/// Asserts that `seqs` (sorted) are exactly `from..=from+len-1`.
pub fn assert_contiguous(seqs: &[u64], from: u64, what: &str) {
    let want: Vec<u64> = (from..from + seqs.len() as u64).collect();
    assert_eq!(
        seqs,
        want.as_slice(),
        "{what}: sequence numbers are not contiguous from {from}"
    );
}

/// RFC 3339 text of Unix milliseconds, UTC.
pub fn rfc3339(ms: i64) -> String {
    let (y, mo, d, h, mi, s, milli) = utc(ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

/// `{"name": ..}` plus the given fields.
pub fn template_json(name: &str, fields: Value) -> Value {
    let mut v = json!({ "name": name });
    for (k, x) in fields.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

// ---------------------------------------------------------------------------------------------
// nothing accepted lost

/// What the pictures of `query` look like when nothing accepted was lost, once they have
/// settled (no change in `quiet`): every row has its object in `root` and every object there
/// its row, no staging file is left, no sequence number is used twice, and every sequence
/// row's `snapshot.stored` reached `hooks` (at least once, by its id). Returns the rows.
pub fn assert_nothing_lost(
    s: &Server,
    root: &Path,
    hooks: &Receiver,
    query: &str,
    quiet: Duration,
) -> Vec<Value> {
    let rows = s.settled_rows(query, quiet);
    let objects: HashSet<String> = files_under(root)
        .into_iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let staging: Vec<&String> = objects.iter().filter(|k| k.contains('#')).collect();
    assert!(staging.is_empty(), "staging files left: {staging:?}");
    let keys: HashSet<String> = rows
        .iter()
        .map(|r| r["key"].as_str().unwrap().to_string())
        .collect();
    let orphans: Vec<&String> = objects.difference(&keys).collect();
    let missing: Vec<&String> = keys.difference(&objects).collect();
    assert!(orphans.is_empty(), "objects without a row: {orphans:?}");
    assert!(missing.is_empty(), "rows without an object: {missing:?}");

    let mut seen: HashMap<u64, usize> = HashMap::new();
    for r in rows.iter().filter(|r| r["mode"] == "sequence") {
        *seen.entry(r["sequence"].as_u64().unwrap()).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sequence numbers used twice: {twice:?}");

    let ids: HashSet<String> = rows
        .iter()
        .filter(|r| r["mode"] == "sequence")
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    poll(WAIT, "every stored picture's snapshot.stored", || {
        let got: HashSet<String> = hooks
            .events("snapshot.stored")
            .iter()
            .filter_map(|r| r.json()["data"]["id"].as_str().map(str::to_string))
            .collect();
        ids.is_subset(&got).then_some(())
    });
    eprintln!(
        "{} rows ({} sequence), {} objects, every snapshot.stored delivered",
        rows.len(),
        ids.len(),
        objects.len()
    );
    rows
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// The PostgreSQL server for the tests; a missing variable is a failure, not a skip.
pub fn postgres_url() -> String {
    match std::env::var("LIVESNAP_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "LIVESNAP_TEST_POSTGRES_URL is not set: the end-to-end index tests must also run on PostgreSQL. \
             Start a throwaway server with `export LIVESNAP_TEST_POSTGRES_URL=\"$(scripts/postgres-test-server)\"` \
             (scripts/test does this)"
        ),
    }
}

/// Creates a database of its own for this test on the server and returns its URL.
pub fn fresh_database(tag: &str) -> String {
    let base = postgres_url();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!(
        "lse2e_{}_{}_{tag}",
        std::process::id(),
        nanos % 1_000_000_000
    );
    postgres_execute(&base, &format!("CREATE DATABASE {name}"));
    let (head, tail) = base
        .rsplit_once('/')
        .expect("postgres URL has a database part");
    let query = tail
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    format!("{head}/{name}{query}")
}

/// Runs one statement on the database at `url`, from a connection of its own.
pub fn postgres_execute(url: &str, sql: &str) {
    use sqlx::Connection;
    rt().block_on(async {
        let mut conn = sqlx::PgConnection::connect(url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to PostgreSQL at {url}: {e}"));
        sqlx::query(sql)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = conn.close().await;
    });
}
