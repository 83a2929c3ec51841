//! The route actor: the only task that writes to a route's upstream sockets. It owns the
//! [`TopicTable`], the pending-request map and the connection pool ("slots"), and runs one
//! `select!` loop over commands, releases, upstream frames, connect results and a tick.

use super::backoff::Backoff;
use super::connect::{connect, inbound, Inbound, UpstreamStream};
use crate::config::RouteSettings;
use crate::dialect::{
    splice, Call, ClientSubId, Dialect, Group, SubscriptionKey, UpstreamFrame, UpstreamReqId,
    UpstreamSubId,
};
use crate::hub::table::{
    Action, Confirmed, Failed, Join, SlotId, TableConfig, TopicId, TopicTable,
};
use crate::hub::{
    Command, HubError, Joined, Mailbox, Notice, Release, ReleaseGuard, RouteHandle, SetJoined,
    UpstreamReply, WireText,
};
use crate::telemetry::{redact_url, RouteMetrics};
use futures_util::stream::{self, BoxStream, SplitSink};
use futures_util::{SinkExt, StreamExt};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_stream::StreamMap;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn, Instrument};

/// Commands queued per route before senders wait (backpressure on sessions).
const COMMAND_QUEUE: usize = 4096;
/// Calls held while no upstream is connected; beyond this they fail at once.
const WAITING_CALLS: usize = 4096;
/// A write the upstream socket does not accept within this long marks the connection dead:
/// the actor writes inline, so a jammed socket must not stall the route for longer.
const UPSTREAM_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Resolution of linger, timeouts and pings.
const TICK: Duration = Duration::from_millis(100);
/// How long the final notification of a one-shot topic (a Solana signature) is kept for
/// late joiners: the node never notifies a signature processed before the subscription.
const ENDED_TTL: Duration = Duration::from_secs(60);
/// How long a topic's resubscribes may keep being refused (connections replaced with
/// growing backoff meanwhile) before its subscriptions end.
const RESUBSCRIBE_GIVE_UP: Duration = Duration::from_secs(60);

/// Who waits for a topic's confirmation.
enum Waiter {
    /// One client subscription (id-routed dialects).
    One(oneshot::Sender<Result<Joined, HubError>>),
    /// A key of a set join (content-routed dialects), by set id.
    Set(u64),
}

/// A set join waiting for some of its keys to be confirmed.
struct SetJoin {
    remaining: usize,
    guards: Vec<(SubscriptionKey, ReleaseGuard)>,
    error: Option<HubError>,
    reply: oneshot::Sender<Result<SetJoined, HubError>>,
}
type CallReply = oneshot::Sender<Result<UpstreamReply, HubError>>;
type ReadItem = Option<Result<Message, tokio_tungstenite::tungstenite::Error>>;

/// Per-topic data kept in the table.
struct TopicData {
    tx: broadcast::Sender<Notice>,
    public_id: ClientSubId,
    /// Last notification, kept only for keys that replay it to late joiners.
    last: Option<Notice>,
    /// When a resubscribe was sent (for the resubscribe latency metric).
    resubscribing_since: Option<Instant>,
    /// Content-routed topics: the mailboxes of the sessions holding it, by mailbox id.
    subscribers: HashMap<u64, Mailbox>,
    /// Last notification (or confirmation): a steady topic silent too long is a stall.
    last_notice: Instant,
    /// Since when this topic's resubscribes have been refused (None: not refused).
    refused_since: Option<Instant>,
}

enum Pending {
    Call {
        reply: CallReply,
        slot: SlotId,
        deadline: Instant,
        sent: Instant,
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
}

impl Pending {
    fn slot(&self) -> SlotId {
        match self {
            Pending::Call { slot, .. }
            | Pending::Subscribe { slot, .. }
            | Pending::Unsubscribe { slot, .. } => *slot,
        }
    }
    fn deadline(&self) -> Instant {
        match self {
            Pending::Call { deadline, .. }
            | Pending::Subscribe { deadline, .. }
            | Pending::Unsubscribe { deadline, .. } => *deadline,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Idle,
    Connecting,
    Connected,
}

struct Slot {
    state: SlotState,
    sink: Option<SplitSink<UpstreamStream, Message>>,
    /// Index into the route's upstream list used by the current/next attempt.
    upstream: usize,
    backoff: Backoff,
    /// Bumped per connection attempt: stale connect results and frames are ignored.
    generation: u64,
    last_rx: Instant,
    last_ping: Instant,
    /// Whether this slot has been connected before (a later connect is a reconnect).
    was_connected: bool,
    /// Identities of recent content-routed messages on this connection.
    recent: Recent,
    /// When the primary was last tried while on a backup (fail-back).
    last_failback: Instant,
    failback_in_flight: bool,
    /// Height of the last steady notification (block, slot, ledger) on this slot.
    last_height: Option<u64>,
    /// After a connection was replaced: where the possible gap starts (`Some(None)`:
    /// unknown), until the first steady notification on the new connection closes it.
    gap_from: Option<Option<u64>>,
}

/// A bounded set of recently seen message identities (oldest evicted first).
#[derive(Default)]
struct Recent {
    order: VecDeque<Box<str>>,
    set: std::collections::HashSet<Box<str>>,
}

impl Recent {
    const CAPACITY: usize = 1024;

    /// Record `id`; `false` if it was already there.
    fn insert(&mut self, id: Box<str>) -> bool {
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

struct ConnectResult {
    slot: SlotId,
    generation: u64,
    result: Result<UpstreamStream, String>,
    /// A probe of the primary while the slot runs on a backup.
    failback: bool,
}

/// Start the actor for one route; returns the handle sessions use.
pub fn spawn_route(
    settings: RouteSettings,
    dialect: Arc<dyn Dialect>,
    metrics: Arc<RouteMetrics>,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> RouteHandle {
    let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
    let (release_tx, release_rx) = mpsc::unbounded_channel();
    let (connect_tx, connect_rx) = mpsc::channel(16);
    let mut handle = RouteHandle::new(
        settings.path.clone().into(),
        dialect.clone(),
        metrics.clone(),
        cmd_tx,
        settings.request_timeout.max(settings.subscribe_timeout) + Duration::from_secs(5),
    );
    handle = handle.with_upstreams(settings.upstreams.iter().map(|u| redact_url(u)).collect());
    if let Some(url) = &settings.http_upstream {
        match super::http::HttpForwarder::new(
            url,
            settings.request_timeout,
            settings.upstream_max_message_bytes,
        ) {
            Ok(f) => handle = handle.with_http(f),
            Err(e) => warn!(error = %e, "http_upstream unusable; HTTP POSTs will be refused"),
        }
    }
    let table = TopicTable::new(TableConfig {
        linger: settings.linger,
        max_slots: settings.max_upstream_connections,
        topics_per_slot: settings.topics_per_upstream_connection,
        subscribe_timeout: settings.subscribe_timeout,
    });
    let actor = Actor {
        dialect,
        metrics,
        table,
        slots: Vec::new(),
        reads: StreamMap::new(),
        pending: HashMap::new(),
        waiting_calls: VecDeque::new(),
        next_req: 1,
        release_tx,
        connect_tx,
        shutdown: shutdown.clone(),
        tracker: tracker.clone(),
        dead: Vec::new(),
        ended: HashMap::new(),
        set_joins: HashMap::new(),
        next_set: 1,
        scratch: HashMap::new(),
        settings,
    };
    let span = tracing::info_span!("route", path = %actor.settings.path);
    tracker.spawn(actor.run(cmd_rx, release_rx, connect_rx).instrument(span));
    handle
}

struct Actor {
    settings: RouteSettings,
    dialect: Arc<dyn Dialect>,
    metrics: Arc<RouteMetrics>,
    table: TopicTable<Waiter, TopicData>,
    slots: Vec<Slot>,
    reads: StreamMap<usize, BoxStream<'static, (u64, ReadItem)>>,
    /// Set joins waiting for confirmations, by set id.
    set_joins: HashMap<u64, SetJoin>,
    next_set: u64,
    /// Reused per content-routed push: mailbox id → (a topic it holds, groups matched).
    scratch: HashMap<u64, (TopicId, u8)>,
    pending: HashMap<u64, Pending>,
    waiting_calls: VecDeque<(Call, CallReply, Instant)>,
    next_req: u64,
    release_tx: mpsc::UnboundedSender<Release>,
    connect_tx: mpsc::Sender<ConnectResult>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// Slots found dead while handling an event; torn down after it.
    dead: Vec<(SlotId, String)>,
    /// Final notifications of ended one-shot topics, for late joiners (bounded by TTL).
    ended: HashMap<SubscriptionKey, (Notice, Instant)>,
}

impl Actor {
    async fn run(
        mut self,
        mut cmd_rx: mpsc::Receiver<Command>,
        mut release_rx: mpsc::UnboundedReceiver<Release>,
        mut connect_rx: mpsc::Receiver<ConnectResult>,
    ) {
        self.ensure_slot(SlotId(0));
        self.schedule_connect(SlotId(0), Duration::ZERO);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                Some((slot, (generation, item))) = self.reads.next() => {
                    self.on_read(SlotId(slot), generation, item).await;
                }
                Some((topic, session)) = release_rx.recv() => {
                    if let (Some(mailbox), Some(t)) = (session, self.table.get_mut(topic)) {
                        t.data.subscribers.remove(&mailbox);
                    }
                    self.table.release(topic, Instant::now());
                }
                Some(cmd) = cmd_rx.recv() => self.on_command(cmd).await,
                Some(res) = connect_rx.recv() => self.on_connect_result(res).await,
                _ = tick.tick() => self.on_tick().await,
            }
            self.reap_dead();
        }
        self.stop(&mut cmd_rx).await;
    }

    fn ensure_slot(&mut self, slot: SlotId) {
        while self.slots.len() <= slot.0 {
            let now = Instant::now();
            self.slots.push(Slot {
                state: SlotState::Idle,
                sink: None,
                upstream: 0,
                backoff: Backoff::new(self.settings.backoff_initial, self.settings.backoff_max),
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

    fn schedule_connect(&mut self, slot: SlotId, delay: Duration) {
        let s = &mut self.slots[slot.0];
        s.generation += 1;
        s.state = SlotState::Connecting;
        let generation = s.generation;
        let url = self.settings.upstreams[s.upstream].clone();
        let timeout = self.settings.connect_timeout;
        let max = self.settings.upstream_max_message_bytes;
        let tx = self.connect_tx.clone();
        let cancel = self.shutdown.clone();
        self.tracker.spawn(async move {
            let attempt = async {
                tokio::time::sleep(delay).await;
                connect(&url, timeout, max).await.map_err(|e| e.to_string())
            };
            tokio::select! {
                _ = cancel.cancelled() => {}
                result = attempt => {
                    let _ = tx.send(ConnectResult { slot, generation, result, failback: false }).await;
                }
            }
        });
    }

    async fn on_connect_result(&mut self, res: ConnectResult) {
        if res.failback {
            return self.on_failback_probe(res).await;
        }
        let Some(s) = self.slots.get_mut(res.slot.0) else {
            return;
        };
        if s.generation != res.generation || s.state != SlotState::Connecting {
            return;
        }
        match res.result {
            Ok(ws) => self.install(res.slot, ws).await,
            Err(reason) => {
                RouteMetrics::inc(&self.metrics.upstream_connect_failures);
                let n = self.settings.upstreams.len();
                s.upstream = (s.upstream + 1) % n;
                let delay = s.backoff.next_delay(fastrand::f64());
                warn!(slot = res.slot.0, %reason, next_upstream = %redact_url(&self.settings.upstreams[s.upstream]), retry_in = ?delay, "upstream connect failed");
                self.schedule_connect(res.slot, delay);
            }
        }
    }

    /// Make `ws` the slot's connection and (re)subscribe every topic of the slot on it.
    async fn install(&mut self, slot: SlotId, ws: UpstreamStream) {
        let s = &mut self.slots[slot.0];
        let url = redact_url(&self.settings.upstreams[s.upstream]);
        let (sink, read) = ws.split();
        let generation = s.generation;
        let reads = read
            .map(Some)
            .chain(stream::once(async { None }))
            .map(move |item| (generation, item))
            .boxed();
        self.reads.insert(slot.0, reads);
        let now = Instant::now();
        s.sink = Some(sink);
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
            self.metrics.active_upstream.store(s.upstream, Relaxed);
        }
        RouteMetrics::add(&self.metrics.upstream_connections, 1);
        info!(slot = slot.0, upstream = %url, "upstream connected");
        let ids = self.table.on_slot_up(slot);
        // The backoff restarts once the connection proves useful: at once when there is
        // nothing to resubscribe, else at the first confirmed (re)subscribe, so a node
        // that accepts connections but refuses subscriptions is retried ever more slowly.
        if ids.is_empty() {
            self.slots[slot.0].backoff.reset();
        }
        for &id in &ids {
            if let Some(t) = self.table.get_mut(id) {
                if t.confirmed() {
                    t.data.resubscribing_since = Some(now);
                }
                t.data.last_notice = now;
            }
        }
        self.send_subscribes(ids, slot).await;
        self.flush_waiting_calls().await;
        // Without a steady stream on this connection the gap's end is never learnt.
        let steady = self.table.on_slot(slot).any(|(_, t)| t.key.flags().steady);
        if !steady {
            if let Some(from) = self.slots[slot.0].gap_from.take() {
                self.announce_gap(slot, from, None);
            }
        }
    }

    /// A steady notification with `height` arrived on `slot`: remember it, and close an
    /// open gap (announcing it if anything may have been missed).
    fn on_height(&mut self, slot: SlotId, height: u64) {
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

    /// Tell clients that asked (`?gap_notices=1`) which heights may have been missed.
    fn announce_gap(&mut self, slot: SlotId, from: Option<u64>, to: Option<u64>) {
        RouteMetrics::inc(&self.metrics.gap_notices);
        let mut told = std::collections::HashSet::new();
        for (_, t) in self.table.on_slot(slot) {
            for mb in t.data.subscribers.values() {
                if mb.wants_gap_notices() && told.insert(mb.id()) {
                    if let Some((frame, _)) = self.dialect.render_gap(&t.data.public_id, from, to) {
                        mb.deliver(WireText::from(frame));
                    }
                }
            }
            if t.data.subscribers.is_empty() {
                if let Some((frame, id_range)) =
                    self.dialect.render_gap(&t.data.public_id, from, to)
                {
                    let _ = t.data.tx.send(Notice {
                        frame: WireText::from(frame),
                        id_range,
                        gap: true,
                    });
                }
            }
        }
    }

    /// While a slot runs on a backup, try the primary; once it accepts, move the slot
    /// back to it (make before break: the new connection is up before the old one goes).
    fn start_failback_probe(&mut self, slot: SlotId) {
        let s = &mut self.slots[slot.0];
        s.failback_in_flight = true;
        s.last_failback = Instant::now();
        let generation = s.generation;
        let url = self.settings.upstreams[0].clone();
        let (timeout, max) = (
            self.settings.connect_timeout,
            self.settings.upstream_max_message_bytes,
        );
        let tx = self.connect_tx.clone();
        let cancel = self.shutdown.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                result = connect(&url, timeout, max) => {
                    let result = result.map_err(|e| e.to_string());
                    let _ = tx.send(ConnectResult { slot, generation, result, failback: true }).await;
                }
            }
        });
    }

    async fn on_failback_probe(&mut self, res: ConnectResult) {
        let slot = res.slot;
        let busy = self.pending.values().any(|p| p.slot() == slot);
        let Some(s) = self.slots.get_mut(slot.0) else {
            return;
        };
        s.failback_in_flight = false;
        let current =
            s.state == SlotState::Connected && s.generation == res.generation && s.upstream != 0;
        let Ok(ws) = res.result else {
            debug!(
                slot = slot.0,
                "primary still unavailable; staying on the backup"
            );
            return;
        };
        if !current || busy {
            return; // the slot moved on, or requests are in flight: try again later
        }
        info!(slot = slot.0, "primary upstream is back: failing back");
        s.gap_from = Some(s.last_height.map(|h| h + 1));
        if let Some(mut sink) = s.sink.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
        }
        s.generation += 1;
        s.upstream = 0;
        self.reads.remove(&slot.0);
        drop(self.table.on_slot_down(slot));
        RouteMetrics::add(&self.metrics.upstream_connections, -1);
        RouteMetrics::inc(&self.metrics.upstream_failbacks);
        self.install(slot, ws).await;
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
        warn!(slot = slot.0, upstream = %redact_url(&self.settings.upstreams[s.upstream]), %reason, "upstream connection lost");
        s.gap_from = Some(s.last_height.map(|h| h + 1));
        s.sink = None;
        s.state = SlotState::Idle;
        self.reads.remove(&slot.0);
        RouteMetrics::add(&self.metrics.upstream_connections, -1);
        let lost: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.slot() == slot)
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            if let Some(Pending::Call { reply, .. }) = self.pending.remove(&id) {
                RouteMetrics::inc(&self.metrics.request_errors);
                let _ = reply.send(Err(HubError::Lost));
            }
        }
        drop(self.table.on_slot_down(slot));
        self.metrics.topics.store(self.table.len() as i64, Relaxed);
        let n = self.settings.upstreams.len();
        let s = &mut self.slots[slot.0];
        s.upstream = (s.upstream + 1) % n;
        let delay = s.backoff.next_delay(fastrand::f64());
        self.schedule_connect(slot, delay);
    }

    fn reap_dead(&mut self) {
        while let Some((slot, reason)) = self.dead.pop() {
            self.slot_lost(slot, &reason);
        }
    }

    /// Write one text frame to a slot; a failure marks the slot dead.
    async fn send_text(&mut self, slot: SlotId, text: String) -> bool {
        let timeout = self.settings.request_timeout.min(UPSTREAM_WRITE_TIMEOUT);
        let Some(sink) = self.slots.get_mut(slot.0).and_then(|s| s.sink.as_mut()) else {
            return false;
        };
        match tokio::time::timeout(timeout, sink.send(Message::text(text))).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                self.dead.push((slot, format!("write failed: {e}")));
                false
            }
            Err(_) => {
                self.dead.push((slot, "write timed out".into()));
                false
            }
        }
    }

    fn next_id(&mut self) -> UpstreamReqId {
        let id = self.next_req;
        self.next_req += 1;
        UpstreamReqId(id)
    }

    /// Subscribe `topics` on `slot`: one request each, or batches of up to the dialect's
    /// maximum (keys flagged `solo` always alone).
    async fn send_subscribes(&mut self, topics: Vec<TopicId>, slot: SlotId) {
        let max = self.dialect.subscribe_batch_max().max(1);
        let mut batch: Vec<(TopicId, SubscriptionKey)> = Vec::new();
        for id in topics {
            let Some(t) = self.table.get(id) else {
                continue;
            };
            let item = (id, t.key.clone());
            if item.1.flags().solo {
                self.send_subscribe(vec![item], slot).await;
                continue;
            }
            batch.push(item);
            if batch.len() == max {
                self.send_subscribe(std::mem::take(&mut batch), slot).await;
            }
        }
        if !batch.is_empty() {
            self.send_subscribe(batch, slot).await;
        }
    }

    async fn send_subscribe(&mut self, topics: Vec<(TopicId, SubscriptionKey)>, slot: SlotId) {
        let req = self.next_id();
        let keys: Vec<&SubscriptionKey> = topics.iter().map(|(_, k)| k).collect();
        let text = self.dialect.render_upstream_subscribe(&keys, req);
        self.pending.insert(
            req.0,
            Pending::Subscribe {
                topics,
                slot,
                deadline: Instant::now() + self.settings.subscribe_timeout,
            },
        );
        RouteMetrics::inc(&self.metrics.upstream_subscribes);
        self.send_text(slot, text).await;
    }

    /// Unsubscribe upstream ids nobody needs any more, batched per slot where the dialect
    /// allows it.
    async fn send_unsubscribes(
        &mut self,
        mut items: Vec<(SlotId, SubscriptionKey, UpstreamSubId)>,
    ) {
        items.sort_by_key(|(slot, _, _)| *slot);
        let max = self.dialect.subscribe_batch_max().max(1);
        let mut start = 0;
        while start < items.len() {
            let slot = items[start].0;
            let mut end = start + 1;
            while end < items.len() && items[end].0 == slot && end - start < max {
                end += 1;
            }
            if self.table.slot_up(slot) {
                let req = self.next_id();
                let refs: Vec<(&SubscriptionKey, &UpstreamSubId)> =
                    items[start..end].iter().map(|(_, k, u)| (k, u)).collect();
                if let Some(text) = self.dialect.render_upstream_unsubscribe(&refs, req) {
                    self.pending.insert(
                        req.0,
                        Pending::Unsubscribe {
                            slot,
                            deadline: Instant::now() + self.settings.request_timeout,
                        },
                    );
                    RouteMetrics::inc(&self.metrics.upstream_unsubscribes);
                    self.send_text(slot, text).await;
                }
            } // else the connection is gone, and with it the subscriptions
            start = end;
        }
    }

    async fn send_unsubscribe(&mut self, slot: SlotId, key: &SubscriptionKey, up: &UpstreamSubId) {
        self.send_unsubscribes(vec![(slot, key.clone(), up.clone())])
            .await;
    }

    fn joined(&self, topic: TopicId) -> Option<Joined> {
        let t = self.table.get(topic)?;
        Some(Joined {
            topic,
            public_id: t.data.public_id.clone(),
            rx: t.data.tx.subscribe(),
            replay: if t.key.flags().replay_last {
                t.data.last.clone()
            } else {
                None
            },
            steady: t.key.flags().steady,
            guard: ReleaseGuard::new(topic, self.release_tx.clone()),
        })
    }

    fn new_topic_data(&self) -> TopicData {
        TopicData {
            // Content-routed topics deliver through mailboxes; their ring stays unused.
            tx: broadcast::channel(if self.dialect.subscribe_batch_max() > 1 {
                1
            } else {
                self.settings.client_queue_len
            })
            .0,
            public_id: self.dialect.mint_sub_id(),
            last: None,
            resubscribing_since: None,
            subscribers: HashMap::new(),
            last_notice: Instant::now(),
            refused_since: None,
        }
    }

    /// Make sure a queued topic's connection is being established.
    fn ensure_connecting(&mut self, slot: SlotId) {
        self.ensure_slot(slot);
        if self.slots[slot.0].state == SlotState::Idle {
            self.schedule_connect(slot, Duration::ZERO);
        }
    }

    /// A waiter's topic was confirmed (`Ok`) or failed.
    fn resolve(&mut self, waiter: Waiter, topic: TopicId, outcome: Result<(), HubError>) {
        match waiter {
            Waiter::One(tx) => {
                let _ =
                    tx.send(outcome.and_then(|()| self.joined(topic).ok_or(HubError::Unavailable)));
            }
            Waiter::Set(set) => {
                let Some(j) = self.set_joins.get_mut(&set) else {
                    return;
                };
                j.remaining = j.remaining.saturating_sub(1);
                if let Err(e) = outcome {
                    j.error.get_or_insert(e);
                }
                if j.remaining == 0 {
                    self.finish_set(set);
                }
            }
        }
    }

    /// Answer a set join: guards of keys whose topic failed are dropped (they release
    /// nothing: the topic is gone), so the client never believes it holds them.
    fn finish_set(&mut self, set: u64) {
        let Some(j) = self.set_joins.remove(&set) else {
            return;
        };
        let guards = j
            .guards
            .into_iter()
            .filter(|(_, g)| self.table.get(g.topic()).is_some())
            .collect();
        let _ = j.reply.send(Ok(SetJoined {
            guards,
            error: j.error,
        }));
    }

    async fn on_join(
        &mut self,
        keys: Vec<SubscriptionKey>,
        mailbox: Mailbox,
        reply: oneshot::Sender<Result<SetJoined, HubError>>,
    ) {
        let set = self.next_set;
        self.next_set += 1;
        let mut join = SetJoin {
            remaining: 0,
            guards: Vec::with_capacity(keys.len()),
            error: None,
            reply,
        };
        let mut to_send: HashMap<SlotId, Vec<TopicId>> = HashMap::new();
        for key in keys {
            let data = self.new_topic_data();
            let joined =
                self.table
                    .subscribe(key.clone(), Waiter::Set(set), Instant::now(), || data);
            let topic = match joined {
                Ok(Join::Ready(id, _)) => id,
                Ok(Join::Queued(id, action)) => {
                    join.remaining += 1;
                    match action {
                        Some(Action::Subscribe { topic, slot }) => {
                            to_send.entry(slot).or_default().push(topic);
                        }
                        Some(Action::OpenSlot(slot)) => self.ensure_connecting(slot),
                        None => {
                            if let Some(slot) = self.table.get(id).map(|t| t.slot) {
                                self.ensure_connecting(slot);
                            }
                        }
                    }
                    id
                }
                Err((e, _)) => {
                    join.error.get_or_insert(HubError::Full(e.to_string()));
                    continue;
                }
            };
            if let Some(t) = self.table.get_mut(topic) {
                t.data.subscribers.insert(mailbox.id(), mailbox.clone());
            }
            let guard = ReleaseGuard::for_session(topic, mailbox.id(), self.release_tx.clone());
            join.guards.push((key, guard));
        }
        self.metrics.topics.store(self.table.len() as i64, Relaxed);
        self.set_joins.insert(set, join);
        for (slot, topics) in to_send {
            self.send_subscribes(topics, slot).await;
        }
        if self.set_joins.get(&set).is_some_and(|j| j.remaining == 0) {
            self.finish_set(set);
        }
    }

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Join {
                keys,
                mailbox,
                reply,
            } => self.on_join(keys, mailbox, reply).await,
            Command::Subscribe { key, reply } => {
                if let Some(j) = self.join_ended(&key) {
                    let _ = reply.send(Ok(j));
                    return;
                }
                let data = self.new_topic_data();
                let joined = self
                    .table
                    .subscribe(key, Waiter::One(reply), Instant::now(), || data);
                self.metrics.topics.store(self.table.len() as i64, Relaxed);
                match joined {
                    Ok(Join::Ready(id, w)) => self.resolve(w, id, Ok(())),
                    Ok(Join::Queued(_, Some(Action::Subscribe { topic, slot }))) => {
                        self.send_subscribes(vec![topic], slot).await;
                    }
                    Ok(Join::Queued(_, Some(Action::OpenSlot(slot)))) => {
                        self.ensure_connecting(slot);
                    }
                    Ok(Join::Queued(id, None)) => {
                        if let Some(slot) = self.table.get(id).map(|t| t.slot) {
                            self.ensure_connecting(slot);
                        }
                    }
                    Err((e, w)) => {
                        if let Waiter::One(w) = w {
                            let _ = w.send(Err(HubError::Full(e.to_string())));
                        }
                    }
                }
            }
            Command::Call { call, reply } => {
                let Some(reply) = reply else {
                    // A client notification: forwarded if connected, otherwise dropped.
                    if let Some(slot) = self.call_slot(call.class) {
                        let text = self.dialect.render_upstream_call(&call, None);
                        self.send_text(slot, text).await;
                    }
                    return;
                };
                RouteMetrics::inc(&self.metrics.requests);
                match self.call_slot(call.class) {
                    Some(slot) => self.send_call(slot, call, reply).await,
                    None if self.waiting_calls.len() < WAITING_CALLS => {
                        let deadline = Instant::now() + self.settings.request_timeout;
                        self.waiting_calls.push_back((call, reply, deadline));
                    }
                    None => {
                        RouteMetrics::inc(&self.metrics.request_errors);
                        let _ = reply.send(Err(HubError::Unavailable));
                    }
                }
            }
        }
    }

    /// Calls go to the lowest connected slot (slot 0 unless it is down); a call of a
    /// connection class only to a connected slot of that class.
    fn call_slot(&self, class: u8) -> Option<SlotId> {
        self.slots
            .iter()
            .enumerate()
            .position(|(i, s)| {
                s.state == SlotState::Connected
                    && (class == 0 || self.table.slot_class(SlotId(i)) == Some(class))
            })
            .map(SlotId)
    }

    async fn send_call(&mut self, slot: SlotId, call: Call, reply: CallReply) {
        let req = self.next_id();
        let text = self.dialect.render_upstream_call(&call, Some(req));
        let now = Instant::now();
        self.pending.insert(
            req.0,
            Pending::Call {
                reply,
                slot,
                deadline: now + self.settings.request_timeout,
                sent: now,
            },
        );
        if !self.send_text(slot, text).await {
            if let Some(Pending::Call { reply, .. }) = self.pending.remove(&req.0) {
                RouteMetrics::inc(&self.metrics.request_errors);
                let _ = reply.send(Err(HubError::Lost));
            }
        }
    }

    /// Send the calls that waited for a connection, in order; a call whose class has no
    /// connected slot yet keeps waiting.
    async fn flush_waiting_calls(&mut self) {
        let mut still = VecDeque::new();
        while let Some((call, reply, deadline)) = self.waiting_calls.pop_front() {
            match self.call_slot(call.class) {
                Some(slot) => self.send_call(slot, call, reply).await,
                None => still.push_back((call, reply, deadline)),
            }
        }
        self.waiting_calls = still;
    }

    async fn on_read(&mut self, slot: SlotId, generation: u64, item: ReadItem) {
        let Some(s) = self.slots.get_mut(slot.0) else {
            return;
        };
        if s.generation != generation {
            return;
        }
        s.last_rx = Instant::now();
        match item.map(|r| r.map(inbound)) {
            Some(Ok(Inbound::Text(text))) => self.on_text(slot, text).await,
            Some(Ok(Inbound::NotUtf8)) => {
                RouteMetrics::inc(&self.metrics.malformed_upstream);
                warn!("malformed upstream frame: binary frame is not UTF-8");
            }
            Some(Ok(Inbound::Control(Message::Close(frame)))) => {
                let why = frame.map_or_else(
                    || "closed".to_string(),
                    |f| format!("closed: {} {}", f.code, f.reason),
                );
                self.dead.push((slot, why));
            }
            Some(Ok(_)) => {} // pings are answered by tungstenite; pongs just mark liveness
            Some(Err(e)) => self.dead.push((slot, format!("read failed: {e}"))),
            None => self
                .dead
                .push((slot, "connection closed by upstream".into())),
        }
    }

    async fn on_text(&mut self, slot: SlotId, text: Utf8Bytes) {
        match self.dialect.parse_upstream(&text) {
            UpstreamFrame::Notification {
                sub,
                id_range,
                is_final,
            } => {
                let topics = self.table.route(slot, &sub).to_vec();
                let steady = topics
                    .iter()
                    .any(|id| self.table.get(*id).is_some_and(|t| t.key.flags().steady));
                if steady {
                    if let Some(h) = self.dialect.height(&text) {
                        self.on_height(slot, h);
                    }
                }
                if topics.is_empty() {
                    RouteMetrics::inc(&self.metrics.unknown_notifications);
                    debug!(sub = %sub.0, "notification for no known topic");
                    return;
                }
                for id in topics {
                    let Some(t) = self.table.get_mut(id) else {
                        continue;
                    };
                    RouteMetrics::inc(&self.metrics.notifications_in);
                    let public = t.data.public_id.as_str();
                    let start = id_range.start;
                    let notice = Notice {
                        frame: WireText::from(splice(&text, id_range.clone(), public)),
                        id_range: start..start + public.len(),
                        gap: false,
                    };
                    t.data.last_notice = Instant::now();
                    if let Some(since) = t.data.resubscribing_since.take() {
                        let us = since.elapsed().as_micros() as u64;
                        self.metrics.resubscribe_micros.fetch_add(us, Relaxed);
                        RouteMetrics::inc(&self.metrics.resubscribes);
                    }
                    if t.key.flags().replay_last || is_final {
                        t.data.last = Some(notice.clone());
                    }
                    // No receivers is fine (all clients gone, topic lingering).
                    let _ = t.data.tx.send(notice);
                    if is_final {
                        let notice = t.data.last.clone().unwrap_or_else(|| Notice {
                            frame: WireText::from(splice(&text, id_range.clone(), public)),
                            id_range: start..start + public.len(),
                            gap: false,
                        });
                        self.ended.insert(t.key.clone(), (notice, Instant::now()));
                        drop(self.table.end(id));
                    }
                }
                if is_final {
                    self.metrics.topics.store(self.table.len() as i64, Relaxed);
                }
            }
            UpstreamFrame::Response {
                id,
                id_range,
                outcome,
            } => {
                let Some(p) = self.pending.remove(&id.0) else {
                    debug!(
                        id = id.0,
                        "response to no pending request (late or duplicate)"
                    );
                    return;
                };
                match p {
                    Pending::Call { reply, sent, .. } => {
                        let us = sent.elapsed().as_micros() as u64;
                        self.metrics.request_micros.fetch_add(us, Relaxed);
                        let _ = reply.send(Ok(UpstreamReply {
                            text: text.clone(),
                            id_range,
                        }));
                    }
                    Pending::Subscribe { topics, .. } => {
                        for (topic, key) in topics {
                            let result = outcome
                                .clone()
                                .map(|r| self.dialect.parse_subscribe_result(&key, &text[r]));
                            self.on_subscribe_outcome(slot, topic, key, result).await;
                        }
                    }
                    Pending::Unsubscribe { .. } => {
                        if let Err(e) = outcome {
                            debug!(error = %e, "upstream unsubscribe failed");
                        }
                    }
                }
            }
            UpstreamFrame::Routed { targets, identity } => {
                let repeat = identity.is_some_and(|id| {
                    self.slots
                        .get_mut(slot.0)
                        .is_some_and(|s| !s.recent.insert(id))
                });
                if repeat {
                    return; // the node's own per-group copy: clients get theirs from us
                }
                // Only steady streams (ledger closes) carry a height, and only their
                // silence matters for stall detection.
                if let Some(h) = self.dialect.height(&text) {
                    self.on_height(slot, h);
                    let now = Instant::now();
                    for (up, _) in &targets {
                        for i in self.table.route(slot, up).to_vec() {
                            if let Some(t) = self.table.get_mut(i) {
                                t.data.last_notice = now;
                            }
                        }
                    }
                }
                self.deliver_routed(slot, text, &targets)
            }
            UpstreamFrame::Other => {}
            UpstreamFrame::Malformed(why) => {
                RouteMetrics::inc(&self.metrics.malformed_upstream);
                warn!(%why, "malformed upstream frame");
            }
        }
    }

    async fn on_subscribe_outcome(
        &mut self,
        slot: SlotId,
        topic: TopicId,
        key: SubscriptionKey,
        result: Result<Option<UpstreamSubId>, String>,
    ) {
        match result {
            Ok(Some(up)) => match self.table.on_subscribed(topic, up.clone()) {
                Confirmed::Waiters(waiters) => {
                    if let Some(t) = self.table.get_mut(topic) {
                        t.data.refused_since = None;
                    }
                    if let Some(sl) = self.slots.get_mut(slot.0) {
                        sl.backoff.reset();
                    }
                    for w in waiters {
                        self.resolve(w, topic, Ok(()));
                    }
                }
                Confirmed::Stale => self.send_unsubscribe(slot, &key, &up).await,
            },
            Ok(None) => {
                self.fail_topic(
                    topic,
                    HubError::Upstream(
                        r#"{"code":-32603,"message":"upstream returned an invalid subscription id"}"#
                            .into(),
                    ),
                );
            }
            Err(raw) => self.fail_topic(topic, HubError::Upstream(raw)),
        }
    }

    /// A content-routed push: every session holding a matching key gets the frame once
    /// per matched group, in arrival order (one mailbox per session keeps it ordered).
    fn deliver_routed(
        &mut self,
        slot: SlotId,
        text: Utf8Bytes,
        targets: &[(UpstreamSubId, Group)],
    ) {
        RouteMetrics::inc(&self.metrics.notifications_in);
        // Encoded once; every holder's session writes the same frame.
        let text = WireText::from(text);
        if let [(up, _)] = targets {
            // One target: each holder once, no bookkeeping.
            for &id in self.table.route(slot, up) {
                if let Some(t) = self.table.get(id) {
                    for mb in t.data.subscribers.values() {
                        mb.deliver(text.clone());
                    }
                }
            }
            return;
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        for (up, group) in targets {
            let bit = 1u8 << (group.0 & 7);
            for &id in self.table.route(slot, up) {
                if let Some(t) = self.table.get(id) {
                    for &mb in t.data.subscribers.keys() {
                        scratch.entry(mb).or_insert((id, 0)).1 |= bit;
                    }
                }
            }
        }
        for (mb, (topic, groups)) in scratch.drain() {
            let Some(mailbox) = self
                .table
                .get(topic)
                .and_then(|t| t.data.subscribers.get(&mb))
            else {
                continue;
            };
            for _ in 0..groups.count_ones() {
                mailbox.deliver(text.clone());
            }
        }
        self.scratch = scratch;
    }

    fn fail_topic(&mut self, topic: TopicId, err: HubError) {
        // A live topic whose resubscribe is refused is not given up at once: the answer
        // may be a rate limit or a broken node. Replace the connection (failing over) and
        // resubscribe there; only after RESUBSCRIBE_ATTEMPTS refusals in a row does the
        // subscription end.
        let now = Instant::now();
        let retry = self.table.get_mut(topic).and_then(|t| {
            let since = *t.data.refused_since.get_or_insert(now);
            (t.confirmed() && now.duration_since(since) < RESUBSCRIBE_GIVE_UP)
                .then(|| now.duration_since(since))
        });
        if let Some(refused_for) = retry {
            if let Some(slot) = self.table.keep_for_retry(topic) {
                warn!(topic = topic.0, error = %err, ?refused_for, "resubscribe refused; replacing the upstream connection");
                if !self.dead.iter().any(|(s, _)| *s == slot) {
                    self.dead
                        .push((slot, format!("resubscribe refused: {err}")));
                }
                return;
            }
        }
        match self.table.on_subscribe_failed(topic) {
            Failed::Rejected(waiters, data) => {
                drop(data);
                for w in waiters {
                    self.resolve(w, topic, Err(err.clone()));
                }
            }
            Failed::Ended(data) => {
                warn!(topic = topic.0, error = %err, "resubscribe failed; subscription ended for its clients");
                drop(data);
            }
            Failed::Unknown => {}
        }
        self.metrics.topics.store(self.table.len() as i64, Relaxed);
    }

    /// A subscribe for a one-shot key that just ended: confirm it and deliver the final
    /// notification (under a fresh id) at once; the subscription then ends.
    fn join_ended(&mut self, key: &SubscriptionKey) -> Option<Joined> {
        let (notice, at) = self.ended.get(key)?;
        if at.elapsed() >= ENDED_TTL {
            self.ended.remove(key);
            return None;
        }
        let public_id = self.dialect.mint_sub_id();
        let start = notice.id_range.start;
        let frame = splice(&notice.frame, notice.id_range.clone(), public_id.as_str());
        let (tx, rx) = broadcast::channel(1);
        drop(tx); // the stream ends right after the replay
        Some(Joined {
            topic: TopicId(0),
            replay: Some(Notice {
                frame: WireText::from(frame),
                id_range: start..start + public_id.as_str().len(),
                gap: false,
            }),
            public_id,
            rx,
            steady: false,
            guard: ReleaseGuard::new(TopicId(0), self.release_tx.clone()),
        })
    }

    async fn on_tick(&mut self) {
        let now = Instant::now();
        self.ended
            .retain(|_, (_, at)| now.duration_since(*at) < ENDED_TTL);
        // Linger expiry and subscribe waits that never got a connection.
        let tick = self.table.on_tick(now);
        for w in tick.expired {
            self.resolve(w, TopicId(0), Err(HubError::Unavailable));
        }
        drop(tick.removed);
        self.send_unsubscribes(tick.unsubscribe).await;
        // Request timeouts. A subscribe that times out means a hung upstream: reconnect.
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline() <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            match self.pending.remove(&id) {
                Some(Pending::Call { reply, .. }) => {
                    RouteMetrics::inc(&self.metrics.request_errors);
                    let _ = reply.send(Err(HubError::Timeout));
                }
                Some(Pending::Subscribe { slot, .. }) => {
                    self.dead
                        .push((slot, "subscribe not answered in time".into()));
                }
                Some(Pending::Unsubscribe { .. }) | None => {}
            }
        }
        while self
            .waiting_calls
            .front()
            .is_some_and(|(_, _, deadline)| *deadline <= now)
        {
            if let Some((_, reply, _)) = self.waiting_calls.pop_front() {
                RouteMetrics::inc(&self.metrics.request_errors);
                let _ = reply.send(Err(HubError::Unavailable));
            }
        }
        self.check_stalls(now);
        // Fail-back: a slot on a backup tries the primary every failback_interval.
        if let Some(every) = self.settings.failback_interval {
            for i in 0..self.slots.len() {
                let s = &self.slots[i];
                if s.state == SlotState::Connected
                    && s.upstream != 0
                    && !s.failback_in_flight
                    && now.duration_since(s.last_failback) >= every
                {
                    self.start_failback_probe(SlotId(i));
                }
            }
        }
        // Liveness: ping quiet upstreams, drop silent ones; close extra idle slots.
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
            if i > 0
                && self.table.slot_topics(slot) == 0
                && !self.pending.values().any(|p| p.slot() == slot)
            {
                self.close_slot(slot).await;
                continue;
            }
            if now.duration_since(s.last_ping) >= self.settings.upstream_ping_interval
                && now.duration_since(s.last_rx) >= self.settings.upstream_ping_interval
            {
                self.slots[i].last_ping = now;
                if let Some(sink) = self.slots[i].sink.as_mut() {
                    if sink.send(Message::Ping(Default::default())).await.is_err() {
                        self.dead.push((slot, "ping failed".into()));
                    }
                }
            }
        }
        self.metrics.topics.store(self.table.len() as i64, Relaxed);
    }

    /// A steady topic (new heads, slots, ledgers) silent for `stall_timeout` while its
    /// connection still answers pings: the node is stalled; replace the connection.
    fn check_stalls(&mut self, now: Instant) {
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
            let quiet = now.duration_since(t.last_notice);
            if quiet >= limit {
                stalled.push((slot, format!("stalled: no {key:?} for {quiet:?}")));
            }
        }
        for (slot, why) in stalled {
            RouteMetrics::inc(&self.metrics.upstream_stalls);
            self.dead.push((slot, why));
        }
    }

    async fn close_slot(&mut self, slot: SlotId) {
        let s = &mut self.slots[slot.0];
        if let Some(mut sink) = s.sink.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
        }
        s.state = SlotState::Idle;
        s.generation += 1;
        self.reads.remove(&slot.0);
        drop(self.table.on_slot_down(slot));
        RouteMetrics::add(&self.metrics.upstream_connections, -1);
        debug!(slot = slot.0, "closed idle extra upstream connection");
    }

    /// Shutdown: answer everything waiting, unsubscribe upstream, close the sockets.
    async fn stop(&mut self, cmd_rx: &mut mpsc::Receiver<Command>) {
        cmd_rx.close();
        while let Ok(cmd) = cmd_rx.try_recv() {
            match cmd {
                Command::Subscribe { reply, .. } => drop(reply.send(Err(HubError::ShuttingDown))),
                Command::Join { reply, .. } => drop(reply.send(Err(HubError::ShuttingDown))),
                Command::Call { reply, .. } => {
                    if let Some(r) = reply {
                        let _ = r.send(Err(HubError::ShuttingDown));
                    }
                }
            }
        }
        for (_, p) in self.pending.drain() {
            if let Pending::Call { reply, .. } = p {
                let _ = reply.send(Err(HubError::ShuttingDown));
            }
        }
        for (_, reply, _) in self.waiting_calls.drain(..) {
            let _ = reply.send(Err(HubError::ShuttingDown));
        }
        let (unsub, data) = self.table.drain();
        drop(data);
        let n = unsub.len();
        for (slot, key, up) in unsub {
            let req = self.next_id();
            let Some(text) = self
                .dialect
                .render_upstream_unsubscribe(&[(&key, &up)], req)
            else {
                continue;
            };
            if let Some(sink) = self.slots.get_mut(slot.0).and_then(|s| s.sink.as_mut()) {
                let _ = tokio::time::timeout(
                    Duration::from_millis(500),
                    sink.send(Message::text(text)),
                )
                .await;
            }
        }
        for s in &mut self.slots {
            if let Some(mut sink) = s.sink.take() {
                let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
                RouteMetrics::add(&self.metrics.upstream_connections, -1);
            }
        }
        self.metrics.topics.store(0, Relaxed);
        info!(unsubscribed = n, "route stopped");
    }
}
