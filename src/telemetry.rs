//! Tracing setup and metrics. Metric names are constants here; values are plain atomics
//! (per route) rendered as Prometheus text by `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};

pub const SESSIONS: &str = "submux_sessions";
pub const CLIENT_SUBSCRIPTIONS: &str = "submux_client_subscriptions";
pub const TOPICS: &str = "submux_topics";
pub const UPSTREAM_CONNECTIONS: &str = "submux_upstream_connections";
pub const NOTIFICATIONS_IN: &str = "submux_notifications_in_total";
pub const FRAMES_OUT: &str = "submux_frames_out_total";
pub const SLOW_CLIENT_CLOSES: &str = "submux_slow_client_closes_total";
pub const CLIENT_CLOSES: &str = "submux_client_closes_total";
pub const GAP_NOTICES: &str = "submux_gap_notices_total";
pub const COALESCED: &str = "submux_coalesced_total";
pub const UPSTREAM_FAILBACKS: &str = "submux_upstream_failbacks_total";
pub const UPSTREAM_STALLS: &str = "submux_upstream_stalls_total";
pub const UPSTREAM_RECONNECTS: &str = "submux_upstream_reconnects_total";
pub const UPSTREAM_CONNECT_FAILURES: &str = "submux_upstream_connect_failures_total";
pub const UPSTREAM_SUBSCRIBES: &str = "submux_upstream_subscribes_total";
pub const UPSTREAM_UNSUBSCRIBES: &str = "submux_upstream_unsubscribes_total";
pub const REQUESTS: &str = "submux_requests_total";
pub const REQUEST_ERRORS: &str = "submux_request_errors_total";
pub const UNKNOWN_NOTIFICATIONS: &str = "submux_unknown_notifications_total";
pub const MALFORMED_UPSTREAM: &str = "submux_malformed_upstream_frames_total";
pub const RESUBSCRIBE_SECONDS: &str = "submux_resubscribe_seconds_total";
pub const REQUEST_SECONDS: &str = "submux_request_seconds_total";
pub const CHANNELS: &str = "submux_channels";
pub const PUSHES: &str = "submux_pushes_total";
pub const REPLAYED_FRAMES: &str = "submux_replayed_frames_total";
pub const BACKPLANE_CONNECTED: &str = "submux_backplane_connected";
pub const BACKPLANE_RECONNECTS: &str = "submux_backplane_reconnects_total";

/// Counters and gauges of one route. Shared by its actor and sessions; updates are relaxed
/// atomic adds (no lock on the hot path).
#[derive(Debug, Default)]
pub struct RouteMetrics {
    pub sessions: AtomicI64,
    pub client_subscriptions: AtomicI64,
    pub topics: AtomicI64,
    pub upstream_connections: AtomicI64,
    /// Index into the route's `upstreams` of the primary connection's current upstream.
    pub active_upstream: AtomicUsize,
    pub notifications_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub slow_client_closes: AtomicU64,
    pub upstream_reconnects: AtomicU64,
    /// Client sessions ended, by [`CloseReason`].
    pub closes: [AtomicU64; CloseReason::ALL.len()],
    /// Gap notices announced after an upstream connection was replaced.
    pub gap_notices: AtomicU64,
    /// Times a lagging client that opted in skipped to the latest notification.
    pub coalesced: AtomicU64,
    /// Moves back to the primary upstream after running on a backup.
    pub upstream_failbacks: AtomicU64,
    /// Connections replaced because a steady stream went silent.
    pub upstream_stalls: AtomicU64,
    pub upstream_connect_failures: AtomicU64,
    pub upstream_subscribes: AtomicU64,
    pub upstream_unsubscribes: AtomicU64,
    pub requests: AtomicU64,
    pub request_errors: AtomicU64,
    pub unknown_notifications: AtomicU64,
    pub malformed_upstream: AtomicU64,
    /// Sum of resubscribe latencies (µs) and their count.
    pub resubscribe_micros: AtomicU64,
    pub resubscribes: AtomicU64,
    /// Sum of forwarded request latencies (µs); the count is `requests`.
    pub request_micros: AtomicU64,
    /// Channel routes: channels held (with clients or buffered messages).
    pub channels: AtomicI64,
    /// Channel routes: pushes accepted (delivered, or forwarded to LNbits).
    pub pushes: AtomicU64,
    /// Channel routes: messages replayed to clients reconnecting with `?since=`.
    pub replayed_frames: AtomicU64,
    /// Channel routes: 1 while the Redis backplane subscription is up.
    pub backplane_connected: AtomicI64,
    pub backplane_reconnects: AtomicU64,
}

/// Why a client session ended (label of `submux_client_closes_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed or went away.
    Client,
    /// Closed with 1008: fell behind or its socket stopped accepting writes.
    Slow,
    /// Closed with 1009: a frame over `max_frame_bytes`.
    TooBig,
    /// Closed with 1001: did not answer pings.
    Idle,
    /// Closed with 1001 at shutdown.
    Shutdown,
    /// The connection failed (read or write error).
    Error,
}

impl CloseReason {
    pub const ALL: [CloseReason; 6] = [
        CloseReason::Client,
        CloseReason::Slow,
        CloseReason::TooBig,
        CloseReason::Idle,
        CloseReason::Shutdown,
        CloseReason::Error,
    ];
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::Client => "client",
            CloseReason::Slow => "slow",
            CloseReason::TooBig => "too_big",
            CloseReason::Idle => "idle",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Error => "error",
        }
    }
}

impl RouteMetrics {
    pub fn count_close(&self, why: CloseReason) {
        let i = CloseReason::ALL.iter().position(|r| *r == why).unwrap_or(0);
        self.closes[i].fetch_add(1, Relaxed);
    }
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }
    pub fn add(g: &AtomicI64, d: i64) {
        g.fetch_add(d, Relaxed);
    }
    pub fn ready(&self) -> bool {
        self.upstream_connections.load(Relaxed) > 0
    }
}

/// One exported series: name, help text, how to read it from a route's metrics.
type Series<T> = (&'static str, &'static str, fn(&RouteMetrics) -> T);

/// Render all routes' metrics in the Prometheus text format.
pub fn render_prometheus(routes: &[(&str, &RouteMetrics)]) -> String {
    let mut out = String::new();
    let gauges: [Series<i64>; 6] = [
        (SESSIONS, "Connected client sessions.", |m| {
            m.sessions.load(Relaxed)
        }),
        (
            CLIENT_SUBSCRIPTIONS,
            "Subscriptions held by clients.",
            |m| m.client_subscriptions.load(Relaxed),
        ),
        (
            TOPICS,
            "Deduplicated upstream subscriptions (topics).",
            |m| m.topics.load(Relaxed),
        ),
        (UPSTREAM_CONNECTIONS, "Open upstream connections.", |m| {
            m.upstream_connections.load(Relaxed)
        }),
        (
            CHANNELS,
            "Channels held by a channel route (LNbits), with clients or buffered messages.",
            |m| m.channels.load(Relaxed),
        ),
        (
            BACKPLANE_CONNECTED,
            "1 while the Redis backplane subscription of a channel route is up.",
            |m| m.backplane_connected.load(Relaxed),
        ),
    ];
    for (name, help, get) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (route, m) in routes {
            let _ = writeln!(out, "{name}{{route=\"{route}\"}} {}", get(m));
        }
    }
    let counters: [Series<f64>; 20] = [
        (
            GAP_NOTICES,
            "Gaps announced to opted-in clients after an upstream connection was replaced.",
            |m| m.gap_notices.load(Relaxed) as f64,
        ),
        (
            COALESCED,
            "Times a lagging client that opted in (?coalesce=1) skipped to the latest.",
            |m| m.coalesced.load(Relaxed) as f64,
        ),
        (
            UPSTREAM_FAILBACKS,
            "Moves back to the primary upstream after running on a backup.",
            |m| m.upstream_failbacks.load(Relaxed) as f64,
        ),
        (
            UPSTREAM_STALLS,
            "Upstream connections replaced because a steady stream went silent.",
            |m| m.upstream_stalls.load(Relaxed) as f64,
        ),
        (
            NOTIFICATIONS_IN,
            "Notifications received from upstreams.",
            |m| m.notifications_in.load(Relaxed) as f64,
        ),
        (FRAMES_OUT, "Frames written to clients.", |m| {
            m.frames_out.load(Relaxed) as f64
        }),
        (
            SLOW_CLIENT_CLOSES,
            "Clients closed for not keeping up.",
            |m| m.slow_client_closes.load(Relaxed) as f64,
        ),
        (
            UPSTREAM_RECONNECTS,
            "Upstream connections lost and re-established.",
            |m| m.upstream_reconnects.load(Relaxed) as f64,
        ),
        (
            UPSTREAM_CONNECT_FAILURES,
            "Failed upstream connection attempts.",
            |m| m.upstream_connect_failures.load(Relaxed) as f64,
        ),
        (
            UPSTREAM_SUBSCRIBES,
            "Subscribe requests sent upstream.",
            |m| m.upstream_subscribes.load(Relaxed) as f64,
        ),
        (
            UPSTREAM_UNSUBSCRIBES,
            "Unsubscribe requests sent upstream.",
            |m| m.upstream_unsubscribes.load(Relaxed) as f64,
        ),
        (REQUESTS, "Client calls forwarded upstream.", |m| {
            m.requests.load(Relaxed) as f64
        }),
        (
            REQUEST_ERRORS,
            "Forwarded calls answered with a submux error.",
            |m| m.request_errors.load(Relaxed) as f64,
        ),
        (
            UNKNOWN_NOTIFICATIONS,
            "Upstream notifications for no known topic.",
            |m| m.unknown_notifications.load(Relaxed) as f64,
        ),
        (
            MALFORMED_UPSTREAM,
            "Upstream frames that could not be parsed.",
            |m| m.malformed_upstream.load(Relaxed) as f64,
        ),
        (
            RESUBSCRIBE_SECONDS,
            "Total seconds spent resubscribing topics after reconnects.",
            |m| m.resubscribe_micros.load(Relaxed) as f64 / 1e6,
        ),
        (
            REQUEST_SECONDS,
            "Total seconds forwarded calls spent upstream.",
            |m| m.request_micros.load(Relaxed) as f64 / 1e6,
        ),
        (PUSHES, "Pushes accepted by a channel route.", |m| {
            m.pushes.load(Relaxed) as f64
        }),
        (
            REPLAYED_FRAMES,
            "Messages replayed to channel clients reconnecting with ?since=.",
            |m| m.replayed_frames.load(Relaxed) as f64,
        ),
        (
            BACKPLANE_RECONNECTS,
            "Redis backplane subscriptions lost and re-established.",
            |m| m.backplane_reconnects.load(Relaxed) as f64,
        ),
    ];
    for (name, help, get) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (route, m) in routes {
            let _ = writeln!(out, "{name}{{route=\"{route}\"}} {}", get(m));
        }
    }
    let name = CLIENT_CLOSES;
    let _ = writeln!(
        out,
        "# HELP {name} Client sessions ended, by reason.\n# TYPE {name} counter"
    );
    for (route, m) in routes {
        for (i, why) in CloseReason::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}{{route=\"{route}\",reason=\"{}\"}} {}",
                why.label(),
                m.closes[i].load(Relaxed)
            );
        }
    }
    out
}

/// Install the tracing subscriber: logs to stderr, level from `RUST_LOG` (default info).
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// Redact an upstream URL for logs, errors and metrics: keep scheme, host and port; hide
/// user info, path and query, where providers put API keys.
pub fn redact_url(url: &str) -> String {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return "<invalid url>".into();
    };
    let scheme = uri.scheme_str().unwrap_or("?");
    let host = uri.host().unwrap_or("?");
    let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
    let has_secret = uri.path().len() > 1 || uri.query().is_some() || url.contains('@');
    format!(
        "{scheme}://{host}{port}{}",
        if has_secret { "/…" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_keys() {
        assert_eq!(
            redact_url("wss://eth.example/v2/SECRET"),
            "wss://eth.example/…"
        );
        assert_eq!(redact_url("ws://127.0.0.1:8546"), "ws://127.0.0.1:8546");
        assert_eq!(
            redact_url("wss://h.example/?api_key=S"),
            "wss://h.example/…"
        );
        assert!(!redact_url("wss://user:pw@h.example/").contains("pw"));
    }

    #[test]
    fn prometheus_text_has_types_and_labels() {
        let m = RouteMetrics::default();
        RouteMetrics::inc(&m.frames_out);
        let text = render_prometheus(&[("/eth", &m)]);
        assert!(text.contains("# TYPE submux_frames_out_total counter"));
        assert!(text.contains("submux_frames_out_total{route=\"/eth\"} 1\n"));
        assert!(text.contains("submux_topics{route=\"/eth\"} 0\n"));
        m.count_close(CloseReason::Slow);
        let text = render_prometheus(&[("/eth", &m)]);
        assert!(text.contains("submux_client_closes_total{route=\"/eth\",reason=\"slow\"} 1\n"));
        assert!(text.contains("submux_client_closes_total{route=\"/eth\",reason=\"idle\"} 0\n"));
    }
}
