//! One client connection: a single `select!` loop over client frames, finished requests,
//! subscription notifications, pings and shutdown. Only this task writes to its socket.
//!
//! Everything it is sent arrives on a [`Delivery`] (one `StreamMap` of them): an
//! id-routed subscription's topic ring, or, for content-routed dialects (XRPL, whose
//! subscriptions are named by key instead of by id), the session's one ordered mailbox.
//!
//! Ordering: a subscription's ring is polled only after its subscribe reply has been
//! written (and after the whole batch reply for batches), so a client never sees a
//! notification before the id that names it. Notifications that arrive meanwhile wait in
//! the ring's bounded queue. The mailbox is read from its creation: as on rippled, a push
//! may precede the subscribe reply.
//!
//! Overflow policy: every delivery holds `client_queue_len` notifications. A client that
//! falls further behind, or whose socket does not accept a write within `write_timeout`,
//! is closed with code 1008 and a reason and counted in `submux_slow_client_closes_total`
//! (a steady topic of a `?coalesce=1` client skips to the newest instead); other clients
//! never wait for it.

mod admission;
pub mod deflate;
pub mod edge;
mod http;
pub mod limits;
pub mod socket;
mod subscriptions;

pub use http::{handle_http, render_reply};
use subscriptions::{Activation, SubName, MAILBOX};

use crate::auth::ApiKey;
use crate::config::Settings;
use crate::dialect::{
    splice, Answer, ClientFrame, ClientMsg, ClientSubId, Condition, Dialect, RequestId, Routing,
    SubscriptionKey, Transport,
};
use crate::hub::{
    Delivered, Delivery, HubError, Joined, Mailbox, Notice, ReleaseGuard, RouteHandle, Subscribed,
    UpstreamReply, WireText,
};
use crate::telemetry::RouteMetrics;
use edge::Edge;
use futures_util::future::{join_all, BoxFuture};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use socket::Read;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_stream::StreamMap;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

pub use socket::{ClientSocket, End, CLOSE_GOING_AWAY, CLOSE_SLOW, CLOSE_TOO_BIG};
/// At most this many ready notifications are written before one flush.
const WRITE_BATCH: usize = 64;

/// One finished piece of a request (a batch has several).
enum Item {
    Rendered(String),
    Reply(RequestId, Result<UpstreamReply, HubError>),
    /// A subscribe finished: hold the keys that joined (of so many reserved), then answer
    /// with the inner item.
    Held(Vec<Joined>, usize, Box<Item>),
    /// The subscribed reply naming the subscription just held (id-routed dialects).
    Subscribed(RequestId),
    Nothing,
}

struct Outcome {
    items: Vec<Item>,
    batch: bool,
    subscribes: usize,
}

/// A subscription this client holds, whichever the routing.
struct Local {
    /// What the client calls it: the id it was given, or the key (content-routed).
    name: SubName,
    /// The frame carries the topic's public id, not ours: splice on every notification.
    splice: bool,
    /// Falling behind skips to the latest notification instead of closing the client.
    coalesce: bool,
    _guard: ReleaseGuard,
}

/// Per-connection choices a client makes in the URL query.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientOptions {
    /// `?coalesce=1`: on steady streams (newHeads, slots, roots) a client that falls
    /// behind gets the latest notification instead of being closed.
    pub coalesce: bool,
    /// `?gap_notices=1`: after an upstream switch, a notification naming the block, slot
    /// or ledger range that may have been missed.
    pub gap_notices: bool,
    /// `?since=N` (decimal or `0x` hex; Ethereum a block, Solana a slot, XRPL a ledger
    /// index): every subscription opened on this socket first delivers what it would have
    /// delivered after height N (from the topic's history, older from the node).
    pub since: Option<u64>,
}

impl ClientOptions {
    /// The options in `query`; an unreadable `?since=` is an error (HTTP 400).
    pub fn from_query(query: Option<&str>) -> Result<Self, String> {
        let since = match crate::query::param(query, "since") {
            None => None,
            Some(v) => {
                let v = v.map_err(|e| format!("since: {e}"))?;
                let n = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
                    Some(hex) => u64::from_str_radix(hex, 16),
                    None => v.parse::<u64>(),
                };
                Some(n.map_err(|_| format!("since: {v:?} is not a height (decimal or 0x hex)"))?)
            }
        };
        Ok(ClientOptions {
            coalesce: crate::query::flag(query, "coalesce"),
            gap_notices: crate::query::flag(query, "gap_notices"),
            since,
        })
    }
}

/// Serve one upgraded WebSocket until it closes.
pub async fn run<S>(
    ws: WebSocketStream<Edge<S>>,
    route: RouteHandle,
    settings: Arc<Settings>,
    shutdown: CancellationToken,
    key: Option<Arc<ApiKey>>,
    options: ClientOptions,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Heights are read upstream only while some session wants gap notices.
    let _gaps = options.gap_notices.then(|| route.listen_for_gaps());
    let sock = ClientSocket::new(ws, route.metrics.clone(), &settings);
    let bucket = limits::TokenBucket::for_settings(&settings, Instant::now());
    let mut s = Session {
        dialect: route.dialect.clone(),
        route,
        settings,
        sock,
        subs: HashMap::new(),
        by_name: HashMap::new(),
        streams: StreamMap::new(),
        next_local: 0,
        inflight: FuturesUnordered::new(),
        pending_subscribes: 0,
        bucket,
        mailbox: None,
        key,
        options,
    };
    let end = s.serve(shutdown).await;
    let n = s.subs.len() as i64;
    s.sub_count(-n);
    // Release this client's subscriptions before the close handshake.
    let Session { sock, .. } = s;
    sock.close(end).await;
}

struct Session<S> {
    route: RouteHandle,
    dialect: Arc<dyn Dialect>,
    settings: Arc<Settings>,
    sock: ClientSocket<S>,
    /// Everything this client holds, by local number, whichever the routing.
    subs: HashMap<u64, Local>,
    /// The local number of each name the client uses.
    by_name: HashMap<SubName, u64>,
    /// What the session reads: each id-routed subscription's ring (by its local number,
    /// only once its reply is written), and the mailbox ([`MAILBOX`]) once made.
    streams: StreamMap<u64, Delivery>,
    next_local: u64,
    inflight: FuturesUnordered<BoxFuture<'static, Outcome>>,
    pending_subscribes: usize,
    /// Request rate limit (None when unlimited).
    bucket: Option<limits::TokenBucket>,
    /// Where the route delivers this client's content-routed pushes (made on first use).
    mailbox: Option<Mailbox>,
    /// The API key this client presented (per-key subscription cap).
    key: Option<Arc<ApiKey>>,
    options: ClientOptions,
}

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn serve(&mut self, shutdown: CancellationToken) -> End {
        let mut ping = tokio::time::interval(self.settings.client_ping_interval);
        ping.reset();
        loop {
            let step = tokio::select! {
                _ = shutdown.cancelled() => return End::Shutdown,
                read = self.sock.read() => match read {
                    Ok(Read::Text(t)) => self.on_text(&t).await,
                    Ok(Read::NotUtf8) => self.on_text("\u{0}").await, // answered as a parse error
                    Ok(Read::Control) => Ok(()),
                    Err(end) => return end,
                },
                Some(outcome) = self.inflight.next() => self.on_outcome(outcome).await,
                Some((local, item)) = self.streams.next() => self.on_notice(local, item).await,
                _ = ping.tick() => self.sock.keepalive().await,
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    async fn on_text(&mut self, text: &str) -> Result<(), End> {
        match self.dialect.parse_client(text, Transport::WebSocket) {
            ClientFrame::Invalid(e) => {
                let reply = self.dialect.render_error(&RequestId::null(), &e);
                self.sock.write_text(reply).await
            }
            ClientFrame::Single(msg) => self.start(vec![msg], false).await,
            ClientFrame::Batch(msgs) => self.start(msgs, true).await,
        }
    }

    /// Answer what can be answered now; send the rest to the hub as one future.
    async fn start(&mut self, msgs: Vec<ClientMsg>, batch: bool) -> Result<(), End> {
        let mut futs: Vec<BoxFuture<'static, Item>> = Vec::with_capacity(msgs.len());
        let mut subscribes = 0;
        let mut any_async = false;
        let now = Instant::now();
        for msg in msgs {
            let msg = self.rate_limit(msg, now);
            let item: BoxFuture<'static, Item> = match msg {
                ClientMsg::Error { id, error } => {
                    let r = self.dialect.render_error(&id, &error);
                    async move { Item::Rendered(r) }.boxed()
                }
                ClientMsg::Ignore => async { Item::Nothing }.boxed(),
                ClientMsg::Reply(r) => async move { Item::Rendered(r) }.boxed(),
                ClientMsg::Unsubscribe { id, sub } => {
                    let r = self.unsubscribe(&id, &sub);
                    async move { Item::Rendered(r) }.boxed()
                }
                ClientMsg::Call { id: None, call } => {
                    self.route.notify(call);
                    async { Item::Nothing }.boxed()
                }
                ClientMsg::Call { id: Some(id), call } => {
                    if let Some(r) = self.over_inflight(&id) {
                        async move { Item::Rendered(r) }.boxed()
                    } else {
                        any_async = true;
                        let route = self.route.clone();
                        let key = self.key.clone();
                        async move {
                            let r = route.call(call).await;
                            route.count_key_call(key.as_deref().map(|k| &*k.name), &r);
                            Item::Reply(id, r)
                        }
                        .boxed()
                    }
                }
                ClientMsg::Leave { keys, reply } => {
                    for k in keys {
                        self.drop_sub(&SubName::Key(k));
                    }
                    async move { Item::Rendered(reply) }.boxed()
                }
                ClientMsg::Subscribe {
                    id,
                    keys,
                    then,
                    context,
                } => match self.start_subscribe(id, keys, then, context, subscribes) {
                    Ok((n, fut)) => {
                        any_async = true;
                        subscribes += n;
                        fut
                    }
                    Err(r) => async move { Item::Rendered(r) }.boxed(),
                },
            };
            futs.push(item);
        }
        self.pending_subscribes += subscribes;
        let fut = join_all(futs).map(move |items| Outcome {
            items,
            batch,
            subscribes,
        });
        if any_async {
            self.inflight.push(fut.boxed());
            Ok(())
        } else {
            // Everything was answered locally: reply now, in order.
            let outcome = fut.await;
            self.on_outcome(outcome).await
        }
    }

    async fn on_outcome(&mut self, outcome: Outcome) -> Result<(), End> {
        self.pending_subscribes -= outcome.subscribes;
        let mut parts = Vec::with_capacity(outcome.items.len());
        let mut activate: Vec<Activation> = Vec::new();
        for item in outcome.items {
            self.settle(item, &mut parts, &mut activate);
        }
        if outcome.batch {
            if !parts.is_empty() {
                let batch = self.dialect.render_batch(&parts);
                self.sock.write_text(batch).await?;
            }
        } else {
            for p in parts {
                self.sock.feed_text(p).await?;
            }
            self.sock.flush().await?;
        }
        // Only now may this request's subscriptions deliver: first what the history holds
        // after `?since=` (then the last notification is in it), or the replayed last.
        for (local, delivery, replay, history) in activate {
            let replay = if history.iter().any(|n| !n.gap) {
                None
            } else {
                replay
            };
            let mut fed = false;
            for n in history.iter().chain(&replay) {
                if !n.gap || self.options.gap_notices {
                    let frame = self.frame_for(local, n);
                    self.sock.feed(&frame).await?;
                    fed = true;
                }
            }
            if fed {
                self.sock.flush().await?;
            }
            self.streams.insert(local, delivery);
        }
        Ok(())
    }

    /// Write what the deliveries hold: this notification and whatever else is ready (up
    /// to a batch), then flush once.
    async fn on_notice(&mut self, local: u64, item: Delivered) -> Result<(), End> {
        let mut next = Some((local, item));
        let mut written = 0;
        while let Some((local, item)) = next.take() {
            match item {
                Some(Ok(n)) if n.gap && !self.options.gap_notices => {}
                Some(Ok(n)) => {
                    if local == MAILBOX || self.subs.contains_key(&local) {
                        let frame = self.frame_for(local, &n);
                        self.sock.feed(&frame).await?;
                        written += 1;
                    }
                }
                Some(Err(_)) if self.subs.get(&local).is_some_and(|l| l.coalesce) => {
                    // Opted in: skip what was missed and write only the newest.
                    RouteMetrics::inc(&self.route.metrics.coalesced);
                    let mut latest = None;
                    if let Some(stream) = self.streams.iter_mut().find(|(l, _)| *l == local) {
                        while let Some(Some(Some(Ok(n)))) = stream.1.next().now_or_never() {
                            latest = Some(n);
                        }
                    }
                    if let Some(n) = latest {
                        let frame = self.frame_for(local, &n);
                        self.sock.feed(&frame).await?;
                        written += 1;
                    }
                }
                Some(Err(missed)) => {
                    return Err(self.sock.slow(&format!(
                        "fell {missed} notifications behind (queue holds {})",
                        self.settings.client_queue_len
                    )));
                }
                None => {
                    // The topic ended (one-shot finished or upstream refused to resubscribe).
                    if let Some(name) = self.subs.get(&local).map(|l| l.name.clone()) {
                        self.drop_sub(&name);
                    }
                }
            }
            if written < WRITE_BATCH {
                next = self.streams.next().now_or_never().flatten();
            }
        }
        if written > 0 {
            self.sock.flush().await?;
        }
        Ok(())
    }
}
