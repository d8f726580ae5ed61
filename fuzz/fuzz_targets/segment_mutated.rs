//! The journal segment reader on valid segments with one mutation: a torn tail, a
//! flipped bit, a bad length, junk appended. Structure-aware (`arbitrary`): the
//! fuzzer chooses messages and the mutation, `segment::encode` writes the frames.
#![no_main]

use arbitrary::Arbitrary;
use chrono::DateTime;
use eye_core::{ErrorCode, Event, FieldError};
use eye_fuzz::{Chunked, check_frames};
use eye_server::message::{AcceptedEvent, Message, RejectedEvent};
use eye_server::queue::journal::segment::{Frame, FrameEnd, HEADER_BYTES, encode, read_frames};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Item {
    PageView {
        session: String,
        path: String,
        id: u128,
    },
    Rejected {
        application: String,
        payload: String,
    },
    /// A frame with a good checksum whose payload is not a message.
    Junk(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Mutation {
    None,
    /// Cut the segment at this byte (a torn write).
    Truncate(u16),
    /// Flip one bit.
    FlipBit(u16, u8),
    /// Overwrite a frame's length field.
    SetLen(u8, u32),
    /// Append bytes (a torn or foreign tail).
    Append(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    items: Vec<Item>,
    mutation: Mutation,
    chunk: u8,
    max: u8,
}

fn message(item: &Item) -> Option<Message> {
    let received_at = DateTime::from_timestamp_micros(1_700_000_000_123_456)?;
    match item {
        Item::PageView { session, path, id } => {
            let event = Event::page_view(session, "www.example.com", &format!("/{path}")).ok()?;
            Some(Message::EventV1(AcceptedEvent {
                client_timestamp: None,
                id: uuid::Uuid::from_u128(*id),
                application: "fuzz".into(),
                received_at,
                event: event.with_timestamp(received_at),
            }))
        }
        Item::Rejected {
            application,
            payload,
        } => Some(Message::RejectedV1(RejectedEvent {
            key: uuid::Uuid::from_u128(7),
            application: application.clone(),
            received_at,
            errors: vec![FieldError::new("", ErrorCode::InvalidJson, "fuzz")],
            payload: payload.clone(),
        })),
        Item::Junk(_) => None,
    }
}

fuzz_target!(|input: Input| {
    let mut bytes = Vec::new();
    let mut starts = Vec::new();
    for item in input.items.iter().take(16) {
        let start = bytes.len();
        match (item, message(item)) {
            (_, Some(m)) => encode(&m, &mut bytes).expect("a message encodes"),
            (Item::Junk(junk), None) if !junk.is_empty() => {
                bytes.extend_from_slice(&(junk.len() as u32).to_le_bytes());
                bytes.extend_from_slice(&crc32fast::hash(junk).to_le_bytes());
                bytes.extend_from_slice(junk);
            }
            _ => continue,
        }
        starts.push(start);
    }
    let whole = bytes.clone();
    let total = whole.len();
    // The frame holding byte `at`, by its start offset.
    let frame_at = |at: usize| starts.iter().rev().copied().find(|s| *s <= at);
    let mut expect_end = None;
    // The frame whose header or payload the mutation touched, if any.
    let mut touched = None;
    match input.mutation {
        Mutation::None => expect_end = Some(FrameEnd::Eof(total as u64)),
        Mutation::Truncate(at) if usize::from(at) < total => {
            let at = usize::from(at);
            bytes.truncate(at);
            let torn = frame_at(at).expect("a byte belongs to a frame");
            expect_end = Some(FrameEnd::Eof(torn as u64));
        }
        Mutation::FlipBit(at, bit) if usize::from(at) < total => {
            let at = usize::from(at);
            bytes[at] ^= 1 << (bit % 8);
            let start = frame_at(at).expect("a byte belongs to a frame");
            touched = Some(start);
            if at >= start + 4 {
                // CRC-32 catches every single-bit error in the checksum or payload.
                expect_end = Some(FrameEnd::Corrupt(start as u64));
            }
        }
        Mutation::SetLen(frame, len) if !starts.is_empty() => {
            let start = starts[usize::from(frame) % starts.len()];
            touched = Some(start);
            bytes[start..start + 4].copy_from_slice(&len.to_le_bytes());
        }
        Mutation::Append(ref tail) => {
            bytes.extend_from_slice(tail);
        }
        _ => {}
    }
    let max = if input.max == 0 {
        usize::MAX
    } else {
        usize::from(input.max)
    };
    let mut frames = Vec::new();
    let mut reader = Chunked {
        bytes: &bytes,
        chunk: usize::from(input.chunk),
    };
    let end = read_frames(&mut reader, u64::MAX, max, &mut frames).expect("reading a slice");
    check_frames(&bytes, u64::MAX, max, &frames, end);
    // Frames wholly before the mutation come back exactly as written. The touched
    // frame itself may come back changed: the checksum covers the payload, not the
    // length, so a corrupted length can still match (found by this target: a payload
    // `ff ff ff ff 00` whose length drops to 4 keeps its CRC-32, as CRC-32 ignores
    // zero bytes once the register is zero). check_frames still holds for it.
    let intact = match end {
        FrameEnd::Limit(o) | FrameEnd::Eof(o) | FrameEnd::Corrupt(o) => o as usize,
    }
    .min(touched.unwrap_or(usize::MAX));
    for (frame, start) in frames.iter().zip(&starts) {
        if *start >= intact {
            break;
        }
        let header = HEADER_BYTES as usize;
        let len =
            u32::from_le_bytes(whole[*start..start + 4].try_into().expect("4 bytes")) as usize;
        let written = &whole[start + header..start + header + len];
        match frame {
            Frame::Message(m) => {
                let mut again = Vec::new();
                encode(m, &mut again).expect("encodes");
                assert_eq!(
                    &again[header..],
                    written,
                    "a message changed on its way through"
                );
            }
            Frame::Undecodable(raw) => assert_eq!(raw.as_slice(), written),
        }
    }
    if max == usize::MAX
        && let Some(want) = expect_end
    {
        assert_eq!(end, want, "mutation {:?}", input.mutation);
    }
});
