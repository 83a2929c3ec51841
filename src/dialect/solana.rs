//! Solana (Agave) PubSub, faithful to the validator (wire rules and their Agave sources: docs/solana.md).
//!
//! Canonical keys fill in the node's defaults (commitment `finalized`, account encoding
//! `binary`, block encoding `base64` / details `full` / rewards off, …) so requests that
//! mean the same share one upstream subscription, and keep apart everything that changes
//! the payload bytes (encoding, dataSlice, filters, withContext, …). `minContextSlot` is
//! ignored, as the node ignores it.

use super::agave_params;
use super::jsonrpc::{self, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR};
use super::{
    Call, ClientFrame, ClientMsg, ClientSubId, Condition, Dialect, DialectKind, KeyFlags,
    RequestId, RpcError, SubscriptionKey, Transport, UpstreamFrame, UpstreamReqId, UpstreamSubId,
};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Agave's pubsub reads frames of at most this size.
pub const MAX_BATCH: usize = 1000;

/// The Solana dialect. Its only state is the id counter (ids are unique per process,
/// hence per connection, and stay below 2^53 for JavaScript).
#[derive(Debug, Default)]
pub struct Solana {
    next_id: AtomicU64,
}

impl Solana {
    pub fn new() -> Self {
        Solana::default()
    }

    /// One element of a frame, as jsonrpc-core reads it (`core/src/types/request.rs`: the
    /// untagged `Call` = `MethodCall` | `Notification` | `Invalid { id }`, each struct
    /// `deny_unknown_fields` but `Invalid`). `None`: the element is not even an `Invalid`
    /// (its id is no `Id`), which fails the whole frame's parse.
    fn parse_message(&self, raw: &RawValue, transport: Transport) -> Option<ClientMsg> {
        let Ok(map) = serde_json::from_str::<Map<String, Value>>(raw.get()) else {
            return None;
        };
        // core/src/types/version.rs: only "2.0" (or an absent/null member: `Option`).
        let version_ok = matches!(map.get("jsonrpc"), None | Some(Value::Null))
            || map.get("jsonrpc").and_then(Value::as_str) == Some("2.0");
        let method = map.get("method").and_then(Value::as_str);
        // core/src/types/params.rs: `Params` is null, an array or an object.
        let params_ok = matches!(
            map.get("params"),
            None | Some(Value::Null | Value::Array(_) | Value::Object(_))
        );
        let id = map.get("id").map(jsonrpc_core_id);
        let only = |allowed: &[&str]| map.keys().all(|k| allowed.contains(&k.as_str()));
        let call_ok = version_ok && method.is_some() && params_ok;
        let (id, method) = match (id, method) {
            (Some(Some(id)), Some(method))
                if call_ok && only(&["jsonrpc", "method", "params", "id"]) =>
            {
                (id, method)
            }
            // A notification (no id) is served, never answered (web3.js `ping`).
            (None, _) if call_ok && only(&["jsonrpc", "method", "params"]) => {
                return Some(ClientMsg::Ignore)
            }
            // `Call::Invalid { id }` (id defaults to null): core/src/io.rs
            // `Output::invalid_request` → ErrorCode::InvalidRequest "Invalid request".
            (None, _) => return Some(invalid_request_msg(RequestId::null())),
            (Some(Some(id)), _) => return Some(invalid_request_msg(id)),
            (Some(None), _) => return None,
        };
        // core/src/io.rs handle_call: `Compatibility::V2` (Agave's `IoHandler::new()`)
        // refuses a call without "jsonrpc" with `Error::invalid_version()` and echoes the
        // request's (absent) version: the answer has no "jsonrpc" member.
        if matches!(map.get("jsonrpc"), None | Some(Value::Null)) {
            return Some(ClientMsg::Reply(format!(
                r#"{{"error":{{"code":{INVALID_REQUEST},"message":"Unsupported JSON-RPC protocol version"}},"id":{}}}"#,
                id.as_str()
            )));
        }
        let params = match map.get("params") {
            None | Some(Value::Null) => agave_params::Params::None,
            Some(Value::Array(a)) => agave_params::Params::Array(a.clone()),
            Some(Value::Object(m)) => agave_params::Params::Map(m.clone()),
            Some(_) => agave_params::Params::None,
        };
        let err = |error| {
            Some(ClientMsg::Error {
                id: id.clone(),
                error,
            })
        };
        // jsonrpc-core core/src/types/error.rs: ErrorCode::MethodNotFound "Method not found".
        let not_found = || RpcError::new(METHOD_NOT_FOUND, "Method not found");
        if let Some(kind) = method.strip_suffix("Unsubscribe") {
            if !KINDS.contains(&kind) {
                return err(not_found());
            }
            return match agave_params::check_unsubscribe(params) {
                Ok(n) => Some(ClientMsg::Unsubscribe {
                    id,
                    sub: ClientSubId(n.to_string().into()),
                }),
                Err(e) => err(e),
            };
        }
        if let Some(kind) = method.strip_suffix("Subscribe") {
            // Agave's HTTP RPC has no subscribe methods: jsonrpc-core's "Method not found".
            if !KINDS.contains(&kind) || transport == Transport::Http {
                return err(not_found());
            }
            let args = match &params {
                agave_params::Params::Array(a) => a.clone(),
                _ => Vec::new(),
            };
            if let Err(e) = agave_params::check_subscribe(kind, params) {
                return err(e);
            }
            return match canonical(kind, &args) {
                Ok(params) => Some(ClientMsg::subscribe(
                    id,
                    SubscriptionKey::new(
                        method,
                        params,
                        KeyFlags {
                            steady: matches!(method, "slotSubscribe" | "rootSubscribe"),
                            ..KeyFlags::default()
                        },
                    ),
                )),
                Err(e) => err(e),
            };
        }
        Some(ClientMsg::Call {
            id: Some(id),
            call: Call {
                method: method.into(),
                params: map.get("params").map(|p| p.to_string().into()),
                class: 0,
            },
        })
    }
}

/// jsonrpc-core `core/src/types/id.rs`: an `Id` is null, a u64 or a string; anything else
/// (`1.5`, `-1`, `true`, objects) is no id at all. The id as jsonrpc-core writes it back.
fn jsonrpc_core_id(v: &Value) -> Option<RequestId> {
    match v {
        Value::Null => Some(RequestId::null()),
        Value::Number(n) => n.as_u64().map(|n| RequestId(n.to_string().into())),
        Value::String(_) => Some(RequestId(v.to_string().into())),
        _ => None,
    }
}

/// jsonrpc-core `core/src/types/error.rs` `ErrorCode::InvalidRequest` description.
fn invalid_request_msg(id: RequestId) -> ClientMsg {
    ClientMsg::Error {
        id,
        error: RpcError::new(INVALID_REQUEST, "Invalid request"),
    }
}

/// Subscription kinds (`<kind>Subscribe` / `<kind>Unsubscribe`).
const KINDS: [&str; 9] = [
    "account",
    "block",
    "logs",
    "program",
    "root",
    "signature",
    "slot",
    "slotsUpdates",
    "vote",
];

/// Agave `rpc/src/rpc_pubsub.rs`: the method bodies' own `-32602` texts
/// (`param::<T>()`: "Invalid Request: Invalid {thing} provided", and "Only 1 address
/// supported" for logs mentions).
fn invalid_request(what: &str) -> RpcError {
    RpcError::new(INVALID_PARAMS, format!("Invalid Request: {what}"))
}

/// Decode base58 (Bitcoin alphabet); `None` on a bad character.
pub fn base58_decode(s: &str) -> Option<Vec<u8>> {
    super::base58::decode(s, super::base58::BITCOIN)
}

fn decoded_len(s: &str) -> Option<usize> {
    (s.len() <= 128)
        .then(|| base58_decode(s).map(|b| b.len()))
        .flatten()
}

fn is_pubkey(s: &str) -> bool {
    decoded_len(s) == Some(32)
}

fn is_signature(s: &str) -> bool {
    decoded_len(s) == Some(64)
}

/// Commitment with Agave's legacy aliases; absent → `finalized`. Never an error: the node's
/// configs flatten an `Option<CommitmentConfig>`, which serde reads as `None` when it does
/// not parse (see `agave_params`), so anything else means the default too.
fn commitment(cfg: &Map<String, Value>) -> &'static str {
    match cfg.get("commitment").and_then(Value::as_str) {
        Some("processed" | "recent") => "processed",
        Some("confirmed" | "single" | "singleGossip") => "confirmed",
        _ => "finalized",
    }
}

/// The config object (already checked by `agave_params::check_subscribe`).
fn config_object(v: Option<&Value>) -> Map<String, Value> {
    match v {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    }
}

fn encoding(cfg: &Map<String, Value>, default: &'static str) -> String {
    cfg.get("encoding")
        .and_then(Value::as_str)
        .unwrap_or(default)
        .to_string()
}

fn data_slice(cfg: &Map<String, Value>) -> Option<String> {
    let m = cfg.get("dataSlice")?.as_object()?;
    let n = |k: &str| m.get(k).and_then(Value::as_u64);
    Some(format!(
        "{{\"offset\":{},\"length\":{}}}",
        n("offset")?,
        n("length")?
    ))
}

/// jsonrpc-core's `ErrorCode::InvalidParams` description (`core/src/types/error.rs`), for
/// shapes `agave_params::check_subscribe` has already refused: never reached.
fn unreachable_params() -> RpcError {
    RpcError::new(INVALID_PARAMS, "Invalid params")
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Writes `[pubkey,{"commitment":…,"encoding":…[,"dataSlice":…]` (object left open) for
/// account and program subscriptions; returns their config for the caller's extras.
fn account_prefix(out: &mut String, args: &[Value]) -> Result<Map<String, Value>, RpcError> {
    let pk = args.first().and_then(Value::as_str).unwrap_or_default();
    if !is_pubkey(pk) {
        return Err(invalid_request("Invalid pubkey provided"));
    }
    let cfg = config_object(args.get(1));
    let _ = write!(
        out,
        "[{},{{\"commitment\":\"{}\",\"encoding\":{}",
        quoted(pk),
        commitment(&cfg),
        quoted(&encoding(&cfg, "binary"))
    );
    if let Some(ds) = data_slice(&cfg) {
        let _ = write!(out, ",\"dataSlice\":{ds}");
    }
    Ok(cfg)
}

/// Canonical params (JSON array text) for a `<kind>Subscribe` whose arguments
/// `agave_params::check_subscribe` has accepted; the errors left are the method bodies'
/// (Agave `rpc/src/rpc_pubsub.rs`), in the order the node checks them.
fn canonical(kind: &str, args: &[Value]) -> Result<String, RpcError> {
    let mut out = String::with_capacity(128);
    match kind {
        "slot" | "slotsUpdates" | "root" | "vote" => out.push_str("[]"),
        "account" => {
            account_prefix(&mut out, args)?;
            out.push_str("}]");
        }
        "program" => {
            let cfg = account_prefix(&mut out, args)?;
            match cfg.get("filters") {
                Some(Value::Array(f)) if !f.is_empty() => {
                    let _ = write!(out, ",\"filters\":{}", Value::Array(f.clone()));
                }
                _ => {}
            }
            if cfg.get("withContext").and_then(Value::as_bool) == Some(true) {
                out.push_str(",\"withContext\":true");
            }
            out.push_str("}]");
        }
        "logs" => {
            let filter = match args.first() {
                Some(Value::String(s)) if s == "all" || s == "allWithVotes" => quoted(s),
                Some(Value::Object(m)) => {
                    let list = m
                        .get("mentions")
                        .and_then(Value::as_array)
                        .ok_or_else(unreachable_params)?;
                    if list.len() != 1 {
                        return Err(invalid_request("Only 1 address supported"));
                    }
                    match list[0].as_str() {
                        Some(pk) if is_pubkey(pk) => format!("{{\"mentions\":[{}]}}", quoted(pk)),
                        _ => return Err(invalid_request("Invalid mentions provided")),
                    }
                }
                _ => return Err(unreachable_params()),
            };
            let cfg = config_object(args.get(1));
            let _ = write!(
                out,
                "[{filter},{{\"commitment\":\"{}\"}}]",
                commitment(&cfg)
            );
        }
        "signature" => {
            let sig = args.first().and_then(Value::as_str).unwrap_or_default();
            if !is_signature(sig) {
                return Err(invalid_request("Invalid signature provided"));
            }
            let cfg = config_object(args.get(1));
            let received = cfg
                .get("enableReceivedNotification")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let _ = write!(
                out,
                "[{},{{\"commitment\":\"{}\",\"enableReceivedNotification\":{received}}}]",
                quoted(sig),
                commitment(&cfg)
            );
        }
        "block" => {
            // block_subscribe checks the commitment before the filter's key.
            let cfg = config_object(args.get(1));
            let c = commitment(&cfg);
            if c == "processed" {
                // Agave rpc/src/rpc.rs check_is_at_least_confirmed.
                return Err(RpcError::new(
                    INVALID_PARAMS,
                    "Method does not support commitment below `confirmed`",
                ));
            }
            let filter = match args.first() {
                Some(Value::String(s)) if s == "all" => quoted(s),
                Some(Value::Object(m)) => {
                    match m.get("mentionsAccountOrProgram").and_then(Value::as_str) {
                        Some(pk) if is_pubkey(pk) => {
                            format!("{{\"mentionsAccountOrProgram\":{}}}", quoted(pk))
                        }
                        _ => {
                            return Err(invalid_request(
                                "Invalid mentions_account_or_program provided",
                            ))
                        }
                    }
                }
                _ => return Err(unreachable_params()),
            };
            let details = cfg
                .get("transactionDetails")
                .and_then(Value::as_str)
                .unwrap_or("full");
            let rewards = cfg
                .get("showRewards")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let _ = write!(
                out,
                "[{filter},{{\"commitment\":\"{c}\",\"encoding\":{},\"transactionDetails\":{},\"showRewards\":{rewards}",
                quoted(&encoding(&cfg, "base64")),
                quoted(details)
            );
            if let Some(v) = cfg
                .get("maxSupportedTransactionVersion")
                .and_then(Value::as_u64)
            {
                let _ = write!(out, ",\"maxSupportedTransactionVersion\":{v}");
            }
            out.push_str("}]");
        }
        _ => return Err(RpcError::new(METHOD_NOT_FOUND, "Method not found")),
    }
    Ok(out)
}

/// jsonrpc-core's member order: `{"jsonrpc":"2.0","result":…,"id":…}`.
fn render_result(id: &RequestId, result: &str) -> String {
    let mut s = String::with_capacity(40 + id.0.len() + result.len());
    s.push_str("{\"jsonrpc\":\"2.0\",\"result\":");
    s.push_str(result);
    s.push_str(",\"id\":");
    s.push_str(&id.0);
    s.push('}');
    s
}

fn render_error(id: &RequestId, error: &RpcError) -> String {
    let body = match error {
        RpcError::Std {
            code,
            message,
            data,
        } => {
            let mut b = format!("{{\"code\":{code},\"message\":{}", quoted(message));
            if let Some(d) = data {
                let _ = write!(b, ",\"data\":{d}");
            }
            b.push('}');
            b
        }
        RpcError::Raw(raw) => raw.clone(),
    };
    format!("{{\"jsonrpc\":\"2.0\",\"error\":{body},\"id\":{}}}", id.0)
}

/// Calls that only read (Agave's `get*` methods): identical ones in flight together are
/// sent once. `sendTransaction`, `requestAirdrop` and `simulateTransaction` never are.
const READS: &[&str] = &[
    "getSlot",
    "getBlockHeight",
    "getBalance",
    "getAccountInfo",
    "getMultipleAccounts",
    "getLatestBlockhash",
    "getGenesisHash",
    "getVersion",
    "getEpochInfo",
    "getHealth",
    "getSignatureStatuses",
    "getTransaction",
    "getTokenAccountBalance",
    "getTokenAccountsByOwner",
    "getMinimumBalanceForRentExemption",
    "getFeeForMessage",
    "getRecentPrioritizationFees",
];

impl Dialect for Solana {
    fn coalesce_key(&self, call: &Call) -> Option<Box<str>> {
        super::read_call_key(call, READS)
    }

    fn kind(&self) -> DialectKind {
        DialectKind::Solana
    }

    /// jsonrpc-core `core/src/io.rs` `handle_request`: the frame must deserialize as a
    /// `Request` (one `Call` or an array of them), or the answer is
    /// `ErrorCode::ParseError` "Parse error" with id null.
    fn parse_client(&self, text: &str, transport: Transport) -> ClientFrame {
        let parse_error = || ClientFrame::Invalid(RpcError::new(PARSE_ERROR, "Parse error"));
        let Ok(raw) = serde_json::from_str::<&RawValue>(text) else {
            return parse_error();
        };
        let top = raw.get();
        if top.starts_with('{') {
            return match self.parse_message(raw, transport) {
                Some(msg) => ClientFrame::Single(msg),
                None => parse_error(),
            };
        }
        if !top.starts_with('[') {
            return parse_error();
        }
        let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(top) else {
            return parse_error();
        };
        // `Request::Single` is tried first, and a struct variant reads a sequence too:
        // `[]` is `Call::Invalid { id: null }`, and `[x]` with x an `Id` is
        // `Call::Invalid { id: x }`, both answered "Invalid request".
        match items.as_slice() {
            [] => return ClientFrame::Single(invalid_request_msg(RequestId::null())),
            [one] if !one.get().starts_with('{') => {
                return match serde_json::from_str::<Value>(one.get())
                    .ok()
                    .as_ref()
                    .and_then(jsonrpc_core_id)
                {
                    Some(id) => ClientFrame::Single(invalid_request_msg(id)),
                    None => parse_error(),
                }
            }
            _ => {}
        }
        if items.len() > MAX_BATCH {
            // submux's own limit (the node has none; its 4 KiB frames bound a batch), in
            // jsonrpc-core's frame-level shape and words.
            return ClientFrame::Invalid(RpcError::new(INVALID_REQUEST, "Invalid request"));
        }
        let mut msgs = Vec::with_capacity(items.len());
        for item in items {
            match self.parse_message(item, transport) {
                Some(msg) => msgs.push(msg),
                // One element that is not even a `Call` fails the whole batch's parse.
                None => return parse_error(),
            }
        }
        ClientFrame::Batch(msgs)
    }

    fn mint_sub_id(&self) -> ClientSubId {
        ClientSubId(
            self.next_id
                .fetch_add(1, Ordering::Relaxed)
                .to_string()
                .into(),
        )
    }

    fn render_subscribed(&self, id: &RequestId, sub: &ClientSubId) -> String {
        render_result(id, sub.as_str())
    }

    fn render_unsubscribed(&self, id: &RequestId) -> String {
        render_result(id, "true")
    }

    fn render_error(&self, id: &RequestId, error: &RpcError) -> String {
        render_error(id, error)
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
        let (key, sub) = items[0];
        let method = key.method().replace("Subscribe", "Unsubscribe");
        let params = format!("[{}]", sub.0);
        Some(jsonrpc::render_request(&method, Some(&params), Some(req)))
    }

    fn render_upstream_call(&self, call: &Call, req: Option<UpstreamReqId>) -> String {
        jsonrpc::render_request(&call.method, call.params.as_deref(), req)
    }

    /// Agave normalises params and keeps one id per identical subscription, so the same
    /// subscribe twice on one connection returns the same id and holds one slot
    /// (agave: rpc/src/rpc_subscription_tracker.rs, `SubscriptionControl::subscribe`).
    fn same_params_same_id(&self) -> bool {
        true
    }

    fn calls_over_websocket(&self) -> bool {
        false
    }

    fn parse_upstream(&self, text: &str) -> UpstreamFrame {
        jsonrpc::parse_upstream(
            text,
            |m| m.ends_with("Notification"),
            |method, result| method == "signatureNotification" && !is_received(result),
        )
    }

    fn parse_subscribe_result(
        &self,
        _key: &SubscriptionKey,
        result: &str,
    ) -> Option<UpstreamSubId> {
        let r = result.trim();
        (!r.is_empty() && r.bytes().all(|b| b.is_ascii_digit())).then(|| UpstreamSubId(r.into()))
    }

    fn identity(&self, text: &str) -> Option<super::identity::Ident> {
        super::identity::solana(text)
    }

    fn backfills(&self, key: &SubscriptionKey) -> bool {
        super::backfill::solana::supported(key)
    }

    fn backfill_over_http(&self) -> bool {
        true
    }

    fn height(&self, text: &str) -> Option<u64> {
        // Borrowed fields only: the result stays raw text until its slot is read.
        #[derive(serde::Deserialize)]
        struct Slot {
            #[serde(default)]
            slot: Option<u64>,
        }
        let r = jsonrpc::notification_result::<&RawValue>(text)?.get();
        if r.starts_with('{') {
            serde_json::from_str::<Slot>(r).ok()?.slot
        } else {
            r.parse().ok() // rootNotification: the slot itself
        }
    }

    /// Backfilled `logsSubscribe` results (the only ones rendered here; the others are
    /// pushed as the node's own frames): Agave's envelope, result before subscription.
    fn render_notification(
        &self,
        sub: &str,
        result: &str,
    ) -> Option<(String, std::ops::Range<usize>)> {
        let (_, _, _) = super::backfill::solana::identify(result)?;
        let template = format!(
            r#"{{"jsonrpc":"2.0","method":"logsNotification","params":{{"result":{result},"subscription":{{ID}}}}}}"#
        );
        Some(super::with_id(&template, sub))
    }

    fn render_gap(
        &self,
        sub: &ClientSubId,
        from: Option<u64>,
        to: Option<u64>,
    ) -> Option<(String, std::ops::Range<usize>)> {
        let template = format!(
            r#"{{"jsonrpc":"2.0","method":"submuxGapNotification","params":{{"result":{{"fromSlot":{},"toSlot":{},"reason":"upstream connection replaced; slots in this range may have been missed"}},"subscription":{{ID}}}}}}"#,
            super::opt_num(from),
            super::opt_num(to)
        );
        Some(super::with_id(&template, sub.as_str()))
    }

    fn error_for(&self, cond: Condition) -> RpcError {
        jsonrpc::condition_error(
            cond,
            RpcError::new(INVALID_PARAMS, "Invalid subscription id."),
        )
    }
}

/// Whether a signatureNotification result is the non-final "receivedSignature".
fn is_received(result: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct R<'a> {
        #[serde(borrow)]
        value: Option<&'a RawValue>,
    }
    serde_json::from_str::<R<'_>>(result)
        .ok()
        .and_then(|r| r.value)
        .is_some_and(|v| v.get() == "\"receivedSignature\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sol() -> Solana {
        Solana::new()
    }

    fn single(text: &str) -> ClientMsg {
        match sol().parse_client(text, Transport::WebSocket) {
            ClientFrame::Single(m) => m,
            other => panic!("{other:?}"),
        }
    }

    fn key(method: &str, params: &str) -> Result<SubscriptionKey, RpcError> {
        match single(&format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}"#
        )) {
            ClientMsg::Subscribe { mut keys, .. } if keys.len() == 1 => Ok(keys.remove(0)),
            ClientMsg::Error { error, .. } => Err(error),
            other => panic!("{other:?}"),
        }
    }

    const PK: &str = "CM78CPUeXjn8o3yroDHxUtKsZZgoy4GPkPPXfouKNH12";
    const SIG: &str =
        "2EBVM6cB8vAAD93Ktr6Vd8p67XPbQzCJX47MpReuiCXJAtcjaxpvWpcg9Ege1Nr5Tk3a2GFrByT7WPBjdsTycY9b";

    #[test]
    fn fixture_exchanges() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/solana/exchanges.json"
        );
        let cases: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(path).expect(path)).unwrap();
        for case in cases {
            let note = case["note"].as_str().unwrap();
            let req = serde_json::to_string(&case["request"]).unwrap();
            let expected = &case["response"];
            let msg = match sol().parse_client(&req, Transport::WebSocket) {
                ClientFrame::Single(m) => m,
                ClientFrame::Invalid(error) => ClientMsg::Error {
                    id: RequestId::null(),
                    error,
                },
                ClientFrame::Batch(_) => panic!("{note}: batch"),
            };
            match msg {
                ClientMsg::Error { id, error } => {
                    let got: Value =
                        serde_json::from_str(&sol().render_error(&id, &error)).unwrap();
                    assert_eq!(&got, expected, "{note}");
                }
                ClientMsg::Reply(r) => {
                    let got: Value = serde_json::from_str(&r).unwrap();
                    assert_eq!(&got, expected, "{note}");
                }
                ClientMsg::Ignore => assert!(expected.is_null(), "{note}"),
                ClientMsg::Subscribe { ref keys, .. } if keys.len() == 1 => {
                    // Errors that only the node knows (disabled methods, node cap) pass
                    // through from upstream; local parsing accepts the request.
                    assert!(
                        expected.get("result").is_some()
                            || note.contains("without --rpc-pubsub")
                            || note.contains("node-wide"),
                        "{note}"
                    );
                }
                ClientMsg::Unsubscribe { .. } => assert!(note.contains("unsubscribe"), "{note}"),
                ClientMsg::Call { .. } => panic!("{note}: parsed as a call"),
                ClientMsg::Subscribe { .. } | ClientMsg::Leave { .. } => {
                    panic!("{note}: parsed as a set change")
                }
            }
        }
    }

    #[test]
    fn notification_fixtures_and_one_shot_detection() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/solana");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if !name.contains("Notification") {
                continue;
            }
            let original = std::fs::read_to_string(&path).unwrap();
            // Compact the file without touching number text (u64::MAX must survive).
            let v: Value = serde_json::from_str(&original).unwrap();
            let text = serde_json::to_string(&v).unwrap();
            match sol().parse_upstream(&text) {
                UpstreamFrame::Notification {
                    targets,
                    id_range: Some(id_range),
                    is_final,
                    ..
                } => {
                    let sub = &targets[0].0;
                    assert_eq!(&text[id_range.clone()], &*sub.0, "{name}");
                    assert_eq!(
                        is_final,
                        name.starts_with("signatureNotification_processed"),
                        "{name}"
                    );
                    let spliced = crate::dialect::splice(&text, id_range, "77");
                    assert!(
                        !spliced.contains("18446744073709551615")
                            || text.contains("18446744073709551615")
                    );
                }
                other => panic!("{name}: {other:?}"),
            }
            seen += 1;
        }
        assert!(seen >= 9, "{seen}");
    }

    #[test]
    fn u64_max_survives_the_splice_byte_for_byte() {
        let text = r#"{"jsonrpc":"2.0","method":"accountNotification","params":{"result":{"context":{"slot":1},"value":{"lamports":100,"data":"","owner":"11111111111111111111111111111111","executable":false,"rentEpoch":18446744073709551615,"space":0}},"subscription":0}}"#;
        let UpstreamFrame::Notification {
            id_range: Some(id_range),
            ..
        } = sol().parse_upstream(text)
        else {
            panic!()
        };
        let out = crate::dialect::splice(text, id_range, "12");
        assert_eq!(
            out,
            text.replace("\"subscription\":0", "\"subscription\":12")
        );
    }

    #[test]
    fn defaults_are_filled_so_equivalent_requests_share() {
        let k = |m: &str, p: String| key(m, &p).unwrap();
        assert_eq!(
            k("accountSubscribe", format!(r#"["{PK}"]"#)),
            k(
                "accountSubscribe",
                format!(
                    r#"["{PK}",{{"commitment":"finalized","encoding":"binary","minContextSlot":5}}]"#
                )
            )
        );
        assert_eq!(
            k(
                "accountSubscribe",
                format!(r#"["{PK}",{{"commitment":"max"}}]"#)
            ),
            k("accountSubscribe", format!(r#"["{PK}"]"#))
        );
        assert_ne!(
            k(
                "accountSubscribe",
                format!(r#"["{PK}",{{"encoding":"base58"}}]"#)
            ),
            k("accountSubscribe", format!(r#"["{PK}"]"#)),
            "explicit base58 differs from the legacy binary default"
        );
        assert_ne!(
            k(
                "accountSubscribe",
                format!(
                    r#"["{PK}",{{"encoding":"base64","dataSlice":{{"offset":0,"length":8}}}}]"#
                )
            ),
            k(
                "accountSubscribe",
                format!(r#"["{PK}",{{"encoding":"base64"}}]"#)
            )
        );
        assert_ne!(
            k(
                "accountSubscribe",
                format!(r#"["{PK}",{{"commitment":"confirmed"}}]"#)
            ),
            k("accountSubscribe", format!(r#"["{PK}"]"#))
        );
        assert_eq!(
            k("logsSubscribe", r#"["all"]"#.into()),
            k(
                "logsSubscribe",
                r#"["all",{"commitment":"finalized"}]"#.into()
            )
        );
        assert_ne!(
            k("logsSubscribe", r#"["all"]"#.into()),
            k("logsSubscribe", r#"["allWithVotes"]"#.into())
        );
        assert_ne!(
            k(
                "signatureSubscribe",
                format!(r#"["{SIG}",{{"enableReceivedNotification":true}}]"#)
            ),
            k("signatureSubscribe", format!(r#"["{SIG}"]"#))
        );
        // The method is part of the key.
        assert_ne!(
            k("slotSubscribe", "[]".into()),
            k("rootSubscribe", "[]".into())
        );
        assert_eq!(k("slotSubscribe", "[]".into()).params(), "[]");
    }

    #[test]
    fn local_errors_in_agave_words() {
        assert_eq!(
            key("logsSubscribe", r#"[{"mentions":[]}]"#).unwrap_err(),
            invalid_request("Only 1 address supported")
        );
        assert_eq!(
            key("signatureSubscribe", r#"["abc"]"#).unwrap_err(),
            invalid_request("Invalid signature provided")
        );
        assert_eq!(
            key("blockSubscribe", r#"["all",{"commitment":"processed"}]"#).unwrap_err(),
            RpcError::new(
                -32602,
                "Method does not support commitment below `confirmed`"
            )
        );
        match single(r#"{"jsonrpc":"2.0","id":1,"method":"fooSubscribe"}"#) {
            ClientMsg::Error { error, .. } => {
                assert_eq!(error, RpcError::new(-32601, "Method not found"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            sol().parse_client("{", Transport::WebSocket),
            ClientFrame::Invalid(RpcError::Std { code: -32700, ref message, .. }) if message == "Parse error"
        ));
    }

    #[test]
    fn unsubscribe_and_ping() {
        match single(r#"{"jsonrpc":"2.0","id":7,"method":"slotUnsubscribe","params":[23784]}"#) {
            ClientMsg::Unsubscribe { sub, .. } => assert_eq!(sub.as_str(), "23784"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            single(r#"{"jsonrpc":"2.0","method":"ping"}"#),
            ClientMsg::Ignore
        ));
        assert_eq!(
            sol().render_unsubscribed(&RequestId("7".into())),
            r#"{"jsonrpc":"2.0","result":true,"id":7}"#
        );
    }

    #[test]
    fn upstream_unsubscribe_uses_the_matching_method() {
        let k = key("accountSubscribe", &format!(r#"["{PK}"]"#)).unwrap();
        assert_eq!(
            sol()
                .render_upstream_unsubscribe(&[(&k, &UpstreamSubId("5".into()))], UpstreamReqId(9)),
            Some(r#"{"jsonrpc":"2.0","id":9,"method":"accountUnsubscribe","params":[5]}"#.into())
        );
    }

    #[test]
    fn base58_round_trip_lengths() {
        assert_eq!(
            base58_decode("11111111111111111111111111111111").unwrap(),
            vec![0u8; 32]
        );
        assert!(is_pubkey(PK));
        assert!(is_signature(SIG));
        assert!(!is_pubkey("0OIl"));
    }

    #[test]
    fn ids_are_integers_unique_and_js_safe() {
        let s = sol();
        let a: u64 = s.mint_sub_id().as_str().parse().unwrap();
        let b: u64 = s.mint_sub_id().as_str().parse().unwrap();
        assert_ne!(a, b);
        assert!(b < (1 << 53));
    }

    #[test]
    fn height_reads_slot_and_root_notifications() {
        let d = Solana::new();
        let slot = r#"{"jsonrpc":"2.0","method":"slotNotification","params":{"result":{"parent":74,"root":43,"slot":75},"subscription":0}}"#;
        assert_eq!(d.height(slot), Some(75));
        let root = r#"{"jsonrpc":"2.0","method":"rootNotification","params":{"result":42,"subscription":0}}"#;
        assert_eq!(d.height(root), Some(42));
        let account = r#"{"jsonrpc":"2.0","method":"accountNotification","params":{"result":{"context":{"slot":5},"value":null},"subscription":0}}"#;
        assert_eq!(d.height(account), None);
        assert_eq!(d.height(r#"{"params":{"result":1.5}}"#), None);
        assert_eq!(d.height("[]"), None);
    }
}
