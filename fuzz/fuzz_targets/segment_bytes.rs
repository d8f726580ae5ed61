//! The journal segment reader on arbitrary bytes: a corrupt or hostile file on disk.
//!
//! The first two bytes choose the read size (short reads) and the frame cap; the rest
//! is the segment. Each run reads it twice, up to its length and with no byte limit,
//! and checks every answer against the format's reference walk: the same frames, the
//! same stop, no frame with a bad checksum. libFuzzer's timeout catches a loop.
#![no_main]

use eye_fuzz::{Chunked, check_frames};
use eye_server::queue::journal::segment::read_frames;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [chunk, max, bytes @ ..] = data else {
        return;
    };
    let max = if *max == 0 {
        usize::MAX
    } else {
        usize::from(*max)
    };
    for limit in [bytes.len() as u64, u64::MAX] {
        let mut reader = Chunked {
            bytes,
            chunk: usize::from(*chunk),
        };
        let mut frames = Vec::new();
        let end = read_frames(&mut reader, limit, max, &mut frames).expect("reading a slice");
        // Bounded: every frame returned took at least a header and one byte.
        assert!(frames.len() <= bytes.len() / 9);
        check_frames(bytes, limit, max, &frames, end);
    }
});
