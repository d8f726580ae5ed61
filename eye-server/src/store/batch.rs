//! What both backends' write paths compute before they touch the database: each
//! accepted event ready to insert ([`NewEvent`]), and, from the events a batch really
//! inserted, the per-session and per-counter deltas ([`Deltas`]) they then upsert.
//! Every map is ordered, so both backends write rows in key order (Postgres relies on
//! it to keep concurrent writers from deadlocking).

use std::collections::{BTreeMap, BTreeSet};

use crate::message::AcceptedEvent;
use crate::store::StoreError;
use crate::store::rows::{hour_of, to_micros};
use crate::store::tree::{bucket_of, fine_widths};

/// An event ready to insert.
pub(super) struct NewEvent<'a> {
    pub(super) src: &'a AcceptedEvent,
    pub(super) category: &'static str,
    pub(super) name: &'static str,
    /// The event's `data` as JSON text.
    pub(super) data: String,
    /// Microseconds since the Unix epoch.
    pub(super) timestamp: i64,
}

impl<'a> NewEvent<'a> {
    pub(super) fn new(src: &'a AcceptedEvent) -> Result<Self, StoreError> {
        let t = src.event.event_type();
        let data = serde_json::to_string(src.event.payload())
            .map_err(|e| StoreError::Corrupt(format!("event {}: data: {e}", src.id)))?;
        Ok(Self {
            src,
            category: t.category(),
            name: t.name(),
            data,
            timestamp: to_micros(src.event.timestamp()),
        })
    }

    pub(super) fn session(&self) -> &'a str {
        self.src.event.session_id().as_str()
    }

    pub(super) fn application(&self) -> &'a str {
        self.src.application.as_str()
    }
}

/// Counter rows keyed by (application, category, name).
pub(super) type CounterKey<'a> = (&'a str, &'static str, &'static str);

/// Running totals of one session within a batch.
pub(super) struct SessionDelta {
    pub(super) first: i64,
    pub(super) last: i64,
    pub(super) count: i64,
}

/// What a batch's newly inserted events add to sessions and counters.
#[derive(Default)]
pub(super) struct Deltas<'a> {
    pub(super) sessions: BTreeMap<&'a str, SessionDelta>,
    pub(super) session_apps: BTreeSet<(&'a str, &'a str)>,
    pub(super) totals: BTreeMap<CounterKey<'a>, i64>,
    pub(super) hours: BTreeMap<(i64, CounterKey<'a>), i64>,
    /// Keyed by (bucket width, bucket, counter key): the counter tree below the hour.
    pub(super) buckets: BTreeMap<(i64, i64, CounterKey<'a>), i64>,
}

impl<'a> Deltas<'a> {
    /// The deltas of `inserted` (only events the database really inserted).
    pub(super) fn of(inserted: &[&NewEvent<'a>]) -> Self {
        let mut d = Self::default();
        for e in inserted {
            d.add(
                e.session(),
                (e.application(), e.category, e.name),
                e.timestamp,
            );
        }
        d
    }

    /// Counts one event of `session` with counter key `key` at `timestamp`.
    pub(super) fn add(&mut self, session: &'a str, key: CounterKey<'a>, timestamp: i64) {
        self.sessions
            .entry(session)
            .and_modify(|s| {
                s.first = s.first.min(timestamp);
                s.last = s.last.max(timestamp);
                s.count += 1;
            })
            .or_insert(SessionDelta {
                first: timestamp,
                last: timestamp,
                count: 1,
            });
        self.session_apps.insert((session, key.0));
        *self.totals.entry(key).or_default() += 1;
        *self.hours.entry((hour_of(timestamp), key)).or_default() += 1;
        for &width in fine_widths() {
            *self
                .buckets
                .entry((width, bucket_of(timestamp, width), key))
                .or_default() += 1;
        }
    }

    /// The same deltas with every counter negated: what removing the events takes
    /// off the counters.
    pub(super) fn negated(mut self) -> Self {
        for n in self.totals.values_mut() {
            *n = -*n;
        }
        for n in self.hours.values_mut() {
            *n = -*n;
        }
        for n in self.buckets.values_mut() {
            *n = -*n;
        }
        self
    }
}
