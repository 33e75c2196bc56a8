//! Helpers shared by the integration tests: a real S3 endpoint (s3s-fs) served in-process,
//! PostgreSQL databases per test, and polling with a deadline.

#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use livesnap_store::{Location, LocationConfig};
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub const ACCESS_KEY: &str = "livesnap-test-key";
pub const SECRET_KEY: &str = "livesnap-test-secret";
pub const BUCKET: &str = "pictures";

/// An S3 endpoint backed by a folder, on 127.0.0.1, that can be stopped and started again
/// on the same port (to simulate an outage).
pub struct S3Server {
    pub root: PathBuf,
    pub addr: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl S3Server {
    /// Starts on a free port with a bucket [`BUCKET`] under `root`.
    pub async fn start(root: &Path) -> S3Server {
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = S3Server {
            root: root.to_path_buf(),
            addr,
            tasks: Arc::default(),
        };
        server.serve(listener);
        server
    }

    fn serve(&self, listener: TcpListener) {
        let fs = s3s_fs::FileSystem::new(&self.root).unwrap();
        let mut b = S3ServiceBuilder::new(fs);
        b.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = b.build();
        let tasks = self.tasks.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let service = service.clone();
                let conn = tokio::spawn(async move {
                    let http = ConnBuilder::new(TokioExecutor::new());
                    let _ = http.serve_connection(TokioIo::new(socket), service).await;
                });
                tasks.lock().unwrap().push(conn);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Stops accepting and drops every open connection: the endpoint is down.
    pub fn stop(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// Serves again on the same port.
    pub async fn restart(&self) {
        // The old listener is dropped once its aborted task is; retry briefly until the port is free.
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot rebind {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn config(&self, prefix: Option<&str>) -> LocationConfig {
        LocationConfig {
            kind: "s3".into(),
            root: None,
            endpoint: Some(self.endpoint()),
            bucket: Some(BUCKET.into()),
            region: None,
            access_key_id: Some(ACCESS_KEY.into()),
            secret_access_key: Some(SECRET_KEY.into()),
            path_style: true,
            prefix: prefix.map(str::to_string),
            allow_http: true,
        }
    }

    pub fn location(&self, name: &str, prefix: Option<&str>) -> Location {
        Location::new(name, &self.config(prefix)).unwrap()
    }

    /// Where s3s-fs keeps an object, to check from outside the S3 API.
    pub fn object_file(&self, key: &str) -> PathBuf {
        self.root.join(BUCKET).join(key)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The PostgreSQL server for the tests. Never skips: a missing variable is a failure.
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
