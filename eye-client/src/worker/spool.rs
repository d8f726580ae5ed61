//! The worker's loop with an outbox. Events go to disk first: what arrives is
//! collected and written in one append and one `fdatasync` per sync interval, so the
//! buffer empties to disk whether or not the server answers. Delivery reads from
//! memory when the outbox has no backlog (the appended events go straight to the
//! ready queue), and from disk otherwise (an outage's backlog, or what a previous
//! client left), a bounded chunk at a time.
//!
//! A batch whose retries run out on a retryable failure is kept: its events go back
//! to the front of the ready queue and delivery pauses for the retry policy's largest
//! backoff before trying again, for as long as the outbox's bounds allow.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use eye_core::Event;
use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::Instant;
use uuid::Uuid;

use super::{Command, Worker};
use crate::outbox::{Evicted, Job, JobDone, Outbox, Writer, unix_ms};
use crate::report::{Counters, DeliveryReport};
use crate::transport::Outcome;

/// The worker's outbox state.
pub(crate) struct Spool {
    outbox: Outbox,
    /// Received, not written yet.
    pending: Vec<Event>,
    /// When `pending` must be written.
    pending_due: Option<Instant>,
    /// The disk job in flight (at most one).
    job: JoinSet<JobDone>,
    /// Events in that job's append.
    job_events: u64,
    /// On disk (or unwritable), ready to send; with the segment each came from.
    ready: VecDeque<(Event, Option<u64>)>,
    /// Most events in `pending`, and in `ready` plus in flight.
    cap: usize,
    /// After a batch was kept: no new batch before this.
    pause_until: Option<Instant>,
    /// Each delivery's events and their segments.
    batches: HashMap<Id, Vec<(Uuid, Option<u64>)>>,
    /// A batch was kept since the flush began (the server is unreachable).
    outage: bool,
}

impl Spool {
    pub fn new(outbox: Outbox, cap: usize) -> Self {
        Self {
            outbox,
            pending: Vec::new(),
            pending_due: None,
            job: JoinSet::new(),
            job_events: 0,
            ready: VecDeque::new(),
            cap: cap.max(1),
            pause_until: None,
            batches: HashMap::new(),
            outage: false,
        }
    }
}

impl Worker {
    /// Runs until a shutdown command arrives or every handle is gone.
    pub(super) async fn run_spooled(mut self, mut sp: Spool) {
        let evicted = self.enforce_bounds(&mut sp, unix_ms(SystemTime::now()));
        self.count_evicted(evicted);
        loop {
            self.start_job(&mut sp, false);
            self.dispatch_ready(&mut sp, false);
            let accepting = sp.pending.len() < sp.cap;
            let timer = self.next_timer(&sp);
            tokio::select! {
                biased;
                Some(done) = self.in_flight.join_next_with_id(), if !self.in_flight.is_empty() => {
                    self.absorb_spooled(&mut sp, done);
                }
                Some(done) = sp.job.join_next(), if !sp.job.is_empty() => {
                    self.job_done(&mut sp, done);
                }
                () = tokio::time::sleep_until(timer.unwrap_or_else(Instant::now)), if timer.is_some() => {}
                cmd = self.rx.recv(), if accepting => match cmd {
                    Some(Command::Event(e)) => self.spool_event(&mut sp, e),
                    Some(Command::Flush(reply)) => {
                        self.drain_spooled(&mut sp).await;
                        let mut report = self.take_report();
                        report.in_outbox = sp.outbox.backlog();
                        let _ = reply.send(report);
                    }
                    Some(Command::Shutdown(reply)) => {
                        let report = self.finish_spooled(sp).await;
                        let _ = reply.send(report);
                        return;
                    }
                    None => {
                        let report = self.finish_spooled(sp).await;
                        if !report.is_complete() {
                            tracing::warn!(%report, "eye-client dropped without shutdown");
                        }
                        return;
                    }
                },
                else => tokio::task::yield_now().await,
            }
        }
    }

    fn spool_event(&mut self, sp: &mut Spool, event: Event) {
        if sp.pending.is_empty() {
            sp.pending_due = Some(Instant::now() + sp.outbox.config.sync_interval);
        }
        sp.pending.push(event);
    }

    /// Starts a disk job when one is due and none runs: the pending events' append
    /// (due, or `force`d, or a full buffer), deletions, and a read when the ready queue
    /// has room and the disk holds unread records.
    fn start_job(&mut self, sp: &mut Spool, force: bool) {
        if !sp.job.is_empty() {
            return;
        }
        let now = Instant::now();
        let write = !sp.pending.is_empty()
            && (force || sp.pending.len() >= sp.cap || sp.pending_due.is_some_and(|d| d <= now));
        let in_flight: u64 = self.in_flight_events.values().sum();
        let held = sp.ready.len() + usize::try_from(in_flight).unwrap_or(usize::MAX);
        let room = sp.cap.saturating_sub(held);
        let read = if room >= (sp.cap / 2).max(1) && !self.shared.past_deadline() {
            sp.outbox.next_read(room)
        } else {
            None
        };
        if !write && read.is_none() && sp.outbox.removals.is_empty() {
            return;
        }
        let Some(writer) = sp.outbox.writer.take() else {
            return;
        };
        let append = if write {
            sp.pending_due = None;
            std::mem::take(&mut sp.pending)
        } else {
            Vec::new()
        };
        sp.job_events = append.len() as u64;
        let job = Job {
            writer,
            removals: std::mem::take(&mut sp.outbox.removals),
            append,
            now_ms: unix_ms(SystemTime::now()),
            read,
        };
        sp.job.spawn_blocking(move || job.run());
    }

    /// Books what a disk job did.
    fn job_done(&mut self, sp: &mut Spool, done: Result<JobDone, JoinError>) {
        let d = match done {
            Ok(d) => d,
            Err(e) => {
                // Nothing in a job panics by design; if one did, its events are lost.
                let lost = sp.job_events;
                tracing::error!(error = %e, events = lost, "an outbox job failed; its events count as failed");
                Counters::add(&self.shared.counters.failed, lost);
                self.report.failed += lost;
                let c = &sp.outbox.config;
                let next = sp.outbox.segments.back().map_or(1, |s| s.seq + 1) + 1_000;
                sp.outbox.writer = Some(Writer::new(c.dir.clone(), next, c.segment_bytes()));
                return;
            }
        };
        sp.outbox.writer = Some(d.writer);
        let now_ms = unix_ms(SystemTime::now());
        let mut evicted = Evicted::default();
        if let Some(r) = d.read {
            let mut n = 0;
            for (written_ms, event) in r.records {
                n += 1;
                match event {
                    Ok(e) if !sp.outbox.expired(written_ms, now_ms) => {
                        self.push_ready(sp, e, Some(r.seq));
                    }
                    Ok(_) => evicted.add(evict_one(&mut sp.outbox, r.seq)),
                    Err(why) => {
                        tracing::warn!(%why, "eye-client outbox: a record is not a valid event; dropping it");
                        evicted.add(evict_one(&mut sp.outbox, r.seq));
                    }
                }
            }
            sp.outbox.loaded(r.seq, n, r.next_offset);
            if r.corrupt {
                evicted.add(sp.outbox.unreadable(r.seq));
            }
        }
        match d.appended {
            Some(Ok(a)) => {
                // Straight to the ready queue only when nothing older waits on disk.
                let direct = sp.outbox.unread() == 0 && sp.ready.len() + d.events.len() <= sp.cap;
                sp.outbox.appended(&a);
                if direct {
                    sp.outbox.loaded(a.seq, a.records, a.end);
                    for e in d.events {
                        self.push_ready(sp, e, Some(a.seq));
                    }
                }
            }
            Some(Err(e)) => {
                tracing::error!(error = %e, events = d.events.len(), "eye-client outbox: cannot write; delivering these from memory");
                for event in d.events {
                    self.push_ready(sp, event, None);
                }
            }
            None => {}
        }
        evicted.add(self.enforce_bounds(sp, now_ms));
        self.count_evicted(evicted);
        sp.outbox.collect_settled();
    }

    /// Applies the outbox's bounds; the ready events of segments it dropped are
    /// evicted with them (a batch already in flight goes on).
    fn enforce_bounds(&mut self, sp: &mut Spool, now_ms: u64) -> Evicted {
        let (mut evicted, removed) = sp.outbox.enforce_bounds(now_ms);
        for (seq, recovered) in removed {
            let before = sp.ready.len();
            sp.ready.retain(|(_, seg)| *seg != Some(seq));
            let gone = (before - sp.ready.len()) as u64;
            evicted.add(Evicted {
                events: gone,
                recovered: if recovered { gone } else { 0 },
            });
        }
        evicted
    }

    fn push_ready(&mut self, sp: &mut Spool, event: Event, seg: Option<u64>) {
        if sp.ready.is_empty() && self.batch_due.is_none() {
            self.batch_due = Some(Instant::now() + self.settings.flush_interval);
        }
        sp.ready.push_back((event, seg));
    }

    fn count_evicted(&mut self, e: Evicted) {
        Counters::add(&self.shared.counters.evicted, e.events);
        self.report.evicted += e.events;
        self.report.from_outbox += e.recovered;
    }

    /// Sends full batches from the ready queue (any batch when `force`d or due), unless
    /// paused after an outage.
    fn dispatch_ready(&mut self, sp: &mut Spool, force: bool) {
        let now = Instant::now();
        if let Some(p) = sp.pause_until {
            if force || p <= now {
                sp.pause_until = None;
            } else {
                return;
            }
        }
        let size = self.settings.batch_size;
        while self.can_send() && !sp.ready.is_empty() {
            let full = sp.ready.len() >= size;
            if !(full || force || self.batch_due.is_some_and(|d| d <= now)) {
                break;
            }
            let n = sp.ready.len().min(size);
            let mut events = Vec::with_capacity(n);
            let mut segs = Vec::with_capacity(n);
            for (event, seg) in sp.ready.drain(..n) {
                segs.push((event.id().unwrap_or_default(), seg));
                events.push(event);
            }
            let delivery = self.transport.clone().deliver(events);
            let id = self.spawn_delivery(n as u64, delivery);
            sp.batches.insert(id, segs);
        }
        if sp.ready.is_empty() {
            self.batch_due = None;
        } else if self.batch_due.is_none() {
            self.batch_due = Some(now + self.settings.flush_interval);
        }
    }

    /// The next instant the loop must wake up for, if any.
    fn next_timer(&self, sp: &Spool) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut at = |i: Instant| next = Some(next.map_or(i, |n| n.min(i)));
        if sp.job.is_empty()
            && let Some(d) = sp.pending_due
        {
            at(d);
        }
        if let Some(p) = sp.pause_until {
            at(p);
        } else if self.can_send()
            && !sp.ready.is_empty()
            && let Some(d) = self.batch_due
        {
            at(d);
        }
        next
    }

    /// Books a delivery: settles its events' records, except those kept for later
    /// (which go back to the front of the ready queue and pause delivery).
    fn absorb_spooled(&mut self, sp: &mut Spool, done: Result<(Id, Outcome), JoinError>) {
        let (id, mut outcome) = match done {
            Ok(done) => done,
            Err(e) => {
                let events = self.in_flight_events.remove(&e.id()).unwrap_or(0);
                tracing::error!(error = %e, events, "a delivery task failed; its events count as failed");
                Counters::add(&self.shared.counters.failed, events);
                self.report.failed += events;
                let segs = sp.batches.remove(&e.id()).unwrap_or_default();
                self.settle(sp, segs.iter().map(|(_, seg)| *seg));
                return;
            }
        };
        self.in_flight_events.remove(&id);
        let segs = sp.batches.remove(&id).unwrap_or_default();
        let kept = std::mem::take(&mut outcome.kept);
        // At the stop deadline nothing is settled: the segments stay for the next
        // client, and the final report counts what is unsettled as pending.
        if outcome.abandoned == 0 {
            let kept_ids: HashSet<Uuid> = kept.iter().filter_map(Event::id).collect();
            let settled = segs.iter().filter(|(id, _)| !kept_ids.contains(id));
            self.settle(sp, settled.map(|(_, seg)| *seg));
            if !kept.is_empty() {
                let seg_of: HashMap<Uuid, Option<u64>> = segs.into_iter().collect();
                for event in kept.iter().rev() {
                    let seg = event.id().and_then(|id| seg_of.get(&id).copied().flatten());
                    sp.ready.push_front((event.clone(), seg));
                }
            }
        }
        if !kept.is_empty() {
            sp.outage = true;
            sp.pause_until = Some(Instant::now() + self.transport.retry.max_backoff);
        } else if outcome.delivered > 0 {
            sp.outage = false;
        }
        outcome.abandoned = 0;
        self.record(outcome);
    }

    /// Settles one record per item (runs of the same segment at once), then queues the
    /// deletion of segments wholly settled.
    fn settle(&mut self, sp: &mut Spool, segs: impl Iterator<Item = Option<u64>>) {
        let mut run: Option<(u64, u64)> = None;
        let flush = |sp: &mut Spool, run: Option<(u64, u64)>, report: &mut DeliveryReport| {
            if let Some((seq, n)) = run
                && sp.outbox.settle(seq, n) == Some(true)
            {
                report.from_outbox += n;
            }
        };
        for seg in segs.flatten() {
            match &mut run {
                Some((seq, n)) if *seq == seg => *n += 1,
                _ => {
                    flush(sp, run.take(), &mut self.report);
                    run = Some((seg, 1));
                }
            }
        }
        flush(sp, run, &mut self.report);
        sp.outbox.collect_settled();
    }

    /// Writes what is pending, then delivers everything in memory and on disk, until
    /// it is all settled, or a batch was kept (the server is unreachable: the rest
    /// waits in the outbox), or the stop deadline passed.
    async fn drain_spooled(&mut self, sp: &mut Spool) {
        sp.outage = false;
        loop {
            self.start_job(sp, true);
            let active = !sp.outage && !self.shared.past_deadline();
            if active {
                self.dispatch_ready(sp, true);
            }
            if sp.job.is_empty() && self.in_flight.is_empty() {
                // Nothing under way: what was pending is written (a forced job would
                // have started), and with nothing in flight a batch or a read would
                // have started if the ready queue or the disk had anything to send.
                break;
            }
            tokio::select! {
                Some(done) = self.in_flight.join_next_with_id(), if !self.in_flight.is_empty() => {
                    self.absorb_spooled(sp, done);
                }
                Some(done) = sp.job.join_next(), if !sp.job.is_empty() => self.job_done(sp, done),
            }
        }
    }

    /// Stops taking events, writes every one received to disk (whatever the deadline),
    /// delivers until done or the deadline, deletes settled segments and releases the
    /// outbox's lock before the report goes out.
    async fn finish_spooled(&mut self, mut sp: Spool) -> DeliveryReport {
        self.shared.closed.store(true, Ordering::Release);
        self.rx.close();
        let mut late_waiters = Vec::new();
        while let Some(cmd) = self.rx.recv().await {
            match cmd {
                Command::Event(e) => self.spool_event(&mut sp, e),
                Command::Flush(reply) | Command::Shutdown(reply) => late_waiters.push(reply),
            }
        }
        while !sp.pending.is_empty() || !sp.job.is_empty() {
            self.start_job(&mut sp, true);
            match sp.job.join_next().await {
                Some(done) => self.job_done(&mut sp, done),
                None => break,
            }
        }
        self.drain_spooled(&mut sp).await;
        while let Some(done) = self.in_flight.join_next_with_id().await {
            self.absorb_spooled(&mut sp, done);
        }
        while let Some(done) = sp.job.join_next().await {
            self.job_done(&mut sp, done);
        }
        sp.outbox.collect_settled();
        let removals = std::mem::take(&mut sp.outbox.removals);
        let removed = tokio::task::spawn_blocking(move || {
            for path in removals {
                let _ = std::fs::remove_file(path);
            }
        });
        let _ = removed.await;
        let mut report = std::mem::take(&mut self.report);
        report.pending = self.shared.unsettled_unreported();
        self.shared.seal(&mut report);
        report.in_outbox = sp.outbox.backlog();
        drop(sp);
        for reply in late_waiters {
            let _ = reply.send(DeliveryReport::default());
        }
        report
    }
}

/// Settles one record of `seq` as evicted.
fn evict_one(outbox: &mut Outbox, seq: u64) -> Evicted {
    let recovered = outbox.settle(seq, 1) == Some(true);
    Evicted {
        events: 1,
        recovered: u64::from(recovered),
    }
}
