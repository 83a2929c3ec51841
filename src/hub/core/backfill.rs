//! Backfill after an upstream switch (issue 14 part 2): when a topic's connection is
//! replaced, the core asks the new connection what the topic missed (from the last height
//! it delivered to the node's current height, at most `backfill_max_blocks`), holds the
//! topic's live notifications meanwhile, then delivers the fetched ones in order,
//! deduplicated (by the dialect's identity: block hash; blockHash, logIndex, removed)
//! against what it delivered before and what arrived live, and then the held live ones.
//! What lies beyond the cap, or what the node could not answer, is announced with the
//! gap notice for exactly that range.

pub(super) use super::steps::{merged, Step};
use super::{Outbox, Pending, RouteCore};
use crate::dialect::backfill::{self, Item};
use crate::dialect::{Call, SubscriptionKey};
use crate::hub::table::{SlotId, TopicId};
use crate::hub::{Notice, WireText};
use crate::telemetry::RouteMetrics;
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;
use tracing::debug;

/// What a topic that can be backfilled remembers of its stream.
#[derive(Debug, Default)]
pub(super) struct Track {
    /// Height of the last notification delivered (or queued for delivery).
    last: Option<u64>,
    /// Identities (hashed) delivered at height `last`: a refetch of that height skips them.
    last_ids: Vec<u64>,
    /// After a switch: fetch from this height (inclusive) once resubscribed.
    from: Option<u64>,
    run: Option<Run>,
    /// Blocks delivered recently, oldest first: what a reorg across a switch is checked
    /// against, and (for `logs`) what it retracts. At most [`RECENT_HEIGHTS`] heights and
    /// [`RECENT_LOGS`] log notices; older ones are forgotten.
    recent: VecDeque<Delivered>,
    recent_logs: usize,
    /// A content-routed topic: its slot's [`super::routed`] backfill covers it.
    routed: bool,
    /// Backfilled by asking the node's HTTP endpoint and pushing what it answers as the
    /// node's own notifications ([`super::inject`], Solana).
    pub(super) inject: bool,
    /// Solana program topics: per account (pubkey hashed), the value delivered last
    /// (hashed); at most [`PROGRAM_ACCOUNTS`].
    pub(super) program: std::collections::HashMap<u64, u64>,
    /// A logs backfill in progress (Solana `logsSubscribe` with mentions).
    pub(super) logs_fill: Option<super::inject::LogsFill>,
    /// What a finished backfill queued, going out a burst per tick; live notifications
    /// queue behind it.
    out: VecDeque<Out>,
}

/// What was delivered at one height.
#[derive(Debug)]
struct Delivered {
    height: u64,
    /// The block's hash (hashed) as the notifications named it.
    block: u64,
    /// The log notifications delivered from it, in order (a reorg retracts them).
    logs: Vec<Notice>,
}

/// Heights a topic remembers for reorg checks: a reorg deeper than this across a switch
/// is not retracted (only the new branch is delivered).
pub(super) const RECENT_HEIGHTS: usize = 128;
/// Log notifications a topic remembers for retraction, across its recent heights.
pub(super) const RECENT_LOGS: usize = 4096;
/// Accounts a Solana program topic remembers the delivered value of.
pub(super) const PROGRAM_ACCOUNTS: usize = 65_536;

/// One queued notification.
#[derive(Debug)]
struct Out {
    notice: Notice,
    kept_at: Option<u64>,
    /// Fetched by the backfill (counted in `submux_backfilled_total`).
    filled: bool,
}

/// A backfill in progress.
#[derive(Debug)]
pub(super) struct Run {
    slot: SlotId,
    /// Requests sent and not answered yet (at most [`IN_FLIGHT`]).
    pub(super) waiting: usize,
    /// Requests not sent yet.
    queue: VecDeque<(Step, Call)>,
    pub(super) items: Vec<Item>,
    /// Live notifications that arrived meanwhile, delivered after the fetched ones.
    held: Vec<(Notice, Option<Item>, Option<u64>)>,
    /// Ranges announced as missed (beyond the cap, or unanswered).
    pub(super) gaps: Vec<(u64, u64)>,
    /// The node's height, once told.
    to: Option<u64>,
    /// A block delivered before the switch is not the node's any more (a reorg).
    orphaned: bool,
    /// After a reorg: the newest delivered height still on the node's chain. What was
    /// delivered above it is retracted, and the new branch fetched from above it.
    fork: Option<u64>,
    /// The height delivered last, fetched again (a block's logs may have been cut off).
    refetch: Option<u64>,
}

impl Run {
    /// A run on `slot` with its first request (the node's height, or another module's)
    /// in flight.
    fn new(slot: SlotId) -> Self {
        Run {
            slot,
            waiting: 1,
            queue: VecDeque::new(),
            items: Vec::new(),
            held: Vec::new(),
            gaps: Vec::new(),
            to: None,
            orphaned: false,
            fork: None,
            refetch: None,
        }
    }
}

/// Backfill requests of one topic in flight at once: a node is not flooded (nor its
/// connection's queue, which a node may close as slow), and live notifications keep
/// their place on the connection.
pub(super) const IN_FLIGHT: usize = 16;

/// Live notifications a topic holds during its backfill (or queues behind it) at most;
/// beyond, the backfill is cut short (what it did not fetch is announced) and the queue
/// goes out at once.
const HELD_MAX: usize = 16_384;

/// Queue the fetches of what was missed after height `from` up to the node's `to`: the
/// newest `max` heights, the older ones announced. `refetch`: `from` itself is fetched
/// again (deduplicated), a block whose logs may have been cut off by the switch.
fn plan(run: &mut Run, key: &SubscriptionKey, from: u64, to: u64, max: u64, refetch: bool) {
    if to <= from {
        return; // the node is not past where we were: nothing missed
    }
    let start = if to - from > max {
        run.gaps.push((from + 1, to - max));
        to - max + 1
    } else if refetch {
        run.refetch = Some(from);
        from
    } else {
        from + 1
    };
    let calls = backfill::calls(key, start, to).unwrap_or_default();
    let per = if calls.len() > 1 { 1 } else { to - start + 1 };
    for (i, call) in calls.into_iter().enumerate() {
        let lo = start + i as u64 * per;
        let step = Step::Fetch {
            from: lo,
            to: (lo + per - 1).min(to),
        };
        run.queue.push_back((step, call));
    }
}

impl Track {
    pub(super) fn new(dialect: &dyn crate::dialect::Dialect) -> Self {
        Track {
            routed: dialect.routing() == crate::dialect::Routing::ByContent,
            inject: dialect.backfill_over_http(),
            ..Track::default()
        }
    }

    /// Start a run on `slot` whose requests another module sends (live notifications are
    /// held until [`RouteCore::finish_backfill`]); fetched after `from`.
    pub(super) fn begin(&mut self, slot: SlotId, from: u64) -> &mut Run {
        self.from = Some(from);
        self.run.insert(Run::new(slot))
    }

    pub(super) fn run_mut(&mut self) -> Option<&mut Run> {
        self.run.as_mut()
    }

    /// The height and identities delivered last.
    pub(super) fn last(&self) -> (Option<u64>, &[u64]) {
        (self.last, &self.last_ids)
    }

    fn delivered(&mut self, item: &Item, notice: &Notice) {
        let id = item.identity;
        if let Some(k) = item.key {
            if self.program.len() < PROGRAM_ACCOUNTS || self.program.contains_key(&k) {
                self.program.insert(k, id);
            }
        }
        if self.last == Some(item.height) {
            self.last_ids.push(id);
        } else {
            self.last = Some(item.height);
            self.last_ids = vec![id];
        }
        if item.removed {
            // The node retracted the block itself (its own reorg): nothing to retract.
            let at =
                (self.recent.iter()).position(|d| d.height == item.height && d.block == item.block);
            if let Some(d) = at.and_then(|i| self.recent.remove(i)) {
                self.recent_logs -= d.logs.len();
            }
            return;
        }
        // Another block at a height delivered, or a lower height: the chain was
        // reorganised, and what was delivered from there on is not on it any more.
        while let Some(d) = self.recent.back() {
            if d.height > item.height || (d.height == item.height && d.block != item.block) {
                let n = d.logs.len();
                self.recent.pop_back();
                self.recent_logs -= n;
            } else {
                break;
            }
        }
        match self.recent.back_mut() {
            Some(d) if d.height == item.height => {}
            _ => self.recent.push_back(Delivered {
                height: item.height,
                block: item.block,
                logs: Vec::new(),
            }),
        }
        if item.log {
            if let Some(d) = self.recent.back_mut() {
                d.logs.push(notice.clone());
                self.recent_logs += 1;
            }
        }
        while self.recent.len() > RECENT_HEIGHTS || self.recent_logs > RECENT_LOGS {
            let Some(d) = self.recent.pop_front() else {
                break;
            };
            self.recent_logs -= d.logs.len();
        }
    }

    /// The connection was replaced: remember where to fetch from (a run in progress is
    /// dropped; the next one covers its range too).
    pub(super) fn switched(&mut self) {
        self.run = None; // (its queue, received already, still goes out)
        if self.routed {
            self.from = Some(0); // (its slot knows where to fetch from)
        } else if self.inject {
            self.from = self.from.or(Some(self.last.unwrap_or(0)));
        } else if self.from.is_none() {
            self.from = self.last;
        }
    }

    /// Whether live notifications are held for a run in progress.
    pub(super) fn holding(&self) -> bool {
        self.run.is_some() || !self.out.is_empty()
    }

    /// Live notifications held or queued.
    fn held(&self) -> usize {
        self.run.as_ref().map_or(0, |r| r.held.len()) + self.out.len()
    }

    /// Whether a switch is followed by a backfill (something was delivered before it):
    /// the history is kept, and only what the backfill cannot fill is announced.
    pub(super) fn fills(&self) -> bool {
        self.last.is_some() || self.routed || self.inject
    }

    pub(super) fn hold(&mut self, notice: Notice, item: Option<Item>, kept_at: Option<u64>) {
        match &mut self.run {
            Some(run) => run.held.push((notice, item, kept_at)),
            None => {
                if let Some(i) = &item {
                    self.delivered(i, &notice);
                }
                self.out.push_back(Out {
                    notice,
                    kept_at,
                    filled: false,
                });
            }
        }
    }
}

impl<O: Outbox> RouteCore<O> {
    /// A live notification of a tracked topic: delivered, or held during a backfill.
    pub(super) fn deliver_tracked(
        &mut self,
        topic: TopicId,
        notice: Notice,
        item: Option<Item>,
        kept_at: Option<u64>,
    ) {
        let cap = self.settings.history_len;
        let Some(t) = self.table.get_mut(topic) else {
            return;
        };
        let Some(track) = t.data.track.as_mut() else {
            return;
        };
        if track.holding() {
            track.hold(notice, item, kept_at);
            if track.held() >= HELD_MAX {
                self.overflow(topic);
            }
            return;
        }
        if let Some(i) = &item {
            track.delivered(i, &notice);
        }
        if let Some(h) = kept_at {
            t.data.history.record(h, notice.clone(), cap);
        }
        self.out.broadcast(&t.data.fan, notice);
    }

    /// The backfill record of `topic` (topics the dialect can backfill, with `backfill` on).
    pub(super) fn track_mut(&mut self, topic: TopicId) -> Option<&mut Track> {
        self.table
            .get_mut(topic)
            .and_then(|t| t.data.track.as_mut())
    }

    /// Too much held: end the run with what it has (announcing from the last delivered
    /// height to below the lowest held one), and send the whole queue now.
    fn overflow(&mut self, topic: TopicId) {
        let Some(track) = self.track_mut(topic) else {
            return;
        };
        if let (Some(run), Some(from)) = (track.run.as_mut(), track.from) {
            let lowest = (run.held.iter())
                .filter_map(|(_, i, _)| i.as_ref().map(|i| i.height))
                .min();
            let to = lowest.map_or(u64::MAX, |h| h.saturating_sub(1));
            if to > from {
                run.gaps.push((from + 1, to)); // what was fetched of it still goes out
            }
            run.queue.clear();
            run.waiting = 0;
            self.finish_backfill(topic);
        }
        self.drain(usize::MAX);
    }

    /// The topic was (re)subscribed on `slot`: if it missed something, start fetching it.
    pub(super) fn start_backfill(&mut self, topic: TopicId, slot: SlotId, now: Instant) {
        let Some(track) = self.track_mut(topic) else {
            return;
        };
        if track.routed {
            if track.from.take().is_some() {
                self.start_routed(topic, slot, now);
            }
            return;
        }
        if track.inject {
            if let Some(from) = track.from.take() {
                self.start_injected(topic, slot, from, now);
            }
            return;
        }
        if track.from.is_none() || track.run.is_some() {
            return;
        }
        track.run = Some(Run::new(slot));
        self.send_backfill(slot, topic, Step::Head, backfill::head_call(), now);
    }

    pub(super) fn send_backfill(
        &mut self,
        slot: SlotId,
        topic: TopicId,
        step: Step,
        call: Call,
        now: Instant,
    ) -> u64 {
        let req = self.next_id();
        let text = self.dialect.render_upstream_call(&call, Some(req));
        let deadline = now + self.settings.request_timeout;
        let p = Pending::Backfill {
            topic,
            step,
            slot,
            deadline,
        };
        self.pending.insert(req.0, p);
        if self.dialect.backfill_over_http() {
            if let Some(s) = self.slots.get(slot.0) {
                let (generation, upstream) = (s.generation, s.failover.current());
                self.actions.push_back(super::Action::Fetch {
                    slot,
                    generation,
                    upstream,
                    body: text,
                });
            }
        } else {
            self.send(slot, text);
        }
        req.0
    }

    /// An answer to a backfill request (`Err`: an error, or no answer in time).
    pub(super) fn on_backfill_answer(
        &mut self,
        topic: TopicId,
        step: Step,
        result: Result<&str, ()>,
        now: Instant,
    ) {
        match step {
            Step::ResumeHead { waiter }
            | Step::ResumeFetch { waiter, .. }
            | Step::ResumeSFirst { waiter }
            | Step::ResumeSTx { waiter, .. } => {
                return self.on_resume_answer(waiter, topic, step, result, now);
            }
            Step::XHead | Step::XLedger { .. } | Step::XAccount { .. } => {
                return self.on_routed_answer(topic, step, result, now);
            }
            Step::SinceHead { .. } | Step::SinceLedger { .. } | Step::SinceAccount { .. } => {
                return self.on_since_answer(topic, step, result, now);
            }
            Step::SFirst | Step::STx { .. } => {
                return self.on_injected_answer(topic, step, result, now);
            }
            _ => {}
        }
        let max = self.settings.backfill_max_blocks;
        let Some(t) = self.table.get_mut(topic) else {
            return;
        };
        let key = t.key.clone();
        let Some(track) = t.data.track.as_mut() else {
            return;
        };
        let (Some(run), Some(from)) = (track.run.as_mut(), track.from) else {
            return;
        };
        run.waiting = run.waiting.saturating_sub(1);
        let slot = run.slot;
        let mut to_send = Vec::new();
        match step {
            Step::Head => match result.ok().and_then(backfill::parse_head) {
                Some(to) => {
                    run.to = Some(to);
                    // First: is the newest block delivered (at or below the node's height)
                    // still on the node's chain?
                    let newest = (track.recent.iter().rev()).find(|d| d.height <= to);
                    match newest.map(|d| d.height) {
                        Some(h) => {
                            run.waiting += 1;
                            to_send.push((Step::Check { height: h }, backfill::block_call(h)));
                        }
                        None => plan(run, &key, from, to, max, true),
                    }
                }
                None => {
                    debug!(
                        topic = topic.0,
                        "backfill: the node did not tell its height"
                    );
                    run.gaps.push((from + 1, u64::MAX));
                }
            },
            Step::Check { height } => {
                let to = run.to.unwrap_or(from);
                let mine = (track.recent.iter())
                    .find(|d| d.height == height)
                    .map(|d| d.block);
                let theirs = result.ok().and_then(backfill::block_of);
                let lower = (track.recent.iter().rev())
                    .find(|d| d.height < height)
                    .map(|d| d.height);
                match (theirs, mine) {
                    // Another block there: walk down to the newest one still the node's.
                    (Some(b), Some(m)) if b != m => {
                        run.orphaned = true;
                        match lower {
                            Some(h) => {
                                run.waiting += 1;
                                to_send.push((Step::Check { height: h }, backfill::block_call(h)));
                            }
                            None => {
                                // Deeper than remembered: retract all of it.
                                let f = height.saturating_sub(1);
                                run.fork = Some(f);
                                plan(run, &key, f, to, max, false);
                            }
                        }
                    }
                    // The same block (or the node cannot tell: assumed the same).
                    _ if run.orphaned => {
                        run.fork = Some(height);
                        plan(run, &key, height, to, max, false);
                    }
                    _ => plan(run, &key, from, to, max, true),
                }
            }
            Step::Fetch { from: lo, to } => match result.ok().and_then(backfill::items) {
                Some(items) => run.items.extend(items),
                // The height delivered last is no gap; the rest of the range is.
                None if run.refetch == Some(lo) && to > lo => run.gaps.push((lo + 1, to)),
                None if run.refetch == Some(lo) => {}
                None => run.gaps.push((lo, to)),
            },
            _ => {}
        }
        while run.waiting < IN_FLIGHT {
            let Some(next) = run.queue.pop_front() else {
                break;
            };
            run.waiting += 1;
            to_send.push(next);
        }
        for (step, call) in to_send {
            self.send_backfill(slot, topic, step, call, now);
        }
        if self.backfill_run_done(topic) {
            self.finish_backfill(topic);
        }
    }

    fn backfill_run_done(&self, topic: TopicId) -> bool {
        (self.table.get(topic))
            .and_then(|t| t.data.track.as_ref())
            .and_then(|tr| tr.run.as_ref())
            .is_some_and(|r| r.waiting == 0 && r.queue.is_empty())
    }

    /// Queue what was fetched (in order, once), the notices of what could not be, then
    /// what arrived live meanwhile (without what was fetched already); the queue goes
    /// out in bursts the topic's ring holds ([`RouteCore::drain_backfills`]).
    pub(super) fn finish_backfill(&mut self, topic: TopicId) {
        let Some(t) = self.table.get_mut(topic) else {
            return;
        };
        let Some(track) = t.data.track.as_mut() else {
            return;
        };
        let Some(mut run) = track.run.take() else {
            return;
        };
        track.from = None;
        let public = t.data.public_id.clone();
        if let Some(f) = run.fork {
            // A reorg: what was delivered above `f` is not on the chain any more. Its logs
            // go out again with `removed: true`, oldest block first (as geth's reorg sends
            // them, core/blockchain.go), before the new branch.
            let at = track.recent.iter().position(|d| d.height > f);
            let orphaned: Vec<Delivered> = match at {
                Some(i) => track.recent.drain(i..).collect(),
                None => Vec::new(),
            };
            let mut retracted = 0u64;
            for d in orphaned {
                track.recent_logs -= d.logs.len();
                for n in d.logs {
                    let Some(result) = backfill::retracted(&n.frame) else {
                        continue;
                    };
                    let Some((frame, id_range)) =
                        self.dialect.render_notification(public.as_str(), &result)
                    else {
                        continue;
                    };
                    retracted += 1;
                    track.out.push_back(Out {
                        notice: Notice {
                            frame: WireText::from(frame),
                            id_range,
                            gap: false,
                        },
                        kept_at: Some(d.height),
                        filled: false,
                    });
                }
            }
            self.metrics.reorg_retracted.fetch_add(retracted, Relaxed);
            track.last = Some(f);
            track.last_ids.clear();
        }
        run.items.sort_by_key(|i| (i.height, i.index));
        let mut seen: HashSet<u64> = HashSet::new();
        if let Some(last) = track.last {
            if run.items.iter().any(|i| i.height == last) {
                seen.extend(track.last_ids.iter().copied());
            }
        }
        if !run.gaps.is_empty() {
            // What follows does not continue what the history holds.
            t.data.history.clear();
        }
        for (from, to) in merged(run.gaps) {
            let (from, to) = (&from, &to);
            let to = (*to != u64::MAX).then_some(*to);
            if let Some((frame, id_range)) = self.dialect.render_gap(&public, Some(*from), to) {
                RouteMetrics::inc(&self.metrics.gap_notices);
                let notice = Notice {
                    frame: WireText::from(frame),
                    id_range,
                    gap: true,
                };
                track.out.push_back(Out {
                    notice,
                    kept_at: None,
                    filled: false,
                });
            }
        }
        for item in run.items {
            if let Some(h) = t.data.hedge.as_mut() {
                h.filled(item.identity, item.height); // hedged: a lane's copy is a duplicate
            }
            let behind = track.last.is_some_and(|l| item.height < l);
            if behind || !seen.insert(item.identity) {
                continue;
            }
            let Some((frame, id_range)) = self
                .dialect
                .render_notification(public.as_str(), &item.result)
            else {
                continue;
            };
            let notice = Notice {
                frame: WireText::from(frame),
                id_range,
                gap: false,
            };
            track.delivered(&item, &notice);
            let kept_at = Some(item.height);
            track.out.push_back(Out {
                notice,
                kept_at,
                filled: true,
            });
        }
        let mut dup = 0u64;
        for (notice, item, kept_at) in run.held {
            if let Some(i) = &item {
                if !seen.insert(i.identity) {
                    dup += 1;
                    continue;
                }
                track.delivered(i, &notice);
            }
            track.out.push_back(Out {
                notice,
                kept_at,
                filled: false,
            });
        }
        debug!(
            topic = topic.0,
            queued = track.out.len(),
            duplicates = dup,
            "backfill done"
        );
        if !self.draining.contains(&topic) {
            self.draining.push(topic);
        }
        self.drain_backfills();
    }

    /// Send what backfills queued, at most half a ring per topic per call (the shell's
    /// tick), so a session reading its ring keeps up instead of being closed as slow.
    pub(super) fn drain_backfills(&mut self) {
        let burst = (self.settings.client_queue_len / 2).max(1);
        self.retry_routed(self.now);
        self.drain(burst);
        self.drain_routed(burst);
    }

    fn drain(&mut self, burst: usize) {
        let cap = self.settings.history_len;
        let mut draining = std::mem::take(&mut self.draining);
        draining.retain(|&topic| {
            let Some(t) = self.table.get_mut(topic) else {
                return false;
            };
            let Some(track) = t.data.track.as_mut() else {
                return false;
            };
            let mut filled = 0;
            for _ in 0..burst {
                let Some(o) = track.out.pop_front() else {
                    break;
                };
                if let Some(h) = o.kept_at {
                    t.data.history.record(h, o.notice.clone(), cap);
                }
                filled += u64::from(o.filled);
                self.out.broadcast(&t.data.fan, o.notice);
            }
            self.metrics.backfilled.fetch_add(filled, Relaxed);
            !track.out.is_empty()
        });
        self.draining = draining;
    }
}
