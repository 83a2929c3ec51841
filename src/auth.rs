//! Optional API keys and their per-key limits. A key is looked up once per connection
//! (or HTTP request); the per-key counters are shared atomics touched on connect,
//! disconnect and subscription changes only, never per notification.

use crate::env::expand_env;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use subtle::ConstantTimeEq;

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

/// One configured key's limits and live usage.
#[derive(Debug)]
pub struct ApiKey {
    /// What logs and metrics show (never the key itself).
    pub name: String,
    pub max_connections: usize,
    pub max_subscriptions: usize,
    pub connections: AtomicUsize,
    pub subscriptions: AtomicUsize,
}

impl ApiKey {
    /// Take one connection slot; `None` over the per-key cap.
    pub fn connect(self: &Arc<Self>) -> Option<KeyConnection> {
        let prev = self.connections.fetch_add(1, Ordering::AcqRel);
        if self.max_connections > 0 && prev >= self.max_connections {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(KeyConnection(self.clone()))
    }

    /// Take `n` subscriptions; `false` (nothing taken) over the per-key cap.
    pub fn take_subscriptions(&self, n: usize) -> bool {
        let prev = self.subscriptions.fetch_add(n, Ordering::AcqRel);
        if self.max_subscriptions > 0 && prev + n > self.max_subscriptions {
            self.subscriptions.fetch_sub(n, Ordering::AcqRel);
            return false;
        }
        true
    }

    pub fn release_subscriptions(&self, n: usize) {
        let _ = self
            .subscriptions
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v.saturating_sub(n))
            });
    }
}

/// A connection counted against a key; released on drop.
#[derive(Debug)]
pub struct KeyConnection(pub Arc<ApiKey>);

impl Drop for KeyConnection {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a client was refused (HTTP 401/429).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("an API key is required: put it in the path (/ROUTE/KEY), an Authorization: Bearer header or ?api_key=")]
    Missing,
    #[error("unknown API key")]
    Unknown,
}

/// The configured keys.
#[derive(Debug, Default)]
pub struct Keys {
    required: bool,
    /// (secret, key); looked up by comparing every secret in constant time, not by hashing.
    by_secret: Vec<(String, Arc<ApiKey>)>,
}

impl Keys {
    pub fn from_config(
        cfg: &AuthConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Keys, String> {
        let mut by_secret: Vec<(String, Arc<ApiKey>)> = Vec::new();
        for (i, k) in cfg.keys.iter().enumerate() {
            let secret = expand_env(&k.key, &env).map_err(|name| {
                format!("key[{i}] ({}) uses ${{{name}}}, which is not set", k.name)
            })?;
            if secret.len() < 8 || !secret.bytes().all(|b| b.is_ascii_graphic() && b != b'/') {
                return Err(format!(
                    "key[{i}] ({}) must be at least 8 printable characters without '/'",
                    k.name
                ));
            }
            if k.name.is_empty() {
                return Err(format!("key[{i}] needs a name (shown instead of the key)"));
            }
            let key = Arc::new(ApiKey {
                name: k.name.clone(),
                max_connections: k.max_connections,
                max_subscriptions: k.max_subscriptions,
                connections: AtomicUsize::new(0),
                subscriptions: AtomicUsize::new(0),
            });
            if by_secret.iter().any(|(s, _)| *s == secret) {
                return Err(format!("key[{i}] ({}) repeats another key", k.name));
            }
            by_secret.push((secret, key));
        }
        if cfg.required && by_secret.is_empty() {
            return Err("required = true but no [[auth.key]] is configured".into());
        }
        Ok(Keys {
            required: cfg.required,
            by_secret,
        })
    }

    pub fn enabled(&self) -> bool {
        !self.by_secret.is_empty()
    }

    /// Resolve the key a client presented (if any).
    pub fn check(&self, presented: Option<&str>) -> Result<Option<Arc<ApiKey>>, AuthError> {
        match presented {
            Some(p) => {
                // Every secret is compared, each without an early exit on the first
                // differing byte, so timing tells nothing about how close a guess was.
                let mut found = None;
                for (secret, key) in &self.by_secret {
                    if bool::from(secret.as_bytes().ct_eq(p.as_bytes())) {
                        found = Some(key.clone());
                    }
                }
                found.map(Some).ok_or(AuthError::Unknown)
            }
            None if self.required => Err(AuthError::Missing),
            None => Ok(None),
        }
    }
}

/// The key a request presents: `/ROUTE/KEY` (the path after the route), then
/// `Authorization: Bearer KEY`, then `?api_key=KEY` (percent-decoded; a value that does not
/// decode counts as no key).
pub fn presented<'a>(
    path_rest: Option<&'a str>,
    authorization: Option<&'a str>,
    query: Option<&'a str>,
) -> Option<Cow<'a, str>> {
    if let Some(k) = path_rest.filter(|k| !k.is_empty()) {
        return Some(Cow::Borrowed(k));
    }
    if let Some(k) = authorization.and_then(|a| {
        a.strip_prefix("Bearer ")
            .or_else(|| a.strip_prefix("bearer "))
    }) {
        return Some(Cow::Borrowed(k.trim()));
    }
    crate::query::param(query, "api_key")?
        .ok()
        .filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(required: bool, max_conn: usize, max_subs: usize) -> Keys {
        let cfg = AuthConfig {
            required,
            keys: vec![ApiKeyConfig {
                name: "alice".into(),
                key: "${K}".into(),
                max_connections: max_conn,
                max_subscriptions: max_subs,
            }],
        };
        Keys::from_config(&cfg, |n| (n == "K").then(|| "secret-key-1".to_string())).unwrap()
    }

    #[test]
    fn keys_come_from_path_header_or_query() {
        let presented = |p, a, q| presented(p, a, q).map(Cow::into_owned);
        assert_eq!(
            presented(Some("k1"), Some("Bearer k2"), Some("api_key=k3")).as_deref(),
            Some("k1")
        );
        assert_eq!(
            presented(None, Some("Bearer k2"), Some("api_key=k3")).as_deref(),
            Some("k2")
        );
        assert_eq!(
            presented(None, None, Some("a=1&api_key=k3")).as_deref(),
            Some("k3")
        );
        assert_eq!(presented(Some(""), None, None), None);
        // The query form is percent-decoded (`+` is a space there, so a key's own `+` is %2B).
        assert_eq!(
            presented(None, None, Some("api_key=a%2Bb%3D%25c")).as_deref(),
            Some("a+b=%c")
        );
        assert_eq!(presented(None, None, Some("api_key=%zz")), None);
        assert_eq!(presented(None, None, Some("api_key=")), None);
    }

    #[test]
    fn required_unknown_and_limits() {
        let k = keys(true, 1, 2);
        assert_eq!(k.check(None).unwrap_err(), AuthError::Missing);
        assert_eq!(k.check(Some("nope")).unwrap_err(), AuthError::Unknown);
        let alice = k.check(Some("secret-key-1")).unwrap().unwrap();
        assert_eq!(alice.name, "alice");
        let c = alice.connect().expect("first connection");
        assert!(alice.connect().is_none(), "over max_connections");
        drop(c);
        assert!(alice.connect().is_some());
        assert!(alice.take_subscriptions(2));
        assert!(!alice.take_subscriptions(1), "over max_subscriptions");
        alice.release_subscriptions(1);
        assert!(alice.take_subscriptions(1));
        let open = keys(false, 0, 0);
        assert!(open.check(None).unwrap().is_none(), "keys optional");
    }

    #[test]
    fn each_of_several_keys_resolves_to_its_own_name() {
        let key = |name: &str, key: &str| ApiKeyConfig {
            name: name.into(),
            key: key.into(),
            max_connections: 0,
            max_subscriptions: 0,
        };
        let mut cfg = AuthConfig {
            required: true,
            keys: vec![key("a", "secret-a-123"), key("b", "secret-b-456")],
        };
        let k = Keys::from_config(&cfg, |_| None).unwrap();
        assert_eq!(k.check(Some("secret-a-123")).unwrap().unwrap().name, "a");
        assert_eq!(k.check(Some("secret-b-456")).unwrap().unwrap().name, "b");
        for wrong in ["secret-a-12", "secret-a-1234", "secret-b-457", ""] {
            assert_eq!(k.check(Some(wrong)).unwrap_err(), AuthError::Unknown);
        }
        cfg.keys.push(key("c", "secret-a-123"));
        let err = Keys::from_config(&cfg, |_| None).unwrap_err();
        assert!(err.contains("repeats another key"), "{err}");
    }

    #[test]
    fn bad_key_config_is_refused() {
        let cfg = AuthConfig {
            required: false,
            keys: vec![ApiKeyConfig {
                name: "x".into(),
                key: "short".into(),
                max_connections: 0,
                max_subscriptions: 0,
            }],
        };
        assert!(Keys::from_config(&cfg, |_| None).is_err());
    }
}
