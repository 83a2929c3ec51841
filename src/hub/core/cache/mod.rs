//! The head-aware call cache of a route (issue 15), sans-IO like the rest of the core.
//!
//! - **Follows the head**: the core holds a subscription of its own to the dialect's head
//!   stream (Ethereum `newHeads`, the very key a client's identical subscribe shares), so
//!   it knows when `latest` moves even without clients. The highest head delivered is the
//!   route's *followed head*. A head stream whose key is of a connection class (XRPL's
//!   `ledger` stream, per API version) is followed only on a class a connected slot
//!   already serves for clients, and let go when no client shares its connection, so it
//!   never costs or keeps a connection; while nothing is followed, answers for one head
//!   are not served.
//! - **Answers from the head**: `eth_blockNumber` is answered with the followed head, in
//!   the envelope of the node's own last answer to it on the current connections (learnt
//!   from the `eth_blockNumber` probe each new connection gets), so the answer is the
//!   bytes that node would send.
//! - **Keeps answers** ([`store::Store`], LRU bounded in bytes) for as long as the
//!   dialect's rules ([`crate::dialect::cache`]) say they stay true: forever, for one
//!   upstream connection, or for one head (dropped when the followed head moves). Errors
//!   are never kept.
//! - **Consistent `latest`**: a call at `latest` goes only to a connection whose own head
//!   has reached the followed head. After a failover to a node that is behind, such calls
//!   wait (up to `latest_wait_ms`) for it to catch up — learnt from its head stream and
//!   from an `eth_blockNumber` probe sent on each new connection — and then get a clear
//!   error; no client is answered from a state older than a head it has seen.

pub(crate) mod store;

use super::{Outbox, Pending, RouteCore};
use crate::config::CacheSettings;
use crate::dialect::cache::{method_label, subscribe_key, CacheRule, Lifetime, Rules};
use crate::dialect::{Call, SubscriptionKey};
use crate::hub::table::{Action as TableAction, Join, SlotId, TopicId};
use crate::hub::{HubError, UpstreamReply, Utf8Bytes};
use crate::telemetry::{CallOutcome, RouteMetrics};
use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use store::{Dropped, Scope, Store};

/// The core's own waiter number for the head subscription (never a session's).
const FOLLOW_WAITER: u64 = u64::MAX;
/// How soon a failed head subscription is tried again.
const FOLLOW_RETRY: Duration = Duration::from_secs(5);
/// How often a connection that is behind is asked for its head again.
const PROBE_EVERY: Duration = Duration::from_millis(200);

/// The cache state of one route (in [`RouteCore`], `None` when off).
pub(crate) struct Cache<O: Outbox> {
    pub(super) settings: CacheSettings,
    pub(super) rules: &'static dyn Rules,
    pub(super) store: Store,
    /// The head subscription the core holds, and its key.
    pub(super) follow: Option<TopicId>,
    pub(super) follow_key: Option<SubscriptionKey>,
    pub(super) follow_retry: Option<Instant>,
    /// The highest head delivered to clients (the followed head).
    pub(super) delivered: Option<u64>,
    /// The head of each slot's current connection, once known.
    pub(super) heads: HashMap<SlotId, u64>,
    /// Bumped whenever a connection comes or goes (scope of per-connection answers).
    pub(super) epoch: u64,
    /// Calls at `latest` waiting for their connection to reach the followed head (at
    /// most `WAITING_CALLS`; beyond, answered with the error at once).
    pub(super) held: VecDeque<(Call, O::CallReply, Instant)>,
    /// Head probes in flight or due, by slot: when the next may go.
    pub(super) probes: HashMap<SlotId, Instant>,
    /// The node's last answer to a head call on the current connections (epoch): its
    /// frame, id range and result range, the envelope head answers are rendered in.
    pub(super) template: Option<(u64, Utf8Bytes, Range<usize>, Range<usize>)>,
}

/// What a call sent upstream carries for the cache (in [`Pending::Call`]).
pub(crate) struct Ticket {
    rule: CacheRule,
    method: &'static str,
    key: Option<Box<str>>,
    head: Option<u64>,
    epoch: u64,
    /// A head probe of the core's own (no caller).
    probe: bool,
}

impl<O: Outbox> Cache<O> {
    pub(crate) fn new(settings: CacheSettings, rules: &'static dyn Rules) -> Self {
        Cache {
            store: Store::new(settings.max_bytes),
            settings,
            rules,
            follow: None,
            follow_key: None,
            follow_retry: None,
            delivered: None,
            heads: HashMap::new(),
            epoch: 0,
            held: VecDeque::new(),
            probes: HashMap::new(),
            template: None,
        }
    }
}

impl<O: Outbox> RouteCore<O> {
    /// Subscribe the core's own head stream (at start, and again if it failed).
    pub(super) fn follow_head(&mut self, now: Instant) {
        let Some(c) = self.cache.as_mut() else {
            return;
        };
        if c.follow.is_some_and(|t| self.table.get(t).is_some()) {
            return;
        }
        c.follow = None;
        let key = match c.follow_key.clone() {
            Some(k) => k,
            None => match (c.rules.head_request())
                .and_then(|r| subscribe_key(self.dialect.as_ref(), r))
            {
                Some(k) => {
                    c.follow_key = Some(k.clone());
                    k
                }
                None => return,
            },
        };
        // A key of a connection class (an XRPL API version) is followed only on a class
        // a connected slot already serves for clients: never a connection of its own.
        let key = if key.class() == 0 {
            key
        } else {
            match self.served_class() {
                Some(class) => {
                    SubscriptionKey::in_class(class, key.method(), key.params(), key.flags())
                }
                None => return,
            }
        };
        let Some(c) = self.cache.as_mut() else {
            return;
        };
        c.follow_retry = Some(now + FOLLOW_RETRY);
        let tracked = self.settings.backfill && self.dialect.backfills(&key);
        let lanes = self.table.lanes();
        let (dialect, out) = (&self.dialect, &mut self.out);
        let joined = (self.table).subscribe(key, FOLLOW_WAITER, now, || {
            super::TopicData::new(dialect.as_ref(), out, tracked, lanes, now)
        });
        let topic = match joined {
            Ok(Join::Ready(id, _)) => id,
            Ok(Join::Queued(id, actions)) => {
                for action in actions {
                    match action {
                        TableAction::Subscribe { topic, slot } => {
                            self.send_subscribes(vec![topic], slot, now)
                        }
                        TableAction::OpenSlot(slot) => self.ensure_connecting(slot, now),
                    }
                }
                id
            }
            Err(_) => return,
        };
        if let Some(c) = self.cache.as_mut() {
            c.follow = Some(topic);
        }
    }

    /// A connection class (not 0) that a connected slot serves for a client's topic.
    fn served_class(&self) -> Option<u8> {
        (0..self.slots.len()).map(SlotId).find_map(|slot| {
            let up = self.slots[slot.0].state == super::SlotState::Connected;
            let class = self.table.slot_class(slot).filter(|c| *c != 0)?;
            let held = self.table.on_slot(slot).any(|(_, t)| t.refs() > 0);
            (up && held).then_some(class)
        })
    }

    /// A class-bound head subscription no client shares any more on its connection is
    /// let go (it lingers and ends like a client's), so the route never keeps a
    /// connection for it alone; until followed again, answers for one head are not
    /// served (nothing would say when they go stale).
    fn unfollow_if_alone(&mut self, now: Instant) {
        let Some(c) = self.cache.as_ref() else {
            return;
        };
        let Some(id) = c.follow else {
            return;
        };
        let Some(t) = self.table.get(id) else {
            return;
        };
        if t.key.class() == 0 {
            return;
        }
        let slot = t.slot();
        let shared = t.refs() > 1
            || self
                .table
                .on_slot(slot)
                .any(|(o, t)| o != id && t.refs() > 0);
        if shared {
            return;
        }
        self.table.release(id, now);
        if let Some(c) = self.cache.as_mut() {
            c.follow = None;
            c.follow_retry = None;
        }
    }

    /// Whether the route follows its head now (answers for one head may be served).
    fn following(&self) -> bool {
        (self.cache.as_ref())
            .and_then(|c| c.follow)
            .is_some_and(|t| self.table.get(t).is_some())
    }

    /// Topics shown in `submux_topics`: the core's own head subscription counts only
    /// while a client holds it too.
    pub(super) fn client_topics(&self) -> usize {
        let own = (self.cache.as_ref())
            .and_then(|c| c.follow)
            .and_then(|t| self.table.get(t))
            .is_some_and(|t| t.refs() <= 1);
        self.table.len() - usize::from(own)
    }

    /// Answer a call from the followed head or the cache if it can be. `None`: answered.
    pub(super) fn answer_cached(
        &mut self,
        call: Call,
        reply: O::CallReply,
    ) -> Option<(Call, O::CallReply)> {
        let Some(c) = self.cache.as_mut() else {
            return Some((call, reply));
        };
        let rule = c.rules.rule(&call);
        if rule.lifetime == Lifetime::Never {
            return Some((call, reply));
        }
        let method = method_label(&call.method, c.rules.methods());
        let live = (c.follow)
            .and_then(|t| self.table.get(t))
            .is_some_and(|t| t.confirmed());
        let template = c.template.as_ref().filter(|t| t.0 == c.epoch);
        if let (true, true, Some(head), Some(t)) = (rule.from_head, live, c.delivered, template) {
            let (_, frame, id, result) = t;
            let value = c.rules.head_result(head);
            let text = format!("{}{value}{}", &frame[..result.start], &frame[result.end..]);
            // The id keeps its place; after the result it moves by the length change.
            let id_range = if id.start >= result.end {
                let (from, to) = (result.len(), value.len());
                id.start + to - from..id.end + to - from
            } else {
                id.clone()
            };
            let answer = UpstreamReply {
                text: Utf8Bytes::from(text),
                id_range,
                upstream: false,
            };
            self.metrics.count_call(method, CallOutcome::Head);
            RouteMetrics::inc(&self.metrics.head_answers);
            RouteMetrics::inc(&self.metrics.upstream_calls_saved);
            self.out.answered(reply, Ok(answer));
            return None;
        }
        let key = self.dialect.coalesce_key(&call)?;
        let following = self.following();
        let Some(c) = self.cache.as_mut() else {
            return Some((call, reply));
        };
        let head = c.delivered.filter(|_| following);
        let Some(answer) = c.store.get(&key, head, c.epoch) else {
            return Some((call, reply));
        };
        self.metrics.count_call(method, CallOutcome::Hit);
        RouteMetrics::inc(&self.metrics.cache_hits);
        RouteMetrics::inc(&self.metrics.upstream_calls_saved);
        self.out.answered(reply, Ok(answer));
        None
    }

    /// Count a call that shared an identical call in flight.
    pub(super) fn count_coalesced(&self, call: &Call) {
        RouteMetrics::inc(&self.metrics.upstream_calls_saved);
        if let Some(c) = self.cache.as_ref() {
            self.metrics.count_call(
                method_label(&call.method, c.rules.methods()),
                CallOutcome::Coalesced,
            );
        }
    }

    /// A call about to go to `slot`: held instead while it reads at `latest` and the
    /// slot's connection is behind the followed head (`Err`: held). Otherwise its ticket.
    pub(super) fn ticket(
        &mut self,
        slot: SlotId,
        call: Call,
        reply: O::CallReply,
        now: Instant,
    ) -> Result<(Call, O::CallReply, Option<Ticket>), ()> {
        let Some(c) = self.cache.as_mut() else {
            RouteMetrics::inc(&self.metrics.upstream_calls);
            return Ok((call, reply, None));
        };
        let rule = c.rules.rule(&call);
        let behind = c
            .delivered
            .is_some_and(|d| c.heads.get(&slot).is_none_or(|h| *h < d));
        if rule.latest && behind {
            // Bounded like the calls waiting for a connection: beyond, the error at once.
            if c.held.len() >= super::WAITING_CALLS {
                let e = HubError::Upstream(c.rules.behind_error(c.delivered.unwrap_or(0)));
                RouteMetrics::inc(&self.metrics.latest_wait_errors);
                RouteMetrics::inc(&self.metrics.request_errors);
                self.out.answered(reply, Err(e));
                return Err(());
            }
            RouteMetrics::inc(&self.metrics.latest_waits);
            let deadline = now + c.settings.latest_wait;
            c.held.push_back((call, reply, deadline));
            self.probe_head(slot, now);
            return Err(());
        }
        RouteMetrics::inc(&self.metrics.upstream_calls);
        if rule.lifetime == Lifetime::Never {
            return Ok((call, reply, None));
        }
        let method = method_label(&call.method, c.rules.methods());
        self.metrics.count_call(method, CallOutcome::Miss);
        RouteMetrics::inc(&self.metrics.cache_misses);
        let ticket = Ticket {
            rule,
            method,
            key: self.dialect.coalesce_key(&call),
            head: c.delivered,
            epoch: c.epoch,
            probe: false,
        };
        Ok((call, reply, Some(ticket)))
    }

    /// Ask `slot`'s connection for its head, unless a probe is already out or too recent.
    fn probe_head(&mut self, slot: SlotId, now: Instant) {
        let Some(c) = self.cache.as_mut() else {
            return;
        };
        if c.probes.get(&slot).is_some_and(|next| *next > now) {
            return;
        }
        let timeout = self.settings.request_timeout;
        c.probes.insert(slot, now + timeout.min(PROBE_EVERY));
        let call = c.rules.head_probe();
        let ticket = Ticket {
            rule: CacheRule::NEVER,
            method: "",
            key: None,
            head: None,
            epoch: c.epoch,
            probe: true,
        };
        let req = self.next_id();
        let text = self.dialect.render_upstream_call(&call, Some(req));
        let p = Pending::Call {
            replies: Vec::new(),
            key: None,
            slot,
            deadline: now + timeout,
            sent: now,
            cache: Some(ticket),
        };
        self.pending.insert(req.0, p);
        self.send(slot, text);
    }

    /// An upstream answer to a call with a ticket: learn heads from it, keep it if its
    /// lifetime allows.
    pub(super) fn cache_answer(
        &mut self,
        ticket: Ticket,
        slot: SlotId,
        text: &Utf8Bytes,
        id_range: &Range<usize>,
        outcome: &Result<Range<usize>, String>,
        now: Instant,
    ) {
        let Some(c) = self.cache.as_mut() else {
            return;
        };
        // Errors are never kept.
        let Ok(result) = outcome else {
            return;
        };
        let range = result.clone();
        let result = &text[range.clone()];
        if ticket.probe || ticket.rule.from_head {
            if let Some(h) = c.rules.answered_head(result) {
                if ticket.epoch == c.epoch {
                    c.template = Some((c.epoch, text.clone(), id_range.clone(), range));
                }
                c.heads.insert(slot, h);
                if ticket.probe {
                    // Asked again only after a while, if still needed.
                    c.probes.insert(slot, now + PROBE_EVERY);
                } else {
                    self.head_delivered(h);
                }
                self.release_held(now);
            }
            return;
        }
        let Some(key) = ticket.key else {
            return;
        };
        let following = self.following();
        let Some(c) = self.cache.as_mut() else {
            return;
        };
        let scope = match c
            .rules
            .settle(ticket.method, ticket.rule, result, c.delivered)
        {
            Lifetime::Never => return,
            Lifetime::Forever => Scope::Forever,
            Lifetime::Connection if ticket.epoch == c.epoch => Scope::Connection(c.epoch),
            // Kept only if the head did not move while it was in flight.
            Lifetime::Head => match (ticket.head, c.delivered) {
                (Some(a), Some(b)) if a == b && following => Scope::Head(b),
                _ => return,
            },
            Lifetime::Connection => return,
        };
        let reply = UpstreamReply {
            text: text.clone(),
            id_range: id_range.clone(),
            upstream: false,
        };
        let d = c.store.put(key, reply, scope);
        self.count_dropped(d);
    }

    /// A push on `slot` for `topics`: if it is the followed head stream, learn the head.
    pub(super) fn on_head_push(
        &mut self,
        slot: SlotId,
        topics: &[TopicId],
        text: &str,
        now: Instant,
    ) {
        let Some(c) = self.cache.as_mut() else {
            return;
        };
        if !c.follow.is_some_and(|t| topics.contains(&t)) {
            return;
        }
        let Some(h) = self.dialect.height(text) else {
            return;
        };
        c.heads.insert(slot, h);
        self.head_delivered(h);
        self.release_held(now);
    }

    /// A content-routed push on `slot` for `targets`: if the followed stream is among
    /// them, learn the head.
    pub(super) fn on_head_push_by_content(
        &mut self,
        slot: SlotId,
        targets: &[(crate::dialect::UpstreamSubId, crate::dialect::Group)],
        text: &str,
        now: Instant,
    ) {
        let Some(c) = self.cache.as_ref() else {
            return;
        };
        // A class-bound head not followed yet: a client's stream of a served class may be
        // this very push's (follow it now rather than at the next tick).
        // (A failed subscribe is retried only after FOLLOW_RETRY, not on every push.)
        if c.follow.is_none()
            && c.follow_key.as_ref().is_some_and(|k| k.class() != 0)
            && c.follow_retry.is_none_or(|t| t <= now)
        {
            self.follow_head(now);
        }
        let Some(c) = self.cache.as_ref() else {
            return;
        };
        let followed = (c.follow)
            .and_then(|t| self.table.get(t))
            .and_then(|t| t.upstream())
            .is_some_and(|up| targets.iter().any(|(u, _)| u == up));
        if !followed {
            return;
        }
        if let Some(t) = c.follow {
            self.on_head_push(slot, &[t], text, now);
        }
    }

    /// Head `h` reached clients: the followed head is the highest such.
    fn head_delivered(&mut self, h: u64) {
        let Some(c) = self.cache.as_mut() else {
            return;
        };
        if c.delivered.is_some_and(|d| d >= h) {
            return;
        }
        c.delivered = Some(h);
        self.metrics.followed_head.store(h as i64, Relaxed);
        let d = c.store.head_moved(h);
        self.count_dropped(d);
    }

    /// A slot's connection came up or went away: its head is unknown again, and answers
    /// kept per connection are dropped. A new connection is asked for its head at once.
    /// `up`: the time a new connection came up (`None`: it went away).
    pub(super) fn cache_connection_changed(&mut self, slot: SlotId, up: Option<Instant>) {
        let Some(c) = self.cache.as_mut() else {
            return;
        };
        c.heads.remove(&slot);
        c.probes.remove(&slot);
        c.epoch += 1;
        let d = c.store.connection_changed(c.epoch);
        self.count_dropped(d);
        // Its head, and the envelope its answers come in.
        if let Some(now) = up {
            self.probe_head(slot, now);
        }
    }

    /// Send the held calls whose connection caught up.
    fn release_held(&mut self, now: Instant) {
        let Some(c) = self.cache.as_mut() else {
            return;
        };
        if c.held.is_empty() {
            return;
        }
        let held = std::mem::take(&mut c.held);
        for (call, reply, deadline) in held {
            let ready = self.call_slot(call.class).is_some_and(|slot| {
                (self.cache.as_ref()).is_some_and(|c| match c.delivered {
                    Some(d) => c.heads.get(&slot).is_some_and(|h| *h >= d),
                    None => true,
                })
            });
            match (ready, self.cache.as_mut()) {
                (false, Some(c)) => c.held.push_back((call, reply, deadline)),
                _ => self.dispatch_call(call, reply, now),
            }
        }
    }

    /// Timers: held calls past their wait get the dialect's error; a connection still
    /// behind is probed again; a failed head subscription is retried.
    pub(super) fn cache_tick(&mut self, now: Instant) {
        let Some(c) = self.cache.as_mut() else {
            return;
        };
        let (rules, delivered) = (c.rules, c.delivered.unwrap_or(0));
        while c.held.front().is_some_and(|(_, _, at)| *at <= now) {
            if let Some((_, reply, _)) = c.held.pop_front() {
                RouteMetrics::inc(&self.metrics.latest_wait_errors);
                RouteMetrics::inc(&self.metrics.request_errors);
                let e = HubError::Upstream(rules.behind_error(delivered));
                self.out.answered(reply, Err(e));
            }
        }
        let Some(c) = self.cache.as_ref() else {
            return;
        };
        let mut behind: Vec<SlotId> = (c.held.iter())
            .filter_map(|(call, _, _)| self.call_slot(call.class))
            .collect();
        behind.sort_unstable();
        behind.dedup();
        for slot in behind {
            self.probe_head(slot, now);
        }
        self.unfollow_if_alone(now);
        // A class-bound head is followed as soon as a class is served (not only on retry).
        let retry = (self.cache.as_ref()).is_some_and(|c| {
            c.follow_retry.is_some_and(|t| t <= now)
                || (c.follow.is_none() && c.follow_key.as_ref().is_some_and(|k| k.class() != 0))
        });
        if retry {
            self.follow_head(now);
        }
        if let Some(c) = self.cache.as_ref() {
            self.metrics
                .cache_bytes
                .store(c.store.bytes() as i64, Relaxed);
            self.metrics
                .cache_entries
                .store(c.store.len() as i64, Relaxed);
        }
    }

    /// Shutdown: held calls are answered.
    pub(super) fn cache_shutdown(&mut self) {
        if let Some(c) = self.cache.as_mut() {
            for (_, reply, _) in std::mem::take(&mut c.held) {
                self.out.answered(reply, Err(HubError::ShuttingDown));
            }
        }
    }

    fn count_dropped(&self, d: Dropped) {
        (self.metrics.cache_evictions).fetch_add(d.evicted, Relaxed);
        (self.metrics.cache_invalidations).fetch_add(d.invalidated, Relaxed);
    }
}
