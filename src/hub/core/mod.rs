//! The sans-IO route core, in quinn-proto's shape: [`RouteCore::handle`] takes an
//! [`Event`] and the time, [`RouteCore::handle_timeout`] runs the timers,
//! [`RouteCore::poll_action`] hands out the socket work ([`Action`]) for the shell to do.
//! No runtime, no socket, no clock: time is always an argument.
//!
//! The core owns everything a route decides: the [`TopicTable`] (dedup, refcount,
//! linger), the topic lifecycle around it (resubscribe and its give-up, the one-shot
//! cache, stall detection, gap detection), subscribes of one key or a set, the pending-request map with its
//! deadlines, calls waiting for a connection, and every slot's connection state, backoff
//! (jitter from an owned seeded RNG), ping, idle and fail-back timing.
//!
//! Answers and deliveries are non-blocking channel sends, so they are not actions: the
//! core makes them at once through the shell's [`Outbox`], which also keeps its own
//! per-topic fan-out (`Outbox::Topic`) and reply senders as associated types. Doing them
//! synchronously keeps their order without bookkeeping (a subscriber's receiver is taken
//! before the next notification of its topic is sent). Tests use a recording outbox.
//!
//! Timers: the shell calls [`RouteCore::handle_timeout`] on a steady tick (100 ms, the
//! resolution the actor always had); every due deadline is handled then. There is no
//! `poll_timeout`: the earliest deadline would cost a scan of every topic per event.
//! Metrics are the route's `RouteMetrics` atomics, updated where the decisions are made.

mod backfill;
mod cache;
mod frames;
mod hedge;
mod history;
mod inject;
mod resume;
mod resume_solana;
mod routed;
mod sessions;
mod since_routed;
mod slots;
mod steps;

use super::table::{SlotId, TableConfig, TopicId, TopicTable};
use super::{HubError, Notice, UpstreamReply, Utf8Bytes, WireText};
use crate::config::RouteSettings;
use crate::dialect::{Call, ClientSubId, Dialect, SubscriptionKey, UpstreamReqId};
use crate::telemetry::RouteMetrics;
use slots::{Slot, SlotState};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::info;

/// Calls held while no upstream is connected; beyond this they fail at once.
pub const WAITING_CALLS: usize = 4096;
/// How long the final notification of a one-shot topic (a Solana signature) is kept for
/// late joiners: the node never notifies a signature processed before the subscription.
pub const ENDED_TTL: Duration = Duration::from_secs(60);
/// How long a topic's resubscribes may keep being refused (connections replaced with
/// growing backoff meanwhile) before its subscriptions end.
pub const RESUBSCRIBE_GIVE_UP: Duration = Duration::from_secs(60);

/// What the shell provides for answers and deliveries: all non-blocking, none on a socket.
pub trait Outbox {
    /// A topic's fan-out (the shell: a broadcast sender). Made only for a new topic.
    type Topic;
    /// One session's ordered mailbox (content-routed dialects).
    type Mailbox: Clone;
    /// Where a subscribe's answer goes.
    type SubscribeReply;
    /// Where a call's answer goes.
    type CallReply;

    fn new_topic(&mut self) -> Self::Topic;
    /// Send `notice` to a topic's subscribers (none listening is fine).
    fn broadcast(&mut self, topic: &Self::Topic, notice: Notice);
    fn mailbox_id(&self, mailbox: &Self::Mailbox) -> u64;
    fn wants_gaps(&self, mailbox: &Self::Mailbox) -> bool;
    /// Queue a frame in a session's mailbox.
    fn push(&mut self, mailbox: &Self::Mailbox, frame: WireText);
    /// A subscribe finished: the keys that joined (held by `mailbox` when content-routed)
    /// and the first error. Keys whose topic failed are left out.
    fn subscribed(
        &mut self,
        reply: Self::SubscribeReply,
        mailbox: Option<u64>,
        joined: Vec<KeyJoined<'_, Self::Topic>>,
        error: Option<HubError>,
    );
    fn answered(&mut self, reply: Self::CallReply, result: Result<UpstreamReply, HubError>);
}

/// One key of a finished subscribe, for the shell to hand to its session.
pub struct KeyJoined<'a, T> {
    pub key: SubscriptionKey,
    pub topic: TopicId,
    pub public_id: ClientSubId,
    /// The topic's fan-out; `None` for an ended one-shot (its stream ends after `replay`).
    pub fan: Option<&'a T>,
    pub replay: Option<Notice>,
    pub steady: bool,
    /// `?since=N`: the gap notice for what the history cannot vouch for (if any), then
    /// what the topic delivered after N, handed over with the fan-out in one step.
    pub history: Vec<Notice>,
}

/// Something that happened: a session command, a release, or news from a connection.
/// `generation` names the connection attempt an event is about; stale ones are ignored.
pub enum Event<O: Outbox> {
    /// Join `keys` (id-routed: one); content-routed ones for `mailbox`.
    Subscribe {
        keys: Vec<SubscriptionKey>,
        mailbox: Option<O::Mailbox>,
        reply: O::SubscribeReply,
        /// `?since=N`: each key joins with what its history holds after height N.
        since: Option<u64>,
    },
    /// `reply: None` forwards a client notification (dropped when nothing is connected).
    Call {
        call: Call,
        reply: Option<O::CallReply>,
    },
    /// A `ReleaseGuard` was dropped (with the mailbox that held the topic, if any).
    Release {
        topic: TopicId,
        mailbox: Option<u64>,
    },
    /// The connection asked for by [`Action::Connect`] is open (the shell holds it until
    /// [`Action::Install`]).
    Connected { slot: SlotId, generation: u64 },
    ConnectFailed {
        slot: SlotId,
        generation: u64,
        reason: String,
    },
    /// The fail-back probe ([`Action::Probe`]) connected (`ok`) or not.
    Probed {
        slot: SlotId,
        generation: u64,
        ok: bool,
    },
    /// A text frame (or a binary frame holding UTF-8) read on a slot.
    Text {
        slot: SlotId,
        generation: u64,
        text: Utf8Bytes,
    },
    /// A binary frame that is not UTF-8.
    NotUtf8 { slot: SlotId, generation: u64 },
    /// Any other frame (ping, pong): the connection is alive.
    Activity { slot: SlotId, generation: u64 },
    /// The answer to an [`Action::Fetch`] (the node's HTTP body; an error as a JSON-RPC
    /// error frame). Ignored if the slot's connection was replaced meanwhile.
    Fetched {
        slot: SlotId,
        generation: u64,
        text: Utf8Bytes,
    },
    /// The connection failed: read or write error, close, end of stream.
    Lost {
        slot: SlotId,
        generation: u64,
        reason: String,
    },
    /// Answer everything, unsubscribe upstream, close the connections.
    Shutdown,
}

/// Socket work for the shell, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// After `delay`, connect `slot` to upstream number `upstream`; report
    /// [`Event::Connected`] or [`Event::ConnectFailed`] with `generation`.
    Connect {
        slot: SlotId,
        generation: u64,
        upstream: usize,
        delay: Duration,
    },
    /// Open a probe connection to the slot's primary (upstream `upstream`: 0, or a hedge
    /// lane's own); report [`Event::Probed`].
    Probe {
        slot: SlotId,
        generation: u64,
        upstream: usize,
    },
    /// Make the connection just reported the slot's; tag its reads with `generation`.
    Install {
        slot: SlotId,
        generation: u64,
    },
    Send {
        slot: SlotId,
        text: String,
    },
    /// POST the JSON-RPC request `body` to the HTTP endpoint of upstream number `upstream`
    /// (`http_upstream`, or its WebSocket URL as http/https) for the slot's connection
    /// `generation`; report the answer as [`Event::Fetched`]. Backfill calls of dialects
    /// whose subscription socket serves no calls (Solana).
    Fetch {
        slot: SlotId,
        generation: u64,
        upstream: usize,
        body: String,
    },
    Ping {
        slot: SlotId,
    },
    /// Close the slot's connection politely and stop reading it.
    Close {
        slot: SlotId,
    },
    /// Forget the slot's (failed) connection.
    Drop {
        slot: SlotId,
    },
}

/// Who waits for a topic's confirmation: a subscribe, by its number.
type Waiter = u64;

/// A subscribe waiting for some of its keys to be confirmed.
struct Subscribing<O: Outbox> {
    remaining: usize,
    keys: Vec<KeyEntry>,
    mailbox: Option<u64>,
    error: Option<HubError>,
    reply: O::SubscribeReply,
    since: Option<u64>,
    /// `?since=` older than some keys' history: whether their fetch was started, and it.
    resumed: bool,
    resumes: Vec<resume::Resume>,
}

/// One key of a [`Subscribing`]: its topic, or the final notification of a one-shot that
/// just ended (served under a fresh id, without a topic).
struct KeyEntry {
    key: SubscriptionKey,
    topic: TopicId,
    ended: Option<(ClientSubId, Notice)>,
}

/// Per-topic data kept in the table.
struct TopicData<O: Outbox> {
    fan: O::Topic,
    public_id: ClientSubId,
    /// Last notification, kept only for keys that replay it to late joiners.
    last: Option<Notice>,
    /// When a resubscribe was sent (for the resubscribe latency metric).
    resubscribing_since: Option<Instant>,
    /// Content-routed topics: the mailboxes of the sessions holding it, by mailbox id.
    subscribers: HashMap<u64, O::Mailbox>,
    /// Last notification (or confirmation): a steady topic silent too long is a stall.
    last_notice: Instant,
    /// Since when this topic's resubscribes have been refused (None: not refused).
    refused_since: Option<Instant>,
    /// Recent notifications by height, for `?since=` (id-routed topics with heights).
    history: history::History,
    /// Topics that are backfilled after a switch (`backfill`, and a dialect that can).
    track: Option<backfill::Track>,
    /// Hedged routes: the dedupe window and when each lane last delivered.
    hedge: Option<Box<hedge::TopicHedge>>,
}

enum Pending<O: Outbox> {
    Call {
        /// The caller, then every identical call coalesced onto this one.
        replies: Vec<O::CallReply>,
        /// Its coalescing key (`Dialect::coalesce_key`), while it is in flight.
        key: Option<Box<str>>,
        slot: SlotId,
        deadline: Instant,
        sent: Instant,
        /// What the cache needs of its answer (cacheable calls and head probes).
        cache: Option<cache::Ticket>,
    },
    /// One upstream subscribe for these topics (several for batching dialects).
    Subscribe {
        topics: Vec<(TopicId, SubscriptionKey)>,
        slot: SlotId,
        deadline: Instant,
    },
    Unsubscribe {
        slot: SlotId,
        deadline: Instant,
    },
    /// A request of a topic's backfill (its answer comes back to the core).
    Backfill {
        topic: TopicId,
        step: backfill::Step,
        slot: SlotId,
        deadline: Instant,
    },
}

impl<O: Outbox> Pending<O> {
    fn slot(&self) -> SlotId {
        match self {
            Pending::Call { slot, .. }
            | Pending::Subscribe { slot, .. }
            | Pending::Unsubscribe { slot, .. }
            | Pending::Backfill { slot, .. } => *slot,
        }
    }
    fn deadline(&self) -> Instant {
        match self {
            Pending::Call { deadline, .. }
            | Pending::Subscribe { deadline, .. }
            | Pending::Unsubscribe { deadline, .. }
            | Pending::Backfill { deadline, .. } => *deadline,
        }
    }
}

/// One route's decisions. See the module documentation.
pub struct RouteCore<O: Outbox> {
    settings: RouteSettings,
    dialect: Arc<dyn Dialect>,
    metrics: Arc<RouteMetrics>,
    out: O,
    table: TopicTable<Waiter, TopicData<O>>,
    slots: Vec<Slot>,
    pending: HashMap<u64, Pending<O>>,
    /// Identical calls in flight: coalescing key → the request they share.
    coalescing: HashMap<Box<str>, u64>,
    waiting_calls: VecDeque<(Call, O::CallReply, Instant)>,
    next_req: u64,
    subscribing: HashMap<u64, Subscribing<O>>,
    next_subscribe: u64,
    /// Reused per content-routed push: mailbox id → (a topic it holds, groups matched).
    scratch: HashMap<u64, (TopicId, u8)>,
    /// Final notifications of ended one-shot topics, for late joiners (bounded by TTL).
    ended: HashMap<SubscriptionKey, (Notice, Instant)>,
    /// Slots found dead while handling an event; torn down at its end.
    dead: Vec<(SlotId, String)>,
    actions: VecDeque<Action>,
    /// Hedged routes: content-routed windows and each slot's last steady height.
    hedge: hedge::Hedge,
    rng: fastrand::Rng,
    /// Sessions that asked for gap notices (heights are read only while there are some).
    gap_listeners: Arc<AtomicUsize>,
    /// Topics whose backfill is going out, a burst per tick.
    draining: Vec<TopicId>,
    /// The time of the event (or tick) being handled, for work started deep inside it.
    now: Instant,
    /// Content-routed backfill: per slot, what its connection delivered of the ledgers.
    ledgers: HashMap<SlotId, routed::Ledgers<O::Mailbox>>,
    /// Content-routed `?since=`: per resuming session (mailbox id), its fetch and seam.
    since_routed: HashMap<u64, since_routed::Since<O::Mailbox>>,
    /// The head-aware call cache (`None`: off, or nothing to cache on this dialect).
    cache: Option<cache::Cache<O>>,
}

impl<O: Outbox> RouteCore<O> {
    /// A core that starts connecting slot 0 at once. `seed` seeds the backoff jitter.
    pub fn new(
        settings: RouteSettings,
        dialect: Arc<dyn Dialect>,
        metrics: Arc<RouteMetrics>,
        out: O,
        gap_listeners: Arc<AtomicUsize>,
        seed: u64,
        now: Instant,
    ) -> Self {
        let table = TopicTable::new(TableConfig {
            linger: settings.linger,
            max_slots: settings.max_upstream_connections,
            topics_per_slot: settings.topics_per_upstream_connection,
            subscribe_timeout: settings.subscribe_timeout,
            lanes: settings.hedge.max(1),
        });
        let cache = (settings.cache.clone())
            .zip(dialect.cache_rules())
            .map(|(s, rules)| cache::Cache::new(s, rules));
        let mut core = RouteCore {
            cache,
            settings,
            dialect,
            metrics,
            out,
            table,
            slots: Vec::new(),
            pending: HashMap::new(),
            coalescing: HashMap::new(),
            waiting_calls: VecDeque::new(),
            next_req: 1,
            subscribing: HashMap::new(),
            next_subscribe: 1,
            scratch: HashMap::new(),
            ended: HashMap::new(),
            dead: Vec::new(),
            actions: VecDeque::new(),
            hedge: hedge::Hedge::default(),
            rng: fastrand::Rng::with_seed(seed),
            gap_listeners,
            draining: Vec::new(),
            now,
            ledgers: HashMap::new(),
            since_routed: HashMap::new(),
        };
        // Slot k is hedge lane k's first connection (one lane without hedging).
        for k in 0..core.table.lanes() {
            core.ensure_slot(SlotId(k), now);
            core.schedule_connect(SlotId(k), Duration::ZERO);
        }
        core.follow_head(now);
        core
    }

    pub fn outbox(&self) -> &O {
        &self.out
    }

    /// The next piece of socket work, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn handle(&mut self, event: Event<O>, now: Instant) {
        self.now = now;
        match event {
            Event::Subscribe {
                keys,
                mailbox,
                reply,
                since,
            } => self.on_subscribe(keys, mailbox, reply, since, now),
            Event::Call { call, reply } => self.on_call(call, reply, now),
            Event::Release { topic, mailbox } => {
                if let (Some(mb), Some(t)) = (mailbox, self.table.get_mut(topic)) {
                    t.data.subscribers.remove(&mb);
                }
                self.table.release(topic, now);
            }
            Event::Connected { slot, generation } => self.on_connected(slot, generation, now),
            Event::ConnectFailed {
                slot,
                generation,
                reason,
            } => self.on_connect_failed(slot, generation, &reason),
            Event::Probed {
                slot,
                generation,
                ok,
            } => self.on_probed(slot, generation, ok, now),
            Event::Text {
                slot,
                generation,
                text,
            } => {
                if self.alive(slot, generation, now) {
                    self.on_text(slot, text, now);
                }
            }
            Event::NotUtf8 { slot, generation } => {
                if self.alive(slot, generation, now) {
                    RouteMetrics::inc(&self.metrics.malformed_upstream);
                    tracing::warn!("malformed upstream frame: binary frame is not UTF-8");
                }
            }
            Event::Activity { slot, generation } => {
                self.alive(slot, generation, now);
            }
            Event::Fetched {
                slot,
                generation,
                text,
            } => {
                if self.current(slot, generation) {
                    self.on_text(slot, text, now);
                }
            }
            Event::Lost {
                slot,
                generation,
                reason,
            } => {
                if self.current(slot, generation) {
                    self.dead.push((slot, reason));
                }
            }
            Event::Shutdown => self.shutdown(),
        }
        self.reap_dead();
    }

    /// Run every timer due at `now`: the shell calls this on a steady tick.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.ended
            .retain(|_, (_, at)| now.duration_since(*at) < ENDED_TTL);
        // Linger expiry and subscribe waits that never got a connection.
        let tick = self.table.on_tick(now);
        for w in tick.expired {
            self.resolve(w, Err(HubError::Unavailable));
        }
        drop(tick.removed);
        self.send_unsubscribes(tick.unsubscribe, now);
        // Request deadlines. A subscribe that times out means a hung upstream: reconnect.
        let mut expired: Vec<u64> = (self.pending.iter())
            .filter(|(_, p)| p.deadline() <= now)
            .map(|(id, _)| *id)
            .collect();
        expired.sort_unstable();
        for id in expired {
            match self.pending.remove(&id) {
                Some(Pending::Call { replies, key, .. }) => {
                    self.answer_call(replies, key, Err(HubError::Timeout));
                }
                Some(Pending::Subscribe { slot, .. }) => {
                    self.dead
                        .push((slot, "subscribe not answered in time".into()));
                }
                Some(Pending::Backfill { topic, step, .. }) => {
                    self.on_backfill_answer(topic, step, Err(()), now);
                }
                Some(Pending::Unsubscribe { .. }) | None => {}
            }
        }
        while (self.waiting_calls.front()).is_some_and(|(_, _, deadline)| *deadline <= now) {
            if let Some((_, reply, _)) = self.waiting_calls.pop_front() {
                RouteMetrics::inc(&self.metrics.request_errors);
                self.out.answered(reply, Err(HubError::Unavailable));
            }
        }
        self.check_resumes(now);
        self.since_tick(now);
        self.drain_backfills();
        self.hedge_tick(now);
        self.cache_tick(now);
        self.check_stalls(now);
        self.slot_timers(now);
        self.store_topics();
        self.reap_dead();
    }

    fn store_topics(&self) {
        self.metrics
            .topics
            .store(self.client_topics() as i64, Relaxed);
    }

    fn next_id(&mut self) -> UpstreamReqId {
        let id = self.next_req;
        self.next_req += 1;
        UpstreamReqId(id)
    }

    fn send(&mut self, slot: SlotId, text: String) {
        self.actions.push_back(Action::Send { slot, text });
    }

    /// Answer everything waiting, unsubscribe upstream, close the connections.
    fn shutdown(&mut self) {
        let mut calls: Vec<_> = self.pending.drain().collect();
        calls.sort_unstable_by_key(|(id, _)| *id);
        for (_, p) in calls {
            if let Pending::Call { replies, .. } = p {
                for reply in replies {
                    self.out.answered(reply, Err(HubError::ShuttingDown));
                }
            }
        }
        for (_, reply, _) in std::mem::take(&mut self.waiting_calls) {
            self.out.answered(reply, Err(HubError::ShuttingDown));
        }
        self.cache_shutdown();
        // Waiting subscribes are dropped unanswered: the shell's senders close, which its
        // sessions read as shutting down.
        self.subscribing.clear();
        let (unsub, data) = self.table.drain();
        drop(data);
        let n = unsub.len();
        for (slot, key, up) in unsub {
            let req = self.next_id();
            let connected = self.slots.get(slot.0).map(|s| s.state) == Some(SlotState::Connected);
            if let Some(text) = (self.dialect).render_upstream_unsubscribe(&[(&key, &up)], req) {
                if connected {
                    self.send(slot, text);
                }
            }
        }
        for i in 0..self.slots.len() {
            let s = &mut self.slots[i];
            if s.state == SlotState::Connected {
                s.state = SlotState::Idle;
                s.generation += 1;
                self.actions.push_back(Action::Close { slot: SlotId(i) });
                RouteMetrics::add(&self.metrics.upstream_connections, -1);
            }
        }
        self.metrics.topics.store(0, Relaxed);
        info!(unsubscribed = n, "route stopped");
    }
}

impl<O: Outbox> TopicData<O> {
    fn new(dialect: &dyn Dialect, out: &mut O, tracked: bool, lanes: usize, now: Instant) -> Self {
        TopicData {
            fan: out.new_topic(),
            public_id: dialect.mint_sub_id(),
            last: None,
            resubscribing_since: None,
            subscribers: HashMap::new(),
            last_notice: now,
            refused_since: None,
            history: history::History::default(),
            track: tracked.then(|| backfill::Track::new(dialect)),
            hedge: hedge::TopicHedge::new(lanes, now),
        }
    }
}

// Last in the file: the invariant checks read everything above `#[cfg(test)]`.
#[cfg(test)]
mod tests;
