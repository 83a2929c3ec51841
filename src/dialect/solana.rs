//! Solana (Agave) PubSub, faithful to the validator (wire rules and their Agave sources: docs/solana.md).
//!
//! Canonical keys fill in the node's defaults (commitment `finalized`, account encoding
//! `binary`, block encoding `base64` / details `full` / rewards off, …) so requests that
//! mean the same share one upstream subscription, and keep apart everything that changes
//! the payload bytes (encoding, dataSlice, filters, withContext, …). `minContextSlot` is
//! ignored, as the node ignores it.

use super::jsonrpc::{self, Envelope, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND};
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

    fn parse_message(&self, raw: &RawValue, transport: Transport) -> ClientMsg {
        let text = raw.get();
        let env: Envelope<'_> = match text.starts_with('{').then(|| serde_json::from_str(text)) {
            Some(Ok(env)) => env,
            _ => {
                return ClientMsg::Error {
                    id: RequestId::null(),
                    error: RpcError::new(INVALID_REQUEST, "Invalid request"),
                }
            }
        };
        let id = env
            .id
            .filter(|v| !v.get().starts_with('{') && !v.get().starts_with('['))
            .map(|v| RequestId(v.get().into()));
        let Some(method) = env.method_str().filter(|_| env.has_valid_version()) else {
            return match id {
                Some(id) => ClientMsg::Error {
                    id,
                    error: RpcError::new(INVALID_REQUEST, "Invalid request"),
                },
                // A response or junk without id: jsonrpc-core answers nothing.
                None if env.result.is_some() || env.error.is_some() => ClientMsg::Ignore,
                None => ClientMsg::Error {
                    id: RequestId::null(),
                    error: RpcError::new(INVALID_REQUEST, "Invalid request"),
                },
            };
        };
        // Id-less requests are notifications: never answered (web3.js `ping`).
        let Some(id) = id else {
            return ClientMsg::Ignore;
        };
        let err = |error| ClientMsg::Error {
            id: id.clone(),
            error,
        };
        if let Some(kind) = method.strip_suffix("Unsubscribe") {
            if !KINDS.contains(&kind) {
                return err(RpcError::new(METHOD_NOT_FOUND, "Method not found"));
            }
            return match parse_unsubscribe(env.params) {
                Ok(sub) => ClientMsg::Unsubscribe { id, sub },
                Err(e) => err(e),
            };
        }
        if let Some(kind) = method.strip_suffix("Subscribe") {
            if !KINDS.contains(&kind) {
                return err(RpcError::new(METHOD_NOT_FOUND, "Method not found"));
            }
            if transport == Transport::Http {
                return err(RpcError::new(METHOD_NOT_FOUND, "Method not found"));
            }
            return match canonical(kind, env.params) {
                Ok(params) => ClientMsg::Subscribe {
                    id,
                    key: SubscriptionKey::new(
                        method.as_str(),
                        params,
                        KeyFlags {
                            steady: matches!(method.as_str(), "slotSubscribe" | "rootSubscribe"),
                            ..KeyFlags::default()
                        },
                    ),
                },
                Err(e) => err(e),
            };
        }
        ClientMsg::Call {
            id: Some(id),
            call: Call {
                method: method.into(),
                params: env.params.map(|p| p.get().into()),
                class: 0,
            },
        }
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

fn invalid_params(detail: impl std::fmt::Display) -> RpcError {
    RpcError::new(INVALID_PARAMS, format!("Invalid params: {detail}."))
}

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

fn positional(params: Option<&RawValue>) -> Result<Vec<Value>, RpcError> {
    match params {
        None => Ok(Vec::new()),
        Some(p) => match serde_json::from_str::<Value>(p.get()) {
            Ok(Value::Array(a)) => Ok(a),
            Ok(Value::Null) => Ok(Vec::new()),
            Ok(_) => Err(invalid_params("invalid type: map, expected a sequence")),
            Err(e) => Err(invalid_params(e)),
        },
    }
}

/// Commitment with Agave's legacy aliases; absent → `finalized`.
fn commitment(cfg: &Map<String, Value>) -> Result<&'static str, RpcError> {
    match cfg.get("commitment") {
        None | Some(Value::Null) => Ok("finalized"),
        Some(Value::String(s)) => match s.as_str() {
            "processed" | "recent" => Ok("processed"),
            "confirmed" | "single" | "singleGossip" => Ok("confirmed"),
            "finalized" | "root" | "max" => Ok("finalized"),
            other => Err(invalid_params(format!(
                "unknown variant `{other}`, expected one of `processed`, `confirmed`, `finalized`"
            ))),
        },
        Some(_) => Err(invalid_params("invalid type: expected a commitment string")),
    }
}

fn config_object(v: Option<&Value>) -> Result<Map<String, Value>, RpcError> {
    match v {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err(invalid_params("invalid type: expected a config object")),
    }
}

fn string_arg<'a>(args: &'a [Value], what: &str) -> Result<&'a str, RpcError> {
    match args.first() {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(invalid_params("invalid type: expected a string")),
        None => Err(invalid_params(format!("missing field `{what}`"))),
    }
}

fn encoding(cfg: &Map<String, Value>, default: &'static str) -> Result<String, RpcError> {
    match cfg.get("encoding") {
        None | Some(Value::Null) => Ok(default.into()),
        Some(Value::String(s)) => match s.as_str() {
            "binary" | "base58" | "base64" | "base64+zstd" | "jsonParsed" | "json" => Ok(s.clone()),
            other => Err(invalid_params(format!("unknown variant `{other}`"))),
        },
        Some(_) => Err(invalid_params("invalid type: expected an encoding string")),
    }
}

fn data_slice(cfg: &Map<String, Value>) -> Result<Option<String>, RpcError> {
    match cfg.get("dataSlice") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => {
            let n = |k: &str| m.get(k).and_then(Value::as_u64);
            match (n("offset"), n("length")) {
                (Some(o), Some(l)) => Ok(Some(format!("{{\"offset\":{o},\"length\":{l}}}"))),
                _ => Err(invalid_params(
                    "missing field `offset` or `length` in dataSlice",
                )),
            }
        }
        Some(_) => Err(invalid_params("invalid type: expected a dataSlice object")),
    }
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Writes `[pubkey,{"commitment":…,"encoding":…[,"dataSlice":…]` (object left open) for
/// account and program subscriptions; returns their config for the caller's extras.
fn account_prefix(out: &mut String, args: &[Value]) -> Result<Map<String, Value>, RpcError> {
    let pk = string_arg(args, "pubkey")?;
    if !is_pubkey(pk) {
        return Err(invalid_request("Invalid pubkey provided"));
    }
    let cfg = config_object(args.get(1))?;
    let _ = write!(
        out,
        "[{},{{\"commitment\":\"{}\",\"encoding\":{}",
        quoted(pk),
        commitment(&cfg)?,
        quoted(&encoding(&cfg, "binary")?)
    );
    if let Some(ds) = data_slice(&cfg)? {
        let _ = write!(out, ",\"dataSlice\":{ds}");
    }
    Ok(cfg)
}

/// Canonical params (JSON array text) for a `<kind>Subscribe`.
fn canonical(kind: &str, params: Option<&RawValue>) -> Result<String, RpcError> {
    let args = positional(params)?;
    let none_allowed = |n: usize| -> Result<(), RpcError> {
        if args.len() > n {
            Err(invalid_params(format!(
                "invalid length {}, expected {}",
                args.len(),
                if n == 0 {
                    "no params".to_string()
                } else {
                    format!("at most {n} elements")
                }
            )))
        } else {
            Ok(())
        }
    };
    let mut out = String::with_capacity(128);
    match kind {
        "slot" | "slotsUpdates" | "root" | "vote" => {
            none_allowed(0)?;
            out.push_str("[]");
        }
        "account" => {
            none_allowed(2)?;
            account_prefix(&mut out, &args)?;
            out.push_str("}]");
        }
        "program" => {
            none_allowed(2)?;
            let cfg = account_prefix(&mut out, &args)?;
            match cfg.get("filters") {
                None | Some(Value::Null) => {}
                Some(Value::Array(f)) if f.is_empty() => {}
                Some(f @ Value::Array(_)) => {
                    let _ = write!(out, ",\"filters\":{f}");
                }
                Some(_) => return Err(invalid_params("invalid type: expected filters array")),
            }
            if cfg.get("withContext").and_then(Value::as_bool) == Some(true) {
                out.push_str(",\"withContext\":true");
            }
            out.push_str("}]");
        }
        "logs" => {
            none_allowed(2)?;
            let filter = match args.first() {
                Some(Value::String(s)) if s == "all" || s == "allWithVotes" => quoted(s),
                Some(Value::Object(m)) if m.contains_key("mentions") => {
                    let list = m.get("mentions").and_then(Value::as_array);
                    let Some(list) = list else {
                        return Err(invalid_params("invalid type: expected mentions array"));
                    };
                    if list.len() != 1 {
                        return Err(invalid_request("Only 1 address supported"));
                    }
                    match list[0].as_str() {
                        Some(pk) if is_pubkey(pk) => format!("{{\"mentions\":[{}]}}", quoted(pk)),
                        _ => return Err(invalid_request("Invalid mentions provided")),
                    }
                }
                Some(_) => {
                    return Err(invalid_params(
                        "unknown variant, expected `all`, `allWithVotes` or `mentions`",
                    ))
                }
                None => return Err(invalid_params("missing field `filter`")),
            };
            let cfg = config_object(args.get(1))?;
            let _ = write!(
                out,
                "[{filter},{{\"commitment\":\"{}\"}}]",
                commitment(&cfg)?
            );
        }
        "signature" => {
            none_allowed(2)?;
            let sig = string_arg(&args, "signature")?;
            if !is_signature(sig) {
                return Err(invalid_request("Invalid signature provided"));
            }
            let cfg = config_object(args.get(1))?;
            let received = cfg
                .get("enableReceivedNotification")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let _ = write!(
                out,
                "[{},{{\"commitment\":\"{}\",\"enableReceivedNotification\":{received}}}]",
                quoted(sig),
                commitment(&cfg)?
            );
        }
        "block" => {
            none_allowed(2)?;
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
                _ => {
                    return Err(invalid_params(
                        "unknown variant, expected `all` or `mentionsAccountOrProgram`",
                    ))
                }
            };
            let cfg = config_object(args.get(1))?;
            let c = commitment(&cfg)?;
            if c == "processed" {
                return Err(RpcError::new(
                    INVALID_PARAMS,
                    "Method does not support commitment below `confirmed`",
                ));
            }
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
                quoted(&encoding(&cfg, "base64")?),
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

fn parse_unsubscribe(params: Option<&RawValue>) -> Result<ClientSubId, RpcError> {
    let args = positional(params)?;
    match args.as_slice() {
        [Value::Number(n)] if n.as_u64().is_some() => Ok(ClientSubId(n.to_string().into())),
        [other] => Err(invalid_params(format!(
            "invalid type: {}, expected u64",
            match other {
                Value::String(s) => format!("string {s:?}"),
                Value::Number(n) => format!("number {n}"),
                _ => "value".into(),
            }
        ))),
        [] => Err(invalid_params("invalid length 0, expected one element")),
        _ => Err(invalid_params(format!(
            "invalid length {}, expected one element",
            args.len()
        ))),
    }
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

impl Dialect for Solana {
    fn kind(&self) -> DialectKind {
        DialectKind::Solana
    }

    fn parse_client(&self, text: &str, transport: Transport) -> ClientFrame {
        match jsonrpc::parse_frame(text, MAX_BATCH, |raw| self.parse_message(raw, transport)) {
            // jsonrpc-core's words for frame-level errors.
            ClientFrame::Invalid(RpcError::Std { code: -32700, .. }) => {
                ClientFrame::Invalid(RpcError::new(-32700, "Parse error"))
            }
            ClientFrame::Invalid(RpcError::Std { code: -32600, .. }) => {
                ClientFrame::Invalid(RpcError::new(INVALID_REQUEST, "Invalid request"))
            }
            other => other,
        }
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

    fn height(&self, text: &str) -> Option<u64> {
        // Borrowed fields only: the result stays raw text until its slot is read.
        #[derive(serde::Deserialize)]
        struct Frame<'a> {
            #[serde(borrow)]
            params: Params<'a>,
        }
        #[derive(serde::Deserialize)]
        struct Params<'a> {
            #[serde(borrow)]
            result: &'a RawValue,
        }
        #[derive(serde::Deserialize)]
        struct Slot {
            #[serde(default)]
            slot: Option<u64>,
        }
        let f: Frame = serde_json::from_str(text).ok()?;
        let r = f.params.result.get();
        if r.starts_with('{') {
            serde_json::from_str::<Slot>(r).ok()?.slot
        } else {
            r.parse().ok() // rootNotification: the slot itself
        }
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
            ClientMsg::Subscribe { key, .. } => Ok(key),
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
            let msg = single(&req);
            match msg {
                ClientMsg::Error { id, error } => {
                    let got: Value =
                        serde_json::from_str(&sol().render_error(&id, &error)).unwrap();
                    assert_eq!(&got, expected, "{note}");
                }
                ClientMsg::Ignore => assert!(expected.is_null(), "{note}"),
                ClientMsg::Subscribe { .. } => {
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
                ClientMsg::Join { .. } | ClientMsg::Leave { .. } | ClientMsg::Reply(_) => {
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
                    sub,
                    id_range,
                    is_final,
                } => {
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
        let UpstreamFrame::Notification { id_range, .. } = sol().parse_upstream(text) else {
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
