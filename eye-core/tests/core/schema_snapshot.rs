//! The committed schema snapshot: a schema change must show up in review.

use std::path::PathBuf;

fn snapshot_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schema/event.schema.json")
}

#[test]
fn committed_schema_snapshot_matches_the_exported_schema() {
    let current = eye_core::event_schema_json();
    let path = snapshot_path();
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &current).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == current,
        "{} is out of date: the exported schema changed. Review the change, then run \
         `UPDATE_SNAPSHOTS=1 cargo test -p eye-core` and commit the file.",
        path.display()
    );
}
