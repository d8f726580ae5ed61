//! Connection limits: a flood of connections that never finish their headers from one
//! address gets that address's fair share (`--max-connections-per-ip`, 64 by default)
//! and no more: further connections are closed at once, so the flood cannot hold the
//! server's memory and file descriptors, and everyone else, health checks included,
//! is still served.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::spawn_app;

/// The default per-address share.
const PER_IP: usize = 64;
/// Connections the flood opens: past the share by this many.
const EXCESS: usize = 16;

/// Reads until the server closes the connection; `None` if it is still open after
/// `bound` (a guard against hanging, well under the header-read timeout).
async fn read_until_closed(stream: &mut TcpStream, bound: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let mut buf = [0_u8; 1024];
    tokio::time::timeout(bound, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()
    .map(|()| received)
}

#[tokio::test]
async fn flood_of_unfinished_headers_from_one_address_is_capped_and_health_still_answers() {
    let app = spawn_app().await;
    let addr: SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    // Arrange: the flood, from 127.0.0.1, each connection stuck in its headers.
    let mut flood = Vec::new();
    for _ in 0..PER_IP + EXCESS {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        flood.push(stream);
    }

    // Act: a health check from another loopback address.
    let other = reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .build()
        .unwrap();
    let health = other
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();

    // Assert: health answers; the flood's connections past the share were closed by
    // the server (a 503 at most), those within it are still served.
    assert_eq!(health.status().as_u16(), 200);
    let mut refused = flood.split_off(PER_IP);
    for stream in &mut refused {
        let received = read_until_closed(stream, Duration::from_secs(8))
            .await
            .expect("the server closes connections past the per-address share");
        assert!(
            received.is_empty() || received.starts_with(b"HTTP/1.1 503"),
            "{}",
            String::from_utf8_lossy(&received)
        );
    }
    for stream in &mut flood {
        stream
            .write_all(b"Connection: close\r\n\r\n")
            .await
            .unwrap();
        let answer = read_until_closed(stream, Duration::from_secs(8))
            .await
            .expect("answered and closed");
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"eye_http_connections_refused_total{reason="per_ip"}"#),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn headers_over_64_kib_are_refused_with_431() {
    let app = spawn_app().await;
    let addr: SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let big = "a".repeat(70 * 1024);
    let request = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");

    // The server may close before reading it all: a failed write is fine.
    let _ = stream.write_all(request.as_bytes()).await;

    let answer = read_until_closed(&mut stream, Duration::from_secs(8))
        .await
        .expect("answered and closed");
    assert!(
        answer.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    app.stop().await;
}

#[tokio::test]
async fn shutdown_closes_a_request_still_running_after_the_grace_period() {
    // Arrange: a request whose body never finishes, under a request timeout far longer
    // than the test, and a shutdown grace period of one second.
    let app = crate::helpers::spawn_app_with(|c| {
        c.http.request_timeout_secs = 3_600;
        c.http.shutdown_grace_secs = 1;
    })
    .await;
    let addr: SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"id\":",
        app.key
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    // A health check on another connection answers, so the stalled request is being
    // served (its handler waits for the rest of the body) when the shutdown begins.
    assert_eq!(app.get("/healthz").await.status(), 200);

    // Act: without the grace period, the shutdown would wait for the request timeout.
    let stopped = tokio::time::timeout(Duration::from_secs(60), app.stop()).await;

    // Assert: the server stopped, and the stalled connection was closed unanswered.
    assert!(stopped.is_ok(), "the server waited past its grace period");
    let answer = read_until_closed(&mut stalled, Duration::from_secs(30)).await;
    assert_eq!(answer.as_deref(), Some(&b""[..]), "{answer:?}");
}
