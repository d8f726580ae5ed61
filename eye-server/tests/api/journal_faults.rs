//! The journal's faults through the real binary: a corrupt frame, a full disk, and
//! the modes of the files that hold events.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use eye_server::message::{AcceptedEvent, Message};
use eye_server::queue::journal::segment;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::binary::{Server, create_key, lock_database};

/// A page view of `session` with a fixed id, as the queue carries it.
fn message(id: Uuid, session: &str) -> Message {
    Message::EventV1(AcceptedEvent {
        client_timestamp: None,
        id,
        application: "tests".into(),
        received_at: chrono::Utc::now(),
        event: eye_core::Event::page_view(session, "www.example.com", "/").unwrap(),
    })
}

/// Polls `check` every 20 ms until it returns `Some`, for at most 60 s.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn get(http: &reqwest::Client, url: &str, key: &str) -> (u16, Value) {
    let r = http.get(url).bearer_auth(key).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_corrupt_frame_loses_only_itself_and_its_segment_is_kept_aside() {
    // Arrange: a journal left by an earlier process, 20 frames, one bit flipped in
    // the 6th.
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "tests", "all");
    let journal = dir.path().join("eye.db.journal");
    std::fs::create_dir_all(&journal).unwrap();
    let ids: Vec<Uuid> = (0..20).map(|_| Uuid::now_v7()).collect();
    let mut buf = Vec::new();
    let mut starts = Vec::new();
    for id in &ids {
        starts.push(buf.len());
        segment::encode(&message(*id, "corrupt"), &mut buf).unwrap();
    }
    buf[starts[5] + 40] ^= 0x10;
    let seg = segment::path(&journal, 1);
    std::fs::write(&seg, &buf).unwrap();

    // Act: start the server, which stores what the journal holds.
    let server = Server::start(dir.path(), &[]);
    let http = reqwest::Client::new();

    // Assert: the 19 good frames are stored, the bad one only is lost.
    let url = server.url("/sessions/corrupt");
    let session = eventually("the good frames to be stored", || async {
        let (status, body) = get(&http, &url, &key).await;
        (status == 200 && body["event_count"] == 19).then_some(body)
    })
    .await;
    assert_eq!(session["event_count"], 19);
    for (i, id) in ids.iter().enumerate() {
        let (status, _) = get(&http, &server.url(&format!("/events/{id}")), &key).await;
        assert_eq!(status, if i == 5 { 404 } else { 200 }, "event {i}");
    }
    // The segment is kept aside, not deleted, and no longer read.
    let aside = PathBuf::from(format!("{}.corrupt", seg.display()));
    eventually("the segment to be moved aside", || async {
        (aside.exists() && !seg.exists()).then_some(())
    })
    .await;
    // The backlog is right (nothing left), and the loss is counted.
    let (status, ready) = get(&http, &server.url("/readyz"), &key).await;
    assert_eq!((status, &ready["backlog"]), (200, &json!(0)), "{ready}");
    let metrics = http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(metric(&metrics, "eye_journal_corrupt_frames_total"), 1.0);
    assert!(
        server.stderr_text().contains("corrupt"),
        "{}",
        server.stderr_text()
    );
}

/// A tmpfs of `mib` MiB mounted at `dir` for as long as it lives (root only).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, mib: u32) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m,mode=0700")])
            .arg("tmpfs")
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn batch(session: &str, n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|_| {
                json!({
                    "id": Uuid::now_v7(),
                    "session_id": session,
                    "category": "page_interaction",
                    "name": "page_view",
                    "data": {"host": "www.example.com", "path": format!("/{}", "p".repeat(200))},
                    "timestamp": "2022-01-01T00:00:00Z",
                })
            })
            .collect(),
    )
}

#[tokio::test]
async fn a_full_journal_disk_fails_readyz_and_ingest_recovers_by_itself() {
    // Arrange: the journal on a 1 MiB tmpfs, the database on the ordinary disk.
    let dir = tempfile::tempdir().unwrap();
    let Some(tmpfs) = Tmpfs::mount(&dir.path().join("journal"), 1) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must be able to mount a tmpfs (root)"
        );
        eprintln!("skipped: cannot mount a tmpfs (not root?)");
        return;
    };
    let key = create_key(dir.path(), "tests", "all");
    let journal = tmpfs.0.to_str().unwrap().to_owned();
    let server = Server::start(dir.path(), &["--journal-dir", &journal]);
    let http = reqwest::Client::new();
    let post = |body: Value| {
        let (http, url, key) = (http.clone(), server.url("/events"), key.clone());
        async move {
            http.post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    // Hold the store back, so what is acknowledged stays in the journal.
    let lock = lock_database(dir.path()).await;

    // Act: send 100-event batches until the disk is full (1 MiB holds fewer than 40).
    let mut acked = 0u64;
    let mut full = None;
    for _ in 0..200 {
        let response = post(batch("full-disk", 100)).await;
        match response.status().as_u16() {
            201 => acked += 100,
            503 => {
                full = Some(response);
                break;
            }
            other => panic!("unexpected {other}"),
        }
    }

    // Assert: a 503 with Retry-After, and /readyz fails while appends cannot be written.
    let full = full.expect("the disk never filled");
    assert!(full.headers().contains_key("retry-after"));
    assert!(acked > 0);
    let (status, ready) = get(&http, &server.url("/readyz"), &key).await;
    assert_eq!(status, 503, "{ready}");

    // Act: the store comes back and takes what the journal holds.
    drop(lock);

    // Assert: ingest recovers by itself (no restart) and /readyz with it, and every
    // acknowledged event is stored once.
    eventually("ingest to accept again", || async {
        let response = post(batch("full-disk", 1)).await;
        (response.status().as_u16() == 201).then_some(())
    })
    .await;
    acked += 1;
    let (status, _) = get(&http, &server.url("/readyz"), &key).await;
    assert_eq!(status, 200);
    let url = server.url("/sessions/full-disk");
    eventually("every acknowledged event to be stored", || async {
        let (_, body) = get(&http, &url, &key).await;
        (body["event_count"] == acked).then_some(())
    })
    .await;
    let (_, page) = get(
        &http,
        &server.url("/events?session_id=full-disk&page_size=1"),
        &key,
    )
    .await;
    assert_eq!(page["count"], acked);
    drop(server);
}

#[cfg(unix)]
#[tokio::test]
async fn the_database_and_the_journal_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "tests", "all");
    let server = Server::start(dir.path(), &[]);
    let http = reqwest::Client::new();
    let response = http
        .post(server.url("/events"))
        .bearer_auth(&key)
        .json(&batch("private", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let journal = dir.path().join("eye.db.journal");
    assert_eq!(mode(&dir.path().join("eye.db")), 0o600, "database");
    assert_eq!(mode(&journal), 0o700, "journal directory");
    for entry in std::fs::read_dir(&journal).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    let wal = dir.path().join("eye.db-wal");
    if wal.exists() {
        assert_eq!(mode(&wal), 0o600, "WAL");
    }
}
