//! `GET /`: the dashboard. Events per hour over the last 24 hours by type (an SVG
//! chart rendered on the server), totals by type, the newest sessions (each opens its
//! timeline), the newest errors with their codes, queue backlog and store size.
//! Needs a key with the `query` scope, like the data it summarises.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, DurationRound, Utc};
use eye_core::{
    ErrorQuery, ErrorRecord, EventQuery, EventType, Pagination, Session, format_timestamp,
};
use maud::{Markup, html};

use super::layout::{encode, refreshing_page};
use super::{error_as_html, html_response, pages};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{Scope, Store, StoreError};

/// Events in one hour of the dashboard's chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourBucket {
    /// The hour's first instant.
    pub start: DateTime<Utc>,
    /// Events per type, in [`EventType::ALL`] order.
    pub counts: [u64; 3],
}

impl HourBucket {
    /// Events of every type in this hour.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// What the dashboard shows from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardStats {
    /// The last 24 hours by when events happened, oldest first; the last bucket is the
    /// current (partial) hour.
    pub hours: Vec<HourBucket>,
    /// Stored events per type, in [`EventType::ALL`] order.
    pub totals: [u64; 3],
    /// The sessions seen most recently, newest first.
    pub newest_sessions: Vec<Session>,
    /// The newest entries of the errors log.
    pub newest_errors: Vec<ErrorRecord>,
    /// Entries in the errors log.
    pub error_count: u64,
    /// The database file's size in bytes.
    pub store_bytes: u64,
}

/// How many sessions and errors the dashboard lists.
const NEWEST: u32 = 8;

impl DashboardStats {
    /// Reads everything the dashboard shows, as of `now`. Every figure comes from the
    /// store's counters or an index (72 hour-and-type counts), never a table scan.
    pub async fn load(store: &Store, now: DateTime<Utc>) -> Result<Self, StoreError> {
        let current_hour = now.duration_trunc(Duration::hours(1)).unwrap_or(now);
        let mut hours = Vec::with_capacity(24);
        for back in (0..24).rev() {
            let start = current_hour - Duration::hours(back);
            let end = start + Duration::hours(1) - Duration::microseconds(1);
            let mut counts = [0; 3];
            for (slot, t) in counts.iter_mut().zip(EventType::ALL) {
                let query = EventQuery::new()
                    .event_type(t)
                    .start_time(start)
                    .end_time(end);
                *slot = store.count_events(&query).await?;
            }
            hours.push(HourBucket { start, counts });
        }
        let mut totals = [0; 3];
        for (slot, t) in totals.iter_mut().zip(store.totals_by_type().await?) {
            *slot = t.events;
        }
        let errors = ErrorQuery {
            pagination: Pagination {
                page: 1,
                page_size: NEWEST,
            },
            ..ErrorQuery::default()
        };
        let (error_count, newest_errors) = store.query_errors(&errors).await?;
        Ok(Self {
            hours,
            totals,
            newest_sessions: store.newest_sessions(NEWEST).await?,
            newest_errors,
            error_count,
            store_bytes: store.store_size().await?.database_bytes,
        })
    }
}

/// What the dashboard shows besides the store's numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStatus {
    /// `embedded` or `redis`.
    pub kind: &'static str,
    /// Messages accepted but not yet stored; `None` when the queue does not answer.
    pub backlog: Option<u64>,
}

/// `?refresh=SECONDS` reloads the page that often (5 s to 1 h).
#[derive(Debug, serde::Deserialize)]
pub(super) struct DashboardParams {
    refresh: Option<String>,
}

pub(super) async fn dashboard(
    State(state): State<AppState>,
    Query(params): Query<DashboardParams>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let refresh = params
        .refresh
        .and_then(|r| r.parse::<u32>().ok())
        .map(|r| r.clamp(5, 3600));
    match state
        .auth
        .authenticate(&method, &headers, None, Scope::Query)
        .await
    {
        Ok(caller) => crate::auth::record_application(&caller),
        Err(e) => return error_as_html(e.into_response()).await,
    }
    let stats = match DashboardStats::load(&state.store, state.clock.now()).await {
        Ok(s) => s,
        Err(e) => return error_as_html(ApiError::from(e).into_response()).await,
    };
    let queue = QueueStatus {
        kind: state.queue.kind(),
        backlog: state.queue.backlog().await.ok(),
    };
    html_response(StatusCode::OK, render(&stats, &queue, refresh))
}

/// Human-readable bytes.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The dashboard page.
///
/// ```
/// use eye_server::web::dashboard::{DashboardStats, QueueStatus, render};
/// let stats = DashboardStats { hours: vec![], totals: [3, 2, 1], newest_sessions: vec![],
///     newest_errors: vec![], error_count: 0, store_bytes: 4096 };
/// let queue = QueueStatus { kind: "journal", backlog: Some(0) };
/// let html = render(&stats, &queue, None).into_string();
/// assert!(html.contains("4.0 KiB"));
/// assert!(html.contains("<svg"));
/// ```
pub fn render(stats: &DashboardStats, queue: &QueueStatus, refresh: Option<u32>) -> Markup {
    let total: u64 = stats.totals.iter().sum();
    let last_day: u64 = stats.hours.iter().map(HourBucket::total).sum();
    let body = html! {
        h1 { "Dashboard" }
        p.muted {
            @if let Some(secs) = refresh {
                "Reloading every " (secs) " s · " a href="/" { "stop" }
            } @else {
                "Auto-refresh: " a href="/?refresh=10" { "10 s" } " · " a href="/?refresh=60" { "1 min" }
            }
        }
        div.cards {
            div.card { div.value #total-events { (total) } div.label { "events stored" } }
            div.card { div.value { (last_day) } div.label { "events in the last 24 h" } }
            @for (t, n) in EventType::ALL.iter().zip(stats.totals) {
                div.card { div.value { (n) } div.label { span class={ "swatch t-" (t.name()) } {} (t.as_str()) } }
            }
            div.card { div.value.error { (stats.error_count) } div.label { a href="/errors" { "rejected events" } } }
            div.card {
                div.value #backlog { @if let Some(b) = queue.backlog { (b) } @else { span.error { "?" } } }
                div.label { "queue backlog (" (queue.kind) ")" }
            }
            div.card { div.value #store-size { (bytes(stats.store_bytes)) } div.label { "store size" } }
        }
        h2 { "Events per hour, last 24 hours (by when they happened, UTC)" }
        div.chart { (chart(&stats.hours)) }
        div.grid2 {
            div {
                h2 { "Newest sessions" }
                table {
                    thead { tr { th { "session" } th.num { "events" } th { "last seen" } th { "applications" } } }
                    tbody {
                        @for s in &stats.newest_sessions {
                            tr {
                                td { a href={ "/sessions/" (encode(&s.session_id)) "/events" } { (s.session_id) } }
                                td.num { (s.event_count) }
                                td.mono title=(format_timestamp(&s.last_seen)) { (s.last_seen.format("%Y-%m-%d %H:%M:%S")) }
                                td { (s.applications.join(", ")) }
                            }
                        }
                        @if stats.newest_sessions.is_empty() { tr { td colspan="4" .muted { "No sessions yet." } } }
                    }
                }
            }
            div {
                h2 { "Newest errors" }
                (pages::errors_table(&stats.newest_errors, true))
            }
        }
    };
    refreshing_page("Dashboard", body, refresh)
}

const CHART_W: f64 = 960.0;
const CHART_H: f64 = 240.0;
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 28.0;
const TOP: f64 = 12.0;

/// A "nice" axis maximum at or above `n`: 1, 2 or 5 times a power of ten.
fn nice_max(n: u64) -> u64 {
    let mut step = 1;
    loop {
        for m in [1, 2, 5] {
            if step * m >= n {
                return step * m;
            }
        }
        step *= 10;
    }
}

/// The segments of one stacked bar: (type index, top, height), bottom up.
fn stack(counts: &[u64; 3], y: &impl Fn(u64) -> f64) -> Vec<(usize, f64, f64)> {
    let mut below = 0;
    counts
        .iter()
        .enumerate()
        .map(|(k, n)| {
            let top = y(below + n);
            let height = y(below) - top;
            below += n;
            (k, top, height)
        })
        .collect()
}

/// Stacked bars, one per hour, one colour per event type, with a legend; each bar has
/// a `<title>` tooltip with its numbers.
///
/// ```
/// use eye_server::web::dashboard::HourBucket;
/// let hour = HourBucket { start: chrono::Utc::now(), counts: [1, 2, 3] };
/// let svg = eye_server::web::dashboard::chart(&[hour]).into_string();
/// assert_eq!(svg.matches("<rect class=\"bar").count(), 3);
/// ```
pub fn chart(hours: &[HourBucket]) -> Markup {
    let max = nice_max(
        hours
            .iter()
            .map(HourBucket::total)
            .max()
            .unwrap_or(0)
            .max(1),
    );
    let plot_h = CHART_H - BOTTOM - TOP;
    let slot = (CHART_W - LEFT - 8.0) / hours.len().max(1) as f64;
    let bar_w = (slot * 0.75).max(1.0);
    let y = |v: u64| TOP + plot_h - plot_h * v as f64 / max as f64;
    let colors = ["#2856c7", "#d9822b", "#1f9d6b"];
    html! {
        svg xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (CHART_W) " " (CHART_H + 22.0) }
            width="100%" role="img" aria-label="Events per hour over the last 24 hours, by type" {
            @for tick in [0, max / 2, max] {
                line x1=(LEFT) x2=(CHART_W - 8.0) y1=(y(tick)) y2=(y(tick)) stroke="#e3e6ee" {}
                text x=(LEFT - 6.0) y=(y(tick) + 4.0) text-anchor="end" font-size="11" fill="#5d6679" { (tick) }
            }
            @for (i, hour) in hours.iter().enumerate() {
                @let x = LEFT + slot * i as f64 + (slot - bar_w) / 2.0;
                @let tip = format!("{} UTC: {} page views, {} CTA clicks, {} form submits",
                    hour.start.format("%Y-%m-%d %H:00"), hour.counts[0], hour.counts[1], hour.counts[2]);
                g {
                    title { (tip) }
                    @for (k, top, height) in stack(&hour.counts, &y) {
                        rect class={ "bar t" (k) } x=(format!("{x:.1}")) y=(format!("{top:.1}")) width=(format!("{bar_w:.1}"))
                            height=(format!("{height:.1}")) fill=(colors[k]) {}
                    }
                }
                @if i % 3 == 0 || i + 1 == hours.len() {
                    text x=(format!("{:.1}", x + bar_w / 2.0)) y=(CHART_H - BOTTOM + 16.0) text-anchor="middle" font-size="11" fill="#5d6679" {
                        (hour.start.format("%H:00"))
                    }
                }
            }
            @for (k, t) in EventType::ALL.iter().enumerate() {
                rect x=(LEFT + 230.0 * k as f64) y=(CHART_H + 4.0) width="10" height="10" fill=(colors[k]) {}
                text x=(LEFT + 14.0 + 230.0 * k as f64) y=(CHART_H + 13.0) font-size="12" fill="#1d2330" { (t.as_str()) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_max_rounds_up_to_one_two_or_five() {
        assert_eq!(
            [1, 3, 7, 10, 11, 240].map(nice_max),
            [1, 5, 10, 10, 20, 500]
        );
    }

    #[test]
    fn bytes_are_human_readable() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
