//! The sans-IO topic table: dedup, refcounts, linger, resubscribe. Events in, actions out,
//! time passed in as an argument. The route core (`super::core`) is its only owner.
//!
//! A topic is one deduplicated upstream subscription. Its lifecycle:
//! created (waiters queued, subscribe sent when its slot is up) → confirmed (upstream id
//! known, clients told) → [slot down: upstream id forgotten, resubscribed on slot up] →
//! idle (refcount 0) → removed after the linger, with an upstream unsubscribe.

use crate::dialect::{SubscriptionKey, UpstreamSubId};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Identity of one topic for its whole life (never reused, unlike keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicId(pub u64);

/// Index of one upstream connection of a route's pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotId(pub usize);

#[derive(Debug, Clone)]
pub struct TableConfig {
    /// How long an unused topic stays subscribed upstream, for a quick re-join.
    pub linger: Duration,
    /// Upstream connections a route may open.
    pub max_slots: usize,
    /// Topics per upstream connection before another one is opened (0 = no cap).
    pub topics_per_slot: usize,
    /// How long a new topic may wait for its first confirmation.
    pub subscribe_timeout: Duration,
    /// Hedge lanes: each topic is held once per lane, on a slot of that lane (1: none).
    pub lanes: usize,
}

/// A topic's subscription on one hedge lane: its slot and upstream id there.
#[derive(Debug, Clone)]
pub struct Lane {
    pub slot: SlotId,
    upstream: Option<UpstreamSubId>,
    in_flight: bool,
}

impl Lane {
    /// Whether the topic is subscribed (confirmed) on this lane's connection now.
    pub fn live(&self) -> bool {
        self.upstream.is_some()
    }
}

#[derive(Debug)]
pub struct Topic<W, T> {
    pub key: SubscriptionKey,
    /// One per hedge lane (lane `k` at index `k`).
    pub lanes: Vec<Lane>,
    refs: usize,
    confirmed: bool,
    idle_since: Option<Instant>,
    created: Instant,
    waiters: Vec<W>,
    /// Owner-defined data (the route core keeps the fan-out, public id and timers here).
    pub data: T,
}

impl<W, T> Topic<W, T> {
    pub fn refs(&self) -> usize {
        self.refs
    }
    pub fn confirmed(&self) -> bool {
        self.confirmed
    }
    /// The upstream id on the first lane that has one.
    pub fn upstream(&self) -> Option<&UpstreamSubId> {
        self.lanes.iter().find_map(|l| l.upstream.as_ref())
    }
    /// The slot of lane 0 (the only one without hedging).
    pub fn slot(&self) -> SlotId {
        self.lanes.first().map_or(SlotId(0), |l| l.slot)
    }
    /// The lane whose slot is `slot`.
    pub fn lane_on(&self, slot: SlotId) -> Option<usize> {
        self.lanes.iter().position(|l| l.slot == slot)
    }
    fn in_flight(&self) -> bool {
        self.lanes.iter().any(|l| l.in_flight)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Send a subscribe for this topic on its slot.
    Subscribe { topic: TopicId, slot: SlotId },
    /// Open this (new) upstream connection.
    OpenSlot(SlotId),
}

/// Result of a join.
#[derive(Debug)]
pub enum Join<W> {
    /// The topic is confirmed: answer the waiter now.
    Ready(TopicId, W),
    /// The waiter is queued until the topic is confirmed or fails (an action per lane
    /// that needs one).
    Queued(TopicId, Vec<Action>),
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("every upstream connection of this route holds its maximum of {0} topics")]
    Full(usize),
    #[error("all {0} upstream connections of this route serve other API versions")]
    NoClassSlot(usize),
}

/// Outcome of a subscribe confirmation.
#[derive(Debug)]
pub enum Confirmed<W> {
    /// Tell these waiters (may be empty, e.g. after a resubscribe).
    Waiters(Vec<W>),
    /// The topic is gone or was not waiting: the upstream id must be unsubscribed.
    Stale,
}

/// Outcome of a failed subscribe.
#[derive(Debug)]
pub enum Failed<W, T> {
    /// A new topic failed: reject its waiters; the topic is removed.
    Rejected(Vec<W>, T),
    /// A confirmed topic failed to resubscribe: it ends for its clients.
    Ended(T),
    /// Unknown topic.
    Unknown,
}

/// What a timer tick produced.
#[derive(Debug)]
pub struct Tick<W, T> {
    /// Upstream subscriptions nobody needs any more.
    pub unsubscribe: Vec<(SlotId, SubscriptionKey, UpstreamSubId)>,
    /// Waiters of topics that never got confirmed in time.
    pub expired: Vec<W>,
    /// Data of removed topics (dropping it ends their fan-out).
    pub removed: Vec<T>,
}

#[derive(Debug, Default, Clone)]
struct SlotInfo {
    up: bool,
    topics: usize,
    /// The connection class this slot serves; `None` until its first topic claims it.
    class: Option<u8>,
    /// The hedge lane this slot belongs to.
    lane: usize,
}

#[derive(Debug)]
pub struct TopicTable<W, T> {
    cfg: TableConfig,
    next_id: u64,
    topics: HashMap<TopicId, Topic<W, T>>,
    by_key: HashMap<SubscriptionKey, TopicId>,
    by_upstream: HashMap<(SlotId, UpstreamSubId), Vec<TopicId>>,
    slots: Vec<SlotInfo>,
}

impl<W, T> TopicTable<W, T> {
    pub fn new(cfg: TableConfig) -> Self {
        // Slot k < lanes is lane k's first connection.
        let slots = (0..cfg.lanes.max(1))
            .map(|lane| SlotInfo {
                lane,
                ..SlotInfo::default()
            })
            .collect();
        TopicTable {
            slots,
            cfg,
            next_id: 1,
            topics: HashMap::new(),
            by_key: HashMap::new(),
            by_upstream: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.topics.len()
    }
    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }
    pub fn get(&self, id: TopicId) -> Option<&Topic<W, T>> {
        self.topics.get(&id)
    }
    pub fn get_mut(&mut self, id: TopicId) -> Option<&mut Topic<W, T>> {
        self.topics.get_mut(&id)
    }
    /// Every topic assigned to `slot`.
    pub fn on_slot(&self, slot: SlotId) -> impl Iterator<Item = (TopicId, &Topic<W, T>)> {
        self.topics
            .iter()
            .filter(move |(_, t)| t.lanes.iter().any(|l| l.slot == slot))
            .map(|(id, t)| (*id, t))
    }

    /// The data of the topic with `key`, if any.
    pub fn by_key_data(&self, key: &SubscriptionKey) -> Option<&T> {
        self.by_key
            .get(key)
            .and_then(|id| self.topics.get(id))
            .map(|t| &t.data)
    }
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }
    pub fn slot_topics(&self, slot: SlotId) -> usize {
        self.slots.get(slot.0).map_or(0, |s| s.topics)
    }
    /// Confirmed topics that currently have an upstream subscription.
    pub fn active_upstream(
        &self,
    ) -> impl Iterator<Item = (SlotId, &SubscriptionKey, &UpstreamSubId)> {
        self.topics.values().flat_map(|t| {
            (t.lanes.iter()).filter_map(move |l| l.upstream.as_ref().map(|u| (l.slot, &t.key, u)))
        })
    }

    /// Hedge lanes of the table.
    pub fn lanes(&self) -> usize {
        self.cfg.lanes.max(1)
    }
    /// The hedge lane `slot` belongs to.
    pub fn slot_lane(&self, slot: SlotId) -> usize {
        self.slots.get(slot.0).map_or(0, |s| s.lane)
    }
    /// The connection class `slot` serves (`None` while unclaimed).
    pub fn slot_class(&self, slot: SlotId) -> Option<u8> {
        self.slots.get(slot.0).and_then(|s| s.class)
    }

    fn push_slot(&mut self, class: u8, lane: usize) -> Option<(SlotId, Option<Action>)> {
        let of_lane = self.slots.iter().filter(|s| s.lane == lane).count();
        if of_lane >= self.cfg.max_slots.max(1) {
            return None;
        }
        self.slots.push(SlotInfo {
            class: Some(class),
            lane,
            ..SlotInfo::default()
        });
        let slot = SlotId(self.slots.len() - 1);
        Some((slot, Some(Action::OpenSlot(slot))))
    }

    /// Class 0 keys share slots up to the per-slot cap. A key of another class (an XRPL
    /// API version) lives on the one slot of its class, uncapped: content-routed pushes
    /// must arrive once, so a class is never spread over several connections.
    /// Per hedge lane, among that lane's slots.
    fn pick_slot(
        &mut self,
        class: u8,
        lane: usize,
    ) -> Result<(SlotId, Option<Action>), TableError> {
        let fits = |s: &SlotInfo| s.lane == lane && s.class.is_none_or(|c| c == class);
        if class != 0 {
            let found = (self.slots.iter())
                .position(|s| s.lane == lane && s.class == Some(class))
                .or_else(|| {
                    self.slots
                        .iter()
                        .position(|s| s.lane == lane && s.class.is_none())
                });
            if let Some(i) = found {
                self.slots[i].class = Some(class);
                return Ok((SlotId(i), None));
            }
            return self
                .push_slot(class, lane)
                .ok_or(TableError::NoClassSlot(self.slots.len()));
        }
        let cap = self.cfg.topics_per_slot;
        let found = if cap == 0 {
            self.slots.iter().position(fits)
        } else {
            self.slots.iter().position(|s| fits(s) && s.topics < cap)
        };
        if let Some(i) = found {
            self.slots[i].class = Some(0);
            return Ok((SlotId(i), None));
        }
        self.push_slot(0, lane).ok_or(TableError::Full(cap))
    }

    /// A client wants `key`. `make` builds the topic data for a new topic.
    pub fn subscribe(
        &mut self,
        key: SubscriptionKey,
        waiter: W,
        now: Instant,
        make: impl FnOnce() -> T,
    ) -> Result<Join<W>, (TableError, W)> {
        if let Some(&id) = self.by_key.get(&key) {
            if let Some(t) = self.topics.get_mut(&id) {
                t.refs += 1;
                t.idle_since = None;
                if t.confirmed {
                    return Ok(Join::Ready(id, waiter));
                }
                t.waiters.push(waiter);
                return Ok(Join::Queued(id, Vec::new()));
            }
        }
        let mut picked = Vec::with_capacity(self.lanes());
        for lane in 0..self.lanes() {
            match self.pick_slot(key.class(), lane) {
                Ok(x) => picked.push(x),
                Err(e) => return Err((e, waiter)),
            }
        }
        let id = TopicId(self.next_id);
        self.next_id += 1;
        let mut lanes = Vec::with_capacity(picked.len());
        let mut actions = Vec::new();
        for (slot, open) in picked {
            let up = self.slots[slot.0].up;
            self.slots[slot.0].topics += 1;
            lanes.push(Lane {
                slot,
                upstream: None,
                in_flight: up,
            });
            if up {
                actions.push(Action::Subscribe { topic: id, slot });
            } else if let Some(open) = open {
                actions.push(open);
            }
        }
        self.topics.insert(
            id,
            Topic {
                key: key.clone(),
                lanes,
                refs: 1,
                confirmed: false,
                idle_since: None,
                created: now,
                waiters: vec![waiter],
                data: make(),
            },
        );
        self.by_key.insert(key, id);
        Ok(Join::Queued(id, actions))
    }

    /// A client subscription handle was dropped.
    pub fn release(&mut self, id: TopicId, now: Instant) {
        if let Some(t) = self.topics.get_mut(&id) {
            t.refs = t.refs.saturating_sub(1);
            if t.refs == 0 {
                t.idle_since = Some(now);
            }
        }
    }

    /// The upstream confirmed a subscribe for `id` with `up` (lane 0's slot).
    #[cfg(test)]
    pub fn on_subscribed(&mut self, id: TopicId, up: UpstreamSubId) -> Confirmed<W> {
        let slot = self.topics.get(&id).map_or(SlotId(0), |t| t.slot());
        self.on_subscribed_on(id, slot, up)
    }

    /// The upstream confirmed a subscribe for `id` on `slot` with `up`. The first lane
    /// confirmed answers the waiters.
    pub fn on_subscribed_on(
        &mut self,
        id: TopicId,
        slot: SlotId,
        up: UpstreamSubId,
    ) -> Confirmed<W> {
        let Some(t) = self.topics.get_mut(&id) else {
            return Confirmed::Stale;
        };
        let Some(lane) = t.lanes.iter_mut().find(|l| l.slot == slot && l.in_flight) else {
            return Confirmed::Stale;
        };
        lane.in_flight = false;
        lane.upstream = Some(up.clone());
        t.confirmed = true;
        self.by_upstream.entry((slot, up)).or_default().push(id);
        Confirmed::Waiters(std::mem::take(&mut t.waiters))
    }

    /// The upstream rejected (or timed out) a subscribe for `id`.
    pub fn on_subscribe_failed(&mut self, id: TopicId) -> Failed<W, T> {
        let Some(t) = self.topics.get(&id) else {
            return Failed::Unknown;
        };
        let confirmed = t.confirmed;
        let Some(mut t) = self.remove(id) else {
            return Failed::Unknown;
        };
        if confirmed {
            Failed::Ended(t.data)
        } else {
            Failed::Rejected(std::mem::take(&mut t.waiters), t.data)
        }
    }

    /// A confirmed topic's resubscribe on `slot` was refused: keep it (clients keep their
    /// ids) and let the next connection of that slot subscribe it again.
    pub fn keep_for_retry(&mut self, id: TopicId, slot: SlotId) -> Option<SlotId> {
        let t = self.topics.get_mut(&id)?;
        if !t.confirmed {
            return None;
        }
        let lane = t.lanes.iter_mut().find(|l| l.slot == slot)?;
        lane.in_flight = false;
        lane.upstream = None;
        Some(slot)
    }

    /// Topics notified by upstream id `up` on `slot` (several when the node shares ids).
    pub fn route(&self, slot: SlotId, up: &UpstreamSubId) -> &[TopicId] {
        self.by_upstream
            .get(&(slot, up.clone()))
            .map_or(&[], Vec::as_slice)
    }

    /// A one-shot topic delivered its final notification: remove it without unsubscribing.
    pub fn end(&mut self, id: TopicId) -> Option<T> {
        self.remove(id).map(|t| t.data)
    }

    /// The connection of `slot` is gone: forget its upstream ids; idle topics go away.
    pub fn on_slot_down(&mut self, slot: SlotId) -> Vec<T> {
        if let Some(s) = self.slots.get_mut(slot.0) {
            s.up = false;
        }
        self.by_upstream.retain(|(s, _), _| *s != slot);
        let mut idle = Vec::new();
        for (id, t) in self.topics.iter_mut() {
            let mut on_it = false;
            for l in t.lanes.iter_mut().filter(|l| l.slot == slot) {
                l.upstream = None;
                l.in_flight = false;
                on_it = true;
            }
            // An idle topic still subscribed on another lane lingers there (and is
            // unsubscribed there when the linger ends).
            let elsewhere = t.lanes.iter().any(|l| l.upstream.is_some() || l.in_flight);
            if on_it && t.refs == 0 && !elsewhere {
                idle.push(*id);
            }
        }
        idle.into_iter()
            .filter_map(|id| self.remove(id).map(|t| t.data))
            .collect()
    }

    /// The connection of `slot` is up: (re)subscribe every topic on it.
    pub fn on_slot_up(&mut self, slot: SlotId) -> Vec<TopicId> {
        if let Some(s) = self.slots.get_mut(slot.0) {
            s.up = true;
        }
        let mut ids: Vec<TopicId> = Vec::new();
        for (id, t) in self.topics.iter_mut() {
            for l in t.lanes.iter_mut() {
                if l.slot == slot && !l.in_flight && l.upstream.is_none() {
                    l.in_flight = true;
                    ids.push(*id);
                }
            }
        }
        ids.sort();
        ids
    }

    pub fn slot_up(&self, slot: SlotId) -> bool {
        self.slots.get(slot.0).is_some_and(|s| s.up)
    }

    /// Expire lingering topics and waiters that waited too long.
    pub fn on_tick(&mut self, now: Instant) -> Tick<W, T> {
        let mut out = Tick {
            unsubscribe: Vec::new(),
            expired: Vec::new(),
            removed: Vec::new(),
        };
        let linger = self.cfg.linger;
        let timeout = self.cfg.subscribe_timeout;
        let mut gone = Vec::new();
        let mut expired = Vec::new();
        for (id, t) in &self.topics {
            if t.in_flight() {
                continue;
            }
            if t.refs == 0
                && t.idle_since
                    .is_some_and(|s| now.duration_since(s) >= linger)
            {
                gone.push(*id);
            } else if !t.confirmed && now.duration_since(t.created) >= timeout {
                expired.push(*id);
            }
        }
        for id in gone {
            let shared_up: Vec<_> = (self.topics.get(&id).into_iter())
                .flat_map(|t| {
                    (t.lanes.iter())
                        .filter_map(|l| l.upstream.clone().map(|u| (l.slot, t.key.clone(), u)))
                })
                .collect();
            if let Some(t) = self.remove(id) {
                out.removed.push(t.data);
            }
            for (slot, key, up) in shared_up {
                if !self.by_upstream.contains_key(&(slot, up.clone())) {
                    out.unsubscribe.push((slot, key, up));
                }
            }
        }
        for id in expired {
            if let Some(mut t) = self.remove(id) {
                out.expired.append(&mut t.waiters);
                out.removed.push(t.data);
            }
        }
        out
    }

    /// Remove everything (shutdown): upstream subscriptions to unsubscribe, and all data.
    pub fn drain(&mut self) -> (Vec<(SlotId, SubscriptionKey, UpstreamSubId)>, Vec<T>) {
        let mut unsub = Vec::new();
        for ((slot, up), ids) in self.by_upstream.drain() {
            if let Some(t) = ids.first().and_then(|id| self.topics.get(id)) {
                unsub.push((slot, t.key.clone(), up));
            }
        }
        self.by_key.clear();
        for s in &mut self.slots {
            s.topics = 0;
        }
        let data = self.topics.drain().map(|(_, t)| t.data).collect();
        (unsub, data)
    }

    fn remove(&mut self, id: TopicId) -> Option<Topic<W, T>> {
        let t = self.topics.remove(&id)?;
        if self.by_key.get(&t.key) == Some(&id) {
            self.by_key.remove(&t.key);
        }
        for l in &t.lanes {
            if let Some(up) = &l.upstream {
                let k = (l.slot, up.clone());
                if let Some(v) = self.by_upstream.get_mut(&k) {
                    v.retain(|x| *x != id);
                    if v.is_empty() {
                        self.by_upstream.remove(&k);
                    }
                }
            }
            if let Some(s) = self.slots.get_mut(l.slot.0) {
                s.topics = s.topics.saturating_sub(1);
            }
        }
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::KeyFlags;

    fn cfg() -> TableConfig {
        TableConfig {
            linger: Duration::from_secs(2),
            max_slots: 2,
            topics_per_slot: 0,
            subscribe_timeout: Duration::from_secs(10),
            lanes: 1,
        }
    }
    fn key(s: &str) -> SubscriptionKey {
        SubscriptionKey::new("eth_subscribe", format!("[\"{s}\"]"), KeyFlags::default())
    }
    fn up(s: &str) -> UpstreamSubId {
        UpstreamSubId(format!("\"{s}\"").into())
    }
    type Table = TopicTable<&'static str, u32>;

    fn queued(
        j: Result<Join<&'static str>, (TableError, &'static str)>,
    ) -> (TopicId, Option<Action>) {
        match j {
            Ok(Join::Queued(id, a)) => {
                assert!(a.len() <= 1, "one lane: {a:?}");
                (id, a.into_iter().next())
            }
            other => panic!("expected queued, got {other:?}"),
        }
    }

    #[test]
    fn dedup_join_while_pending_then_ready() {
        let t0 = Instant::now();
        let mut t = Table::new(cfg());
        t.on_slot_up(SlotId(0));
        let (id, a) = queued(t.subscribe(key("newHeads"), "a", t0, || 1));
        assert_eq!(
            a,
            Some(Action::Subscribe {
                topic: id,
                slot: SlotId(0)
            })
        );
        // join while pending: queued, no second upstream subscribe
        let (id2, a2) = queued(t.subscribe(key("newHeads"), "b", t0, || 2));
        assert_eq!((id2, a2), (id, None));
        match t.on_subscribed(id, up("0x1")) {
            Confirmed::Waiters(w) => assert_eq!(w, vec!["a", "b"]),
            Confirmed::Stale => panic!(),
        }
        // join when confirmed: ready at once
        assert!(
            matches!(t.subscribe(key("newHeads"), "c", t0, || 3), Ok(Join::Ready(x, "c")) if x == id)
        );
        assert_eq!(t.get(id).unwrap().refs(), 3);
        assert_eq!(t.route(SlotId(0), &up("0x1")), &[id]);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn refcount_linger_then_unsubscribe_and_rejoin_cancels_linger() {
        let t0 = Instant::now();
        let mut t = Table::new(cfg());
        t.on_slot_up(SlotId(0));
        let (id, _) = queued(t.subscribe(key("newHeads"), "a", t0, || 1));
        t.on_subscribed(id, up("0x1"));
        t.release(id, t0);
        // within linger: nothing happens; a re-join cancels the linger
        assert!(t
            .on_tick(t0 + Duration::from_secs(1))
            .unsubscribe
            .is_empty());
        assert!(matches!(
            t.subscribe(key("newHeads"), "b", t0, || 2),
            Ok(Join::Ready(..))
        ));
        assert!(t
            .on_tick(t0 + Duration::from_secs(5))
            .unsubscribe
            .is_empty());
        t.release(id, t0 + Duration::from_secs(5));
        let tick = t.on_tick(t0 + Duration::from_secs(7));
        assert_eq!(
            tick.unsubscribe,
            vec![(SlotId(0), key("newHeads"), up("0x1"))]
        );
        assert_eq!(tick.removed, vec![1]);
        assert!(t.is_empty());
        assert!(t.route(SlotId(0), &up("0x1")).is_empty());
    }

    #[test]
    fn error_on_subscribe_rejects_all_waiters() {
        let t0 = Instant::now();
        let mut t = Table::new(cfg());
        t.on_slot_up(SlotId(0));
        let (id, _) = queued(t.subscribe(key("logs"), "a", t0, || 1));
        queued(t.subscribe(key("logs"), "b", t0, || 2));
        match t.on_subscribe_failed(id) {
            Failed::Rejected(w, d) => {
                assert_eq!(w, vec!["a", "b"]);
                assert_eq!(d, 1);
            }
            other => panic!("{other:?}"),
        }
        assert!(t.is_empty());
        // a new subscribe afterwards makes a fresh topic with a new id
        let (id2, a) = queued(t.subscribe(key("logs"), "c", t0, || 3));
        assert_ne!(id2, id);
        assert!(matches!(a, Some(Action::Subscribe { .. })));
    }

    #[test]
    fn reconnect_resubscribes_live_topics_and_drops_idle_ones() {
        let t0 = Instant::now();
        let mut t = Table::new(cfg());
        t.on_slot_up(SlotId(0));
        let (a, _) = queued(t.subscribe(key("newHeads"), "a", t0, || 1));
        let (b, _) = queued(t.subscribe(key("syncing"), "b", t0, || 2));
        t.on_subscribed(a, up("0x1"));
        t.on_subscribed(b, up("0x2"));
        t.release(b, t0); // b is lingering
        let dropped = t.on_slot_down(SlotId(0));
        assert_eq!(dropped, vec![2]);
        assert!(
            t.route(SlotId(0), &up("0x1")).is_empty(),
            "old ids are forgotten"
        );
        // joining a confirmed topic during the outage is immediate (client ids survive)
        assert!(matches!(
            t.subscribe(key("newHeads"), "c", t0, || 9),
            Ok(Join::Ready(..))
        ));
        assert_eq!(t.on_slot_up(SlotId(0)), vec![a]);
        // a second slot-up does not resend in-flight subscribes
        assert!(t.on_slot_up(SlotId(0)).is_empty());
        assert!(matches!(t.on_subscribed(a, up("0x9")), Confirmed::Waiters(w) if w.is_empty()));
        assert_eq!(t.route(SlotId(0), &up("0x9")), &[a]);
    }

    #[test]
    fn release_during_resubscribe_unsubscribes_after_confirmation() {
        let t0 = Instant::now();
        let mut t = Table::new(cfg());
        t.on_slot_up(SlotId(0));
        let (a, _) = queued(t.subscribe(key("newHeads"), "a", t0, || 1));
        t.on_subscribed(a, up("0x1"));
        t.on_slot_down(SlotId(0));
        assert_eq!(t.on_slot_up(SlotId(0)), vec![a]);
        t.release(a, t0); // last client leaves while the resubscribe is in flight
                          // the in-flight topic is not removed by the tick
        assert!(t.on_tick(t0 + Duration::from_secs(60)).removed.is_empty());
        assert!(matches!(
            t.on_subscribed(a, up("0x2")),
            Confirmed::Waiters(_)
        ));
        let tick = t.on_tick(t0 + Duration::from_secs(60));
        assert_eq!(
            tick.unsubscribe,
            vec![(SlotId(0), key("newHeads"), up("0x2"))]
        );
    }

    #[test]
    fn resubscribe_failure_ends_the_topic() {
        let t0 = Instant::now();
        let mut t = Table::new(cfg());
        t.on_slot_up(SlotId(0));
        let (a, _) = queued(t.subscribe(key("newHeads"), "a", t0, || 7));
        t.on_subscribed(a, up("0x1"));
        t.on_slot_down(SlotId(0));
        t.on_slot_up(SlotId(0));
        assert!(matches!(t.on_subscribe_failed(a), Failed::Ended(7)));
        assert!(t.is_empty());
    }

    #[test]
    fn notification_for_unknown_id_and_duplicate_response() {
        let t0 = Instant::now();
        let mut t = Table::new(cfg());
        t.on_slot_up(SlotId(0));
        assert!(t.route(SlotId(0), &up("0xdead")).is_empty());
        let (a, _) = queued(t.subscribe(key("newHeads"), "a", t0, || 1));
        assert!(matches!(
            t.on_subscribed(a, up("0x1")),
            Confirmed::Waiters(_)
        ));
        // a second confirmation for the same topic is stale: its id must be unsubscribed
        assert!(matches!(t.on_subscribed(a, up("0x2")), Confirmed::Stale));
        assert!(matches!(
            t.on_subscribed(TopicId(999), up("0x3")),
            Confirmed::Stale
        ));
        assert_eq!(t.route(SlotId(0), &up("0x1")), &[a]);
    }

    #[test]
    fn one_shot_topic_ends_without_unsubscribe() {
        let t0 = Instant::now();
        let mut t = Table::new(cfg());
        t.on_slot_up(SlotId(0));
        let (a, _) = queued(t.subscribe(key("sig"), "a", t0, || 5));
        t.on_subscribed(a, up("0x1"));
        assert_eq!(t.end(a), Some(5));
        t.release(a, t0); // late release of the ended topic is harmless
        assert!(t
            .on_tick(t0 + Duration::from_secs(99))
            .unsubscribe
            .is_empty());
        // the same key now makes a new topic
        let (b, _) = queued(t.subscribe(key("sig"), "b", t0, || 6));
        assert_ne!(a, b);
    }

    #[test]
    fn shared_upstream_id_is_unsubscribed_only_when_last_topic_goes() {
        // A node that collapses identical params hands two topics the same id.
        let t0 = Instant::now();
        let mut t = Table::new(cfg());
        t.on_slot_up(SlotId(0));
        let (a, _) = queued(t.subscribe(key("x"), "a", t0, || 1));
        let (b, _) = queued(t.subscribe(key("y"), "b", t0, || 2));
        t.on_subscribed(a, up("7"));
        t.on_subscribed(b, up("7"));
        assert_eq!(t.route(SlotId(0), &up("7")), &[a, b]);
        t.release(a, t0);
        let tick = t.on_tick(t0 + Duration::from_secs(3));
        assert!(tick.unsubscribe.is_empty(), "b still uses upstream id 7");
        assert_eq!(t.route(SlotId(0), &up("7")), &[b]);
        t.release(b, t0);
        let tick = t.on_tick(t0 + Duration::from_secs(6));
        assert_eq!(tick.unsubscribe.len(), 1);
    }

    #[test]
    fn waiting_for_a_connection_times_out() {
        let t0 = Instant::now();
        let mut t = Table::new(cfg());
        // slot 0 is down: nothing is sent
        let (_, a) = queued(t.subscribe(key("newHeads"), "a", t0, || 1));
        assert_eq!(a, None);
        let tick = t.on_tick(t0 + Duration::from_secs(11));
        assert_eq!(tick.expired, vec!["a"]);
        assert!(t.is_empty());
    }

    #[test]
    fn per_slot_cap_opens_another_connection_then_refuses() {
        let t0 = Instant::now();
        let mut t = Table::new(TableConfig {
            topics_per_slot: 1,
            ..cfg()
        });
        t.on_slot_up(SlotId(0));
        let (_, a) = queued(t.subscribe(key("a"), "a", t0, || 1));
        assert_eq!(a.map(|_| ()), Some(()));
        let (b, act) = queued(t.subscribe(key("b"), "b", t0, || 2));
        assert_eq!(act, Some(Action::OpenSlot(SlotId(1))));
        assert_eq!(t.get(b).unwrap().slot(), SlotId(1));
        assert_eq!(t.on_slot_up(SlotId(1)), vec![b]);
        match t.subscribe(key("c"), "c", t0, || 3) {
            Err((TableError::Full(1), "c")) => {}
            other => panic!("{other:?}"),
        }
        // an existing key still joins at the cap
        assert!(t.subscribe(key("a"), "d", t0, || 4).is_ok());
    }

    #[test]
    fn drain_lists_every_upstream_subscription_once() {
        let t0 = Instant::now();
        let mut t = Table::new(cfg());
        t.on_slot_up(SlotId(0));
        let (a, _) = queued(t.subscribe(key("a"), "a", t0, || 1));
        let (b, _) = queued(t.subscribe(key("b"), "b", t0, || 2));
        t.on_subscribed(a, up("1"));
        t.on_subscribed(b, up("2"));
        let (unsub, data) = t.drain();
        assert_eq!(unsub.len(), 2);
        assert_eq!(data.len(), 2);
        assert!(t.is_empty());
    }

    #[test]
    fn hedged_topics_hold_a_subscription_per_lane() {
        let t0 = Instant::now();
        let mut t = Table::new(TableConfig { lanes: 2, ..cfg() });
        assert_eq!((t.slot_lane(SlotId(0)), t.slot_lane(SlotId(1))), (0, 1));
        t.on_slot_up(SlotId(1)); // lane 0 still connecting
        let id = match t.subscribe(key("newHeads"), "a", t0, || 1) {
            Ok(Join::Queued(id, acts)) => {
                assert_eq!(
                    acts,
                    vec![Action::Subscribe {
                        topic: id,
                        slot: SlotId(1)
                    }]
                );
                id
            }
            other => panic!("{other:?}"),
        };
        // The first lane confirmed answers the waiters.
        match t.on_subscribed_on(id, SlotId(1), up("0xb")) {
            Confirmed::Waiters(w) => assert_eq!(w, vec!["a"]),
            Confirmed::Stale => panic!(),
        }
        assert_eq!(t.on_slot_up(SlotId(0)), vec![id]);
        assert!(matches!(
            t.on_subscribed_on(id, SlotId(0), up("0xa")),
            Confirmed::Waiters(w) if w.is_empty()
        ));
        assert_eq!(t.route(SlotId(0), &up("0xa")), &[id]);
        assert_eq!(t.route(SlotId(1), &up("0xb")), &[id]);
        // A lane down: the topic stays on the other, even idle.
        t.release(id, t0);
        assert!(t.on_slot_down(SlotId(0)).is_empty());
        assert!(t.get(id).unwrap().lanes[1].live());
        // The linger ends: unsubscribed on the lane still holding it.
        let tick = t.on_tick(t0 + Duration::from_secs(3));
        assert_eq!(
            tick.unsubscribe,
            vec![(SlotId(1), key("newHeads"), up("0xb"))]
        );
        assert!(t.is_empty());
    }
}
