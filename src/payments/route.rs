//! A payments route: its handle (what sessions hold) and its actor, the one owner of the
//! watcher table. Chain watchers (`watch_xrpl`, `watch_eth`) send every credit they
//! extract; the actor keeps those to watched addresses, logs them (deduplicated), and
//! fans each new event out to the watchers of its address, in log order.
//!
//! Queues: actor commands (1024; sessions wait for room), credits from chain watchers
//! (4096; watchers wait), and one queue per watcher (`client_queue_len`): a watcher whose
//! queue is full is dropped, and its session closes the client with 1008, naming the
//! last cursor it delivered so the client resumes from there with `since` (nothing is
//! lost: the log has every event).

use super::event::{AssetFilter, Chain, Credit, Event};
use super::log::{address_key, Cursor, Log, LogError, Retention};
use super::redis_log::RedisLog;
use super::store::Store;
use super::{watch_eth, watch_ln, watch_sol, watch_xrpl};
use crate::config::{PaymentsSettings, RouteSettings};
use crate::hub::Hub;
use crate::telemetry::RouteMetrics;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const COMMAND_QUEUE: usize = 1024;
const FOUND_QUEUE: usize = 4096;

/// One event as every watcher of its address gets it: its JSON, rendered once.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub cursor: Cursor,
    pub json: Arc<str>,
    pub credit: Arc<Credit>,
}

/// A watcher's registration.
pub struct Joined {
    pub id: u64,
    /// Events after the joining cursor that the log held at the moment of joining.
    pub remainder: Vec<Event>,
    pub rx: mpsc::Receiver<Delivered>,
}

enum Command {
    Join {
        chain: Chain,
        address: String,
        assets: Vec<AssetFilter>,
        after: Option<Cursor>,
        reply: oneshot::Sender<Result<Joined, LogError>>,
    },
    Leave {
        id: u64,
    },
}

/// What chain watchers (and the shared log's reader) tell the actor.
pub enum Found {
    /// Credits extracted from a chain: to log.
    Credits(Vec<Credit>),
    /// Events any instance logged (Redis Streams): to deliver.
    Logged(Vec<Event>),
}

/// Messages from the actor to a chain watcher: start or stop watching an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interest {
    Watch(String),
    Unwatch(String),
}

/// What sessions and the HTTP front hold.
#[derive(Clone)]
pub struct PaymentsRoute {
    pub path: Arc<str>,
    pub metrics: Arc<RouteMetrics>,
    pub settings: Arc<RouteSettings>,
    pub store: Store,
    /// The chains this route watches.
    pub chains: Arc<[Chain]>,
    cmd: mpsc::Sender<Command>,
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentsError {
    #[error("route {0}: {1}")]
    Log(String, LogError),
    #[error("route {0}: watched route {1} is not running")]
    Missing(String, String),
    #[error("route {0}: webhook address {1:?}: {2}")]
    Webhook(String, String, String),
}

impl PaymentsRoute {
    /// Register a watcher of `address`; `after`: also return what the log holds after
    /// that cursor (the tail of a `since` replay).
    pub async fn join(
        &self,
        chain: Chain,
        address: String,
        assets: Vec<AssetFilter>,
        after: Option<Cursor>,
    ) -> Result<Joined, LogError> {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Join {
            chain,
            address,
            assets,
            after,
            reply,
        };
        let gone = || LogError::Store("route is shutting down".into());
        self.cmd.send(cmd).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    pub fn leave(&self, id: u64) {
        // A full queue delays nothing: the actor drops a watcher whose queue closed.
        let _ = self.cmd.try_send(Command::Leave { id });
    }
}

struct Watcher {
    /// Events up to this cursor were given at joining (the shared log's reader may bring
    /// them again).
    after: Option<Cursor>,
    key: String,
    assets: Vec<AssetFilter>,
    tx: mpsc::Sender<Delivered>,
}

struct Actor {
    store: Store,
    metrics: Arc<RouteMetrics>,
    queue_len: usize,
    watchers: HashMap<u64, Watcher>,
    /// Address key → watcher ids.
    by_address: HashMap<String, Vec<u64>>,
    /// Addresses watched for webhooks (never released).
    pinned: std::collections::HashSet<String>,
    interest: HashMap<Chain, mpsc::UnboundedSender<Interest>>,
    next_id: u64,
    /// New events for webhooks.
    webhook_tx: Option<tokio::sync::watch::Sender<Cursor>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Deliver what any instance logs in the shared stream, from its head at start.
async fn read_shared(log: Arc<RedisLog>, found: mpsc::Sender<Found>, shutdown: CancellationToken) {
    let mut backoff = crate::backoff::Backoff::new(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(5),
    );
    let mut at = None;
    loop {
        let r = match at {
            None => log.head().await.map(|h| {
                at = Some(h);
                Vec::new()
            }),
            Some(c) => tokio::select! {
                _ = shutdown.cancelled() => return,
                r = log.read(c, std::time::Duration::from_secs(1)) => r,
            },
        };
        match r {
            Ok(events) => {
                backoff.reset();
                if let Some(last) = events.last().and_then(|e| Cursor::parse(&e.cursor).ok()) {
                    at = Some(last);
                }
                if !events.is_empty() && found.send(Found::Logged(events)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                let wait = backoff.next_delay(fastrand::f64());
                tracing::warn!(error = %e, retry_in = ?wait, "payments: cannot read the shared log");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// Start a payments route: open its log, start a watcher per watched chain (each
/// subscribes through the watched route's handle) and the actor.
pub fn spawn(
    settings: RouteSettings,
    hub: &Hub,
    channels: &[crate::channel::ChannelRoute],
    backplane: Option<&crate::config::BackplaneSettings>,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> Result<PaymentsRoute, PaymentsError> {
    let path = settings.path.clone();
    let p: PaymentsSettings = settings
        .payments
        .clone()
        .ok_or_else(|| PaymentsError::Missing(path.clone(), "[route.payments]".into()))?;
    let retention = Retention {
        max_age: p.log_max_age,
        max_bytes: p.log_max_bytes,
    };
    let (found_tx, found_rx) = mpsc::channel(FOUND_QUEUE);
    let store = match backplane {
        Some(b) => {
            let prefix = format!("{}:payments:{path}", b.channel_prefix);
            let log = RedisLog::new(&b.redis, prefix, p.log_max_age)
                .map_err(|e| PaymentsError::Log(path.clone(), e))?;
            let log = Arc::new(log);
            tracker.spawn(read_shared(log.clone(), found_tx.clone(), shutdown.clone()));
            Store::Redis(log)
        }
        None => {
            let log = Log::open(p.data_dir.as_deref(), retention)
                .map_err(|e| PaymentsError::Log(path.clone(), e))?;
            if p.data_dir.is_none() {
                tracing::warn!(route = %path, "payments log kept in memory (no data_dir): a restart loses cursors");
            }
            Store::Local(Arc::new(log))
        }
    };
    let metrics = Arc::new(RouteMetrics::default());
    let mut interest = HashMap::new();
    let mut chains = Vec::new();
    let queue_len = settings.client_queue_len.max(16);
    // The chain route a payments route names (`xrpl`, `ethereum`, `solana`).
    let routed = |name: &String| {
        hub.get(name)
            .cloned()
            .ok_or_else(|| PaymentsError::Missing(path.clone(), name.clone()))
    };
    if let Some(x) = &p.xrpl {
        let handle = routed(x)?;
        let (tx, rx) = mpsc::unbounded_channel();
        tracker.spawn(watch_xrpl::run(
            handle,
            rx,
            found_tx.clone(),
            queue_len,
            shutdown.clone(),
        ));
        interest.insert(Chain::Xrpl, tx);
        chains.push(Chain::Xrpl);
    }
    if let Some(e) = &p.ethereum {
        let handle = routed(e)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let cfg = watch_eth::EthWatch {
            confirmations: p.ethereum_confirmations,
            tokens: p
                .tokens
                .iter()
                .filter(|t| t.chain == "ethereum")
                .cloned()
                .collect(),
        };
        tracker.spawn(watch_eth::run(
            handle,
            cfg,
            rx,
            found_tx.clone(),
            queue_len,
            shutdown.clone(),
        ));
        interest.insert(Chain::Ethereum, tx);
        chains.push(Chain::Ethereum);
    }
    if let Some(x) = &p.solana {
        let handle = routed(x)?;
        let (tx, rx) = mpsc::unbounded_channel();
        tracker.spawn(watch_sol::run(
            handle,
            rx,
            found_tx.clone(),
            shutdown.clone(),
        ));
        interest.insert(Chain::Solana, tx);
        chains.push(Chain::Solana);
    }
    if let Some(l) = &p.lnbits {
        let channel = channels
            .iter()
            .find(|c| &*c.path == l.as_str())
            .cloned()
            .ok_or_else(|| PaymentsError::Missing(path.clone(), l.clone()))?;
        let (tx, rx) = mpsc::unbounded_channel();
        tracker.spawn(watch_ln::run(
            channel,
            rx,
            found_tx.clone(),
            shutdown.clone(),
        ));
        interest.insert(Chain::Lightning, tx);
        chains.push(Chain::Lightning);
    }
    drop(found_tx);
    let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
    let route = PaymentsRoute {
        path: path.clone().into(),
        metrics: metrics.clone(),
        settings: Arc::new(settings),
        store: store.clone(),
        chains: chains.into(),
        cmd: cmd_tx,
    };
    let webhook_tx = super::webhook::spawn(&route, &p, shutdown.clone(), tracker);
    let mut actor = Actor {
        store,
        metrics,
        queue_len,
        watchers: HashMap::new(),
        by_address: HashMap::new(),
        pinned: Default::default(),
        interest,
        next_id: 1,
        webhook_tx,
    };
    for w in &p.webhooks {
        for a in &w.addresses {
            if let Some((chain, addr)) = a
                .split_once(':')
                .and_then(|(c, x)| Some((Chain::parse(c)?, x)))
            {
                let key = address_key(chain, addr);
                if actor.pinned.insert(key) {
                    actor.watch(chain, addr);
                }
            }
        }
    }
    tracker.spawn(actor.run(cmd_rx, found_rx, shutdown));
    Ok(route)
}

impl Actor {
    fn watch(&self, chain: Chain, address: &str) {
        RouteMetrics::add(&self.metrics.payments_watched, 1);
        if let Some(tx) = self.interest.get(&chain) {
            let _ = tx.send(Interest::Watch(address.to_string()));
        }
    }

    async fn run(
        mut self,
        mut cmd: mpsc::Receiver<Command>,
        mut found: mpsc::Receiver<Found>,
        shutdown: CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                c = cmd.recv() => match c {
                    Some(c) => self.command(c).await,
                    None => return,
                },
                f = found.recv() => match f {
                    None => return,
                    Some(Found::Logged(events)) => self.fan_out(&events),
                    Some(Found::Credits(mut credits)) => {
                        // Everything ready goes into one log transaction.
                        let mut logged = Vec::new();
                        while credits.len() < 8192 {
                            match found.try_recv() {
                                Ok(Found::Credits(more)) => credits.extend(more),
                                Ok(Found::Logged(e)) => logged.push(e),
                                Err(_) => break,
                            }
                        }
                        self.publish(credits).await;
                        for e in logged {
                            self.fan_out(&e);
                        }
                    }
                }
            }
        }
    }

    async fn command(&mut self, c: Command) {
        match c {
            Command::Join {
                chain,
                address,
                assets,
                after,
                reply,
            } => {
                let remainder = match after {
                    None => Ok(Vec::new()),
                    Some(cursor) => self.store.history_all(chain, &address, cursor).await,
                };
                let remainder = match remainder {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return;
                    }
                };
                let id = self.next_id;
                self.next_id += 1;
                let key = address_key(chain, &address);
                let last = remainder
                    .last()
                    .and_then(|e: &Event| Cursor::parse(&e.cursor).ok())
                    .or(after);
                let (tx, rx) = mpsc::channel(self.queue_len);
                let ids = self.by_address.entry(key.clone()).or_default();
                let first = ids.is_empty() && !self.pinned.contains(&key);
                ids.push(id);
                self.watchers.insert(
                    id,
                    Watcher {
                        after: last,
                        key,
                        assets,
                        tx,
                    },
                );
                if first {
                    self.watch(chain, &address);
                }
                let _ = reply.send(Ok(Joined { id, remainder, rx }));
            }
            Command::Leave { id } => self.drop_watcher(id),
        }
    }

    fn drop_watcher(&mut self, id: u64) {
        let Some(w) = self.watchers.remove(&id) else {
            return;
        };
        let Some(ids) = self.by_address.get_mut(&w.key) else {
            return;
        };
        ids.retain(|x| *x != id);
        if ids.is_empty() {
            self.by_address.remove(&w.key);
            if !self.pinned.contains(&w.key) {
                RouteMetrics::add(&self.metrics.payments_watched, -1);
                if let Some((chain, addr)) = w
                    .key
                    .split_once(':')
                    .and_then(|(c, a)| Some((Chain::parse(c)?, a)))
                {
                    if let Some(tx) = self.interest.get(&chain) {
                        let _ = tx.send(Interest::Unwatch(addr.to_string()));
                    }
                }
            }
        }
    }

    async fn publish(&mut self, credits: Vec<Credit>) {
        let wanted: Vec<Credit> = credits
            .into_iter()
            .filter(|c| {
                let k = address_key(c.chain, &c.to);
                self.by_address.contains_key(&k) || self.pinned.contains(&k)
            })
            .collect();
        if wanted.is_empty() {
            return;
        }
        let events = match self.store.append(wanted, now_ms()).await {
            Ok((events, added)) => {
                self.metrics
                    .payments_events
                    .fetch_add(added as u64, std::sync::atomic::Ordering::Relaxed);
                events
            }
            Err(e) => {
                tracing::error!(error = %e, "payments: cannot log events; they are not delivered");
                return;
            }
        };
        self.fan_out(&events);
    }

    /// Deliver logged events to the watchers of their addresses, in order.
    fn fan_out(&mut self, events: &[Event]) {
        let mut dropped = Vec::new();
        for e in events {
            let Ok(cursor) = Cursor::parse(&e.cursor) else {
                continue;
            };
            let json: Arc<str> = match serde_json::to_string(e) {
                Ok(j) => j.into(),
                Err(_) => continue,
            };
            let credit = Arc::new(e.credit.clone());
            let key = address_key(e.credit.chain, &e.credit.to);
            for id in self.by_address.get(&key).into_iter().flatten() {
                let Some(w) = self.watchers.get(id) else {
                    continue;
                };
                if w.after.is_some_and(|a| cursor <= a) {
                    continue;
                }
                if !w.assets.is_empty() && !w.assets.iter().any(|f| e.credit.asset.matches(f)) {
                    continue;
                }
                let d = Delivered {
                    cursor,
                    json: json.clone(),
                    credit: credit.clone(),
                };
                if w.tx.try_send(d).is_err() {
                    // Full (slow) or gone: either way the watcher ends here.
                    dropped.push(*id);
                }
            }
        }
        for id in dropped {
            self.drop_watcher(id);
        }
        if let (Some(tx), Some(last)) = (&self.webhook_tx, events.last()) {
            if let Ok(c) = Cursor::parse(&last.cursor) {
                tx.send_replace(c);
            }
        }
    }
}
