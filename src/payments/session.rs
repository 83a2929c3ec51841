//! One client of a payments route (WebSocket), and the HTTP POST path.
//!
//! A subscribe is answered first; then, with `since`, what the log holds after that
//! cursor is replayed page by page, and the watcher joins the actor with the last
//! replayed cursor, so the actor adds what was logged meanwhile and nothing falls between
//! replay and live. A client that falls `client_queue_len` events behind is closed with
//! 1008, naming the cursor to resume from.

use super::event::{AssetFilter, Event};
use super::log::Cursor;
use super::route::{Delivered, PaymentsRoute};
use super::rpc::{self, Parsed, Request, Watch};
use crate::config::Settings;
use crate::dialect::{RequestId, RpcError};
use crate::session::socket::{ClientSocket, End, Read};
use futures_util::stream::{self, BoxStream, StreamExt};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamMap;
use tokio_util::sync::CancellationToken;

/// Events written before one flush.
const WRITE_BATCH: usize = 64;
/// Events read from the log per page of a replay.
const PAGE: usize = 1000;
/// geth's code for subscriptions over HTTP (`rpc/errors.go`).
const NOTIFICATIONS_UNSUPPORTED: i64 = -32001;

struct Sub {
    watcher: u64,
    last: Option<Cursor>,
}

struct Client<S> {
    sock: ClientSocket<S>,
    route: PaymentsRoute,
    settings: Arc<Settings>,
    subs: HashMap<String, Sub>,
    streams: StreamMap<String, BoxStream<'static, Option<Delivered>>>,
    /// `max_requests_per_second` (None: unlimited), as on the other routes.
    bucket: Option<crate::session::limits::TokenBucket>,
}

/// Serve one WebSocket client until it leaves, lags or the server stops.
pub async fn run<S>(
    ws: tokio_tungstenite::WebSocketStream<crate::session::edge::Edge<S>>,
    route: PaymentsRoute,
    settings: Arc<Settings>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let sock = ClientSocket::new(ws, route.metrics.clone(), &settings);
    let bucket = crate::session::limits::TokenBucket::for_settings(&settings, Instant::now());
    let mut c = Client {
        sock,
        route,
        settings,
        subs: HashMap::new(),
        streams: StreamMap::new(),
        bucket,
    };
    let end = c.serve(&shutdown).await;
    for (_, s) in c.subs.drain() {
        c.route.leave(s.watcher);
        crate::telemetry::RouteMetrics::add(&c.route.metrics.client_subscriptions, -1);
    }
    c.sock.close(end).await;
}

fn matches(assets: &[AssetFilter], e: &Event) -> bool {
    assets.is_empty() || assets.iter().any(|f| e.credit.asset.matches(f))
}

impl<S> Client<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn serve(&mut self, shutdown: &CancellationToken) -> End {
        let mut ping = tokio::time::interval(self.settings.client_ping_interval);
        ping.reset();
        loop {
            let r = tokio::select! {
                _ = shutdown.cancelled() => Err(End::Shutdown),
                read = self.sock.read() => match read {
                    Ok(Read::Text(t)) => self.frame(t.as_str()).await,
                    Ok(Read::NotUtf8) => {
                        let e = rpc::render_err(&RequestId::null(), &RpcError::new(rpc::PARSE_ERROR, "parse error"));
                        self.sock.write_text(e).await
                    }
                    Ok(Read::Control) => Ok(()),
                    Err(end) => Err(end),
                },
                Some((sub, item)) = self.streams.next(), if !self.streams.is_empty() => {
                    self.deliver(sub, item).await
                }
                _ = ping.tick() => self.sock.keepalive().await,
            };
            if let Err(end) = r {
                return end;
            }
        }
    }

    async fn deliver(&mut self, sub: String, item: Option<Delivered>) -> Result<(), End> {
        let mut next = Some((sub, item));
        let mut n = 0;
        while let Some((sub, item)) = next.take() {
            match item {
                Some(d) => {
                    if let Some(s) = self.subs.get_mut(&sub) {
                        s.last = Some(d.cursor);
                        self.sock
                            .feed_text(rpc::render_notification(&sub, &d.json))
                            .await?;
                    }
                }
                None => {
                    // The actor dropped the watcher: its queue was full.
                    if let Some(s) = self.subs.get(&sub) {
                        let at = s
                            .last
                            .map_or_else(|| "the cursor you had".into(), |c| c.render());
                        return Err(self.sock.slow(&format!(
                            "fell {} events behind; resume with since={at}",
                            self.settings.client_queue_len
                        )));
                    }
                }
            }
            n += 1;
            if n >= WRITE_BATCH {
                break;
            }
            next = futures_util::FutureExt::now_or_never(self.streams.next()).flatten();
        }
        self.sock.flush().await
    }

    async fn frame(&mut self, text: &str) -> Result<(), End> {
        let (parsed, batch) =
            match rpc::parse(text, &self.route.chains, self.settings.max_batch_len) {
                Ok(p) => p,
                Err(reply) => return self.sock.write_text(reply).await,
            };
        let mut replies = Vec::new();
        let mut after = Vec::new();
        for p in parsed {
            let limited = matches!(p, Parsed::Request(..))
                && self
                    .bucket
                    .as_mut()
                    .is_some_and(|b| !b.try_take(std::time::Instant::now()));
            if let (true, Parsed::Request(id, _)) = (limited, &p) {
                let what = format!(
                    "max {} requests per second per connection",
                    self.settings.max_requests_per_second
                );
                replies.push(rpc::render_err(id, &rpc::limit_error(&what)));
                continue;
            }
            match p {
                Parsed::Ignore => {}
                Parsed::Error(id, e) => replies.push(rpc::render_err(&id, &e)),
                Parsed::Request(id, Request::Unsubscribe(sub)) => {
                    let ok = match self.subs.remove(&sub) {
                        Some(s) => {
                            self.route.leave(s.watcher);
                            self.streams.remove(&sub);
                            crate::telemetry::RouteMetrics::add(
                                &self.route.metrics.client_subscriptions,
                                -1,
                            );
                            "true"
                        }
                        None => "false",
                    };
                    replies.push(rpc::render_ok(&id, ok));
                }
                Parsed::Request(id, Request::History { watch, limit }) => {
                    replies.push(history(&self.route, &id, watch, limit).await);
                }
                Parsed::Request(id, Request::Subscribe(w)) => {
                    if self.subs.len() + after.len()
                        >= self.settings.max_subscriptions_per_connection
                    {
                        let what = format!(
                            "subscriptions per connection (max_subscriptions_per_connection {})",
                            self.settings.max_subscriptions_per_connection
                        );
                        replies.push(rpc::render_err(&id, &rpc::limit_error(&what)));
                        continue;
                    }
                    if let Some(since) = w.since {
                        if let Err(e) = self.route.store.check(since).await {
                            replies.push(rpc::render_err(&id, &rpc::cursor_error(&e)));
                            continue;
                        }
                    }
                    let sub = format!("0x{:016x}", fastrand::u64(..));
                    replies.push(rpc::render_ok(&id, &format!("\"{sub}\"")));
                    after.push((sub, w));
                }
            }
        }
        if !replies.is_empty() {
            let text = if batch {
                format!("[{}]", replies.join(","))
            } else {
                replies.remove(0)
            };
            self.sock.write_text(text).await?;
        }
        for (sub, w) in after {
            self.start(sub, w).await?;
        }
        Ok(())
    }

    /// Send the `events` matching `assets` to `sub` and flush; the cursor of the last
    /// event (matching or not) whose cursor parses.
    async fn send_events(
        &mut self,
        sub: &str,
        assets: &[AssetFilter],
        events: &[Event],
    ) -> Result<Option<Cursor>, End> {
        let mut last = None;
        for e in events {
            if let Ok(c) = Cursor::parse(&e.cursor) {
                last = Some(c);
            }
            if matches(assets, e) {
                let json = serde_json::to_string(e).unwrap_or_default();
                self.sock
                    .feed_text(rpc::render_notification(sub, &json))
                    .await?;
            }
        }
        self.sock.flush().await?;
        Ok(last)
    }

    /// After the subscribe reply: replay from `since`, then go live.
    async fn start(&mut self, sub: String, w: Watch) -> Result<(), End> {
        let mut last = w.since;
        if let Some(mut at) = w.since {
            loop {
                let page = self
                    .route
                    .store
                    .history(w.chain, &w.address, at, PAGE)
                    .await;
                let page = match page {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(route = %self.route.path, error = %e, "payments: replay failed");
                        return Err(End::Gone("event log unavailable"));
                    }
                };
                let full = page.len() == PAGE;
                if let Some(c) = self.send_events(&sub, &w.assets, &page).await? {
                    at = c;
                }
                last = Some(at);
                if !full {
                    break;
                }
            }
        }
        let joined = self
            .route
            .join(w.chain, w.address.clone(), w.assets.clone(), last)
            .await;
        let joined = match joined {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(route = %self.route.path, error = %e, "payments: join failed");
                return Err(End::Gone("payments route unavailable"));
            }
        };
        if let Some(c) = self.send_events(&sub, &w.assets, &joined.remainder).await? {
            last = Some(c);
        }
        crate::telemetry::RouteMetrics::add(&self.route.metrics.client_subscriptions, 1);
        self.subs.insert(
            sub.clone(),
            Sub {
                watcher: joined.id,
                last,
            },
        );
        let s = ReceiverStream::new(joined.rx)
            .map(Some)
            .chain(stream::once(async { None }))
            .boxed();
        self.streams.insert(sub, s);
        Ok(())
    }
}

async fn history(route: &PaymentsRoute, id: &RequestId, w: Watch, limit: usize) -> String {
    let since = w.since.unwrap_or(Cursor(0));
    let (chain, addr, assets) = (w.chain, w.address, w.assets);
    let r: Result<_, super::log::LogError> = async {
        // Filtered pages until `limit` matching events or the end.
        let mut out = Vec::new();
        let mut at = since;
        loop {
            let page = route.store.history(chain, &addr, at, limit).await?;
            let full = page.len() == limit;
            for e in page {
                at = Cursor::parse(&e.cursor)?;
                if matches(&assets, &e) && out.len() < limit {
                    out.push(e);
                }
            }
            if !full || out.len() >= limit {
                return Ok((out, at));
            }
        }
    }
    .await;
    match r {
        Ok((events, at)) => rpc::render_ok(id, &rpc::render_history(&events, at)),
        Err(e) => rpc::render_err(id, &rpc::cursor_error(&e)),
    }
}

/// An HTTP POST: `payments_history` (subscriptions need a WebSocket).
pub async fn handle_http(route: &PaymentsRoute, max_batch: usize, text: &str) -> Option<String> {
    let (parsed, batch) = match rpc::parse(text, &route.chains, max_batch) {
        Ok(p) => p,
        Err(reply) => return Some(reply),
    };
    let mut replies = Vec::new();
    for p in parsed {
        match p {
            Parsed::Ignore => {}
            Parsed::Error(id, e) => replies.push(rpc::render_err(&id, &e)),
            Parsed::Request(id, Request::History { watch, limit }) => {
                replies.push(history(route, &id, watch, limit).await)
            }
            Parsed::Request(id, _) => replies.push(rpc::render_err(
                &id,
                &RpcError::new(
                    NOTIFICATIONS_UNSUPPORTED,
                    "notifications not supported: subscribe over a WebSocket",
                ),
            )),
        }
    }
    match (replies.len(), batch) {
        (0, _) => None,
        (_, true) => Some(format!("[{}]", replies.join(","))),
        (_, false) => replies.pop(),
    }
}
