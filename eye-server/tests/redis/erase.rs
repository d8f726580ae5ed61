//! `eye-server erase` in Redis mode: the session's entries of the dead-letter stream go,
//! together with its events and its errors-log entries (a worker records every dead
//! letter there too); other sessions' dead letters stay.

use eye_server::message::Message;
use redis::AsyncCommands;

use crate::harness::{TestRedis, accepted, conn};
use crate::process::Deployment;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_deletes_the_sessions_dead_letters_from_the_stream() {
    // Arrange: three dead letters (two of `gone`, one of `kept`), as a worker writes
    // them, and one stored event of `gone`.
    let redis = TestRedis::get();
    let d = Deployment::new(&redis.url(), "erase");
    let dead = format!("{}:dead", d.prefix);
    let mut c = conn(&redis.url()).await;
    for session in ["gone", "kept", "gone"] {
        let m = serde_json::to_string(&Message::EventV1(accepted(session))).unwrap();
        let _: String = c
            .xadd(&dead, "*", &[("m", m.as_str()), ("reason", "refused")])
            .await
            .unwrap();
    }
    let store = d.store().await;
    store
        .write_batch(&[Message::EventV1(accepted("gone"))])
        .await
        .unwrap();

    // Act
    let out = d.erase("gone");

    // Assert
    assert!(out.status.success(), "{out:?}");
    let erased: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        erased["removed"],
        serde_json::json!({"events": 1, "sessions": 1, "errors": 0, "dead_letters": 2})
    );
    let left: redis::streams::StreamRangeReply = c.xrange_all(&dead).await.unwrap();
    assert_eq!(left.ids.len(), 1);
    let m: String = left.ids[0].get("m").unwrap();
    assert!(m.contains("kept"), "{m}");
    assert!(store.get_session("gone").await.unwrap().is_none());
    store.close().await;
}
