//! The worker driven directly (no HTTP), against a real Redis and the real SQLite
//! store: draining, claiming, dead letters, restarts, key prefixes, consumer cleanup,
//! store outages. "Stored once" is checked on the counters a second store of an event
//! would raise (sessions' `event_count`, per-type counts), not only on the event rows.

use std::sync::Arc;
use std::time::Duration;

use eye_server::message::Message;
use eye_server::queue::Queue;
use eye_server::streams::Keys;
use eye_server::worker::Worker;
use redis::AsyncCommands;

use crate::harness::{
    RedisServer, TestRedis, TestStore, accepted, conn, deliveries, eventually, queue, start_worker,
    unique_prefix, worker_config, xlen,
};

#[tokio::test]
async fn two_workers_store_every_enqueued_event_once_and_empty_the_stream() {
    // Arrange
    let redis = TestRedis::get();
    let url = redis.url();
    let prefix = unique_prefix("drain");
    let q = Arc::new(queue(&url, &prefix, 1_000_000));
    let sink = TestStore::open().await;
    let a = start_worker(&url, &prefix, "a", Arc::clone(&sink));
    let b = start_worker(&url, &prefix, "b", Arc::clone(&sink));

    // Act: 40 concurrent producers, 50 batches of 1..=10 events each.
    let mut tasks = Vec::new();
    for p in 0..40 {
        let q = Arc::clone(&q);
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..50 {
                let batch: Vec<_> = (0..=(i % 10)).map(|_| accepted(&format!("s{p}"))).collect();
                ids.extend(batch.iter().map(|e| e.id));
                q.enqueue(batch.into_iter().map(Message::EventV1).collect())
                    .await
                    .expect("enqueue");
            }
            ids
        }));
    }
    let mut sent = std::collections::HashSet::new();
    for t in tasks {
        sent.extend(t.await.expect("producer"));
    }
    let drained = eventually(Duration::from_secs(60), || async {
        sink.stored().await.len() == sent.len()
    })
    .await;
    let stats = (a.stop().await, b.stop().await);

    // Assert
    assert!(
        drained,
        "stored {} of {}",
        sink.stored().await.len(),
        sent.len()
    );
    assert_eq!(sink.stored().await, sent);
    let n = sent.len() as i64;
    assert_eq!(sink.counters().await, (n, n), "each event counted once");
    assert_eq!(stats.0.stored + stats.1.stored, sent.len() as u64);
    assert_eq!(
        xlen(&url, &Keys::new(&prefix).stream).await,
        0,
        "acknowledged entries are deleted"
    );
    assert_eq!(q.backlog().await.expect("backlog"), 0);
}

#[tokio::test]
async fn undecodable_message_is_dead_lettered_and_logged_and_the_rest_flows() {
    // Arrange
    let redis = TestRedis::get();
    let url = redis.url();
    let prefix = unique_prefix("undecodable");
    let keys = Keys::new(&prefix);
    let q = queue(&url, &prefix, 1000);
    let before = accepted("s");
    let after = accepted("s");
    q.enqueue(vec![Message::EventV1(before.clone())])
        .await
        .expect("enqueue");
    let _: String = conn(&url)
        .await
        .xadd(
            &keys.stream,
            "*",
            &[("m", r#"{"type":"event.v99","id":"x"}"#)],
        )
        .await
        .expect("XADD");
    q.enqueue(vec![Message::EventV1(after.clone())])
        .await
        .expect("enqueue");
    let sink = TestStore::open().await;

    // Act
    let w = start_worker(&url, &prefix, "w", Arc::clone(&sink));
    let done = eventually(Duration::from_secs(10), || async {
        sink.stored().await.len() == 2 && !sink.errors().await.is_empty()
    })
    .await;
    let stats = w.stop().await;

    // Assert
    assert!(done);
    assert_eq!(sink.stored().await, [before.id, after.id].into());
    assert_eq!(stats.dead_lettered, 1);
    let errors = sink.errors().await;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].codes, r#"["dead_lettered"]"#);
    assert!(errors[0].payload.contains("event.v99"));
    let dead: redis::streams::StreamRangeReply = conn(&url)
        .await
        .xrange_all(&keys.dead)
        .await
        .expect("XRANGE");
    assert_eq!(dead.ids.len(), 1);
    assert_eq!(xlen(&url, &keys.stream).await, 0);
}

#[tokio::test]
async fn poison_message_is_dead_lettered_after_max_deliveries_and_never_blocks_the_rest() {
    // Arrange: the store refuses `poison` (a trigger in the database raises on it).
    let redis = TestRedis::get();
    let url = redis.url();
    let prefix = unique_prefix("poison");
    let keys = Keys::new(&prefix);
    let q = queue(&url, &prefix, 1000);
    let poison = accepted("s");
    let mut batch: Vec<_> = (0..20).map(|_| accepted("s")).collect();
    batch.insert(7, poison.clone());
    let good: std::collections::HashSet<_> = batch
        .iter()
        .map(|e| e.id)
        .filter(|id| *id != poison.id)
        .collect();
    q.enqueue(batch.into_iter().map(Message::EventV1).collect())
        .await
        .expect("enqueue");
    let sink = TestStore::open().await;
    sink.refuse(Some(poison.id)).await;

    // Act
    let w = start_worker(&url, &prefix, "w", Arc::clone(&sink));
    let rest_flowed = eventually(Duration::from_secs(10), || async {
        sink.stored().await == good
    })
    .await;
    let dead_lettered = eventually(Duration::from_secs(20), || async {
        !sink.errors().await.is_empty()
    })
    .await;
    let stats = w.stop().await;

    // Assert
    assert!(
        rest_flowed,
        "the good events are stored while the poison one is retried"
    );
    assert!(dead_lettered);
    assert_eq!(stats.dead_lettered, 1);
    assert!(!sink.stored().await.contains(&poison.id));
    let n = good.len() as i64;
    assert_eq!(sink.counters().await, (n, n), "the good ones counted once");
    let errors = sink.errors().await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].payload.contains(&poison.id.to_string()));
    let dead: redis::streams::StreamRangeReply = conn(&url)
        .await
        .xrange_all(&keys.dead)
        .await
        .expect("XRANGE");
    assert_eq!(dead.ids.len(), 1);
    let deliveries: String = dead.ids[0].get("deliveries").expect("deliveries field");
    assert_eq!(
        deliveries, "4",
        "3 failed deliveries, dead-lettered on the 4th"
    );
    assert_eq!(xlen(&url, &keys.stream).await, 0);
}

#[tokio::test]
async fn entries_left_pending_by_a_dead_consumer_are_claimed_and_stored() {
    // Arrange: a consumer reads 30 entries and dies without acknowledging them.
    let redis = TestRedis::get();
    let url = redis.url();
    let prefix = unique_prefix("claim");
    let keys = Keys::new(&prefix);
    let q = queue(&url, &prefix, 1000);
    let events: Vec<_> = (0..30).map(|_| accepted("s")).collect();
    let ids: std::collections::HashSet<_> = events.iter().map(|e| e.id).collect();
    let mut c = conn(&url).await;
    let _: () = c
        .xgroup_create_mkstream(&keys.stream, &keys.group, "0")
        .await
        .expect("group");
    q.enqueue(events.into_iter().map(Message::EventV1).collect())
        .await
        .expect("enqueue");
    let opts = redis::streams::StreamReadOptions::default()
        .group(&keys.group, "ghost")
        .count(100);
    let read: redis::streams::StreamReadReply = c
        .xread_options(&[&keys.stream], &[">"], &opts)
        .await
        .expect("XREADGROUP");
    assert_eq!(read.keys[0].ids.len(), 30, "the ghost holds every entry");
    let sink = TestStore::open().await;

    // Act
    let w = start_worker(&url, &prefix, "survivor", Arc::clone(&sink));
    let reclaimed = eventually(Duration::from_secs(10), || async {
        sink.stored().await == ids
    })
    .await;
    let stats = w.stop().await;

    // Assert
    assert!(reclaimed);
    assert_eq!(stats.claimed, 30);
    assert_eq!(sink.counters().await, (30, 30));
    assert_eq!(xlen(&url, &keys.stream).await, 0);
}

#[tokio::test]
async fn worker_keeps_going_across_a_redis_restart() {
    // Arrange
    let mut server = RedisServer::start_persistent();
    let url = server.url();
    let prefix = unique_prefix("restart");
    let q = queue(&url, &prefix, 1000);
    let sink = TestStore::open().await;
    let w = start_worker(&url, &prefix, "w", Arc::clone(&sink));
    let first = accepted("s");
    q.enqueue(vec![Message::EventV1(first.clone())])
        .await
        .expect("enqueue");
    assert!(
        eventually(Duration::from_secs(10), || async {
            sink.stored().await.contains(&first.id)
        })
        .await
    );

    // Act: Redis crashes; the worker's next read fails; Redis comes back.
    server.kill();
    server.restart();
    let second = accepted("s");
    let appended = eventually(Duration::from_secs(10), || async {
        q.enqueue(vec![Message::EventV1(second.clone())])
            .await
            .is_ok()
    })
    .await;
    let stored = eventually(Duration::from_secs(15), || async {
        sink.stored().await.contains(&second.id)
    })
    .await;
    w.stop().await;

    // Assert
    assert!(appended && stored, "appended {appended}, stored {stored}");
    assert_eq!(sink.counters().await, (2, 2));
}

#[tokio::test]
async fn prefixes_keep_deployments_on_one_redis_apart() {
    // Arrange
    let redis = TestRedis::get();
    let url = redis.url();
    let (pa, pb) = (unique_prefix("iso-a"), unique_prefix("iso-b"));
    let (qa, qb) = (queue(&url, &pa, 1000), queue(&url, &pb, 1000));
    let (ea, eb) = (accepted("a"), accepted("b"));
    qa.enqueue(vec![Message::EventV1(ea.clone())])
        .await
        .expect("enqueue");
    qb.enqueue(vec![Message::EventV1(eb.clone())])
        .await
        .expect("enqueue");
    let sink = TestStore::open().await;

    // Act
    let w = start_worker(&url, &pa, "w", Arc::clone(&sink));
    let got_a = eventually(Duration::from_secs(10), || async {
        sink.stored().await.contains(&ea.id)
    })
    .await;
    w.stop().await;

    // Assert
    assert!(got_a);
    assert!(!sink.stored().await.contains(&eb.id));
    assert_eq!(qb.backlog().await.expect("backlog"), 1);
}

#[tokio::test]
async fn idle_consumers_with_nothing_pending_are_removed_and_those_holding_entries_kept() {
    // Arrange: `holder` holds an entry; `gone` holds nothing; both are idle.
    let redis = TestRedis::get();
    let url = redis.url();
    let prefix = unique_prefix("forget");
    let keys = Keys::new(&prefix);
    let q = queue(&url, &prefix, 1000);
    let mut c = conn(&url).await;
    let _: () = c
        .xgroup_create_mkstream(&keys.stream, &keys.group, "0")
        .await
        .expect("group");
    q.enqueue(vec![Message::EventV1(accepted("s"))])
        .await
        .expect("enqueue");
    let opts = redis::streams::StreamReadOptions::default()
        .group(&keys.group, "holder")
        .count(1);
    let _: redis::streams::StreamReadReply = c
        .xread_options(&[&keys.stream], &[">"], &opts)
        .await
        .expect("XREADGROUP");
    let _: u64 = redis::cmd("XGROUP")
        .arg("CREATECONSUMER")
        .arg(&keys.stream)
        .arg(&keys.group)
        .arg("gone")
        .query_async(&mut c)
        .await
        .expect("CREATECONSUMER");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut config = worker_config(&prefix, "w");
    config.claim_idle = Duration::from_secs(3600);
    config.forget_consumers_after = Duration::from_millis(200);
    let conn_w = eye_server::streams::connect(&url, config.response_timeout()).expect("URL");

    // Act
    let w = Worker::new(conn_w, TestStore::open().await, config).spawn();
    let names = || {
        let mut c = c.clone();
        let stream = keys.stream.clone();
        let group = keys.group.clone();
        async move {
            let info: redis::streams::StreamInfoConsumersReply =
                c.xinfo_consumers(&stream, &group).await.expect("XINFO");
            info.consumers
                .into_iter()
                .map(|c| c.name)
                .collect::<std::collections::HashSet<_>>()
        }
    };
    let forgotten = eventually(Duration::from_secs(5), || async {
        !names().await.contains("gone")
    })
    .await;
    w.stop().await;

    // Assert
    assert!(forgotten);
    let left = names().await;
    assert!(
        left.contains("holder"),
        "a consumer holding entries is kept: {left:?}"
    );
}

#[tokio::test]
async fn a_store_outage_is_waited_out_and_dead_letters_nothing() {
    // Arrange: the store is down; entries will be redelivered past max_deliveries (3).
    let redis = TestRedis::get();
    let url = redis.url();
    let prefix = unique_prefix("store-down");
    let q = queue(&url, &prefix, 1000);
    let events: Vec<_> = (0..10).map(|_| accepted("s")).collect();
    let ids: std::collections::HashSet<_> = events.iter().map(|e| e.id).collect();
    q.enqueue(events.into_iter().map(Message::EventV1).collect())
        .await
        .expect("enqueue");
    let sink = TestStore::open().await;
    sink.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let w = start_worker(&url, &prefix, "w", Arc::clone(&sink));

    // Act: wait until every entry was delivered more often than max_deliveries, then
    // the store recovers.
    let past_the_limit = eventually(Duration::from_secs(30), || async {
        let d = deliveries(&url, &prefix).await;
        d.len() == 10 && d.iter().all(|&n| n > 3 + 1)
    })
    .await;
    sink.down.store(false, std::sync::atomic::Ordering::SeqCst);
    let stored = eventually(Duration::from_secs(30), || async {
        sink.stored().await == ids
    })
    .await;
    let stats = w.stop().await;

    // Assert
    assert!(past_the_limit, "{:?}", deliveries(&url, &prefix).await);
    assert!(stored, "everything is stored once the store is back");
    assert_eq!(stats.dead_lettered, 0, "an outage is not poison");
    assert!(sink.errors().await.is_empty());
    assert_eq!(sink.counters().await, (10, 10));
    assert_eq!(xlen(&url, &Keys::new(&prefix).stream).await, 0);
}

/// The reviewer's repro: the store fails for a while (claim_idle 300 ms,
/// max_deliveries 3), events keep arriving. Before the fix every entry was
/// redelivered past the limit and all 20 were dead-lettered once the store came back;
/// none was stored. `refused_as_data`: the real store refuses every write with an
/// error that blames the data (a trigger), and so does its errors log; otherwise the
/// store is down (transient errors, injected).
async fn store_outage(refused_as_data: bool) {
    // Arrange
    let redis = TestRedis::get();
    let url = redis.url();
    let prefix = unique_prefix("outage");
    let keys = Keys::new(&prefix);
    let q = queue(&url, &prefix, 1000);
    let events: Vec<_> = (0..20).map(|_| accepted("s")).collect();
    let ids: std::collections::HashSet<_> = events.iter().map(|e| e.id).collect();
    let sink = TestStore::open().await;
    if refused_as_data {
        sink.refuse(None).await;
    } else {
        sink.down.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    let w = start_worker(&url, &prefix, "w", Arc::clone(&sink));

    // Act: 10 events; once the worker holds them and has failed on them past
    // max_deliveries, 10 more; then two more rounds of failures on the first ten.
    let (first, second) = events.split_at(10);
    q.enqueue(first.iter().cloned().map(Message::EventV1).collect())
        .await
        .expect("enqueue");
    let held = eventually(Duration::from_secs(30), || async {
        let d = deliveries(&url, &prefix).await;
        d.len() == 10 && d.iter().all(|&n| n > 3)
    })
    .await;
    let rounds_before = deliveries(&url, &prefix)
        .await
        .into_iter()
        .min()
        .unwrap_or(0);
    q.enqueue(second.iter().cloned().map(Message::EventV1).collect())
        .await
        .expect("enqueue");
    let two_more_rounds = eventually(Duration::from_secs(30), || async {
        let d = deliveries(&url, &prefix).await;
        d.iter().take(10).all(|&n| n >= rounds_before + 2)
    })
    .await;
    let pending: redis::streams::StreamPendingReply = conn(&url)
        .await
        .xpending(&keys.stream, &keys.group)
        .await
        .expect("XPENDING");
    if refused_as_data {
        sink.accept().await;
    } else {
        sink.down.store(false, std::sync::atomic::Ordering::SeqCst);
    }
    let stored = eventually(Duration::from_secs(30), || async {
        sink.stored().await == ids
    })
    .await;
    let stats = w.stop().await;

    // Assert
    assert!(
        held && two_more_rounds,
        "{:?}",
        deliveries(&url, &prefix).await
    );
    assert_eq!(
        pending.count(),
        10,
        "no new entries are read while the store is failing"
    );
    assert!(stored, "stored {} of 20", sink.stored().await.len());
    assert_eq!(stats.dead_lettered, 0, "an outage is not poison");
    assert_eq!(stats.stored, 20);
    assert_eq!(sink.counters().await, (20, 20));
    assert!(sink.errors().await.is_empty());
    assert_eq!(xlen(&url, &keys.stream).await, 0);
    assert_eq!(xlen(&url, &keys.dead).await, 0);
}

#[tokio::test]
async fn an_outage_with_transient_store_errors_stores_everything_and_dead_letters_nothing() {
    store_outage(false).await;
}

#[tokio::test]
async fn an_outage_with_errors_that_look_like_bad_data_stores_everything_and_dead_letters_nothing()
{
    store_outage(true).await;
}

#[tokio::test]
async fn entries_stored_but_never_acknowledged_past_max_deliveries_are_acknowledged_not_dead_lettered()
 {
    // Arrange: the events are in the store, but their entries are still pending with
    // a delivery count past max_deliveries (3), as after repeated XACK failures.
    let redis = TestRedis::get();
    let url = redis.url();
    let prefix = unique_prefix("stored-unacked");
    let keys = Keys::new(&prefix);
    let q = queue(&url, &prefix, 1000);
    let events: Vec<_> = (0..5).map(|_| accepted("s")).collect();
    let ids: std::collections::HashSet<_> = events.iter().map(|e| e.id).collect();
    let messages: Vec<_> = events.into_iter().map(Message::EventV1).collect();
    let sink = TestStore::open().await;
    sink.store.write_batch(&messages).await.expect("stored");
    let mut c = conn(&url).await;
    let _: () = c
        .xgroup_create_mkstream(&keys.stream, &keys.group, "0")
        .await
        .expect("group");
    q.enqueue(messages).await.expect("enqueue");
    let opts = redis::streams::StreamReadOptions::default()
        .group(&keys.group, "ghost")
        .count(100);
    let read: redis::streams::StreamReadReply = c
        .xread_options(&[&keys.stream], &[">"], &opts)
        .await
        .expect("XREADGROUP");
    let entry_ids: Vec<String> = read.keys[0].ids.iter().map(|e| e.id.clone()).collect();
    let _: redis::Value = redis::cmd("XCLAIM")
        .arg(&keys.stream)
        .arg(&keys.group)
        .arg("ghost")
        .arg(0)
        .arg(&entry_ids)
        .arg("RETRYCOUNT")
        .arg(9)
        .arg("JUSTID")
        .query_async(&mut c)
        .await
        .expect("XCLAIM");

    // Act
    let w = start_worker(&url, &prefix, "w", Arc::clone(&sink));
    let drained = eventually(Duration::from_secs(10), || async {
        xlen(&url, &keys.stream).await == 0
    })
    .await;
    let stats = w.stop().await;

    // Assert
    assert!(drained);
    assert_eq!(stats.dead_lettered, 0, "a stored event is acknowledged");
    assert_eq!(stats.duplicates, 5);
    assert_eq!(sink.stored().await, ids);
    assert_eq!(sink.counters().await, (5, 5), "not counted again");
    assert!(sink.errors().await.is_empty());
    assert_eq!(xlen(&url, &keys.dead).await, 0);
}

#[tokio::test]
async fn replaying_dead_letters_puts_them_back_on_the_stream_for_the_workers() {
    // Arrange: one undecodable entry, dead-lettered by a worker.
    let redis = TestRedis::get();
    let url = redis.url();
    let prefix = unique_prefix("replay");
    let keys = Keys::new(&prefix);
    let mut c = conn(&url).await;
    let _: String = c
        .xadd(&keys.stream, "*", &[("m", r#"{"type":"event.v99"}"#)])
        .await
        .expect("XADD");
    let sink = TestStore::open().await;
    let w = start_worker(&url, &prefix, "w", Arc::clone(&sink));
    assert!(
        eventually(Duration::from_secs(10), || async {
            xlen(&url, &keys.dead).await == 1
        })
        .await
    );
    w.stop().await;

    // Act
    let moved = eye_server::streams::replay_dead_letters(&url, &keys)
        .await
        .expect("replay");

    // Assert
    assert_eq!(moved, 1);
    assert_eq!(xlen(&url, &keys.dead).await, 0);
    let back: redis::streams::StreamRangeReply = c.xrange_all(&keys.stream).await.expect("XRANGE");
    assert_eq!(back.ids.len(), 1);
    let raw: String = back.ids[0].get("m").expect("message field");
    assert_eq!(raw, r#"{"type":"event.v99"}"#);
}
