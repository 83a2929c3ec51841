//! Ethereum: `newHeads` through `eth_getBlockByNumber` per height (header fields only, as
//! geth's `newHeads` carries them), `logs` through `eth_getLogs` with the topic's filter;
//! reorg checks by block hash, and retracted logs (`removed: true`).

use super::Ordered;
use crate::dialect::{Call, SubscriptionKey};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::hash::{DefaultHasher, Hash, Hasher};

use super::Item;

/// What a backfillable Ethereum subscription is.
enum Kind {
    Heads,
    /// The filter object of a `logs` subscription.
    Logs(Map<String, Value>),
}

fn kind(key: &SubscriptionKey) -> Option<Kind> {
    if key.method() != "eth_subscribe" {
        return None;
    }
    let params: Vec<Value> = serde_json::from_str(key.params()).ok()?;
    match params.first()?.as_str()? {
        "newHeads" if params.len() == 1 => Some(Kind::Heads),
        "logs" => match params.get(1) {
            None | Some(Value::Null) => Some(Kind::Logs(Map::new())),
            Some(Value::Object(m)) => Some(Kind::Logs(m.clone())),
            Some(_) => None,
        },
        _ => None,
    }
}

fn hex(n: u64) -> String {
    format!("0x{n:x}")
}

fn call(method: &str, params: Value) -> Call {
    Call {
        method: method.into(),
        params: Some(params.to_string().into()),
        class: 0,
    }
}

/// Whether `key`'s subscription can be backfilled.
pub fn supported(key: &SubscriptionKey) -> bool {
    kind(key).is_some()
}

/// The node's current height: `eth_blockNumber`.
pub fn head_call() -> Call {
    call("eth_blockNumber", Value::Array(Vec::new()))
}

/// The answer to [`head_call`].
pub fn parse_head(result: &str) -> Option<u64> {
    let s: &str = serde_json::from_str(result).ok()?;
    u64::from_str_radix(s.strip_prefix("0x")?, 16).ok()
}

/// The calls fetching what `key`'s subscription delivers at heights `from..=to`: one
/// `eth_getBlockByNumber` per height for `newHeads`, one `eth_getLogs` for `logs`.
pub fn calls(key: &SubscriptionKey, from: u64, to: u64) -> Option<Vec<Call>> {
    match kind(key)? {
        Kind::Heads => Some((from..=to).map(block_call).collect()),
        Kind::Logs(mut filter) => {
            filter.remove("blockHash");
            filter.insert("fromBlock".into(), Value::from(hex(from)));
            filter.insert("toBlock".into(), Value::from(hex(to)));
            Some(vec![call(
                "eth_getLogs",
                Value::from(vec![Value::Object(filter)]),
            )])
        }
    }
}

/// Fields a block has and a `newHeads` header does not (geth's `RPCMarshalBlock` adds
/// them to `RPCMarshalHeader`).
const BLOCK_ONLY: [&str; 5] = [
    "size",
    "totalDifficulty",
    "transactions",
    "uncles",
    "withdrawals",
];

/// The fields of geth's `newHeads` header, in its order (core/types `Header` JSON, as
/// `tests/fixtures/ethereum/newHeads_notification.json` has them).
const HEADER_ORDER: [&str; 22] = [
    "parentHash",
    "sha3Uncles",
    "miner",
    "stateRoot",
    "transactionsRoot",
    "receiptsRoot",
    "logsBloom",
    "difficulty",
    "number",
    "gasLimit",
    "gasUsed",
    "timestamp",
    "extraData",
    "mixHash",
    "nonce",
    "baseFeePerGas",
    "withdrawalsRoot",
    "blobGasUsed",
    "excessBlobGas",
    "parentBeaconBlockRoot",
    "requestsHash",
    "hash",
];

/// The items of an answer to one of [`calls`]: a block (as its header) or a list of logs;
/// `None` when the answer is not one (a `null` block: the node does not have it).
pub fn items(result: &str) -> Option<Vec<Item>> {
    let r = result.trim_start();
    if r.starts_with('{') {
        // Values stay the node's bytes; fields go in geth's header order (geth answers a
        // block with its fields sorted, a head in struct order), unknown ones after in the
        // node's order: a backfilled head reads as a live one.
        let mut block: Ordered = serde_json::from_str(r).ok()?;
        let rank = |k: &str| {
            (HEADER_ORDER.iter())
                .position(|h| *h == k)
                .unwrap_or(HEADER_ORDER.len())
        };
        block.0.sort_by_key(|(k, _)| rank(k));
        let mut text = String::with_capacity(r.len());
        text.push('{');
        for (k, v) in block
            .0
            .iter()
            .filter(|(k, _)| !BLOCK_ONLY.contains(&k.as_ref()))
        {
            if text.len() > 1 {
                text.push(',');
            }
            text.push_str(&serde_json::to_string(k).ok()?);
            text.push(':');
            text.push_str(v.get());
        }
        text.push('}');
        Some(vec![item(&text)?])
    } else if r.starts_with('[') {
        let logs: Vec<&RawValue> = serde_json::from_str(r).ok()?;
        logs.iter().map(|l| item(l.get())).collect()
    } else {
        None
    }
}

/// The [`Item`] a notification frame carries (`params.result`).
pub fn notification_item(frame: &str) -> Option<Item> {
    let result = crate::dialect::jsonrpc::notification_result::<&RawValue>(frame)?.get();
    read(result, false).or_else(|| {
        // A Solana notification (`{"context":{"slot":…},"value":…}`).
        let (slot, key, identity) = super::solana::identify(result)?;
        Some(Item {
            height: slot,
            index: 0,
            identity,
            block: 0,
            log: false,
            removed: false,
            key,
            result: Box::default(),
        })
    })
}

/// A block hash, hashed as [`Item::block`] holds it.
fn block_id(hash: &str) -> u64 {
    let mut h = DefaultHasher::new();
    hash.hash(&mut h);
    h.finish()
}

/// The call asking for the block at `height` (its hash tells whether the chain delivered
/// there is still the node's: a reorg check).
pub fn block_call(height: u64) -> Call {
    call(
        "eth_getBlockByNumber",
        Value::from(vec![Value::from(hex(height)), Value::Bool(false)]),
    )
}

/// The [`Item::block`] of the answer to [`block_call`] (`None`: no such block).
pub fn block_of(result: &str) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Block<'a> {
        #[serde(borrow)]
        hash: &'a str,
    }
    let b: Option<Block> = serde_json::from_str(result).ok()?;
    Some(block_id(b?.hash))
}

/// A delivered log notification's result, retracted: the same log with `removed: true`,
/// as geth sends the logs of blocks a reorg orphaned (core/types/log.go: "The Removed
/// field is true if this log was reverted due to a chain reorganisation"). Members keep
/// their order and bytes.
pub fn retracted(frame: &str) -> Option<String> {
    let result = crate::dialect::jsonrpc::notification_result::<&RawValue>(frame)?.get();
    let log: Ordered = serde_json::from_str(result).ok()?;
    let mut text = String::with_capacity(result.len() + 1);
    text.push('{');
    let mut seen = false;
    for (k, v) in &log.0 {
        if text.len() > 1 {
            text.push(',');
        }
        text.push_str(&serde_json::to_string(k).ok()?);
        text.push(':');
        if k == "removed" {
            seen = true;
            text.push_str("true");
        } else {
            text.push_str(v.get());
        }
    }
    if !seen {
        text.push_str(if text.len() > 1 {
            ",\"removed\":true"
        } else {
            "\"removed\":true"
        });
    }
    text.push('}');
    Some(text)
}

/// Read a notification result (a head or a log) as an [`Item`].
pub fn item(result: &str) -> Option<Item> {
    read(result, true)
}

fn read(result: &str, keep: bool) -> Option<Item> {
    #[derive(serde::Deserialize)]
    struct Fields<'a> {
        #[serde(borrow, default)]
        number: Option<&'a str>,
        #[serde(borrow, default)]
        hash: Option<&'a str>,
        #[serde(borrow, default, rename = "blockNumber")]
        block_number: Option<&'a str>,
        #[serde(borrow, default, rename = "blockHash")]
        block_hash: Option<&'a str>,
        #[serde(borrow, default, rename = "logIndex")]
        log_index: Option<&'a str>,
        #[serde(default)]
        removed: bool,
    }
    let num = |s: &str| u64::from_str_radix(s.strip_prefix("0x")?, 16).ok();
    let f: Fields = serde_json::from_str(result).ok()?;
    let mut h = DefaultHasher::new();
    let (height, index, block) = match (f.log_index, f.number) {
        (Some(i), _) => {
            (f.block_hash?, i, f.removed).hash(&mut h);
            (num(f.block_number?)?, num(i)?, f.block_hash?)
        }
        (None, Some(n)) => {
            f.hash?.hash(&mut h);
            (num(n)?, 0, f.hash?)
        }
        (None, None) => return None,
    };
    let is_log = f.log_index.is_some();
    Some(Item {
        height,
        index,
        identity: h.finish(),
        block: block_id(block),
        log: is_log && !f.removed,
        removed: is_log && f.removed,
        key: None,
        result: if keep { result.into() } else { Box::default() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::KeyFlags;

    fn key(params: &str) -> SubscriptionKey {
        SubscriptionKey::new("eth_subscribe", params, KeyFlags::default())
    }

    #[test]
    fn heads_are_fetched_per_height_and_logs_over_the_range_with_the_filter() {
        let c = calls(&key(r#"["newHeads"]"#), 5, 7).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(&*c[0].method, "eth_getBlockByNumber");
        assert_eq!(c[2].params.as_deref(), Some(r#"["0x7",false]"#));
        let c = calls(
            &key(r#"["logs",{"address":"0xab","topics":["0x1"]}]"#),
            16,
            32,
        )
        .unwrap();
        assert_eq!(&*c[0].method, "eth_getLogs");
        let p: Value = serde_json::from_str(c[0].params.as_deref().unwrap()).unwrap();
        assert_eq!(p[0]["address"], "0xab");
        assert_eq!(p[0]["topics"][0], "0x1");
        assert_eq!(
            (&p[0]["fromBlock"], &p[0]["toBlock"]),
            (&Value::from("0x10"), &Value::from("0x20"))
        );
        assert!(calls(&key(r#"["newPendingTransactions"]"#), 1, 2).is_none());
        assert_eq!(parse_head(r#""0x1f""#), Some(31));
    }

    #[test]
    fn a_block_becomes_its_header_and_logs_keep_their_identity() {
        let block = r#"{"number":"0x2","hash":"0xbb","size":"0x1","transactions":[],"uncles":[],"withdrawals":[]}"#;
        let i = items(block).unwrap();
        assert_eq!(
            &*i[0].result, r#"{"number":"0x2","hash":"0xbb"}"#,
            "order kept"
        );
        assert_eq!(i[0].height, 2);
        // geth answers a block with sorted fields: the head comes out in header order.
        let sorted = r#"{"hash":"0xbb","miner":"0x0","number":"0x2","parentHash":"0xaa","size":"0x1","x":1}"#;
        assert_eq!(
            &*items(sorted).unwrap()[0].result,
            r#"{"parentHash":"0xaa","miner":"0x0","number":"0x2","hash":"0xbb","x":1}"#
        );
        let logs = r#"[{"blockNumber":"0x3","blockHash":"0xcc","logIndex":"0x1","removed":false}]"#;
        let i = items(logs).unwrap();
        assert_eq!((i[0].height, i[0].index), (3, 1));
        let live = r#"{"params":{"result":{"blockNumber":"0x3","blockHash":"0xcc","logIndex":"0x1","removed":false}}}"#;
        let live = notification_item(live).unwrap();
        assert_eq!(
            live.identity, i[0].identity,
            "the same log, fetched or live"
        );
        assert!(live.result.is_empty(), "a live result is not copied");
        let removed =
            r#"[{"blockNumber":"0x3","blockHash":"0xcc","logIndex":"0x1","removed":true}]"#;
        assert_ne!(items(removed).unwrap()[0].identity, i[0].identity);
        assert_eq!(items("null"), None);
        assert_eq!(
            i[0].block,
            block_of(r#"{"hash":"0xcc","number":"0x3"}"#).unwrap()
        );
        assert!(i[0].log && !i[0].removed);
        assert_eq!(block_of("null"), None);
    }

    #[test]
    fn a_retracted_log_is_the_same_log_with_removed_true() {
        let frame = r#"{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"0x1","result":{"address":"0xab","blockNumber":"0x3","blockHash":"0xcc","logIndex":"0x1","removed":false}}}"#;
        assert_eq!(
            retracted(frame).unwrap(),
            r#"{"address":"0xab","blockNumber":"0x3","blockHash":"0xcc","logIndex":"0x1","removed":true}"#
        );
        let r = retracted(frame).unwrap();
        let i = item(&r).unwrap();
        assert!(i.removed && !i.log);
    }
}
