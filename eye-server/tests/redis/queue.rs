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

/// Calls of the append script (EVALSHA, and EVAL after a script cache miss) Redis has
/// served since its statistics were last reset.
async fn script_calls(url: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut crate::harness::conn(url).await)
        .await
        .expect("INFO");
    info.lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// `n` enqueues started together, the i-th with `size(i)` fresh events; returns each
/// one's ids and answer.
async fn enqueue_concurrently(
    q: &Arc<eye_server::queue::redis::RedisQueue>,
    n: usize,
    size: impl Fn(usize) -> usize,
) -> Vec<(Vec<uuid::Uuid>, Result<(), QueueError>)> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let events: Vec<_> = (0..size(i)).map(|_| accepted("many")).collect();
            let ids = events.iter().map(|e| e.id).collect::<Vec<_>>();
            let q = Arc::clone(q);
            tokio::spawn(async move {
                let messages = events.into_iter().map(Message::EventV1).collect();
                (ids, q.enqueue(messages).await)
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.expect("enqueue task"));
    }
    out
}

#[tokio::test]
async fn concurrent_appends_share_round_trips_and_each_event_is_stored_once() {
    // Arrange: a private Redis, so its command statistics are ours alone; the script
    // loaded by a first append.
    let redis = RedisServer::start();
    let url = redis.url();
    let prefix = unique_prefix("many");
    let q = Arc::new(queue(&url, &prefix, 1_000_000));
    q.enqueue(vec![Message::EventV1(accepted("warm-up"))])
        .await
        .expect("warm-up");
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async::<()>(&mut crate::harness::conn(&url).await)
        .await
        .expect("CONFIG RESETSTAT");

    // Act: 300 requests at once, of 1 to 3 events each.
    let answers = enqueue_concurrently(&q, 300, |i| i % 3 + 1).await;
    let calls = script_calls(&url).await;
    let appended = xlen(&url, &Keys::new(&prefix).stream).await;
    let sink = TestStore::open().await;
    let w = start_worker(&url, &prefix, "w", Arc::clone(&sink));
    let ids: std::collections::HashSet<_> = answers
        .iter()
        .flat_map(|(ids, _)| ids.iter().copied())
        .collect();
    let all_stored = eventually(Duration::from_secs(10), || async {
        sink.stored().await.is_superset(&ids)
    })
    .await;
    let stats = w.stop().await;

    // Assert
    assert!(
        answers.iter().all(|(_, a)| a.is_ok()),
        "every request answered Ok"
    );
    assert_eq!(ids.len(), 600);
    assert_eq!(appended, 601, "each event appended once (and the warm-up)");
    assert!(
        calls < 150,
        "300 requests shared {calls} script calls (round trips)"
    );
    assert!(all_stored);
    assert_eq!(stats.stored, 601, "stored once each");
    assert_eq!(stats.duplicates, 0);
}

#[tokio::test]
async fn requests_sharing_a_round_trip_each_get_their_own_backlog_answer() {
    // Arrange: room for 150 events, 200 single-event requests at once.
    let redis = TestRedis::get();
    let url = redis.url();
    let prefix = unique_prefix("group-full");
    let q = Arc::new(queue(&url, &prefix, 150));

    // Act
    let answers = enqueue_concurrently(&q, 200, |_| 1).await;
    let appended = xlen(&url, &Keys::new(&prefix).stream).await;
    let accepted_ids: std::collections::HashSet<_> = answers
        .iter()
        .filter(|(_, a)| a.is_ok())
        .flat_map(|(ids, _)| ids.iter().copied())
        .collect();
    let full = answers
        .iter()
        .filter(|(_, a)| matches!(a, Err(QueueError::Full { limit: 150, .. })))
        .count();
    let sink = TestStore::open().await;
    let w = start_worker(&url, &prefix, "w", Arc::clone(&sink));
    let drained = eventually(Duration::from_secs(10), || async {
        sink.stored().await.len() >= 150
    })
    .await;
    let stats = w.stop().await;

    // Assert: exactly the accepted ones are in the stream and stored.
    assert_eq!(accepted_ids.len(), 150);
    assert_eq!(full, 50, "the rest answered Full");
    assert_eq!(appended, 150);
    assert!(drained);
    assert_eq!(sink.stored().await, accepted_ids);
    assert_eq!(stats.stored, 150);
}
