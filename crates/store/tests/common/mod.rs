//! Helpers shared by the integration tests: the workspace's S3 endpoint (livesnap-testkit) as a
//! storage location, PostgreSQL databases per test, and polling with a deadline.

#![allow(dead_code)] // each test binary uses a different subset

use std::time::Duration;

use livesnap_store::{Location, LocationConfig};

pub use livesnap_testkit::s3::{S3Server, ACCESS_KEY, BUCKET, SECRET_KEY};

/// The location config of `s3` for livesnap.
pub fn s3_config(s3: &S3Server, prefix: Option<&str>) -> LocationConfig {
    LocationConfig {
        kind: "s3".into(),
        root: None,
        endpoint: Some(s3.endpoint()),
        bucket: Some(BUCKET.into()),
        region: None,
        access_key_id: Some(ACCESS_KEY.into()),
        secret_access_key: Some(SECRET_KEY.into()),
        path_style: true,
        prefix: prefix.map(str::to_string),
        allow_http: true,
    }
}

/// A location named `name` on `s3`.
pub fn s3_location(s3: &S3Server, name: &str, prefix: Option<&str>) -> Location {
    Location::new(name, &s3_config(s3, prefix)).unwrap()
}

pub fn postgres_url() -> String {
    match std::env::var("LIVESNAP_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "LIVESNAP_TEST_POSTGRES_URL is not set: the index tests must also run on PostgreSQL. \
             Start a throwaway server with `export LIVESNAP_TEST_POSTGRES_URL=\"$(scripts/postgres-test-server)\"`"
        ),
    }
}

/// Creates a fresh database on the test server and returns its URL, so tests run in parallel.
pub async fn fresh_postgres_db(tag: &str) -> String {
    use sqlx::Connection;
    let base = postgres_url();
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to LIVESNAP_TEST_POSTGRES_URL {base}: {e}"));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // PostgreSQL cuts names at 63 bytes: keep the unique part short and in front of the tag.
    let tag: String = tag.chars().take(24).collect();
    let name = format!(
        "lst_{}_{}_{n}_{tag}",
        std::process::id(),
        nanos % 1_000_000_000
    );
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
    // Replace the database part of the URL (after the last '/', before any '?').
    let (head, tail) = base
        .rsplit_once('/')
        .expect("postgres URL has a database part");
    let query = tail
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    format!("{head}/{name}{query}")
}

/// Polls `cond` until it holds, failing after `timeout`.
pub async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond() {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
