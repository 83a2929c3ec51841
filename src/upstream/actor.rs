//! The route actor: the I/O shell around the sans-IO [`RouteCore`]. It is the only task
//! that writes to a route's upstream sockets. One `select!` loop turns commands, releases,
//! upstream frames, connect results and a steady tick into core events, then carries out
//! the core's actions (connect, send, ping, close). Answers and deliveries go through
//! [`Fan`], the core's `Outbox`: oneshot replies, broadcast rings, session mailboxes.

use super::connect::{connect, inbound, Inbound, UpstreamStream};
use super::fan::Fan;
use crate::config::RouteSettings;
use crate::dialect::{Dialect, Routing};
use crate::hub::core::{Action, Event, RouteCore};
use crate::hub::table::SlotId;
use crate::hub::{Command, HubError, Release, RouteHandle, Subscribed};
use crate::telemetry::{redact_url, RouteMetrics};
use futures_util::stream::{self, BoxStream, SplitSink};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::StreamMap;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{warn, Instrument};

/// Commands queued per route before senders wait (backpressure on sessions).
const COMMAND_QUEUE: usize = 4096;
/// A write the upstream socket does not accept within this long marks the connection dead:
/// the actor writes inline, so a jammed socket must not stall the route for longer.
const UPSTREAM_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Resolution of linger, timeouts and pings.
const TICK: Duration = Duration::from_millis(100);

type ReadItem = Option<Result<Message, tokio_tungstenite::tungstenite::Error>>;
type Sink = SplitSink<UpstreamStream, Message>;

/// Answers of backfill calls over HTTP (`Action::Fetch`) waiting for the actor; beyond,
/// an answer is dropped and its request times out in the core.
const FETCH_QUEUE: usize = 1024;

/// An `Action::Fetch` answered: (slot, generation, the body or a JSON-RPC error frame).
type Fetched = (SlotId, u64, String);

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
    let (fetch_tx, fetch_rx) = mpsc::channel(FETCH_QUEUE);
    // Backfill calls over HTTP (Solana) go through one client (its pool and limits).
    let fetcher = settings.upstreams.first().and_then(|u| {
        let url = settings.http_upstream.clone().unwrap_or_else(|| http_of(u));
        crate::forward::HttpForwarder::new(
            &url,
            settings.request_timeout,
            settings.upstream_max_message_bytes,
        )
        .ok()
        .map(Arc::new)
    });
    let mut handle = RouteHandle::new(
        settings.path.clone().into(),
        dialect.clone(),
        metrics.clone(),
        cmd_tx,
        settings.request_timeout.max(settings.subscribe_timeout) + Duration::from_secs(5),
    );
    handle = handle.with_upstreams(settings.upstreams.iter().map(|u| redact_url(u)).collect());
    if let Some(url) = &settings.http_upstream {
        match crate::forward::HttpForwarder::new(
            url,
            settings.request_timeout,
            settings.upstream_max_message_bytes,
        ) {
            Ok(f) => handle = handle.with_http(f),
            Err(e) => warn!(error = %e, "http_upstream unusable; HTTP POSTs will be refused"),
        }
    }
    // Content-routed topics deliver through session mailboxes, never their ring.
    let ring = match dialect.routing() {
        Routing::ById => settings.client_queue_len,
        Routing::ByContent => 1,
    };
    let fan = Fan::new(release_tx, ring);
    let span = tracing::info_span!("route", path = %settings.path);
    let core = RouteCore::new(
        settings.clone(),
        dialect,
        metrics,
        fan,
        handle.gap_listeners(),
        fastrand::u64(..),
        Instant::now(),
    );
    let actor = Actor {
        core,
        settings,
        sinks: Vec::new(),
        reads: StreamMap::new(),
        incoming: None,
        connect_tx,
        fetch_tx,
        fetcher,
        shutdown: shutdown.clone(),
        tracker: tracker.clone(),
    };
    tracker.spawn(
        actor
            .run(cmd_rx, release_rx, connect_rx, fetch_rx)
            .instrument(span),
    );
    handle
}

struct Actor {
    core: RouteCore<Fan>,
    settings: RouteSettings,
    /// Per slot: the connection's generation and its write half.
    sinks: Vec<Option<(u64, Sink)>>,
    reads: StreamMap<usize, BoxStream<'static, (u64, ReadItem)>>,
    /// A connection just opened, until the core installs it (or it is dropped).
    incoming: Option<UpstreamStream>,
    connect_tx: mpsc::Sender<ConnectResult>,
    fetch_tx: mpsc::Sender<Fetched>,
    fetcher: Option<Arc<crate::forward::HttpForwarder>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

/// A WebSocket upstream URL as the node's HTTP endpoint (ws→http, wss→https).
fn http_of(ws: &str) -> String {
    if let Some(rest) = ws.strip_prefix("wss://") {
        format!("https://{rest}")
    } else if let Some(rest) = ws.strip_prefix("ws://") {
        format!("http://{rest}")
    } else {
        ws.to_string()
    }
}

impl Actor {
    async fn run(
        mut self,
        mut cmd_rx: mpsc::Receiver<Command>,
        mut release_rx: mpsc::UnboundedReceiver<Release>,
        mut connect_rx: mpsc::Receiver<ConnectResult>,
        mut fetch_rx: mpsc::Receiver<Fetched>,
    ) {
        self.drive(false).await;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                Some((slot, (generation, item))) = self.reads.next() => {
                    let event = read_event(SlotId(slot), generation, item);
                    self.core.handle(event, Instant::now());
                }
                Some((topic, mailbox)) = release_rx.recv() => {
                    self.core.handle(Event::Release { topic, mailbox }, Instant::now());
                }
                Some(cmd) = cmd_rx.recv() => self.core.handle(command_event(cmd), Instant::now()),
                Some(res) = connect_rx.recv() => self.on_connect_result(res),
                Some((slot, generation, text)) = fetch_rx.recv() => {
                    let event = Event::Fetched { slot, generation, text: text.into() };
                    self.core.handle(event, Instant::now());
                }
                _ = tick.tick() => self.core.handle_timeout(Instant::now()),
            }
            self.drive(false).await;
        }
        // Shutdown: answer everything waiting, unsubscribe upstream, close the sockets.
        cmd_rx.close();
        while let Ok(cmd) = cmd_rx.try_recv() {
            match cmd {
                Command::Subscribe { reply, .. } => {
                    drop(reply.send(Subscribed::failed(HubError::ShuttingDown)))
                }
                Command::Call { reply, .. } => {
                    if let Some(r) = reply {
                        let _ = r.send(Err(HubError::ShuttingDown));
                    }
                }
            }
        }
        self.core.handle(Event::Shutdown, Instant::now());
        self.drive(true).await;
    }

    fn on_connect_result(&mut self, res: ConnectResult) {
        let (slot, generation) = (res.slot, res.generation);
        let ok = res.result.is_ok();
        let event = match res.result {
            Ok(ws) => {
                self.incoming = Some(ws);
                if res.failback {
                    Event::Probed {
                        slot,
                        generation,
                        ok,
                    }
                } else {
                    Event::Connected { slot, generation }
                }
            }
            Err(_) if res.failback => Event::Probed {
                slot,
                generation,
                ok,
            },
            Err(reason) => Event::ConnectFailed {
                slot,
                generation,
                reason,
            },
        };
        self.core.handle(event, Instant::now());
    }

    /// Carry out the core's actions; a failed write is reported back as a lost
    /// connection, whose own actions are carried out in turn.
    async fn drive(&mut self, stopping: bool) {
        loop {
            let mut lost: Vec<(SlotId, u64, String)> = Vec::new();
            while let Some(action) = self.core.poll_action() {
                match action {
                    Action::Connect {
                        slot,
                        generation,
                        upstream,
                        delay,
                    } => self.spawn_connect(slot, generation, upstream, delay, false),
                    Action::Probe {
                        slot,
                        generation,
                        upstream,
                    } => self.spawn_connect(slot, generation, upstream, Duration::ZERO, true),
                    Action::Install { slot, generation } => self.install(slot, generation),
                    Action::Send { slot, text } => {
                        self.write(slot, Message::text(text), stopping, &mut lost)
                            .await
                    }
                    Action::Fetch {
                        slot,
                        generation,
                        upstream,
                        body,
                    } => self.spawn_fetch(slot, generation, upstream, body),
                    Action::Ping { slot } => {
                        let ping = Message::Ping(Default::default());
                        self.write(slot, ping, stopping, &mut lost).await
                    }
                    Action::Close { slot } => {
                        self.reads.remove(&slot.0);
                        if let Some((_, mut sink)) = self.sink(slot).take() {
                            let _ =
                                tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
                        }
                    }
                    Action::Drop { slot } => {
                        self.reads.remove(&slot.0);
                        *self.sink(slot) = None;
                    }
                }
            }
            self.incoming = None;
            if lost.is_empty() || stopping {
                return;
            }
            for (slot, generation, reason) in lost {
                let event = Event::Lost {
                    slot,
                    generation,
                    reason,
                };
                self.core.handle(event, Instant::now());
            }
        }
    }

    /// POST a backfill call to the node's HTTP endpoint; its answer (or an error frame
    /// under the call's id) comes back as `Event::Fetched`.
    fn spawn_fetch(&self, slot: SlotId, generation: u64, upstream: usize, body: String) {
        let (Some(fetcher), Some(ws)) =
            (self.fetcher.clone(), self.settings.upstreams.get(upstream))
        else {
            return; // no HTTP endpoint: the request times out in the core
        };
        let url = (self.settings.http_upstream.clone()).unwrap_or_else(|| http_of(ws));
        let tx = self.fetch_tx.clone();
        self.tracker.spawn(async move {
            let shown = redact_url(&url);
            let answer = match url.parse::<http::Uri>() {
                Ok(uri) => fetcher
                    .post_to(uri, &shown, "application/json", body.clone().into())
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|(status, b)| {
                        String::from_utf8(b.to_vec()).map_err(|_| {
                            format!("{shown} answered HTTP {status} that is not UTF-8")
                        })
                    }),
                Err(e) => Err(format!("{shown}: {e}")),
            };
            let text = answer.unwrap_or_else(|e| {
                let id = serde_json::from_str::<serde_json::Value>(&body)
                    .map(|v| v["id"].clone())
                    .unwrap_or_default();
                serde_json::json!({"jsonrpc": "2.0", "id": id,
                    "error": {"code": -32603, "message": e}})
                .to_string()
            });
            let _ = tx.try_send((slot, generation, text));
        });
    }

    fn sink(&mut self, slot: SlotId) -> &mut Option<(u64, Sink)> {
        while self.sinks.len() <= slot.0 {
            self.sinks.push(None);
        }
        &mut self.sinks[slot.0]
    }

    fn install(&mut self, slot: SlotId, generation: u64) {
        let Some(ws) = self.incoming.take() else {
            return;
        };
        let (sink, read) = ws.split();
        let reads = read
            .map(Some)
            .chain(stream::once(async { None }))
            .map(move |item| (generation, item))
            .boxed();
        self.reads.insert(slot.0, reads);
        *self.sink(slot) = Some((generation, sink));
    }

    /// Write one frame to a slot; a failure marks the connection lost (and later writes
    /// to it in this round are skipped).
    async fn write(
        &mut self,
        slot: SlotId,
        msg: Message,
        stopping: bool,
        lost: &mut Vec<(SlotId, u64, String)>,
    ) {
        let timeout = if stopping {
            Duration::from_millis(500)
        } else {
            self.settings.request_timeout.min(UPSTREAM_WRITE_TIMEOUT)
        };
        let Some((generation, sink)) = self.sink(slot).as_mut() else {
            return;
        };
        let generation = *generation;
        if lost.iter().any(|(s, g, _)| *s == slot && *g == generation) {
            return;
        }
        let why = match tokio::time::timeout(timeout, sink.send(msg)).await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => format!("write failed: {e}"),
            Err(_) => "write timed out".into(),
        };
        lost.push((slot, generation, why));
    }

    fn spawn_connect(
        &self,
        slot: SlotId,
        generation: u64,
        upstream: usize,
        delay: Duration,
        failback: bool,
    ) {
        let Some(url) = self.settings.upstreams.get(upstream).cloned() else {
            return;
        };
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
                    let res = ConnectResult { slot, generation, result, failback };
                    let _ = tx.send(res).await;
                }
            }
        });
    }
}

fn command_event(cmd: Command) -> Event<Fan> {
    match cmd {
        Command::Subscribe {
            keys,
            mailbox,
            reply,
            since,
        } => Event::Subscribe {
            keys,
            mailbox,
            reply,
            since,
        },
        Command::Call { call, reply } => Event::Call { call, reply },
    }
}

fn read_event(slot: SlotId, generation: u64, item: ReadItem) -> Event<Fan> {
    let lost = |reason: String| Event::Lost {
        slot,
        generation,
        reason,
    };
    match item.map(|r| r.map(inbound)) {
        Some(Ok(Inbound::Text(text))) => Event::Text {
            slot,
            generation,
            text,
        },
        Some(Ok(Inbound::NotUtf8)) => Event::NotUtf8 { slot, generation },
        Some(Ok(Inbound::Control(Message::Close(frame)))) => lost(frame.map_or_else(
            || "closed".to_string(),
            |f| format!("closed: {} {}", f.code, f.reason),
        )),
        // Pings are answered by tungstenite; pongs just mark liveness.
        Some(Ok(_)) => Event::Activity { slot, generation },
        Some(Err(e)) => lost(format!("read failed: {e}")),
        None => lost("connection closed by upstream".into()),
    }
}
