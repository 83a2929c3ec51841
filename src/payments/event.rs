//! The feed's one event shape: a credit to a watched address and its state.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A chain the feed watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Chain {
    Xrpl,
    Ethereum,
    Solana,
    Lightning,
}

impl Chain {
    pub const ALL: [Chain; 4] = [
        Chain::Xrpl,
        Chain::Ethereum,
        Chain::Solana,
        Chain::Lightning,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Chain::Xrpl => "xrpl",
            Chain::Ethereum => "ethereum",
            Chain::Solana => "solana",
            Chain::Lightning => "lightning",
        }
    }
    pub fn parse(s: &str) -> Option<Chain> {
        Chain::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a credit stands. The same event `id` moves `pending` → `confirmed` → `final`, or
/// to `retracted` when a reorganisation removes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Confirmed,
    Final,
    Retracted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Confirmed => "confirmed",
            Status::Final => "final",
            Status::Retracted => "retracted",
        }
    }
}

/// What was credited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Asset {
    /// The chain's own coin (XRP, ETH, SOL).
    Native { symbol: String, decimals: u32 },
    /// An XRPL issued currency: its code and issuer (no base unit).
    Issued { currency: String, issuer: String },
    Erc20 {
        contract: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        symbol: Option<String>,
        decimals: u32,
    },
    Spl {
        mint: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        symbol: Option<String>,
        decimals: u32,
    },
    /// Lightning (LNbits): bitcoin, with millisatoshis as the base unit.
    Lightning { symbol: String, decimals: u32 },
}

impl Asset {
    pub fn native(chain: Chain) -> Asset {
        let (symbol, decimals) = match chain {
            Chain::Xrpl => ("XRP", 6),
            Chain::Ethereum => ("ETH", 18),
            Chain::Solana => ("SOL", 9),
            Chain::Lightning => {
                return Asset::Lightning {
                    symbol: "BTC".into(),
                    decimals: 11,
                }
            }
        };
        Asset::Native {
            symbol: symbol.into(),
            decimals,
        }
    }

    /// Whether this asset passes a subscription's `assets` filter.
    pub fn matches(&self, filter: &AssetFilter) -> bool {
        match (filter, self) {
            (AssetFilter::Native, Asset::Native { .. } | Asset::Lightning { .. }) => true,
            (AssetFilter::Token(t), Asset::Erc20 { contract, .. }) => {
                contract.eq_ignore_ascii_case(t)
            }
            (AssetFilter::Token(t), Asset::Spl { mint, .. }) => mint == t,
            (
                AssetFilter::Issued { currency, issuer },
                Asset::Issued {
                    currency: c,
                    issuer: i,
                },
            ) => currency == c && issuer == i,
            _ => false,
        }
    }
}

/// A subscription's `assets` member: one of these, or a list of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssetFilter {
    Native,
    /// An ERC-20 contract or SPL mint.
    Token(String),
    Issued {
        currency: String,
        issuer: String,
    },
}

/// One credit in one state: the EVENT of the feed without its cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credit {
    /// `chain:tx:n`, the same for every state of this credit.
    pub id: String,
    pub chain: Chain,
    pub status: Status,
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Exact decimal in the asset's units.
    pub amount: String,
    /// The integer in base units, where the asset has them (not XRPL issued currencies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_amount: Option<String>,
    pub asset: Asset,
    pub tx: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
}

impl Credit {
    /// The same credit in another state.
    pub fn with_status(&self, status: Status) -> Credit {
        Credit {
            status,
            ..self.clone()
        }
    }
}

/// A logged event: a credit and its cursor (what clients resume from).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub cursor: String,
    #[serde(flatten)]
    pub credit: Credit,
}

/// Seconds since the Unix epoch as RFC 3339 UTC (`2026-12-07T10:00:00Z`).
pub fn rfc3339(unix_secs: u64) -> String {
    let (y, m, d, hh, mm, ss) = crate::civil::utc(unix_secs);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_render_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_637_600), "2026-12-07T10:00:00Z");
    }

    #[test]
    fn event_shape_is_the_issues() {
        let e = Event {
            cursor: "c1".into(),
            credit: Credit {
                id: "xrpl:AB:0".into(),
                chain: Chain::Xrpl,
                status: Status::Final,
                to: "rTo".into(),
                from: Some("rFrom".into()),
                amount: "1.000001".into(),
                raw_amount: Some("1000001".into()),
                asset: Asset::native(Chain::Xrpl),
                tx: "AB".into(),
                height: Some(96_512_345),
                time: Some(rfc3339(1_796_637_600)),
            },
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id": "xrpl:AB:0", "cursor": "c1", "chain": "xrpl",
                "status": "final", "to": "rTo", "from": "rFrom",
                "amount": "1.000001", "raw_amount": "1000001",
                "asset": {"type": "native", "symbol": "XRP", "decimals": 6},
                "tx": "AB", "height": 96512345, "time": "2026-12-07T10:00:00Z"})
        );
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }
}
