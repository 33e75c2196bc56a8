//! The HTTP listener: accepts connections under the listener's connection limits (per address,
//! in total, and a smaller pool for connections whose first request head has not been read),
//! answers a connection over them with the JSON 503 and closes it, serves each with hyper's
//! HTTP/1 under a header read timeout, survives running out of file descriptors (backing off,
//! one log line per episode), and on shutdown stops accepting and lets each connection finish
//! the request it is serving. [`DeadlineBody`] is the request body with an absolute deadline.
//!
//! It is a hand-written accept loop rather than `axum::serve` because axum 0.8's `serve` has
//! no connection limit, no header read timeout and no hook on accept errors.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use ingest::frontend::{AcceptBackoff, ConnectionLimit, ConnectionStats, Limits};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;
use tracing::debug;

use crate::api::{MAX_REQUEST_HEADERS, MAX_REQUEST_HEADER_BYTES};
use crate::error::AppError;

/// The listener's name in logs and metrics.
pub const PROTOCOL: &str = "http";
/// Most HTTP connections at once by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Time to send a request head by default.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for a request body to arrive whole by default.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest header or body timeout accepted, in seconds.
pub const MAX_TIMEOUT_S: u64 = 3600;
/// hyper's own limits, well above the API's: a request between the two gets the API's JSON 431;
/// only one past these gets hyper's bare 431 (hyper answers it before any service sees it).
const HYPER_MAX_HEADERS: usize = 4 * MAX_REQUEST_HEADERS;
const HYPER_MAX_HEADER_BYTES: usize = 4 * MAX_REQUEST_HEADER_BYTES;

/// Settings of the HTTP listener.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Connection limits; a connection is pending until its first request head is read.
    pub limits: Limits,
    /// Time for a request head to arrive, from the accept or the end of the previous request:
    /// hyper starts it when the connection waits for a head, so it also ends idle keep-alive
    /// connections.
    pub header_timeout: Duration,
    /// Connection counts, for metrics.
    pub stats: Arc<ConnectionStats>,
    /// HTTPS: each connection's TLS handshake first, within the header timeout.
    pub tls: Option<Arc<crate::tls::Tls>>,
}

/// Serves `app` on `listener` until `shutdown` is cancelled, each connection a task on `tasks`.
/// On shutdown the listener closes at once; idle connections close, busy ones finish their
/// request first.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: HttpConfig,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let limit = ConnectionLimit::new(config.limits, config.stats.clone());
    let mut backoff = AcceptBackoff::new(PROTOCOL);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .max_headers(HYPER_MAX_HEADERS)
        .max_header_size(HYPER_MAX_HEADER_BYTES);
    while let Some((socket, addr, _)) = backoff.accept(&listener, &shutdown).await {
        let Some(admitted) = limit.admit(PROTOCOL, addr) else {
            refuse(socket);
            continue;
        };
        let _ = socket.set_nodelay(true);
        let admitted = Arc::new(admitted);
        let router = app.clone();
        let builder = builder.clone();
        let shutdown = shutdown.clone();
        let Some(tls) = config.tls.as_ref().map(|t| t.acceptor()) else {
            tasks.spawn(serve_connection(
                builder, socket, addr, admitted, router, shutdown,
            ));
            continue;
        };
        let handshake_timeout = config.header_timeout;
        tasks.spawn(async move {
            // The handshake is part of reading the first request head: the connection stays
            // pending, and gets the same time.
            let handshake = tokio::time::timeout(handshake_timeout, tls.accept(socket));
            let stream = tokio::select! {
                done = handshake => match done {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => return debug!(%addr, error = %e, "tls handshake failed"),
                    Err(_) => return debug!(%addr, "tls handshake timed out"),
                },
                _ = shutdown.cancelled() => return,
            };
            serve_connection(builder, stream, addr, admitted, router, shutdown).await
        });
    }
    debug!("http listener closed");
}

/// Serves one connection (plain or TLS) until it ends, or gracefully once `shutdown` is
/// cancelled.
async fn serve_connection<I>(
    builder: hyper::server::conn::http1::Builder,
    io: I,
    addr: std::net::SocketAddr,
    admitted: Arc<ingest::frontend::Admitted>,
    router: Router,
    shutdown: CancellationToken,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // hyper calls the service once a request head is read whole: the connection has shown
    // it is a real client and leaves the pending pool.
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        admitted.establish();
        let mut router = router.clone();
        let mut request = request.map(Body::new);
        // Who is asking, for the layers that count by address (wrong API keys).
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(addr));
        async move { router.call(request).await }
    });
    let connection = builder.serve_connection(TokioIo::new(io), service);
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        debug!(%addr, error = %e, "http connection ended");
    }
}

/// Answers a connection over the limits with the JSON 503 and closes it. Without waiting: a
/// fresh socket's send buffer takes the few hundred bytes whole, and a client that does not
/// read them loses nothing it was owed.
fn refuse(socket: TcpStream) {
    let answer = AppError::Overloaded(
        "too many connections (from this address, or in all); try again later".into(),
    )
    .raw_http1();
    let _ = socket.try_write(&answer);
    // Take in what the client already sent, so that closing sends FIN rather than a reset
    // that could destroy the answer before the client reads it.
    let mut sink = [0u8; 4096];
    let _ = socket.try_read(&mut sink);
}

/// A request body with an absolute deadline from its creation (the request head): past it the
/// body ends with an error and `timed_out` is set, so the request is answered 408. Written here
/// because tower-http's `TimeoutBody` restarts its timer on every frame, and a body trickled a
/// byte at a time would never end.
pub struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<Sleep>>,
    timed_out: Arc<AtomicBool>,
}

impl DeadlineBody {
    /// `inner`, which must have arrived whole within `timeout` from now.
    pub fn new(inner: Body, timeout: Duration, timed_out: Arc<AtomicBool>) -> DeadlineBody {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timed_out,
        }
    }
}

/// The error a [`DeadlineBody`] ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimedOut;

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.timed_out.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(BodyTimedOut.into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::time::Instant;

    #[tokio::test]
    async fn a_body_trickled_past_its_deadline_is_ended() {
        // A byte every 20 ms keeps coming; the deadline (200 ms) does not move with it.
        let tick = Duration::from_millis(20);
        let trickle = Body::new(Trickle(tokio::time::interval(tick)));
        let flag = Arc::new(AtomicBool::new(false));
        let timeout = Duration::from_millis(200);
        let mut body = DeadlineBody::new(trickle, timeout, flag.clone());
        let start = Instant::now();
        let mut got = 0;
        let err = loop {
            match body.frame().await {
                Some(Ok(_)) => got += 1,
                Some(Err(e)) => break e,
                None => panic!("the body ended without error"),
            }
        };
        assert!(err.is::<BodyTimedOut>(), "{err}");
        assert!(flag.load(Ordering::Acquire));
        assert!(got > 1, "the body's bytes came through until the deadline");
        assert!(start.elapsed() >= timeout);
    }

    /// A body that never ends: a byte on every tick.
    struct Trickle(tokio::time::Interval);

    impl http_body::Body for Trickle {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            std::task::ready!(self.0.poll_tick(cx));
            Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(b"x")))))
        }
    }
}
