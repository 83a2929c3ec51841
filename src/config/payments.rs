//! `[route.payments]`: the keys of `dialect = "payments"` routes (issue 16), checked
//! against the routes they watch once every route is known.

use super::{ms, ConfigError, RouteSettings};
use crate::dialect::DialectKind;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// `[route.payments]` as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentsRouteConfig {
    /// Paths of routes of this instance to watch through (any subset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ethereum: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solana: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xrpl: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lnbits: Option<String>,
    /// Blocks on top of a credit's block before it is `final` (Ethereum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ethereum_confirmations: Option<u64>,
    /// Where the event log lives (one redb file, `payments.redb`). Left out of the TOML:
    /// [`DEFAULT_DATA_DIR`] (relative to the working directory); `""`: in memory only (a
    /// restart loses every cursor). `None` (only when built in code, as the demo and
    /// tests do): in memory.
    #[serde(default = "default_data_dir", skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<String>,
    /// Events older than this are dropped from the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_max_age_secs: Option<u64>,
    /// The log's events together stay under this many bytes (oldest dropped first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_max_bytes: Option<u64>,
    /// Pinned token metadata (otherwise read from the chain and cached).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token: Vec<TokenConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhook: Vec<WebhookConfig>,
}

/// `[[route.payments.token]]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// `ethereum` (an ERC-20 contract) or `solana` (an SPL mint).
    pub chain: String,
    pub address: String,
    pub decimals: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
}

/// `[[route.payments.webhook]]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: String,
    /// `chain:address` entries.
    pub addresses: Vec<String>,
}

/// Validated `[route.payments]`.
#[derive(Debug, Clone)]
pub struct PaymentsSettings {
    pub ethereum: Option<String>,
    pub solana: Option<String>,
    pub xrpl: Option<String>,
    pub lnbits: Option<String>,
    pub ethereum_confirmations: u64,
    pub data_dir: Option<PathBuf>,
    pub log_max_age: Duration,
    pub log_max_bytes: u64,
    pub tokens: Vec<TokenConfig>,
    pub webhooks: Vec<WebhookConfig>,
}

pub const DEFAULT_CONFIRMATIONS: u64 = 12;
/// Where a configured payments route keeps its event log unless `data_dir` says otherwise.
pub const DEFAULT_DATA_DIR: &str = "submux-data";

fn default_data_dir() -> Option<String> {
    Some(DEFAULT_DATA_DIR.to_string())
}
pub const DEFAULT_LOG_MAX_AGE_SECS: u64 = 7 * 24 * 3600;
pub const DEFAULT_LOG_MAX_BYTES: u64 = 1 << 30;

impl PaymentsRouteConfig {
    /// Check the table on its own (the watched routes are checked by [`check_watched`]).
    pub(super) fn validate(&self, at: &str) -> Result<PaymentsSettings, ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(format!("{at}: {m}")));
        if [&self.ethereum, &self.solana, &self.xrpl, &self.lnbits]
            .iter()
            .all(|p| p.is_none())
        {
            return bad("[route.payments] must name at least one route to watch (ethereum, solana, xrpl or lnbits)".into());
        }
        let confirmations = self.ethereum_confirmations.unwrap_or(DEFAULT_CONFIRMATIONS);
        if confirmations == 0 || confirmations > 10_000 {
            return bad("ethereum_confirmations must be between 1 and 10000".into());
        }
        let max_age = self.log_max_age_secs.unwrap_or(DEFAULT_LOG_MAX_AGE_SECS);
        let max_bytes = self.log_max_bytes.unwrap_or(DEFAULT_LOG_MAX_BYTES);
        if max_age == 0 {
            return bad("log_max_age_secs must be greater than 0".into());
        }
        if max_bytes < 1 << 20 {
            return bad("log_max_bytes must be at least 1048576 (1 MiB)".into());
        }
        for t in &self.token {
            if t.chain != "ethereum" && t.chain != "solana" {
                return bad(format!(
                    "token {}: chain must be \"ethereum\" or \"solana\"",
                    t.address
                ));
            }
            if t.decimals > 77 {
                return bad(format!("token {}: decimals must be at most 77", t.address));
            }
        }
        for w in &self.webhook {
            let ok = (w.url.starts_with("http://") || w.url.starts_with("https://"))
                && w.url.parse::<http::Uri>().is_ok_and(|u| u.host().is_some());
            if !ok {
                return bad("webhook url must be an http:// or https:// URL".into());
            }
            if w.secret.len() < 16 {
                return bad("webhook secret must be at least 16 characters".into());
            }
            if w.addresses.is_empty() {
                return bad("webhook addresses must list at least one chain:address".into());
            }
            if let Some(a) = w.addresses.iter().find(|a| !a.contains(':')) {
                return bad(format!(
                    "webhook address {a:?} must be written chain:address"
                ));
            }
        }
        if self.data_dir.as_ref().is_some_and(|d| d != d.trim()) {
            return bad(
                "data_dir has leading or trailing spaces (\"\" keeps the log in memory)".into(),
            );
        }
        Ok(PaymentsSettings {
            ethereum: self.ethereum.clone(),
            solana: self.solana.clone(),
            xrpl: self.xrpl.clone(),
            lnbits: self.lnbits.clone(),
            ethereum_confirmations: confirmations,
            // "": in memory only.
            data_dir: (self.data_dir.as_ref())
                .filter(|d| !d.is_empty())
                .map(PathBuf::from),
            log_max_age: ms(max_age.saturating_mul(1000)),
            log_max_bytes: max_bytes,
            tokens: self.token.clone(),
            webhooks: self.webhook.clone(),
        })
    }
}

/// Every payments route's watched paths name routes of this instance of the right
/// dialect.
pub(super) fn check_watched(routes: &[RouteSettings]) -> Result<(), ConfigError> {
    // One redb file per data_dir: a second route on it could not open the log.
    let mut dirs = std::collections::HashMap::new();
    for r in routes {
        let Some(d) = r.payments.as_ref().and_then(|p| p.data_dir.as_ref()) else {
            continue;
        };
        if let Some(other) = dirs.insert(d.clone(), &r.path) {
            return Err(ConfigError::Invalid(format!(
                "route {}: [route.payments] data_dir {:?} is also route {other}'s: each payments route needs a data_dir of its own",
                r.path,
                d.display()
            )));
        }
    }
    for r in routes {
        let Some(p) = &r.payments else { continue };
        for (key, path, want) in [
            ("ethereum", &p.ethereum, DialectKind::Ethereum),
            ("solana", &p.solana, DialectKind::Solana),
            ("xrpl", &p.xrpl, DialectKind::Xrpl),
            ("lnbits", &p.lnbits, DialectKind::Lnbits),
        ] {
            let Some(path) = path else { continue };
            match routes.iter().find(|x| &x.path == path) {
                Some(x) if x.dialect == want && want == DialectKind::Solana && x.http_upstream.is_none() => {
                    return Err(ConfigError::Invalid(format!(
                        "route {}: [route.payments] solana = {path:?}: that route needs http_upstream (transactions are read with getTransaction)",
                        r.path
                    )))
                }
                Some(x) if x.dialect == want => {}
                Some(x) => {
                    return Err(ConfigError::Invalid(format!(
                        "route {}: [route.payments] {key} = {path:?} is a {} route, not {want}",
                        r.path, x.dialect
                    )))
                }
                None => {
                    return Err(ConfigError::Invalid(format!(
                    "route {}: [route.payments] {key} = {path:?} names no route of this instance",
                    r.path
                )))
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::RawConfig;

    fn check(toml: &str) -> Result<(), String> {
        RawConfig::parse(toml, "t")
            .and_then(|c| c.validate(None))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    const XRPL: &str =
        "[[route]]\npath = \"/xrpl\"\ndialect = \"xrpl\"\nupstreams = [\"ws://127.0.0.1:1\"]\n";

    #[test]
    fn payments_routes_are_checked() {
        let ok = format!("{XRPL}[[route]]\npath = \"/p\"\ndialect = \"payments\"\n[route.payments]\nxrpl = \"/xrpl\"\n");
        check(&ok).unwrap();
        for (extra, want) in [
            ("", "needs a [route.payments] table"),
            ("[route.payments]\n", "must name at least one route"),
            ("[route.payments]\nxrpl = \"/nope\"\n", "names no route of this instance"),
            ("[route.payments]\nethereum = \"/xrpl\"\n", "is a xrpl route, not ethereum"),
            ("[route.payments]\nxrpl = \"/xrpl\"\nethereum_confirmations = 0\n", "ethereum_confirmations"),
            ("[route.payments]\nxrpl = \"/xrpl\"\nlog_max_bytes = 10\n", "log_max_bytes"),
            ("[route.payments]\nxrpl = \"/xrpl\"\n[[route.payments.webhook]]\nurl = \"ftp://x\"\nsecret = \"0123456789abcdef\"\naddresses = [\"xrpl:r\"]\n", "webhook url"),
            ("[route.payments]\nxrpl = \"/xrpl\"\n[[route.payments.webhook]]\nurl = \"http://x/\"\nsecret = \"short\"\naddresses = [\"xrpl:r\"]\n", "secret"),
            ("[route.payments]\nxrpl = \"/xrpl\"\n[[route.payments.token]]\nchain = \"xrpl\"\naddress = \"r\"\ndecimals = 6\n", "chain must be"),
        ] {
            let t = format!("{XRPL}[[route]]\npath = \"/p\"\ndialect = \"payments\"\n{extra}");
            let e = check(&t).unwrap_err();
            assert!(e.contains(want), "{extra}: {e}");
        }
        let upstreams = format!("{XRPL}[[route]]\npath = \"/p\"\ndialect = \"payments\"\nupstreams = [\"ws://a\"]\n[route.payments]\nxrpl = \"/xrpl\"\n");
        assert!(check(&upstreams)
            .unwrap_err()
            .contains("no upstreams of its own"));
        let elsewhere = "[[route]]\npath = \"/xrpl\"\ndialect = \"xrpl\"\nupstreams = [\"ws://127.0.0.1:1\"]\n[route.payments]\nxrpl = \"/xrpl\"\n";
        assert!(check(elsewhere)
            .unwrap_err()
            .contains("applies only to routes with dialect = \"payments\""));
    }
}
