//! Configuration: a serde tree (unknown keys rejected, every default documented in
//! `deploy/submux.example.toml`) validated into typed [`Settings`].

use crate::dialect::DialectKind;
use crate::telemetry::redact_url;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
    /// Redis pub/sub shared by several instances (LNbits hub-mode routes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backplane: Option<BackplaneConfig>,
    #[serde(default)]
    pub auth: AuthConfig,
    /// The TOML text this came from, for line numbers in errors.
    #[serde(skip)]
    pub source: Option<String>,
}

/// `[auth]`: optional API keys. Clients present a key in the path (`/eth/KEY`), as
/// `Authorization: Bearer KEY` or as `?api_key=KEY`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Refuse clients without a key (HTTP 401). Unknown keys are always refused.
    pub required: bool,
    #[serde(rename = "key")]
    pub keys: Vec<ApiKeyConfig>,
}

/// One `[[auth.key]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Shown in logs and metrics instead of the key.
    pub name: String,
    /// The secret; `${NAME}` takes it from the environment.
    pub key: String,
    /// Open WebSockets with this key at once (0 = no per-key cap).
    #[serde(default)]
    pub max_connections: usize,
    /// Subscriptions held by all of this key's connections together (0 = no cap).
    #[serde(default)]
    pub max_subscriptions: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: String,
    /// Browser origins allowed to connect (`Origin` header); empty = any.
    pub allowed_origins: Vec<String>,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub trusted_proxies: Vec<String>,
    pub max_frame_bytes: usize,
    pub max_batch_len: usize,
    pub max_subscriptions_per_connection: usize,
    pub max_inflight_per_connection: usize,
    pub max_requests_per_second: u32,
    pub request_burst: u32,
    pub client_queue_len: usize,
    pub client_ping_interval_ms: u64,
    pub client_idle_timeout_ms: u64,
    pub write_timeout_ms: u64,
    pub shutdown_delay_ms: u64,
    pub shutdown_grace_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8545".into(),
            allowed_origins: Vec::new(),
            max_connections: 10_000,
            max_connections_per_ip: 1_000,
            trusted_proxies: Vec::new(),
            max_frame_bytes: 1 << 20,
            max_batch_len: 1000,
            max_subscriptions_per_connection: 1000,
            max_inflight_per_connection: 256,
            max_requests_per_second: 500,
            request_burst: 1000,
            client_queue_len: 256,
            client_ping_interval_ms: 20_000,
            client_idle_timeout_ms: 70_000,
            write_timeout_ms: 10_000,
            shutdown_delay_ms: 0,
            shutdown_grace_ms: 5_000,
        }
    }
}

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
    /// Answer clients that offer permessage-deflate (RFC 7692) with it.
    #[serde(default)]
    pub permessage_deflate: bool,
    /// With it, messages shorter than this still go uncompressed.
    #[serde(default = "crate::session::deflate::default_min_bytes")]
    pub deflate_min_bytes: usize,
    // Keys of `dialect = "lnbits"` routes only (an error elsewhere); absent ones take the
    // defaults of [`LnbitsSettings::default`].
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

impl RouteConfig {
    /// The LNbits-only keys that are set (for "applies only to lnbits" errors).
    fn lnbits_keys_set(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        let mut note = |set: bool, k| {
            if set {
                v.push(k)
            }
        };
        note(self.push_token.is_some(), "push_token");
        note(self.max_push_bytes.is_some(), "max_push_bytes");
        note(self.replay_buffer_len.is_some(), "replay_buffer_len");
        note(self.replay_ttl_ms.is_some(), "replay_ttl_ms");
        note(self.replay_max_bytes.is_some(), "replay_max_bytes");
        note(self.max_channels.is_some(), "max_channels");
        v
    }

    /// Fill every LNbits default in (for `--print-config`) and hide the token.
    fn fill_lnbits_defaults(&mut self) {
        let d = LnbitsSettings::default();
        self.push_token = self.push_token.as_ref().map(|_| "…".into());
        self.max_push_bytes.get_or_insert(d.max_push_bytes);
        self.replay_buffer_len.get_or_insert(d.replay_buffer_len);
        self.replay_ttl_ms
            .get_or_insert(d.replay_ttl.as_millis() as u64);
        self.replay_max_bytes.get_or_insert(d.replay_max_bytes);
        self.max_channels.get_or_insert(d.max_channels);
    }
}

/// Validated settings of an LNbits channel route.
#[derive(Debug, Clone)]
pub struct LnbitsSettings {
    /// Required as `Authorization: Bearer …` on pushes when set.
    pub push_token: Option<String>,
    pub max_push_bytes: usize,
    pub replay_buffer_len: usize,
    /// A channel without clients and without messages for this long is forgotten.
    pub replay_ttl: Duration,
    /// All replay buffers of the route together hold at most this many bytes.
    pub replay_max_bytes: usize,
    pub max_channels: usize,
}

impl Default for LnbitsSettings {
    fn default() -> Self {
        LnbitsSettings {
            push_token: None,
            max_push_bytes: 64 * 1024,
            replay_buffer_len: 16,
            replay_ttl: Duration::from_secs(600),
            replay_max_bytes: 32 << 20,
            max_channels: 100_000,
        }
    }
}

/// `[backplane]`: Redis shared by every instance.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackplaneConfig {
    pub redis: String,
    #[serde(default = "d::channel_prefix")]
    pub channel_prefix: String,
    #[serde(default = "d::backplane_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    #[serde(default = "d::backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    #[serde(default = "d::backplane_backoff_max_ms")]
    pub backoff_max_ms: u64,
}

/// Validated `[backplane]`.
#[derive(Debug, Clone)]
pub struct BackplaneSettings {
    /// `redis://[user:password@]host[:port][/db]` (may hold a password: log it redacted).
    pub redis: String,
    pub channel_prefix: String,
    pub connect_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

/// Route defaults (serde needs functions).
mod d {
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
            push_token: None,
            max_push_bytes: None,
            replay_buffer_len: None,
            replay_ttl_ms: None,
            replay_max_bytes: None,
            max_channels: None,
            failback_interval_ms: d::failback_interval_ms(),
            stall_timeout_ms: 0,
            permessage_deflate: false,
            deflate_min_bytes: crate::session::deflate::default_min_bytes(),
        }
    }
}

/// Validated server settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Peers whose `X-Forwarded-For` is believed (e.g. the local nginx).
    pub trusted_proxies: Vec<IpNet>,
    pub max_frame_bytes: usize,
    pub max_batch_len: usize,
    pub max_subscriptions_per_connection: usize,
    pub max_inflight_per_connection: usize,
    /// Per-connection token bucket (0 = unlimited).
    pub max_requests_per_second: u32,
    pub request_burst: u32,
    pub client_queue_len: usize,
    pub client_ping_interval: Duration,
    pub client_idle_timeout: Duration,
    pub write_timeout: Duration,
    /// Time between SIGTERM (readiness goes 503) and closing clients.
    pub shutdown_delay: Duration,
    pub shutdown_grace: Duration,
    pub routes: Vec<RouteSettings>,
    pub backplane: Option<BackplaneSettings>,
    pub allowed_origins: Vec<String>,
    pub auth: std::sync::Arc<crate::auth::Keys>,
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
    /// permessage-deflate for clients that offer it (`None`: off).
    pub deflate: Option<crate::session::deflate::DeflateSettings>,
}

const RESERVED: [&str; 6] = [
    "/",
    "/healthz",
    "/readyz",
    "/metrics",
    "/status",
    "/status.json",
];

/// A trusted proxy: an IP address or CIDR range (`10.0.0.0/8`, `fd00::/8`, `127.0.0.1`).
/// IPv4-mapped IPv6 addresses (`::ffff:10.1.1.1`, as a dual-stack listener sees IPv4 peers)
/// match IPv4 ranges, and IPv4 addresses match IPv4-mapped ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet(ipnet::IpNet);

impl IpNet {
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

impl std::str::FromStr for IpNet {
    type Err = ipnet::AddrParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let net = match s.parse::<std::net::IpAddr>() {
            Ok(addr) => ipnet::IpNet::from(addr),
            Err(_) => s.parse::<ipnet::IpNet>()?,
        };
        // A range of IPv4-mapped addresses is kept as the IPv4 range it maps.
        let net = match net {
            ipnet::IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
                Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                    .map(ipnet::IpNet::V4)
                    .unwrap_or(net),
                None => net,
            },
            _ => net,
        };
        Ok(IpNet(net))
    }
}

/// Expand `${NAME}` from the environment (so API keys can stay out of config files).
/// Returns the name of the first variable that is not set.
pub fn expand_env(s: &str, get: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[i..]);
            return Ok(out);
        };
        let name = &after[..end];
        out.push_str(&get(name).ok_or_else(|| name.to_string())?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

impl RawConfig {
    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        let mut c: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        c.source = Some(text.to_string());
        Ok(c)
    }

    /// "line N" of the first line assigning `key` inside the `nth` table headed `header`
    /// (the header's own line when `key` is empty); `None` when unknown.
    fn line(src: Option<&str>, header: &str, nth: usize, key: &str) -> Option<usize> {
        let src = src?;
        let mut seen = 0;
        let mut inside = false;
        for (i, l) in src.lines().enumerate() {
            let t = l.trim();
            if t.starts_with('[') {
                if inside {
                    return None;
                }
                if t == header {
                    if seen == nth {
                        inside = true;
                        if key.is_empty() {
                            return Some(i + 1);
                        }
                    }
                    seen += 1;
                }
                continue;
            }
            if inside && t.split('=').next().is_some_and(|k| k.trim() == key) {
                return Some(i + 1);
            }
        }
        None
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: p.clone(),
            source,
        })?;
        Self::parse(&text, &p)
    }

    /// The effective configuration as TOML: every default filled in, `listen_override`
    /// applied, and upstream URLs redacted (they may carry API keys).
    pub fn effective_toml(&self, listen_override: Option<&str>) -> Result<String, ConfigError> {
        let mut c = self.clone();
        if let Some(l) = listen_override {
            c.server.listen = l.to_string();
        }
        for k in &mut c.auth.keys {
            k.key = "<redacted>".into();
        }
        for r in &mut c.routes {
            r.upstreams = r.upstreams.iter().map(|u| redact_url(u)).collect();
            r.http_upstream = r.http_upstream.as_deref().map(redact_url);
            if r.dialect == DialectKind::Lnbits {
                r.fill_lnbits_defaults();
            }
        }
        if let Some(b) = &mut c.backplane {
            b.redis = redact_url(&b.redis);
        }
        toml::to_string(&c).map_err(|e| ConfigError::Invalid(format!("cannot print: {e}")))
    }

    /// Validate into typed settings. `listen_override` is `SUBMUX_LISTEN`.
    pub fn validate(self, listen_override: Option<&str>) -> Result<Settings, ConfigError> {
        let source = self.source.clone();
        let line = |header: &str, nth: usize, key: &str| {
            RawConfig::line(source.as_deref(), header, nth, key)
        };
        let s = self.server;
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let auth = match crate::auth::Keys::from_config(&self.auth, |n| std::env::var(n).ok()) {
            Ok(k) => std::sync::Arc::new(k),
            Err(m) => return bad(format!("auth: {m}")),
        };
        for o in &s.allowed_origins {
            if !(o.starts_with("http://") || o.starts_with("https://")) || o.ends_with('/') {
                return bad(format!(
                    "server.allowed_origins: {o:?} is not an origin (scheme://host[:port], no path)"
                ));
            }
        }
        let listen_text = listen_override.unwrap_or(&s.listen);
        let listen: SocketAddr = match listen_text.parse() {
            Ok(a) => a,
            Err(e) => {
                let origin = match (listen_override, line("[server]", 0, "listen")) {
                    (Some(_), _) => " (from SUBMUX_LISTEN)".to_string(),
                    (None, Some(n)) => format!(" (line {n})"),
                    (None, None) => String::new(),
                };
                return bad(format!(
                    "server.listen = {listen_text:?}{origin}: {e} (want HOST:PORT, e.g. 127.0.0.1:8545)"
                ));
            }
        };
        for (name, v) in [
            ("server.max_connections", s.max_connections),
            ("server.max_frame_bytes", s.max_frame_bytes),
            ("server.max_batch_len", s.max_batch_len),
            (
                "server.max_subscriptions_per_connection",
                s.max_subscriptions_per_connection,
            ),
            (
                "server.max_inflight_per_connection",
                s.max_inflight_per_connection,
            ),
            ("server.client_queue_len", s.client_queue_len),
        ] {
            if v == 0 {
                return bad(format!("{name} must be greater than 0"));
            }
        }
        for (name, v) in [
            ("server.client_ping_interval_ms", s.client_ping_interval_ms),
            ("server.client_idle_timeout_ms", s.client_idle_timeout_ms),
            ("server.write_timeout_ms", s.write_timeout_ms),
        ] {
            if v == 0 {
                return bad(format!("{name} must be greater than 0"));
            }
        }
        if s.client_idle_timeout_ms <= s.client_ping_interval_ms {
            return bad(
                "server.client_idle_timeout_ms must be longer than server.client_ping_interval_ms"
                    .into(),
            );
        }
        let mut trusted_proxies = Vec::new();
        for p in &s.trusted_proxies {
            match p.parse::<IpNet>() {
                Ok(net) => trusted_proxies.push(net),
                Err(e) => {
                    let at = line("[server]", 0, "trusted_proxies")
                        .map(|n| format!(" (line {n})"))
                        .unwrap_or_default();
                    return bad(format!(
                        "server.trusted_proxies{at}: {p:?} is not an IP address or CIDR range ({e}; e.g. \"10.0.0.0/8\")"
                    ));
                }
            }
        }
        if s.max_connections_per_ip == 0 {
            return bad("server.max_connections_per_ip must be greater than 0".into());
        }
        if self.routes.is_empty() {
            return bad(
                "no [[route]] configured: add at least one route (see deploy/submux.example.toml)"
                    .into(),
            );
        }
        let mut routes = Vec::new();
        for (i, r) in self.routes.into_iter().enumerate() {
            let at = match line("[[route]]", i, "") {
                Some(n) => format!("route[{i}] (path {:?}, line {n})", r.path),
                None => format!("route[{i}] (path {:?})", r.path),
            };
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
            if routes.iter().any(|x: &RouteSettings| x.path == r.path) {
                return bad(format!("{at}: duplicate path"));
            }
            if !r.dialect.implemented() {
                return bad(format!(
                    "{at}: dialect \"{}\" is not implemented in this build (available: ethereum, solana, xrpl, lnbits)",
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
                lnbits_settings(&r, &at)?
            } else {
                if let Some(k) = r.lnbits_keys_set().first() {
                    return bad(format!(
                        "{at}: {k} applies only to routes with dialect = \"lnbits\""
                    ));
                }
                LnbitsSettings::default()
            };
            // An LNbits route without upstreams is a channel hub of its own.
            if r.upstreams.is_empty() && r.dialect != DialectKind::Lnbits {
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
            routes.push(RouteSettings {
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
                deflate: r
                    .permessage_deflate
                    .then_some(crate::session::deflate::DeflateSettings {
                        min_bytes: r.deflate_min_bytes,
                    }),
            });
        }
        let backplane = match self.backplane {
            Some(b) => Some(backplane_settings(b)?),
            None => None,
        };
        Ok(Settings {
            listen,
            max_connections: s.max_connections,
            max_connections_per_ip: s.max_connections_per_ip,
            trusted_proxies,
            max_frame_bytes: s.max_frame_bytes,
            max_batch_len: s.max_batch_len,
            max_subscriptions_per_connection: s.max_subscriptions_per_connection,
            max_inflight_per_connection: s.max_inflight_per_connection,
            max_requests_per_second: s.max_requests_per_second,
            request_burst: s.request_burst.max(1),
            client_queue_len: s.client_queue_len,
            client_ping_interval: ms(s.client_ping_interval_ms),
            client_idle_timeout: ms(s.client_idle_timeout_ms),
            write_timeout: ms(s.write_timeout_ms),
            shutdown_delay: ms(s.shutdown_delay_ms),
            shutdown_grace: ms(s.shutdown_grace_ms),
            routes,
            backplane,
            allowed_origins: s.allowed_origins,
            auth,
        })
    }
}

fn lnbits_settings(r: &RouteConfig, at: &str) -> Result<LnbitsSettings, ConfigError> {
    let bad = |m: String| Err(ConfigError::Invalid(format!("{at}: {m}")));
    let d = LnbitsSettings::default();
    let push_token = match &r.push_token {
        None => None,
        Some(t) => match expand_env(t, |n| std::env::var(n).ok()) {
            Ok(t) if t.trim().is_empty() => {
                return bad(
                    "push_token is empty (leave it out to allow pushes without a token)".into(),
                )
            }
            Ok(t) if t.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                return bad("push_token must not contain spaces or control characters".into())
            }
            Ok(t) => Some(t),
            Err(name) => {
                return bad(format!(
                    "push_token uses ${{{name}}}, which is not set in the environment"
                ))
            }
        },
    };
    let s = LnbitsSettings {
        push_token,
        max_push_bytes: r.max_push_bytes.unwrap_or(d.max_push_bytes),
        replay_buffer_len: r.replay_buffer_len.unwrap_or(d.replay_buffer_len),
        replay_ttl: r.replay_ttl_ms.map_or(d.replay_ttl, ms),
        replay_max_bytes: r.replay_max_bytes.unwrap_or(d.replay_max_bytes),
        max_channels: r.max_channels.unwrap_or(d.max_channels),
    };
    for (name, v) in [
        ("max_push_bytes", s.max_push_bytes),
        ("max_channels", s.max_channels),
        ("replay_ttl_ms", s.replay_ttl.as_millis() as usize),
    ] {
        if v == 0 {
            return bad(format!("{name} must be greater than 0"));
        }
    }
    if s.replay_buffer_len > 10_000 {
        return bad("replay_buffer_len must be at most 10000".into());
    }
    if r.http_upstream.is_some() && r.upstreams.is_empty() {
        return bad("http_upstream needs upstreams (it is where pushes go in proxy mode)".into());
    }
    Ok(s)
}

fn backplane_settings(b: BackplaneConfig) -> Result<BackplaneSettings, ConfigError> {
    let bad = |m: String| Err(ConfigError::Invalid(m));
    let redis = match expand_env(&b.redis, |n| std::env::var(n).ok()) {
        Ok(u) => u,
        Err(name) => {
            return bad(format!(
                "backplane.redis uses ${{{name}}}, which is not set in the environment"
            ))
        }
    };
    if redis.starts_with("rediss://") {
        return bad("backplane.redis: rediss:// (TLS) is not supported by this build; reach Redis over a private network or a TLS tunnel".into());
    }
    let ok = redis.starts_with("redis://")
        && redis.parse::<http::Uri>().is_ok_and(|u| u.host().is_some());
    if !ok {
        return bad(format!(
            "backplane.redis = {} is not a redis://HOST[:PORT][/DB] URL",
            redact_url(&redis)
        ));
    }
    if b.channel_prefix.is_empty() || b.channel_prefix.chars().any(char::is_whitespace) {
        return bad("backplane.channel_prefix must be a non-empty word".into());
    }
    for (name, v) in [
        ("backplane.connect_timeout_ms", b.connect_timeout_ms),
        ("backplane.backoff_initial_ms", b.backoff_initial_ms),
        ("backplane.backoff_max_ms", b.backoff_max_ms),
    ] {
        if v == 0 {
            return bad(format!("{name} must be greater than 0"));
        }
    }
    if b.backoff_max_ms < b.backoff_initial_ms {
        return bad(
            "backplane.backoff_max_ms must be at least backplane.backoff_initial_ms".into(),
        );
    }
    Ok(BackplaneSettings {
        redis,
        channel_prefix: b.channel_prefix,
        connect_timeout: ms(b.connect_timeout_ms),
        backoff_initial: ms(b.backoff_initial_ms),
        backoff_max: ms(b.backoff_max_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
[server]
listen = "127.0.0.1:8545"

[[route]]
path = "/eth"
dialect = "ethereum"
upstreams = ["ws://127.0.0.1:8546", "wss://backup.example/KEY"]
"#;

    #[test]
    fn issue_example_parses_with_defaults() {
        let s = RawConfig::parse(MIN, "t.toml")
            .unwrap()
            .validate(None)
            .unwrap();
        assert_eq!(s.listen.port(), 8545);
        assert_eq!(s.routes[0].upstreams.len(), 2);
        assert_eq!(s.routes[0].linger, Duration::from_millis(2000));
        assert_eq!(s.max_frame_bytes, 1 << 20);
    }

    #[test]
    fn printed_config_is_complete_redacted_and_reloadable() {
        let raw = RawConfig::parse(MIN, "t.toml").unwrap();
        let text = raw.effective_toml(Some("0.0.0.0:9")).unwrap();
        assert!(!text.contains("KEY"), "{text}");
        assert!(
            text.contains("linger_ms = 2000"),
            "defaults are printed: {text}"
        );
        assert!(text.contains("listen = \"0.0.0.0:9\""));
        let again = RawConfig::parse(&text, "printed").unwrap();
        assert_eq!(again.routes[0].upstreams[1], "wss://backup.example/…");
    }

    #[test]
    fn semantic_errors_point_to_the_line() {
        let text = format!("{MIN}\n[[route]]\npath = \"/eth\"\ndialect = \"ethereum\"\nupstreams = [\"ws://x:1\"]\n");
        let err = RawConfig::parse(&text, "t")
            .unwrap()
            .validate(None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("route[1]") && err.contains("line 10") && err.contains("duplicate"),
            "{err}"
        );
        let err = RawConfig::parse(&MIN.replace("127.0.0.1:8545", "nope"), "t")
            .unwrap()
            .validate(None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("(line 3)"), "{err}");
    }

    #[test]
    fn env_references_expand_or_fail_clearly() {
        let get = |n: &str| (n == "KEY").then(|| "s3cr3t".to_string());
        assert_eq!(
            expand_env("wss://x/v2/${KEY}", get).unwrap(),
            "wss://x/v2/s3cr3t"
        );
        assert_eq!(expand_env("ws://a:1", get).unwrap(), "ws://a:1");
        assert_eq!(expand_env("wss://x/${NOPE}", get).unwrap_err(), "NOPE");
        let text = MIN.replace(
            "wss://backup.example/KEY",
            "wss://backup.example/${SUBMUX_TEST_UNSET_VAR}",
        );
        let err = RawConfig::parse(&text, "t")
            .unwrap()
            .validate(None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("SUBMUX_TEST_UNSET_VAR") && err.contains("not set"),
            "{err}"
        );
    }

    #[test]
    fn bad_trusted_proxy_points_to_the_line() {
        let text = MIN.replace(
            "listen = \"127.0.0.1:8545\"",
            "listen = \"127.0.0.1:8545\"\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/33\"]",
        );
        let err = RawConfig::parse(&text, "t")
            .unwrap()
            .validate(None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("trusted_proxies (line 4)") && err.contains("\"10.0.0.0/33\""),
            "{err}"
        );
        let text = MIN.replace(
            "listen = \"127.0.0.1:8545\"",
            "listen = \"127.0.0.1:8545\"\ntrusted_proxies = [\"127.0.0.1\", \"fd00::/8\"]",
        );
        let s = RawConfig::parse(&text, "t")
            .unwrap()
            .validate(None)
            .unwrap();
        assert_eq!(s.trusted_proxies.len(), 2);
    }

    #[test]
    fn cidr_ranges() {
        let n: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains("10.200.1.2".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(
            n.contains("::ffff:10.1.1.1".parse().unwrap()),
            "v4-mapped peers"
        );
        let one: IpNet = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let v6: IpNet = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        assert!("0.0.0.0/0"
            .parse::<IpNet>()
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("fd00::/129".parse::<IpNet>().is_err());
        assert!("nope".parse::<IpNet>().is_err());
        assert!("10.0.0.0/".parse::<IpNet>().is_err());
        // Host bits set: the range is the network's.
        let host: IpNet = "10.1.2.3/16".parse().unwrap();
        assert!(host.contains("10.1.200.1".parse().unwrap()));
        assert!(!host.contains("10.2.0.1".parse().unwrap()));
        // An IPv4-mapped range matches IPv4 peers and mapped peers alike.
        let mapped: IpNet = "::ffff:10.0.0.0/104".parse().unwrap();
        assert!(mapped.contains("10.9.9.9".parse().unwrap()));
        assert!(mapped.contains("::ffff:10.9.9.9".parse().unwrap()));
        assert!(!mapped.contains("11.0.0.1".parse().unwrap()));
        // IPv4 ranges never match other IPv6 addresses.
        assert!(!n.contains("fd00::a00:1".parse().unwrap()));
    }

    #[test]
    fn env_override_of_listen() {
        let s = RawConfig::parse(MIN, "t.toml")
            .unwrap()
            .validate(Some("0.0.0.0:9000"))
            .unwrap();
        assert_eq!(s.listen.to_string(), "0.0.0.0:9000");
    }

    #[test]
    fn unknown_keys_are_rejected_with_line() {
        let text = MIN.replace(
            "dialect = \"ethereum\"",
            "dialect = \"ethereum\"\nupstream = []",
        );
        let err = RawConfig::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(err.contains("unknown field `upstream`"), "{err}");
        assert!(err.contains("line 8"), "{err}");
    }

    #[test]
    fn semantic_errors_name_the_key_and_hide_secrets() {
        let text = MIN.replace("ws://127.0.0.1:8546", "http://secret-host/KEY123");
        let err = RawConfig::parse(&text, "t.toml")
            .unwrap()
            .validate(None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("route[0]") && err.contains("not a ws://"),
            "{err}"
        );
        assert!(!err.contains("KEY123"), "{err}");
        let text = MIN.replace("/eth", "/metrics");
        assert!(RawConfig::parse(&text, "t")
            .unwrap()
            .validate(None)
            .is_err());
        let text = MIN.replace("ethereum", "bitcoin");
        assert!(RawConfig::parse(&text, "t").is_err());
    }

    #[test]
    fn lnbits_routes_and_backplane() {
        let text = r#"
[[route]]
path = "/api/v1/ws"
dialect = "lnbits"
replay_buffer_len = 4

[backplane]
redis = "redis://127.0.0.1:6379/0"
"#;
        let s = RawConfig::parse(text, "t").unwrap().validate(None).unwrap();
        let r = &s.routes[0];
        assert!(r.upstreams.is_empty(), "hub mode needs no upstreams");
        assert_eq!(r.lnbits.replay_buffer_len, 4);
        assert_eq!(r.lnbits.max_push_bytes, 64 * 1024);
        assert_eq!(s.backplane.as_ref().unwrap().channel_prefix, "submux");
        let printed = RawConfig::parse(text, "t")
            .unwrap()
            .effective_toml(None)
            .unwrap();
        assert!(printed.contains("replay_ttl_ms = 600000"), "{printed}");
        let err = |t: &str| {
            RawConfig::parse(t, "t")
                .unwrap()
                .validate(None)
                .unwrap_err()
                .to_string()
        };
        let e = err(&MIN.replace("upstreams = [", "replay_buffer_len = 3\nupstreams = ["));
        assert!(
            e.contains("replay_buffer_len applies only to routes with dialect = \"lnbits\""),
            "{e}"
        );
        let e = err(&text.replace("replay_buffer_len = 4", "max_push_bytes = 0"));
        assert!(
            e.contains("max_push_bytes must be greater than 0") && e.contains("line 2"),
            "{e}"
        );
        let e = err(&text.replace("redis://127.0.0.1:6379/0", "http://x"));
        assert!(e.contains("backplane.redis"), "{e}");
        let e = err(&text.replace(
            "replay_buffer_len = 4",
            "push_token = \"${SUBMUX_TEST_UNSET_TOKEN}\"",
        ));
        assert!(
            e.contains("push_token uses ${SUBMUX_TEST_UNSET_TOKEN}"),
            "{e}"
        );
        let e = err(&text.replace("replay_buffer_len = 4", "push_token = \"\""));
        assert!(e.contains("push_token is empty"), "{e}");
    }

    /// deploy/submux.example.toml parses, validates, and mentions every key serde knows.
    #[test]
    fn example_config_documents_every_key() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/submux.example.toml");
        let text = std::fs::read_to_string(path).unwrap();
        RawConfig::parse(&text, path)
            .unwrap()
            .validate(None)
            .unwrap();
        let fields = |probe: &str| -> Vec<String> {
            let err = RawConfig::parse(probe, "probe").unwrap_err().to_string();
            let list = err
                .split("expected one of")
                .nth(1)
                .unwrap_or_else(|| panic!("{err}"));
            list.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect()
        };
        let server = fields("[server]\nzz_unknown = 1\n");
        let route = fields("[[route]]\npath = \"/x\"\ndialect = \"ethereum\"\nzz_unknown = 1\n");
        let backplane = fields("[backplane]\nredis = \"redis://x\"\nzz_unknown = 1\n");
        assert!(
            server.len() >= 10 && route.len() >= 10 && backplane.len() >= 5,
            "{server:?} {route:?} {backplane:?}"
        );
        for key in server.iter().chain(&route).chain(&backplane) {
            assert!(
                text.lines().any(|l| l
                    .trim_start()
                    .trim_start_matches("# ")
                    .starts_with(&format!("{key} ="))),
                "deploy/submux.example.toml does not document `{key}`"
            );
        }
    }
}
