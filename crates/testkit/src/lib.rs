//! Test support shared by the crates' tests: one S3 endpoint ([`s3::S3Server`], s3s-fs over a
//! folder), one webhook receiver ([`webhook::Receiver`], axum) and one RTMP test publisher
//! ([`rtmp::Publisher`], rml_rtmp's client session). The servers listen on 127.0.0.1:0 and run
//! on a runtime of their own, so sync tests and async tests (on any runtime) use them alike.
//! Not part of livesnap.

pub mod rtmp;
pub mod s3;
pub mod webhook;

/// A runtime on a thread of its own, for servers that must outlive the caller's runtime (or
/// run where there is none).
pub(crate) fn background_runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("testkit")
            .enable_all()
            .build()
            .expect("testkit runtime")
    })
}
