//! Solana credits from a transaction (`getTransaction`, `json` or `jsonParsed`
//! encoding), following Solana's exchange-integration guide ("Poll for Blocks",
//! "Tracking Deposits"): a successful transaction (`meta.err` null) credits an account
//! whose `postBalances` exceed its `preBalances` (the fee payer's fee added back), and
//! the owner of a token account whose `postTokenBalances` amount exceeds its
//! `preTokenBalances` one (absent before = 0). The status is the commitment the
//! transaction was read at: `confirmed`, or `final` for `finalized`.

use super::amount::{format_units, parse_uint};
use super::event::{rfc3339, Asset, Chain, Credit, Status};
use num_bigint::BigUint;
use serde_json::Value;
use std::collections::HashMap;

/// The account keys in index order: static keys, then loaded writable, then readonly
/// (address-table lookups of v0 transactions).
fn account_keys(tx: &Value) -> Vec<String> {
    let mut keys: Vec<String> = tx["transaction"]["message"]["accountKeys"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|k| k.as_str().or_else(|| k.get("pubkey")?.as_str()))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    for part in ["writable", "readonly"] {
        if let Some(a) = tx["meta"]["loadedAddresses"][part].as_array() {
            keys.extend(a.iter().filter_map(Value::as_str).map(str::to_string));
        }
    }
    keys
}

/// Every credit of one transaction, for any account, each with its stable id
/// (`solana:<signature>:<n>`); `status` is the commitment it was read at.
pub fn credits(tx: &Value, status: Status) -> Vec<Credit> {
    let meta = &tx["meta"];
    if meta.is_null() || !meta["err"].is_null() {
        return Vec::new();
    }
    let Some(sig) = tx["transaction"]["signatures"][0].as_str() else {
        return Vec::new();
    };
    let keys = account_keys(tx);
    let payer = keys.first().cloned().unwrap_or_default();
    let fee = meta["fee"].as_u64().unwrap_or(0);
    let slot = tx["slot"].as_u64();
    let time = tx["blockTime"].as_u64().map(rfc3339);
    let mut found: Vec<(String, BigUint, Asset)> = Vec::new();
    if let (Some(pre), Some(post)) = (
        meta["preBalances"].as_array(),
        meta["postBalances"].as_array(),
    ) {
        for (i, (a, b)) in pre.iter().zip(post).enumerate() {
            let (Some(a), Some(b), Some(key)) = (a.as_u64(), b.as_u64(), keys.get(i)) else {
                continue;
            };
            let b = u128::from(b) + if i == 0 { u128::from(fee) } else { 0 };
            if b > u128::from(a) {
                found.push((
                    key.clone(),
                    BigUint::from(b - u128::from(a)),
                    Asset::native(Chain::Solana),
                ));
            }
        }
    }
    // Token balances by account index: (mint, owner, amount, decimals).
    let read = |v: &Value| -> HashMap<u64, (String, String, BigUint, u32)> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| {
                let ui = &t["uiTokenAmount"];
                Some((
                    t["accountIndex"].as_u64()?,
                    (
                        t["mint"].as_str()?.to_string(),
                        t["owner"].as_str()?.to_string(),
                        parse_uint(ui["amount"].as_str()?).ok()?,
                        u32::try_from(ui["decimals"].as_u64()?).ok()?,
                    ),
                ))
            })
            .collect()
    };
    let (pre, post) = (
        read(&meta["preTokenBalances"]),
        read(&meta["postTokenBalances"]),
    );
    let mut indices: Vec<&u64> = post.keys().collect();
    indices.sort();
    for i in indices {
        let (mint, owner, after, decimals) = &post[i];
        let before = pre
            .get(i)
            .filter(|p| &p.0 == mint)
            .map(|p| p.2.clone())
            .unwrap_or_default();
        if after > &before {
            found.push((
                owner.clone(),
                after - before,
                Asset::Spl {
                    mint: mint.clone(),
                    symbol: None,
                    decimals: *decimals,
                },
            ));
        }
    }
    found
        .into_iter()
        .enumerate()
        .map(|(n, (to, raw, asset))| {
            let decimals = match &asset {
                Asset::Spl { decimals, .. } => *decimals,
                _ => 9,
            };
            Credit {
                id: format!("solana:{sig}:{n}"),
                chain: Chain::Solana,
                status,
                from: (payer != to && !payer.is_empty()).then(|| payer.clone()),
                to,
                amount: format_units(&raw, decimals),
                raw_amount: Some(raw.to_string()),
                asset,
                tx: sig.to_string(),
                height: slot,
                time: time.clone(),
            }
        })
        .collect()
}

/// Validate a Solana address: base58 of exactly 32 bytes.
pub fn parse_address(text: &str) -> Option<String> {
    let bytes = bs58::decode(text).into_vec().ok()?;
    (bytes.len() == 32).then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PAYER: &str = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM";
    const TO: &str = "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T";
    const MINT: &str = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v";

    fn tx(err: Value) -> Value {
        json!({"slot": 250, "blockTime": 1_796_637_600u64,
            "meta": {"err": err, "fee": 5000,
                "preBalances": [1_000_000_000u64, 0, 2_039_280, 1],
                "postBalances": [998_994_999u64, 1_000_001, 2_039_280, 1],
                "preTokenBalances": [{"accountIndex": 2, "mint": MINT, "owner": TO,
                    "uiTokenAmount": {"amount": "1", "decimals": 6, "uiAmount": 0.000001}}],
                "postTokenBalances": [{"accountIndex": 2, "mint": MINT, "owner": TO,
                    "uiTokenAmount": {"amount": "18446744073709551616", "decimals": 6}}],
                "loadedAddresses": {"writable": [], "readonly": []}},
            "transaction": {"signatures": ["5sig"], "message": {"accountKeys": [PAYER, TO, "TokenAcct1111111111111111111111111111111111", "11111111111111111111111111111111"]}}})
    }

    #[test]
    fn sol_and_spl_credits_exact() {
        let c = credits(&tx(Value::Null), Status::Final);
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(
            (c[0].to.as_str(), c[0].amount.as_str()),
            (TO, "0.001000001")
        );
        assert_eq!(c[0].raw_amount.as_deref(), Some("1000001"));
        assert_eq!(c[0].from.as_deref(), Some(PAYER));
        assert_eq!(c[0].asset, Asset::native(Chain::Solana));
        assert_eq!(c[1].to, TO);
        assert_eq!(c[1].raw_amount.as_deref(), Some("18446744073709551615"));
        assert_eq!(c[1].amount, "18446744073709.551615");
        assert!(matches!(&c[1].asset, Asset::Spl { mint, decimals: 6, .. } if mint == MINT));
        assert_eq!(c[1].id, "solana:5sig:1");
        assert_eq!((c[1].height, c[1].status), (Some(250), Status::Final));
        assert_eq!(c[1].time.as_deref(), Some("2026-12-07T10:00:00Z"));
    }

    #[test]
    fn failed_transactions_and_fees_are_no_credit() {
        assert!(credits(
            &tx(json!({"InstructionError": [0, "Custom"]})),
            Status::Final
        )
        .is_empty());
        // The payer only paid the fee: nothing.
        let mut t = tx(Value::Null);
        t["meta"]["postBalances"] = json!([999_995_000u64, 0, 2_039_280, 1]);
        t["meta"]["postTokenBalances"] = t["meta"]["preTokenBalances"].clone();
        assert!(credits(&t, Status::Confirmed).is_empty());
        // A new token account (no pre balance) credits its whole amount.
        let mut t = tx(Value::Null);
        t["meta"]["preTokenBalances"] = json!([]);
        t["meta"]["postBalances"] = json!([999_995_000u64, 0, 2_039_280, 1]);
        let c = credits(&t, Status::Confirmed);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].raw_amount.as_deref(), Some("18446744073709551616"));
        assert_eq!(c[0].status, Status::Confirmed);
    }

    #[test]
    fn addresses_are_32_byte_base58() {
        assert!(parse_address(PAYER).is_some());
        assert!(parse_address("11111111111111111111111111111111").is_some());
        assert!(parse_address("0OIl").is_none());
        assert!(parse_address("abc").is_none());
        assert!(parse_address("").is_none());
    }
}
