//! The live status page: `GET /` (and `/status`) serve one self-contained HTML page embedded
//! in the binary (no CDN); it polls `GET /status.json` every second and computes rates from
//! the counters' deltas.

use crate::channel::ChannelRoute;
use crate::hub::Hub;
use crate::telemetry::RouteMetrics;
use serde::Serialize;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub const PAGE: &str = include_str!("page.html");

#[derive(Serialize)]
pub struct Status {
    pub version: &'static str,
    pub time_ms: u128,
    pub uptime_ms: u128,
    pub routes: Vec<RouteStatus>,
}

#[derive(Serialize)]
pub struct RouteStatus {
    pub path: String,
    pub dialect: String,
    /// Redacted upstream URLs, in failover order.
    pub upstreams: Vec<String>,
    pub active_upstream: usize,
    pub upstream_connections: i64,
    pub sessions: i64,
    pub client_subscriptions: i64,
    pub topics: i64,
    pub notifications_in: u64,
    pub frames_out: u64,
    pub slow_client_closes: u64,
    pub upstream_reconnects: u64,
    /// Client calls answered, calls sent upstream for them, and the calls that cost no
    /// upstream call of their own (cache, followed head, coalesced): the saving.
    pub client_calls: u64,
    pub upstream_calls: u64,
    pub upstream_calls_saved: u64,
    pub cache_hits: u64,
    pub cache_bytes: i64,
    /// The followed head (0: none yet, or no cache).
    pub followed_head: i64,
    /// Channel routes (LNbits) only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<ChannelStatus>,
}

#[derive(Serialize)]
pub struct ChannelStatus {
    /// "proxy" (to LNbits) or "hub" (submux is the channel server).
    pub mode: &'static str,
    /// Channels held (with clients or buffered messages).
    pub channels: i64,
    pub pushes: u64,
    pub replayed_frames: u64,
    /// `None` without a backplane.
    pub backplane_connected: Option<bool>,
}

impl RouteStatus {
    fn new(path: &str, dialect: String, upstreams: &[String], m: &RouteMetrics) -> Self {
        RouteStatus {
            path: path.to_string(),
            dialect,
            upstreams: upstreams.to_vec(),
            active_upstream: m.active_upstream.load(Relaxed),
            upstream_connections: m.upstream_connections.load(Relaxed),
            sessions: m.sessions.load(Relaxed),
            client_subscriptions: m.client_subscriptions.load(Relaxed),
            topics: m.topics.load(Relaxed),
            notifications_in: m.notifications_in.load(Relaxed),
            frames_out: m.frames_out.load(Relaxed),
            slow_client_closes: m.slow_client_closes.load(Relaxed),
            upstream_reconnects: m.upstream_reconnects.load(Relaxed),
            client_calls: m.requests.load(Relaxed),
            upstream_calls: m.upstream_calls.load(Relaxed),
            upstream_calls_saved: m.upstream_calls_saved.load(Relaxed),
            cache_hits: m.cache_hits.load(Relaxed),
            cache_bytes: m.cache_bytes.load(Relaxed),
            followed_head: m.followed_head.load(Relaxed),
            channels: None,
        }
    }
}

/// A snapshot of every route's counters.
pub fn snapshot(hub: &Hub, channels: &[ChannelRoute], started: Instant) -> Status {
    let mut routes: Vec<RouteStatus> = hub
        .routes()
        .iter()
        .map(|r| {
            RouteStatus::new(
                &r.path,
                r.dialect.kind().to_string(),
                &r.upstreams,
                &r.metrics,
            )
        })
        .collect();
    routes.extend(channels.iter().map(|c| {
        let m = &c.metrics;
        let dialect = crate::dialect::DialectKind::Lnbits.to_string();
        RouteStatus {
            channels: Some(ChannelStatus {
                mode: if c.is_proxy() { "proxy" } else { "hub" },
                channels: m.channels.load(Relaxed),
                pushes: m.pushes.load(Relaxed),
                replayed_frames: m.replayed_frames.load(Relaxed),
                backplane_connected: c
                    .has_backplane()
                    .then(|| m.backplane_connected.load(Relaxed) > 0),
            }),
            ..RouteStatus::new(&c.path, dialect, &c.upstreams, m)
        }
    }));
    Status {
        version: env!("CARGO_PKG_VERSION"),
        time_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis()),
        uptime_ms: started.elapsed().as_millis(),
        routes,
    }
}
