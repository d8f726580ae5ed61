//! The queue driven directly (no HTTP), against a real Redis: append, backpressure,
//! outages, lost replies.

use std::sync::Arc;
use std::time::Duration;

use eye_server::message::Message;
use eye_server::queue::{Queue, QueueError};
use eye_server::streams::Keys;

use crate::harness::{
    RedisServer, TestRedis, TestStore, accepted, eventually, queue, start_worker, unique_prefix,
    xlen,
};

#[tokio::test]
async fn enqueue_answers_full_at_the_backlog_limit_and_appends_nothing() {
    // Arrange: no worker, a backlog limit of 10.
    let redis = TestRedis::get();
    let url = redis.url();
    let prefix = unique_prefix("full");
    let q = queue(&url, &prefix, 10);
    let eight: Vec<_> = (0..8).map(|_| Message::EventV1(accepted("s"))).collect();
    q.enqueue(eight).await.expect("room for 8");

    // Act
    let three: Vec<_> = (0..3).map(|_| Message::EventV1(accepted("s"))).collect();
    let refused = q.enqueue(three).await;
    let two: Vec<_> = (0..2).map(|_| Message::EventV1(accepted("s"))).collect();
    let fits = q.enqueue(two).await;

    // Assert
    assert!(
        matches!(
            refused,
            Err(QueueError::Full {
                backlog: 8,
                limit: 10
            })
        ),
        "{refused:?}"
    );
    assert!(fits.is_ok(), "{fits:?}");
    assert_eq!(q.backlog().await.expect("backlog"), 10);
}

#[tokio::test]
async fn redis_down_answers_unavailable_and_the_same_queue_recovers_when_it_returns() {
    // Arrange: a private server this test may stop.
    let mut server = RedisServer::start_persistent();
    let url = server.url();
    let prefix = unique_prefix("down");
    let q = queue(&url, &prefix, 1000);
    q.enqueue(vec![Message::EventV1(accepted("s"))])
        .await
        .expect("up");

    // Act
    server.kill();
    let down = q.enqueue(vec![Message::EventV1(accepted("s"))]).await;
    let not_ready = q.ready().await;
    server.restart();
    let recovered = eventually(Duration::from_secs(10), || async {
        q.enqueue(vec![Message::EventV1(accepted("s"))])
            .await
            .is_ok()
    })
    .await;

    // Assert
    assert!(matches!(down, Err(QueueError::Unavailable(_))), "{down:?}");
    assert!(not_ready.is_err());
    assert!(recovered, "the queue reconnects by itself");
    assert!(q.ready().await.is_ok());
    assert_eq!(
        q.backlog().await.expect("backlog"),
        2,
        "the one before and the one after; not the refused one"
    );
}

#[tokio::test]
async fn an_append_whose_reply_is_lost_is_retried_and_acknowledged_and_stored_once() {
    // Arrange: Redis behind a proxy that will swallow replies.
    let redis = TestRedis::get();
    let url = redis.url();
    let upstream = url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    let proxy = crate::harness::LossyProxy::start(upstream).await;
    let prefix = unique_prefix("lost-reply");
    let keys = Keys::new(&prefix);
    let q = Arc::new(queue(&proxy.url(), &prefix, 1000));
    q.enqueue(vec![Message::EventV1(accepted("warm-up"))])
        .await
        .expect("enqueue through the proxy");
    let event = accepted("s");

    // Act: the append reaches Redis but its reply is lost (the proxy swallows exactly
    // the next reply on the warm connection, the append's, and hangs up).
    proxy
        .drop_next
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let answer = q.enqueue(vec![Message::EventV1(event.clone())]).await;
    let copies = xlen(&url, &keys.stream).await - 1;
    let sink = TestStore::open().await;
    let w = start_worker(&url, &prefix, "w", Arc::clone(&sink));
    let stored = eventually(Duration::from_secs(10), || async {
        sink.stored().await.contains(&event.id)
    })
    .await;
    let stats = w.stop().await;

    // Assert
    assert_eq!(proxy.dropped.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(
        answer.is_ok(),
        "acknowledged once Redis answered: {answer:?}"
    );
    assert_eq!(copies, 2, "the lost reply made the append be retried");
    assert!(stored);
    assert_eq!(stats.stored, 2, "the warm-up event and this one, once each");
    assert_eq!(stats.duplicates, copies - 1);
    assert_eq!(sink.counters().await, (2, 2), "counted once each");
}

/// Two API nodes (two limiters) share one application's bucket in Redis: what one
/// node let through counts against the other.
#[tokio::test]
async fn a_rate_limit_holds_across_api_nodes() {
    let redis = crate::harness::RedisServer::start();
    let prefix = crate::harness::unique_prefix("ratelimit");
    let node = |url: String| {
        eye_server::ratelimit::Limiter::redis(
            eye_server::streams::connect(&url, std::time::Duration::from_secs(2)).unwrap(),
            &prefix,
        )
    };
    let (a, b) = (node(redis.url()), node(redis.url()));
    // 100 events at 1 per second into a full bucket: allowed, leaving a 99 s debt.
    assert!(a.check("shop", 1, 100).await.is_ok());
    // The other node sees the debt.
    let refused = b.check("shop", 1, 1).await.unwrap_err();
    assert!(
        refused.retry_after > std::time::Duration::from_secs(90),
        "{refused:?}"
    );
    // Another application is not held back.
    assert!(b.check("blog", 1, 1).await.is_ok());
}
