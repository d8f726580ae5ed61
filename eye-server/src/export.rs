//! Exports: every event that matches a query's filters, as NDJSON or CSV, in the
//! order of `GET /events` (newest first, ties by id), read page by page so memory
//! stays flat however many events match. `GET /events/export` streams it as the
//! response body ([`crate::routes::export`]); `eye-server export` writes it to a file
//! or stdout ([`crate::cli`]). Both drive the one [`Export`] here, so the two outputs
//! are byte for byte the same.
//!
//! The walk is the keyset read behind `/events?cursor=`: each page is the
//! [`PAGE_ROWS`] events strictly after the last one written, in `(timestamp, id)`
//! order ([`Store::events_after`]). It holds no transaction open between pages, so an
//! export of millions of events never pins a snapshot, and events stored while it
//! runs cannot make it repeat or skip an event: an event that is in the range when
//! the walk passes its position is written exactly once. Events stored meanwhile
//! are written when their position is still ahead of the walk (older than the last
//! event written) and left out when it has passed; since the walk goes from the
//! newest event to the oldest, live traffic (timestamps near now) is left out and an
//! export ends even while ingest goes on.
//!
//! ```
//! use eye_server::export::{CSV_COLUMNS, ExportFormat, ExportRequest};
//! let request = ExportRequest::from_pairs(
//!     [("format", "csv"), ("category", "page_interaction")],
//!     &eye_core::PageLimits::default(),
//! ).unwrap();
//! assert_eq!(request.format, ExportFormat::Csv);
//! assert_eq!(request.query.category.as_deref(), Some("page_interaction"));
//! assert_eq!(request.format.content_type(), "text/csv; charset=utf-8");
//! assert_eq!(CSV_COLUMNS[0], "id");
//! ```

use std::borrow::Cow;

use eye_core::{EventQuery, PageLimits, Payload, QueryError, StoredEvent, format_timestamp};

use crate::store::{EventKey, Store, StoreError};

/// Events read from the store per page (and per chunk of output).
pub const PAGE_ROWS: u32 = 1000;

/// The output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ExportFormat {
    /// One event per line, each exactly the JSON object `GET /events` lists.
    #[default]
    Ndjson,
    /// A header row, then one row per event (columns: [`CSV_COLUMNS`]).
    Csv,
}

impl ExportFormat {
    /// The format named `s` (`ndjson` or `csv`, as the `format` parameter spells it).
    ///
    /// ```
    /// use eye_server::export::ExportFormat;
    /// assert_eq!(ExportFormat::parse("csv"), Some(ExportFormat::Csv));
    /// assert_eq!(ExportFormat::parse("xml"), None);
    /// ```
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ndjson" => Some(Self::Ndjson),
            "csv" => Some(Self::Csv),
            _ => None,
        }
    }

    /// The `Content-Type` of the output.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Ndjson => "application/x-ndjson",
            Self::Csv => "text/csv; charset=utf-8",
        }
    }

    /// The file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Ndjson => "ndjson",
            Self::Csv => "csv",
        }
    }
}

/// The CSV columns, in order: every top-level field of an event's JSON in its order,
/// with `data` spread into one column per data field of any event type
/// (`data.form` holds the form as JSON text). A cell is empty when the field does not
/// apply to the row's event type (`data.element` of a page view) or is absent
/// (`client_timestamp`).
pub const CSV_COLUMNS: [&str; 12] = [
    "id",
    "session_id",
    "category",
    "name",
    "data.host",
    "data.path",
    "data.element",
    "data.form",
    "timestamp",
    "application",
    "received_at",
    "client_timestamp",
];

/// The parameters of `GET /events/export`: the format and the filters of
/// `GET /events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRequest {
    /// The output format (`format`; NDJSON when not given).
    pub format: ExportFormat,
    /// The filters; its paging is unused.
    pub query: EventQuery,
}

/// Paging parameters of `GET /events`, which an export refuses: it always writes
/// every matching event, and a client that sends `page_size=10` expects ten.
const PAGING: [&str; 3] = ["page", "page_size", "cursor"];

impl ExportRequest {
    /// Parses URL query pairs with the rules of `GET /events` (unknown parameters
    /// ignored, empty values mean not given, a parameter at most once), plus
    /// `format`. `page`, `page_size` and `cursor` with a value are refused with
    /// `unsupported_parameter`.
    ///
    /// ```
    /// use eye_server::export::ExportRequest;
    /// let limits = eye_core::PageLimits::default();
    /// let err = ExportRequest::from_pairs([("page_size", "10")], &limits).unwrap_err();
    /// assert_eq!((err.parameter.as_str(), err.code.as_str()), ("page_size", "unsupported_parameter"));
    /// let err = ExportRequest::from_pairs([("format", "xml")], &limits).unwrap_err();
    /// assert_eq!(err.code, "invalid_format");
    /// ```
    pub fn from_pairs<'a, I>(pairs: I, limits: &PageLimits) -> Result<Self, QueryError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut format = None;
        let mut filters = Vec::new();
        for (key, value) in pairs {
            if key == "format" {
                if format.is_some() {
                    return Err(query_error(
                        key,
                        "repeated_parameter",
                        "format is given more than once; give each parameter at most once",
                    ));
                }
                format = Some(value);
            } else if PAGING.contains(&key) {
                if value.is_empty() {
                    continue;
                }
                return Err(query_error(
                    key,
                    "unsupported_parameter",
                    &format!(
                        "an export has no pages: it writes every event that matches the \
                         filters, so `{key}` is not accepted; page with GET /events"
                    ),
                ));
            } else {
                filters.push((key, value));
            }
        }
        let format = match format {
            None | Some("") => ExportFormat::default(),
            Some(name) => ExportFormat::parse(name).ok_or_else(|| {
                query_error(
                    "format",
                    "invalid_format",
                    "format must be `ndjson` or `csv`",
                )
            })?,
        };
        let query = EventQuery::from_pairs(filters, limits)?;
        Ok(Self { format, query })
    }
}

fn query_error(parameter: &str, code: &str, message: &str) -> QueryError {
    QueryError {
        parameter: parameter.to_owned(),
        code: code.to_owned(),
        message: message.to_owned(),
    }
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An event could not be serialised.
    #[error("cannot serialise an event: {0}")]
    Encode(String),
    /// Writing the output failed (`eye-server export`).
    #[error("cannot write the export: {0}")]
    Io(#[from] std::io::Error),
}

/// Serialises events in one format, page by page, the CSV header before the first.
#[derive(Debug)]
pub struct Encoder {
    format: ExportFormat,
    started: bool,
}

impl Encoder {
    /// An encoder that has written nothing yet.
    pub fn new(format: ExportFormat) -> Self {
        Self {
            format,
            started: false,
        }
    }

    /// Appends `events` to `out`; on the first call, a CSV export's header row first.
    ///
    /// ```
    /// use eye_server::export::{Encoder, ExportFormat};
    /// let mut out = Vec::new();
    /// Encoder::new(ExportFormat::Csv).encode(&[], &mut out).unwrap();
    /// assert!(out.starts_with(b"id,session_id,category,name,data.host,"));
    /// let mut out = Vec::new();
    /// Encoder::new(ExportFormat::Ndjson).encode(&[], &mut out).unwrap();
    /// assert!(out.is_empty());
    /// ```
    pub fn encode(&mut self, events: &[StoredEvent], out: &mut Vec<u8>) -> Result<(), ExportError> {
        let header = !std::mem::replace(&mut self.started, true);
        match self.format {
            ExportFormat::Ndjson => {
                for event in events {
                    serde_json::to_writer(&mut *out, event)
                        .map_err(|e| ExportError::Encode(e.to_string()))?;
                    out.push(b'\n');
                }
                Ok(())
            }
            ExportFormat::Csv => write_csv(header, events, out),
        }
    }
}

fn write_csv(header: bool, events: &[StoredEvent], out: &mut Vec<u8>) -> Result<(), ExportError> {
    let csv_error = |e: csv::Error| ExportError::Encode(e.to_string());
    let mut writer = csv::Writer::from_writer(out);
    if header {
        writer.write_record(CSV_COLUMNS).map_err(csv_error)?;
    }
    for event in events {
        writer
            .write_record(csv_row(event)?.iter().map(|c| c.as_bytes()))
            .map_err(csv_error)?;
    }
    writer
        .flush()
        .map_err(|e| ExportError::Encode(e.to_string()))
}

/// One event's cells, in [`CSV_COLUMNS`] order, with the strings its JSON has
/// (borrowed where the event holds them as they are written).
fn csv_row(event: &StoredEvent) -> Result<[Cow<'_, str>; 12], ExportError> {
    let t = event.event_type();
    let p = &event.payload;
    let (element, form) = match p {
        Payload::PageView(_) => (Cow::Borrowed(""), Cow::Borrowed("")),
        Payload::CtaClick(c) => (Cow::Borrowed(c.element.as_str()), Cow::Borrowed("")),
        Payload::FormSubmit(f) => (
            Cow::Borrowed(""),
            Cow::Owned(
                serde_json::to_string(f.form.as_map())
                    .map_err(|e| ExportError::Encode(e.to_string()))?,
            ),
        ),
    };
    Ok([
        Cow::Owned(event.id.to_string()),
        Cow::Borrowed(event.session_id.as_str()),
        Cow::Borrowed(t.category()),
        Cow::Borrowed(t.name()),
        Cow::Borrowed(p.host().as_str()),
        Cow::Borrowed(p.path().as_str()),
        element,
        form,
        Cow::Owned(format_timestamp(&event.timestamp)),
        Cow::Borrowed(event.application.as_str()),
        Cow::Owned(format_timestamp(&event.received_at)),
        event
            .client_timestamp
            .as_ref()
            .map_or(Cow::Borrowed(""), |t| Cow::Owned(format_timestamp(t))),
    ])
}

/// A running export: a walk over every event matching a query, newest first, one
/// page of [`PAGE_ROWS`] events per step, each step giving that page's output.
///
/// ```
/// # tokio_test_block_on(async {
/// use eye_server::export::{Export, ExportFormat};
/// let store = eye_server::store::Store::open("sqlite::memory:").await.unwrap();
/// let mut export = Export::new(store, eye_core::EventQuery::new(), ExportFormat::Csv);
/// let header = export.next_chunk().await.unwrap().unwrap();
/// assert!(header.starts_with(b"id,"));
/// assert_eq!(export.next_chunk().await.unwrap(), None);
/// assert_eq!(export.events(), 0);
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug)]
pub struct Export {
    store: Store,
    query: EventQuery,
    encoder: Encoder,
    after: Option<EventKey>,
    done: bool,
    events: u64,
}

impl Export {
    /// An export of every event matching `query`'s filters (its paging is ignored).
    pub fn new(store: Store, query: EventQuery, format: ExportFormat) -> Self {
        Self {
            store,
            query,
            encoder: Encoder::new(format),
            after: None,
            done: false,
            events: 0,
        }
    }

    /// The output of the next page: on the first call, the CSV header and the first
    /// page (possibly empty: no event matches, or NDJSON with nothing to write); then
    /// one non-empty page per call; `None` once every event was given. After an
    /// error the export is over: the output so far is incomplete.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, ExportError> {
        if self.done {
            return Ok(None);
        }
        let first = self.after.is_none() && self.events == 0;
        let page = match self
            .store
            .events_after(&self.query, self.after, PAGE_ROWS)
            .await
        {
            Ok(page) => page,
            Err(e) => {
                self.done = true;
                return Err(e.into());
            }
        };
        // A short page is the last: no need to read an empty one to learn it.
        self.done = page.len() < PAGE_ROWS as usize;
        if page.is_empty() && !first {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(page.len() * 320 + 256);
        self.encoder.encode(&page, &mut out)?;
        self.events += page.len() as u64;
        self.after = page.last().map(EventKey::of);
        Ok(Some(out))
    }

    /// Events given so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Writes every remaining page to `out` (blocking writes: for a file or stdout,
    /// behind a `BufWriter`), calling `progress(events, bytes)` after each page;
    /// returns the bytes written. `out` is not flushed.
    pub async fn write_all<W: std::io::Write>(
        &mut self,
        out: &mut W,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<u64, ExportError> {
        let mut bytes = 0u64;
        while let Some(chunk) = self.next_chunk().await? {
            out.write_all(&chunk)?;
            bytes += chunk.len() as u64;
            progress(self.events, bytes);
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use eye_core::{Event, EventType};
    use serde_json::{Value, json};

    use super::*;

    fn stored(event: Event, client_timestamp: bool) -> StoredEvent {
        let (id, session_id, timestamp, payload) = event.into_parts();
        StoredEvent {
            id: id.unwrap_or_else(uuid::Uuid::now_v7),
            session_id,
            payload,
            timestamp,
            application: "shop, \"main\"".into(),
            received_at: timestamp,
            client_timestamp: client_timestamp.then_some(timestamp),
        }
    }

    fn examples() -> Vec<StoredEvent> {
        let form = json!({"note": "a, \"b\"\nc", "name": "Zoë 漢字", "n": [1, {"x": null}]});
        vec![
            stored(Event::page_view("s1", "a.com", "/").unwrap(), false),
            stored(
                Event::cta_click("s1", "a.com", "/p", "buy, now").unwrap(),
                true,
            ),
            stored(
                Event::form_submit("s,2", "a.com", "/f", form).unwrap(),
                false,
            ),
        ]
    }

    fn csv_rows(bytes: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
        let mut reader = csv::Reader::from_reader(bytes);
        let header = reader
            .headers()
            .unwrap()
            .iter()
            .map(str::to_owned)
            .collect();
        let rows = reader
            .records()
            .map(|r| r.unwrap().iter().map(str::to_owned).collect())
            .collect();
        (header, rows)
    }

    #[test]
    fn csv_cells_are_the_strings_of_the_events_json() {
        // Arrange
        let events = examples();
        let mut out = Vec::new();
        // Act
        Encoder::new(ExportFormat::Csv)
            .encode(&events, &mut out)
            .unwrap();
        // Assert: every cell is the JSON's value at that column, `data.form` as JSON.
        let (header, rows) = csv_rows(&out);
        assert_eq!(header, CSV_COLUMNS);
        assert_eq!(rows.len(), events.len());
        for (event, row) in events.iter().zip(rows) {
            let json = serde_json::to_value(event).unwrap();
            for (column, cell) in CSV_COLUMNS.iter().zip(row) {
                let value = match column.strip_prefix("data.") {
                    Some(field) => &json["data"][field],
                    None => &json[*column],
                };
                let expected = match value {
                    Value::Null => String::new(),
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                assert_eq!(cell, expected, "{column} of {json}");
            }
        }
    }

    #[test]
    fn csv_has_a_column_for_every_field_of_every_event_type() {
        let mut fields: Vec<String> = EventType::ALL
            .iter()
            .flat_map(|t| t.data_fields().iter().map(|f| format!("data.{f}")))
            .collect();
        fields.extend(
            [
                "id",
                "session_id",
                "category",
                "name",
                "timestamp",
                "application",
            ]
            .map(str::to_owned),
        );
        fields.extend(["received_at", "client_timestamp"].map(str::to_owned));
        for event in examples() {
            let json = serde_json::to_value(&event).unwrap();
            for key in json.as_object().unwrap().keys().filter(|k| *k != "data") {
                fields.push(key.clone());
            }
        }
        for field in fields {
            assert!(
                CSV_COLUMNS.contains(&field.as_str()),
                "no column for {field}"
            );
        }
    }

    #[test]
    fn ndjson_lines_are_the_events_json() {
        let events = examples();
        let mut out = Vec::new();
        let mut encoder = Encoder::new(ExportFormat::Ndjson);
        encoder.encode(&events[..1], &mut out).unwrap();
        encoder.encode(&events[1..], &mut out).unwrap();
        let lines: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let expected: Vec<Value> = events
            .iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect();
        assert_eq!(lines, expected);
    }

    #[test]
    fn csv_header_is_written_once_across_pages() {
        let events = examples();
        let mut out = Vec::new();
        let mut encoder = Encoder::new(ExportFormat::Csv);
        encoder.encode(&events[..1], &mut out).unwrap();
        encoder.encode(&events[1..], &mut out).unwrap();
        let (_, rows) = csv_rows(&out);
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[2][7],
            r#"{"n":[1,{"x":null}],"name":"Zoë 漢字","note":"a, \"b\"\nc"}"#
        );
    }

    #[test]
    fn export_parameters_follow_the_listing_rules() {
        let limits = PageLimits::default();
        let parse =
            |pairs: &[(&str, &str)]| ExportRequest::from_pairs(pairs.iter().copied(), &limits);
        assert_eq!(parse(&[]).unwrap().format, ExportFormat::Ndjson);
        assert_eq!(
            parse(&[("format", "")]).unwrap().format,
            ExportFormat::Ndjson
        );
        assert_eq!(
            parse(&[("page", ""), ("cursor", "")]).unwrap().query,
            EventQuery::new()
        );
        let err = parse(&[("format", "csv"), ("format", "csv")]).unwrap_err();
        assert_eq!(err.code, "repeated_parameter");
        let err = parse(&[("cursor", "abc")]).unwrap_err();
        assert_eq!(err.code, "unsupported_parameter");
        let err = parse(&[("end_time", "yesterday")]).unwrap_err();
        assert_eq!(
            (err.parameter.as_str(), err.code.as_str()),
            ("end_time", "invalid_time")
        );
    }
}
