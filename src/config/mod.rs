//! Configuration: a serde tree (unknown keys rejected, every default documented in
//! `deploy/submux.example.toml`) validated into typed [`Settings`]. One file per section:
//! `server.rs` (`[server]`), `route.rs` (`[[route]]`), `lnbits.rs` (`[route.lnbits]` and
//! `[backplane]`); `[auth]` is read by `crate::auth`.

mod lnbits;
mod payments;
mod route;
mod server;
#[cfg(test)]
mod tests;

pub use lnbits::{BackplaneConfig, BackplaneSettings, LnbitsRouteConfig, LnbitsSettings};
pub use payments::{PaymentsRouteConfig, PaymentsSettings, TokenConfig, WebhookConfig};
pub use route::{CacheSettings, DeflateSettings, RouteConfig, RouteSettings};
pub use server::{IpNet, ServerConfig};

pub use crate::auth::{ApiKeyConfig, AuthConfig};
use crate::dialect::DialectKind;
pub use crate::env::expand_env;
use crate::telemetry::redact_url;
use lnbits::backplane_settings;
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
    /// Deprecated forms that were accepted (main logs them, `--check-config` prints them).
    pub warnings: Vec<String>,
}

pub(super) const RESERVED: [&str; 6] = [
    "/",
    "/healthz",
    "/readyz",
    "/metrics",
    "/status",
    "/status.json",
];

pub(super) fn ms(v: u64) -> Duration {
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
        let server = s.validate(listen_override, line)?;
        if self.routes.is_empty() {
            return bad(
                "no [[route]] configured: add at least one route (see deploy/submux.example.toml)"
                    .into(),
            );
        }
        let mut routes = Vec::new();
        let mut warnings = Vec::new();
        for (i, r) in self.routes.into_iter().enumerate() {
            let at = match line("[[route]]", i, "") {
                Some(n) => format!("route[{i}] (path {:?}, line {n})", r.path),
                None => format!("route[{i}] (path {:?})", r.path),
            };
            routes.push(r.validate(&at, &s, &routes, &mut warnings)?);
        }
        payments::check_watched(&routes)?;
        let backplane = match self.backplane {
            Some(b) => Some(backplane_settings(b)?),
            None => None,
        };
        Ok(Settings {
            listen: server.listen,
            max_connections: s.max_connections,
            max_connections_per_ip: s.max_connections_per_ip,
            trusted_proxies: server.trusted_proxies,
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
            warnings,
        })
    }
}
