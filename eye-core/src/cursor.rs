//! Keyset cursors: an opaque position in a listing's order, so that a page costs the
//! same at any depth and a walk sees every row once while rows are added.
//!
//! A cursor names a row's key, `(time, id)` (an event's timestamp and id, an error's
//! received time and id), the direction to read from it, the listing it belongs to and
//! a fingerprint of that listing's filters. On the wire it is base64url (no padding) of
//!
//! ```text
//! version (1) | listing (1) | direction (1) | time (8, big-endian µs) | id (16)
//!   | filters (8: SHA-256 of the filters, truncated) | checksum (4: SHA-256 of the rest)
//! ```
//!
//! Not an HMAC: a cursor grants nothing a client could not ask for with `start_time`
//! and `end_time`, so it needs no secret (and nodes need not share one). The checksum
//! turns a mangled or hand-edited cursor into a clear `invalid_cursor` rather than a
//! silently wrong page, and the fingerprint refuses a cursor reused with other
//! filters, whose position would mean nothing there.
//!
//! ```
//! use eye_core::{Cursor, CursorListing, Direction};
//! let c = Cursor::new(CursorListing::Events, Direction::Next, 1_640_995_200_000_000, 7, 42);
//! let token = c.encode();
//! assert_eq!(Cursor::decode(&token).unwrap(), c);
//! // One character changed: refused.
//! let mut bad = token.into_bytes();
//! bad[10] = if bad[10] == b'A' { b'B' } else { b'A' };
//! assert!(Cursor::decode(std::str::from_utf8(&bad).unwrap()).is_err());
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// The shape of every cursor token (the `cursor` parameter's schema): 52 base64url
/// characters.
pub const CURSOR_PATTERN: &str = "^[A-Za-z0-9_-]{52}$";

/// The format version written in every cursor.
const VERSION: u8 = 1;

/// Bytes of a decoded cursor.
const LEN: usize = 1 + 1 + 1 + 8 + 16 + 8 + 4;

/// The listing a cursor belongs to: each has its own order and filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CursorListing {
    /// `GET /events`: newest first, `(timestamp, id)` descending.
    Events,
    /// `GET /sessions/{id}/events`: oldest first, `(timestamp, id)` ascending.
    SessionEvents,
    /// `GET /errors`: newest first, `(received_at, id)` descending.
    Errors,
}

impl CursorListing {
    fn byte(self) -> u8 {
        match self {
            Self::Events => 1,
            Self::SessionEvents => 2,
            Self::Errors => 3,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Events),
            2 => Some(Self::SessionEvents),
            3 => Some(Self::Errors),
            _ => None,
        }
    }
}

/// Which way a cursor reads from its position, in the listing's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The rows after the position (the `next` link).
    Next,
    /// The rows before the position (the `previous` link).
    Previous,
}

/// A decoded cursor: a position in one listing, a direction, and the fingerprint of
/// the filters it was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cursor {
    /// The listing.
    pub listing: CursorListing,
    /// Which way to read.
    pub direction: Direction,
    /// The row's time, microseconds since the Unix epoch.
    pub time: i64,
    /// The row's id: a UUID's 128 bits, or an errors-log id.
    pub id: u128,
    /// [`filters_fingerprint`] of the query it was made for.
    pub filters: u64,
}

/// Why a cursor was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Not base64url, the wrong length, a bad checksum or an unknown version: not a
    /// cursor this server made.
    #[error("the cursor is malformed: use a `next` or `previous` link as given")]
    Malformed,
    /// A cursor of another listing, or made for other filters.
    #[error(
        "the cursor belongs to another query: keep the filters of the page it came from, \
         or start again with `cursor=`"
    )]
    OtherQuery,
}

impl Cursor {
    /// A cursor at `(time, id)` in `listing`, for the filters whose fingerprint is
    /// `filters`.
    pub fn new(
        listing: CursorListing,
        direction: Direction,
        time: i64,
        id: u128,
        filters: u64,
    ) -> Self {
        Self {
            listing,
            direction,
            time,
            id,
            filters,
        }
    }

    /// The opaque token: base64url without padding, 52 characters.
    pub fn encode(&self) -> String {
        let mut b = Vec::with_capacity(LEN);
        b.push(VERSION);
        b.push(self.listing.byte());
        b.push(match self.direction {
            Direction::Next => 0,
            Direction::Previous => 1,
        });
        b.extend_from_slice(&self.time.to_be_bytes());
        b.extend_from_slice(&self.id.to_be_bytes());
        b.extend_from_slice(&self.filters.to_be_bytes());
        let sum = checksum(&b);
        b.extend_from_slice(&sum);
        URL_SAFE_NO_PAD.encode(b)
    }

    /// Parses a token made by [`Cursor::encode`]; anything else is
    /// [`CursorError::Malformed`].
    pub fn decode(token: &str) -> Result<Self, CursorError> {
        // A cursor is short; a long value is refused before any decoding work.
        if token.len() > 64 {
            return Err(CursorError::Malformed);
        }
        let b = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| CursorError::Malformed)?;
        if b.len() != LEN || b[0] != VERSION || b[LEN - 4..] != checksum(&b[..LEN - 4]) {
            return Err(CursorError::Malformed);
        }
        let listing = CursorListing::from_byte(b[1]).ok_or(CursorError::Malformed)?;
        let direction = match b[2] {
            0 => Direction::Next,
            1 => Direction::Previous,
            _ => return Err(CursorError::Malformed),
        };
        let int = |range: std::ops::Range<usize>| -> Result<&[u8], CursorError> {
            b.get(range).ok_or(CursorError::Malformed)
        };
        let time = i64::from_be_bytes(int(3..11)?.try_into().map_err(|_| CursorError::Malformed)?);
        let id = u128::from_be_bytes(
            int(11..27)?
                .try_into()
                .map_err(|_| CursorError::Malformed)?,
        );
        let filters = u64::from_be_bytes(
            int(27..35)?
                .try_into()
                .map_err(|_| CursorError::Malformed)?,
        );
        Ok(Self {
            listing,
            direction,
            time,
            id,
            filters,
        })
    }

    /// Decodes `token` and checks it was made for `listing` with filters whose
    /// fingerprint is `filters`.
    pub fn decode_for(
        token: &str,
        listing: CursorListing,
        filters: u64,
    ) -> Result<Self, CursorError> {
        let c = Self::decode(token)?;
        if c.listing != listing || c.filters != filters {
            return Err(CursorError::OtherQuery);
        }
        Ok(c)
    }
}

fn checksum(bytes: &[u8]) -> [u8; 4] {
    let d = Sha256::digest(bytes);
    [d[0], d[1], d[2], d[3]]
}

/// A stable 64-bit fingerprint of a listing's filters: each value length-prefixed (so
/// `("ab", "c")` and `("a", "bc")` differ), absent values distinct from empty ones.
///
/// ```
/// use eye_core::filters_fingerprint;
/// assert_ne!(filters_fingerprint(&[Some("ab"), Some("c")]), filters_fingerprint(&[Some("a"), Some("bc")]));
/// assert_ne!(filters_fingerprint(&[None]), filters_fingerprint(&[Some("")]));
/// ```
pub fn filters_fingerprint(values: &[Option<&str>]) -> u64 {
    let mut h = Sha256::new();
    for v in values {
        match v {
            None => h.update([0u8]),
            Some(s) => {
                h.update([1u8]);
                h.update((s.len() as u64).to_be_bytes());
                h.update(s.as_bytes());
            }
        }
    }
    let d = h.finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    u64::from_be_bytes(out)
}

/// How a cursor-paged request starts: at the first page, or at a cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CursorParam {
    /// `cursor=` with no value: the first page, and cursor links from there on.
    First,
    /// `cursor=<token>`: the page a `next` or `previous` link named.
    At(Cursor),
}

impl CursorParam {
    /// The value of the `cursor` parameter.
    pub fn to_param(&self) -> String {
        match self {
            Self::First => String::new(),
            Self::At(c) => c.encode(),
        }
    }
}

/// Serialized as the `cursor` parameter's value: `""` for the first page, else the
/// token.
impl serde::Serialize for CursorParam {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_param())
    }
}

impl<'de> serde::Deserialize<'de> for CursorParam {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() {
            Ok(Self::First)
        } else {
            Cursor::decode(&s)
                .map(Self::At)
                .map_err(serde::de::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Cursor {
        Cursor::new(
            CursorListing::SessionEvents,
            Direction::Previous,
            -5,
            u128::MAX - 3,
            0xdead_beef,
        )
    }

    #[test]
    fn a_cursor_round_trips_through_its_token() {
        let c = sample();
        let token = c.encode();
        assert_eq!(token.len(), 52);
        assert_eq!(Cursor::decode(&token), Ok(c));
    }

    #[test]
    fn cursors_of_every_listing_and_direction_round_trip() {
        for listing in [
            CursorListing::Events,
            CursorListing::SessionEvents,
            CursorListing::Errors,
        ] {
            for direction in [Direction::Next, Direction::Previous] {
                let c = Cursor::new(listing, direction, i64::MIN, 7, u64::MAX);
                assert_eq!(
                    Cursor::decode(&c.encode()),
                    Ok(c),
                    "{listing:?} {direction:?}"
                );
            }
        }
    }

    #[test]
    fn the_cursor_parameter_is_empty_for_the_first_page_and_the_token_after() {
        let c = sample();
        assert_eq!(CursorParam::First.to_param(), "");
        assert_eq!(CursorParam::At(c).to_param(), c.encode());
    }

    #[test]
    fn garbage_and_truncated_tokens_are_malformed() {
        let token = sample().encode();
        for bad in [
            "",
            "x",
            "!!!!",
            &token[..51],
            &format!("{token}A"),
            &"A".repeat(200),
        ] {
            assert_eq!(Cursor::decode(bad), Err(CursorError::Malformed), "{bad}");
        }
    }

    #[test]
    fn every_single_byte_change_is_caught() {
        let token = sample().encode();
        let raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
        for i in 0..raw.len() {
            let mut b = raw.clone();
            b[i] ^= 0x01;
            assert_eq!(
                Cursor::decode(&URL_SAFE_NO_PAD.encode(&b)),
                Err(CursorError::Malformed),
                "byte {i}"
            );
        }
    }

    #[test]
    fn a_cursor_of_other_filters_or_listing_is_another_query() {
        let token = sample().encode();
        assert_eq!(
            Cursor::decode_for(&token, CursorListing::Events, 0xdead_beef),
            Err(CursorError::OtherQuery)
        );
        assert_eq!(
            Cursor::decode_for(&token, CursorListing::SessionEvents, 1),
            Err(CursorError::OtherQuery)
        );
        assert!(Cursor::decode_for(&token, CursorListing::SessionEvents, 0xdead_beef).is_ok());
    }
}
