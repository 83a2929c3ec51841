//! Slots: the state of each upstream connection of the route, and the policies over it —
//! connect, backoff and failover, liveness (pings, idle), closing idle extra slots,
//! fail-back to the primary, stall detection and gap detection.

use super::{Action, Outbox, Pending, RouteCore};
use crate::backoff::Failover;
use crate::hub::table::SlotId;
use crate::hub::{Notice, WireText};
use crate::telemetry::{redact_url, RouteMetrics};
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SlotState {
    Idle,
    Connecting,
    Connected,
}

pub(super) struct Slot {
    pub(super) state: SlotState,
    /// Index into the route's upstream list used by the current/next attempt.
    /// Which upstream the current or next attempt uses, and the backoff before it.
    pub(super) failover: Failover,
    /// Bumped per connection attempt: stale connect results and frames are ignored.
    pub(super) generation: u64,
    last_rx: Instant,
    last_ping: Instant,
    /// Whether this slot has been connected before (a later connect is a reconnect).
    was_connected: bool,
    /// Identities of recent content-routed messages on this connection.
    pub(super) recent: Recent,
    /// When the primary was last tried while on a backup (fail-back).
    last_failback: Instant,
    failback_in_flight: bool,
    /// Height of the last steady notification (block, slot, ledger) on this slot.
    pub(super) last_height: Option<u64>,
    /// After a connection was replaced: where the possible gap starts (`Some(None)`:
    /// unknown), until the first steady notification on the new connection closes it.
    gap_from: Option<Option<u64>>,
}

/// A bounded set of recently seen message identities (oldest evicted first).
#[derive(Default)]
pub(super) struct Recent {
    order: VecDeque<Box<str>>,
    set: HashSet<Box<str>>,
}

impl Recent {
    const CAPACITY: usize = 1024;

    /// Record `id`; `false` if it was already there.
    pub(super) fn insert(&mut self, id: Box<str>) -> bool {
        if self.set.contains(&id) {
            return false;
        }
        if self.order.len() == Self::CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.order.push_back(id.clone());
        self.set.insert(id);
        true
    }
}

impl<O: Outbox> RouteCore<O> {
    pub(super) fn ensure_slot(&mut self, slot: SlotId, now: Instant) {
        while self.slots.len() <= slot.0 {
            // A hedge lane's connections start at the lane's own upstream.
            let home = self.table.slot_lane(SlotId(self.slots.len()));
            self.slots.push(Slot {
                state: SlotState::Idle,
                failover: Failover::starting_at(
                    self.settings.upstreams.len(),
                    home,
                    self.settings.backoff_initial,
                    self.settings.backoff_max,
                ),
                generation: 0,
                last_rx: now,
                last_ping: now,
                was_connected: false,
                recent: Recent::default(),
                last_failback: now,
                failback_in_flight: false,
                last_height: None,
                gap_from: None,
            });
        }
    }

    /// Make sure a queued topic's connection is being established.
    pub(super) fn ensure_connecting(&mut self, slot: SlotId, now: Instant) {
        self.ensure_slot(slot, now);
        if self.slots[slot.0].state == SlotState::Idle {
            self.schedule_connect(slot, Duration::ZERO);
        }
    }

    pub(super) fn schedule_connect(&mut self, slot: SlotId, delay: Duration) {
        self.avoid_other_lanes(slot);
        let Some(s) = self.slots.get_mut(slot.0) else {
            return;
        };
        s.generation += 1;
        s.state = SlotState::Connecting;
        self.actions.push_back(Action::Connect {
            slot,
            generation: s.generation,
            upstream: s.failover.current(),
            delay,
        });
    }

    /// Whether `generation` is the slot's current connection attempt.
    pub(super) fn current(&self, slot: SlotId, generation: u64) -> bool {
        self.slots
            .get(slot.0)
            .is_some_and(|s| s.generation == generation)
    }

    /// A frame arrived on the slot's current connection: it is alive.
    pub(super) fn alive(&mut self, slot: SlotId, generation: u64, now: Instant) -> bool {
        match self.slots.get_mut(slot.0) {
            Some(s) if s.generation == generation => {
                s.last_rx = now;
                true
            }
            _ => false,
        }
    }

    pub(super) fn on_connect_failed(&mut self, slot: SlotId, generation: u64, reason: &str) {
        let Some(s) = self.slots.get_mut(slot.0) else {
            return;
        };
        if s.generation != generation || s.state != SlotState::Connecting {
            return;
        }
        RouteMetrics::inc(&self.metrics.upstream_connect_failures);
        let delay = s.failover.failed(self.rng.f64());
        let next = self
            .settings
            .upstreams
            .get(s.failover.current())
            .map(|u| redact_url(u));
        warn!(slot = slot.0, %reason, next_upstream = ?next, retry_in = ?delay, "upstream connect failed");
        self.schedule_connect(slot, delay);
    }

    pub(super) fn on_connected(&mut self, slot: SlotId, generation: u64, now: Instant) {
        let Some(s) = self.slots.get(slot.0) else {
            return;
        };
        if s.generation == generation && s.state == SlotState::Connecting {
            self.install(slot, now);
        }
    }

    /// The slot's new connection is up: (re)subscribe every topic of the slot on it.
    fn install(&mut self, slot: SlotId, now: Instant) {
        let s = &mut self.slots[slot.0];
        self.actions.push_back(Action::Install {
            slot,
            generation: s.generation,
        });
        s.state = SlotState::Connected;
        s.last_rx = now;
        s.last_ping = now;
        s.last_failback = now;
        if s.was_connected {
            RouteMetrics::inc(&self.metrics.upstream_reconnects);
        }
        s.was_connected = true;
        s.recent = Recent::default();
        if slot.0 == 0 {
            self.metrics
                .active_upstream
                .store(s.failover.current(), Relaxed);
        }
        RouteMetrics::add(&self.metrics.upstream_connections, 1);
        let url = self
            .settings
            .upstreams
            .get(s.failover.current())
            .map(|u| redact_url(u));
        info!(slot = slot.0, upstream = ?url, "upstream connected");
        let ids = self.table.on_slot_up(slot);
        // The backoff restarts once the connection proves useful: at once when there is
        // nothing to resubscribe, else at the first confirmed (re)subscribe, so a node
        // that accepts connections but refuses subscriptions is retried ever more slowly.
        if ids.is_empty() {
            self.slots[slot.0].failover.succeeded();
        }
        for &id in &ids {
            if let Some(t) = self.table.get_mut(id) {
                if t.confirmed() {
                    t.data.resubscribing_since = Some(now);
                }
                t.data.last_notice = now;
            }
            self.hedge_lane_seen(id, slot, now);
        }
        self.send_subscribes(ids, slot, now);
        self.cache_connection_changed(slot, Some(now));
        self.flush_waiting_calls(now);
        // Without a steady stream on this connection the gap's end is never learnt.
        let steady = self.table.on_slot(slot).any(|(_, t)| t.key.flags().steady);
        if !steady {
            if let Some(from) = self.slots[slot.0].gap_from.take() {
                self.announce_gap(slot, from, None);
            }
        }
    }

    /// The slot's connection is replaced: backfilled topics note where to fetch from;
    /// the others' histories no longer run on without a hole, so `?since=` starts from
    /// what the next connection delivers.
    fn clear_histories(&mut self, slot: SlotId) {
        let ids: Vec<_> = self.table.on_slot(slot).map(|(id, _)| id).collect();
        self.hedge_slot_down(slot);
        for id in ids {
            if self.covered(id, slot) {
                continue; // hedged: another lane delivers meanwhile, nothing is missed
            }
            if let Some(t) = self.table.get_mut(id) {
                match t.data.track.as_mut() {
                    Some(track) if track.fills() => track.switched(),
                    _ => t.data.history.clear(),
                }
            }
        }
    }

    pub(super) fn reset_backoff(&mut self, slot: SlotId) {
        if let Some(s) = self.slots.get_mut(slot.0) {
            s.failover.succeeded();
        }
    }

    /// A steady notification with `height` arrived on `slot`: remember it, and close an
    /// open gap (announcing it if anything may have been missed).
    pub(super) fn on_height(&mut self, slot: SlotId, height: u64) {
        let Some(s) = self.slots.get_mut(slot.0) else {
            return;
        };
        s.last_height = Some(height);
        if let Some(from) = s.gap_from.take() {
            let to = height.checked_sub(1);
            if from.is_none() || to.is_some_and(|t| Some(t) >= from) {
                self.announce_gap(slot, from, to);
            }
        }
    }

    /// Without gap listeners heights are not read: forget the last one (a stale height
    /// must not later open a gap that starts in the past) and any open gap (nobody to
    /// tell).
    pub(super) fn forget_height(&mut self, slot: SlotId) {
        if let Some(s) = self.slots.get_mut(slot.0) {
            s.last_height = None;
            s.gap_from = None;
        }
    }

    /// Whether some session asked for gap notices.
    pub(super) fn gaps_wanted(&self) -> bool {
        self.gap_listeners.load(Relaxed) > 0
    }

    /// Tell clients that asked (`?gap_notices=1`) which heights may have been missed.
    fn announce_gap(&mut self, slot: SlotId, from: Option<u64>, to: Option<u64>) {
        if !self.gaps_wanted() {
            return;
        }
        RouteMetrics::inc(&self.metrics.gap_notices);
        let mut told = HashSet::new();
        for (id, t) in self.table.on_slot(slot) {
            if t.data.track.as_ref().is_some_and(|tr| tr.fills()) {
                continue; // its backfill announces exactly what it could not fill
            }
            if self.covered(id, slot) {
                continue; // hedged: another lane delivered meanwhile
            }
            for mb in t.data.subscribers.values() {
                if self.out.wants_gaps(mb) && told.insert(self.out.mailbox_id(mb)) {
                    if let Some((frame, _)) = self.dialect.render_gap(&t.data.public_id, from, to) {
                        self.out.push(mb, WireText::from(frame));
                    }
                }
            }
            if t.data.subscribers.is_empty() {
                if let Some((frame, id_range)) =
                    self.dialect.render_gap(&t.data.public_id, from, to)
                {
                    let notice = Notice {
                        frame: WireText::from(frame),
                        id_range,
                        gap: true,
                    };
                    self.out.broadcast(&t.data.fan, notice);
                }
            }
        }
    }

    pub(super) fn on_probed(&mut self, slot: SlotId, generation: u64, ok: bool, now: Instant) {
        let busy = self.pending.values().any(|p| p.slot() == slot);
        let Some(s) = self.slots.get_mut(slot.0) else {
            return;
        };
        s.failback_in_flight = false;
        let current = s.state == SlotState::Connected
            && s.generation == generation
            && s.failover.current() != s.failover.home();
        if !ok {
            debug!(
                slot = slot.0,
                "primary still unavailable; staying on the backup"
            );
            return;
        }
        if !current || busy {
            return; // the slot moved on, or requests are in flight: try again later
        }
        info!(slot = slot.0, "primary upstream is back: failing back");
        let gaps = self.gap_listeners.load(Relaxed) > 0;
        s.gap_from = gaps.then(|| s.last_height.map(|h| h + 1));
        s.generation += 1;
        s.failover.to_primary();
        self.actions.push_back(Action::Close { slot });
        self.clear_histories(slot);
        self.cache_connection_changed(slot, None);
        drop(self.table.on_slot_down(slot));
        RouteMetrics::add(&self.metrics.upstream_connections, -1);
        RouteMetrics::inc(&self.metrics.upstream_failbacks);
        self.install(slot, now);
    }

    /// Tear down a slot's connection and schedule a reconnect (failing over to the next
    /// upstream of the list). Clients keep their subscriptions; in-flight calls fail.
    fn slot_lost(&mut self, slot: SlotId, reason: &str) {
        let Some(s) = self.slots.get_mut(slot.0) else {
            return;
        };
        if s.state != SlotState::Connected {
            return;
        }
        let url = self
            .settings
            .upstreams
            .get(s.failover.current())
            .map(|u| redact_url(u));
        warn!(slot = slot.0, upstream = ?url, %reason, "upstream connection lost");
        // A gap is opened only when someone will be told of it.
        let gaps = self.gap_listeners.load(Relaxed) > 0;
        s.gap_from = gaps.then(|| s.last_height.map(|h| h + 1));
        s.state = SlotState::Idle;
        self.actions.push_back(Action::Drop { slot });
        RouteMetrics::add(&self.metrics.upstream_connections, -1);
        let mut lost: Vec<u64> = (self.pending.iter())
            .filter(|(_, p)| p.slot() == slot)
            .map(|(id, _)| *id)
            .collect();
        lost.sort_unstable();
        for id in lost {
            if let Some(Pending::Call { replies, key, .. }) = self.pending.remove(&id) {
                self.answer_call(replies, key, Err(crate::hub::HubError::Lost));
            }
        }
        self.clear_histories(slot);
        drop(self.table.on_slot_down(slot));
        self.store_topics();
        let s = &mut self.slots[slot.0];
        let delay = s.failover.failed(self.rng.f64());
        self.schedule_connect(slot, delay);
    }

    pub(super) fn reap_dead(&mut self) {
        while let Some((slot, reason)) = self.dead.pop() {
            self.slot_lost(slot, &reason);
        }
    }

    /// Fail-back probes, liveness (ping quiet upstreams, drop silent ones) and closing
    /// idle extra slots.
    pub(super) fn slot_timers(&mut self, now: Instant) {
        // Fail-back: a slot on a backup tries the primary every failback_interval.
        if let Some(every) = self.settings.failback_interval {
            for (i, s) in self.slots.iter_mut().enumerate() {
                if s.state == SlotState::Connected
                    && s.failover.current() != s.failover.home()
                    && !s.failback_in_flight
                    && now.duration_since(s.last_failback) >= every
                {
                    s.failback_in_flight = true;
                    s.last_failback = now;
                    let (slot, generation) = (SlotId(i), s.generation);
                    let upstream = s.failover.home();
                    self.actions.push_back(Action::Probe {
                        slot,
                        generation,
                        upstream,
                    });
                }
            }
        }
        for i in 0..self.slots.len() {
            let slot = SlotId(i);
            let s = &self.slots[i];
            if s.state != SlotState::Connected {
                continue;
            }
            if now.duration_since(s.last_rx) >= self.settings.upstream_idle_timeout {
                let why = format!("silent for {:?}", now.duration_since(s.last_rx));
                self.dead.push((slot, why));
                continue;
            }
            // A lane's first slot stays; extra ones close when they hold nothing.
            if i >= self.table.lanes()
                && self.table.slot_topics(slot) == 0
                && !self.pending.values().any(|p| p.slot() == slot)
            {
                self.close_slot(slot);
                continue;
            }
            let every = self.settings.upstream_ping_interval;
            if now.duration_since(s.last_ping) >= every && now.duration_since(s.last_rx) >= every {
                self.slots[i].last_ping = now;
                self.actions.push_back(Action::Ping { slot });
            }
        }
    }

    fn close_slot(&mut self, slot: SlotId) {
        let s = &mut self.slots[slot.0];
        s.state = SlotState::Idle;
        s.generation += 1;
        self.actions.push_back(Action::Close { slot });
        drop(self.table.on_slot_down(slot));
        RouteMetrics::add(&self.metrics.upstream_connections, -1);
        debug!(slot = slot.0, "closed idle extra upstream connection");
    }

    /// A steady topic (new heads, slots, ledgers) silent for `stall_timeout` while its
    /// connection still answers pings: the node is stalled; replace the connection.
    pub(super) fn check_stalls(&mut self, now: Instant) {
        let Some(limit) = self.settings.stall_timeout else {
            return;
        };
        let mut stalled: Vec<(SlotId, String)> = Vec::new();
        for (slot, key, _) in self.table.active_upstream() {
            if !key.flags().steady || stalled.iter().any(|(s, _)| *s == slot) {
                continue;
            }
            let Some(t) = self.table.by_key_data(key) else {
                continue;
            };
            let last = self.last_notice_on(t, self.table.slot_lane(slot));
            let quiet = now.duration_since(last);
            if quiet >= limit {
                stalled.push((slot, format!("stalled: no {key:?} for {quiet:?}")));
            }
        }
        for (slot, why) in stalled {
            RouteMetrics::inc(&self.metrics.upstream_stalls);
            self.dead.push((slot, why));
        }
    }
}
