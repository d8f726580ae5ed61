//! Running the HTTP server: a bound listener and a shutdown future in, so tests bind
//! port 0 and stop the server when they like.
//!
//! Each connection costs a file descriptor, a task and hyper's read buffer, so the
//! accept loop admits at most `--max-connections` at once and `--max-connections-per-ip`
//! from one client (`admission.rs`). A connection past either cap is accepted and
//! closed at once, after a best-effort `503` (so the kernel's backlog never fills and
//! a real client learns why); hyper reads at most [`MAX_HEADER_BUFFER`] of headers and
//! closes a connection that has not sent them within [`HEADER_READ_TIMEOUT`].

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use crate::config::HttpConfig;
use crate::metrics::names;
use crate::routes::router;
use crate::state::AppState;

mod admission;

use admission::Admission;

/// Longest a client may take to send a request's headers, and longest an idle
/// keep-alive connection is kept. Past it hyper closes the connection, so a client
/// trickling headers (slowloris) or idling cannot hold a connection for long; the
/// request timeout (408) covers the body and the handler.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest read buffer hyper keeps per connection, so the headers of a request can be
/// at most this large (431 past it). Hyper's default is about 400 KB, which 200
/// connections sending unfinished headers turned into 50-75 MB.
pub const MAX_HEADER_BUFFER: usize = 64 * 1024;

/// What a connection past the caps is told before it is closed.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\nretry-after: 1\r\nconnection: close\r\n\
content-length: 92\r\n\r\n\
{\"error\":{\"code\":\"too_many_connections\",\"message\":\"too many open connections; retry later\"}}";

/// Serves the API on `listener` until `shutdown` completes, then stops accepting,
/// lets in-flight requests finish and drains the queue (in embedded mode every
/// acknowledged event is stored before this returns, or, if the store keeps failing
/// while closing, left in the journal for the next start).
pub async fn run<F>(listener: TcpListener, state: AppState, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let app = router(state.clone());
    let served = serve(listener, app, &state.config.http, shutdown).await;
    tracing::info!("HTTP server stopped; draining the queue");
    state.queue.close().await;
    served
}

/// `axum::serve` with graceful shutdown, plus a timer so that hyper enforces
/// [`HEADER_READ_TIMEOUT`] (`axum::serve` sets none, so a connection that never
/// finishes its headers was held forever), a bounded read buffer and the connection
/// caps of `http`.
async fn serve<F>(
    listener: TcpListener,
    app: Router,
    http: &HttpConfig,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        // The buffer bounds memory; a head can still land whole in one read a little
        // past it, so the head's own limit makes the 431 exact.
        .max_buf_size(MAX_HEADER_BUFFER)
        .max_header_size(MAX_HEADER_BUFFER);
    let cap = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
    let admission = Admission::new(cap(http.max_connections), cap(http.max_connections_per_ip));
    let mut shutdown = pin!(shutdown);
    // Set when the grace period ends: every connection task still running drops its
    // connection, which closes it.
    let (cut_tx, cut_rx) = tokio::sync::watch::channel(false);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // A client that gave up before the accept: nothing to wait for.
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors and the like: wait, as axum::serve does.
                    tracing::error!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let slot = match admission.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                refuse(&stream);
                metrics::counter!(names::HTTP_CONNECTIONS_REFUSED, "reason" => refusal.label())
                    .increment(1);
                tracing::debug!(%peer, reason = refusal.label(), "connection refused");
                continue;
            }
        };
        let service = app
            .clone()
            .map_request(|request: Request<Incoming>| request.map(Body::new));
        let connection =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        let mut cut = cut_rx.clone();
        tokio::spawn(async move {
            tokio::select! {
                ended = connection => if let Err(e) = ended {
                    tracing::debug!(error = %e, "connection ended with an error");
                },
                _ = cut.wait_for(|cut| *cut) => {}
            }
            drop(slot);
        });
    }
    drop(listener);
    // Idle connections close at once, answers in progress may finish; past the grace
    // period (a long export, a client that stopped reading) they are closed.
    let grace = http.shutdown_grace();
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "closing the connections still answering after the shutdown grace period"
        );
        let _ = cut_tx.send(true);
    }
    Ok(())
}

/// Tells a refused connection why, if its send buffer takes the answer at once (it
/// always has room on a new connection); never waits. Dropping the stream closes it.
fn refuse(stream: &TcpStream) {
    let _ = stream.try_write(REFUSED);
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
///
/// The handlers are installed when this is *called*, not when the future is first
/// polled, so call it before announcing readiness: a signal that arrives between "the
/// server is listening" and the first poll then still shuts down gracefully instead of
/// killing the process.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind: SignalKind, name: &'static str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for {name}");
                None
            }
        };
        let interrupt = listen(SignalKind::interrupt(), "SIGINT");
        let terminate = listen(SignalKind::terminate(), "SIGTERM");
        async move {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(interrupt) => tracing::info!("SIGINT received, shutting down"),
                () = wait(terminate) => tracing::info!("SIGTERM received, shutting down"),
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
        tracing::info!("Ctrl-C received, shutting down");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_is_a_complete_json_503() {
        let text = std::str::from_utf8(REFUSED).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"]["code"], "too_many_connections");
    }
}
