//! Pure cache rules: how long a call's answer stays true, which calls read at `latest`,
//! and which are answered from the route's followed head. The route core
//! (`hub/core/cache/`) keeps the answers; this module only decides, from the call and the
//! answer's text. No I/O, no clock.
//!
//! Lifetimes (issue 15):
//! - **forever**: blocks by hash, transactions and receipts once their block is final;
//! - **connection**: `eth_chainId`, `net_version`, `web3_clientVersion` — true for as long
//!   as calls go to the same upstream connection (a backup may be another client build);
//! - **head**: anything read at `latest`/`pending` or without a block tag, gas prices, fee
//!   history: true until the route's followed head moves;
//! - **never**: everything else — sends, signs, filters, subscriptions, admin and debug
//!   namespaces, and every error.

use super::{Call, ClientFrame, ClientMsg, Dialect, SubscriptionKey, Transport};
use serde_json::Value;

/// How long an answer may be served again without asking the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    Never,
    /// Until the followed head moves.
    Head,
    /// Until the upstream connection calls go to changes.
    Connection,
    Forever,
}

/// What the cache does with one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheRule {
    /// The longest the answer can live; [`Rules::settle`] may shorten it once it is known.
    pub lifetime: Lifetime,
    /// The call reads state at the head (`latest`, `pending`, no tag): a client that has
    /// seen head N must not get it from a node that is behind N.
    pub latest: bool,
    /// Answered from the followed head itself, without a node (`eth_blockNumber`).
    pub from_head: bool,
}

impl CacheRule {
    pub const NEVER: CacheRule = CacheRule {
        lifetime: Lifetime::Never,
        latest: false,
        from_head: false,
    };
    const fn head(latest: bool) -> CacheRule {
        CacheRule {
            lifetime: Lifetime::Head,
            latest,
            from_head: false,
        }
    }
}

/// Blocks below the followed head after which a transaction's or receipt's block counts
/// as final (two Ethereum epochs: finality is reached after about 64 slots).
pub const ETH_FINAL_DEPTH: u64 = 64;

/// One dialect's cache rules.
pub trait Rules: Send + Sync + 'static {
    /// The call's rule, from the call alone.
    fn rule(&self, call: &Call) -> CacheRule;
    /// The lifetime of this answer (`result`: the result's JSON text) given the followed
    /// head: `rule.lifetime` or shorter (an unknown transaction may appear next block).
    fn settle(&self, method: &str, rule: CacheRule, result: &str, head: Option<u64>) -> Lifetime;
    /// The subscribe request (a client's own text) whose stream the route follows.
    fn head_request(&self) -> Option<&'static str>;
    /// A `from_head` call's result at `head` (JSON text), as the node renders it; the
    /// core puts it in the envelope of the node's own last answer to that call, so the
    /// whole answer is the node's bytes (field order and all).
    fn head_result(&self, head: u64) -> String;
    /// The head a `from_head` call's upstream answer names (to learn a connection's head).
    fn answered_head(&self, result: &str) -> Option<u64>;
    /// The call that asks a node for its head (sent on a new connection).
    fn head_probe(&self) -> Call;
    /// The error object (raw JSON) a call at `latest` gets when the upstream stayed behind
    /// head `head`, which clients already saw, for longer than `latest_wait_ms`.
    fn behind_error(&self, head: u64) -> String;
    /// The methods metrics name (a bounded label set); others are counted as `other`.
    fn methods(&self) -> &'static [&'static str];
}

/// The subscription key of a client's subscribe `request` in `dialect` (the key a
/// client's own identical subscribe shares).
pub fn subscribe_key(dialect: &dyn Dialect, request: &str) -> Option<SubscriptionKey> {
    match dialect.parse_client(request, Transport::WebSocket) {
        ClientFrame::Single(ClientMsg::Subscribe { mut keys, .. }) if keys.len() == 1 => keys.pop(),
        _ => None,
    }
}

/// The metric label of `method`: itself when `known`, else `other`.
pub fn method_label(method: &str, known: &'static [&'static str]) -> &'static str {
    known
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other")
}

/// Ethereum (geth's `eth_`/`net_`/`web3_` getters).
pub struct EthereumRules;

/// Every method the Ethereum rules cache (and name in metrics).
const ETH_METHODS: &[&str] = super::ethereum::CACHED_READS;

/// Whether a block tag reads at the head: absent, `latest` or `pending`. (`safe`,
/// `finalized`, `earliest`, numbers and EIP-1898 objects name a block of their own.)
fn at_latest(tag: Option<&Value>) -> bool {
    match tag {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s == "latest" || s == "pending",
        Some(_) => false,
    }
}

/// A `0x` quantity.
fn quantity(s: &str) -> Option<u64> {
    u64::from_str_radix(s.strip_prefix("0x")?, 16).ok()
}

impl Rules for EthereumRules {
    fn rule(&self, call: &Call) -> CacheRule {
        // Positional params only (geth's): a params object is not a cacheable read.
        let params: Vec<Value> = match call.params.as_deref() {
            None => Vec::new(),
            Some(raw) => match serde_json::from_str::<Value>(raw) {
                Ok(Value::Array(a)) => a,
                Ok(Value::Null) => Vec::new(),
                _ => return CacheRule::NEVER,
            },
        };
        let tag = |i: usize| CacheRule::head(at_latest(params.get(i)));
        match &*call.method {
            "eth_chainId" | "net_version" | "web3_clientVersion" => CacheRule {
                lifetime: Lifetime::Connection,
                latest: false,
                from_head: false,
            },
            "eth_blockNumber" if params.is_empty() => CacheRule {
                lifetime: Lifetime::Head,
                latest: true,
                from_head: true,
            },
            "eth_gasPrice" | "eth_maxPriorityFeePerGas" | "eth_blobBaseFee" | "eth_syncing" => {
                CacheRule::head(false)
            }
            "eth_getBlockByNumber" => tag(0),
            "eth_getBalance"
            | "eth_getCode"
            | "eth_getTransactionCount"
            | "eth_call"
            | "eth_estimateGas"
            | "eth_feeHistory" => tag(1),
            "eth_getStorageAt" | "eth_getProof" => tag(2),
            "eth_getBlockByHash" | "eth_getTransactionByHash" | "eth_getTransactionReceipt" => {
                CacheRule {
                    lifetime: Lifetime::Forever,
                    latest: false,
                    from_head: false,
                }
            }
            _ => CacheRule::NEVER,
        }
    }

    fn settle(&self, method: &str, rule: CacheRule, result: &str, head: Option<u64>) -> Lifetime {
        if rule.lifetime != Lifetime::Forever {
            return rule.lifetime;
        }
        // Not (yet) known to the node: it may be there at the next head.
        if result.trim() == "null" {
            return Lifetime::Head;
        }
        match method {
            // A block hash commits to the block's whole content.
            "eth_getBlockByHash" => Lifetime::Forever,
            // Mined at `blockNumber` (null while pending): forever once that block is final.
            _ => {
                #[derive(serde::Deserialize)]
                struct Mined<'a> {
                    #[serde(borrow, rename = "blockNumber")]
                    block_number: Option<&'a str>,
                }
                let mined = serde_json::from_str::<Mined>(result).ok();
                let block = mined.and_then(|m| quantity(m.block_number?));
                match (block, head) {
                    (Some(b), Some(h)) if h >= b.saturating_add(ETH_FINAL_DEPTH) => {
                        Lifetime::Forever
                    }
                    _ => Lifetime::Head,
                }
            }
        }
    }

    fn head_request(&self) -> Option<&'static str> {
        Some(r#"{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}"#)
    }

    fn head_result(&self, head: u64) -> String {
        // A quantity: `0x` + lowercase hex without leading zeros (geth common/hexutil
        // EncodeUint64; anvil and ganache answer the same).
        format!("\"0x{head:x}\"")
    }

    fn answered_head(&self, result: &str) -> Option<u64> {
        quantity(serde_json::from_str::<&str>(result).ok()?)
    }

    fn head_probe(&self) -> Call {
        Call {
            method: "eth_blockNumber".into(),
            params: Some("[]".into()),
            class: 0,
        }
    }

    fn methods(&self) -> &'static [&'static str] {
        ETH_METHODS
    }

    fn behind_error(&self, head: u64) -> String {
        // -32000: geth's default server error code (rpc/errors.go `errcodeDefault`).
        format!(
            "{{\"code\":-32000,\"message\":\"upstream node is behind block 0x{head:x}, which this route already delivered; try again\"}}"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::DialectKind;

    fn call(method: &str, params: &str) -> Call {
        Call {
            method: method.into(),
            params: (!params.is_empty()).then(|| params.into()),
            class: 0,
        }
    }
    fn life(method: &str, params: &str) -> Lifetime {
        EthereumRules.rule(&call(method, params)).lifetime
    }

    #[test]
    fn ethereum_lifetimes_per_kind() {
        for m in ["eth_chainId", "net_version", "web3_clientVersion"] {
            assert_eq!(life(m, "[]"), Lifetime::Connection, "{m}");
        }
        for (m, p) in [
            ("eth_getBalance", r#"["0xab","latest"]"#),
            ("eth_getBalance", r#"["0xab"]"#),
            ("eth_call", r#"[{"to":"0x1","data":"0x"},"pending"]"#),
            ("eth_getCode", r#"["0xab","latest"]"#),
            ("eth_getTransactionCount", r#"["0xab","latest"]"#),
            ("eth_estimateGas", r#"[{"to":"0x1"}]"#),
            ("eth_gasPrice", ""),
            ("eth_feeHistory", r#"["0x4","latest",[25,75]]"#),
            ("eth_blockNumber", "[]"),
        ] {
            assert_eq!(life(m, p), Lifetime::Head, "{m} {p}");
        }
        for (m, p) in [
            ("eth_getBlockByHash", r#"["0x01",false]"#),
            ("eth_getTransactionByHash", r#"["0x01"]"#),
            ("eth_getTransactionReceipt", r#"["0x01"]"#),
        ] {
            assert_eq!(life(m, p), Lifetime::Forever, "{m}");
        }
        for (m, p) in [
            ("eth_sendRawTransaction", r#"["0x00"]"#),
            ("eth_sendTransaction", r#"[{}]"#),
            ("eth_sign", r#"["0x1","0x2"]"#),
            ("eth_signTypedData_v4", r#"["0x1",{}]"#),
            ("personal_sign", r#"["0x1","0x2"]"#),
            ("eth_newFilter", r#"[{}]"#),
            ("eth_getFilterChanges", r#"["0x1"]"#),
            ("eth_subscribe", r#"["newHeads"]"#),
            ("admin_peers", ""),
            ("debug_traceTransaction", r#"["0x1"]"#),
            ("eth_getLogs", r#"[{}]"#),
            ("eth_getBalance", r#"{"a":1}"#),
            ("eth_blockNumber", r#"["x"]"#),
        ] {
            assert_eq!(life(m, p), Lifetime::Never, "{m} {p}");
        }
    }

    #[test]
    fn latest_is_the_head_tag_or_none() {
        let latest = |m: &str, p: &str| EthereumRules.rule(&call(m, p)).latest;
        assert!(latest("eth_getBalance", r#"["0xab"]"#));
        assert!(latest("eth_getBalance", r#"["0xab","latest"]"#));
        assert!(latest("eth_getBalance", r#"["0xab","pending"]"#));
        assert!(!latest("eth_getBalance", r#"["0xab","0x10"]"#));
        assert!(!latest("eth_getBalance", r#"["0xab","finalized"]"#));
        assert!(!latest("eth_getBalance", r#"["0xab",{"blockHash":"0x1"}]"#));
        assert!(latest("eth_getStorageAt", r#"["0xab","0x0"]"#));
        assert!(!latest("eth_getStorageAt", r#"["0xab","0x0","0x5"]"#));
        assert!(latest("eth_blockNumber", ""));
        assert!(!latest("eth_chainId", ""));
        assert!(!latest("eth_gasPrice", ""));
        let head = EthereumRules.rule(&call("eth_blockNumber", "[]"));
        assert!(head.from_head);
        assert!(!EthereumRules.rule(&call("eth_getBalance", "[]")).from_head);
    }

    #[test]
    fn settled_lifetimes_follow_the_answer() {
        let settle = |m: &str, result: &str, head: Option<u64>| {
            let c = call(m, r#"["0x01"]"#);
            EthereumRules.settle(m, EthereumRules.rule(&c), result, head)
        };
        // Unknown yet: valid for this head only.
        assert_eq!(
            settle("eth_getTransactionReceipt", "null", Some(100)),
            Lifetime::Head
        );
        assert_eq!(
            settle("eth_getBlockByHash", "null", Some(100)),
            Lifetime::Head
        );
        assert_eq!(
            settle("eth_getBlockByHash", r#"{"number":"0x1"}"#, None),
            Lifetime::Forever
        );
        // Mined, final once 64 blocks deep.
        let receipt = r#"{"blockNumber":"0x10","status":"0x1"}"#;
        assert_eq!(
            settle("eth_getTransactionReceipt", receipt, Some(0x10 + 63)),
            Lifetime::Head
        );
        assert_eq!(
            settle("eth_getTransactionReceipt", receipt, Some(0x10 + 64)),
            Lifetime::Forever
        );
        assert_eq!(
            settle("eth_getTransactionReceipt", receipt, None),
            Lifetime::Head
        );
        // Pending transaction.
        let pending = r#"{"blockNumber":null,"hash":"0x01"}"#;
        assert_eq!(
            settle("eth_getTransactionByHash", pending, Some(1000)),
            Lifetime::Head
        );
        // Other lifetimes are what the rule says.
        let c = call("eth_getBalance", r#"["0xab"]"#);
        let r = EthereumRules.rule(&c);
        assert_eq!(
            EthereumRules.settle("eth_getBalance", r, "\"0x1\"", Some(5)),
            Lifetime::Head
        );
    }

    #[test]
    fn head_result_is_a_quantity_and_reads_back() {
        assert_eq!(EthereumRules.head_result(0x1b4), "\"0x1b4\"");
        assert_eq!(EthereumRules.head_result(0), "\"0x0\"");
        assert_eq!(EthereumRules.answered_head("\"0x1b4\""), Some(0x1b4));
        assert_eq!(EthereumRules.answered_head("\"0x0\""), Some(0));
        assert_eq!(EthereumRules.answered_head("12"), None);
    }

    #[test]
    fn followed_head_is_the_clients_new_heads_key() {
        let eth = DialectKind::Ethereum.build().expect("ethereum");
        let rules = eth.cache_rules().expect("rules");
        let key = subscribe_key(&*eth, rules.head_request().expect("a head")).expect("a key");
        let client = r#"{"id":"x","jsonrpc":"2.0","method":"eth_subscribe","params":["newHeads"]}"#;
        assert_eq!(subscribe_key(&*eth, client), Some(key.clone()));
        assert!(key.flags().steady);
    }

    #[test]
    fn labels_are_bounded() {
        assert_eq!(method_label("eth_call", ETH_METHODS), "eth_call");
        assert_eq!(method_label("eth_foo", ETH_METHODS), "other");
        // The merged reads but eth_getLogs (which the cache does not keep).
        assert_eq!(ETH_METHODS.len(), 20);
        assert_eq!(method_label("eth_getLogs", ETH_METHODS), "other");
    }
}
