//! Ethereum JSON-RPC over WebSocket, faithful to geth (wire rules and their geth sources: docs/ethereum.md).
//!
//! Subscriptions are canonicalised by meaning: `logs` addresses are decoded, lower-cased,
//! de-duplicated and sorted; topic positions treat `null`, `[]` and any array holding
//! `null` as a wildcard and keep their count (`[A]` differs from `[A,null]`); `true` is the
//! only value of the `newPendingTransactions` flag that changes the payload.

use super::jsonrpc::{self, Kind, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND};
use super::{
    Call, ClientFrame, ClientMsg, ClientSubId, Condition, Dialect, DialectKind, KeyFlags,
    RequestId, RpcError, SubscriptionKey, Transport, UpstreamFrame, UpstreamReqId, UpstreamSubId,
};
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// geth's default `BatchRequestLimit`.
pub const MAX_BATCH: usize = 1000;
/// geth's `maxTopics` (eth/filters/api.go).
const MAX_TOPICS: usize = 4;
/// geth's `maxSubTopics` (eth/filters/api.go).
const MAX_SUB_TOPICS: usize = 1000;

/// The Ethereum dialect. Stateless apart from configuration.
#[derive(Debug, Clone)]
pub struct Ethereum {
    max_batch: usize,
}

impl Default for Ethereum {
    fn default() -> Self {
        Self::new()
    }
}

impl Ethereum {
    pub fn new() -> Self {
        Ethereum {
            max_batch: MAX_BATCH,
        }
    }

    fn parse_message(&self, raw: &RawValue, transport: Transport) -> ClientMsg {
        match jsonrpc::classify(raw) {
            Kind::Call { id, method, env } => {
                self.parse_call(Some(id), method, env.params, transport)
            }
            Kind::Notification { method, env } => {
                // Served but never answered; a subscribe without id is pointless: drop it.
                match self.parse_call(None, method, env.params, transport) {
                    msg @ ClientMsg::Call { .. } => msg,
                    _ => ClientMsg::Ignore,
                }
            }
            // geth rpc/handler.go handleCallMsg: invalidRequestError{"invalid request"}.
            Kind::Invalid(id) => ClientMsg::Error {
                id,
                error: RpcError::new(INVALID_REQUEST, "invalid request"),
            },
            Kind::Response => ClientMsg::Ignore,
        }
    }

    fn parse_call(
        &self,
        id: Option<RequestId>,
        method: String,
        params: Option<&RawValue>,
        transport: Transport,
    ) -> ClientMsg {
        let err = |id: Option<RequestId>, error: RpcError| ClientMsg::Error {
            id: id.unwrap_or_else(RequestId::null),
            error,
        };
        if method.ends_with("_subscribe") {
            if transport == Transport::Http {
                // geth rpc/errors.go notificationsUnsupportedError (-32601), answered by
                // rpc/handler.go handleSubscribe when the transport cannot notify.
                return err(
                    id,
                    RpcError::new(METHOD_NOT_FOUND, "notifications not supported"),
                );
            }
            let namespace = method.split('_').next().unwrap_or_default();
            return match parse_subscribe(namespace, params) {
                Ok(key) => match id {
                    Some(id) => ClientMsg::subscribe(id, key),
                    None => ClientMsg::Ignore,
                },
                Err(e) => err(id, e),
            };
        }
        if method.ends_with("_unsubscribe") {
            return match parse_unsubscribe(params) {
                Ok(sub) => match id {
                    Some(id) => ClientMsg::Unsubscribe { id, sub },
                    None => ClientMsg::Ignore,
                },
                Err(e) => err(id, e),
            };
        }
        ClientMsg::Call {
            id,
            call: Call {
                method: method.into(),
                params: params.map(|p| p.get().into()),
                class: 0,
            },
        }
    }
}

fn invalid_params(msg: impl Into<String>) -> RpcError {
    RpcError::new(INVALID_PARAMS, msg)
}

/// The positional arguments of a params array (geth's parsePositionalArguments view).
fn positional(params: Option<&RawValue>) -> Result<Vec<&RawValue>, RpcError> {
    match params {
        None => Ok(Vec::new()),
        Some(p) if p.get() == "null" => Ok(Vec::new()),
        Some(p) => serde_json::from_str::<Vec<&RawValue>>(p.get())
            .map_err(|_| invalid_params("non-array args")),
    }
}

fn is_null(raw: &RawValue) -> bool {
    raw.get() == "null"
}

fn go_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn parse_subscribe(
    namespace: &str,
    params: Option<&RawValue>,
) -> Result<SubscriptionKey, RpcError> {
    let args = match params {
        Some(p) => serde_json::from_str::<Vec<&RawValue>>(p.get())
            .map_err(|_| invalid_params("non-array args"))?,
        None => return Err(invalid_params("non-array args")),
    };
    let name: String = args
        .first()
        .and_then(|a| serde_json::from_str(a.get()).ok())
        .ok_or_else(|| invalid_params("expected subscription name as first argument"))?;
    let not_found = || {
        RpcError::new(
            METHOD_NOT_FOUND,
            format!("no {name:?} subscription in {namespace} namespace"),
        )
    };
    if namespace != "eth" {
        return Err(not_found());
    }
    // (max positional args including the name, required count including the name)
    let (max_args, required) = match name.as_str() {
        "newHeads" | "syncing" => (1, 1),
        "logs" => (2, 2),
        "newPendingTransactions" | "transactionReceipts" => (2, 1),
        _ => return Err(not_found()),
    };
    if args.len() > max_args {
        return Err(invalid_params(format!(
            "too many arguments, want at most {max_args}"
        )));
    }
    for i in 1..required {
        // rpc/json.go parseArgumentArray: a JSON null decodes as the zero value and its
        // `argval.IsNil()` check never fires (argval is the fresh pointer), so only an
        // absent argument is missing.
        if args.get(i).is_none() {
            return Err(invalid_params(format!(
                "missing value for required argument {i}"
            )));
        }
    }
    let arg1 = args.get(1).copied().filter(|a| !is_null(a));
    let method = "eth_subscribe";
    let key = |params: String, flags| Ok(SubscriptionKey::new(method, params, flags));
    match name.as_str() {
        "newHeads" => key(
            "[\"newHeads\"]".into(),
            KeyFlags {
                steady: true,
                ..KeyFlags::default()
            },
        ),
        "syncing" => key(
            "[\"syncing\"]".into(),
            KeyFlags {
                replay_last: true,
                ..KeyFlags::default()
            },
        ),
        "newPendingTransactions" => {
            let full = match arg1 {
                None => false,
                Some(a) => serde_json::from_str::<bool>(a.get()).map_err(|_| {
                    let v: Value = serde_json::from_str(a.get()).unwrap_or(Value::Null);
                    invalid_params(format!(
                        "invalid argument 1: json: cannot unmarshal {} into Go value of type bool",
                        go_type_name(&v)
                    ))
                })?,
            };
            if full {
                key(
                    "[\"newPendingTransactions\",true]".into(),
                    KeyFlags::default(),
                )
            } else {
                key("[\"newPendingTransactions\"]".into(), KeyFlags::default())
            }
        }
        "logs" => {
            let filter = canonical_logs_filter(arg1.map(RawValue::get).unwrap_or("{}"))?;
            key(format!("[\"logs\",{filter}]"), KeyFlags::default())
        }
        "transactionReceipts" => match arg1 {
            None => key("[\"transactionReceipts\"]".into(), KeyFlags::default()),
            Some(a) => {
                let filter = canonical_receipts_filter(a.get())?;
                key(
                    format!("[\"transactionReceipts\",{filter}]"),
                    KeyFlags::default(),
                )
            }
        },
        _ => Err(not_found()),
    }
}

fn parse_unsubscribe(params: Option<&RawValue>) -> Result<ClientSubId, RpcError> {
    let args = positional(params)?;
    if args.len() > 1 {
        return Err(invalid_params("too many arguments, want at most 1"));
    }
    let Some(arg) = args.first() else {
        return Err(invalid_params("missing value for required argument 0"));
    };
    // A null id decodes as the zero rpc.ID, "", which names no subscription.
    if is_null(arg) {
        return Ok(ClientSubId("\"\"".into()));
    }
    let id: String = serde_json::from_str(arg.get()).map_err(|_| {
        let v: Value = serde_json::from_str(arg.get()).unwrap_or(Value::Null);
        invalid_params(format!(
            "invalid argument 0: json: cannot unmarshal {} into Go value of type rpc.ID",
            go_type_name(&v)
        ))
    })?;
    Ok(ClientSubId(
        serde_json::to_string(&id).unwrap_or_default().into(),
    ))
}

/// geth's hexutil.Decode error texts.
fn hex_decode(s: &str) -> Result<Vec<u8>, &'static str> {
    if s.is_empty() {
        return Err("empty hex string");
    }
    let Some(digits) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) else {
        return Err("hex string without 0x prefix");
    };
    if digits.len() % 2 == 1 {
        return Err("hex string of odd length");
    }
    let mut out = Vec::with_capacity(digits.len() / 2);
    let bytes = digits.as_bytes();
    for pair in bytes.chunks(2) {
        let hi = (pair[0] as char).to_digit(16).ok_or("invalid hex string")?;
        let lo = (pair[1] as char).to_digit(16).ok_or("invalid hex string")?;
        out.push((hi * 16 + lo) as u8);
    }
    Ok(out)
}

fn lower_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("0x");
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn decode_fixed(s: &str, len: usize, what: &str) -> Result<String, String> {
    let b = hex_decode(s).map_err(str::to_string)?;
    if b.len() != len {
        return Err(format!(
            "hex has invalid length {} after decoding; expected {len} for {what}",
            b.len()
        ));
    }
    Ok(lower_hex(&b))
}

fn arg1_error(reason: impl std::fmt::Display) -> RpcError {
    invalid_params(format!("invalid argument 1: {reason}"))
}

/// A block bound: `None` = unbounded (absent or "latest").
fn canonical_block(v: Option<&Value>) -> Result<Option<String>, RpcError> {
    let Some(v) = v else { return Ok(None) };
    match v {
        Value::Null => Ok(None),
        Value::String(s) => match s.as_str() {
            "latest" => Ok(None),
            "pending" => Err(invalid_params("pending logs are not supported")),
            "earliest" | "safe" | "finalized" => Ok(Some(format!("\"{s}\""))),
            hex => {
                let digits = hex
                    .strip_prefix("0x")
                    .or_else(|| hex.strip_prefix("0X"))
                    .ok_or_else(|| arg1_error("hex string without 0x prefix"))?;
                let n = u64::from_str_radix(digits, 16)
                    .map_err(|_| arg1_error("invalid hex string"))?;
                Ok(Some(format!("\"0x{n:x}\"")))
            }
        },
        Value::Number(n) => n
            .as_u64()
            .map(|n| Some(format!("\"0x{n:x}\"")))
            .ok_or_else(|| arg1_error("invalid block number")),
        _ => Err(arg1_error("invalid block number")),
    }
}

/// Canonical logs filter JSON: `{"address":[…],"fromBlock":…,"toBlock":…,"topics":[…]}`
/// with absent members omitted.
pub fn canonical_logs_filter(text: &str) -> Result<String, RpcError> {
    let v: Value = serde_json::from_str(text).map_err(arg1_error)?;
    let obj = match v {
        Value::Object(o) => o,
        // FilterCriteria.UnmarshalJSON (eth/filters/api.go) decodes into its local
        // `input` struct: Go's UnmarshalTypeError names that type.
        other => {
            return Err(arg1_error(format!(
                "json: cannot unmarshal {} into Go value of type filters.input",
                go_type_name(&other)
            )))
        }
    };
    // Address: string or array; set membership.
    let mut addresses = BTreeSet::new();
    match obj.get("address") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            addresses.insert(
                decode_fixed(s, 20, "address")
                    .map_err(|e| arg1_error(format!("invalid address: {e}")))?,
            );
        }
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                // geth eth/filters/api.go FilterCriteria.UnmarshalJSON.
                let Value::String(s) = item else {
                    return Err(arg1_error(format!("non-string address at index {i}")));
                };
                addresses.insert(
                    decode_fixed(s, 20, "address")
                        .map_err(|e| arg1_error(format!("invalid address at index {i}: {e}")))?,
                );
            }
        }
        Some(_) => return Err(arg1_error("invalid addresses in query")),
    }
    // Topics: positions of wildcard / OR-sets; the count of positions matters.
    let mut positions: Vec<Option<BTreeSet<String>>> = Vec::new();
    match obj.get("topics") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            if items.len() > MAX_TOPICS {
                return Err(arg1_error("exceed max topics"));
            }
            for item in items {
                let pos = match item {
                    Value::Null => None,
                    Value::String(s) => Some(BTreeSet::from([
                        decode_fixed(s, 32, "topic").map_err(arg1_error)?
                    ])),
                    Value::Array(alts) => {
                        // eth/filters/api.go maxSubTopics.
                        if alts.len() > MAX_SUB_TOPICS {
                            return Err(arg1_error("exceed max topics"));
                        }
                        let mut set = BTreeSet::new();
                        let mut wildcard = false;
                        for alt in alts {
                            match alt {
                                // geth stops at the first null: the position matches anything.
                                Value::Null => {
                                    wildcard = true;
                                    break;
                                }
                                Value::String(s) => {
                                    set.insert(decode_fixed(s, 32, "topic").map_err(arg1_error)?);
                                }
                                _ => return Err(arg1_error("invalid topic(s)")),
                            }
                        }
                        (!wildcard && !set.is_empty()).then_some(set)
                    }
                    _ => return Err(arg1_error("invalid topic(s)")),
                };
                positions.push(pos);
            }
        }
        // `Topics []interface{}` in FilterCriteria.UnmarshalJSON's `input`: Go's
        // UnmarshalTypeError for a struct field.
        Some(other) => {
            return Err(arg1_error(format!(
            "json: cannot unmarshal {} into Go struct field input.topics of type []interface {{}}",
            go_type_name(other)
        )))
        }
    }
    let from = canonical_block(obj.get("fromBlock"))?;
    let to = canonical_block(obj.get("toBlock"))?;

    let mut out = String::from("{");
    let mut sep = "";
    if !addresses.is_empty() {
        out.push_str("\"address\":[");
        for (i, a) in addresses.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "\"{a}\"");
        }
        out.push(']');
        sep = ",";
    }
    if let Some(f) = from {
        let _ = write!(out, "{sep}\"fromBlock\":{f}");
        sep = ",";
    }
    if let Some(t) = to {
        let _ = write!(out, "{sep}\"toBlock\":{t}");
        sep = ",";
    }
    if !positions.is_empty() {
        let _ = write!(out, "{sep}\"topics\":[");
        for (i, pos) in positions.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match pos {
                None => out.push_str("null"),
                Some(set) if set.len() == 1 => {
                    let _ = write!(out, "\"{}\"", set.iter().next().map_or("", |s| s));
                }
                Some(set) => {
                    out.push('[');
                    for (j, t) in set.iter().enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "\"{t}\"");
                    }
                    out.push(']');
                }
            }
        }
        out.push(']');
    }
    out.push('}');
    Ok(out)
}

/// Canonical `transactionReceipts` filter: sorted, lower-cased, de-duplicated hashes.
fn canonical_receipts_filter(text: &str) -> Result<String, RpcError> {
    let v: Value = serde_json::from_str(text).map_err(arg1_error)?;
    let hashes = match v.get("transactionHashes") {
        None | Some(Value::Null) => return Ok("{}".into()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(arg1_error("invalid transactionHashes")),
    };
    let mut set = BTreeSet::new();
    for h in hashes {
        let Value::String(s) = h else {
            return Err(arg1_error("invalid transaction hash"));
        };
        set.insert(decode_fixed(s, 32, "hash").map_err(arg1_error)?);
    }
    if set.is_empty() {
        return Ok("{}".into());
    }
    let list: Vec<String> = set.into_iter().map(|h| format!("\"{h}\"")).collect();
    Ok(format!("{{\"transactionHashes\":[{}]}}", list.join(",")))
}

/// geth's subscription id format: `0x` + lowercase hex of 16 random bytes, leading
/// zeros stripped (`0x0` for zero).
pub fn geth_id(n: u128) -> String {
    format!("0x{n:x}")
}

/// Calls that only read the chain (geth's `eth_`/`net_`/`web3_` getters): identical ones
/// in flight together are sent once. Anything that sends, signs, installs a filter or
/// touches node state is never merged. `eth_getLogs` comes first: the rest are also the
/// methods the call cache keeps ([`CACHED_READS`]).
const READS: &[&str] = &[
    "eth_getLogs",
    "eth_blockNumber",
    "eth_chainId",
    "net_version",
    "web3_clientVersion",
    "eth_syncing",
    "eth_gasPrice",
    "eth_maxPriorityFeePerGas",
    "eth_blobBaseFee",
    "eth_feeHistory",
    "eth_getBalance",
    "eth_getCode",
    "eth_getStorageAt",
    "eth_getTransactionCount",
    "eth_call",
    "eth_estimateGas",
    "eth_getBlockByNumber",
    "eth_getBlockByHash",
    "eth_getTransactionByHash",
    "eth_getTransactionReceipt",
    "eth_getProof",
];

/// The reads the call cache keeps and names in metrics: every merged read but
/// `eth_getLogs`.
pub(crate) const CACHED_READS: &[&str] = READS.split_at(1).1;

impl Dialect for Ethereum {
    fn coalesce_key(&self, call: &Call) -> Option<Box<str>> {
        super::read_call_key(call, READS)
    }

    fn cache_rules(&self) -> Option<&'static dyn super::cache::Rules> {
        Some(&super::cache::EthereumRules)
    }

    fn kind(&self) -> DialectKind {
        DialectKind::Ethereum
    }

    fn parse_client(&self, text: &str, transport: Transport) -> ClientFrame {
        match jsonrpc::parse_frame(text, self.max_batch, |raw| {
            self.parse_message(raw, transport)
        }) {
            // geth rpc/handler.go respondWithBatchTooLarge: a batch reply holding one
            // `invalidRequestError{errMsgBatchTooLarge}` ("batch too large", rpc/errors.go)
            // that carries the id of the batch's first call.
            ClientFrame::Invalid(RpcError::Std { message, .. }) if message == "batch too large" => {
                let first_call = serde_json::from_str::<Vec<&RawValue>>(text)
                    .unwrap_or_default()
                    .into_iter()
                    .find_map(|raw| match jsonrpc::classify(raw) {
                        Kind::Call { id, .. } => Some(id),
                        _ => None,
                    });
                ClientFrame::Batch(vec![ClientMsg::Error {
                    id: first_call.unwrap_or_else(RequestId::null),
                    error: RpcError::new(INVALID_REQUEST, "batch too large"),
                }])
            }
            other => other,
        }
    }

    fn mint_sub_id(&self) -> ClientSubId {
        ClientSubId(format!("\"{}\"", geth_id(fastrand::u128(..))).into())
    }

    fn render_subscribed(&self, id: &RequestId, sub: &ClientSubId) -> String {
        jsonrpc::render_result(id, sub.as_str())
    }

    fn render_unsubscribed(&self, id: &RequestId) -> String {
        jsonrpc::render_result(id, "true")
    }

    fn render_error(&self, id: &RequestId, error: &RpcError) -> String {
        jsonrpc::render_error(id, error)
    }

    fn render_batch(&self, parts: &[String]) -> String {
        jsonrpc::render_batch(parts)
    }

    fn render_upstream_subscribe(&self, keys: &[&SubscriptionKey], req: UpstreamReqId) -> String {
        let key = keys[0];
        jsonrpc::render_request(key.method(), Some(key.params()), Some(req))
    }

    fn render_upstream_unsubscribe(
        &self,
        items: &[(&SubscriptionKey, &UpstreamSubId)],
        req: UpstreamReqId,
    ) -> Option<String> {
        let (_, sub) = items[0];
        let params = format!("[{}]", sub.0);
        Some(jsonrpc::render_request(
            "eth_unsubscribe",
            Some(&params),
            Some(req),
        ))
    }

    fn render_upstream_call(&self, call: &Call, req: Option<UpstreamReqId>) -> String {
        jsonrpc::render_request(&call.method, call.params.as_deref(), req)
    }

    fn parse_upstream(&self, text: &str) -> UpstreamFrame {
        jsonrpc::parse_upstream(text, |m| m.ends_with("_subscription"), |_, _| false)
    }

    fn parse_subscribe_result(
        &self,
        _key: &SubscriptionKey,
        result: &str,
    ) -> Option<UpstreamSubId> {
        let r = result.trim();
        (r.starts_with('"') && r.len() >= 2).then(|| UpstreamSubId(r.into()))
    }

    fn identity(&self, text: &str) -> Option<super::identity::Ident> {
        super::identity::ethereum(text)
    }

    fn height(&self, text: &str) -> Option<u64> {
        hex_u64(notified_heights(text)?.0?)
    }

    fn backfills(&self, key: &SubscriptionKey) -> bool {
        super::backfill::supported(key)
    }

    fn render_notification(
        &self,
        sub: &str,
        result: &str,
    ) -> Option<(String, std::ops::Range<usize>)> {
        // geth's notification envelope (rpc/subscription.go), byte for byte.
        let head = r#"{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"#;
        let frame = format!(r#"{head}{sub},"result":{result}}}}}"#);
        Some((frame, head.len()..head.len() + sub.len()))
    }

    fn history_height(&self, text: &str) -> Option<u64> {
        // A head's `number`, or a log's `blockNumber`.
        let (number, block_number) = notified_heights(text)?;
        hex_u64(number.or(block_number)?)
    }

    fn render_gap(
        &self,
        sub: &ClientSubId,
        from: Option<u64>,
        to: Option<u64>,
    ) -> Option<(String, std::ops::Range<usize>)> {
        let hex = |h: Option<u64>| h.map_or_else(|| "null".into(), |n| format!("\"0x{n:x}\""));
        let template = format!(
            r#"{{"jsonrpc":"2.0","method":"submux_gap","params":{{"subscription":{{ID}},"result":{{"fromBlock":{},"toBlock":{},"reason":"upstream connection replaced; blocks in this range may have been missed"}}}}}}"#,
            hex(from),
            hex(to)
        );
        Some(super::with_id(&template, sub.as_str()))
    }

    fn error_for(&self, cond: Condition) -> RpcError {
        match cond {
            // geth rpc/errors.go: `errcodeTimeout` -32002, `errMsgTimeout` "request timed
            // out" (what geth itself answers when a call outlives its request timeout).
            Condition::UpstreamTimeout => RpcError::new(-32002, "request timed out"),
            // geth rpc/subscription.go `ErrSubscriptionNotFound` ("subscription not
            // found"), a plain error: rpc/json.go errorMessage gives it `errcodeDefault`.
            cond => jsonrpc::condition_error(
                cond,
                RpcError::new(jsonrpc::SERVER_ERROR, "subscription not found"),
            ),
        }
    }
}

/// A notification's `result.number` and `result.blockNumber`, read from borrowed fields
/// only: no tree, no allocation; everything else is skipped.
fn notified_heights(text: &str) -> Option<(Option<&str>, Option<&str>)> {
    #[derive(serde::Deserialize)]
    struct Item<'a> {
        #[serde(borrow, default)]
        number: Option<&'a str>,
        #[serde(borrow, default, rename = "blockNumber")]
        block_number: Option<&'a str>,
    }
    let r: Item = jsonrpc::notification_result(text)?;
    Some((r.number, r.block_number))
}

fn hex_u64(s: &str) -> Option<u64> {
    u64::from_str_radix(s.strip_prefix("0x")?, 16).ok()
}

#[cfg(test)]
mod tests {

    /// Identical reads share a key whatever the member order; sends get none; numbers JSON
    /// may not carry exactly keep their raw text.
    #[test]
    fn coalesce_keys() {
        let key = |method: &str, params: &str| {
            Ethereum::new().coalesce_key(&Call {
                method: method.into(),
                params: Some(params.into()),
                class: 0,
            })
        };
        let a = key("eth_call", r#"[{"to":"0x01","data":"0x02"},"latest"]"#);
        let b = key("eth_call", r#"[ {"data":"0x02", "to":"0x01"}, "latest" ]"#);
        assert!(a.is_some() && a == b, "{a:?} {b:?}");
        assert_ne!(
            a,
            key("eth_call", r#"[{"to":"0x01","data":"0x02"},"pending"]"#)
        );
        assert_ne!(
            a,
            key(
                "eth_estimateGas",
                r#"[{"to":"0x01","data":"0x02"},"latest"]"#
            )
        );
        assert_eq!(key("eth_sendRawTransaction", r#"["0x01"]"#), None);
        assert_eq!(key("eth_newFilter", r#"[{}]"#), None);
        assert_ne!(key("eth_call", "[1.0]"), key("eth_call", "[1]"));
        assert_ne!(
            key("eth_call", "[18446744073709551616]"),
            key("eth_call", "[18446744073709551617]")
        );
    }
    use super::*;

    fn eth() -> Ethereum {
        Ethereum::new()
    }

    fn single(text: &str) -> ClientMsg {
        match eth().parse_client(text, Transport::WebSocket) {
            ClientFrame::Single(m) => m,
            other => panic!("{other:?}"),
        }
    }

    fn key_of(params: &str) -> Result<SubscriptionKey, RpcError> {
        match single(&format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":{params}}}"#
        )) {
            ClientMsg::Subscribe { mut keys, .. } if keys.len() == 1 => Ok(keys.remove(0)),
            ClientMsg::Error { error, .. } => Err(error),
            other => panic!("{other:?}"),
        }
    }

    fn render(msg: &ClientMsg) -> Option<String> {
        match msg {
            ClientMsg::Error { id, error } => Some(eth().render_error(id, error)),
            _ => None,
        }
    }

    /// Every error exchange in the fixtures is reproduced byte-for-byte (after JSON
    /// normalisation); every success exchange parses into the right kind of message.
    #[test]
    fn fixture_exchanges() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/ethereum/exchanges.json"
        );
        let Ok(text) = std::fs::read_to_string(path) else {
            // Recorded samples live in tests/fixtures (provenance in its README).
            panic!("missing fixture file {path}");
        };
        let cases: Vec<Value> = serde_json::from_str(&text).unwrap();
        for case in cases {
            let note = case["note"].as_str().unwrap();
            let req = serde_json::to_string(&case["request"]).unwrap();
            let transport = if note.contains("HTTP") {
                Transport::Http
            } else {
                Transport::WebSocket
            };
            let expected = &case["response"];
            let frame = eth().parse_client(&req, transport);
            match frame {
                ClientFrame::Invalid(e) => {
                    let got: Value =
                        serde_json::from_str(&eth().render_error(&RequestId::null(), &e)).unwrap();
                    assert_eq!(&got, expected, "{note}");
                }
                ClientFrame::Single(msg) => {
                    if expected.get("error").is_some() && !note.starts_with("unsubscribe") {
                        let got: Value = serde_json::from_str(&render(&msg).unwrap()).unwrap();
                        assert_eq!(&got, expected, "{note}");
                    } else if note.starts_with("unsubscribe") {
                        assert!(matches!(msg, ClientMsg::Unsubscribe { .. }), "{note}");
                    } else {
                        assert!(matches!(msg, ClientMsg::Subscribe { .. }), "{note}");
                    }
                }
                ClientFrame::Batch(msgs) => {
                    assert_eq!(msgs.len(), expected.as_array().unwrap().len(), "{note}");
                    assert!(matches!(msgs[0], ClientMsg::Subscribe { .. }));
                    assert!(matches!(msgs[1], ClientMsg::Call { .. }));
                }
            }
        }
    }

    #[test]
    fn notification_fixtures_parse_with_exact_id_range() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ethereum");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if !name.ends_with("_notification.json") {
                continue;
            }
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let text = serde_json::to_string(&v).unwrap();
            match eth().parse_upstream(&text) {
                UpstreamFrame::Notification {
                    targets,
                    id_range: Some(id_range),
                    is_final,
                    ..
                } => {
                    let sub = &targets[0].0;
                    assert_eq!(&text[id_range.clone()], &*sub.0, "{name}");
                    assert_eq!(
                        serde_json::from_str::<Value>(&sub.0).unwrap(),
                        v["params"]["subscription"]
                    );
                    assert!(!is_final);
                    // Splicing a client id keeps everything else byte-identical.
                    let spliced = crate::dialect::splice(&text, id_range, "\"0xabc\"");
                    let mut w: Value = serde_json::from_str(&spliced).unwrap();
                    w["params"]["subscription"] = v["params"]["subscription"].clone();
                    assert_eq!(w, v, "{name}");
                }
                other => panic!("{name}: {other:?}"),
            }
            seen += 1;
        }
        assert!(seen >= 6, "expected the notification fixtures, saw {seen}");
    }

    #[test]
    fn logs_canonicalisation_by_meaning() {
        let a = "0x0000000000000000000000000000000000031EC7";
        let b = "0x00000000000000000000000000000000000000aa";
        let t = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";
        let u = "0x0000000000000000000000000000000000000000000000000000000000000003";
        let k = |f: String| key_of(&format!(r#"["logs",{f}]"#)).unwrap();
        // address: case, order, duplicates, string vs one-element array
        assert_eq!(
            k(format!(r#"{{"address":["{a}","{b}"]}}"#)),
            k(format!(
                r#"{{"address":["{b}","{}","{a}"]}}"#,
                a.to_lowercase()
            ))
        );
        assert_eq!(
            k(format!(r#"{{"address":"{a}"}}"#)),
            k(format!(r#"{{"address":["{}"]}}"#, a.to_lowercase()))
        );
        // empty address list and absent address; empty topics and absent topics
        assert_eq!(k(r#"{"address":[],"topics":[]}"#.into()), k("{}".into()));
        // wildcards: null, [] and arrays containing null are the same
        let w1 = k(format!(r#"{{"topics":["{t}",null]}}"#));
        let w2 = k(format!(r#"{{"topics":["{t}",[]]}}"#));
        let w3 = k(format!(r#"{{"topics":["{t}",["{u}",null]]}}"#));
        assert_eq!(w1, w2);
        assert_eq!(w1, w3);
        // but position count matters: [A] != [A,null]
        assert_ne!(k(format!(r#"{{"topics":["{t}"]}}"#)), w1);
        // OR-sets are unordered; a one-element set equals the bare topic
        assert_eq!(
            k(format!(r#"{{"topics":[["{t}","{u}"]]}}"#)),
            k(format!(
                r#"{{"topics":[["{u}","{}"]]}}"#,
                t.to_uppercase().replace("0X", "0x")
            ))
        );
        assert_eq!(
            k(format!(r#"{{"topics":[["{t}"]]}}"#)),
            k(format!(r#"{{"topics":["{t}"]}}"#))
        );
        // block bounds are kept; latest is unbounded
        assert_ne!(k(r#"{"fromBlock":"0x10"}"#.into()), k("{}".into()));
        assert_eq!(
            k(r#"{"fromBlock":"0x010"}"#.into()),
            k(r#"{"fromBlock":"0x10"}"#.into())
        );
        assert_eq!(k(r#"{"toBlock":"latest"}"#.into()), k("{}".into()));
        // unknown members are ignored, as geth does
        assert_eq!(k(r#"{"foo":1}"#.into()), k("{}".into()));
        // the canonical text is what goes upstream
        assert_eq!(
            k(format!(r#"{{"topics":["{t}",null],"address":"{a}"}}"#)).params(),
            format!(
                r#"["logs",{{"address":["{}"],"topics":["{t}",null]}}]"#,
                a.to_lowercase()
            )
        );
    }

    #[test]
    fn subscription_kinds_and_flags() {
        assert_eq!(
            key_of(r#"["newPendingTransactions"]"#).unwrap(),
            key_of(r#"["newPendingTransactions",false]"#).unwrap()
        );
        assert_eq!(
            key_of(r#"["newPendingTransactions",null]"#).unwrap(),
            key_of(r#"["newPendingTransactions"]"#).unwrap()
        );
        assert_ne!(
            key_of(r#"["newPendingTransactions",true]"#).unwrap(),
            key_of(r#"["newPendingTransactions"]"#).unwrap()
        );
        assert!(key_of(r#"["syncing"]"#).unwrap().flags().replay_last);
        assert!(!key_of(r#"["newHeads"]"#).unwrap().flags().replay_last);
        assert_eq!(
            key_of(r#"["transactionReceipts",{"transactionHashes":[]}]"#).unwrap(),
            key_of(r#"["transactionReceipts",{}]"#).unwrap()
        );
    }

    #[test]
    fn geth_error_texts() {
        let e = |p: &str| key_of(p).unwrap_err();
        assert_eq!(e(r#"{}"#), invalid_params("non-array args"));
        assert_eq!(
            e("[]"),
            invalid_params("expected subscription name as first argument")
        );
        assert_eq!(
            e("[1]"),
            invalid_params("expected subscription name as first argument")
        );
        // geth decodes a null filter as the zero FilterCriteria: every log.
        assert_eq!(
            key_of(r#"["logs",null]"#).unwrap(),
            key_of(r#"["logs",{}]"#).unwrap()
        );
        assert_eq!(
            e(r#"["logs",{"address":[7]}]"#),
            invalid_params("invalid argument 1: non-string address at index 0")
        );
        assert_eq!(
            e(r#"["logs","x"]"#),
            invalid_params(
                "invalid argument 1: json: cannot unmarshal string into Go value of type filters.input"
            )
        );
        assert_eq!(
            e(r#"["logs",{"topics":"x"}]"#),
            invalid_params("invalid argument 1: json: cannot unmarshal string into Go struct field input.topics of type []interface {}")
        );
        assert_eq!(
            e(r#"["newPendingTransactions",true,1]"#),
            invalid_params("too many arguments, want at most 2")
        );
        assert_eq!(
            e(r#"["newPendingTransactions","yes"]"#),
            invalid_params(
                "invalid argument 1: json: cannot unmarshal string into Go value of type bool"
            )
        );
        assert_eq!(
            e(r#"["logs",{"address":"0x12"}]"#),
            invalid_params(
                "invalid argument 1: invalid address: hex has invalid length 1 after decoding; expected 20 for address"
            )
        );
        assert_eq!(
            e(r#"["logs",{"topics":[7]}]"#),
            invalid_params("invalid argument 1: invalid topic(s)")
        );
        assert_eq!(
            e(r#"["logs",{"toBlock":"pending"}]"#),
            invalid_params("pending logs are not supported")
        );
        let other_ns =
            single(r#"{"jsonrpc":"2.0","id":1,"method":"foo_subscribe","params":["newHeads"]}"#);
        assert_eq!(
            render(&other_ns).unwrap(),
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no \"newHeads\" subscription in foo namespace"}}"#
        );
    }

    #[test]
    fn unsubscribe_parsing() {
        let m =
            single(r#"{"jsonrpc":"2.0","id":"u","method":"eth_unsubscribe","params":["0xab"]}"#);
        match m {
            ClientMsg::Unsubscribe { id, sub } => {
                assert_eq!(id.as_str(), "\"u\"");
                assert_eq!(sub.as_str(), "\"0xab\"");
            }
            other => panic!("{other:?}"),
        }
        let m = single(r#"{"jsonrpc":"2.0","id":1,"method":"eth_unsubscribe","params":[5]}"#);
        assert_eq!(
            render(&m).unwrap(),
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"invalid argument 0: json: cannot unmarshal number into Go value of type rpc.ID"}}"#
        );
        let m = single(r#"{"jsonrpc":"2.0","id":1,"method":"eth_unsubscribe"}"#);
        assert_eq!(
            render(&m).unwrap(),
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"missing value for required argument 0"}}"#
        );
    }

    #[test]
    fn calls_keep_raw_params_and_ids() {
        let m = single(
            r#"{"jsonrpc":"2.0","id":"abc","method":"eth_getBalance","params":["0xAB", "latest"]}"#,
        );
        match m {
            ClientMsg::Call { id, call } => {
                assert_eq!(id.unwrap().as_str(), "\"abc\"");
                assert_eq!(call.params.as_deref(), Some(r#"["0xAB", "latest"]"#));
                assert_eq!(
                    eth().render_upstream_call(&call, Some(UpstreamReqId(9))),
                    r#"{"jsonrpc":"2.0","id":9,"method":"eth_getBalance","params":["0xAB", "latest"]}"#
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn invalid_json_and_batches() {
        assert!(matches!(
            eth().parse_client("{\"jsonrpc\":", Transport::WebSocket),
            ClientFrame::Invalid(RpcError::Std { code: -32700, .. })
        ));
        match eth().parse_client(
            r#"[1,{"jsonrpc":"2.0","id":2,"method":"eth_chainId"}]"#,
            Transport::WebSocket,
        ) {
            ClientFrame::Batch(msgs) => {
                assert_eq!(
                    render(&msgs[0]).unwrap(),
                    r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request"}}"#
                );
                assert!(matches!(msgs[1], ClientMsg::Call { .. }));
            }
            other => panic!("{other:?}"),
        }
        let big = format!(
            "[{}]",
            vec![r#"{"jsonrpc":"2.0","id":1,"method":"m"}"#; MAX_BATCH + 1].join(",")
        );
        // geth answers a batch of one error carrying the first call's id.
        match eth().parse_client(&big, Transport::WebSocket) {
            ClientFrame::Batch(msgs) => {
                assert_eq!(msgs.len(), 1);
                assert_eq!(
                    render(&msgs[0]).unwrap(),
                    r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32600,"message":"batch too large"}}"#
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn minted_ids_have_geth_format() {
        assert_eq!(geth_id(0), "0x0");
        assert_eq!(geth_id(0xab), "0xab");
        for _ in 0..100 {
            let id = eth().mint_sub_id();
            let s: String = serde_json::from_str(id.as_str()).unwrap();
            assert!(s.starts_with("0x"));
            let digits = &s[2..];
            assert!(digits.len() <= 32 && !digits.is_empty());
            assert!(digits == "0" || !digits.starts_with('0'));
            assert!(digits
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        }
    }

    #[test]
    fn history_height_reads_heads_and_logs() {
        let d = Ethereum::new();
        let head = r#"{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"0x1","result":{"number":"0x1b4","hash":"0x01"}}}"#;
        assert_eq!(d.history_height(head), Some(0x1b4));
        let log = r#"{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"0x1","result":{"blockNumber":"0x10","logIndex":"0x0"}}}"#;
        assert_eq!(d.history_height(log), Some(0x10));
        let tx = r#"{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"0x1","result":"0xabc"}}"#;
        assert_eq!(d.history_height(tx), None);
    }

    #[test]
    fn height_reads_the_head_number_only() {
        let d = Ethereum::new();
        let head = r#"{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"0x1","result":{"parentHash":"0xab","logs":[{"number":"0x9"}],"number":"0x1b4","extra":{"a":[1,2]}}}}"#;
        assert_eq!(d.height(head), Some(0x1b4));
        let log = r#"{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"0x1","result":{"address":"0x1"}}}"#;
        assert_eq!(d.height(log), None);
        assert_eq!(d.height(r#"{"params":{"result":false}}"#), None);
        assert_eq!(d.height(r#"{"params":{"result":{"number":"12"}}}"#), None);
        assert_eq!(d.height("not json"), None);
    }
}
