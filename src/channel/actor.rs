//! The channel actor: the one task that owns a route's channels. One `select!` loop over
//! commands (join, publish, deliver), releases (a client left) and a tick (linger, TTL).
//!
//! Memory is bounded three ways: at most `max_channels` channels (a new one beyond it is
//! refused with 503 once expired ones are swept); a channel with no client, no upstream and
//! no message for `replay_ttl_ms` is forgotten; all replay buffers of the route together
//! hold at most `replay_max_bytes` (beyond it the least recently active channels lose their
//! buffered messages first). A channel's broadcast ring (`client_queue_len` slots) exists
//! only while it has clients.

use super::backplane::{PubReq, Publisher};
use super::replay::Replay;
use super::{ChannelError, ChannelGuard, ChannelRoute, Command, Frame, Joined};
use crate::dialect::lnbits::ItemId;
use crate::telemetry::RouteMetrics;
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, Instrument};

/// Resolution of linger.
const TICK: Duration = Duration::from_millis(100);
/// How often idle channels are looked for (a scan of every channel).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

struct Channel {
    /// Present while the channel has clients.
    tx: Option<broadcast::Sender<Arc<Frame>>>,
    replay: Replay<Arc<Frame>>,
    clients: usize,
    last_active: Instant,
    /// Proxy mode: the upstream socket task, cancelled after the linger.
    upstream: Option<CancellationToken>,
    linger_until: Option<Instant>,
}

struct Actor {
    route: ChannelRoute,
    channels: HashMap<ItemId, Channel>,
    release_tx: mpsc::UnboundedSender<ItemId>,
    publisher: Option<Publisher>,
    backplane_up: bool,
    replay_bytes: usize,
    /// Channels whose last client left while an upstream socket was open.
    lingering: Vec<ItemId>,
    last_sweep: Instant,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

pub(super) fn spawn(
    route: ChannelRoute,
    cmd_rx: mpsc::Receiver<Command>,
    publisher: Option<Publisher>,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) {
    let (release_tx, release_rx) = mpsc::unbounded_channel();
    let span = tracing::info_span!("channels", path = %route.path);
    let actor = Actor {
        route,
        channels: HashMap::new(),
        release_tx,
        publisher,
        backplane_up: false,
        replay_bytes: 0,
        lingering: Vec::new(),
        last_sweep: Instant::now(),
        shutdown,
        tracker: tracker.clone(),
    };
    tracker.spawn(actor.run(cmd_rx, release_rx).instrument(span));
}

impl Actor {
    fn metrics(&self) -> &RouteMetrics {
        &self.route.metrics
    }

    async fn run(
        mut self,
        mut cmd_rx: mpsc::Receiver<Command>,
        mut release_rx: mpsc::UnboundedReceiver<ItemId>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                Some(item) = release_rx.recv() => self.release(item, Instant::now()),
                cmd = cmd_rx.recv() => match cmd {
                    Some(cmd) => self.command(cmd, Instant::now()),
                    None => break,
                },
                _ = tick.tick() => self.on_tick(Instant::now()),
            }
        }
        for ch in self.channels.values_mut() {
            if let Some(c) = ch.upstream.take() {
                c.cancel();
            }
        }
    }

    fn command(&mut self, cmd: Command, now: Instant) {
        match cmd {
            Command::Join { item, since, reply } => {
                let r = self.join(item, since, now);
                let _ = reply.send(r);
            }
            Command::Publish { item, text, reply } => self.publish(item, text, reply, now),
            Command::PublishLocal { item, text, reply } => {
                let r = self.deliver(item, None, text.into(), now);
                let _ = reply.send(r);
            }
            Command::Deliver { item, seq, text } => {
                if let Err(e) = self.deliver(item, seq, text, now) {
                    debug!(error = %e, "message for a new channel dropped");
                }
            }
            Command::Backplane(up) => {
                self.backplane_up = up;
                self.metrics()
                    .backplane_connected
                    .store(i64::from(up), Relaxed);
            }
        }
    }

    /// The channel, created when absent (and the route has room).
    fn channel(&mut self, item: &ItemId, now: Instant) -> Result<&mut Channel, ChannelError> {
        if !self.channels.contains_key(item) {
            let max = self.route.lnbits().max_channels;
            if self.channels.len() >= max {
                self.sweep(now);
            }
            if self.channels.len() >= max {
                return Err(ChannelError::Full(max));
            }
            self.channels.insert(
                item.clone(),
                Channel {
                    tx: None,
                    replay: Replay::new(self.route.lnbits().replay_buffer_len),
                    clients: 0,
                    last_active: now,
                    upstream: None,
                    linger_until: None,
                },
            );
            RouteMetrics::add(&self.route.metrics.channels, 1);
        }
        self.channels
            .get_mut(item)
            .ok_or(ChannelError::ShuttingDown)
    }

    fn join(
        &mut self,
        item: ItemId,
        since: Option<u64>,
        now: Instant,
    ) -> Result<Joined, ChannelError> {
        let queue = self.route.settings.client_queue_len;
        let proxy = self.route.is_proxy();
        let ch = self.channel(&item, now)?;
        let tx = ch.tx.get_or_insert_with(|| broadcast::channel(queue).0);
        let rx = tx.subscribe();
        ch.clients += 1;
        ch.last_active = now;
        ch.linger_until = None;
        let first = ch.clients == 1;
        let (backlog, gap) = match since {
            Some(s) => {
                let got = ch.replay.since(s);
                (got.items.into_iter().map(|(_, f)| f).collect(), got.gap)
            }
            None => (Vec::new(), false),
        };
        let last_seq = ch.replay.last_seq();
        let needs_upstream = proxy && ch.upstream.is_none();
        if needs_upstream {
            let cancel = self.shutdown.child_token();
            super::upstream::spawn(
                self.route.clone(),
                item.clone(),
                cancel.clone(),
                &self.tracker,
            );
            if let Some(ch) = self.channels.get_mut(&item) {
                ch.upstream = Some(cancel);
            }
        }
        if first {
            RouteMetrics::add(&self.route.metrics.topics, 1);
        }
        RouteMetrics::add(&self.route.metrics.client_subscriptions, 1);
        self.route
            .metrics
            .replayed_frames
            .fetch_add(backlog.len() as u64, Relaxed);
        Ok(Joined {
            rx,
            backlog,
            gap,
            last_seq,
            guard: ChannelGuard {
                item: Some(item),
                release: self.release_tx.clone(),
            },
        })
    }

    fn release(&mut self, item: ItemId, now: Instant) {
        let linger = self.route.settings.linger;
        let Some(ch) = self.channels.get_mut(&item) else {
            return;
        };
        ch.clients = ch.clients.saturating_sub(1);
        RouteMetrics::add(&self.route.metrics.client_subscriptions, -1);
        if ch.clients == 0 {
            ch.tx = None;
            ch.last_active = now;
            if ch.upstream.is_some() {
                ch.linger_until = Some(now + linger);
                self.lingering.push(item);
            }
            RouteMetrics::add(&self.route.metrics.topics, -1);
        }
    }

    fn publish(
        &mut self,
        item: ItemId,
        text: String,
        reply: oneshot::Sender<Result<u64, ChannelError>>,
        now: Instant,
    ) {
        if self.backplane_up {
            if let Some(p) = &self.publisher {
                let floor = self.channels.get(&item).map_or(0, |c| c.replay.last_seq());
                match p.try_publish(PubReq {
                    item,
                    text,
                    floor,
                    reply,
                }) {
                    Ok(()) => return,
                    Err(req) => {
                        // Backplane queue full: serve this instance's clients at least.
                        let r = self.deliver(req.item, None, req.text.into(), now);
                        let _ = req.reply.send(r);
                        return;
                    }
                }
            }
        }
        let r = self.deliver(item, None, text.into(), now);
        let _ = reply.send(r);
    }

    /// Number, buffer and fan out one message.
    fn deliver(
        &mut self,
        item: ItemId,
        seq: Option<u64>,
        text: Utf8Bytes,
        now: Instant,
    ) -> Result<u64, ChannelError> {
        let ch = self.channel(&item, now)?;
        let seq = ch.replay.next_seq(seq);
        let frame = Arc::new(Frame::new(seq, text));
        let before = ch.replay.bytes();
        ch.replay.push(seq, frame.clone());
        let after = ch.replay.bytes();
        ch.last_active = now;
        if let Some(tx) = &ch.tx {
            let _ = tx.send(frame);
        }
        self.replay_bytes = self.replay_bytes + after - before;
        RouteMetrics::inc(&self.route.metrics.notifications_in);
        if self.replay_bytes > self.route.lnbits().replay_max_bytes {
            self.trim(&item);
        }
        Ok(seq)
    }

    /// Over the byte budget: drop buffered messages of the least recently active channels
    /// (other than `keep`), then the oldest of `keep` itself.
    fn trim(&mut self, keep: &ItemId) {
        let max = self.route.lnbits().replay_max_bytes;
        let mut order: Vec<(Instant, ItemId)> = self
            .channels
            .iter()
            .filter(|(k, c)| *k != keep && !c.replay.is_empty())
            .map(|(k, c)| (c.last_active, k.clone()))
            .collect();
        order.sort_unstable();
        for (_, k) in order {
            if self.replay_bytes <= max {
                return;
            }
            if let Some(c) = self.channels.get_mut(&k) {
                self.replay_bytes -= c.replay.clear();
            }
        }
        if let Some(c) = self.channels.get_mut(keep) {
            while self.replay_bytes > max && !c.replay.is_empty() {
                self.replay_bytes -= c.replay.drop_oldest();
            }
        }
    }

    fn on_tick(&mut self, now: Instant) {
        let channels = &mut self.channels;
        self.lingering.retain(|item| {
            let Some(ch) = channels.get_mut(item) else {
                return false;
            };
            match ch.linger_until {
                Some(t) if ch.clients == 0 && now >= t => {
                    ch.linger_until = None;
                    if let Some(c) = ch.upstream.take() {
                        c.cancel();
                    }
                    false
                }
                Some(_) if ch.clients == 0 => true,
                _ => false,
            }
        });
        if now.saturating_duration_since(self.last_sweep) >= SWEEP_EVERY {
            self.last_sweep = now;
            self.sweep(now);
        }
    }

    /// Forget channels idle (no client, no upstream, no message) for the TTL.
    fn sweep(&mut self, now: Instant) {
        let ttl = self.route.lnbits().replay_ttl;
        let mut freed = 0;
        let before = self.channels.len();
        self.channels.retain(|_, c| {
            let keep = c.clients > 0
                || c.upstream.is_some()
                || now.saturating_duration_since(c.last_active) < ttl;
            if !keep {
                freed += c.replay.bytes();
            }
            keep
        });
        self.replay_bytes -= freed;
        let gone = before - self.channels.len();
        if gone > 0 {
            RouteMetrics::add(&self.route.metrics.channels, -(gone as i64));
        }
    }
}
