//! A real S3 endpoint, s3s-fs over a folder, that can be stopped (an outage) and started again
//! on the same port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::background_runtime;

/// The endpoint's access key.
pub const ACCESS_KEY: &str = "livesnap-test-key";
/// The endpoint's secret key.
pub const SECRET_KEY: &str = "livesnap-test-secret";
/// The bucket it serves.
pub const BUCKET: &str = "pictures";

/// An S3 endpoint on 127.0.0.1 with the bucket [`BUCKET`] under `root`.
pub struct S3Server {
    /// The folder behind it.
    pub root: PathBuf,
    /// Where it listens.
    pub addr: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl S3Server {
    /// Starts on a free port.
    pub fn start(root: &Path) -> S3Server {
        std::fs::create_dir_all(root.join(BUCKET)).expect("create the bucket folder");
        let std_listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind the S3 endpoint");
        let addr = std_listener.local_addr().expect("local address");
        let server = S3Server {
            root: root.to_path_buf(),
            addr,
            tasks: Arc::default(),
        };
        server.serve(std_listener);
        server
    }

    fn serve(&self, listener: std::net::TcpListener) {
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let fs = s3s_fs::FileSystem::new(&self.root).expect("s3s-fs over the folder");
        let mut b = S3ServiceBuilder::new(fs);
        b.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = b.build();
        let tasks = self.tasks.clone();
        let rt = background_runtime();
        let accept = rt.spawn(async move {
            let listener = TcpListener::from_std(listener).expect("tokio listener");
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let service = service.clone();
                let conn = tokio::spawn(async move {
                    let http = ConnBuilder::new(TokioExecutor::new());
                    let _ = http.serve_connection(TokioIo::new(socket), service).await;
                });
                tasks.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
            }
        });
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(accept);
    }

    /// Stops accepting and drops every open connection: the endpoint is down.
    pub fn stop(&self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }

    /// Serves again on the same port (waiting for the port to be free again).
    pub fn restart(&self) {
        let mut tries = 0;
        let listener = loop {
            match std::net::TcpListener::bind(self.addr) {
                Ok(l) => break l,
                Err(e) if tries < 200 => {
                    tries += 1;
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("cannot rebind {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `[storage.NAME]` table of livesnap's config for this endpoint.
    pub fn config_table(&self, name: &str, prefix: Option<&str>) -> String {
        let mut t = format!(
            "[storage.{name}]\nkind = \"s3\"\nendpoint = \"{}\"\nbucket = \"{BUCKET}\"\nregion = \"us-east-1\"\n\
             access_key_id = \"{ACCESS_KEY}\"\nsecret_access_key = \"{SECRET_KEY}\"\npath_style = true\nallow_http = true\n",
            self.endpoint()
        );
        if let Some(p) = prefix {
            t.push_str(&format!("prefix = \"{p}\"\n"));
        }
        t
    }

    /// Where s3s-fs keeps the object `key` (as the API names it, prefix included).
    pub fn object_file(&self, key: &str) -> PathBuf {
        self.root.join(BUCKET).join(key)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
