//! Backfill for content-routed streams (XRPL, issue 14 part 2): rippled publishes each
//! validated ledger as its `ledgerClosed`, then its transactions in ledger order, on every
//! connection. So per slot the core keeps the newest ledger its connection delivered
//! anything of (and what it delivered of that ledger). When the connection is replaced,
//! the topics resubscribed there that can be backfilled (`accounts`, the `ledger` stream)
//! ask the new connection for the node's validated ledger, then fetch from the ledger
//! delivered last (again, deduplicated) up to it, at most `backfill_max_ledgers`
//! (`account_tx` per account, paged; `ledger` per index). Meanwhile every message of that
//! connection is held. Then, paced per tick like the id-routed backfill: the gap notices
//! of what could not be fetched (to sessions that asked), the fetched messages in ledger
//! order, each to the mailboxes of the sessions holding a key it belongs to, once per
//! session, then the held messages, without the copies a session already got.

use super::backfill::{merged, Step, IN_FLIGHT};
use super::{Outbox, RouteCore};
use crate::dialect::backfill::xrpl::{self as x, Kind, Message, Template};
use crate::dialect::{Group, UpstreamSubId};
use crate::hub::table::{SlotId, TopicId};
use crate::hub::{Utf8Bytes, WireText};
use crate::telemetry::RouteMetrics;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// Messages a slot holds during its backfill (or queues behind it) at most; beyond, the
/// backfill is cut short (what it did not fetch is announced) and the queue goes out.
const HELD_MAX: usize = 16_384;
/// A request the node did not answer usefully (an error, garbage, no answer in time) is
/// asked again this many times, after this long times the attempt, before its range is
/// announced as missed.
const RETRIES: u8 = 3;
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// What one slot's connection delivered of the ledger sequence (`M`: a mailbox).
pub(super) struct Ledgers<M> {
    /// The connection attempt this is about.
    generation: u64,
    /// The newest validated ledger the connection delivered anything of.
    seen: Option<u64>,
    /// The identities delivered of ledger `seen`.
    seen_ids: HashSet<String>,
    /// What the connection before delivered last: fetched from there after a switch.
    from: Option<(u64, HashSet<String>)>,
    /// The last live `ledgerClosed`, for rendering fetched ones.
    template: Template,
    run: Option<Run<M>>,
    /// What a finished run queued, going out a burst per tick.
    out: VecDeque<Out<M>>,
    /// While `out` drains: the sessions each fetched message went to (held live copies
    /// skip them).
    got: HashMap<String, HashSet<u64>>,
}

impl<M> Default for Ledgers<M> {
    fn default() -> Self {
        Ledgers {
            generation: 0,
            seen: None,
            seen_ids: HashSet::new(),
            from: None,
            template: Template::default(),
            run: None,
            out: VecDeque::new(),
            got: HashMap::new(),
        }
    }
}

struct Run<M> {
    /// The newest ledger delivered before the switch (fetched again), and its identities.
    from: u64,
    from_ids: HashSet<String>,
    /// The node's validated ledger, once told.
    to: Option<u64>,
    head_asked: bool,
    topics: Vec<TopicId>,
    waiting: usize,
    queue: VecDeque<(TopicId, Step, crate::dialect::Call)>,
    items: Vec<(TopicId, Message)>,
    /// Per topic, ranges not fetched (beyond the cap, or unanswered).
    gaps: Vec<(TopicId, u64, u64)>,
    held: Vec<Held<M>>,
    /// Requests to ask again, when.
    retry: Vec<(Instant, TopicId, Step)>,
    attempts: HashMap<(TopicId, Step), u8>,
}

/// A live message held during a run, with the sessions it goes to (resolved when it
/// arrived: the connection's routes may be gone when it goes out) and its copies each.
struct Held<M> {
    frame: WireText,
    to: Vec<(u64, M, u32)>,
    identity: Option<String>,
}

enum Out<M> {
    /// A fetched message (or a gap notice) for these sessions.
    To(Vec<M>, WireText),
    Live(Held<M>),
}

impl<O: Outbox> RouteCore<O> {
    fn routed_fill(&self) -> bool {
        self.settings.backfill
    }

    /// The slot's state, rolled over if its connection was replaced: what the previous
    /// one delivered last becomes where a backfill starts.
    /// A run the connection was lost under is cut short (what it fetched goes out, the
    /// rest is announced).
    fn ledgers(&mut self, slot: SlotId) -> &mut Ledgers<O::Mailbox> {
        let generation = self.slots.get(slot.0).map_or(0, |s| s.generation);
        let stale = (self.ledgers.get(&slot)).is_some_and(|l| l.generation != generation);
        if stale && self.ledgers.get(&slot).is_some_and(|l| l.run.is_some()) {
            self.cut_routed(slot);
        }
        let l = self.ledgers.entry(slot).or_default();
        if l.generation != generation {
            l.generation = generation;
            if let Some(seen) = l.seen.take() {
                l.from = Some((seen, std::mem::take(&mut l.seen_ids)));
            }
        }
        l
    }

    /// A content-routed message arrived on `slot`: note its ledger; hold it while the
    /// slot's backfill runs or goes out (true: held, not to be delivered now).
    pub(super) fn observe_routed(
        &mut self,
        slot: SlotId,
        text: &Utf8Bytes,
        targets: &[(UpstreamSubId, Group)],
        identity: Option<&str>,
    ) -> bool {
        if !self.routed_fill() {
            return false;
        }
        let closed = self.dialect.height(text);
        // Only what reaches a topic of this connection counts as delivered by it.
        let routed = (targets.iter()).any(|(up, _)| !self.table.route(slot, up).is_empty());
        let holding =
            (self.ledgers.get(&slot)).is_some_and(|l| l.run.is_some() || !l.out.is_empty());
        let to = if holding {
            self.mailboxes(slot, targets)
        } else {
            Vec::new()
        };
        let l = self.ledgers(slot);
        // A validated transaction's identity is "hash/true/ledger".
        let (ledger, id) = match (closed, identity) {
            (Some(n), _) => {
                if let Some(t) = x::template(text) {
                    l.template = t;
                }
                (Some(n), Some(x::ledger_identity(n)))
            }
            (None, Some(id)) => {
                let mut parts = id.rsplitn(3, '/');
                let ledger = parts.next().and_then(|n| n.parse::<u64>().ok());
                let validated = parts.next() == Some("true");
                (ledger.filter(|_| validated), Some(id.to_owned()))
            }
            _ => (None, None),
        };
        if let (Some(n), Some(id), true) = (ledger, &id, routed) {
            match l.seen {
                Some(s) if s > n => {}
                Some(s) if s == n => {
                    l.seen_ids.insert(id.clone());
                }
                _ => {
                    l.seen = Some(n);
                    l.seen_ids.clear();
                    l.seen_ids.insert(id.clone());
                }
            }
        }
        if l.run.is_none() && l.out.is_empty() {
            return false; // nothing held: delivered now
        }
        let held = Held {
            frame: WireText::from(text.clone()),
            to,
            identity: id,
        };
        let count = match (&mut l.run, l.out.is_empty()) {
            (Some(run), _) => {
                run.held.push(held);
                run.held.len() + l.out.len()
            }
            (None, false) => {
                l.out.push_back(Out::Live(held));
                l.out.len()
            }
            (None, true) => return false, // (not reached: checked above)
        };
        RouteMetrics::inc(&self.metrics.notifications_in);
        if count >= HELD_MAX {
            self.cut_routed(slot);
            self.drain_routed(usize::MAX);
        }
        true
    }

    /// A backfillable content-routed topic was resubscribed on `slot` after a switch.
    pub(super) fn start_routed(&mut self, topic: TopicId, slot: SlotId, now: Instant) {
        let Some(key) = self.table.get(topic).map(|t| t.key.clone()) else {
            return;
        };
        if x::kind(&key).is_none() {
            return;
        }
        let l = self.ledgers(slot);
        let Some((from, ids)) = l.from.clone() else {
            return; // the connection before delivered nothing validated: nothing to continue
        };
        let run = l.run.get_or_insert_with(|| Run {
            from,
            from_ids: ids,
            to: None,
            head_asked: false,
            topics: Vec::new(),
            waiting: 0,
            queue: VecDeque::new(),
            items: Vec::new(),
            gaps: Vec::new(),
            held: Vec::new(),
            retry: Vec::new(),
            attempts: HashMap::new(),
        });
        if run.topics.contains(&topic) {
            return;
        }
        run.topics.push(topic);
        match run.to {
            Some(to) => self.plan_routed(slot, topic, to),
            None if !run.head_asked => {
                run.head_asked = true;
                run.waiting += 1;
                self.send_backfill(slot, topic, Step::XHead, x::validated_call(), now);
            }
            None => {}
        }
        self.pump_routed(slot, now);
    }

    /// Queue `topic`'s fetches up to ledger `to`.
    fn plan_routed(&mut self, slot: SlotId, topic: TopicId, to: u64) {
        let max = self.settings.backfill_max_ledgers;
        let Some(kind) = self.table.get(topic).and_then(|t| x::kind(&t.key)) else {
            return;
        };
        let Some(run) = self.ledgers.get_mut(&slot).and_then(|l| l.run.as_mut()) else {
            return;
        };
        let from = run.from;
        if to < from {
            return;
        }
        let start = if to - from > max {
            run.gaps.push((topic, from + 1, to - max));
            to - max + 1
        } else {
            from
        };
        match kind {
            Kind::Ledger => {
                for n in start..=to {
                    run.queue
                        .push_back((topic, Step::XLedger { n }, x::ledger_call(n)));
                }
            }
            Kind::Account(a) => {
                let step = Step::XAccount {
                    min: start,
                    max: to,
                };
                run.queue
                    .push_back((topic, step, x::account_tx_call(&a, start, to, None)));
            }
        }
    }

    /// Send queued fetches up to the in-flight bound; finish when all are answered.
    fn pump_routed(&mut self, slot: SlotId, now: Instant) {
        let mut to_send = Vec::new();
        let Some(run) = self.ledgers.get_mut(&slot).and_then(|l| l.run.as_mut()) else {
            return;
        };
        while run.waiting < IN_FLIGHT {
            let Some(next) = run.queue.pop_front() else {
                break;
            };
            run.waiting += 1;
            to_send.push(next);
        }
        let done =
            run.waiting == 0 && run.queue.is_empty() && run.retry.is_empty() && run.head_asked;
        for (topic, step, call) in to_send {
            self.send_backfill(slot, topic, step, call, now);
        }
        if done {
            self.finish_routed(slot);
        }
    }

    /// An answer to a content-routed backfill request.
    pub(super) fn on_routed_answer(
        &mut self,
        topic: TopicId,
        step: Step,
        result: Result<&str, ()>,
        now: Instant,
    ) {
        // The slot whose run asked (the topic may have gone meanwhile).
        let Some(slot) = (self.ledgers.iter())
            .find(|(_, l)| l.run.as_ref().is_some_and(|r| r.topics.contains(&topic)))
            .map(|(s, _)| *s)
        else {
            return;
        };
        let class = self.table.get(topic).map_or(2, |t| t.key.class());
        let Some(l) = self.ledgers.get_mut(&slot) else {
            return;
        };
        let template = l.template.clone();
        let Some(run) = l.run.as_mut() else {
            return;
        };
        run.waiting = run.waiting.saturating_sub(1);
        let from = run.from;
        let failed = match step {
            Step::XHead => result.ok().and_then(x::parse_validated).is_none(),
            Step::XLedger { .. } => result
                .ok()
                .and_then(|r| x::read_ledger(r, &template))
                .is_none(),
            Step::XAccount { .. } => result
                .ok()
                .and_then(|r| x::read_account_tx(r, class))
                .is_none(),
            _ => false,
        };
        if failed {
            let n = run.attempts.entry((topic, step)).or_insert(0);
            *n += 1;
            if *n <= RETRIES {
                run.retry
                    .push((now + RETRY_AFTER * u32::from(*n), topic, step));
                return self.pump_routed(slot, now);
            }
        }
        match step {
            Step::XHead => match result.ok().and_then(x::parse_validated) {
                Some(to) => {
                    run.to = Some(to);
                    for t in run.topics.clone() {
                        self.plan_routed(slot, t, to);
                    }
                }
                None => {
                    for t in &run.topics {
                        run.gaps.push((*t, from + 1, u64::MAX));
                    }
                }
            },
            Step::XLedger { n } => match result.ok().and_then(|r| x::read_ledger(r, &template)) {
                Some(m) => run.items.push((topic, m)),
                None if n == from => {}
                None => run.gaps.push((topic, n, n)),
            },
            Step::XAccount { min, max } => {
                match result.ok().and_then(|r| x::read_account_tx(r, class)) {
                    Some((msgs, marker)) => {
                        run.items.extend(msgs.into_iter().map(|m| (topic, m)));
                        let account = (self.table.get(topic)).and_then(|t| match x::kind(&t.key) {
                            Some(Kind::Account(a)) => Some(a),
                            _ => None,
                        });
                        if let (Some(m), Some(a)) = (marker, account) {
                            let call = x::account_tx_call(&a, min, max, Some(&m));
                            if let Some(run) =
                                self.ledgers.get_mut(&slot).and_then(|l| l.run.as_mut())
                            {
                                run.queue.push_front((topic, step, call));
                            }
                        }
                    }
                    None => run.gaps.push((topic, min.max(from + 1), max)),
                }
            }
            _ => {}
        }
        self.pump_routed(slot, now);
    }

    /// Ask again what is due to be asked again (on the tick).
    pub(super) fn retry_routed(&mut self, now: Instant) {
        let slots: Vec<SlotId> = (self.ledgers.iter())
            .filter(|(_, l)| {
                l.run
                    .as_ref()
                    .is_some_and(|r| r.retry.iter().any(|d| d.0 <= now))
            })
            .map(|(s, _)| *s)
            .collect();
        for slot in slots {
            let due: Vec<(TopicId, Step)> =
                match self.ledgers.get_mut(&slot).and_then(|l| l.run.as_mut()) {
                    Some(run) => {
                        let (due, later) = std::mem::take(&mut run.retry)
                            .into_iter()
                            .partition(|d| d.0 <= now);
                        run.retry = later;
                        due.into_iter().map(|(_, t, s)| (t, s)).collect::<Vec<_>>()
                    }
                    None => continue,
                };
            for (topic, step) in due {
                let account = (self.table.get(topic)).and_then(|t| match x::kind(&t.key) {
                    Some(Kind::Account(a)) => Some(a),
                    _ => None,
                });
                let call = match step {
                    Step::XHead => Some(x::validated_call()),
                    Step::XLedger { n } => Some(x::ledger_call(n)),
                    // From the range's start again: pages fetched twice are deduplicated.
                    Step::XAccount { min, max } => {
                        account.map(|a| x::account_tx_call(&a, min, max, None))
                    }
                    _ => None,
                };
                if let (Some(call), Some(run)) = (
                    call,
                    self.ledgers.get_mut(&slot).and_then(|l| l.run.as_mut()),
                ) {
                    run.queue.push_front((topic, step, call));
                }
            }
            self.pump_routed(slot, now);
        }
    }

    /// Too much held: end the run with what it fetched; what it did not is announced.
    fn cut_routed(&mut self, slot: SlotId) {
        if let Some(run) = self.ledgers.get_mut(&slot).and_then(|l| l.run.as_mut()) {
            let retrying = !std::mem::take(&mut run.retry).is_empty();
            if run.waiting > 0 || !run.queue.is_empty() || retrying {
                for t in run.topics.clone() {
                    run.gaps.push((t, run.from + 1, run.to.unwrap_or(u64::MAX)));
                }
            }
            run.queue.clear();
            run.waiting = 0;
        }
        self.finish_routed(slot);
    }

    /// Queue the run's gap notices, fetched messages and held ones for delivery.
    fn finish_routed(&mut self, slot: SlotId) {
        let Some(mut run) = self.ledgers.get_mut(&slot).and_then(|l| l.run.take()) else {
            return;
        };
        let mut out = VecDeque::new();
        // Gap notices, per topic, to the sessions that asked (once per session).
        let mut by_topic: HashMap<TopicId, Vec<(u64, u64)>> = HashMap::new();
        for (t, a, b) in run.gaps {
            by_topic.entry(t).or_default().push((a, b));
        }
        let mut told: HashSet<(u64, u64, u64)> = HashSet::new();
        for (topic, ranges) in by_topic {
            let Some(t) = self.table.get(topic) else {
                continue;
            };
            for (a, b) in merged(ranges) {
                let to = (b != u64::MAX).then_some(b);
                let Some((frame, _)) = self.dialect.render_gap(&t.data.public_id, Some(a), to)
                else {
                    continue;
                };
                let to_mbs: Vec<O::Mailbox> = (t.data.subscribers.values())
                    .filter(|mb| self.out.wants_gaps(mb))
                    .filter(|mb| told.insert((self.out.mailbox_id(mb), a, b)))
                    .cloned()
                    .collect();
                if !to_mbs.is_empty() {
                    RouteMetrics::inc(&self.metrics.gap_notices);
                    out.push_back(Out::To(to_mbs, WireText::from(frame)));
                }
            }
        }
        // Fetched messages in ledger order, once per session; what the connection before
        // delivered of ledger `from` is skipped.
        run.items.sort_by(|a, b| {
            (a.1.ledger, a.1.order, &a.1.identity).cmp(&(b.1.ledger, b.1.order, &b.1.identity))
        });
        let mut got: HashMap<String, HashSet<u64>> = HashMap::new();
        for (topic, m) in run.items {
            if m.ledger < run.from || (m.ledger == run.from && run.from_ids.contains(&m.identity)) {
                continue;
            }
            if !got.contains_key(&m.identity) && !self.hedge_filled_content(slot, &m.text) {
                continue; // hedged: a lane delivered it while this one was away
            }
            let Some(t) = self.table.get(topic) else {
                continue;
            };
            let seen = got.entry(m.identity.clone()).or_default();
            let first = seen.is_empty();
            let mbs: Vec<O::Mailbox> = (t.data.subscribers.values())
                .filter(|mb| seen.insert(self.out.mailbox_id(mb)))
                .cloned()
                .collect();
            if !mbs.is_empty() {
                if first {
                    RouteMetrics::inc(&self.metrics.backfilled);
                }
                out.push_back(Out::To(mbs, WireText::from(m.text)));
            }
        }
        // Then the held live ones, without the copies a session got from the fetch.
        out.extend(run.held.into_iter().map(Out::Live));
        if let Some(l) = self.ledgers.get_mut(&slot) {
            // Behind what an earlier run (cut by a switch) still has to send.
            l.out.extend(out);
            for (id, mbs) in got {
                l.got.entry(id).or_default().extend(mbs);
            }
        }
        self.drain_routed((self.settings.client_queue_len / 2).max(1));
    }

    /// Send what content-routed backfills queued, at most `burst` messages per slot.
    pub(super) fn drain_routed(&mut self, burst: usize) {
        let slots: Vec<SlotId> = (self.ledgers.iter())
            .filter(|(_, l)| !l.out.is_empty())
            .map(|(s, _)| *s)
            .collect();
        for slot in slots {
            for _ in 0..burst {
                let Some(o) = self.ledgers.get_mut(&slot).and_then(|l| l.out.pop_front()) else {
                    break;
                };
                match o {
                    Out::To(mbs, frame) => {
                        for mb in &mbs {
                            self.since_push(mb, frame.clone());
                        }
                    }
                    Out::Live(h) => {
                        let skip = (h.identity.as_ref())
                            .and_then(|id| self.ledgers.get(&slot)?.got.get(id))
                            .cloned()
                            .unwrap_or_default();
                        for (id, mb, copies) in &h.to {
                            if !skip.contains(id) {
                                for _ in 0..*copies {
                                    self.since_push(mb, h.frame.clone());
                                }
                            }
                        }
                    }
                }
            }
            if let Some(l) = self.ledgers.get_mut(&slot).filter(|l| l.out.is_empty()) {
                l.got.clear();
            }
        }
    }

    /// The `ledgerClosed` template of `slot`'s connection (for rendering fetched ledgers).
    pub(super) fn routed_template(&self, slot: SlotId) -> Template {
        (self.ledgers.get(&slot)).map_or_else(Template::default, |l| l.template.clone())
    }

    /// The sessions a message goes to, with its copies each (as
    /// [`RouteCore::deliver_routed`] counts them: once per matched group).
    fn mailboxes(
        &self,
        slot: SlotId,
        targets: &[(UpstreamSubId, Group)],
    ) -> Vec<(u64, O::Mailbox, u32)> {
        let mut per: HashMap<u64, (TopicId, u8)> = HashMap::new();
        for (up, group) in targets {
            let bit = 1u8 << (group.0 & 7);
            for &id in self.table.route(slot, up) {
                if let Some(t) = self.table.get(id) {
                    for &mb in t.data.subscribers.keys() {
                        per.entry(mb).or_insert((id, 0)).1 |= bit;
                    }
                }
            }
        }
        let mut out: Vec<(u64, O::Mailbox, u32)> = (per.into_iter())
            .filter_map(|(mb, (topic, groups))| {
                let m = self.table.get(topic)?.data.subscribers.get(&mb)?.clone();
                Some((mb, m, groups.count_ones()))
            })
            .collect();
        out.sort_by_key(|(id, _, _)| *id);
        out
    }
}
