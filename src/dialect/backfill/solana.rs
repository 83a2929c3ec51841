//! Solana: what a subscription missed while its connection was replaced, asked of the
//! node's HTTP endpoint (Agave's PubSub socket serves no calls), and rendered as the
//! notification the node would have pushed (Agave `rpc_subscriptions.rs` shapes:
//! `{"context":{"slot":S},"value":…}` under `<kind>Notification`).
//!
//! - `accountSubscribe`: `getAccountInfo` with the subscription's encoding, commitment and
//!   data slice: the current value, if it changed.
//! - `programSubscribe`: `getProgramAccounts` with its encoding, commitment and filters
//!   (`withContext`): each account whose value changed (or was never delivered).
//! - `logsSubscribe` with `mentions`: `getSignaturesForAddress` (commitment at least
//!   `confirmed`, which the method requires), then `getTransaction` per signature newer
//!   than what was delivered: its `logMessages` and `err`.
//! - `signatureSubscribe` still pending: `getSignatureStatuses` (with history): the final
//!   notification if the signature reached the subscription's commitment.

use crate::dialect::{Call, SubscriptionKey};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::hash::{DefaultHasher, Hash, Hasher};

/// What a backfillable Solana subscription is.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Account {
        pubkey: String,
        config: Value,
    },
    Program {
        program: String,
        config: Value,
    },
    Logs {
        mention: String,
        commitment: String,
    },
    Signature {
        signature: String,
        commitment: String,
    },
}

pub fn kind(key: &SubscriptionKey) -> Option<Kind> {
    let params: Vec<Value> = serde_json::from_str(key.params()).ok()?;
    let first = params.first()?;
    let config = params.get(1).cloned().unwrap_or(Value::Object(Map::new()));
    let commitment = config["commitment"]
        .as_str()
        .unwrap_or("finalized")
        .to_owned();
    match key.method() {
        "accountSubscribe" => Some(Kind::Account {
            pubkey: first.as_str()?.to_owned(),
            config,
        }),
        "programSubscribe" => Some(Kind::Program {
            program: first.as_str()?.to_owned(),
            config,
        }),
        "logsSubscribe" => Some(Kind::Logs {
            mention: first["mentions"][0].as_str()?.to_owned(),
            commitment,
        }),
        "signatureSubscribe" => Some(Kind::Signature {
            signature: first.as_str()?.to_owned(),
            commitment,
        }),
        _ => None,
    }
}

pub fn supported(key: &SubscriptionKey) -> bool {
    kind(key).is_some()
}

fn call(method: &str, params: Value) -> Call {
    Call {
        method: method.into(),
        params: Some(params.to_string().into()),
        class: 0,
    }
}

/// Only the fields `name` accepts of a subscription's config.
fn only(config: &Value, keys: &[&str]) -> Value {
    let mut m = Map::new();
    for k in keys {
        if let Some(v) = config.get(*k) {
            m.insert((*k).into(), v.clone());
        }
    }
    Value::Object(m)
}

/// The first call for `kind` (signatures: those after `before` are asked).
pub fn first_call(kind: &Kind) -> Call {
    match kind {
        Kind::Account { pubkey, config } => call(
            "getAccountInfo",
            json!([
                pubkey,
                only(config, &["commitment", "encoding", "dataSlice"])
            ]),
        ),
        Kind::Program { program, config } => {
            let mut c = only(config, &["commitment", "encoding", "dataSlice", "filters"]);
            c["withContext"] = json!(true);
            call("getProgramAccounts", json!([program, c]))
        }
        Kind::Logs {
            mention,
            commitment,
        } => call(
            "getSignaturesForAddress",
            json!([mention, {"limit": 1000, "commitment": at_least_confirmed(commitment)}]),
        ),
        Kind::Signature { signature, .. } => call(
            "getSignatureStatuses",
            json!([[signature], {"searchTransactionHistory": true}]),
        ),
    }
}

/// `getSignaturesForAddress` and `getTransaction` refuse `processed` (Agave: "Method does
/// not support commitment below `confirmed`").
fn at_least_confirmed(c: &str) -> &str {
    if c == "processed" {
        "confirmed"
    } else {
        c
    }
}

/// The transaction whose logs a `logsSubscribe` missed.
pub fn transaction_call(signature: &str, commitment: &str) -> Call {
    call(
        "getTransaction",
        json!([signature, {"encoding": "json", "commitment": at_least_confirmed(commitment),
            "maxSupportedTransactionVersion": 0}]),
    )
}

#[derive(serde::Deserialize)]
struct Ctx<'a> {
    context: Context,
    #[serde(borrow)]
    value: &'a RawValue,
}
#[derive(serde::Deserialize)]
struct Context {
    slot: u64,
}

/// `getAccountInfo`: the slot and the notification result to push.
pub fn read_account(result: &str) -> Option<(u64, String)> {
    let c: Ctx = serde_json::from_str(result).ok()?;
    let r = format!(
        "{{\"context\":{{\"slot\":{}}},\"value\":{}}}",
        c.context.slot,
        c.value.get()
    );
    Some((c.context.slot, r))
}

/// `getProgramAccounts` (with context): the slot and, per account, its pubkey and the
/// notification result to push.
pub fn read_program(result: &str) -> Option<(u64, Vec<(String, String)>)> {
    #[derive(serde::Deserialize)]
    struct Entry<'a> {
        pubkey: String,
        #[serde(borrow)]
        account: &'a RawValue,
    }
    let c: Ctx = serde_json::from_str(result).ok()?;
    let entries: Vec<Entry> = serde_json::from_str(c.value.get()).ok()?;
    let slot = c.context.slot;
    let out = entries
        .into_iter()
        .map(|e| {
            let r = format!(
                "{{\"context\":{{\"slot\":{slot}}},\"value\":{{\"pubkey\":\"{}\",\"account\":{}}}}}",
                e.pubkey,
                e.account.get()
            );
            (e.pubkey, r)
        })
        .collect();
    Some((slot, out))
}

/// `getSignaturesForAddress`: (signature, slot), newest first as the node answers.
pub fn read_signatures(result: &str) -> Option<Vec<(String, u64)>> {
    #[derive(serde::Deserialize)]
    struct Entry {
        signature: String,
        slot: u64,
    }
    let v: Vec<Entry> = serde_json::from_str(result).ok()?;
    Some(v.into_iter().map(|e| (e.signature, e.slot)).collect())
}

/// `getTransaction`: the slot and the `logsNotification` result (`null`: not found).
pub fn read_transaction(result: &str, signature: &str) -> Option<(u64, String)> {
    let v: Value = serde_json::from_str(result).ok()?;
    let slot = v["slot"].as_u64()?;
    let meta = v.get("meta")?;
    let logs = meta.get("logMessages").cloned().unwrap_or(json!([]));
    // Agave's member order (RpcLogsResponse): signature, err, logs.
    let r = format!(
        r#"{{"context":{{"slot":{slot}}},"value":{{"signature":{},"err":{},"logs":{logs}}}}}"#,
        json!(signature),
        meta["err"]
    );
    Some((slot, r))
}

/// `getSignatureStatuses`: the final `signatureNotification` result, if the signature
/// reached `commitment`.
pub fn read_status(result: &str, commitment: &str) -> Option<String> {
    let v: Value = serde_json::from_str(result).ok()?;
    let s = v["value"].get(0)?;
    let slot = s["slot"].as_u64()?;
    let rank = |c: &str| match c {
        "processed" => 0,
        "confirmed" => 1,
        _ => 2,
    };
    let reached = s["confirmationStatus"].as_str().map_or(0, rank);
    (reached >= rank(commitment))
        .then(|| json!({"context": {"slot": slot}, "value": {"err": s["err"]}}).to_string())
}

/// The upstream notification the node would have pushed on subscription `sub`.
pub fn notification(method: &str, sub: &str, result: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","method":"{method}","params":{{"result":{result},"subscription":{sub}}}}}"#
    )
}

/// The notification method of `kind`.
pub fn method(kind: &Kind) -> &'static str {
    match kind {
        Kind::Account { .. } => "accountNotification",
        Kind::Program { .. } => "programNotification",
        Kind::Logs { .. } => "logsNotification",
        Kind::Signature { .. } => "signatureNotification",
    }
}

fn hashed(s: &str) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// What a live or fetched notification result is, for deduplication: its slot, the
/// account's pubkey (program notifications), and its identity (a signature, or the value).
pub fn identify(result: &str) -> Option<(u64, Option<u64>, u64)> {
    let c: Ctx = serde_json::from_str(result).ok()?;
    #[derive(serde::Deserialize)]
    struct Keyed<'a> {
        #[serde(default)]
        signature: Option<String>,
        #[serde(default)]
        pubkey: Option<String>,
        #[serde(borrow, default)]
        account: Option<&'a RawValue>,
    }
    let value = c.value.get();
    let k: Option<Keyed> = serde_json::from_str(value).ok();
    Some(match k {
        Some(Keyed {
            signature: Some(s), ..
        }) => (c.context.slot, None, hashed(&s)),
        Some(Keyed {
            pubkey: Some(p),
            account: Some(a),
            ..
        }) => (c.context.slot, Some(hashed(&p)), hashed(a.get())),
        _ => (c.context.slot, None, hashed(value)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::KeyFlags;

    fn key(method: &str, params: &str) -> SubscriptionKey {
        SubscriptionKey::new(method, params, KeyFlags::default())
    }

    #[test]
    fn calls_carry_the_subscriptions_config() {
        let k = kind(&key(
            "accountSubscribe",
            r#"["Pk",{"commitment":"confirmed","encoding":"base64"}]"#,
        ))
        .unwrap();
        let c = first_call(&k);
        assert_eq!(&*c.method, "getAccountInfo");
        assert_eq!(
            c.params.as_deref(),
            Some(r#"["Pk",{"commitment":"confirmed","encoding":"base64"}]"#)
        );
        let k = kind(&key(
            "logsSubscribe",
            r#"[{"mentions":["Addr"]},{"commitment":"processed"}]"#,
        ))
        .unwrap();
        let p: Value = serde_json::from_str(first_call(&k).params.as_deref().unwrap()).unwrap();
        assert_eq!(p[1]["commitment"], "confirmed", "the method's minimum");
        assert!(kind(&key("slotSubscribe", "[]")).is_none());
        assert!(kind(&key(
            "logsSubscribe",
            r#"["all",{"commitment":"finalized"}]"#
        ))
        .is_none());
    }

    #[test]
    fn answers_become_the_notifications_the_node_pushes() {
        let (slot, r) =
            read_account(r#"{"context":{"apiVersion":"2.2.0","slot":7},"value":{"lamports":5}}"#)
                .unwrap();
        assert_eq!(
            (slot, r.as_str()),
            (7, r#"{"context":{"slot":7},"value":{"lamports":5}}"#)
        );
        let live = identify(r#"{"context":{"slot":7},"value":{"lamports":5}}"#).unwrap();
        assert_eq!(identify(&r).unwrap(), live, "same value, same identity");
        let tx = r#"{"slot":9,"meta":{"err":null,"logMessages":["Program x invoke [1]"]},"transaction":{}}"#;
        let (slot, r) = read_transaction(tx, "Sig").unwrap();
        assert_eq!(slot, 9);
        assert_eq!(
            r,
            r#"{"context":{"slot":9},"value":{"signature":"Sig","err":null,"logs":["Program x invoke [1]"]}}"#
        );
        let status = r#"{"context":{"slot":10},"value":[{"slot":8,"confirmations":null,"err":null,"status":{"Ok":null},"confirmationStatus":"confirmed"}]}"#;
        assert_eq!(read_status(status, "finalized"), None, "not final yet");
        assert_eq!(
            read_status(status, "confirmed").as_deref(),
            Some(r#"{"context":{"slot":8},"value":{"err":null}}"#)
        );
        let (slot, accounts) = read_program(
            r#"{"context":{"slot":4},"value":[{"pubkey":"A","account":{"lamports":1}}]}"#,
        )
        .unwrap();
        assert_eq!(slot, 4);
        assert_eq!(
            accounts[0].1,
            r#"{"context":{"slot":4},"value":{"pubkey":"A","account":{"lamports":1}}}"#
        );
    }
}
