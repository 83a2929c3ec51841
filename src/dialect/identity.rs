//! What makes a notification one event, read from its content: hedged subscriptions
//! (`hedge = 2`) receive every event once per upstream connection and deliver the first
//! copy only. Pure: borrowed fields, no tree, no I/O.
//!
//! - Ethereum (geth's `eth_subscription`): `newHeads` by block hash; `logs` by
//!   (blockHash, logIndex, removed) — a log removed by a reorg is a new event —;
//!   `newPendingTransactions` by transaction hash (the hash, or the full transaction's).
//! - Solana (Agave's `*Notification`): slot and root streams by slot (`slotsUpdates` by
//!   slot and kind); account notifications by slot (the pubkey is the topic's own key);
//!   program notifications by (slot, pubkey); logs by (signature, slot); signatures by
//!   (slot, received or final); blocks by slot; votes by signature.
//! - XRPL (rippled's stream messages): `ledgerClosed` by ledger hash; transactions by
//!   (hash, validated, ledger); `bookChanges` by ledger; validations and manifests by
//!   signature. `serverStatus`, `consensusPhase` and `peerStatusChange` differ between
//!   nodes by nature: they have no identity and come from one connection at a time.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

/// One event's identity (hashed) and the height it sits at, if it has one (block number,
/// slot, ledger index): the dedupe window forgets by count and treats what lies below
/// the heights it forgot as already delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ident {
    pub id: u64,
    pub height: Option<u64>,
}

fn ident(parts: impl Hash, height: Option<u64>) -> Ident {
    let mut h = DefaultHasher::new();
    parts.hash(&mut h);
    Ident {
        id: h.finish(),
        height,
    }
}

fn hex(s: Option<&str>) -> Option<u64> {
    u64::from_str_radix(s?.strip_prefix("0x")?, 16).ok()
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(borrow, default)]
    method: Option<&'a str>,
    #[serde(borrow)]
    params: Params<'a>,
}

#[derive(Deserialize)]
struct Params<'a> {
    #[serde(borrow)]
    result: &'a RawValue,
}

/// An Ethereum `eth_subscription` notification's identity.
pub fn ethereum(text: &str) -> Option<Ident> {
    #[derive(Deserialize)]
    struct Result<'a> {
        #[serde(borrow, default)]
        hash: Option<&'a str>,
        #[serde(borrow, default)]
        number: Option<&'a str>,
        #[serde(borrow, default, rename = "blockHash")]
        block_hash: Option<&'a str>,
        #[serde(borrow, default, rename = "blockNumber")]
        block_number: Option<&'a str>,
        #[serde(borrow, default, rename = "logIndex")]
        log_index: Option<&'a str>,
        #[serde(default)]
        removed: bool,
    }
    let f: Frame = serde_json::from_str(text).ok()?;
    let r = f.params.result.get();
    if r.starts_with('"') {
        // newPendingTransactions: the hash itself.
        let hash: &str = serde_json::from_str(r).ok()?;
        return Some(ident(("tx", hash), None));
    }
    let r: Result = serde_json::from_str(r).ok()?;
    // Heads and logs hash exactly as `dialect::backfill` identifies them, so what a
    // backfill fetched is known to the dedupe window too.
    match (r.log_index, r.number) {
        (Some(i), _) => Some(ident((r.block_hash?, i, r.removed), hex(r.block_number))),
        (None, Some(n)) => Some(ident(r.hash?, hex(Some(n)))),
        // A full pending transaction (`newPendingTransactions` with `true`).
        (None, None) => Some(ident(("tx", r.hash?), None)),
    }
}

/// A Solana `*Notification`'s identity.
pub fn solana(text: &str) -> Option<Ident> {
    #[derive(Deserialize)]
    struct Context {
        slot: u64,
    }
    #[derive(Deserialize)]
    struct WithContext<'a> {
        context: Context,
        #[serde(borrow)]
        value: &'a RawValue,
    }
    #[derive(Deserialize)]
    struct Fields<'a> {
        #[serde(default)]
        slot: Option<u64>,
        #[serde(borrow, default, rename = "type")]
        kind: Option<&'a str>,
        #[serde(borrow, default)]
        pubkey: Option<&'a str>,
        #[serde(borrow, default)]
        signature: Option<&'a str>,
    }
    let f: Frame = serde_json::from_str(text).ok()?;
    let method = f.method?;
    let r = f.params.result.get();
    match method {
        "rootNotification" => {
            let slot: u64 = r.parse().ok()?;
            Some(ident(("root", slot), Some(slot)))
        }
        "slotNotification" | "slotsUpdatesNotification" => {
            let x: Fields = serde_json::from_str(r).ok()?;
            let slot = x.slot?;
            Some(ident((method, slot, x.kind), Some(slot)))
        }
        "voteNotification" => {
            let x: Fields = serde_json::from_str(r).ok()?;
            Some(ident(("vote", x.signature?), None))
        }
        _ => {
            let c: WithContext = serde_json::from_str(r).ok()?;
            let slot = c.context.slot;
            let v = c.value.get();
            let x = if v.starts_with('{') {
                serde_json::from_str::<Fields>(v).ok()?
            } else {
                Fields {
                    slot: None,
                    kind: None,
                    pubkey: None,
                    signature: None,
                }
            };
            match method {
                "accountNotification" | "blockNotification" => {
                    Some(ident((method, slot), Some(slot)))
                }
                "programNotification" => Some(ident((method, slot, x.pubkey?), Some(slot))),
                "logsNotification" => Some(ident((method, x.signature?, slot), Some(slot))),
                // `receivedSignature` (a string) or the final `{err}`.
                "signatureNotification" => {
                    Some(ident((method, slot, v.starts_with('"')), Some(slot)))
                }
                _ => None,
            }
        }
    }
}

/// An XRPL stream message's identity (`None`: the stream has none; see the module doc).
pub fn xrpl(text: &str) -> Option<Ident> {
    #[derive(Deserialize)]
    struct Msg<'a> {
        #[serde(borrow, rename = "type")]
        kind: &'a str,
        #[serde(borrow, default)]
        hash: Option<&'a str>,
        #[serde(borrow, default)]
        transaction: Option<Tx<'a>>,
        #[serde(default)]
        validated: bool,
        #[serde(default)]
        ledger_index: Option<u64>,
        #[serde(default)]
        ledger_current_index: Option<u64>,
        #[serde(borrow, default)]
        ledger_hash: Option<&'a str>,
        #[serde(borrow, default)]
        signature: Option<&'a str>,
    }
    #[derive(Deserialize)]
    struct Tx<'a> {
        #[serde(borrow, default)]
        hash: Option<&'a str>,
    }
    let m: Msg = serde_json::from_str(text).ok()?;
    match m.kind {
        "ledgerClosed" => Some(ident(("ledger", m.ledger_hash?), m.ledger_index)),
        "transaction" => {
            let hash = m.hash.or(m.transaction.and_then(|t| t.hash))?;
            // A proposed transaction re-proposed in a later open ledger is a new message.
            let ledger = m.ledger_index.or(m.ledger_current_index);
            Some(ident(("tx", hash, m.validated, ledger), ledger))
        }
        "bookChanges" => Some(ident(("books", m.ledger_index?), m.ledger_index)),
        "validationReceived" | "manifestReceived" => Some(ident((m.kind, m.signature?), None)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(result: &str) -> String {
        format!(
            r#"{{"jsonrpc":"2.0","method":"eth_subscription","params":{{"subscription":"0xab","result":{result}}}}}"#
        )
    }

    #[test]
    fn ethereum_heads_logs_and_transactions() {
        let head = |hash: &str, n: &str| {
            eth(&format!(
                r#"{{"number":"{n}","hash":"{hash}","parentHash":"0x0"}}"#
            ))
        };
        let a = ethereum(&head("0xaa", "0x10")).unwrap();
        assert_eq!(a.height, Some(16));
        // The same block under another subscription id is the same event.
        let other_sub = head("0xaa", "0x10").replace("0xab", "0xcd");
        assert_eq!(ethereum(&other_sub), Some(a));
        assert_ne!(
            ethereum(&head("0xbb", "0x10")).unwrap().id,
            a.id,
            "a sibling block"
        );
        let log = |removed: bool, idx: &str| {
            eth(&format!(
                r#"{{"address":"0x1","blockHash":"0xaa","blockNumber":"0x10","logIndex":"{idx}","removed":{removed}}}"#
            ))
        };
        let l = ethereum(&log(false, "0x0")).unwrap();
        assert_eq!(l.height, Some(16));
        assert_ne!(l.id, ethereum(&log(false, "0x1")).unwrap().id);
        assert_ne!(
            l.id,
            ethereum(&log(true, "0x0")).unwrap().id,
            "removed is a new event"
        );
        let tx = ethereum(&eth(r#""0xfeed""#)).unwrap();
        assert_eq!(tx.height, None);
        assert_eq!(
            ethereum(&eth(r#"{"hash":"0xfeed","nonce":"0x1"}"#))
                .unwrap()
                .id,
            tx.id
        );
        assert_eq!(ethereum(&eth(r#"{"syncing":true}"#)), None);
    }

    #[test]
    fn ethereum_identities_equal_the_backfills() {
        let head = eth(r#"{"number":"0x10","hash":"0xaa","parentHash":"0x0"}"#);
        let log = eth(
            r#"{"address":"0x1","blockHash":"0xaa","blockNumber":"0x10","logIndex":"0x2","removed":false}"#,
        );
        for frame in [head, log] {
            let live = crate::dialect::backfill::notification_item(&frame).unwrap();
            assert_eq!(ethereum(&frame).unwrap().id, live.identity, "{frame}");
        }
    }

    #[test]
    fn solana_streams() {
        let n = |m: &str, r: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","method":"{m}","params":{{"result":{r},"subscription":3}}}}"#
            )
        };
        let s = solana(&n(
            "slotNotification",
            r#"{"parent":74,"root":43,"slot":75}"#,
        ))
        .unwrap();
        assert_eq!(s.height, Some(75));
        assert_eq!(
            solana(&n("rootNotification", "42")).unwrap().height,
            Some(42)
        );
        let acct = |slot: u64, lamports: u64| {
            n(
                "accountNotification",
                &format!(r#"{{"context":{{"slot":{slot}}},"value":{{"lamports":{lamports}}}}}"#),
            )
        };
        assert_eq!(
            solana(&acct(5, 1)).unwrap().id,
            solana(&acct(5, 1)).unwrap().id
        );
        assert_ne!(
            solana(&acct(5, 1)).unwrap().id,
            solana(&acct(6, 1)).unwrap().id
        );
        let prog = |pk: &str| {
            n(
                "programNotification",
                &format!(
                    r#"{{"context":{{"slot":5}},"value":{{"pubkey":"{pk}","account":{{}}}}}}"#
                ),
            )
        };
        assert_ne!(
            solana(&prog("A")).unwrap().id,
            solana(&prog("B")).unwrap().id
        );
        let logs = n(
            "logsNotification",
            r#"{"context":{"slot":5},"value":{"signature":"sig","err":null,"logs":[]}}"#,
        );
        assert_eq!(solana(&logs).unwrap().height, Some(5));
        let received = n(
            "signatureNotification",
            r#"{"context":{"slot":5},"value":"receivedSignature"}"#,
        );
        let done = n(
            "signatureNotification",
            r#"{"context":{"slot":5},"value":{"err":null}}"#,
        );
        assert_ne!(solana(&received).unwrap().id, solana(&done).unwrap().id);
    }

    #[test]
    fn xrpl_messages() {
        let closed = r#"{"type":"ledgerClosed","ledger_hash":"AB","ledger_index":7,"txn_count":0}"#;
        assert_eq!(xrpl(closed).unwrap().height, Some(7));
        let tx = |validated: bool| {
            format!(
                r#"{{"type":"transaction","validated":{validated},"ledger_index":7,"hash":"H","tx_json":{{}}}}"#
            )
        };
        assert_ne!(xrpl(&tx(true)).unwrap().id, xrpl(&tx(false)).unwrap().id);
        let v1 = r#"{"type":"transaction","validated":true,"ledger_index":7,"transaction":{"hash":"H"}}"#;
        assert_eq!(
            xrpl(v1).unwrap().id,
            xrpl(&tx(true)).unwrap().id,
            "API v1 names the hash inside"
        );
        let books = r#"{"type":"bookChanges","ledger_index":7,"changes":[]}"#;
        assert!(xrpl(books).is_some());
        assert_eq!(xrpl(r#"{"type":"serverStatus","load_factor":256}"#), None);
    }
}
