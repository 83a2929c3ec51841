//! The live status page: `GET /` (and `/status`) serve one self-contained HTML page embedded
//! in the binary (no CDN); it polls `GET /status.json` every second and computes rates from
//! the counters' deltas.

use crate::hub::Hub;
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
}

/// A snapshot of every route's counters.
pub fn snapshot(hub: &Hub, started: Instant) -> Status {
    let routes = hub
        .routes()
        .iter()
        .map(|r| {
            let m = &r.metrics;
            RouteStatus {
                path: r.path.to_string(),
                dialect: r.dialect.kind().to_string(),
                upstreams: r.upstreams.to_vec(),
                active_upstream: m.active_upstream.load(Relaxed),
                upstream_connections: m.upstream_connections.load(Relaxed),
                sessions: m.sessions.load(Relaxed),
                client_subscriptions: m.client_subscriptions.load(Relaxed),
                topics: m.topics.load(Relaxed),
                notifications_in: m.notifications_in.load(Relaxed),
                frames_out: m.frames_out.load(Relaxed),
                slow_client_closes: m.slow_client_closes.load(Relaxed),
                upstream_reconnects: m.upstream_reconnects.load(Relaxed),
            }
        })
        .collect();
    Status {
        version: env!("CARGO_PKG_VERSION"),
        time_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis()),
        uptime_ms: started.elapsed().as_millis(),
        routes,
    }
}
