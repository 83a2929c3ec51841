//! The Redis backplane: several submux instances serve hub-mode channel routes as one.
//!
//! - A push received by any instance goes to Redis as one Lua script, run atomically:
//!   `INCR` the channel's counter (never below the publishing instance's own last number),
//!   then `PUBLISH` "seq\nitem\ntext" on the route's pub/sub channel. Every instance, the
//!   publishing one included, delivers what its subscription receives, so all instances see
//!   a channel's messages in one order with the same numbers.
//! - One subscription per route (`{prefix}:lnbits:{path}`) carries every channel of it:
//!   no per-channel SUBSCRIBE churn, and every instance keeps replay buffers for every
//!   channel, so a monitor that reconnects to another instance still gets `?since=`.
//! - Redis down (or the subscription lost): instances keep serving; pushes are delivered
//!   locally only, numbered locally. Both connections reconnect with capped exponential
//!   backoff and jitter; after that numbers still only increase on every instance, but may
//!   differ between instances for what was pushed during the outage.
//!
//! Pub/sub is at-most-once: an instance whose subscription is down misses what is pushed
//! meanwhile (its clients see it again only through `?since=` on an instance that got it).
//! The client is the `redis` crate (tokio, multiplexed connection + RESP2 pub/sub).

use super::{ChannelError, ChannelRoute, Command};
use crate::backoff::Backoff;
use crate::config::BackplaneSettings;
use crate::dialect::lnbits::ItemId;
use crate::telemetry::{redact_url, RouteMetrics};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn, Instrument};

/// Pushes queued for Redis before the actor delivers locally instead.
const PUBLISH_QUEUE: usize = 4096;
/// Pushes sent to Redis together (one round trip).
const PUBLISH_BATCH: usize = 64;
/// The subscription connection is pinged this often; no answer within `connect_timeout`
/// counts as lost.
const PING_EVERY: Duration = Duration::from_secs(5);
/// A channel's counter in Redis lives this long after its last push.
const SEQ_TTL_SECS: u64 = 7 * 24 * 3600;

const SCRIPT: &str = r"
local s = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[1])
if s <= floor then
  s = floor + 1
  redis.call('SET', KEYS[1], s)
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], s .. '\n' .. ARGV[4] .. '\n' .. ARGV[5])
return s
";

/// One push on its way to Redis; its reply goes to the HTTP request that made it.
pub struct PubReq {
    pub item: ItemId,
    pub text: String,
    /// The publishing instance's last number for the channel.
    pub floor: u64,
    pub reply: oneshot::Sender<Result<u64, ChannelError>>,
}

struct Routed {
    route: usize,
    req: PubReq,
}

/// What a route's actor holds to hand pushes to Redis.
pub struct Publisher {
    route: usize,
    tx: mpsc::Sender<Routed>,
}

impl Publisher {
    /// Queue a push for Redis; gives it back when the queue is full.
    pub fn try_publish(&self, req: PubReq) -> Result<(), PubReq> {
        self.tx
            .try_send(Routed {
                route: self.route,
                req,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r) => r.req,
            })
    }
}

struct RouteLink {
    /// The route's pub/sub channel.
    channel: String,
    /// Prefix of its per-channel counter keys.
    seq_prefix: String,
    actor: mpsc::Sender<Command>,
    metrics: Arc<RouteMetrics>,
}

/// The backplane of one instance: built before the routes, started after them.
pub struct Backplane {
    settings: BackplaneSettings,
    routes: Vec<RouteLink>,
    tx: mpsc::Sender<Routed>,
    rx: mpsc::Receiver<Routed>,
}

impl Backplane {
    pub fn new(settings: BackplaneSettings) -> Backplane {
        let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
        Backplane {
            settings,
            routes: Vec::new(),
            tx,
            rx,
        }
    }

    /// Register a hub-mode channel route; its actor publishes through the returned handle.
    pub fn attach(&mut self, route: &ChannelRoute) -> Publisher {
        let p = &self.settings.channel_prefix;
        self.routes.push(RouteLink {
            channel: format!("{p}:lnbits:{}", route.path),
            seq_prefix: format!("{p}:lnbits:seq:{}:", route.path),
            actor: route.sender(),
            metrics: route.metrics.clone(),
        });
        Publisher {
            route: self.routes.len() - 1,
            tx: self.tx.clone(),
        }
    }

    /// Start the subscriber and the publisher (nothing to do without attached routes).
    pub fn start(self, shutdown: CancellationToken, tracker: &TaskTracker) {
        if self.routes.is_empty() {
            return;
        }
        let client = match redis::Client::open(self.settings.redis.as_str()) {
            Ok(c) => c,
            Err(e) => {
                warn!(redis = %redact_url(&self.settings.redis), error = %e, "backplane unusable: serving locally only");
                return;
            }
        };
        let links = Arc::new(self.routes);
        let settings = Arc::new(self.settings);
        let span = tracing::info_span!("backplane", redis = %redact_url(&settings.redis));
        tracker.spawn(
            subscriber(
                client.clone(),
                settings.clone(),
                links.clone(),
                shutdown.clone(),
            )
            .instrument(span.clone()),
        );
        tracker.spawn(publisher(client, settings, links, self.rx, shutdown).instrument(span));
    }
}

/// Parse a pub/sub message: "seq\nitem\ntext".
pub fn parse_message(payload: &[u8]) -> Option<(u64, ItemId, &str)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (seq, rest) = text.split_once('\n')?;
    let (item, body) = rest.split_once('\n')?;
    Some((seq.parse().ok()?, ItemId::parse(item).ok()?, body))
}

async fn tell_all(links: &[RouteLink], up: bool) {
    for l in links {
        let _ = l.actor.send(Command::Backplane(up)).await;
    }
}

/// Keep one subscription to every route's channel; deliver what arrives.
async fn subscriber(
    client: redis::Client,
    s: Arc<BackplaneSettings>,
    links: Arc<Vec<RouteLink>>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(s.backoff_initial, s.backoff_max);
    let mut connected_before = false;
    loop {
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = tokio::time::timeout(s.connect_timeout, subscribe(&client, &links)) => r,
        };
        match attempt {
            Ok(Ok((mut sink, mut stream))) => {
                backoff.reset();
                for l in links.iter() {
                    if connected_before {
                        RouteMetrics::inc(&l.metrics.backplane_reconnects);
                    }
                }
                if connected_before {
                    info!("backplane subscription restored");
                }
                connected_before = true;
                tell_all(&links, true).await;
                let mut ping = tokio::time::interval(PING_EVERY);
                ping.reset();
                let why = loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        msg = stream.next() => match msg {
                            Some(m) => deliver(&links, &m).await,
                            None => break "subscription closed".to_string(),
                        },
                        _ = ping.tick() => {
                            match tokio::time::timeout(s.connect_timeout, sink.ping::<String>()).await {
                                Ok(Ok(_)) => {}
                                Ok(Err(e)) => break format!("ping failed: {e}"),
                                Err(_) => break "ping not answered".to_string(),
                            }
                        }
                    }
                };
                warn!(%why, "backplane subscription lost: serving locally until it is back");
                tell_all(&links, false).await;
            }
            Ok(Err(e)) => debug!(error = %e, "backplane subscribe failed"),
            Err(_) => debug!("backplane subscribe timed out"),
        }
        let delay = backoff.next_delay(fastrand::f64());
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

async fn subscribe(
    client: &redis::Client,
    links: &[RouteLink],
) -> redis::RedisResult<(redis::aio::PubSubSink, redis::aio::PubSubStream)> {
    let (mut sink, stream) = client.get_async_pubsub().await?.split();
    for l in links {
        sink.subscribe(&l.channel).await?;
    }
    Ok((sink, stream))
}

async fn deliver(links: &[RouteLink], m: &redis::Msg) {
    let Some(link) = links.iter().find(|l| l.channel == m.get_channel_name()) else {
        return;
    };
    match parse_message(m.get_payload_bytes()) {
        Some((seq, item, text)) => {
            let cmd = Command::Deliver {
                item,
                seq: Some(seq),
                text: text.into(),
            };
            let _ = link.actor.send(cmd).await;
        }
        None => RouteMetrics::inc(&link.metrics.malformed_upstream),
    }
}

/// Send pushes to Redis in batches; when Redis cannot take one, hand it back to its route's
/// actor for local delivery.
async fn publisher(
    client: redis::Client,
    s: Arc<BackplaneSettings>,
    links: Arc<Vec<RouteLink>>,
    mut rx: mpsc::Receiver<Routed>,
    shutdown: CancellationToken,
) {
    let script = redis::Script::new(SCRIPT);
    let mut conn: Option<redis::aio::MultiplexedConnection> = None;
    let mut backoff = Backoff::new(s.backoff_initial, s.backoff_max);
    let mut retry_at = Instant::now();
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(s.connect_timeout))
        .set_response_timeout(Some(s.connect_timeout));
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = rx.recv() => match r {
                Some(r) => r,
                None => return,
            },
        };
        let mut batch = vec![first];
        while batch.len() < PUBLISH_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        // A connection that failed may just be stale (Redis restarted while no push came
        // by): reconnect at once and retry those pushes once before delivering locally.
        let mut pending = batch;
        for attempt in 0..2 {
            if conn.is_none() && (attempt == 1 || Instant::now() >= retry_at) {
                match client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                {
                    Ok(c) => {
                        backoff.reset();
                        conn = Some(c);
                    }
                    Err(e) => {
                        debug!(error = %e, "backplane connect failed");
                        retry_at = Instant::now() + backoff.next_delay(fastrand::f64());
                        break;
                    }
                }
            }
            let Some(c) = conn.clone() else {
                break;
            };
            let results = send(&script, &c, &links, &pending).await;
            let mut failed = Vec::new();
            for (r, res) in pending.into_iter().zip(results) {
                match res {
                    Ok(seq) => {
                        let _ = r.req.reply.send(Ok(seq));
                    }
                    Err(e) => {
                        debug!(error = %e, attempt, "backplane publish failed");
                        failed.push(r);
                    }
                }
            }
            pending = failed;
            if pending.is_empty() {
                break;
            }
            conn = None;
        }
        if !pending.is_empty() {
            warn!(
                count = pending.len(),
                "backplane cannot publish: delivering on this instance only"
            );
            for r in pending {
                local(&links, r).await;
            }
        }
    }
}

/// Run the script for every push of a batch, pipelined on one connection.
async fn send(
    script: &redis::Script,
    conn: &redis::aio::MultiplexedConnection,
    links: &[RouteLink],
    batch: &[Routed],
) -> Vec<redis::RedisResult<u64>> {
    futures_util::future::join_all(batch.iter().map(|r| {
        let mut c = conn.clone();
        let link = &links[r.route];
        let key = format!("{}{}", link.seq_prefix, r.req.item);
        async move {
            script
                .key(key)
                .arg(r.req.floor)
                .arg(SEQ_TTL_SECS)
                .arg(&link.channel)
                .arg(r.req.item.as_str())
                .arg(r.req.text.as_str())
                .invoke_async::<u64>(&mut c)
                .await
        }
    }))
    .await
}

async fn local(links: &[RouteLink], r: Routed) {
    let cmd = Command::PublishLocal {
        item: r.req.item,
        text: r.req.text,
        reply: r.req.reply,
    };
    let _ = links[r.route].actor.send(cmd).await;
}

#[cfg(test)]
mod tests {
    use super::parse_message;

    #[test]
    fn wire_format() {
        let (seq, item, text) = parse_message(b"42\nabc\n{\"x\": 1}\nmore").unwrap();
        assert_eq!((seq, item.as_str(), text), (42, "abc", "{\"x\": 1}\nmore"));
        assert!(parse_message(b"x\nabc\nt").is_none());
        assert!(parse_message(b"1\nbad item\nt").is_none());
        assert!(parse_message(b"1\nabc").is_none());
        assert!(parse_message(b"\xff").is_none());
    }
}
