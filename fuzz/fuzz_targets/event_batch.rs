//! The batch path of `POST /events` on arbitrary bytes.
//!
//! eye-core has no batch parser: the server splits a JSON array into raw items
//! (`serde_json::value::RawValue`) and parses each alone, so one item serde cannot
//! hold (nested too deep, say) is rejected alone. This target does the same split as
//! `eye-server/src/routes/ingest.rs` (`parse_body`), which is private; if that code
//! changes, change this too.
#![no_main]

use eye_core::{Event, MAX_EVENT_BYTES};
use eye_fuzz::{check_event_outcome, ctx};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use serde_json::value::RawValue;

fuzz_target!(|data: &[u8]| {
    if data.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'[') {
        return;
    }
    let Ok(items) = serde_json::from_slice::<Vec<&RawValue>>(data) else {
        return;
    };
    // The split neither merges nor splits events: when the whole body is a value,
    // its elements are the items, one for one.
    if let Ok(Value::Array(whole)) = serde_json::from_slice::<Value>(data) {
        assert_eq!(whole.len(), items.len());
        for (item, element) in items.iter().zip(&whole) {
            let alone: Value = serde_json::from_str(item.get()).expect("an element parses alone");
            assert_eq!(&alone, element);
        }
    }
    let ctx = ctx();
    for item in items {
        let text = item.get();
        let Ok(value) = serde_json::from_str::<Value>(text) else {
            continue; // the server rejects it alone as invalid_json
        };
        if text.len() > MAX_EVENT_BYTES {
            continue; // rejected on size before parsing
        }
        let result = Event::parse_owned(value.clone(), &ctx);
        check_event_outcome(&result, Some(&value), &ctx);
        // An item judged in a batch is judged as it would be alone.
        assert_eq!(Event::parse_json(text.as_bytes(), &ctx), result);
    }
});
