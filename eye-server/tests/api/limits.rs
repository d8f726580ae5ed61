//! Body limits, gzip, encodings and the errors the middleware answers.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::write::GzEncoder;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING};
use serde_json::Value;

use crate::helpers::{
    TestApp, assert_error, assert_error_response, page_view, spawn_app, spawn_app_with,
};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

async fn post_raw(app: &TestApp, body: Vec<u8>, encoding: Option<&str>) -> reqwest::Response {
    let mut request = app.post_events_request();
    if let Some(encoding) = encoding {
        request = request.header(CONTENT_ENCODING, encoding);
    }
    request.body(body).send().await.unwrap()
}

#[tokio::test]
async fn gzip_batch_is_accepted() {
    let app = spawn_app().await;
    let batch: Vec<Value> = (0..100)
        .map(|i| page_view(&format!("s{i}"), "2022-01-01T00:00:00Z"))
        .collect();
    let body = gzip(Value::from(batch).to_string().as_bytes());

    let response = post_raw(&app, body, Some("gzip")).await;

    assert_eq!(response.status().as_u16(), 201);
    app.settled().await;
    assert_eq!(app.get_json("/events", 200).await["count"], 100);
}

#[tokio::test]
async fn gzip_body_over_the_limit_after_decompression_is_413() {
    let app = spawn_app_with(|c| {
        c.http.max_body_bytes = 64 * 1024;
        c.ingest.max_event_bytes = 32 * 1024;
    })
    .await;
    // 1000 copies of the same event compress to a few KiB but expand past 64 KiB.
    let batch: Vec<Value> = (0..1000)
        .map(|_| page_view("s", "2022-01-01T00:00:00Z"))
        .collect();
    let plain = Value::from(batch).to_string();
    let compressed = gzip(plain.as_bytes());
    assert!(compressed.len() < 64 * 1024 && plain.len() > 64 * 1024);

    let response = post_raw(&app, compressed, Some("gzip")).await;

    assert_eq!(response.status().as_u16(), 413);
    let body: Value = response.json().await.unwrap();
    assert_error(&body, "payload_too_large");
    assert_eq!(body["error"]["details"]["limit"], 64 * 1024);
}

#[tokio::test]
async fn body_over_the_limit_is_413_with_a_json_error() {
    let app = spawn_app_with(|c| {
        c.http.max_body_bytes = 32 * 1024;
        c.ingest.max_event_bytes = 16 * 1024;
    })
    .await;
    let response = post_raw(&app, vec![b' '; 33 * 1024], None).await;
    assert_error_response(response, 413, "payload_too_large").await;
}

#[tokio::test]
async fn streamed_body_over_the_limit_is_413() {
    let app = spawn_app_with(|c| {
        c.http.max_body_bytes = 32 * 1024;
        c.ingest.max_event_bytes = 16 * 1024;
    })
    .await;
    // No Content-Length: the limit is found while reading the chunks.
    let chunk = format!("{:x}\r\n{}\r\n", 8 * 1024, " ".repeat(8 * 1024));
    let mut request = format!(
        "POST /events HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n",
        app.key
    );
    for _ in 0..10 {
        request.push_str(&chunk);
    }
    request.push_str("0\r\n\r\n");
    let addr = app.base.trim_start_matches("http://").to_owned();
    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        // The server may answer and close before the whole body is written.
        let _ = stream.write_all(request.as_bytes());
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
}

#[tokio::test]
async fn corrupt_gzip_is_400_invalid_body() {
    let app = spawn_app().await;
    let response = post_raw(&app, b"not gzip at all".to_vec(), Some("gzip")).await;
    assert_error_response(response, 400, "invalid_body").await;
}

#[tokio::test]
async fn brotli_body_is_415_unsupported_encoding() {
    let app = spawn_app().await;
    let response = post_raw(&app, b"{}".to_vec(), Some("br")).await;
    assert_error_response(response, 415, "unsupported_encoding").await;
}

#[tokio::test]
async fn unknown_route_is_a_json_404() {
    let app = spawn_app().await;
    let body = app.get_json("/nope", 404).await;
    assert_error(&body, "not_found");
}

#[tokio::test]
async fn wrong_method_is_a_json_405_with_allow() {
    let app = spawn_app().await;
    let response = app
        .http
        .delete(format!("{}/events", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    assert!(response.headers().contains_key("allow"));
    assert_error(&response.json().await.unwrap(), "method_not_allowed");
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_keeps_the_callers() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(format!("{}/healthz", app.base))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");
    let response = app.get("/healthz").await;
    assert!(response.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn large_pages_are_gzip_compressed_when_asked() {
    let app = spawn_app().await;
    let batch: Vec<Value> = (0..50)
        .map(|i| page_view(&format!("s{i}"), "2022-01-01T00:00:00Z"))
        .collect();
    app.ingest(&Value::from(batch)).await;
    let raw_client = reqwest::Client::builder().no_gzip().build().unwrap();
    let response = raw_client
        .get(format!("{}/events?page_size=50", app.base))
        .header(AUTHORIZATION, format!("Bearer {}", app.key))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()[CONTENT_ENCODING], "gzip");
}

#[tokio::test]
async fn request_over_the_timeout_is_a_json_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Arrange: a 1 s request timeout, and a client that sends half its body and stops.
    let app = spawn_app_with(|c| c.http.request_timeout_secs = 1).await;
    let addr = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"session_id\"",
        app.key
    );

    // Act
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        stream.read_to_end(&mut answer),
    )
    .await;

    // Assert: the server answered (within the bound) 408 with a JSON error.
    assert!(read.is_ok(), "no answer to a request past its timeout");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let body: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("{answer}"));
    assert_error(&body, "timeout");
}

#[tokio::test]
async fn path_parameter_that_is_not_utf8_is_a_json_400() {
    let app = spawn_app().await;
    let body = app.get_json("/sessions/%FF", 400).await;
    assert_error(&body, "bad_request");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("session_id"),
        "{body}"
    );
}
