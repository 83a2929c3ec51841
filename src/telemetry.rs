//! Tracing setup and metrics. Every per-route metric is declared once, in the table of
//! [`route_metrics!`] below (field, exposed name, help); values are plain atomics updated on
//! the hot path without locks, and `/metrics` renders them with `prometheus-client`'s
//! Prometheus text encoder, labelled `route`.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering, Ordering::Relaxed};
use std::sync::Arc;

/// `Content-Type` of [`render_prometheus`]'s output (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds (seconds) of the latency histograms.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A latency: the running total in µs (exported as a `*_seconds_total` counter) and a
/// histogram of the observations. `fetch_add(µs, _)` records one observation, so that it
/// stands where a plain `AtomicU64` sum stood.
#[derive(Debug)]
pub struct Latency {
    micros: AtomicU64,
    histogram: Histogram,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            micros: AtomicU64::new(0),
            histogram: Histogram::new(LATENCY_BUCKETS),
        }
    }
}

impl Latency {
    /// Record one observation of `us` microseconds; returns the previous total.
    pub fn fetch_add(&self, us: u64, order: Ordering) -> u64 {
        self.histogram.observe(us as f64 / 1e6);
        self.micros.fetch_add(us, order)
    }
    /// The total of all observations, in µs.
    pub fn load(&self, order: Ordering) -> u64 {
        self.micros.load(order)
    }
}

/// Declares [`RouteMetrics`] and what `/metrics` exports from it, one line per metric:
/// gauges (`AtomicI64`), counters (`AtomicU64`; the name ends in `_total`), latencies
/// ([`Latency`]: a `*_seconds_total` counter and a histogram), then fields that are not
/// exported. `closes` (by [`CloseReason`]) is added by hand.
macro_rules! route_metrics {
    (
        gauges { $($g:ident: $g_name:literal, $g_help:literal;)* }
        counters { $($c:ident: $c_name:literal, $c_help:literal;)* }
        latencies { $($l:ident: $l_sum:literal, $l_sum_help:literal, $l_hist:literal, $l_help:literal;)* }
        internal { $($(#[$i_doc:meta])* $i:ident: $i_ty:ty;)* }
    ) => {
        /// Counters and gauges of one route. Shared by its actor and sessions; updates are
        /// relaxed atomic adds (no lock on the hot path).
        #[derive(Debug, Default)]
        pub struct RouteMetrics {
            $(#[doc = $g_help] pub $g: AtomicI64,)*
            $(#[doc = $c_help] pub $c: AtomicU64,)*
            $(#[doc = $l_help] pub $l: Latency,)*
            /// Client sessions ended, by [`CloseReason`] (`submux_client_closes_total`).
            pub closes: [AtomicU64; CloseReason::ALL.len()],
            $($(#[$i_doc])* pub $i: $i_ty,)*
        }

        /// Exported gauges: name, help, value.
        const GAUGES: &[Series<i64>] = &[$(($g_name, $g_help, |m| m.$g.load(Relaxed)),)*];
        /// Exported counters: name (with `_total`), help, value.
        const COUNTERS: &[Series<u64>] = &[$(($c_name, $c_help, |m| m.$c.load(Relaxed)),)*];
        /// Exported latencies: sum counter (name, help), histogram (name, help), the latency.
        const LATENCIES: &[LatencySeries] =
            &[$((($l_sum, $l_sum_help), ($l_hist, $l_help), |m| &m.$l),)*];
    };
}

/// One exported series: name, help text, how to read it from a route's metrics.
type Series<T> = (&'static str, &'static str, fn(&RouteMetrics) -> T);
type LatencySeries = (
    (&'static str, &'static str),
    (&'static str, &'static str),
    fn(&RouteMetrics) -> &Latency,
);

/// Upstream labels of `submux_hedge_first_total` (`0` to `15`; 15 counts 15 and later).
pub const HEDGE_UPSTREAM_LABELS: usize = 16;

const HEDGE_FIRST: (&str, &str) = (
    "submux_hedge_first_total",
    "Notifications of hedged routes delivered to clients, by the upstream (index into the route's upstreams) whose copy arrived first.",
);

const CLIENT_CLOSES: (&str, &str) = (
    "submux_client_closes_total",
    "Client sessions ended, by reason.",
);

route_metrics! {
    gauges {
        sessions: "submux_sessions", "Connected client sessions.";
        client_subscriptions: "submux_client_subscriptions", "Subscriptions held by clients.";
        topics: "submux_topics", "Deduplicated upstream subscriptions (topics).";
        upstream_connections: "submux_upstream_connections", "Open upstream connections.";
        channels: "submux_channels",
            "Channels held by a channel route (LNbits), with clients or buffered messages.";
        backplane_connected: "submux_backplane_connected",
            "1 while the Redis backplane subscription of a channel route is up.";
        payments_watched: "submux_payments_watched_addresses",
            "Addresses a payments route watches upstream (one subscription each, shared by its watchers).";
        cache_bytes: "submux_cache_bytes", "Bytes held by the route's call cache.";
        cache_entries: "submux_cache_entries", "Answers held by the route's call cache.";
        followed_head: "submux_followed_head",
            "Highest head (block number) the route has delivered to clients (0: none yet).";
    }
    counters {
        gap_notices: "submux_gap_notices_total",
            "Gaps announced to opted-in clients after an upstream connection was replaced.";
        backfilled: "submux_backfilled_total",
            "Notifications fetched from the node after an upstream switch and delivered.";
        reorg_retracted: "submux_reorg_retracted_total",
            "Logs delivered before an upstream switch, sent again with removed: true because the new upstream's chain no longer has their block.";
        history_replayed: "submux_history_replayed_total",
            "Notifications replayed from a topic's history to clients resuming with ?since=.";
        coalesced_calls: "submux_coalesced_calls_total",
            "Client calls answered by an identical call already in flight (not sent upstream).";
        cache_hits: "submux_cache_hits_total",
            "Client calls answered from the call cache (not sent upstream).";
        cache_misses: "submux_cache_misses_total",
            "Cacheable client calls that were not in the cache.";
        head_answers: "submux_head_answers_total",
            "Client calls answered from the route's followed head (eth_blockNumber).";
        upstream_calls_saved: "submux_upstream_calls_saved_total",
            "Client calls answered without an upstream call of their own (cache, head, coalesced).";
        upstream_calls: "submux_upstream_calls_total",
            "Calls sent upstream on behalf of clients.";
        cache_evictions: "submux_cache_evictions_total",
            "Cached answers evicted (least recently used) to stay within cache_max_bytes.";
        cache_invalidations: "submux_cache_invalidations_total",
            "Cached answers dropped because the followed head moved or the upstream changed.";
        latest_waits: "submux_latest_waits_total",
            "Calls at latest held until a lagging upstream reached the head clients already saw.";
        latest_wait_errors: "submux_latest_wait_errors_total",
            "Calls at latest answered with an error because the upstream stayed behind.";
        coalesced: "submux_coalesced_total",
            "Times a lagging client that opted in (?coalesce=1) skipped to the latest.";
        upstream_failbacks: "submux_upstream_failbacks_total",
            "Moves back to the primary upstream after running on a backup.";
        upstream_stalls: "submux_upstream_stalls_total",
            "Upstream connections replaced because a steady stream went silent.";
        notifications_in: "submux_notifications_in_total", "Notifications received from upstreams.";
        frames_out: "submux_frames_out_total", "Frames written to clients.";
        deflate_compressions: "submux_deflate_compressions_total",
            "Messages compressed for permessage-deflate clients (once per message, shared).";
        deflated_frames_out: "submux_deflated_frames_out_total",
            "Frames written compressed (permessage-deflate).";
        deflated_plain_bytes: "submux_deflated_plain_bytes_total",
            "Bytes the compressed frames would have taken uncompressed.";
        deflated_wire_bytes: "submux_deflated_wire_bytes_total",
            "Bytes the compressed frames took on the wire.";
        slow_client_closes: "submux_slow_client_closes_total", "Clients closed for not keeping up.";
        upstream_reconnects: "submux_upstream_reconnects_total",
            "Upstream connections lost and re-established.";
        upstream_connect_failures: "submux_upstream_connect_failures_total",
            "Failed upstream connection attempts.";
        upstream_subscribes: "submux_upstream_subscribes_total", "Subscribe requests sent upstream.";
        upstream_unsubscribes: "submux_upstream_unsubscribes_total",
            "Unsubscribe requests sent upstream.";
        requests: "submux_requests_total",
            "Client calls answered (upstream, from the cache or from the followed head).";
        request_errors: "submux_request_errors_total",
            "Forwarded calls answered with a submux error.";
        unknown_notifications: "submux_unknown_notifications_total",
            "Upstream notifications for no known topic.";
        malformed_upstream: "submux_malformed_upstream_frames_total",
            "Upstream frames that could not be parsed.";
        pushes: "submux_pushes_total", "Pushes accepted by a channel route.";
        replayed_frames: "submux_replayed_frames_total",
            "Messages replayed to channel clients reconnecting with ?since=.";
        backplane_reconnects: "submux_backplane_reconnects_total",
            "Redis backplane subscriptions lost and re-established.";
        payments_events: "submux_payments_events_total",
            "Credit events (one per credit and state) written to a payments route's log.";
        webhook_deliveries: "submux_webhook_deliveries_total",
            "Payments events delivered to webhooks (acknowledged with a 2xx).";
        webhook_failures: "submux_webhook_failures_total",
            "Webhook delivery attempts that failed and will be retried.";
        hedge_duplicates: "submux_hedge_duplicates_total",
            "Copies of notifications suppressed on hedged routes (a copy already delivered, or older than the dedupe window).";
    }
    latencies {
        resubscribe_micros:
            "submux_resubscribe_seconds_total",
            "Total seconds spent resubscribing topics after reconnects.",
            "submux_resubscribe_duration_seconds",
            "Seconds from resubscribing a topic after a reconnect to its first notification.";
        request_micros:
            "submux_request_seconds_total", "Total seconds forwarded calls spent upstream.",
            "submux_request_duration_seconds", "Seconds each forwarded call spent upstream.";
        hedge_lead_micros:
            "submux_hedge_lead_seconds_total",
            "Total seconds by which first copies led their duplicates on hedged routes.",
            "submux_hedge_lead_seconds",
            "Seconds by which the first copy of a notification arrived before its copy from another upstream (hedged routes).";
    }
    internal {
        /// Index into the route's `upstreams` of the primary connection's current upstream.
        active_upstream: AtomicUsize;
        /// Resubscribes timed in `resubscribe_micros` (its histogram counts them too).
        resubscribes: AtomicU64;
        /// Hedged routes: notifications delivered first by upstream number `i` of the
        /// route's list (the last entry counts that one and every later one), exported as
        /// `submux_hedge_first_total{upstream="i"}`.
        hedge_first: [AtomicU64; HEDGE_UPSTREAM_LABELS];
        /// Calls by method label (bounded by the dialect's list) and [`CallOutcome`]
        /// (`submux_calls_by_method_total`); written by the route core only.
        by_method: std::sync::Mutex<std::collections::BTreeMap<&'static str, [u64; CallOutcome::ALL.len()]>>;
        /// Client calls and the upstream calls they cost, by API key name
        /// (`submux_key_calls_total`, `submux_key_upstream_calls_total`).
        by_key: std::sync::Mutex<std::collections::BTreeMap<Arc<str>, [u64; 2]>>;
    }
}

/// How a cacheable call was answered (label `outcome` of `submux_calls_by_method_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// From the cache.
    Hit,
    /// Sent upstream.
    Miss,
    /// Shared the answer of an identical call in flight.
    Coalesced,
    /// From the followed head.
    Head,
}

impl CallOutcome {
    pub const ALL: [CallOutcome; 4] = [
        CallOutcome::Hit,
        CallOutcome::Miss,
        CallOutcome::Coalesced,
        CallOutcome::Head,
    ];
    pub fn label(self) -> &'static str {
        match self {
            CallOutcome::Hit => "hit",
            CallOutcome::Miss => "miss",
            CallOutcome::Coalesced => "coalesced",
            CallOutcome::Head => "head",
        }
    }
}

/// The `key` label of calls made without an API key.
pub const NO_KEY: &str = "anonymous";

const BY_METHOD: (&str, &str) = (
    "submux_calls_by_method_total",
    "Cacheable client calls by method and outcome (hit, miss, coalesced, head).",
);
const KEY_CALLS: (&str, &str) = (
    "submux_key_calls_total",
    "Client calls answered, by API key.",
);
const KEY_UPSTREAM_CALLS: (&str, &str) = (
    "submux_key_upstream_calls_total",
    "Upstream calls the client calls of an API key cost.",
);

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
    /// Count a cacheable call of `method` (a label from the dialect's bounded list).
    pub fn count_call(&self, method: &'static str, outcome: CallOutcome) {
        let i = CallOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(0);
        let mut m = self.by_method.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(method).or_default()[i] += 1;
    }
    /// Count one answered client call of API key `key` (None: no key) and whether it
    /// cost an upstream call of its own.
    pub fn count_key_call(&self, key: Option<&str>, upstream: bool) {
        let key = key.unwrap_or(NO_KEY);
        let mut m = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        if !m.contains_key(key) {
            m.insert(Arc::from(key), [0; 2]);
        }
        if let Some(c) = m.get_mut(key) {
            c[0] += 1;
            c[1] += u64::from(upstream);
        }
    }
    /// Calls by method label and outcome.
    pub fn calls_by_method(&self) -> Vec<(&'static str, [u64; 4])> {
        let m = self.by_method.lock().unwrap_or_else(|p| p.into_inner());
        m.iter().map(|(k, v)| (*k, *v)).collect()
    }
    /// (key, client calls, upstream calls), by API key name.
    pub fn calls_by_key(&self) -> Vec<(Arc<str>, u64, u64)> {
        let m = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        m.iter().map(|(k, v)| (k.clone(), v[0], v[1])).collect()
    }
    pub fn ready(&self) -> bool {
        self.upstream_connections.load(Relaxed) > 0
    }
}

/// The routes' metrics as one `prometheus-client` collector, read at scrape time.
#[derive(Debug)]
struct Routes(Vec<(Arc<str>, Arc<RouteMetrics>)>);

impl Collector for Routes {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // The encoder appends `_total` to counters; the table names them as exported.
        let counter_name = |n: &'static str| n.strip_suffix("_total").unwrap_or(n);
        for (name, help, get) in GAUGES {
            let mut family = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (route, m) in &self.0 {
                let labels = [("route", &**route)];
                ConstGauge::new(get(m)).encode(family.encode_family(&labels)?)?;
            }
        }
        for (name, help, get) in COUNTERS {
            let name = counter_name(name);
            let mut family = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (route, m) in &self.0 {
                let labels = [("route", &**route)];
                ConstCounter::new(get(m)).encode(family.encode_family(&labels)?)?;
            }
        }
        for ((name, help), _, get) in LATENCIES {
            let name = counter_name(name);
            let mut family = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (route, m) in &self.0 {
                let labels = [("route", &**route)];
                let seconds = get(m).load(Relaxed) as f64 / 1e6;
                ConstCounter::new(seconds).encode(family.encode_family(&labels)?)?;
            }
        }
        let (name, help) = CLIENT_CLOSES;
        let name = counter_name(name);
        let mut family = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (route, m) in &self.0 {
            for (why, n) in CloseReason::ALL.iter().zip(&m.closes) {
                let labels = [("route", &**route), ("reason", why.label())];
                ConstCounter::new(n.load(Relaxed)).encode(family.encode_family(&labels)?)?;
            }
        }
        let (name, help) = HEDGE_FIRST;
        let name = counter_name(name);
        let mut family = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (route, m) in &self.0 {
            for (i, n) in m.hedge_first.iter().enumerate() {
                // Upstream 0 always (a family with a sample per route), others once they
                // delivered something.
                let n = n.load(Relaxed);
                if n > 0 || i == 0 {
                    let upstream = i.to_string();
                    let labels = [("route", &**route), ("upstream", upstream.as_str())];
                    ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        let (name, help) = BY_METHOD;
        let name = counter_name(name);
        let mut family = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (route, m) in &self.0 {
            for (method, counts) in m.calls_by_method() {
                for (outcome, n) in CallOutcome::ALL.iter().zip(counts) {
                    let labels = [
                        ("route", &**route),
                        ("method", method),
                        ("outcome", outcome.label()),
                    ];
                    ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        for (i, (name, help)) in [KEY_CALLS, KEY_UPSTREAM_CALLS].into_iter().enumerate() {
            let name = counter_name(name);
            let mut family = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (route, m) in &self.0 {
                for (key, calls, upstream) in m.calls_by_key() {
                    let labels = [("route", &**route), ("key", &*key)];
                    let n = if i == 0 { calls } else { upstream };
                    ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        for (_, (name, help), get) in LATENCIES {
            let mut family = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for (route, m) in &self.0 {
                let labels = [("route", &**route)];
                get(m).histogram.encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// Render all routes' metrics in the Prometheus text format ([`CONTENT_TYPE`]).
pub fn render_prometheus(routes: Vec<(Arc<str>, Arc<RouteMetrics>)>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Routes(routes)));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
        tracing::warn!(error = %e, "metrics not rendered");
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
        let m = Arc::new(RouteMetrics::default());
        RouteMetrics::inc(&m.frames_out);
        let render = || render_prometheus(vec![(Arc::from("/eth"), m.clone())]);
        let text = render();
        assert!(text.contains("# TYPE submux_frames_out_total counter"));
        assert!(text.contains("submux_frames_out_total{route=\"/eth\"} 1\n"));
        assert!(text.contains("# TYPE submux_topics gauge"));
        assert!(text.contains("submux_topics{route=\"/eth\"} 0\n"));
        m.count_close(CloseReason::Slow);
        let text = render();
        assert!(text.contains("submux_client_closes_total{route=\"/eth\",reason=\"slow\"} 1\n"));
        assert!(text.contains("submux_client_closes_total{route=\"/eth\",reason=\"idle\"} 0\n"));
        m.count_call("eth_call", CallOutcome::Hit);
        m.count_call("eth_call", CallOutcome::Hit);
        m.count_key_call(Some("alice"), false);
        m.count_key_call(None, true);
        let text = render();
        for line in [
            "submux_calls_by_method_total{route=\"/eth\",method=\"eth_call\",outcome=\"hit\"} 2\n",
            "submux_calls_by_method_total{route=\"/eth\",method=\"eth_call\",outcome=\"miss\"} 0\n",
            "submux_key_calls_total{route=\"/eth\",key=\"alice\"} 1\n",
            "submux_key_upstream_calls_total{route=\"/eth\",key=\"alice\"} 0\n",
            "submux_key_upstream_calls_total{route=\"/eth\",key=\"anonymous\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }

    #[test]
    fn latencies_are_sums_and_histograms() {
        let m = Arc::new(RouteMetrics::default());
        m.request_micros.fetch_add(2_000, Relaxed);
        m.request_micros.fetch_add(500_000, Relaxed);
        assert_eq!(m.request_micros.load(Relaxed), 502_000);
        let text = render_prometheus(vec![(Arc::from("/eth"), m)]);
        assert!(text.contains("# TYPE submux_request_seconds_total counter"));
        assert!(text.contains("submux_request_seconds_total{route=\"/eth\"} 0.502\n"));
        assert!(text.contains("# TYPE submux_request_duration_seconds histogram"));
        for line in [
            "submux_request_duration_seconds_bucket{route=\"/eth\",le=\"0.001\"} 0\n",
            "submux_request_duration_seconds_bucket{route=\"/eth\",le=\"0.0025\"} 1\n",
            "submux_request_duration_seconds_bucket{route=\"/eth\",le=\"0.5\"} 2\n",
            "submux_request_duration_seconds_bucket{route=\"/eth\",le=\"+Inf\"} 2\n",
            "submux_request_duration_seconds_sum{route=\"/eth\"} 0.502\n",
            "submux_request_duration_seconds_count{route=\"/eth\"} 2\n",
            "submux_resubscribe_duration_seconds_count{route=\"/eth\"} 0\n",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }

    /// Every name `/metrics` has exported since before prometheus-client (docs/operations.md lists them),
    /// once each, with a HELP and a TYPE line, for every route.
    #[test]
    fn every_documented_metric_is_exported() {
        let names = [
            ("submux_sessions", "gauge"),
            ("submux_client_subscriptions", "gauge"),
            ("submux_topics", "gauge"),
            ("submux_upstream_connections", "gauge"),
            ("submux_channels", "gauge"),
            ("submux_backplane_connected", "gauge"),
            ("submux_cache_bytes", "gauge"),
            ("submux_cache_entries", "gauge"),
            ("submux_followed_head", "gauge"),
            ("submux_cache_hits_total", "counter"),
            ("submux_cache_misses_total", "counter"),
            ("submux_head_answers_total", "counter"),
            ("submux_upstream_calls_saved_total", "counter"),
            ("submux_upstream_calls_total", "counter"),
            ("submux_cache_evictions_total", "counter"),
            ("submux_cache_invalidations_total", "counter"),
            ("submux_latest_waits_total", "counter"),
            ("submux_latest_wait_errors_total", "counter"),
            ("submux_calls_by_method_total", "counter"),
            ("submux_key_calls_total", "counter"),
            ("submux_key_upstream_calls_total", "counter"),
            ("submux_gap_notices_total", "counter"),
            ("submux_history_replayed_total", "counter"),
            ("submux_backfilled_total", "counter"),
            ("submux_reorg_retracted_total", "counter"),
            ("submux_coalesced_calls_total", "counter"),
            ("submux_coalesced_total", "counter"),
            ("submux_upstream_failbacks_total", "counter"),
            ("submux_upstream_stalls_total", "counter"),
            ("submux_notifications_in_total", "counter"),
            ("submux_frames_out_total", "counter"),
            ("submux_deflate_compressions_total", "counter"),
            ("submux_deflated_frames_out_total", "counter"),
            ("submux_deflated_plain_bytes_total", "counter"),
            ("submux_deflated_wire_bytes_total", "counter"),
            ("submux_slow_client_closes_total", "counter"),
            ("submux_upstream_reconnects_total", "counter"),
            ("submux_upstream_connect_failures_total", "counter"),
            ("submux_upstream_subscribes_total", "counter"),
            ("submux_upstream_unsubscribes_total", "counter"),
            ("submux_requests_total", "counter"),
            ("submux_request_errors_total", "counter"),
            ("submux_unknown_notifications_total", "counter"),
            ("submux_malformed_upstream_frames_total", "counter"),
            ("submux_resubscribe_seconds_total", "counter"),
            ("submux_request_seconds_total", "counter"),
            ("submux_pushes_total", "counter"),
            ("submux_replayed_frames_total", "counter"),
            ("submux_backplane_reconnects_total", "counter"),
            ("submux_payments_watched_addresses", "gauge"),
            ("submux_payments_events_total", "counter"),
            ("submux_webhook_deliveries_total", "counter"),
            ("submux_webhook_failures_total", "counter"),
            ("submux_client_closes_total", "counter"),
            ("submux_hedge_duplicates_total", "counter"),
            ("submux_hedge_lead_seconds_total", "counter"),
            ("submux_hedge_first_total", "counter"),
            ("submux_hedge_lead_seconds", "histogram"),
            ("submux_resubscribe_duration_seconds", "histogram"),
            ("submux_request_duration_seconds", "histogram"),
        ];
        let routes = ["/eth", "/api/v1/ws"];
        let text = render_prometheus(
            routes
                .iter()
                .map(|r| {
                    let m = RouteMetrics::default();
                    // The labelled families have a series once something is counted.
                    m.count_call("eth_call", CallOutcome::Hit);
                    m.count_key_call(None, true);
                    (Arc::from(*r), Arc::new(m))
                })
                .collect(),
        );
        let docs = include_str!("../docs/operations.md");
        for (name, kind) in names {
            assert_eq!(
                text.matches(&format!("# TYPE {name} {kind}\n")).count(),
                1,
                "{name}"
            );
            assert_eq!(
                text.matches(&format!("# HELP {name} ")).count(),
                1,
                "{name}"
            );
            let sample = if kind == "histogram" {
                format!("{name}_count{{")
            } else {
                format!("{name}{{")
            };
            for r in routes {
                assert!(
                    text.contains(&format!("{sample}route=\"{r}\"")),
                    "{name} for {r}"
                );
            }
            assert!(
                docs.contains(&format!("`{name}")),
                "docs/operations.md documents {name}"
            );
        }
        let families = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        assert_eq!(families, names.len(), "no metric left undocumented here");
    }
}
