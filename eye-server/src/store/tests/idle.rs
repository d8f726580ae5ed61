//! Releasing the page caches of a quiet store.

use eye_core::EventQuery;

use super::*;
use crate::store::sqlite::idle::release;

#[tokio::test]
async fn release_empties_every_idle_connection_and_the_store_keeps_answering() {
    // Arrange: a write and concurrent reads, so the writer and several readers are open.
    let db = TestDb::sqlite().await;
    let store = &db.store;
    let sqlite = super::harness::sqlite(store);
    store
        .write_batch(&[view("s", 1), click("s", 2)])
        .await
        .unwrap();
    let q = EventQuery::new();
    let (a, b, c) = tokio::join!(
        store.query_events(&q),
        store.query_events(&q),
        store.query_events(&q)
    );
    assert!(a.is_ok() && b.is_ok() && c.is_ok());
    // Dropped connections go back to their pool in the background.
    for _ in 0..500 {
        if sqlite.pool.num_idle() == sqlite.pool.size() as usize && sqlite.writer.num_idle() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let open_readers = sqlite.pool.size() as usize;
    assert!(open_readers > 1, "{open_readers}");
    // Act
    let emptied = release(&[sqlite.pool.clone(), sqlite.writer.clone()]).await;
    // Assert
    assert_eq!(emptied, open_readers + 1);
    store.write_batch(&[view("s", 3)]).await.unwrap();
    let (count, events) = store.query_events(&q).await.unwrap();
    assert_eq!((count, events.len()), (3, 3));
}
