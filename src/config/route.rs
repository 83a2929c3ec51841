//! `[[route]]`: a path, a dialect, its upstreams and their timing.

use super::lnbits::{LnbitsRouteConfig, LnbitsSettings};
use super::payments::{PaymentsRouteConfig, PaymentsSettings};
use super::{expand_env, ms, ConfigError, ServerConfig, RESERVED};
use crate::dialect::DialectKind;
use crate::telemetry::redact_url;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The largest `history_len` accepted: it bounds each topic's history in memory.
pub const MAX_HISTORY_LEN: usize = 65_536;
/// The smallest `cache_max_bytes` accepted.
pub const MIN_CACHE_BYTES: usize = 64 << 10;
/// The call cache of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// Bound in bytes (LRU beyond it).
    pub max_bytes: usize,
    /// How long a call at `latest` waits for a lagging upstream to reach the head.
    pub latest_wait: Duration,
}
/// The largest `backfill_max_blocks` accepted: one request per block for `newHeads`.
pub const MAX_BACKFILL_BLOCKS: u64 = 10_000;
/// The largest `backfill_max_slots` accepted (Solana slots are about 400 ms: 11 hours).
pub const MAX_BACKFILL_SLOTS: u64 = 100_000;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub path: String,
    pub dialect: DialectKind,
    #[serde(default)]
    pub upstreams: Vec<String>,
    /// HTTP JSON-RPC endpoint for POSTs on this route (forwarded verbatim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_upstream: Option<String>,
    #[serde(default = "d::request_timeout_ms")]
    pub request_timeout_ms: u64,
    #[serde(default = "d::subscribe_timeout_ms")]
    pub subscribe_timeout_ms: u64,
    #[serde(default = "d::linger_ms")]
    pub linger_ms: u64,
    #[serde(default = "d::max_upstream_connections")]
    pub max_upstream_connections: usize,
    #[serde(default = "d::topics_per_upstream_connection")]
    pub topics_per_upstream_connection: usize,
    #[serde(default = "d::upstream_ping_interval_ms")]
    pub upstream_ping_interval_ms: u64,
    #[serde(default = "d::upstream_idle_timeout_ms")]
    pub upstream_idle_timeout_ms: u64,
    #[serde(default = "d::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    #[serde(default = "d::backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    #[serde(default = "d::backoff_max_ms")]
    pub backoff_max_ms: u64,
    #[serde(default = "d::upstream_max_message_bytes")]
    pub upstream_max_message_bytes: usize,
    /// While on a backup upstream, try the primary again this often (0 = never).
    #[serde(default = "d::failback_interval_ms")]
    pub failback_interval_ms: u64,
    /// A steady stream (new heads, slots, ledgers) silent this long on a connection that
    /// still answers pings means a stalled upstream: fail over (0 = off).
    #[serde(default)]
    pub stall_timeout_ms: u64,
    /// Recent notifications kept per id-routed topic with a height, for `?since=`
    /// (0 = none kept; `?since=` then only announces the gap).
    #[serde(default = "d::history_len")]
    pub history_len: usize,
    /// After an upstream switch, fetch what subscriptions missed (Ethereum `newHeads`
    /// and `logs`) and deliver it before the live stream resumes.
    #[serde(default = "d::backfill")]
    pub backfill: bool,
    /// At most this many blocks are backfilled; older ones get the gap notice.
    #[serde(default = "d::backfill_max_blocks")]
    pub backfill_max_blocks: u64,
    /// Hold every topic on this many connections to different upstreams at once (1 =
    /// one connection; at most the number of `upstreams`); clients get each notification
    /// once, from whichever copy arrives first.
    #[serde(default = "d::hedge")]
    pub hedge: usize,
    /// XRPL: at most this many validated ledgers are backfilled; older ones get the gap
    /// notice.
    #[serde(default = "d::backfill_max_ledgers")]
    pub backfill_max_ledgers: u64,
    /// Solana: a `logsSubscribe` backfill reaches back at most this many slots before the
    /// newest missed signature; older ones get the gap notice.
    #[serde(default = "d::backfill_max_slots")]
    pub backfill_max_slots: u64,
    /// The head-aware call cache (issue 15): answers kept per lifetime, `eth_blockNumber`
    /// from the followed head, and a consistent `latest` across failovers.
    #[serde(default = "d::cache")]
    pub cache: bool,
    /// The cache's bound in bytes (answers, keys and bookkeeping); LRU beyond it.
    #[serde(default = "d::cache_max_bytes")]
    pub cache_max_bytes: usize,
    /// How long a call at `latest` waits for an upstream that is behind the head clients
    /// already saw (after a failover) before it is answered with an error.
    #[serde(default = "d::latest_wait_ms")]
    pub latest_wait_ms: u64,
    /// Answer clients that offer permessage-deflate (RFC 7692) with it.
    #[serde(default)]
    pub permessage_deflate: bool,
    /// With it, messages shorter than this still go uncompressed.
    #[serde(default = "d::deflate_min_bytes")]
    pub deflate_min_bytes: usize,
    /// `[route.lnbits]`: keys of `dialect = "lnbits"` routes only (an error elsewhere);
    /// absent ones take the defaults of [`LnbitsSettings::default`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lnbits: Option<LnbitsRouteConfig>,
    /// `[route.payments]`: keys of `dialect = "payments"` routes only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payments: Option<PaymentsRouteConfig>,
    // The same keys at the route's top level: the form before `[route.lnbits]`, still
    // accepted (with a warning naming the key to move).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_push_bytes: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_buffer_len: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_ttl_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_max_bytes: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_channels: Option<usize>,
}

/// Route defaults (serde needs functions).
/// A route's permessage-deflate settings (`permessage_deflate = true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateSettings {
    /// Messages shorter than this are sent uncompressed (`deflate_min_bytes`).
    pub min_bytes: usize,
}

pub(super) mod d {
    pub fn deflate_min_bytes() -> usize {
        256
    }
    pub fn request_timeout_ms() -> u64 {
        30_000
    }
    pub fn subscribe_timeout_ms() -> u64 {
        10_000
    }
    pub fn linger_ms() -> u64 {
        2_000
    }
    pub fn max_upstream_connections() -> usize {
        4
    }
    pub fn topics_per_upstream_connection() -> usize {
        1000
    }
    pub fn upstream_ping_interval_ms() -> u64 {
        15_000
    }
    pub fn upstream_idle_timeout_ms() -> u64 {
        45_000
    }
    pub fn connect_timeout_ms() -> u64 {
        10_000
    }
    pub fn backoff_initial_ms() -> u64 {
        100
    }
    pub fn backoff_max_ms() -> u64 {
        10_000
    }
    pub fn upstream_max_message_bytes() -> usize {
        64 << 20
    }
    pub fn channel_prefix() -> String {
        "submux".into()
    }
    pub fn backplane_connect_timeout_ms() -> u64 {
        3_000
    }
    pub fn backplane_backoff_max_ms() -> u64 {
        5_000
    }
    pub fn failback_interval_ms() -> u64 {
        30_000
    }
    pub fn history_len() -> usize {
        1024
    }
    pub fn backfill() -> bool {
        true
    }
    pub fn cache() -> bool {
        true
    }
    pub fn cache_max_bytes() -> usize {
        64 << 20
    }
    pub fn latest_wait_ms() -> u64 {
        2_000
    }
    pub fn backfill_max_blocks() -> u64 {
        128
    }
    pub fn hedge() -> usize {
        1
    }
    pub fn backfill_max_ledgers() -> u64 {
        256
    }
    pub fn backfill_max_slots() -> u64 {
        1000
    }
}

impl RouteConfig {
    /// A route with every default, for the demo and tests.
    pub fn new(path: &str, dialect: DialectKind, upstreams: Vec<String>) -> Self {
        RouteConfig {
            path: path.into(),
            dialect,
            upstreams,
            http_upstream: None,
            request_timeout_ms: d::request_timeout_ms(),
            subscribe_timeout_ms: d::subscribe_timeout_ms(),
            linger_ms: d::linger_ms(),
            max_upstream_connections: d::max_upstream_connections(),
            topics_per_upstream_connection: d::topics_per_upstream_connection(),
            upstream_ping_interval_ms: d::upstream_ping_interval_ms(),
            upstream_idle_timeout_ms: d::upstream_idle_timeout_ms(),
            connect_timeout_ms: d::connect_timeout_ms(),
            backoff_initial_ms: d::backoff_initial_ms(),
            backoff_max_ms: d::backoff_max_ms(),
            upstream_max_message_bytes: d::upstream_max_message_bytes(),
            lnbits: None,
            payments: None,
            push_token: None,
            max_push_bytes: None,
            replay_buffer_len: None,
            replay_ttl_ms: None,
            replay_max_bytes: None,
            max_channels: None,
            failback_interval_ms: d::failback_interval_ms(),
            stall_timeout_ms: 0,
            history_len: d::history_len(),
            backfill: d::backfill(),
            backfill_max_blocks: d::backfill_max_blocks(),
            hedge: d::hedge(),
            backfill_max_ledgers: d::backfill_max_ledgers(),
            backfill_max_slots: d::backfill_max_slots(),
            cache: d::cache(),
            cache_max_bytes: d::cache_max_bytes(),
            latest_wait_ms: d::latest_wait_ms(),
            permessage_deflate: false,
            deflate_min_bytes: d::deflate_min_bytes(),
        }
    }
}

/// Validated settings of one route.
#[derive(Debug, Clone)]
pub struct RouteSettings {
    pub path: String,
    pub dialect: DialectKind,
    pub upstreams: Vec<String>,
    pub http_upstream: Option<String>,
    pub request_timeout: Duration,
    pub subscribe_timeout: Duration,
    pub linger: Duration,
    pub max_upstream_connections: usize,
    pub topics_per_upstream_connection: usize,
    pub upstream_ping_interval: Duration,
    pub upstream_idle_timeout: Duration,
    pub connect_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub upstream_max_message_bytes: usize,
    /// Broadcast capacity per topic = the per-client notification queue bound.
    pub client_queue_len: usize,
    /// Channel settings (LNbits routes; defaults elsewhere).
    pub lnbits: LnbitsSettings,
    pub failback_interval: Option<Duration>,
    pub stall_timeout: Option<Duration>,
    /// Notifications kept per id-routed topic with a height, for `?since=` (0: none).
    pub history_len: usize,
    /// Backfill after a switch (`backfill`), at most `backfill_max_blocks` blocks.
    pub backfill: bool,
    pub backfill_max_blocks: u64,
    /// Connections (to different upstreams) each topic is held on at once (`hedge`).
    pub hedge: usize,
    /// XRPL: at most this many ledgers backfilled (`backfill_max_ledgers`).
    pub backfill_max_ledgers: u64,
    /// Solana: logs backfilled over at most this many slots (`backfill_max_slots`).
    pub backfill_max_slots: u64,
    /// The call cache: `None` when off (`cache = false`).
    pub cache: Option<CacheSettings>,
    /// permessage-deflate for clients that offer it (`None`: off).
    pub deflate: Option<DeflateSettings>,
    /// `[route.payments]` (payments routes only).
    pub payments: Option<PaymentsSettings>,
}

impl RouteConfig {
    /// Check one route (`at` names it in errors) against `[server]` and the routes before
    /// it; deprecated forms add to `warnings`.
    pub(super) fn validate(
        self,
        at: &str,
        s: &ServerConfig,
        taken: &[RouteSettings],
        warnings: &mut Vec<String>,
    ) -> Result<RouteSettings, ConfigError> {
        let r = self;
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if !r.path.starts_with('/') || r.path.len() < 2 || r.path.ends_with('/') {
            return bad(format!(
                "{at}: path must start with '/', have a name and no trailing '/'"
            ));
        }
        if RESERVED.contains(&r.path.as_str()) {
            return bad(format!(
                "{at}: path is reserved for health, readiness, metrics and status"
            ));
        }
        if taken.iter().any(|x| x.path == r.path) {
            return bad(format!("{at}: duplicate path"));
        }
        if !r.dialect.implemented() {
            return bad(format!(
                "{at}: dialect \"{}\" is not implemented in this build (available: ethereum, solana, xrpl, lnbits, payments)",
                r.dialect
            ));
        }
        let env = |n: &str| std::env::var(n).ok();
        let mut expanded = Vec::with_capacity(r.upstreams.len());
        for u in &r.upstreams {
            match expand_env(u, env) {
                Ok(x) => expanded.push(x),
                Err(name) => {
                    return bad(format!(
                        "{at}: upstream {} uses ${{{name}}}, which is not set in the environment",
                        redact_url(u)
                    ))
                }
            }
        }
        let mut r = r;
        r.upstreams = expanded;
        if let Some(h) = &r.http_upstream {
            match expand_env(h, env) {
                Ok(x) => r.http_upstream = Some(x),
                Err(name) => {
                    return bad(format!(
                        "{at}: http_upstream uses ${{{name}}}, which is not set in the environment"
                    ))
                }
            }
        }
        let lnbits = if r.dialect == DialectKind::Lnbits {
            r.lnbits_settings(at, warnings)?
        } else {
            if let Some(k) = r.lnbits_keys_set().first() {
                return bad(format!(
                    "{at}: {k} applies only to routes with dialect = \"lnbits\""
                ));
            }
            LnbitsSettings::default()
        };
        let payments = match (&r.payments, r.dialect) {
            (Some(p), DialectKind::Payments) => Some(p.validate(at)?),
            (None, DialectKind::Payments) => {
                return bad(format!(
                    "{at}: a payments route needs a [route.payments] table naming the routes it watches"
                ))
            }
            (Some(_), _) => {
                return bad(format!(
                    "{at}: [route.payments] applies only to routes with dialect = \"payments\""
                ))
            }
            (None, _) => None,
        };
        if r.dialect == DialectKind::Payments && !r.upstreams.is_empty() {
            return bad(format!(
                "{at}: a payments route has no upstreams of its own: it watches through the routes named in [route.payments]"
            ));
        }
        // An LNbits route without upstreams is a channel hub of its own.
        if r.upstreams.is_empty()
            && !matches!(r.dialect, DialectKind::Lnbits | DialectKind::Payments)
        {
            return bad(format!(
                "{at}: upstreams must list at least one ws:// or wss:// URL"
            ));
        }
        for u in &r.upstreams {
            let ok = (u.starts_with("ws://") || u.starts_with("wss://"))
                && u.parse::<http::Uri>().is_ok_and(|x| x.host().is_some());
            if !ok {
                return bad(format!(
                    "{at}: upstream {} is not a ws:// or wss:// URL",
                    redact_url(u)
                ));
            }
        }
        if let Some(h) = &r.http_upstream {
            let ok = (h.starts_with("http://") || h.starts_with("https://"))
                && h.parse::<http::Uri>().is_ok_and(|x| x.host().is_some());
            if !ok {
                return bad(format!(
                    "{at}: http_upstream {} is not an http:// or https:// URL",
                    redact_url(h)
                ));
            }
        }
        for (name, v) in [
            ("request_timeout_ms", r.request_timeout_ms),
            ("subscribe_timeout_ms", r.subscribe_timeout_ms),
            ("upstream_ping_interval_ms", r.upstream_ping_interval_ms),
            ("upstream_idle_timeout_ms", r.upstream_idle_timeout_ms),
            ("connect_timeout_ms", r.connect_timeout_ms),
            ("backoff_initial_ms", r.backoff_initial_ms),
            ("backoff_max_ms", r.backoff_max_ms),
        ] {
            if v == 0 {
                return bad(format!("{at}: {name} must be greater than 0"));
            }
        }
        if r.history_len > MAX_HISTORY_LEN {
            return bad(format!(
                "{at}: history_len must be at most {MAX_HISTORY_LEN}"
            ));
        }
        if r.cache && r.cache_max_bytes < MIN_CACHE_BYTES {
            return bad(format!(
                "{at}: cache_max_bytes must be at least {MIN_CACHE_BYTES} (cache = false turns the cache off)"
            ));
        }
        if r.backfill_max_blocks == 0 || r.backfill_max_blocks > MAX_BACKFILL_BLOCKS {
            return bad(format!(
                "{at}: backfill_max_blocks must be between 1 and {MAX_BACKFILL_BLOCKS} (backfill = false turns backfill off)"
            ));
        }
        if r.dialect != DialectKind::Lnbits && (r.hedge == 0 || r.hedge > r.upstreams.len().max(1))
        {
            return bad(format!(
                "{at}: hedge must be between 1 and the number of upstreams ({}): each copy of a subscription needs an upstream of its own",
                r.upstreams.len()
            ));
        }
        if r.backfill_max_ledgers == 0 || r.backfill_max_ledgers > MAX_BACKFILL_BLOCKS {
            return bad(format!(
                "{at}: backfill_max_ledgers must be between 1 and {MAX_BACKFILL_BLOCKS} (backfill = false turns backfill off)"
            ));
        }
        if r.backfill_max_slots == 0 || r.backfill_max_slots > MAX_BACKFILL_SLOTS {
            return bad(format!(
                "{at}: backfill_max_slots must be between 1 and {MAX_BACKFILL_SLOTS} (backfill = false turns backfill off)"
            ));
        }
        if r.max_upstream_connections == 0 {
            return bad(format!("{at}: max_upstream_connections must be at least 1"));
        }
        if r.upstream_idle_timeout_ms <= r.upstream_ping_interval_ms {
            return bad(format!(
                "{at}: upstream_idle_timeout_ms must be longer than upstream_ping_interval_ms"
            ));
        }
        if r.backoff_max_ms < r.backoff_initial_ms {
            return bad(format!(
                "{at}: backoff_max_ms must be at least backoff_initial_ms"
            ));
        }
        Ok(RouteSettings {
            path: r.path,
            dialect: r.dialect,
            upstreams: r.upstreams,
            http_upstream: r.http_upstream,
            request_timeout: ms(r.request_timeout_ms),
            subscribe_timeout: ms(r.subscribe_timeout_ms),
            linger: ms(r.linger_ms),
            max_upstream_connections: r.max_upstream_connections,
            topics_per_upstream_connection: r.topics_per_upstream_connection,
            upstream_ping_interval: ms(r.upstream_ping_interval_ms),
            upstream_idle_timeout: ms(r.upstream_idle_timeout_ms),
            connect_timeout: ms(r.connect_timeout_ms),
            backoff_initial: ms(r.backoff_initial_ms),
            backoff_max: ms(r.backoff_max_ms),
            upstream_max_message_bytes: r.upstream_max_message_bytes.max(s.max_frame_bytes),
            client_queue_len: s.client_queue_len,
            lnbits,
            failback_interval: (r.failback_interval_ms > 0).then(|| ms(r.failback_interval_ms)),
            stall_timeout: (r.stall_timeout_ms > 0).then(|| ms(r.stall_timeout_ms)),
            history_len: r.history_len,
            backfill: r.backfill,
            backfill_max_blocks: r.backfill_max_blocks,
            hedge: r.hedge.max(1),
            backfill_max_ledgers: r.backfill_max_ledgers,
            backfill_max_slots: r.backfill_max_slots,
            cache: r.cache.then_some(CacheSettings {
                max_bytes: r.cache_max_bytes,
                // A call never waits longer than it may take.
                latest_wait: Duration::from_millis(r.latest_wait_ms.min(r.request_timeout_ms)),
            }),
            deflate: r.permessage_deflate.then_some(DeflateSettings {
                min_bytes: r.deflate_min_bytes,
            }),
            payments,
        })
    }
}
