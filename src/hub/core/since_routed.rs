//! `?since=N` on content-routed routes (XRPL, issue 14 part 3; N a ledger index). A
//! session connecting with `?since=N` gets, on every `accounts` and `ledger` subscription
//! it opens, what that subscription would have delivered after ledger N, then the live
//! stream, with no gap and no duplicate at the seam.
//!
//! One mailbox per session carries every stream in upstream order, so the seam is kept
//! per session:
//! - **Hold.** From the moment such a subscribe joins its topics until what it fetched
//!   goes out, every live message for that session is held (in arrival order, at most
//!   [`HELD_MAX`]; beyond, the fetch is cut short and the rest announced).
//! - **Fetch.** Once the subscribe is confirmed: the node's validated ledger `V`, then
//!   for each backfillable key `account_tx` over `N+1..=V` (paged) or `ledger` per index,
//!   at most `backfill_max_ledgers` (the newest); the older rest is announced by the
//!   opt-in gap notice, as is what the node did not answer.
//! - **Seam filter.** When everything is fetched: the gap notices, the fetched messages
//!   in ledger order (once per session), then the held ones — but a held or later live
//!   copy of a validated message in a ledger the fetch covered for that key is skipped,
//!   since the fetch delivered that ledger's whole content for the key. The filter is a
//!   few ranges per session (one per covered key), bounded by the keys, and dropped once
//!   a live message of a later ledger passes through a covered key, or after
//!   [`SEAM_TTL`] (rippled publishes a validated ledger's messages seconds after it is
//!   validated; the filter is not needed longer).

use super::steps::{merged, Step};
use super::{Outbox, RouteCore};
use crate::dialect::backfill::xrpl::{self as x, Kind, Message};
use crate::dialect::Call;
use crate::hub::table::{SlotId, TopicId};
use crate::hub::WireText;
use crate::telemetry::RouteMetrics;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// Live messages held for one resuming session at most.
const HELD_MAX: usize = 16_384;
/// Requests one session's resume keeps in flight at most.
const IN_FLIGHT: usize = 8;
/// How long a fetch waits for the connection's first live `ledgerClosed` (whose fee and
/// reserve fields a fetched one copies) before going out without them.
const TEMPLATE_WAIT: Duration = Duration::from_secs(10);
/// How long the seam filter outlives the fetch at most.
pub(super) const SEAM_TTL: Duration = Duration::from_secs(60);

/// One resuming session (by mailbox id).
pub(super) struct Since<M> {
    mailbox: M,
    parts: Vec<Part>,
    /// Live messages held while some part fetches: the frame, its validated ledger, and
    /// per copy (matched group) the topics it came through.
    held: Vec<(WireText, Option<u64>, Vec<Vec<TopicId>>)>,
    /// After the fetch: per key, the ledgers it covered.
    seam: Vec<(TopicId, u64, u64)>,
    seam_until: Option<Instant>,
    /// When every part was fetched (waiting for a template at most TEMPLATE_WAIT).
    fetched_at: Option<Instant>,
}

/// One subscribe's fetch.
struct Part {
    waiter: u64,
    since: u64,
    started: bool,
    topics: Vec<(TopicId, SlotId)>,
    outstanding: Vec<(u64, TopicId, SlotId, Step)>,
    queue: VecDeque<(TopicId, SlotId, Step, Call)>,
    items: Vec<Message>,
    /// `ledger` answers, rendered when the fetch goes out (with the connection's template).
    ledgers: Vec<(SlotId, String)>,
    gaps: Vec<(TopicId, u64, u64)>,
    covered: Vec<(TopicId, u64, u64)>,
}

impl Part {
    fn done(&self) -> bool {
        self.started && self.outstanding.is_empty() && self.queue.is_empty()
    }
}

impl<O: Outbox> RouteCore<O> {
    /// A subscribe with `?since=` joined its topics for `mailbox`: hold that session's
    /// live messages until its fetch is done.
    pub(super) fn since_hold(&mut self, waiter: u64, mailbox: &O::Mailbox, since: u64) {
        if !self.settings.backfill {
            return;
        }
        let id = self.out.mailbox_id(mailbox);
        let s = self.since_routed.entry(id).or_insert_with(|| Since {
            mailbox: mailbox.clone(),
            parts: Vec::new(),
            held: Vec::new(),
            seam: Vec::new(),
            seam_until: None,
            fetched_at: None,
        });
        s.parts.push(Part {
            waiter,
            since,
            started: false,
            topics: Vec::new(),
            outstanding: Vec::new(),
            queue: VecDeque::new(),
            items: Vec::new(),
            ledgers: Vec::new(),
            gaps: Vec::new(),
            covered: Vec::new(),
        });
    }

    /// The subscribe `waiter` was answered: fetch what its keys delivered after `since`.
    pub(super) fn since_start(&mut self, waiter: u64, mb: u64, topics: &[TopicId], now: Instant) {
        let mut keys = Vec::new();
        for &topic in topics {
            let Some(t) = self.table.get(topic) else {
                continue;
            };
            let slot = (t.lanes.iter())
                .find(|l| l.live() && self.table.slot_up(l.slot))
                .map(|l| l.slot);
            if let (Some(_), true, Some(slot)) = (x::kind(&t.key), t.confirmed(), slot) {
                if !keys.iter().any(|(k, _)| *k == topic) {
                    keys.push((topic, slot));
                }
            }
        }
        let Some(part) = (self.since_routed.get_mut(&mb)).and_then(|s| {
            s.parts
                .iter_mut()
                .find(|p| p.waiter == waiter && !p.started)
        }) else {
            return;
        };
        part.started = true;
        part.topics = keys.clone();
        if let Some(&(topic, slot)) = keys.first() {
            let step = Step::SinceHead { mb, waiter };
            let req = self.send_backfill(slot, topic, step, x::validated_call(), now);
            if let Some(p) = self.since_part(mb, waiter) {
                p.outstanding.push((req, topic, slot, step));
            }
        }
        self.since_pump(mb, waiter, now);
    }

    fn since_part(&mut self, mb: u64, waiter: u64) -> Option<&mut Part> {
        (self.since_routed.get_mut(&mb))?
            .parts
            .iter_mut()
            .find(|p| p.waiter == waiter)
    }

    /// An answer to a resume request (`Err`: an error, no answer in time, or lost).
    pub(super) fn on_since_answer(
        &mut self,
        topic: TopicId,
        step: Step,
        result: Result<&str, ()>,
        now: Instant,
    ) {
        let (mb, waiter) = match step {
            Step::SinceHead { mb, waiter }
            | Step::SinceLedger { mb, waiter, .. }
            | Step::SinceAccount { mb, waiter, .. } => (mb, waiter),
            _ => return,
        };
        let max = self.settings.backfill_max_ledgers;
        let class = self.table.get(topic).map_or(2, |t| t.key.class());
        let topics: Vec<(TopicId, SlotId)> = (self.since_part(mb, waiter).into_iter())
            .flat_map(|p| p.topics.clone())
            .collect();
        let kinds: HashMap<TopicId, Kind> = (topics.into_iter())
            .filter_map(|(t, _)| Some((t, x::kind(&self.table.get(t)?.key)?)))
            .collect();
        let slot_of = self.since_part(mb, waiter).and_then(|p| {
            let at = (p.outstanding.iter()).position(|o| o.1 == topic && o.3 == step)?;
            Some(p.outstanding.swap_remove(at).2)
        });
        let Some(slot) = slot_of else {
            return; // answered already (a late answer after a loss)
        };
        let template = self.routed_template(slot);
        let Some(p) = self.since_part(mb, waiter) else {
            return;
        };
        let wanted = p.since.saturating_add(1);
        match step {
            Step::SinceHead { .. } => match result.ok().and_then(x::parse_validated) {
                Some(to) if to >= wanted => {
                    for (t, slot) in p.topics.clone() {
                        let start = if to - wanted + 1 > max {
                            p.gaps.push((t, wanted, to - max));
                            to - max + 1
                        } else {
                            wanted
                        };
                        p.covered.push((t, start, to));
                        match kinds.get(&t) {
                            Some(Kind::Ledger) => {
                                for n in start..=to {
                                    let s = Step::SinceLedger { mb, waiter, n };
                                    p.queue.push_back((t, slot, s, x::ledger_call(n)));
                                }
                            }
                            Some(Kind::Account(a)) => {
                                let s = Step::SinceAccount {
                                    mb,
                                    waiter,
                                    min: start,
                                    max: to,
                                };
                                let call = x::account_tx_call(a, start, to, None);
                                p.queue.push_back((t, slot, s, call));
                            }
                            None => {}
                        }
                    }
                }
                Some(_) => {} // nothing validated after `since` yet
                None => {
                    for (t, _) in &p.topics {
                        p.gaps.push((*t, wanted, u64::MAX));
                    }
                }
            },
            Step::SinceLedger { n, .. } => {
                let read = result
                    .ok()
                    .filter(|r| x::read_ledger(r, &template).is_some());
                match read {
                    Some(r) => p.ledgers.push((slot, r.to_owned())),
                    None => p.gaps.push((topic, n, n)),
                }
            }
            Step::SinceAccount { min, max, .. } => {
                match result.ok().and_then(|r| x::read_account_tx(r, class)) {
                    Some((msgs, marker)) => {
                        p.items.extend(msgs);
                        if let (Some(m), Some(Kind::Account(a))) = (marker, kinds.get(&topic)) {
                            let call = x::account_tx_call(a, min, max, Some(&m));
                            p.queue.push_front((topic, slot, step, call));
                        }
                    }
                    None => p.gaps.push((topic, min, max)),
                }
            }
            _ => {}
        }
        self.since_pump(mb, waiter, now);
    }

    /// Send queued fetches up to the in-flight bound; deliver when every part is done.
    fn since_pump(&mut self, mb: u64, waiter: u64, now: Instant) {
        let mut to_send = Vec::new();
        if let Some(p) = self.since_part(mb, waiter) {
            while p.outstanding.len() + to_send.len() < IN_FLIGHT {
                let Some(next) = p.queue.pop_front() else {
                    break;
                };
                to_send.push(next);
            }
        }
        for (topic, slot, step, call) in to_send {
            let req = self.send_backfill(slot, topic, step, call, now);
            if let Some(p) = self.since_part(mb, waiter) {
                p.outstanding.push((req, topic, slot, step));
            }
        }
        self.since_finish(mb, now);
    }

    /// Every part fetched: gap notices, fetched messages, then the held ones, filtered.
    fn since_finish(&mut self, mb: u64, now: Instant) {
        let Some(s) = self.since_routed.get_mut(&mb) else {
            return;
        };
        if s.parts.is_empty() || !s.parts.iter().all(Part::done) {
            return;
        }
        let fetched_at = *s.fetched_at.get_or_insert(now);
        let slots: Vec<SlotId> = (s.parts.iter())
            .flat_map(|p| p.ledgers.iter().map(|(slot, _)| *slot))
            .collect();
        let untemplated =
            (slots.into_iter()).any(|slot| self.routed_template(slot) == x::Template::default());
        if untemplated && now < fetched_at + TEMPLATE_WAIT {
            return; // until the connection's first live `ledgerClosed` (held meanwhile)
        }
        let Some(s) = self.since_routed.get_mut(&mb) else {
            return;
        };
        s.fetched_at = None;
        let parts = std::mem::take(&mut s.parts);
        let held = std::mem::take(&mut s.held);
        let mailbox = s.mailbox.clone();
        let mut frames = Vec::new();
        let mut gaps: HashMap<TopicId, Vec<(u64, u64)>> = HashMap::new();
        let mut items = Vec::new();
        let mut covered = Vec::new();
        for p in parts {
            for (t, a, b) in &p.gaps {
                gaps.entry(*t).or_default().push((*a, *b));
            }
            // A key the node did not fully answer is not vouched for at the seam.
            covered.extend((p.covered.iter()).filter(|(t, a, b)| {
                !(p.gaps.iter()).any(|(g, ga, gb)| g == t && ga <= b && gb >= a)
            }));
            items.extend(p.items);
            for (slot, r) in p.ledgers {
                items.extend(x::read_ledger(&r, &self.routed_template(slot)));
            }
        }
        if self.out.wants_gaps(&mailbox) {
            for (topic, ranges) in gaps {
                let Some(t) = self.table.get(topic) else {
                    continue;
                };
                for (a, b) in merged(ranges) {
                    let to = (b != u64::MAX).then_some(b);
                    if let Some((frame, _)) =
                        self.dialect.render_gap(&t.data.public_id, Some(a), to)
                    {
                        RouteMetrics::inc(&self.metrics.gap_notices);
                        frames.push(WireText::from(frame));
                    }
                }
            }
        }
        items.sort_by(|a, b| {
            (a.ledger, a.order, &a.identity).cmp(&(b.ledger, b.order, &b.identity))
        });
        let mut seen = HashSet::new();
        let mut filled = 0;
        for m in items {
            if seen.insert(m.identity) {
                filled += 1;
                frames.push(WireText::from(m.text));
            }
        }
        self.metrics.backfilled.fetch_add(filled, Relaxed);
        for f in frames {
            self.out.push(&mailbox, f);
        }
        if let Some(s) = self.since_routed.get_mut(&mb) {
            s.seam = covered;
            s.seam_until = Some(now + SEAM_TTL);
        }
        for (frame, ledger, copies) in held {
            for topics in copies {
                if !self.since_skip(mb, &topics, ledger) {
                    self.out.push(&mailbox, frame.clone());
                }
            }
        }
        if self
            .since_routed
            .get(&mb)
            .is_some_and(|s| s.seam.is_empty())
        {
            self.since_routed.remove(&mb);
        }
    }

    /// Whether a live copy (of validated `ledger`, through `topics`) is one the fetch
    /// gave this session already; a later ledger through a covered key ends the seam.
    fn since_skip(&mut self, mb: u64, topics: &[TopicId], ledger: Option<u64>) -> bool {
        let (Some(s), Some(n)) = (self.since_routed.get_mut(&mb), ledger) else {
            return false;
        };
        let mut skip = false;
        let mut past = false;
        for (t, a, b) in &s.seam {
            if topics.contains(t) {
                skip |= *a <= n && n <= *b;
                past |= n > *b;
            }
        }
        if past && !skip && s.parts.is_empty() {
            s.seam.clear();
        }
        skip
    }

    /// Whether content-routed delivery has to look at sessions one by one.
    pub(super) fn since_active(&self) -> bool {
        !self.since_routed.is_empty()
    }

    /// Deliver (or hold) one live message's copies for session `mb`: one per matched
    /// group, each with the topics it came through.
    pub(super) fn since_deliver(
        &mut self,
        mb: u64,
        mailbox: &O::Mailbox,
        frame: &WireText,
        ledger: Option<u64>,
        copies: Vec<Vec<TopicId>>,
    ) {
        let holding = self
            .since_routed
            .get(&mb)
            .is_some_and(|s| !s.parts.is_empty());
        if holding {
            let mut cut = false;
            if let Some(s) = self.since_routed.get_mut(&mb) {
                s.held.push((frame.clone(), ledger, copies));
                cut = s.held.len() >= HELD_MAX;
            }
            if cut {
                self.since_cut(mb);
            } else if ledger.is_some() {
                self.since_finish(mb, self.now); // a template may have come
            }
            return;
        }
        for topics in copies {
            if !self.since_skip(mb, &topics, ledger) {
                self.out.push(mailbox, frame.clone());
            }
        }
        if self
            .since_routed
            .get(&mb)
            .is_some_and(|s| s.seam.is_empty())
        {
            self.since_routed.remove(&mb);
        }
    }

    /// A frame for a session not through a topic (a slot's backfill going out): held
    /// behind the session's resume if one runs.
    pub(super) fn since_push(&mut self, mailbox: &O::Mailbox, frame: WireText) {
        let mb = self.out.mailbox_id(mailbox);
        match self.since_routed.get_mut(&mb) {
            Some(s) if !s.parts.is_empty() => s.held.push((frame, None, vec![Vec::new()])),
            _ => self.out.push(mailbox, frame),
        }
    }

    /// Too much held: what is not fetched yet is announced; the rest goes out now.
    fn since_cut(&mut self, mb: u64) {
        let now = self.now;
        if let Some(s) = self.since_routed.get_mut(&mb) {
            for p in &mut s.parts {
                let wanted = p.since.saturating_add(1);
                if !p.done() {
                    for (t, _) in &p.topics {
                        p.gaps.push((*t, wanted, u64::MAX));
                    }
                }
                p.started = true;
                p.queue.clear();
                p.outstanding.clear();
            }
            // Out now, with or without a template.
            s.fetched_at = now.checked_sub(TEMPLATE_WAIT).or(s.fetched_at);
        }
        self.since_finish(mb, now);
    }

    /// On the tick: requests whose connection was lost count as unanswered; a part whose
    /// subscribe never finished is let go; seams past their time are dropped.
    pub(super) fn since_tick(&mut self, now: Instant) {
        let mut lost = Vec::new();
        for s in self.since_routed.values() {
            for p in &s.parts {
                for (req, topic, _, step) in &p.outstanding {
                    if !self.pending.contains_key(req) {
                        lost.push((*topic, *step));
                    }
                }
            }
        }
        for (topic, step) in lost {
            self.on_since_answer(topic, step, Err(()), now);
        }
        // A subscribe that failed as a whole never starts its part.
        let waiting: Vec<(u64, u64)> = (self.since_routed.iter())
            .flat_map(|(mb, s)| s.parts.iter().map(move |p| (*mb, p.waiter, p.started)))
            .filter(|(_, w, started)| !started && !self.subscribing.contains_key(w))
            .map(|(mb, w, _)| (mb, w))
            .collect();
        for (mb, w) in waiting {
            if let Some(p) = self.since_part(mb, w) {
                p.started = true;
            }
            self.since_finish(mb, now);
        }
        let fetched: Vec<u64> = (self.since_routed.iter())
            .filter(|(_, s)| s.fetched_at.is_some())
            .map(|(mb, _)| *mb)
            .collect();
        for mb in fetched {
            self.since_finish(mb, now);
        }
        self.since_routed
            .retain(|_, s| !s.parts.is_empty() || s.seam_until.is_some_and(|u| u > now));
    }
}
