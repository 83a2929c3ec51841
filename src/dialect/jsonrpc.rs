//! JSON-RPC 2.0 envelope shared by the Ethereum and Solana dialects: parsing with raw
//! (borrowed) values so ids and payloads are never re-encoded, and rendering of replies.

use super::{
    subslice_range, ClientFrame, ClientMsg, Condition, RequestId, RpcError, UpstreamFrame,
    UpstreamReqId, UpstreamSubId,
};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use std::fmt::Write as _;

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// geth's default code for application errors ("subscription not found", upstream trouble).
pub const SERVER_ERROR: i64 = -32000;
/// The de-facto code providers use for rate and size limits.
pub const LIMIT_EXCEEDED: i64 = -32005;

/// Errors for conditions submux detects, shared by the JSON-RPC dialects; only the
/// unknown-subscription error differs between nodes, so the caller supplies it.
///
/// Apart from that one (the node's own, supplied by the caller), these texts are submux's
/// own: neither geth nor Agave's pubsub has an upstream, a connection limit or an HTTP
/// route to lack, so there are no node words for them. They keep the JSON-RPC error shape
/// and the server-error range (`-32000`; `-32005` is the providers' rate/size code).
pub fn condition_error(cond: Condition, subscription_not_found: RpcError) -> RpcError {
    match cond {
        Condition::UpstreamUnavailable => {
            RpcError::new(SERVER_ERROR, "upstream unavailable: no connected upstream")
        }
        Condition::UpstreamTimeout => RpcError::new(SERVER_ERROR, "upstream request timed out"),
        Condition::UpstreamLost => RpcError::new(
            SERVER_ERROR,
            "upstream connection lost before the request was answered",
        ),
        Condition::LimitExceeded(what) => {
            RpcError::new(LIMIT_EXCEEDED, format!("limit exceeded: {what}"))
        }
        Condition::ShuttingDown => RpcError::new(SERVER_ERROR, "server is shutting down"),
        Condition::SubscriptionNotFound => subscription_not_found,
        Condition::NoHttpUpstream => RpcError::new(
            METHOD_NOT_FOUND,
            "HTTP JSON-RPC is not configured on this route: set http_upstream to the node's RPC URL",
        ),
    }
}

/// Deserialize a field as raw JSON, keeping `null` as `Some("null")` (serde's `Option`
/// would turn `null` into `None`, but JSON-RPC distinguishes an absent id from a null one).
fn raw_some<'de, D>(d: D) -> Result<Option<&'de RawValue>, D::Error>
where
    D: Deserializer<'de>,
{
    <&RawValue>::deserialize(d).map(Some)
}

/// One JSON-RPC object with every member kept raw.
#[derive(Deserialize, Default)]
pub struct Envelope<'a> {
    #[serde(borrow, default, deserialize_with = "raw_some")]
    pub jsonrpc: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "raw_some")]
    pub id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "raw_some")]
    pub method: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "raw_some")]
    pub params: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "raw_some")]
    pub result: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "raw_some")]
    pub error: Option<&'a RawValue>,
}

impl<'a> Envelope<'a> {
    pub fn has_valid_version(&self) -> bool {
        self.jsonrpc.is_some_and(|v| v.get() == "\"2.0\"")
    }
    /// geth: an id is valid when present and not an object or array.
    pub fn has_valid_id(&self) -> bool {
        self.id
            .is_some_and(|v| !v.get().starts_with('{') && !v.get().starts_with('['))
    }
    /// The method as a string, `None` when absent, not a string, or empty.
    pub fn method_str(&self) -> Option<String> {
        let m: String = serde_json::from_str(self.method?.get()).ok()?;
        (!m.is_empty()).then_some(m)
    }
}

/// What a parsed client message is at the envelope level.
pub enum Kind<'a> {
    /// A call with an id.
    Call {
        id: RequestId,
        method: String,
        env: Envelope<'a>,
    },
    /// A call without id: served, never answered.
    Notification { method: String, env: Envelope<'a> },
    /// Not a call; answer `invalid request` with this id.
    Invalid(RequestId),
    /// A response object sent by the client: ignored, as geth does.
    Response,
}

/// Classify one raw JSON value as geth does (rpc/json.go isCall/isNotification/...).
pub fn classify(raw: &RawValue) -> Kind<'_> {
    let text = raw.get();
    let env: Envelope<'_> = if text.starts_with('{') {
        match serde_json::from_str(text) {
            Ok(env) => env,
            Err(_) => return Kind::Invalid(RequestId::null()),
        }
    } else {
        return Kind::Invalid(RequestId::null());
    };
    let version = env.has_valid_version();
    let method = env.method_str();
    match (version, env.id.is_some(), method) {
        (true, true, Some(method)) if env.has_valid_id() => Kind::Call {
            id: RequestId(env.id.map(|v| v.get()).unwrap_or("null").into()),
            method,
            env,
        },
        (true, false, Some(method)) => Kind::Notification { method, env },
        (true, true, None)
            if env.has_valid_id()
                && env.params.is_none()
                && (env.result.is_some() || env.error.is_some()) =>
        {
            Kind::Response
        }
        _ if env.has_valid_id() => {
            Kind::Invalid(RequestId(env.id.map(|v| v.get()).unwrap_or("null").into()))
        }
        _ => Kind::Invalid(RequestId::null()),
    }
}

/// A notification's `params.result` (`{"params":{"result":…}}`), read as `T` from borrowed
/// fields only: everything else in the frame is skipped. `None`: not such a frame.
pub fn notification_result<'a, T: Deserialize<'a>>(frame: &'a str) -> Option<T> {
    #[derive(Deserialize)]
    struct Frame<T> {
        params: Params<T>,
    }
    #[derive(Deserialize)]
    struct Params<T> {
        result: T,
    }
    let f: Frame<T> = serde_json::from_str(frame).ok()?;
    Some(f.params.result)
}

/// Split a client frame into raw messages and hand each to `per_message`.
pub fn parse_frame(
    text: &str,
    max_batch: usize,
    mut per_message: impl FnMut(&RawValue) -> ClientMsg,
) -> ClientFrame {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let items: Vec<&RawValue> = match serde_json::from_str(text) {
            Ok(items) => items,
            Err(e) => return ClientFrame::Invalid(RpcError::new(PARSE_ERROR, e.to_string())),
        };
        if items.is_empty() {
            // geth rpc/handler.go handleBatch: invalidRequestError{"empty batch"}.
            return ClientFrame::Invalid(RpcError::new(INVALID_REQUEST, "empty batch"));
        }
        if items.len() > max_batch {
            // geth rpc/errors.go errMsgBatchTooLarge (the Ethereum dialect reshapes it as
            // geth's rpc/handler.go respondWithBatchTooLarge does).
            return ClientFrame::Invalid(RpcError::new(INVALID_REQUEST, "batch too large"));
        }
        ClientFrame::Batch(items.into_iter().map(per_message).collect())
    } else {
        match serde_json::from_str::<&RawValue>(text) {
            Ok(raw) => ClientFrame::Single(per_message(raw)),
            Err(e) => ClientFrame::Invalid(RpcError::new(PARSE_ERROR, e.to_string())),
        }
    }
}

/// `{"jsonrpc":"2.0","id":ID,"result":RESULT}`
pub fn render_result(id: &RequestId, result: &str) -> String {
    let mut s = String::with_capacity(40 + id.0.len() + result.len());
    s.push_str("{\"jsonrpc\":\"2.0\",\"id\":");
    s.push_str(&id.0);
    s.push_str(",\"result\":");
    s.push_str(result);
    s.push('}');
    s
}

/// `{"jsonrpc":"2.0","id":ID,"error":{...}}`
pub fn render_error(id: &RequestId, error: &RpcError) -> String {
    let mut s = String::with_capacity(96);
    s.push_str("{\"jsonrpc\":\"2.0\",\"id\":");
    s.push_str(&id.0);
    s.push_str(",\"error\":");
    match error {
        RpcError::Std {
            code,
            message,
            data,
        } => {
            let _ = write!(
                s,
                "{{\"code\":{code},\"message\":{}",
                serde_json::to_string(message).unwrap_or_else(|_| "\"\"".into())
            );
            if let Some(data) = data {
                s.push_str(",\"data\":");
                s.push_str(data);
            }
            s.push('}');
        }
        RpcError::Raw(raw) => s.push_str(raw),
    }
    s.push('}');
    s
}

pub fn render_batch(parts: &[String]) -> String {
    let mut s = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum::<usize>() + 2);
    s.push('[');
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(p);
    }
    s.push(']');
    s
}

/// `{"jsonrpc":"2.0","id":N,"method":M,"params":P}` (id omitted for notifications).
pub fn render_request(method: &str, params: Option<&str>, id: Option<UpstreamReqId>) -> String {
    let mut s = String::with_capacity(48 + method.len() + params.map_or(0, str::len));
    s.push_str("{\"jsonrpc\":\"2.0\",");
    if let Some(id) = id {
        let _ = write!(s, "\"id\":{},", id.0);
    }
    s.push_str("\"method\":");
    s.push_str(&serde_json::to_string(method).unwrap_or_else(|_| "\"\"".into()));
    if let Some(p) = params {
        s.push_str(",\"params\":");
        s.push_str(p);
    }
    s.push('}');
    s
}

#[derive(Deserialize)]
struct SubParams<'a> {
    #[serde(borrow, default, deserialize_with = "raw_some")]
    subscription: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "raw_some")]
    result: Option<&'a RawValue>,
}

/// Parse an upstream JSON-RPC frame. `is_notification` recognises the dialect's
/// notification method names; `is_final` inspects a notification's method and result.
pub fn parse_upstream(
    text: &str,
    is_notification: impl Fn(&str) -> bool,
    is_final: impl Fn(&str, &str) -> bool,
) -> UpstreamFrame {
    let env: Envelope<'_> = match serde_json::from_str(text) {
        Ok(env) => env,
        Err(e) => return UpstreamFrame::Malformed(e.to_string()),
    };
    if let Some(method) = env.method_str() {
        if !is_notification(&method) {
            return UpstreamFrame::Other;
        }
        let Some(params) = env.params else {
            return UpstreamFrame::Malformed("notification without params".into());
        };
        let Ok(p) = serde_json::from_str::<SubParams<'_>>(params.get()) else {
            return UpstreamFrame::Malformed("notification params are not an object".into());
        };
        let (Some(sub), Some(result)) = (p.subscription, p.result) else {
            return UpstreamFrame::Malformed("notification without subscription/result".into());
        };
        return UpstreamFrame::by_id(
            UpstreamSubId(sub.get().into()),
            subslice_range(text, sub.get()),
            is_final(&method, result.get()),
        );
    }
    let Some(id) = env.id else {
        return UpstreamFrame::Other;
    };
    let Ok(num) = id.get().parse::<u64>() else {
        return UpstreamFrame::Other;
    };
    let outcome = match (env.result, env.error) {
        (_, Some(err)) if err.get() != "null" => Err(err.get().to_string()),
        (Some(res), _) => Ok(subslice_range(text, res.get())),
        _ => return UpstreamFrame::Malformed("response without result or error".into()),
    };
    UpstreamFrame::Response {
        id: UpstreamReqId(num),
        id_range: subslice_range(text, id.get()),
        outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(text: &str) -> Kind<'_> {
        classify(serde_json::from_str::<&RawValue>(text).unwrap())
    }

    #[test]
    fn classify_like_geth() {
        assert!(matches!(
            kind(r#"{"jsonrpc":"2.0","id":1.0,"method":"eth_chainId"}"#),
            Kind::Call { ref id, .. } if id.as_str() == "1.0"
        ));
        assert!(matches!(
            kind(r#"{"jsonrpc":"2.0","id":null,"method":"m"}"#),
            Kind::Call { ref id, .. } if id.as_str() == "null"
        ));
        assert!(matches!(
            kind(r#"{"jsonrpc":"2.0","method":"m"}"#),
            Kind::Notification { .. }
        ));
        assert!(matches!(
            kind(r#"{"jsonrpc":"1.0","id":"x","method":"m"}"#),
            Kind::Invalid(ref id) if id.as_str() == "\"x\""
        ));
        assert!(matches!(
            kind(r#"{"jsonrpc":"2.0","id":{},"method":"m"}"#),
            Kind::Invalid(ref id) if id.as_str() == "null"
        ));
        assert!(matches!(
            kind(r#"{"jsonrpc":"2.0","id":1,"method":""}"#),
            Kind::Invalid(_)
        ));
        assert!(matches!(
            kind(r#"{"jsonrpc":"2.0","id":1,"result":true}"#),
            Kind::Response
        ));
        assert!(matches!(kind("42"), Kind::Invalid(_)));
    }

    #[test]
    fn upstream_response_and_notification_ranges() {
        let text = r#"{"jsonrpc":"2.0","id":17,"result":"0xabc"}"#;
        match parse_upstream(text, |m| m.ends_with("_subscription"), |_, _| false) {
            UpstreamFrame::Response {
                id,
                id_range,
                outcome,
            } => {
                assert_eq!(id, UpstreamReqId(17));
                assert_eq!(&text[id_range], "17");
                assert_eq!(&text[outcome.unwrap()], "\"0xabc\"");
            }
            other => panic!("{other:?}"),
        }
        let text = r#"{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"0x1","result":{"a":1}}}"#;
        match parse_upstream(text, |m| m.ends_with("_subscription"), |_, _| false) {
            UpstreamFrame::Notification {
                targets,
                id_range: Some(id_range),
                ..
            } => {
                let sub = &targets[0].0;
                assert_eq!(sub.0.as_ref(), "\"0x1\"");
                assert_eq!(&text[id_range], "\"0x1\"");
            }
            other => panic!("{other:?}"),
        }
        let text = r#"{"jsonrpc":"2.0","id":3,"error":{"code":-32000,"message":"x"}}"#;
        assert!(matches!(
            parse_upstream(text, |_| false, |_, _| false),
            UpstreamFrame::Response { outcome: Err(ref e), .. } if e == r#"{"code":-32000,"message":"x"}"#
        ));
        assert!(matches!(
            parse_upstream("{nope", |_| false, |_, _| false),
            UpstreamFrame::Malformed(_)
        ));
    }

    #[test]
    fn render_shapes() {
        let id = RequestId("\"a\"".into());
        assert_eq!(
            render_result(&id, "true"),
            r#"{"jsonrpc":"2.0","id":"a","result":true}"#
        );
        assert_eq!(
            render_error(&id, &RpcError::new(-32000, "subscription not found")),
            r#"{"jsonrpc":"2.0","id":"a","error":{"code":-32000,"message":"subscription not found"}}"#
        );
        assert_eq!(
            render_request("eth_chainId", None, Some(UpstreamReqId(5))),
            r#"{"jsonrpc":"2.0","id":5,"method":"eth_chainId"}"#
        );
        assert_eq!(render_batch(&["1".into(), "2".into()]), "[1,2]");
    }
}
