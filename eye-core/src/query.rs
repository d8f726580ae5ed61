//! The query model: filters and pagination parsed from URL query pairs, and the page
//! shape answers come in. One model drives the SQL, the HTTP parameters, the SDK's
//! query builder and the OpenAPI document.

use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cursor::{Cursor, CursorListing, CursorParam, filters_fingerprint};
use crate::timestamp::{parse_date, parse_instant};

/// Page-size bounds, configured by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimits {
    /// Page size when the request names none.
    pub default_page_size: u32,
    /// Largest page size a request may ask for.
    pub max_page_size: u32,
}

impl Default for PageLimits {
    fn default() -> Self {
        Self {
            default_page_size: 10,
            max_page_size: 1000,
        }
    }
}

/// Why query parameters were refused: the parameter, a stable code and a message.
///
/// ```
/// use eye_core::{EventQuery, PageLimits};
/// let err = EventQuery::from_pairs([("page", "0")], &PageLimits::default()).unwrap_err();
/// assert!(err.is_invalid_page());
/// let err = EventQuery::from_pairs([("start_time", "2022-02-01"), ("end_time", "2022-01-01")],
///     &PageLimits::default()).unwrap_err();
/// assert_eq!((err.parameter.as_str(), err.code.as_str()), ("start_time", "invalid_time_range"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, thiserror::Error)]
#[error("{parameter}: {message}")]
pub struct QueryError {
    /// The offending parameter.
    pub parameter: String,
    /// Stable machine code: `invalid_page` (answered 404 as DRF does),
    /// `invalid_page_size`, `invalid_time`, `invalid_time_range`, `invalid_filter`,
    /// `invalid_cursor` (a cursor that is malformed or of another query; with a
    /// cursor, `page` is ignored, as DRF's cursor pagination does), `repeated_parameter` (a parameter given twice). The server answers each with
    /// 400 `invalid_query` (404 for `invalid_page`) and this code in `details`.
    pub code: String,
    /// Human explanation.
    pub message: String,
}

impl QueryError {
    fn new(parameter: &str, code: &str, message: impl Into<String>) -> Self {
        Self {
            parameter: parameter.to_owned(),
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// True for a malformed `page`, which DRF answers with 404 `Invalid page.`.
    pub fn is_invalid_page(&self) -> bool {
        self.code == "invalid_page"
    }
}

/// Which page of results, and how many per page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Pagination {
    /// 1-based page number.
    pub page: u64,
    /// Results per page.
    pub page_size: u32,
}

impl Pagination {
    /// Rows to skip before this page (saturating, so a huge page cannot overflow).
    ///
    /// ```
    /// let p = eye_core::Pagination { page: 3, page_size: 10 };
    /// assert_eq!(p.offset(), 20);
    /// ```
    pub fn offset(&self) -> u64 {
        (self.page - 1).saturating_mul(u64::from(self.page_size))
    }
}

impl Default for Pagination {
    fn default() -> Self {
        Self {
            page: 1,
            page_size: PageLimits::default().default_page_size,
        }
    }
}

/// An inclusive time range; either bound may be open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct TimeRange {
    /// Earliest instant included.
    pub start: Option<DateTime<Utc>>,
    /// Latest instant included.
    pub end: Option<DateTime<Utc>>,
}

/// Filters for `GET /events`: any combination, all optional.
///
/// ```
/// use eye_core::{EventQuery, PageLimits};
/// let q = EventQuery::from_pairs(
///     [("session_id", "abc123"), ("start_time", "2022-01-01"), ("end_time", "2022-02-01")],
///     &PageLimits::default(),
/// ).unwrap();
/// assert_eq!(q.session_id.as_deref(), Some("abc123"));
/// // A date-only end_time covers that whole day.
/// assert_eq!(eye_core::format_timestamp(&q.time.end.unwrap()), "2022-02-01T23:59:59.999999Z");
/// assert_eq!(q.pagination.page_size, 10);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct EventQuery {
    /// Only this session's events.
    pub session_id: Option<String>,
    /// Only this category (`page_interaction`, `form_interaction`).
    pub category: Option<String>,
    /// Only this name (`page_view`, `cta_click`, `submit`).
    pub name: Option<String>,
    /// Only events sent by this application.
    pub application: Option<String>,
    /// Only events that occurred in this range.
    pub time: TimeRange,
    /// Which page, and how many per page (`page` is ignored when `cursor` is set).
    pub pagination: Pagination,
    /// Keyset paging: `Some` reads by cursor instead of by page number.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub cursor: Option<CursorParam>,
}

/// Filters for `GET /errors`, the log of rejected events.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ErrorQuery {
    /// Only errors from this application.
    pub application: Option<String>,
    /// Only errors carrying this code (`timestamp_in_future`, ...).
    pub code: Option<String>,
    /// Only errors received in this range.
    pub time: TimeRange,
    /// Which page, and how many per page (`page` is ignored when `cursor` is set).
    pub pagination: Pagination,
    /// Keyset paging: `Some` reads by cursor instead of by page number.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub cursor: Option<CursorParam>,
}

/// Parses the parameters every query shares; the rest go to `extra`.
///
/// A parameter the query knows (`known`, or one of the shared ones) given twice is
/// refused with `repeated_parameter`: `name=a&name=b` has no meaning the caller can rely
/// on, and silently keeping the last one hides a client bug.
struct Common<'a> {
    time: TimeRange,
    pagination: Pagination,
    /// The `cursor` parameter as given (`Some("")`: the first page by cursor).
    cursor: Option<&'a str>,
    extra: Vec<(&'a str, &'a str)>,
}

impl Common<'_> {
    /// Decodes the `cursor` parameter for `listing`, checking it was made for filters
    /// with this fingerprint.
    fn cursor(
        &self,
        listing: CursorListing,
        filters: u64,
    ) -> Result<Option<CursorParam>, QueryError> {
        match self.cursor {
            None => Ok(None),
            Some("") => Ok(Some(CursorParam::First)),
            Some(token) => Cursor::decode_for(token, listing, filters)
                .map(|c| Some(CursorParam::At(c)))
                .map_err(|e| QueryError::new("cursor", "invalid_cursor", e.to_string())),
        }
    }
}

/// The parameters [`parse_common`] reads itself.
const COMMON_PARAMETERS: [&str; 5] = ["start_time", "end_time", "page", "page_size", "cursor"];

fn parse_common<'a, I>(
    pairs: I,
    limits: &PageLimits,
    known: &[&str],
) -> Result<Common<'a>, QueryError>
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut seen: Vec<&str> = Vec::new();
    let mut time = TimeRange::default();
    let mut pagination = Pagination {
        page: 1,
        page_size: limits.default_page_size,
    };
    let mut extra = Vec::new();
    let mut cursor = None;
    for (key, value) in pairs {
        if COMMON_PARAMETERS.contains(&key) || known.contains(&key) {
            if seen.contains(&key) {
                return Err(QueryError::new(
                    key,
                    "repeated_parameter",
                    format!("{key} is given more than once; give each parameter at most once"),
                ));
            }
            seen.push(key);
        }
        // An empty cursor is meaningful: the first page by cursor.
        if key == "cursor" {
            cursor = Some(value);
            continue;
        }
        // Empty values mean "no filter", as django-filter treats them.
        if value.is_empty() {
            continue;
        }
        match key {
            "start_time" => time.start = Some(parse_bound(key, value, Bound::Start)?),
            "end_time" => time.end = Some(parse_bound(key, value, Bound::End)?),
            "page" => {
                pagination.page = match value.parse::<u64>() {
                    Ok(p) if p >= 1 => p,
                    _ => return Err(QueryError::new(key, "invalid_page", "Invalid page.")),
                }
            }
            "page_size" => {
                pagination.page_size = match value.parse::<u32>() {
                    Ok(n) if (1..=limits.max_page_size).contains(&n) => n,
                    _ => {
                        return Err(QueryError::new(
                            key,
                            "invalid_page_size",
                            format!(
                                "page_size must be a whole number from 1 to {}",
                                limits.max_page_size
                            ),
                        ));
                    }
                }
            }
            _ => extra.push((key, value)),
        }
    }
    if let (Some(s), Some(e)) = (time.start, time.end)
        && s > e
    {
        return Err(QueryError::new(
            "start_time",
            "invalid_time_range",
            "start_time is later than end_time",
        ));
    }
    Ok(Common {
        time,
        pagination,
        cursor,
        extra,
    })
}

#[derive(Clone, Copy)]
enum Bound {
    Start,
    End,
}

fn parse_bound(key: &str, value: &str, bound: Bound) -> Result<DateTime<Utc>, QueryError> {
    if let Some(date) = parse_date(value) {
        let time = match bound {
            Bound::Start => NaiveTime::MIN,
            Bound::End => {
                NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999).unwrap_or(NaiveTime::MIN)
            }
        };
        return Ok(Utc.from_utc_datetime(&date.and_time(time)));
    }
    // An offset may move the instant outside the years 0000 to 9999; no event lies
    // there, so the bound is clamped to that range and filters exactly as written.
    let earliest = NaiveDate::from_ymd_opt(0, 1, 1).and_then(|d| d.and_hms_micro_opt(0, 0, 0, 0));
    let latest = NaiveDate::from_ymd_opt(9999, 12, 31)
        .and_then(|d| d.and_hms_micro_opt(23, 59, 59, 999_999));
    parse_instant(value)
        .map(|t| match (earliest, latest) {
            (Some(lo), Some(hi)) => t.clamp(Utc.from_utc_datetime(&lo), Utc.from_utc_datetime(&hi)),
            _ => t,
        })
        .ok_or_else(|| {
            QueryError::new(
                key,
                "invalid_time",
                format!(
                    "{key} must be a date (2022-01-01) or a date-time (2022-01-01T10:00:00Z, \
                 2022-01-01 10:00:00.000000)"
                ),
            )
        })
}

/// The filters of `GET /events`, besides the shared parameters.
const EVENT_FILTERS: [&str; 4] = ["session_id", "category", "name", "application"];

/// The filters of `GET /errors`, besides the shared parameters.
const ERROR_FILTERS: [&str; 2] = ["application", "code"];

fn filter_value(key: &str, value: &str) -> Result<String, QueryError> {
    const MAX: usize = 256;
    if value.chars().count() > MAX {
        return Err(QueryError::new(
            key,
            "invalid_filter",
            format!("{key} is longer than {MAX} characters"),
        ));
    }
    Ok(value.to_owned())
}

impl EventQuery {
    /// A query with no filters: the first page of every event, newest first.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses URL query pairs. Unknown parameters are ignored, as DRF does; empty
    /// values mean no filter.
    pub fn from_pairs<'a, I>(pairs: I, limits: &PageLimits) -> Result<Self, QueryError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let common = parse_common(pairs, limits, &EVENT_FILTERS)?;
        let mut q = EventQuery {
            time: common.time,
            pagination: common.pagination,
            ..Self::default()
        };
        for &(key, value) in &common.extra {
            let slot = match key {
                "session_id" => &mut q.session_id,
                "category" => &mut q.category,
                "name" => &mut q.name,
                "application" => &mut q.application,
                _ => continue,
            };
            *slot = Some(filter_value(key, value)?);
        }
        q.cursor = common.cursor(CursorListing::Events, q.filters_fingerprint())?;
        Ok(q)
    }

    /// The fingerprint of this query's filters (everything but paging) that its
    /// cursors carry: a cursor is valid only with the filters it was made for.
    pub fn filters_fingerprint(&self) -> u64 {
        let (start, end) = time_keys(&self.time);
        filters_fingerprint(&[
            self.session_id.as_deref(),
            self.category.as_deref(),
            self.name.as_deref(),
            self.application.as_deref(),
            start.as_deref(),
            end.as_deref(),
        ])
    }

    /// The query as URL pairs, the inverse of [`EventQuery::from_pairs`].
    ///
    /// ```
    /// use eye_core::{EventQuery, PageLimits};
    /// let q = EventQuery::new().session("abc").category("page_interaction").page(2);
    /// let pairs = q.to_pairs();
    /// let back = EventQuery::from_pairs(
    ///     pairs.iter().map(|(k, v)| (*k, v.as_str())), &PageLimits::default()).unwrap();
    /// assert_eq!(back, q);
    /// ```
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        let filters = [
            ("session_id", &self.session_id),
            ("category", &self.category),
            ("name", &self.name),
            ("application", &self.application),
        ];
        for (key, value) in filters {
            if let Some(v) = value {
                pairs.push((key, v.clone()));
            }
        }
        push_common(
            &mut pairs,
            &self.time,
            &self.pagination,
            self.cursor.as_ref(),
        );
        pairs
    }

    /// Only this session.
    #[must_use]
    pub fn session(mut self, session_id: impl Into<String>) -> Self {
        self.session_id = Some(session_id.into());
        self
    }

    /// Only this category.
    #[must_use]
    pub fn category(mut self, category: impl Into<String>) -> Self {
        self.category = Some(category.into());
        self
    }

    /// Only this name.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Only this event type (category and name).
    #[must_use]
    pub fn event_type(self, t: crate::EventType) -> Self {
        self.category(t.category()).name(t.name())
    }

    /// Only this application.
    #[must_use]
    pub fn application(mut self, application: impl Into<String>) -> Self {
        self.application = Some(application.into());
        self
    }

    /// Only events at or after `start`.
    #[must_use]
    pub fn start_time(mut self, start: DateTime<Utc>) -> Self {
        self.time.start = Some(start);
        self
    }

    /// Only events at or before `end`.
    #[must_use]
    pub fn end_time(mut self, end: DateTime<Utc>) -> Self {
        self.time.end = Some(end);
        self
    }

    /// This page (1-based).
    #[must_use]
    pub fn page(mut self, page: u64) -> Self {
        self.pagination.page = page.max(1);
        self
    }

    /// This many results per page.
    #[must_use]
    pub fn page_size(mut self, page_size: u32) -> Self {
        self.pagination.page_size = page_size.max(1);
        self
    }

    /// Reads by cursor: [`CursorParam::First`] for the first page (whose `next` link
    /// is then a cursor), or the cursor of a `next`/`previous` link.
    ///
    /// ```
    /// use eye_core::{CursorParam, EventQuery};
    /// let pairs = EventQuery::new().category("page_interaction").cursor(CursorParam::First).to_pairs();
    /// assert!(pairs.contains(&("cursor", String::new())));
    /// assert!(!pairs.iter().any(|(k, _)| *k == "page"));
    /// ```
    #[must_use]
    pub fn cursor(mut self, cursor: CursorParam) -> Self {
        self.cursor = Some(cursor);
        self
    }
}

/// Time bounds as fingerprint keys (microseconds, so every spelling of one instant
/// gives the same fingerprint).
fn time_keys(time: &TimeRange) -> (Option<String>, Option<String>) {
    (
        time.start.map(|t| t.timestamp_micros().to_string()),
        time.end.map(|t| t.timestamp_micros().to_string()),
    )
}

impl ErrorQuery {
    /// Parses URL query pairs; unknown parameters are ignored.
    ///
    /// ```
    /// use eye_core::{ErrorQuery, PageLimits};
    /// let q = ErrorQuery::from_pairs([("code", "timestamp_in_future")], &PageLimits::default())
    ///     .unwrap();
    /// assert_eq!(q.code.as_deref(), Some("timestamp_in_future"));
    /// ```
    pub fn from_pairs<'a, I>(pairs: I, limits: &PageLimits) -> Result<Self, QueryError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let common = parse_common(pairs, limits, &ERROR_FILTERS)?;
        let mut q = ErrorQuery {
            time: common.time,
            pagination: common.pagination,
            ..Self::default()
        };
        for &(key, value) in &common.extra {
            let slot = match key {
                "application" => &mut q.application,
                "code" => &mut q.code,
                _ => continue,
            };
            *slot = Some(filter_value(key, value)?);
        }
        q.cursor = common.cursor(CursorListing::Errors, q.filters_fingerprint())?;
        Ok(q)
    }

    /// The fingerprint of this query's filters that its cursors carry.
    pub fn filters_fingerprint(&self) -> u64 {
        let (start, end) = time_keys(&self.time);
        filters_fingerprint(&[
            self.application.as_deref(),
            self.code.as_deref(),
            start.as_deref(),
            end.as_deref(),
        ])
    }

    /// The query as URL pairs.
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        for (key, value) in [("application", &self.application), ("code", &self.code)] {
            if let Some(v) = value {
                pairs.push((key, v.clone()));
            }
        }
        push_common(
            &mut pairs,
            &self.time,
            &self.pagination,
            self.cursor.as_ref(),
        );
        pairs
    }
}

/// A session's timeline (`GET /sessions/{session_id}/events`): paging only, by page
/// number or by cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineQuery {
    /// The session.
    pub session_id: String,
    /// Which page, and how many per page (`page` is ignored when `cursor` is set).
    pub pagination: Pagination,
    /// Keyset paging: `Some` reads by cursor instead of by page number.
    pub cursor: Option<CursorParam>,
}

impl TimelineQuery {
    /// Parses `page`, `page_size` and `cursor` for `session_id`'s timeline; other
    /// parameters are ignored.
    ///
    /// ```
    /// use eye_core::{CursorParam, PageLimits, TimelineQuery};
    /// let q = TimelineQuery::from_pairs("abc", [("cursor", ""), ("page_size", "50")],
    ///     &PageLimits::default()).unwrap();
    /// assert_eq!((q.cursor, q.pagination.page_size), (Some(CursorParam::First), 50));
    /// ```
    pub fn from_pairs<'a, I>(
        session_id: &str,
        pairs: I,
        limits: &PageLimits,
    ) -> Result<Self, QueryError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let pairs = pairs
            .into_iter()
            .filter(|(k, _)| matches!(*k, "page" | "page_size" | "cursor"));
        let common = parse_common(pairs, limits, &[])?;
        let fingerprint = Self::fingerprint_of(session_id);
        Ok(Self {
            session_id: session_id.to_owned(),
            pagination: common.pagination,
            cursor: common.cursor(CursorListing::SessionEvents, fingerprint)?,
        })
    }

    /// The fingerprint of this timeline (its session id) that its cursors carry.
    pub fn filters_fingerprint(&self) -> u64 {
        Self::fingerprint_of(&self.session_id)
    }

    fn fingerprint_of(session_id: &str) -> u64 {
        filters_fingerprint(&[Some(session_id)])
    }

    /// The paging parameters as URL pairs (the session id is in the path).
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        push_common(
            &mut pairs,
            &TimeRange::default(),
            &self.pagination,
            self.cursor.as_ref(),
        );
        pairs
    }
}

impl Pagination {
    /// Parses only `page` and `page_size`, for endpoints without filters.
    pub fn from_pairs<'a, I>(pairs: I, limits: &PageLimits) -> Result<Self, QueryError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let pairs = pairs
            .into_iter()
            .filter(|(k, _)| *k == "page" || *k == "page_size");
        Ok(parse_common(pairs, limits, &[])?.pagination)
    }
}

fn push_common(
    pairs: &mut Vec<(&'static str, String)>,
    time: &TimeRange,
    p: &Pagination,
    cursor: Option<&CursorParam>,
) {
    if let Some(s) = time.start {
        pairs.push(("start_time", crate::format_timestamp(&s)));
    }
    if let Some(e) = time.end {
        pairs.push(("end_time", crate::format_timestamp(&e)));
    }
    match cursor {
        Some(c) => pairs.push(("cursor", c.to_param())),
        None => pairs.push(("page", p.page.to_string())),
    }
    pairs.push(("page_size", p.page_size.to_string()));
}

/// One page of results in the shape DRF answers with: the total count, absolute URLs of
/// the neighbouring pages, and the results.
///
/// ```
/// let page = eye_core::Page { count: 1, next: None, previous: None, results: vec![42] };
/// assert_eq!(serde_json::to_value(&page).unwrap(),
///     serde_json::json!({"count": 1, "next": null, "previous": null, "results": [42]}));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Page<T> {
    /// How many results match in all pages.
    pub count: u64,
    /// Absolute URL of the next page, if any.
    pub next: Option<String>,
    /// Absolute URL of the previous page, if any.
    pub previous: Option<String>,
    /// This page's results.
    pub results: Vec<T>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Result<EventQuery, QueryError> {
        EventQuery::from_pairs(pairs.iter().copied(), &PageLimits::default())
    }

    #[test]
    fn unknown_parameters_and_empty_values_are_ignored() {
        let query = q(&[("format", "json"), ("category", "")]).unwrap();
        assert_eq!(query, EventQuery::new());
    }

    #[test]
    fn each_time_bound_works_alone() {
        assert!(
            q(&[("start_time", "2022-01-01")])
                .unwrap()
                .time
                .end
                .is_none()
        );
        assert!(
            q(&[("end_time", "2022-01-01")])
                .unwrap()
                .time
                .start
                .is_none()
        );
    }

    #[test]
    fn start_after_end_is_invalid_time_range() {
        let err = q(&[("start_time", "2022-02-01"), ("end_time", "2022-01-01")]).unwrap_err();
        assert_eq!(err.code, "invalid_time_range");
    }

    #[test]
    fn same_day_range_is_the_whole_day() {
        let query = q(&[("start_time", "2022-01-01"), ("end_time", "2022-01-01")]).unwrap();
        let span = query.time.end.unwrap() - query.time.start.unwrap();
        assert_eq!(span.num_microseconds(), Some(86_400_000_000 - 1));
    }

    #[test]
    fn malformed_time_names_the_parameter() {
        let err = q(&[("end_time", "last tuesday")]).unwrap_err();
        assert_eq!(
            (err.parameter.as_str(), err.code.as_str()),
            ("end_time", "invalid_time")
        );
    }

    #[test]
    fn non_numeric_or_zero_page_is_invalid_page() {
        for page in ["abc", "0", "-1", "1.5"] {
            assert!(
                q(&[("page", page)]).unwrap_err().is_invalid_page(),
                "{page}"
            );
        }
    }

    #[test]
    fn page_size_is_bounded_by_limits() {
        assert_eq!(
            q(&[("page_size", "1000")]).unwrap().pagination.page_size,
            1000
        );
        assert_eq!(
            q(&[("page_size", "1001")]).unwrap_err().code,
            "invalid_page_size"
        );
        assert_eq!(
            q(&[("page_size", "0")]).unwrap_err().code,
            "invalid_page_size"
        );
    }

    #[test]
    fn offset_of_page_three_of_ten() {
        let p = Pagination {
            page: 3,
            page_size: 10,
        };
        assert_eq!(p.offset(), 20);
    }
}
