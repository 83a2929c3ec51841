//! The feed's JSON-RPC 2.0 surface, pure: requests parsed and checked (chain, address
//! with its checksum, assets, cursor), replies and notifications rendered.
//!
//! Errors keep the JSON-RPC shape: `-32700` parse error, `-32600` invalid request,
//! `-32601` unknown method, `-32602` invalid params (unknown chain, chain not watched,
//! malformed address, bad assets, unknown or expired cursor), `-32005` a limit.

use super::event::{AssetFilter, Chain, Event};
use super::log::{Cursor, LogError};
use crate::dialect::jsonrpc::{render_error, render_result, LIMIT_EXCEEDED};
use crate::dialect::{RequestId, RpcError};
use serde_json::Value;

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
/// The largest `limit` of `payments_history`.
pub const MAX_HISTORY_LIMIT: usize = 1000;

/// What a subscription (or a history query) watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    pub chain: Chain,
    /// As compared: Ethereum lowercase, the others as given (checked).
    pub address: String,
    /// Empty: every asset.
    pub assets: Vec<AssetFilter>,
    pub since: Option<Cursor>,
}

/// One request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Subscribe(Watch),
    Unsubscribe(String),
    History { watch: Watch, limit: usize },
}

/// One parsed message: a request with its id, or an error to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Request(RequestId, Request),
    Error(RequestId, RpcError),
    /// A notification (no id): nothing is answered.
    Ignore,
}

/// Check an address of `chain`; returns the form it is compared in.
pub fn check_address(chain: Chain, text: &str) -> Result<String, String> {
    match chain {
        Chain::Ethereum => super::ethereum::parse_address(text)
            .map_err(|e| format!("invalid ethereum address {text:?}: {e}")),
        Chain::Xrpl => crate::dialect::xrpl::decode_address(text)
            .map(|_| text.to_string())
            .ok_or_else(|| format!("invalid xrpl address {text:?}: bad base58check account id")),
        Chain::Solana => super::solana::parse_address(text)
            .ok_or_else(|| format!("invalid solana address {text:?}: not 32 bytes of base58")),
        Chain::Lightning => {
            let ok = (16..=64).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_hexdigit());
            ok.then(|| text.to_ascii_lowercase()).ok_or_else(|| {
                format!("invalid lightning wallet key {text:?}: an LNbits invoice key is hex")
            })
        }
    }
}

fn invalid(m: impl Into<String>) -> RpcError {
    RpcError::new(INVALID_PARAMS, m)
}

pub fn cursor_error(e: &LogError) -> RpcError {
    match e {
        LogError::Store(_) => RpcError::new(-32000, e.to_string()),
        _ => invalid(e.to_string()),
    }
}

pub fn limit_error(what: &str) -> RpcError {
    RpcError::new(LIMIT_EXCEEDED, format!("limit exceeded: {what}"))
}

fn asset_filter(chain: Chain, v: &Value) -> Result<AssetFilter, RpcError> {
    match v {
        Value::String(s) if s == "native" => Ok(AssetFilter::Native),
        Value::String(s) => match chain {
            Chain::Ethereum | Chain::Solana => check_address(chain, s)
                .map(AssetFilter::Token)
                .map_err(|e| invalid(format!("assets: {e}"))),
            _ => Err(invalid(format!(
                "assets: {chain} has no token contracts; use \"native\" or {{\"currency\",\"issuer\"}}"
            ))),
        },
        Value::Object(o) if chain == Chain::Xrpl => {
            let currency = o.get("currency").and_then(Value::as_str);
            let issuer = o.get("issuer").and_then(Value::as_str);
            match (currency, issuer) {
                (Some(c), Some(i)) if !c.is_empty() && c.len() <= 40 => Ok(AssetFilter::Issued {
                    currency: c.to_string(),
                    issuer: check_address(Chain::Xrpl, i).map_err(|e| invalid(format!("assets: {e}")))?,
                }),
                _ => Err(invalid("assets: an issued currency is {\"currency\":…,\"issuer\":…}")),
            }
        }
        _ => Err(invalid("assets: \"native\", a token contract or mint, {\"currency\",\"issuer\"} (XRPL), or a list of them")),
    }
}

/// Read `{"chain","address","assets"?,"since"?}` against the chains this route watches.
pub fn watch(p: &Value, watched: &[Chain]) -> Result<Watch, RpcError> {
    let Some(o) = p.as_object() else {
        return Err(invalid("params must be [{\"chain\":…,\"address\":…}]"));
    };
    if let Some(k) = o.keys().find(|k| {
        !matches!(
            k.as_str(),
            "chain" | "address" | "assets" | "since" | "limit"
        )
    }) {
        return Err(invalid(format!("unknown member {k:?}")));
    }
    let chain_text = o
        .get("chain")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("missing chain"))?;
    let chain = Chain::parse(chain_text).ok_or_else(|| {
        invalid(format!(
            "unknown chain {chain_text:?} (xrpl, ethereum, solana, lightning)"
        ))
    })?;
    if !watched.contains(&chain) {
        return Err(invalid(format!("this route does not watch {chain}")));
    }
    let address = o
        .get("address")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("missing address"))?;
    let address = check_address(chain, address).map_err(invalid)?;
    let assets = match o.get("assets") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) if !a.is_empty() && a.len() <= 64 => a
            .iter()
            .map(|v| asset_filter(chain, v))
            .collect::<Result<_, _>>()?,
        Some(v) => vec![asset_filter(chain, v)?],
    };
    let since = match o.get("since") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(Cursor::parse(s).map_err(|e| cursor_error(&e))?),
        Some(_) => return Err(invalid("since must be a cursor string")),
    };
    Ok(Watch {
        chain,
        address,
        assets,
        since,
    })
}

fn request(v: &Value, watched: &[Chain]) -> Parsed {
    let Some(o) = v.as_object() else {
        return Parsed::Error(
            RequestId::null(),
            RpcError::new(INVALID_REQUEST, "invalid request"),
        );
    };
    let id = match o.get("id") {
        None => None,
        Some(i @ (Value::Number(_) | Value::String(_) | Value::Null)) => {
            Some(RequestId(i.to_string().into()))
        }
        Some(_) => {
            return Parsed::Error(
                RequestId::null(),
                RpcError::new(INVALID_REQUEST, "invalid request"),
            )
        }
    };
    if o.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Parsed::Error(
            id.unwrap_or_else(RequestId::null),
            RpcError::new(INVALID_REQUEST, "invalid request: jsonrpc must be \"2.0\""),
        );
    }
    let Some(method) = o.get("method").and_then(Value::as_str) else {
        return Parsed::Error(
            id.unwrap_or_else(RequestId::null),
            RpcError::new(INVALID_REQUEST, "invalid request: no method"),
        );
    };
    let Some(id) = id else {
        return Parsed::Ignore;
    };
    let params = o.get("params").cloned().unwrap_or(Value::Null);
    let first = match &params {
        Value::Array(a) if a.len() == 1 => Some(&a[0]),
        Value::Object(_) => Some(&params),
        _ => None,
    };
    let r = match method {
        "payments_subscribe" => match first {
            Some(p) => watch(p, watched).map(Request::Subscribe),
            None => Err(invalid("params must be [{\"chain\":…,\"address\":…}]")),
        },
        "payments_unsubscribe" => match first.and_then(Value::as_str) {
            Some(s) => Ok(Request::Unsubscribe(s.to_string())),
            None => Err(invalid("params must be [subscription id]")),
        },
        "payments_history" => match first {
            Some(p) => watch(p, watched).and_then(|w| {
                let limit = match p.get("limit") {
                    None | Some(Value::Null) => 100,
                    Some(l) => match l.as_u64() {
                        Some(n @ 1..) if n as usize <= MAX_HISTORY_LIMIT => n as usize,
                        _ => {
                            return Err(invalid(format!(
                                "limit must be between 1 and {MAX_HISTORY_LIMIT}"
                            )))
                        }
                    },
                };
                Ok(Request::History { watch: w, limit })
            }),
            None => Err(invalid(
                "params must be [{\"chain\":…,\"address\":…,\"since\"?,\"limit\"?}]",
            )),
        },
        other => Err(RpcError::new(
            METHOD_NOT_FOUND,
            format!("the method {other} does not exist/is not available"),
        )),
    };
    match r {
        Ok(req) => Parsed::Request(id, req),
        Err(e) => Parsed::Error(id, e),
    }
}

/// Parse one frame: a request or a batch. `Err`: answer this at once.
pub fn parse(
    text: &str,
    watched: &[Chain],
    max_batch: usize,
) -> Result<(Vec<Parsed>, bool), String> {
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => {
            return Err(render_error(
                &RequestId::null(),
                &RpcError::new(PARSE_ERROR, "parse error"),
            ))
        }
    };
    match v {
        Value::Array(a) if a.is_empty() => Err(render_error(
            &RequestId::null(),
            &RpcError::new(INVALID_REQUEST, "empty batch"),
        )),
        Value::Array(a) if a.len() > max_batch => Err(render_error(
            &RequestId::null(),
            &limit_error(&format!(
                "batch of {} requests (max_batch_len {max_batch})",
                a.len()
            )),
        )),
        Value::Array(a) => Ok((a.iter().map(|r| request(r, watched)).collect(), true)),
        one => Ok((vec![request(&one, watched)], false)),
    }
}

pub fn render_ok(id: &RequestId, result: &str) -> String {
    render_result(id, result)
}

pub fn render_err(id: &RequestId, e: &RpcError) -> String {
    render_error(id, e)
}

/// `{"jsonrpc":"2.0","method":"payments_notification","params":{"subscription":ID,"result":EVENT}}`
pub fn render_notification(sub: &str, event_json: &str) -> String {
    format!(
        "{{\"jsonrpc\":\"2.0\",\"method\":\"payments_notification\",\"params\":{{\"subscription\":{},\"result\":{event_json}}}}}",
        serde_json::to_string(sub).unwrap_or_default()
    )
}

/// The history answer: `{"events":[…],"cursor":LAST_OR_GIVEN}`.
pub fn render_history(events: &[Event], since: Cursor) -> String {
    let cursor = events
        .last()
        .map_or_else(|| since.render(), |e| e.cursor.clone());
    serde_json::json!({"events": events, "cursor": cursor}).to_string()
}

#[cfg(test)]
mod tests;
