//! LNbits routes' own keys (`[route.lnbits]`) and the Redis `[backplane]`.

use super::route::d;
use super::{expand_env, ms, ConfigError, RouteConfig};
use crate::telemetry::redact_url;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[route.lnbits]`: the keys only LNbits channel routes have.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LnbitsRouteConfig {
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

impl RouteConfig {
    /// The same keys at the route's top level (the form before `[route.lnbits]`).
    fn legacy_lnbits(&self) -> LnbitsRouteConfig {
        LnbitsRouteConfig {
            push_token: self.push_token.clone(),
            max_push_bytes: self.max_push_bytes,
            replay_buffer_len: self.replay_buffer_len,
            replay_ttl_ms: self.replay_ttl_ms,
            replay_max_bytes: self.replay_max_bytes,
            max_channels: self.max_channels,
        }
    }

    /// The LNbits-only keys that are set, in either form (for "applies only to lnbits").
    pub(super) fn lnbits_keys_set(&self) -> Vec<&'static str> {
        let table = self.lnbits.clone().unwrap_or_default();
        let (a, b) = (self.legacy_lnbits().set(), table.set());
        a.into_iter().chain(b).collect()
    }

    /// The route's LNbits keys: `[route.lnbits]`, plus any still at the top level (each
    /// named in a warning); a key set in both places is an error.
    fn lnbits_keys(
        &self,
        at: &str,
        warnings: &mut Vec<String>,
    ) -> Result<LnbitsRouteConfig, ConfigError> {
        let legacy = self.legacy_lnbits();
        let mut keys = self.lnbits.clone().unwrap_or_default();
        let table_set = keys.set();
        for k in legacy.set() {
            if table_set.contains(&k) {
                return Err(ConfigError::Invalid(format!(
                    "{at}: {k} is set both in [route.lnbits] and at the route's top level; keep the one in [route.lnbits]"
                )));
            }
            warnings.push(format!(
                "{at}: {k} at the route's top level is deprecated; move it into a [route.lnbits] table"
            ));
        }
        keys.push_token = keys.push_token.or(legacy.push_token);
        keys.max_push_bytes = keys.max_push_bytes.or(legacy.max_push_bytes);
        keys.replay_buffer_len = keys.replay_buffer_len.or(legacy.replay_buffer_len);
        keys.replay_ttl_ms = keys.replay_ttl_ms.or(legacy.replay_ttl_ms);
        keys.replay_max_bytes = keys.replay_max_bytes.or(legacy.replay_max_bytes);
        keys.max_channels = keys.max_channels.or(legacy.max_channels);
        Ok(keys)
    }

    /// Every LNbits default filled into `[route.lnbits]` (for `--print-config`), the token
    /// hidden, and nothing left at the top level.
    pub(super) fn fill_lnbits_defaults(&mut self) {
        let d = LnbitsSettings::default();
        let mut k = self
            .lnbits_keys("", &mut Vec::new())
            .unwrap_or_else(|_| self.legacy_lnbits());
        k.push_token = k.push_token.as_ref().map(|_| "…".into());
        k.max_push_bytes.get_or_insert(d.max_push_bytes);
        k.replay_buffer_len.get_or_insert(d.replay_buffer_len);
        k.replay_ttl_ms
            .get_or_insert(d.replay_ttl.as_millis() as u64);
        k.replay_max_bytes.get_or_insert(d.replay_max_bytes);
        k.max_channels.get_or_insert(d.max_channels);
        self.lnbits = Some(k);
        self.push_token = None;
        self.max_push_bytes = None;
        self.replay_buffer_len = None;
        self.replay_ttl_ms = None;
        self.replay_max_bytes = None;
        self.max_channels = None;
    }

    /// Validated LNbits settings of this route.
    pub(super) fn lnbits_settings(
        &self,
        at: &str,
        warnings: &mut Vec<String>,
    ) -> Result<LnbitsSettings, ConfigError> {
        let keys = self.lnbits_keys(at, warnings)?;
        lnbits_settings(&keys, self, at)
    }
}

impl LnbitsRouteConfig {
    /// The names of the keys that are set.
    fn set(&self) -> Vec<&'static str> {
        [
            (self.push_token.is_some(), "push_token"),
            (self.max_push_bytes.is_some(), "max_push_bytes"),
            (self.replay_buffer_len.is_some(), "replay_buffer_len"),
            (self.replay_ttl_ms.is_some(), "replay_ttl_ms"),
            (self.replay_max_bytes.is_some(), "replay_max_bytes"),
            (self.max_channels.is_some(), "max_channels"),
        ]
        .into_iter()
        .filter_map(|(set, k)| set.then_some(k))
        .collect()
    }
}

fn lnbits_settings(
    k: &LnbitsRouteConfig,
    r: &RouteConfig,
    at: &str,
) -> Result<LnbitsSettings, ConfigError> {
    let bad = |m: String| Err(ConfigError::Invalid(format!("{at}: {m}")));
    let d = LnbitsSettings::default();
    let push_token = match &k.push_token {
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
        max_push_bytes: k.max_push_bytes.unwrap_or(d.max_push_bytes),
        replay_buffer_len: k.replay_buffer_len.unwrap_or(d.replay_buffer_len),
        replay_ttl: k.replay_ttl_ms.map_or(d.replay_ttl, ms),
        replay_max_bytes: k.replay_max_bytes.unwrap_or(d.replay_max_bytes),
        max_channels: k.max_channels.unwrap_or(d.max_channels),
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

pub(super) fn backplane_settings(b: BackplaneConfig) -> Result<BackplaneSettings, ConfigError> {
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
