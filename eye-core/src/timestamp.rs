//! Timestamps: the formats the seed accepted, parsed to UTC with microsecond precision.

use chrono::{
    DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, TimeZone,
    Utc,
};

/// A calendar date `YYYY-MM-DD` as a pattern: month lengths and the leap years of the
/// proleptic Gregorian calendar (year 0000 included) spelt out, so that a schema
/// allows exactly the dates the parser accepts.
macro_rules! date_pattern {
    () => {
        concat!(
            "(?:[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))",
            "|(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)"
        )
    };
}

/// The time of day, fraction and offset of an accepted timestamp, as a pattern.
macro_rules! time_pattern {
    () => {
        "[Tt ](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]{1,9})?(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?"
    };
}

/// The JSON Schema pattern of an accepted timestamp, calendar included. The one rule
/// it leaves to the parser: the UTC instant must fall in the years 0000 to 9999 (an
/// offset can move `0000-01-01T00:00:00+01:00` out), listed in
/// [`crate::RULES_OUTSIDE_SCHEMA`].
pub(crate) const TIMESTAMP_PATTERN: &str = concat!("^", date_pattern!(), time_pattern!(), "$");

/// The pattern of `start_time` and `end_time` in the query API: a date, or a date and
/// a time in any accepted timestamp format, or empty (no bound, as an empty value
/// means no filter). With the calendar spelt out, the OpenAPI document allows exactly
/// what [`crate::EventQuery::from_pairs`] accepts: a client that follows it (or
/// schemathesis) never meets a 400 for a bound alone.
///
/// ```
/// let ok = |s: &str| {
///     eye_core::EventQuery::from_pairs([("start_time", s)], &Default::default()).is_ok()
/// };
/// assert!(ok("2024-02-29") && !ok("2023-02-29") && !ok("2022-04-31"));
/// assert!(eye_core::QUERY_TIME_PATTERN.starts_with('^'));
/// ```
pub const QUERY_TIME_PATTERN: &str =
    concat!("^(?:", date_pattern!(), "(?:", time_pattern!(), ")?)?$");

/// Parses a timestamp in one of the accepted formats and returns it in UTC, truncated to
/// microseconds:
///
/// - RFC 3339 with an offset: `2022-04-11T01:08:01.407119+02:00` or `...Z` (`t` and
///   `z` may be lower case, as RFC 3339 allows);
/// - ISO 8601 without an offset, taken as UTC: `2022-04-11T01:08:01.407119`;
/// - the seed's `%Y-%m-%d %H:%M:%S.%f`: `2022-04-11 01:08:01.407119`.
///
/// Seconds are required; 0 to 9 fractional digits are accepted. The instant in UTC
/// must fall in the years 0000 to 9999, so [`format_timestamp`] can write it back in a
/// form this function reads.
///
/// ```
/// use eye_core::parse_timestamp;
/// let t = parse_timestamp("2022-04-11 01:08:01.407119").unwrap();
/// assert_eq!(eye_core::format_timestamp(&t), "2022-04-11T01:08:01.407119Z");
/// let t = parse_timestamp("2022-04-11T03:08:01+02:00").unwrap();
/// assert_eq!(eye_core::format_timestamp(&t), "2022-04-11T01:08:01.000000Z");
/// assert!(parse_timestamp("2022-02-30 00:00:00").is_none());
/// ```
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    parse_instant(s).filter(|utc| (0..=9999).contains(&utc.year()))
}

/// [`parse_timestamp`] without the range check: the instant an offset moves outside
/// the years 0000 to 9999 (`0000-01-01T00:00:00+01:00`) is still an instant, and a
/// query bound may name it.
pub(crate) fn parse_instant(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let date = parse_date_bytes(&b[..10])?;
    // RFC 3339 (section 5.6) allows lower-case `t` and `z`.
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let hour = two_digits(&b[11..13])?;
    let minute = (b[13] == b':').then(|| two_digits(&b[14..16]))??;
    let second = (b[16] == b':').then(|| two_digits(&b[17..19]))??;
    let mut rest = &b[19..];
    let mut nanos = 0u32;
    if let Some((b'.', frac)) = rest.split_first() {
        let digits = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        for (i, c) in frac[..digits].iter().enumerate() {
            nanos += u32::from(c - b'0') * 10u32.pow(8 - i as u32);
        }
        rest = &frac[digits..];
    }
    // Seconds must be 00..=59: chrono would take 60 as a leap second.
    if second > 59 {
        return None;
    }
    let time = NaiveTime::from_hms_micro_opt(hour, minute, second, nanos / 1_000)?;
    let naive = NaiveDateTime::new(date, time);
    let offset_seconds = match rest {
        [] | [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = two_digits(&[*h1, *h2])?;
            let m = two_digits(&[*m1, *m2])?;
            if h > 23 || m > 59 {
                return None;
            }
            let secs = (h * 3600 + m * 60) as i32;
            if *sign == b'-' { -secs } else { secs }
        }
        _ => return None,
    };
    let offset = FixedOffset::east_opt(offset_seconds)?;
    let utc = offset
        .from_local_datetime(&naive)
        .single()?
        .with_timezone(&Utc);
    Some(utc)
}

/// Parses `YYYY-MM-DD` into a calendar date.
pub(crate) fn parse_date(s: &str) -> Option<NaiveDate> {
    parse_date_bytes(s.as_bytes())
}

fn parse_date_bytes(b: &[u8]) -> Option<NaiveDate> {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = b[..4].iter().try_fold(0i32, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + i32::from(c - b'0'))
    })?;
    NaiveDate::from_ymd_opt(year, two_digits(&b[5..7])?, two_digits(&b[8..10])?)
}

fn two_digits(b: &[u8]) -> Option<u32> {
    match b {
        [a, c] if a.is_ascii_digit() && c.is_ascii_digit() => {
            Some(u32::from(a - b'0') * 10 + u32::from(c - b'0'))
        }
        _ => None,
    }
}

/// Formats a timestamp the way The Eye outputs it: RFC 3339, UTC, microseconds, `Z`.
///
/// ```
/// use chrono::TimeZone;
/// let t = chrono::Utc.with_ymd_and_hms(2022, 1, 1, 0, 0, 0).unwrap();
/// assert_eq!(eye_core::format_timestamp(&t), "2022-01-01T00:00:00.000000Z");
/// ```
pub fn format_timestamp(t: &DateTime<Utc>) -> String {
    use chrono::Timelike;
    // Digit by digit: chrono's formatter costs ~800 instructions a call, and every
    // queue message and stored event formats two (issue 18). Years 0-9999 without a
    // leap second only; anything else is chrono's.
    let (year, nanos) = (t.year(), t.nanosecond());
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        return t.to_rfc3339_opts(SecondsFormat::Micros, true);
    }
    let fields = [
        (year as u32, 4, '-'),
        (t.month(), 2, '-'),
        (t.day(), 2, 'T'),
        (t.hour(), 2, ':'),
        (t.minute(), 2, ':'),
        (t.second(), 2, '.'),
        (nanos / 1000, 6, 'Z'),
    ];
    let mut out = String::with_capacity(27);
    for (value, width, then) in fields {
        let mut scale = 10u32.pow(width - 1);
        while scale > 0 {
            out.push(char::from(b'0' + ((value / scale) % 10) as u8));
            scale /= 10;
        }
        out.push(then);
    }
    out
}

/// Truncates an instant to whole microseconds, the precision The Eye keeps.
///
/// ```
/// use chrono::{TimeZone, Timelike};
/// let t = chrono::Utc.with_ymd_and_hms(2022, 1, 1, 0, 0, 0).unwrap()
///     .with_nanosecond(123_456_789).unwrap();
/// assert_eq!(eye_core::truncate_to_micros(t).nanosecond(), 123_456_000);
/// ```
pub fn truncate_to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    let micros = t.timestamp_micros();
    DateTime::from_timestamp_micros(micros).unwrap_or(t)
}

/// Serde helper: (de)serialises a `DateTime<Utc>` as [`format_timestamp`] writes it and
/// [`parse_timestamp`] reads it.
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Row {
///     #[serde(with = "eye_core::serde_micros")]
///     at: chrono::DateTime<chrono::Utc>,
/// }
/// let row: Row = serde_json::from_str(r#"{"at": "2022-04-11 01:08:01.407119"}"#).unwrap();
/// assert_eq!(serde_json::to_string(&row).unwrap(), r#"{"at":"2022-04-11T01:08:01.407119Z"}"#);
/// ```
pub mod serde_micros {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialises as RFC 3339 with microseconds and `Z`.
    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_timestamp(t))
    }

    /// Deserialises any accepted timestamp format.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        super::parse_timestamp(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid timestamp `{s}`")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_needs_both_dashes_and_only_digits() {
        assert_eq!(
            parse_date("2024-01-10"),
            NaiveDate::from_ymd_opt(2024, 1, 10)
        );
        // `:` is the byte after `9`: read as a digit it would make day 10.
        for bad in [
            "2024-01-0:",
            "2024-0:-10",
            "2024x01-10",
            "2024-01x10",
            "2024-01-1",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    fn ts(s: &str) -> String {
        format_timestamp(&parse_timestamp(s).unwrap_or_else(|| panic!("{s} should parse")))
    }

    #[test]
    fn seed_formats_both_parse_to_the_same_instant() {
        assert_eq!(
            ts("2022-04-11T01:08:01.407119"),
            "2022-04-11T01:08:01.407119Z"
        );
        assert_eq!(
            ts("2022-04-11 01:08:01.407119"),
            "2022-04-11T01:08:01.407119Z"
        );
    }

    #[test]
    fn offsets_are_converted_to_utc() {
        assert_eq!(
            ts("2022-04-11T01:08:01-03:30"),
            "2022-04-11T04:38:01.000000Z"
        );
        assert_eq!(
            ts("2022-01-01T00:30:00+01:00"),
            "2021-12-31T23:30:00.000000Z"
        );
        assert_eq!(ts("2022-01-01T00:00:00Z"), "2022-01-01T00:00:00.000000Z");
    }

    #[test]
    fn zero_to_nine_fraction_digits_are_kept_to_microseconds() {
        assert_eq!(ts("2022-01-01 00:00:00"), "2022-01-01T00:00:00.000000Z");
        assert_eq!(ts("2022-01-01 00:00:00.5"), "2022-01-01T00:00:00.500000Z");
        assert_eq!(
            ts("2022-01-01 00:00:00.123456789"),
            "2022-01-01T00:00:00.123456Z"
        );
        assert!(parse_timestamp("2022-01-01 00:00:00.1234567890").is_none());
        assert!(parse_timestamp("2022-01-01 00:00:00.").is_none());
    }

    #[test]
    fn malformed_or_impossible_timestamps_are_rejected() {
        for bad in [
            "",
            "2022-01-01",
            "2022-01-01T00:00",
            "2022-13-01T00:00:00",
            "2022-02-29T00:00:00",
            "2022-01-01T24:00:00",
            "2022-01-01T23:59:60",
            "2022-01-01T00:00:00+24:00",
            "2022-01-01T00:00:00+0100",
            "2022-01-01_00:00:00",
            "22-01-01T00:00:00",
            "2022-01-01T00:00:00 ",
            "yesterday",
        ] {
            assert!(parse_timestamp(bad).is_none(), "{bad:?} should be rejected");
        }
        assert!(parse_timestamp("2024-02-29T00:00:00").is_some());
    }
}
