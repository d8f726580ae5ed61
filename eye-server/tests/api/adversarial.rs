//! Hostile input, found by attacking the real server: every answer is a 4xx with a
//! JSON error (never a 5xx, a panic or a plain-text body), a bad event never takes
//! valid ones down with it, and a retried event is stored once.

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, assert_error, page_view, spawn_app};

/// `POST /events` with raw bytes as the body.
async fn post_bytes(app: &TestApp, body: impl Into<Vec<u8>>) -> reqwest::Response {
    app.post_events_request()
        .body(body.into())
        .send()
        .await
        .unwrap()
}

/// The status and the JSON body, failing the test if the body is not JSON.
async fn status_and_json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{status} answered a non-JSON body ({e}): {text:?}"));
    (status, body)
}

/// A form submit whose `form` nests `depth` arrays, as raw JSON text.
fn form_nested(depth: usize) -> String {
    format!(
        r#"{{"session_id":"deep","category":"form_interaction","name":"submit","data":{{"host":"h.example","path":"/","form":{{"a":{}{}}}}},"timestamp":"2022-01-01T00:00:00Z"}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

/// Posts `[valid event, bad]` and checks the valid event was stored and `bad` was
/// rejected alone with `invalid_json`.
async fn assert_batch_keeps_the_valid_event(app: &TestApp, session: &str, bad: &str) {
    let valid = page_view(session, "2022-01-01T00:00:00Z").to_string();

    let response = post_bytes(app, format!("[{valid},{bad}]")).await;

    let (status, body) = status_and_json(response).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(body["results"][0]["status"], "accepted", "{body}");
    assert_eq!(body["results"][1]["status"], "rejected", "{body}");
    assert_eq!(
        body["results"][1]["errors"][0]["code"], "invalid_json",
        "{body}"
    );
    app.settled().await;
    let stored = app
        .get_json(&format!("/sessions/{session}/events"), 200)
        .await;
    assert_eq!(stored["count"], 1, "{stored}");
}

#[tokio::test]
async fn batch_with_an_event_nested_past_the_parser_limit_keeps_the_valid_event() {
    let app = spawn_app().await;
    // 125 levels fit in the batch's first pass but not in the event's own parse.
    for (i, depth) in [125, 100_000].into_iter().enumerate() {
        assert_batch_keeps_the_valid_event(&app, &format!("deep{i}"), &form_nested(depth)).await;
    }
}

#[tokio::test]
async fn batch_with_a_number_out_of_range_keeps_the_valid_event() {
    let app = spawn_app().await;
    let bad = form_nested(1).replace("[]", "-1e400");

    assert_batch_keeps_the_valid_event(&app, "huge-number", &bad).await;
}

#[tokio::test]
async fn batch_with_a_lone_surrogate_keeps_the_valid_event() {
    let app = spawn_app().await;
    let bad = form_nested(1).replace("[]", r#""\udc00""#);

    assert_batch_keeps_the_valid_event(&app, "lone-surrogate", &bad).await;
}

#[tokio::test]
async fn arrays_nested_100k_deep_are_400_json_and_store_nothing() {
    let app = spawn_app().await;
    let top_level = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));

    for body in [top_level, form_nested(100_000)] {
        let (status, body) = status_and_json(post_bytes(&app, body).await).await;
        assert_eq!(status, 400, "{body}");
    }

    app.settled().await;
    let page = app.get_json("/events", 200).await;
    assert_eq!(page["count"], 0, "{page}");
}

#[tokio::test]
async fn hostile_bodies_answer_4xx_json_and_store_nothing() {
    let app = spawn_app().await;
    let event = page_view("s", "2022-01-01T00:00:00Z").to_string();
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", br#"{"session_id":"#.to_vec()),
        ("invalid UTF-8", b"{\"session_id\":\"\xff\xfe\"}".to_vec()),
        (
            "invalid UTF-8 in a batch",
            b"[{\"session_id\":\"\xff\"}]".to_vec(),
        ),
        ("lone surrogate", br#"{"session_id":"\ud800"}"#.to_vec()),
        (
            "NUL in session_id",
            event.replace(r#""s""#, r#""a\u0000b""#).into(),
        ),
        (
            "byte order mark",
            [b"\xef\xbb\xbf".as_slice(), event.as_bytes()].concat(),
        ),
        ("two objects", format!("{event}{event}").into()),
        (
            "number out of range",
            event.replace(r#""s""#, "1e999").into(),
        ),
        ("array of non-objects", br#"[1,"a",null,[],true]"#.to_vec()),
        ("null", b"null".to_vec()),
        ("string", br#""event""#.to_vec()),
        ("empty", Vec::new()),
        ("empty batch", b"[]".to_vec()),
    ];

    for (what, body) in bodies {
        let (status, body) = status_and_json(post_bytes(&app, body).await).await;
        assert!((400..500).contains(&status), "{what}: {status} {body}");
    }

    app.settled().await;
    let page = app.get_json("/events", 200).await;
    assert_eq!(page["count"], 0, "{page}");
}

#[tokio::test]
async fn path_segment_that_is_not_utf8_is_a_json_400() {
    let app = spawn_app().await;

    for path in ["/sessions/%FF", "/sessions/%E2%80/events", "/events/%FF"] {
        let (status, body) = status_and_json(app.get(path).await).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_error(&body, "bad_request");
    }
}

#[tokio::test]
async fn hostile_query_strings_answer_json_never_5xx() {
    let app = spawn_app().await;
    app.ingest(&page_view("q", "2022-01-01T00:00:00Z")).await;
    let cases = [
        ("/events?page=0", 404),
        ("/events?page=-1", 404),
        ("/events?page=18446744073709551616", 404),
        ("/events?page=18446744073709551615&page_size=1000", 404),
        ("/events?page_size=1001", 400),
        ("/events?page_size=0", 400),
        ("/events?page=1&page=1&page_size=5&page_size=5", 400),
        ("/events?session_id=%FF%00&category=%E2%80", 200),
        ("/events?%&%%=&==", 200),
        ("/events?start_time=2022-13-01", 400),
        ("/events?start_time=-2022-01-01", 400),
        ("/events?start_time=2022-02-01&end_time=2022-01-01", 400),
        ("/errors?page=9223372036854775808", 404),
        ("/sessions/q/events?page=18446744073709551615", 404),
        ("/sessions/%00/events", 404),
        ("/events/00000000-0000-0000-0000-00000000000", 404),
    ];

    for (path, expected) in cases {
        let (status, body) = status_and_json(app.get(path).await).await;
        assert_eq!(status, expected, "{path}: {body}");
    }
}

#[tokio::test]
async fn malformed_authorization_headers_are_401_json() {
    let app = spawn_app().await;
    let headers: [&[u8]; 6] = [
        b"Bearer \xff\xfe",
        b"Basic !!!!",
        b"Basic /w==",
        b"Bearer",
        b"Digest x",
        b"\t",
    ];

    for value in headers {
        let response = app
            .http
            .post(format!("{}/events", app.base))
            .header(AUTHORIZATION, HeaderValue::from_bytes(value).unwrap())
            .header(CONTENT_TYPE, "application/json")
            .body(page_view("s", "2022-01-01T00:00:00Z").to_string())
            .send()
            .await
            .unwrap();
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, 401, "{value:?}: {body}");
        assert_error(&body, "unauthorized");
    }
}

#[tokio::test]
async fn concurrent_retries_of_one_event_are_all_201_and_stored_once() {
    let app = spawn_app().await;
    let id = Uuid::now_v7();
    let mut event = page_view("retried", "2022-01-01T00:00:00Z");
    event["id"] = json!(id.to_string());
    let retries = (0..20).map(|i| {
        let body = if i % 2 == 0 {
            event.clone()
        } else {
            json!([event.clone(), event.clone()])
        };
        let app = &app;
        async move { app.post_events(&body).await.status().as_u16() }
    });

    let statuses = futures_util::future::join_all(retries).await;

    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    app.settled().await;
    let stored = app.get_json("/sessions/retried/events", 200).await;
    assert_eq!(stored["count"], 1, "{stored}");
    assert_eq!(stored["results"][0]["id"], id.to_string(), "{stored}");
    let session = app.get_json("/sessions/retried", 200).await;
    assert_eq!(session["event_count"], 1, "{session}");
    let stored = eye_server::store::testing::assert_stored_once(&app.state.store).await;
    assert_eq!(stored, std::collections::HashSet::from([id]));
}

#[tokio::test]
async fn connection_that_never_finishes_its_headers_is_closed_by_the_server() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    let addr = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();

    // Trickle a header line now and then; the server must hang up (after its header
    // read timeout, 30 s) well before this bounded loop ends.
    let mut closed = false;
    for _ in 0..40 {
        let mut buf = [0_u8; 64];
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(2), stream.read(&mut buf)).await;
        if matches!(read, Ok(Ok(0) | Err(_))) {
            closed = true;
            break;
        }
        if stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
            closed = true;
            break;
        }
    }

    assert!(
        closed,
        "the server kept a connection with unfinished headers open"
    );
}

#[tokio::test]
async fn two_content_encoding_lines_are_not_read_as_one() {
    let app = spawn_app().await;
    let response = app
        .post_events_request()
        .header("content-encoding", "identity")
        .header("content-encoding", "gzip")
        .body(page_view("s", "2022-01-01T00:00:00Z").to_string())
        .send()
        .await
        .unwrap();

    let (status, body) = status_and_json(response).await;
    assert_eq!(status, 415, "{body}");
    assert_error(&body, "unsupported_encoding");
}
