//! `Event::parse_json` on arbitrary bytes: what `POST /events` does with one event.
#![no_main]

use eye_core::Event;
use eye_fuzz::{check_event_outcome, ctx};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ctx = ctx();
    let result = Event::parse_json(data, &ctx);
    let value = serde_json::from_slice::<serde_json::Value>(data).ok();
    check_event_outcome(&result, value.as_ref(), &ctx);
    // The three entry points agree.
    if let Some(value) = value
        && data.len() <= eye_core::MAX_EVENT_BYTES
    {
        assert_eq!(Event::parse_value(&value, &ctx), result);
        assert_eq!(Event::parse_owned(value, &ctx), result);
    }
});
