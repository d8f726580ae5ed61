//! The journal against real SQLite files in temporary directories.

#![allow(clippy::unwrap_used)]

use std::str::FromStr;

use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use uuid::Uuid;

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::message::AcceptedEvent;

fn message(id: Uuid) -> Message {
    let event = eye_core::Event::page_view("s", "www.example.com", "/").unwrap();
    Message::EventV1(AcceptedEvent {
        client_timestamp: None,
        id,
        application: "test".into(),
        received_at: chrono::Utc::now(),
        event,
    })
}

struct Fixture {
    dir: tempfile::TempDir,
    url: String,
    store: Store,
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("eye.db").display());
        let store = Store::open(&url).await.unwrap();
        Self { dir, url, store }
    }

    fn config(&self) -> JournalConfig {
        JournalConfig {
            dir: self.journal(),
            batch: 100,
            max_bytes: 1 << 30,
            segment_bytes: SEGMENT_BYTES,
            sync: false,
        }
    }

    fn journal(&self) -> PathBuf {
        self.dir.path().join("eye.db.journal")
    }

    fn segments(&self) -> Vec<u64> {
        segment::list(&self.journal()).unwrap()
    }

    async fn stored(&self) -> u64 {
        self.store.total_events().await.unwrap()
    }

    /// Polls until `n` events are stored (bounded: 10 s).
    async fn wait_stored(&self, n: u64) {
        for _ in 0..1000 {
            if self.stored().await >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("only {} of {n} events stored", self.stored().await);
    }

    async fn lock_store(&self) -> SqliteConnection {
        let mut locker =
            SqliteConnection::connect_with(&SqliteConnectOptions::from_str(&self.url).unwrap())
                .await
                .unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut locker)
            .await
            .unwrap();
        locker
    }
}

async fn send(queue: &Arc<JournalQueue>, requests: usize, per_request: usize) -> Vec<Uuid> {
    let tasks: Vec<_> = (0..requests)
        .map(|_| {
            let queue = Arc::clone(queue);
            tokio::spawn(async move {
                let ids: Vec<Uuid> = (0..per_request).map(|_| Uuid::now_v7()).collect();
                queue
                    .enqueue(ids.iter().map(|&id| message(id)).collect())
                    .await
                    .map(|()| ids)
            })
        })
        .collect();
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap().unwrap());
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_are_stored_and_stored_segments_deleted() {
    stored_and_deleted(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_fsync_acknowledged_events_are_stored_and_stored_segments_deleted() {
    stored_and_deleted(true).await;
}

async fn stored_and_deleted(sync: bool) {
    let f = Fixture::new().await;
    let mut config = f.config();
    config.sync = sync;
    config.segment_bytes = 4 * 1024;
    let queue = Arc::new(JournalQueue::open(f.store.clone(), config).unwrap());

    let acked = send(&queue, 200, 5).await;
    f.wait_stored(1000).await;

    for id in [acked[0], acked[999]] {
        assert!(f.store.get_event(id).await.unwrap().is_some());
    }
    assert_eq!(queue.backlog().await.unwrap(), 0);
    queue
        .ready()
        .await
        .expect("ready while the store task runs");
    let live = f.segments();
    assert_eq!(
        live.len(),
        1,
        "only the segment being written is left: {live:?}"
    );
    assert!(live[0] >= 2, "4 KiB segments rotated: {live:?}");
    queue.close().await;
    assert!(f.segments().is_empty());
    assert_eq!(f.stored().await, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_stores_everything_acknowledged_while_the_store_was_locked() {
    let f = Fixture::new().await;
    let queue = Arc::new(JournalQueue::open(f.store.clone(), f.config()).unwrap());
    let mut locker = f.lock_store().await;

    // Acknowledged while no transaction can commit: they are in the journal.
    let acked = send(&queue, 50, 2).await;
    assert_eq!(acked.len(), 100);
    assert!(queue.backlog().await.unwrap() > 0);
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    queue.close().await;

    assert_eq!(f.stored().await, 100);
    assert!(f.segments().is_empty());
    assert!(matches!(
        queue.enqueue(vec![message(Uuid::now_v7())]).await,
        Err(QueueError::ShuttingDown)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_journal_answers_full_and_loses_nothing_it_acknowledged() {
    let f = Fixture::new().await;
    let mut config = f.config();
    config.max_bytes = 20 * 1024;
    let queue = Arc::new(JournalQueue::open(f.store.clone(), config).unwrap());
    let mut locker = f.lock_store().await;

    let mut acked = Vec::new();
    let mut full = None;
    for _ in 0..200 {
        let ids: Vec<Uuid> = (0..10).map(|_| Uuid::now_v7()).collect();
        match queue
            .enqueue(ids.iter().map(|&id| message(id)).collect())
            .await
        {
            Ok(()) => acked.extend(ids),
            Err(e) => {
                full = Some(e);
                break;
            }
        }
    }

    assert!(matches!(full, Some(QueueError::Full { .. })), "{full:?}");
    assert!(acked.len() >= 50, "{}", acked.len());
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    f.wait_stored(acked.len() as u64).await;
    for id in &acked {
        assert!(f.store.get_event(*id).await.unwrap().is_some());
    }
    queue
        .enqueue(vec![message(Uuid::now_v7())])
        .await
        .expect("room again once stored");
    queue.close().await;
    assert_eq!(f.stored().await, acked.len() as u64 + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_left_by_a_crash_is_stored_once_at_the_next_start() {
    let f = Fixture::new().await;
    // What a killed process leaves: two segments, the last ending in a torn frame,
    // and one event that was stored before the crash (its segment not yet deleted).
    let ids: Vec<Uuid> = (0..30).map(|_| Uuid::now_v7()).collect();
    f.store.write_batch(&[message(ids[0])]).await.unwrap();
    fs::create_dir_all(f.journal()).unwrap();
    let mut first = Vec::new();
    for id in &ids[..20] {
        segment::encode(&message(*id), &mut first).unwrap();
    }
    let mut second = Vec::new();
    for id in &ids[20..] {
        segment::encode(&message(*id), &mut second).unwrap();
    }
    let mut torn = Vec::new();
    segment::encode(&message(Uuid::now_v7()), &mut torn).unwrap();
    second.extend_from_slice(&torn[..torn.len() / 2]);
    fs::write(segment::path(&f.journal(), 7), &first).unwrap();
    fs::write(segment::path(&f.journal(), 8), &second).unwrap();

    let queue = JournalQueue::open(f.store.clone(), f.config()).unwrap();
    assert_eq!(queue.backlog().await.unwrap(), 30, "torn frame not counted");
    let later = Uuid::now_v7();
    queue.enqueue(vec![message(later)]).await.unwrap();
    f.wait_stored(31).await;
    queue.close().await;

    assert_eq!(
        f.stored().await,
        31,
        "each stored exactly once, the torn one not at all"
    );
    for id in ids.iter().chain([&later]) {
        assert!(f.store.get_event(*id).await.unwrap().is_some());
    }
    assert!(f.segments().is_empty());
}

#[tokio::test]
async fn a_journal_in_use_cannot_be_opened_a_second_time() {
    let f = Fixture::new().await;
    let queue = JournalQueue::open(f.store.clone(), f.config()).unwrap();
    let second = JournalQueue::open(f.store.clone(), f.config());
    let err = second.err().unwrap().to_string();
    assert!(err.contains("in use"), "{err}");
    queue.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_frame_is_dead_lettered_and_the_rest_stored() {
    let f = Fixture::new().await;
    fs::create_dir_all(f.journal()).unwrap();
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let mut buf = Vec::new();
    segment::encode(&message(a), &mut buf).unwrap();
    let junk = br#"{"type":"event.v9","id":"x"}"#;
    buf.extend_from_slice(&(junk.len() as u32).to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(junk).to_le_bytes());
    buf.extend_from_slice(junk);
    segment::encode(&message(b), &mut buf).unwrap();
    fs::write(segment::path(&f.journal(), 1), &buf).unwrap();

    let queue = JournalQueue::open(f.store.clone(), f.config()).unwrap();
    queue.close().await;

    assert_eq!(f.stored().await, 2);
    let dead = fs::read_to_string(f.journal().join("dead-letters.jsonl")).unwrap();
    assert_eq!(dead.lines().count(), 1);
    let line: serde_json::Value = serde_json::from_str(dead.trim()).unwrap();
    assert_eq!(line["message"], String::from_utf8_lossy(junk).as_ref());
    assert_eq!(line["reason"], "undecodable message");
}

#[test]
fn the_default_directory_sits_next_to_the_database() {
    let dir = JournalQueue::default_dir("sqlite:///var/lib/eye/eye.db").unwrap();
    assert_eq!(dir, Path::new("/var/lib/eye/eye.db.journal"));
    assert_eq!(JournalQueue::default_dir("sqlite::memory:"), None);
    assert_eq!(JournalQueue::default_dir("sqlite://x.db?mode=memory"), None);
}
