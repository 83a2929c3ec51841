//! Proxy mode: one upstream WebSocket per channel, to `{upstream}/{item_id}`, shared by
//! every local client of the channel. Opened by the actor on the first client, cancelled by
//! it after the linger when the last one leaves. While it runs it reconnects with capped
//! exponential backoff and jitter, moving to the next URL of `upstreams` after every lost or
//! refused connection. Only this task touches its socket; it never writes text (LNbits
//! never reads what clients send), only pings and the closing handshake.

use super::{ChannelRoute, Command};
use crate::backoff::Failover;
use crate::dialect::lnbits::ItemId;
use crate::telemetry::RouteMetrics;
use crate::upstream::connect::{connect, inbound, Inbound, UpstreamStream};
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, Instrument};

/// A ping the upstream does not accept within this long marks the socket dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn spawn(
    route: ChannelRoute,
    item: ItemId,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) {
    let span = tracing::debug_span!("channel_upstream", item = %item);
    tracker.spawn(run(route, item, cancel).instrument(span));
}

enum End {
    Cancelled,
    Lost(String),
}

async fn run(route: ChannelRoute, item: ItemId, cancel: CancellationToken) {
    let s = route.settings.clone();
    let mut failover = Failover::new(s.upstreams.len(), s.backoff_initial, s.backoff_max);
    let mut connected_before = false;
    let m = route.metrics.clone();
    loop {
        let index = failover.current();
        let base = &s.upstreams[index];
        let url = format!("{}/{}", base.trim_end_matches('/'), item);
        let attempt = tokio::select! {
            _ = cancel.cancelled() => return,
            r = connect(&url, s.connect_timeout, s.upstream_max_message_bytes) => r,
        };
        match attempt {
            Ok(ws) => {
                if connected_before {
                    RouteMetrics::inc(&m.upstream_reconnects);
                    info!(upstream = %route.upstreams[index], "channel upstream reconnected");
                }
                connected_before = true;
                failover.succeeded();
                RouteMetrics::add(&m.upstream_connections, 1);
                m.active_upstream.store(index, Relaxed);
                let end = pump(ws, &route, &item, &cancel).await;
                RouteMetrics::add(&m.upstream_connections, -1);
                match end {
                    End::Cancelled => return,
                    End::Lost(why) => debug!(%why, "channel upstream lost"),
                }
            }
            Err(e) => {
                RouteMetrics::inc(&m.upstream_connect_failures);
                debug!(error = %e, "channel upstream connect failed");
            }
        }
        let delay = failover.failed(fastrand::f64());
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Relay the socket's text frames to the actor until it fails or the channel is closed.
async fn pump(
    mut ws: UpstreamStream,
    route: &ChannelRoute,
    item: &ItemId,
    cancel: &CancellationToken,
) -> End {
    let s = &route.settings;
    let tx = route.sender();
    let mut ping = tokio::time::interval(s.upstream_ping_interval);
    ping.reset();
    let mut last_rx = Instant::now();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                let _ = tokio::time::timeout(WRITE_TIMEOUT, ws.close(None)).await;
                return End::Cancelled;
            }
            msg = ws.next() => {
                last_rx = Instant::now();
                match msg.map(|r| r.map(inbound)) {
                    Some(Ok(Inbound::Text(text))) => {
                        let cmd = Command::Deliver { item: item.clone(), seq: None, text };
                        if tx.send(cmd).await.is_err() {
                            return End::Cancelled;
                        }
                    }
                    Some(Ok(Inbound::NotUtf8)) => {
                        RouteMetrics::inc(&route.metrics.malformed_upstream);
                        debug!("malformed channel upstream frame: binary frame is not UTF-8");
                    }
                    Some(Ok(Inbound::Control(Message::Close(_)))) | None => {
                        return End::Lost("closed".into())
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return End::Lost(e.to_string()),
                }
            }
            _ = ping.tick() => {
                if last_rx.elapsed() >= s.upstream_idle_timeout {
                    return End::Lost("no frame or pong within upstream_idle_timeout_ms".into());
                }
                match tokio::time::timeout(WRITE_TIMEOUT, ws.send(Message::Ping(Default::default()))).await {
                    Ok(Ok(())) => {}
                    _ => return End::Lost("ping not accepted".into()),
                }
            }
        }
    }
}
