//! Hedged subscriptions (`hedge = N`, issue 14 part 1): every topic is held on N upstream
//! connections at once, one per *lane*. Lane `k`'s connections start their failover
//! order at upstream `k` and skip upstreams another lane is connected to, so the lanes
//! sit on different nodes whenever there are. Each notification is identified by its
//! content (`Dialect::identity`) and goes to clients once: the first copy wins, later
//! copies are counted and dropped.
//!
//! The dedupe window ([`Window`]) is bounded: per topic (per connection class for
//! content-routed dialects) it remembers the last [`WINDOW`] identities; a copy whose
//! height is below the highest height it has forgotten is older than anything it could
//! compare against and is dropped as late. So a lane may lag the other by up to
//! [`WINDOW`] notifications of a topic and still never cause a duplicate.
//!
//! A lane that (re)joins while another lane is live may sit on a node that is ahead of
//! the live one: delivering its copies at once would put them before the live lane's
//! older events. So for [`REJOIN_HOLD`] (or until it brings a copy of something already
//! delivered: then it is level with the live lane) its new copies are held, at most
//! [`WINDOW`]; the live lane delivers those events in their order meanwhile, and whatever
//! is still held at the end (the live lane never brought it) goes out then, in order.
//!
//! Messages without an identity (XRPL `server`, `consensus`, `peer_status` streams) are
//! taken from one lane at a time: the lowest lane whose connection holds them.
//!
//! A lane that is replaced while another lane of the topic is live needs no backfill and
//! opens no gap: the other lane delivered meanwhile. Stall detection runs per lane (a
//! silent lane is replaced even while the other delivers), and ordinary calls go to the
//! connection that is connected and furthest ahead (highest height of a steady stream
//! seen recently).

use super::slots::SlotState;
use super::{Outbox, RouteCore, TopicData};
use crate::dialect::backfill::Item;
use crate::dialect::identity::Ident;
use crate::hub::table::{SlotId, TopicId};
use crate::hub::Notice;
use crate::telemetry::{RouteMetrics, HEDGE_UPSTREAM_LABELS};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// Identities remembered per topic (per connection class when content-routed).
pub const WINDOW: usize = 1024;

/// A connection whose last steady notification is older than this is not "ahead" for
/// calls while another connection's is fresh (or `stall_timeout`, if shorter).
const FRESH: Duration = Duration::from_secs(10);

/// How long a (re)joining lane's new copies are held while another lane is live.
pub const REJOIN_HOLD: Duration = Duration::from_secs(2);

/// What happens to one copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admit {
    Deliver,
    /// New, from a lane that is rejoining: held (`hedge_hold`).
    Hold,
    Drop,
}

/// What the window says about one copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Not seen: deliver it.
    First,
    /// Delivered already, first by `lane`, `lead` earlier.
    Copy { lane: usize, lead: Duration },
    /// Older than the window remembers (below a height it forgot): drop it.
    Late,
}

/// The bounded dedupe window: the last [`WINDOW`] identities, with the lane that
/// delivered each first and when.
#[derive(Debug, Default)]
pub(super) struct Window {
    order: VecDeque<(u64, Option<u64>)>,
    /// Identity → the lane that brought it first and when (`None`: fetched by the
    /// topic's backfill, no lane's).
    seen: HashMap<u64, (usize, Option<Instant>)>,
    /// The highest height forgotten so far.
    floor: Option<u64>,
}

impl Window {
    pub(super) fn check(&mut self, ident: Ident, lane: usize, now: Instant) -> Verdict {
        if let Some(v) = self.seen(ident, now) {
            return v;
        }
        self.insert(ident, lane, now);
        Verdict::First
    }

    /// A copy or late (`None`: new), without recording anything.
    fn seen(&self, ident: Ident, now: Instant) -> Option<Verdict> {
        if let Some(&(first, at)) = self.seen.get(&ident.id) {
            return Some(Verdict::Copy {
                lane: first,
                lead: at.map_or(Duration::ZERO, |at| now.saturating_duration_since(at)),
            });
        }
        match (ident.height, self.floor) {
            (Some(h), Some(floor)) if h < floor => Some(Verdict::Late),
            _ => None,
        }
    }

    fn insert(&mut self, ident: Ident, lane: usize, now: Instant) {
        self.remember(ident, lane, Some(now));
    }

    fn remember(&mut self, ident: Ident, lane: usize, at: Option<Instant>) {
        if self.order.len() == WINDOW {
            if let Some((old, height)) = self.order.pop_front() {
                self.seen.remove(&old);
                if let Some(h) = height {
                    self.floor = Some(self.floor.map_or(h, |f| f.max(h)));
                }
            }
        }
        self.order.push_back((ident.id, ident.height));
        self.seen.insert(ident.id, (lane, at));
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.order.len()
    }
}

/// A hedged topic's own state.
#[derive(Debug)]
pub(super) struct TopicHedge {
    window: Window,
    /// When each lane last brought a notification (or was (re)subscribed): a lane silent
    /// on a steady topic is stalled even while another lane delivers.
    lane_last: Vec<Instant>,
    /// Per lane: rejoining (its new copies held) until then, and what it holds.
    rejoin: Vec<Option<(Instant, VecDeque<Held>)>>,
}

/// A new copy held from a rejoining lane, ready to deliver.
#[derive(Debug)]
pub(super) struct Held {
    ident: Ident,
    notice: Notice,
    item: Option<Item>,
    kept_at: Option<u64>,
}

/// The lane of identities the backfill brought (no lane: no lead time).
const FILLED: usize = usize::MAX;

impl TopicHedge {
    /// The topic's backfill delivered `id` at `height` (its identity as
    /// `dialect::backfill` computes it, which equals [`Ident::id`]): a lane's later copy
    /// of it is a duplicate.
    pub(super) fn filled(&mut self, id: u64, height: u64) {
        let ident = Ident {
            id,
            height: Some(height),
        };
        if !self.window.seen.contains_key(&id) {
            self.window.remember(ident, FILLED, None);
        }
    }

    pub(super) fn new(lanes: usize, now: Instant) -> Option<Box<TopicHedge>> {
        (lanes > 1).then(|| {
            Box::new(TopicHedge {
                window: Window::default(),
                lane_last: vec![now; lanes],
                rejoin: (0..lanes).map(|_| None).collect(),
            })
        })
    }
}

/// The route's hedge state beside its topics.
#[derive(Debug, Default)]
pub(super) struct Hedge {
    /// Content-routed messages: one window per connection class.
    classes: HashMap<u8, Window>,
    /// Per slot: the last steady height seen on it, and when (calls go to the one ahead).
    heads: Vec<Option<(u64, Instant)>>,
    /// Lanes of topics that are rejoining (checked each tick).
    rejoining: Vec<(TopicId, usize)>,
}

impl<O: Outbox> RouteCore<O> {
    pub(super) fn hedged(&self) -> bool {
        self.table.lanes() > 1
    }

    /// An id-routed copy for `topic` arrived on `slot`: delivered, held (its lane is
    /// rejoining) or dropped. A one-shot's final notification is never held.
    pub(super) fn hedge_admit(
        &mut self,
        topic: TopicId,
        slot: SlotId,
        ident: Option<Ident>,
        is_final: bool,
        now: Instant,
    ) -> Admit {
        let upstream = self.upstream_of(slot);
        let Some((lane, steady, others_live)) = self.table.get(topic).and_then(|t| {
            let lane = t.lane_on(slot)?;
            let others = (t.lanes.iter().enumerate()).any(|(k, l)| k != lane && l.live());
            Some((lane, t.key.flags().steady, others))
        }) else {
            return Admit::Drop;
        };
        if steady {
            if let Some(h) = ident.and_then(|i| i.height) {
                self.note_head(slot, h, now);
            }
        }
        let Some(t) = self.table.get_mut(topic) else {
            return Admit::Drop;
        };
        let leader = t.lanes.iter().position(|l| l.live()) == Some(lane);
        let Some(hedge) = t.data.hedge.as_mut() else {
            return Admit::Deliver;
        };
        if let Some(last) = hedge.lane_last.get_mut(lane) {
            *last = now;
        }
        let Some(ident) = ident else {
            // No identity: only the lowest live lane's copy.
            let verdict = if leader {
                Verdict::First
            } else {
                Verdict::Late
            };
            return self.admit(verdict, lane, upstream);
        };
        let rejoining = hedge.rejoin.get(lane).is_some_and(Option::is_some);
        if let Some(verdict) = hedge.window.seen(ident, now) {
            if rejoining && matches!(verdict, Verdict::Copy { .. }) {
                // Level with the live lane: what it still holds goes out now.
                self.release_rejoin(topic, lane, now);
            }
            return self.admit(verdict, lane, upstream);
        }
        if rejoining {
            if others_live && !is_final {
                return Admit::Hold;
            }
            self.release_rejoin(topic, lane, now); // nobody else brings what it held
        }
        if let Some(h) = self
            .table
            .get_mut(topic)
            .and_then(|t| t.data.hedge.as_mut())
        {
            h.window.insert(ident, lane, now);
        }
        self.admit(Verdict::First, lane, upstream)
    }

    fn admit(&mut self, verdict: Verdict, lane: usize, upstream: usize) -> Admit {
        match self.count_verdict(verdict, lane, upstream) {
            true => Admit::Deliver,
            false => Admit::Drop,
        }
    }

    /// Hold a new copy from a rejoining lane (see the module doc).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn hedge_hold(
        &mut self,
        topic: TopicId,
        slot: SlotId,
        ident: Ident,
        notice: Notice,
        item: Option<Item>,
        kept_at: Option<u64>,
        now: Instant,
    ) {
        let Some(t) = self.table.get_mut(topic) else {
            return;
        };
        let Some(lane) = t.lane_on(slot) else {
            return;
        };
        let held = (t.data.hedge.as_mut())
            .and_then(|h| h.rejoin.get_mut(lane))
            .and_then(|r| r.as_mut());
        let full = match held {
            Some((_, held)) => {
                held.push_back(Held {
                    ident,
                    notice,
                    item,
                    kept_at,
                });
                held.len() >= WINDOW
            }
            None => false,
        };
        if full {
            self.release_rejoin(topic, lane, now);
        }
    }

    /// `topic`'s lane on `slot` was (re)subscribed: if another lane is live, it rejoins.
    pub(super) fn hedge_rejoined(&mut self, topic: TopicId, slot: SlotId, now: Instant) {
        if !self.covered(topic, slot) {
            return;
        }
        let Some(t) = self.table.get_mut(topic) else {
            return;
        };
        let Some(lane) = t.lane_on(slot) else {
            return;
        };
        if let Some(r) = (t.data.hedge.as_mut()).and_then(|h| h.rejoin.get_mut(lane)) {
            *r = Some((now + REJOIN_HOLD, VecDeque::new()));
            self.hedge.rejoining.push((topic, lane));
        }
    }

    /// The lane stops rejoining: what it holds and nobody delivered goes out, in order.
    fn release_rejoin(&mut self, topic: TopicId, lane: usize, now: Instant) {
        let upstream = (self.table.get(topic))
            .and_then(|t| t.lanes.get(lane))
            .map_or(0, |l| self.upstream_of(l.slot));
        let Some(held) = (self.table.get_mut(topic))
            .and_then(|t| t.data.hedge.as_mut())
            .and_then(|h| h.rejoin.get_mut(lane))
            .and_then(Option::take)
            .map(|(_, held)| held)
        else {
            return;
        };
        for h in held {
            let Some(hedge) = self
                .table
                .get_mut(topic)
                .and_then(|t| t.data.hedge.as_mut())
            else {
                return;
            };
            let verdict = match hedge.window.seen(h.ident, now) {
                Some(v) => v,
                None => {
                    hedge.window.insert(h.ident, lane, now);
                    Verdict::First
                }
            };
            if self.count_verdict(verdict, lane, upstream) {
                self.deliver_by_id(topic, h.notice, h.item, h.kept_at, false, now);
            }
        }
    }

    /// Each tick: lanes whose rejoin time is over, or whose other lanes are all gone,
    /// release what they hold.
    pub(super) fn hedge_tick(&mut self, now: Instant) {
        if self.hedge.rejoining.is_empty() {
            return;
        }
        let mut due = Vec::new();
        self.hedge.rejoining.retain(|&(topic, lane)| {
            let Some(t) = self.table.get(topic) else {
                return false;
            };
            let Some(Some((until, _))) = t.data.hedge.as_ref().and_then(|h| h.rejoin.get(lane))
            else {
                return false; // released already
            };
            let others = (t.lanes.iter().enumerate()).any(|(k, l)| k != lane && l.live());
            if *until <= now || !others {
                due.push((topic, lane));
                return false;
            }
            true
        });
        for (topic, lane) in due {
            self.release_rejoin(topic, lane, now);
        }
    }

    /// A content-routed message arrived on `slot`: whether its holders get it.
    pub(super) fn hedge_admit_content(&mut self, slot: SlotId, text: &str, now: Instant) -> bool {
        let upstream = self.upstream_of(slot);
        let lane = self.table.slot_lane(slot);
        let class = self.table.slot_class(slot).unwrap_or(0);
        if let Some(h) = self.dialect.height(text) {
            self.note_head(slot, h, now);
        }
        let verdict = match self.dialect.identity(text) {
            Some(ident) => (self.hedge.classes.entry(class))
                .or_default()
                .check(ident, lane, now),
            None => {
                // The lowest lane with a connected slot of this class is the one.
                let leader = (0..self.slots.len())
                    .map(SlotId)
                    .filter(|s| self.slots[s.0].state == SlotState::Connected)
                    .filter(|s| self.table.slot_class(*s).unwrap_or(0) == class)
                    .map(|s| self.table.slot_lane(s))
                    .min();
                if leader == Some(lane) {
                    Verdict::First
                } else {
                    Verdict::Late
                }
            }
        };
        self.count_verdict(verdict, lane, upstream)
    }

    /// A content-routed backfill on `slot` fetched `text`: false if a lane delivered it
    /// already (skip it); otherwise it enters the window, so a lane's later copy of it is
    /// a duplicate. Unhedged routes: always true.
    pub(super) fn hedge_filled_content(&mut self, slot: SlotId, text: &str) -> bool {
        if !self.hedged() {
            return true;
        }
        let Some(ident) = self.dialect.identity(text) else {
            return true;
        };
        let class = self.table.slot_class(slot).unwrap_or(0);
        let window = self.hedge.classes.entry(class).or_default();
        if window.seen.contains_key(&ident.id) {
            RouteMetrics::inc(&self.metrics.hedge_duplicates);
            return false;
        }
        window.remember(ident, FILLED, None);
        true
    }

    fn count_verdict(&mut self, verdict: Verdict, lane: usize, upstream: usize) -> bool {
        match verdict {
            Verdict::First => {
                let i = upstream.min(HEDGE_UPSTREAM_LABELS - 1);
                RouteMetrics::inc(&self.metrics.hedge_first[i]);
                true
            }
            Verdict::Copy { lane: first, lead } => {
                RouteMetrics::inc(&self.metrics.hedge_duplicates);
                if first != lane && first != FILLED {
                    let us = lead.as_micros() as u64;
                    self.metrics.hedge_lead_micros.fetch_add(us, Relaxed);
                }
                false
            }
            Verdict::Late => {
                RouteMetrics::inc(&self.metrics.hedge_duplicates);
                false
            }
        }
    }

    fn upstream_of(&self, slot: SlotId) -> usize {
        self.slots.get(slot.0).map_or(0, |s| s.failover.current())
    }

    fn note_head(&mut self, slot: SlotId, height: u64, now: Instant) {
        let heads = &mut self.hedge.heads;
        if heads.len() <= slot.0 {
            heads.resize(slot.0 + 1, None);
        }
        heads[slot.0] = Some((height, now));
    }

    /// A content-routed steady message (a ledger close) on `slot`: its lane is alive.
    pub(super) fn hedge_lane_seen(&mut self, topic: TopicId, slot: SlotId, now: Instant) {
        if let Some(t) = self.table.get_mut(topic) {
            if let (Some(lane), Some(h)) = (t.lane_on(slot), t.data.hedge.as_mut()) {
                if let Some(last) = h.lane_last.get_mut(lane) {
                    *last = now;
                }
            }
        }
    }

    /// When the topic's notification last arrived on `slot` (per lane when hedged).
    pub(super) fn last_notice_on(&self, data: &TopicData<O>, lane: usize) -> Instant {
        match data.hedge.as_ref().and_then(|h| h.lane_last.get(lane)) {
            Some(at) => *at,
            None => data.last_notice,
        }
    }

    /// Whether another lane of `topic` than the one on `slot` is subscribed now: then a
    /// switch of `slot` misses nothing (no backfill, no gap, the history runs on).
    pub(super) fn covered(&self, topic: TopicId, slot: SlotId) -> bool {
        self.table
            .get(topic)
            .is_some_and(|t| t.lanes.iter().any(|l| l.slot != slot && l.live()))
    }

    /// Where a hedged route sends a call of `class`: among connected slots, the one with
    /// the highest steady height, counting only slots whose last one arrived within
    /// [`FRESH`] (or `stall_timeout`, if shorter) of the newest arrival on any of them
    /// (a stuck node is not ahead); ties and slots without heights: the lowest.
    pub(super) fn ahead_slot(&self, class: u8) -> Option<SlotId> {
        let fresh = (self.settings.stall_timeout).map_or(FRESH, |s| s.min(FRESH));
        let candidates: Vec<(SlotId, Option<(u64, Instant)>)> = (0..self.slots.len())
            .map(SlotId)
            .filter(|s| {
                self.slots[s.0].state == SlotState::Connected
                    && (class == 0 || self.table.slot_class(*s) == Some(class))
            })
            .map(|s| (s, self.hedge.heads.get(s.0).copied().flatten()))
            .collect();
        let newest = candidates
            .iter()
            .filter_map(|(_, h)| h.map(|(_, at)| at))
            .max();
        let mut best: Option<(SlotId, Option<u64>)> = None;
        for (s, head) in candidates {
            let height = head
                .filter(|(_, at)| newest.is_some_and(|n| n.saturating_duration_since(*at) < fresh))
                .map(|(h, _)| h);
            match best {
                Some((_, b)) if b >= height => {}
                _ => best = Some((s, height)),
            }
        }
        best.map(|(s, _)| s)
    }

    /// The slot's connection is gone: its height no longer says anything.
    pub(super) fn hedge_slot_down(&mut self, slot: SlotId) {
        if let Some(h) = self.hedge.heads.get_mut(slot.0) {
            *h = None;
        }
    }

    /// Before connecting `slot`: if another lane is connected to the upstream it would
    /// use, move on to one no lane uses (if there is one).
    pub(super) fn avoid_other_lanes(&mut self, slot: SlotId) {
        if !self.hedged() {
            return;
        }
        let lane = self.table.slot_lane(slot);
        let taken: Vec<usize> = (0..self.slots.len())
            .filter(|&i| i != slot.0 && self.table.slot_lane(SlotId(i)) != lane)
            .filter(|&i| self.slots[i].state == SlotState::Connected)
            .map(|i| self.slots[i].failover.current())
            .collect();
        let n = self.settings.upstreams.len();
        if taken.len() >= n {
            return;
        }
        if let Some(s) = self.slots.get_mut(slot.0) {
            for _ in 0..n {
                if !taken.contains(&s.failover.current()) {
                    break;
                }
                s.failover.skip();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64, height: Option<u64>) -> Ident {
        Ident { id: n, height }
    }

    #[test]
    fn the_first_copy_wins_and_the_lead_is_measured() {
        let t0 = Instant::now();
        let mut w = Window::default();
        assert_eq!(w.check(id(1, Some(10)), 1, t0), Verdict::First);
        let later = t0 + Duration::from_millis(7);
        assert_eq!(
            w.check(id(1, Some(10)), 0, later),
            Verdict::Copy {
                lane: 1,
                lead: Duration::from_millis(7)
            }
        );
        assert_eq!(w.check(id(2, Some(11)), 0, later), Verdict::First);
    }

    #[test]
    fn the_window_forgets_the_oldest_and_drops_what_lies_below_them() {
        let t0 = Instant::now();
        let mut w = Window::default();
        // Heights 0..WINDOW+10, one identity each: the first 10 are forgotten.
        for n in 0..(WINDOW as u64 + 10) {
            assert_eq!(w.check(id(n, Some(n)), 0, t0), Verdict::First);
        }
        assert_eq!(w.len(), WINDOW, "bounded");
        // Still remembered: a copy.
        assert!(matches!(
            w.check(id(10, Some(10)), 1, t0),
            Verdict::Copy { .. }
        ));
        // Forgotten, below the highest forgotten height (9): late, dropped.
        assert_eq!(w.check(id(3, Some(3)), 1, t0), Verdict::Late);
        // At the forgotten height itself a new event still passes (a block with more
        // events than the window must not lose its own).
        assert_eq!(w.check(id(9, Some(9)), 1, t0), Verdict::First);
        // Without a height only the count bounds it: a forgotten identity is new again.
        let mut w = Window::default();
        for n in 0..(WINDOW as u64 + 1) {
            w.check(id(n, None), 0, t0);
        }
        assert!(matches!(w.check(id(1, None), 1, t0), Verdict::Copy { .. }));
        assert_eq!(w.check(id(0, None), 1, t0), Verdict::First);
    }
}
