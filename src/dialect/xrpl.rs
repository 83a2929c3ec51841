//! XRP Ledger (rippled) WebSocket commands: pure parsing, routing and rendering.
//!
//! rippled has no subscription ids: a connection holds a *set* of streams, accounts and
//! order books, and every push is routed by its content. So each stream, account and book
//! is a key of its own (`streams:"ledger"`, `accounts:"r…"`, `accounts_proposed:"r…"`,
//! `books:{…}`), a client subscribe joins a set of keys, and each upstream message names
//! the keys it belongs to ([`UpstreamFrame::Routed`]) with the delivery group rippled
//! deduplicates within (a transaction reaches a connection once over all its accounts,
//! once over all its books, and once per transaction stream).
//!
//! The API version shapes every stream message and is set per upstream connection by each
//! subscribe, so it is the key's connection class: clients on different versions never
//! share a stream. References: docs/xrpl.md (rippled sources cited
//! there: ServerHandler.cpp, Subscribe.cpp, Unsubscribe.cpp, NetworkOPs.cpp, TxMeta.cpp,
//! STTx.cpp, OrderBookDB.cpp).

use super::base58::{check_decode, check_encode, RIPPLE};
use super::{
    Answer, Call, ClientFrame, ClientMsg, ClientSubId, Condition, Dialect, DialectKind, Group,
    KeyFlags, RequestId, RpcError, SubscriptionKey, Transport, UpstreamFrame, UpstreamReqId,
    UpstreamSubId,
};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

/// Delivery groups (see [`Group`]).
pub const GROUP_TRANSACTIONS: Group = Group(0);
pub const GROUP_TRANSACTIONS_PROPOSED: Group = Group(1);
pub const GROUP_ACCOUNTS: Group = Group(2);
pub const GROUP_BOOKS: Group = Group(3);
pub const GROUP_STREAM: Group = Group(4);

/// API versions rippled accepts (3 is beta on current servers).
const API_VERSIONS: std::ops::RangeInclusive<u64> = 1..=3;
/// Keys per upstream subscribe request when submux batches.
const BATCH: usize = 256;

/// Account-typed (STAccount) fields of ledger entries and transactions.
const ACCOUNT_FIELDS: &[&str] = &[
    "Account",
    "Owner",
    "Destination",
    "Issuer",
    "Authorize",
    "Unauthorize",
    "RegularKey",
    "NFTokenMinter",
    "EmitCallback",
    "Holder",
    "AMMAccount",
    "HookAccount",
    "OtherChainSource",
    "OtherChainDestination",
    "AttestationSignerAccount",
    "AttestationRewardAccount",
    "LockingChainDoor",
    "IssuingChainDoor",
    "Subject",
    "Delegate",
    "Borrower",
    "Counterparty",
];

/// Streams a client may subscribe to (`rt_transactions` is an alias).
const STREAMS: &[&str] = &[
    "server",
    "ledger",
    "book_changes",
    "manifests",
    "transactions",
    "transactions_proposed",
    "validations",
    "peer_status",
    "consensus",
];

/// rippled's error table entries submux uses: (token, code, message), each as in
/// `src/libxrpl/protocol/ErrorCodes.cpp` (codes: `include/xrpl/protocol/ErrorCodes.h`).
pub type ErrorInfo = (&'static str, i64, &'static str);
pub const INVALID_PARAMS: ErrorInfo = ("invalidParams", 31, "Invalid parameters.");
pub const MALFORMED_STREAM: ErrorInfo = ("malformedStream", 71, "Stream malformed.");
pub const ACT_MALFORMED: ErrorInfo = ("actMalformed", 35, "Account malformed.");
pub const NO_PERMISSION: ErrorInfo = (
    "noPermission",
    6,
    "You don't have permission for this command.",
);
const SRC_CUR_MALFORMED: ErrorInfo = ("srcCurMalformed", 69, "Source currency is malformed.");
const SRC_ISR_MALFORMED: ErrorInfo = ("srcIsrMalformed", 70, "Source issuer is malformed.");
const DST_AMT_MALFORMED: ErrorInfo = (
    "dstAmtMalformed",
    51,
    "Destination amount/currency/issuer is malformed.",
);
const DST_ISR_MALFORMED: ErrorInfo = ("dstIsrMalformed", 53, "Destination issuer is malformed.");
const BAD_MARKET: ErrorInfo = ("badMarket", 42, "No such market.");
const BAD_ISSUER: ErrorInfo = ("badIssuer", 41, "Issuer account malformed.");
const DOMAIN_MALFORMED: ErrorInfo = ("domainMalformed", 97, "Domain is malformed.");
const NOT_SUPPORTED: ErrorInfo = ("notSupported", 75, "Operation not supported.");
const NO_EVENTS: ErrorInfo = ("noEvents", 7, "Current transport does not support events.");
const NO_NETWORK: ErrorInfo = ("noNetwork", 17, "Not synced to the network.");
const TOO_BUSY: ErrorInfo = ("tooBusy", 9, "The server is too busy to help you now.");
const SLOW_DOWN: ErrorInfo = (
    "slowDown",
    10,
    "You are placing too much load on the server.",
);

/// The XRPL dialect.
#[derive(Debug, Default)]
pub struct Xrpl;

impl Xrpl {
    pub fn new() -> Self {
        Xrpl
    }
}

// ---------------------------------------------------------------------------------------
// Addresses, currencies, issues

/// The 20-byte account id of a classic address (`r…`, Base58Check, version byte 0).
pub fn decode_address(s: &str) -> Option<[u8; 20]> {
    if !(25..=35).contains(&s.len()) {
        return None;
    }
    let payload = check_decode(s, RIPPLE)?;
    if payload.len() != 21 || payload[0] != 0 {
        return None;
    }
    let mut id = [0u8; 20];
    id.copy_from_slice(&payload[1..]);
    Some(id)
}

/// The classic address of a 20-byte account id.
pub fn encode_address(id: &[u8; 20]) -> String {
    let mut payload = Vec::with_capacity(21);
    payload.push(0);
    payload.extend_from_slice(id);
    check_encode(&payload, RIPPLE)
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// An issuer given as a classic address or as 40 hex digits.
fn parse_issuer(s: &str) -> Option<[u8; 20]> {
    if s.len() == 40 {
        let b = hex_decode(s)?;
        let mut id = [0u8; 20];
        id.copy_from_slice(&b);
        return Some(id);
    }
    decode_address(s)
}

/// A currency in rippled's canonical text: `XRP` for the native currency, the 3-character
/// code for standard currencies, 40 upper-case hex digits otherwise (rippled to_currency
/// and to_string).
fn canonical_currency(s: &str) -> Option<String> {
    if s.is_empty() || s == "XRP" {
        return Some("XRP".into());
    }
    if s.len() == 3 && s.is_ascii() {
        return Some(s.to_ascii_uppercase());
    }
    if s.len() == 40 {
        let b = hex_decode(s)?;
        if b.iter().all(|&x| x == 0) {
            return Some("XRP".into());
        }
        let iso = b[..12].iter().all(|&x| x == 0)
            && b[15..].iter().all(|&x| x == 0)
            && b[12..15].iter().all(|c| c.is_ascii_graphic());
        if iso {
            return Some(String::from_utf8_lossy(&b[12..15]).into_owned());
        }
        return Some(s.to_ascii_uppercase());
    }
    None
}

/// One side of a book: a currency and its issuer (none for XRP).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Issue {
    currency: String,
    issuer: Option<String>,
}

impl Issue {
    fn render(&self) -> String {
        match &self.issuer {
            None => format!(r#"{{"currency":"{}"}}"#, self.currency),
            Some(i) => format!(r#"{{"currency":"{}","issuer":"{i}"}}"#, self.currency),
        }
    }

    /// The issue of an amount in a ledger entry (a drops string is XRP).
    fn of_amount(v: &Value) -> Option<Issue> {
        match v {
            Value::String(_) => Some(Issue {
                currency: "XRP".into(),
                issuer: None,
            }),
            Value::Object(o) => {
                let currency = canonical_currency(o.get("currency")?.as_str()?)?;
                let issuer = o.get("issuer")?.as_str()?.to_string();
                Some(Issue {
                    currency,
                    issuer: Some(issuer),
                })
            }
            _ => None,
        }
    }
}

/// The key text of the book a subscription `{taker_pays: P, taker_gets: G}` listens on.
fn book_params(pays: &Issue, gets: &Issue, domain: Option<&str>) -> String {
    match domain {
        Some(d) => format!(
            r#"{{"domain":"{d}","taker_gets":{},"taker_pays":{}}}"#,
            gets.render(),
            pays.render()
        ),
        None => format!(
            r#"{{"taker_gets":{},"taker_pays":{}}}"#,
            gets.render(),
            pays.render()
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Rendering

/// Members of a response envelope that rippled copies from the request.
const ECHOED: &[&str] = &["api_version", "id", "jsonrpc", "ripplerpc"];

/// A JSON object from raw member texts, keys sorted as rippled emits them.
fn render_object(members: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(64 + members.values().map(String::len).sum::<usize>());
    out.push('{');
    for (i, (k, v)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&json_string(k));
        out.push(':');
        out.push_str(v);
    }
    out.push('}');
    out
}

pub(crate) fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The request as rippled echoes it in errors: keys sorted at every level, secrets masked.
fn echo_request(req: &BTreeMap<String, &RawValue>, mask: bool) -> String {
    let mut obj = Map::new();
    for (k, v) in req {
        let value = if mask && ["passphrase", "secret", "seed", "seed_hex"].contains(&k.as_str()) {
            Value::String("<masked>".into())
        } else {
            serde_json::from_str(v.get()).unwrap_or(Value::Null)
        };
        obj.insert(k.clone(), value);
    }
    serde_json::to_string(&Value::Object(obj)).unwrap_or_else(|_| "{}".into())
}

/// Envelope members echoed from the request.
fn echoed(req: &BTreeMap<String, &RawValue>) -> BTreeMap<String, String> {
    ECHOED
        .iter()
        .filter_map(|k| req.get(*k).map(|v| (k.to_string(), v.get().to_string())))
        .collect()
}

/// An error response for a parsed request, as rippled's processSession shapes it.
fn request_error(req: &BTreeMap<String, &RawValue>, e: ErrorInfo) -> String {
    request_error_text(req, e.0, e.1, e.2)
}

pub(crate) fn request_error_text(
    req: &BTreeMap<String, &RawValue>,
    token: &str,
    code: i64,
    message: &str,
) -> String {
    let mut m = echoed(req);
    m.insert("error".into(), json_string(token));
    m.insert("error_code".into(), code.to_string());
    m.insert("error_message".into(), json_string(message));
    m.insert("request".into(), echo_request(req, true));
    m.insert("status".into(), "\"error\"".into());
    m.insert("type".into(), "\"response\"".into());
    render_object(&m)
}

/// A success response with `result` for a parsed request.
pub(crate) fn request_success(req: &BTreeMap<String, &RawValue>, result: &str) -> String {
    let mut m = echoed(req);
    m.insert("result".into(), result.into());
    m.insert("status".into(), "\"success\"".into());
    m.insert("type".into(), "\"response\"".into());
    render_object(&m)
}

/// The error fields object submux uses as `RpcError::Raw` for this dialect.
fn error_fields(token: &str, code: i64, message: &str) -> String {
    format!(
        r#"{{"error":{},"error_code":{code},"error_message":{}}}"#,
        json_string(token),
        json_string(message)
    )
}

// ---------------------------------------------------------------------------------------
// Client requests

/// A request that failed envelope checks (no command, bad API version).
fn envelope_error(req: &BTreeMap<String, &RawValue>, token: &str) -> String {
    let mut m = echoed(req);
    m.insert("error".into(), json_string(token));
    m.insert("request".into(), echo_request(req, false));
    m.insert("status".into(), "\"error\"".into());
    m.insert("type".into(), "\"response\"".into());
    render_object(&m)
}

/// `api_version` of a request: 1 when absent, `None` when invalid.
fn api_version(req: &BTreeMap<String, &RawValue>) -> Option<u8> {
    match req.get("api_version") {
        None => Some(1),
        Some(v) => v
            .get()
            .parse::<u64>()
            .ok()
            .filter(|n| API_VERSIONS.contains(n))
            .map(|n| n as u8),
    }
}

fn str_of(v: &RawValue) -> Option<String> {
    serde_json::from_str::<String>(v.get()).ok()
}

/// The request object without its `id`, as forwarded upstream.
fn without_id(req: &BTreeMap<String, &RawValue>) -> String {
    let m: BTreeMap<String, String> = req
        .iter()
        .filter(|(k, _)| k.as_str() != "id")
        .map(|(k, v)| (k.clone(), v.get().to_string()))
        .collect();
    render_object(&m)
}

/// What a subscribe or unsubscribe asks for, in rippled's processing order; parsing stops
/// at the first error, keeping what came before (rippled subscribes those parts).
struct SetRequest {
    keys: Vec<SubscriptionKey>,
    /// Parts whose subscribe result carries data (streams `ledger`/`server`, snapshots).
    result_streams: Vec<&'static str>,
    result_books: Vec<String>,
    error: Option<ErrorInfo>,
    /// A submux refusal with its own message (unsupported parts).
    refusal: Option<String>,
}

fn key(class: u8, method: &str, params: String, solo: bool) -> SubscriptionKey {
    SubscriptionKey::in_class(
        class,
        method,
        params,
        KeyFlags {
            solo,
            ..KeyFlags::default()
        },
    )
}

fn parse_accounts(v: &RawValue) -> Result<Vec<String>, ErrorInfo> {
    let items: Vec<&RawValue> = serde_json::from_str(v.get()).map_err(|_| INVALID_PARAMS)?;
    if items.is_empty() {
        return Err(ACT_MALFORMED);
    }
    items
        .iter()
        .map(|i| {
            str_of(i)
                .filter(|s| decode_address(s).is_some())
                .ok_or(ACT_MALFORMED)
        })
        .collect()
}

fn parse_issue(
    v: Option<&Value>,
    cur_err: ErrorInfo,
    isr_err: ErrorInfo,
) -> Result<Issue, ErrorInfo> {
    let obj = match v {
        Some(Value::Object(o)) => Some(o),
        _ => None,
    };
    let currency = obj
        .and_then(|o| o.get("currency"))
        .and_then(Value::as_str)
        .and_then(canonical_currency)
        .ok_or(cur_err)?;
    let issuer = match obj.and_then(|o| o.get("issuer")) {
        None => None,
        Some(Value::String(s)) => Some(parse_issuer(s).ok_or(isr_err)?),
        Some(_) => return Err(isr_err),
    };
    let native = currency == "XRP";
    // XRP takes no issuer (or the zero account); other currencies need a real one.
    let zero = issuer.is_none_or(|i| i == [0u8; 20]);
    let mut one = [0u8; 20];
    one[19] = 1;
    if native != zero || issuer == Some(one) {
        return Err(isr_err);
    }
    Ok(Issue {
        currency,
        issuer: if native {
            None
        } else {
            issuer.map(|i| encode_address(&i))
        },
    })
}

fn truthy(o: &Map<String, Value>, k: &str) -> bool {
    match o.get(k) {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|x| x != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        _ => false,
    }
}

/// One `books` entry → the keys it listens on; `Err` with rippled's error.
fn parse_book(entry: &Value, class: u8) -> Result<(Vec<SubscriptionKey>, bool), ErrorInfo> {
    let Some(o) = entry.as_object() else {
        return Err(INVALID_PARAMS);
    };
    let side_ok = |k: &str| matches!(o.get(k), Some(Value::Object(_)) | Some(Value::Null));
    if !side_ok("taker_pays") || !side_ok("taker_gets") {
        return Err(INVALID_PARAMS);
    }
    let pays = parse_issue(o.get("taker_pays"), SRC_CUR_MALFORMED, SRC_ISR_MALFORMED)?;
    let gets = parse_issue(o.get("taker_gets"), DST_AMT_MALFORMED, DST_ISR_MALFORMED)?;
    if pays == gets {
        return Err(BAD_MARKET);
    }
    if let Some(t) = o.get("taker") {
        if t.as_str().and_then(decode_address).is_none() {
            return Err(BAD_ISSUER);
        }
    }
    let domain = match o.get("domain") {
        None => None,
        Some(Value::String(d)) if d.len() == 64 && hex_decode(d).is_some() => {
            Some(d.to_ascii_uppercase())
        }
        Some(_) => return Err(DOMAIN_MALFORMED),
    };
    let mut keys = vec![key(
        class,
        "books",
        book_params(&pays, &gets, domain.as_deref()),
        false,
    )];
    if truthy(o, "both") || truthy(o, "both_sides") {
        keys.push(key(
            class,
            "books",
            book_params(&gets, &pays, domain.as_deref()),
            false,
        ));
    }
    let snapshot = truthy(o, "snapshot") || truthy(o, "state_now");
    Ok((keys, snapshot))
}

fn parse_set(req: &BTreeMap<String, &RawValue>, class: u8, subscribe: bool) -> SetRequest {
    let mut out = SetRequest {
        keys: Vec::new(),
        result_streams: Vec::new(),
        result_books: Vec::new(),
        error: None,
        refusal: None,
    };
    if req.contains_key("url") {
        out.error = Some(NO_PERMISSION);
        return out;
    }
    if let Some(v) = req.get("streams") {
        let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(v.get()) else {
            out.error = Some(INVALID_PARAMS);
            return out;
        };
        for item in items {
            let name = str_of(item).map(|s| {
                if s == "rt_transactions" {
                    "transactions_proposed".to_string()
                } else {
                    s
                }
            });
            // rippled has no unsubscribe branch for book_changes.
            let known = name.as_deref().and_then(|n| {
                STREAMS
                    .iter()
                    .find(|s| **s == n && (subscribe || n != "book_changes"))
            });
            let Some(&name) = known else {
                out.error = Some(MALFORMED_STREAM);
                return out;
            };
            if subscribe && (name == "ledger" || name == "server") {
                out.result_streams.push(name);
            }
            let flags = KeyFlags {
                solo: name == "peer_status",
                steady: name == "ledger",
                ..KeyFlags::default()
            };
            out.keys.push(SubscriptionKey::in_class(
                class,
                "streams",
                json_string(name),
                flags,
            ));
        }
    }
    let proposed = if req.contains_key("accounts_proposed") {
        "accounts_proposed"
    } else {
        "rt_accounts"
    };
    for (field, method) in [(proposed, "accounts_proposed"), ("accounts", "accounts")] {
        if let Some(v) = req.get(field) {
            match parse_accounts(v) {
                Ok(accounts) => out.keys.extend(
                    accounts
                        .into_iter()
                        .map(|a| key(class, method, json_string(&a), false)),
                ),
                Err(e) => {
                    out.error = Some(e);
                    return out;
                }
            }
        }
    }
    // submux's own text under rippled's notSupported token/code: the node has no such
    // refusal (these streams are per connection, which a shared upstream cannot be).
    for unsupported in ["account_history_tx_stream", "mpt_issuances"] {
        if req.contains_key(unsupported) {
            out.refusal = Some(format!(
                "{unsupported} is not available through submux (its streams are per \
                 connection and cannot be shared); connect to the node directly for it"
            ));
            return out;
        }
    }
    if let Some(v) = req.get("books") {
        let Ok(items) = serde_json::from_str::<Vec<Value>>(v.get()) else {
            out.error = Some(INVALID_PARAMS);
            return out;
        };
        for entry in &items {
            match parse_book(entry, class) {
                Ok((keys, snapshot)) => {
                    out.keys.extend(keys);
                    if subscribe && snapshot {
                        out.result_books
                            .push(serde_json::to_string(entry).unwrap_or_default());
                    }
                }
                Err(e) => {
                    out.error = Some(e);
                    return out;
                }
            }
        }
    }
    out
}

fn parse_ws(text: &str) -> ClientMsg {
    let req: BTreeMap<String, &RawValue> = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(_) => {
            // rippled: {"error":"jsonInvalid","type":"error","value":<the text>}
            return ClientMsg::Reply(format!(
                r#"{{"error":"jsonInvalid","type":"error","value":{}}}"#,
                json_string(text)
            ));
        }
    };
    let command = req.get("command").map(|v| str_of(v));
    let method = req.get("method").map(|v| str_of(v));
    let Some(class) = api_version(&req) else {
        return ClientMsg::Reply(envelope_error(&req, "invalid_API_version"));
    };
    let name = match (command, method) {
        (Some(Some(c)), None) | (None, Some(Some(c))) => c,
        (Some(Some(c)), Some(Some(m))) if c == m => c,
        _ => return ClientMsg::Reply(envelope_error(&req, "missingCommand")),
    };
    let id = req
        .get("id")
        .map_or_else(|| RequestId("".into()), |v| RequestId(v.get().into()));
    match name.as_str() {
        "subscribe" | "unsubscribe" => set_change(&req, id, class, name == "subscribe"),
        // submux's own text under rippled's notSupported token/code: the node has no such
        // refusal (it serves path_find per connection, which a shared upstream cannot).
        "path_find" => ClientMsg::Reply(request_error_text(
            &req,
            NOT_SUPPORTED.0,
            NOT_SUPPORTED.1,
            "path_find keeps per-connection state and is not available through submux; \
             use ripple_path_find, or connect to the node directly",
        )),
        _ => ClientMsg::Call {
            id: Some(id),
            call: Call {
                method: name.into(),
                params: Some(without_id(&req).into()),
                class: 0,
            },
        },
    }
}

fn set_change(
    req: &BTreeMap<String, &RawValue>,
    id: RequestId,
    class: u8,
    subscribe: bool,
) -> ClientMsg {
    let set = parse_set(req, class, subscribe);
    let then = if let Some(e) = set.error {
        Answer::Rendered(request_error(req, e))
    } else if let Some(msg) = &set.refusal {
        Answer::Rendered(request_error_text(
            req,
            NOT_SUPPORTED.0,
            NOT_SUPPORTED.1,
            msg,
        ))
    } else if !set.result_streams.is_empty() || !set.result_books.is_empty() {
        // Re-send the parts whose result carries data: the node answers with fresh
        // ledger/server fields and the client's own book snapshot.
        let mut m = BTreeMap::new();
        m.insert("command".to_string(), "\"subscribe\"".to_string());
        if let Some(v) = req.get("api_version") {
            m.insert("api_version".into(), v.get().to_string());
        }
        if !set.result_streams.is_empty() {
            let names: Vec<String> = set.result_streams.iter().map(|s| json_string(s)).collect();
            m.insert("streams".into(), format!("[{}]", names.join(",")));
        }
        if !set.result_books.is_empty() {
            m.insert("books".into(), format!("[{}]", set.result_books.join(",")));
        }
        Answer::Call(Call {
            method: "subscribe".into(),
            params: Some(render_object(&m).into()),
            class,
        })
    } else {
        Answer::Rendered(request_success(req, "{}"))
    };
    if subscribe {
        // For an error from the node: the envelope rippled builds around it.
        let mut envelope = echoed(req);
        envelope.insert("request".into(), echo_request(req, true));
        ClientMsg::Join {
            id,
            keys: set.keys,
            then,
            context: Some(render_object(&envelope).into()),
        }
    } else {
        let reply = match then {
            Answer::Rendered(r) => r,
            Answer::Call(_) => request_success(req, "{}"),
        };
        ClientMsg::Leave {
            keys: set.keys,
            reply,
        }
    }
}

/// rippled's HTTP JSON-RPC shape: `{"method": …, "params": [{…}]}`.
fn parse_http(text: &str) -> ClientMsg {
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        method: Option<&'a RawValue>,
        #[serde(borrow)]
        params: Option<&'a RawValue>,
    }
    let http_error = |token: &str, code: i64, message: &str| {
        ClientMsg::Reply(format!(
            r#"{{"result":{{"error":{},"error_code":{code},"error_message":{},"status":"error"}}}}"#,
            json_string(token),
            json_string(message)
        ))
    };
    let Ok(env) = serde_json::from_str::<Envelope>(text) else {
        return http_error(
            "invalidParams",
            31,
            "Unable to parse request: not a JSON object.",
        );
    };
    let Some(method) = env.method.and_then(str_of).filter(|m| !m.is_empty()) else {
        return http_error("missingCommand", 31, "Null method.");
    };
    let mut params: BTreeMap<String, &RawValue> = match env.params {
        None => BTreeMap::new(),
        Some(p) => match serde_json::from_str::<Vec<BTreeMap<String, &RawValue>>>(p.get()) {
            Ok(mut v) if v.len() == 1 => v.remove(0),
            _ => return http_error("invalidParams", 31, "params unparsable."),
        },
    };
    params.remove("id");
    if api_version(&params).is_none() {
        return http_error("invalid_API_version", 31, "invalid_API_version");
    }
    let command = RawValue::from_string(json_string(&method)).ok();
    let mut members: BTreeMap<String, String> = params
        .iter()
        .map(|(k, v)| (k.clone(), v.get().to_string()))
        .collect();
    if let Some(c) = &command {
        members.insert("command".into(), c.get().to_string());
    }
    // Over HTTP there is no InfoSub: rippled's Subscribe.cpp / Unsubscribe.cpp answer
    // rpcINVALID_PARAMS ("RPC subscribe requires a url"; a url needs ADMIN:
    // rpcNO_PERMISSION), and PathFind.cpp rpcINVALID_PARAMS without a string `subcommand`,
    // else rpcNO_EVENTS (texts: src/libxrpl/protocol/ErrorCodes.cpp).
    if matches!(method.as_str(), "subscribe" | "unsubscribe") {
        let (token, code, message) = if params.contains_key("url") {
            NO_PERMISSION
        } else {
            INVALID_PARAMS
        };
        return http_error(token, code, message);
    }
    if method == "path_find" {
        let (token, code, message) = if params.get("subcommand").and_then(|v| str_of(v)).is_some() {
            NO_EVENTS
        } else {
            INVALID_PARAMS
        };
        return http_error(token, code, message);
    }
    ClientMsg::Call {
        id: Some(RequestId("".into())),
        call: Call {
            method: method.into(),
            params: Some(render_object(&members).into()),
            class: 0,
        },
    }
}

// ---------------------------------------------------------------------------------------
// Upstream messages

#[derive(serde::Deserialize)]
struct UpEnvelope<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<&'a RawValue>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    #[serde(borrow)]
    status: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
    #[serde(borrow)]
    error_code: Option<&'a RawValue>,
    #[serde(borrow)]
    error_message: Option<&'a RawValue>,
}

fn stream_target(name: &str) -> (UpstreamSubId, Group) {
    (
        UpstreamSubId(format!("streams:\"{name}\"").into()),
        GROUP_STREAM,
    )
}

fn account_target(method: &str, account: &str) -> UpstreamSubId {
    UpstreamSubId(format!("{method}:\"{account}\"").into())
}

/// The entries of `meta.AffectedNodes` as (`CreatedNode`|`ModifiedNode`|`DeletedNode`, body).
fn affected_nodes(meta: &Value) -> impl Iterator<Item = (&str, &Value)> {
    meta.get("AffectedNodes")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter_map(|n| n.as_object()?.iter().next())
        .map(|(k, v)| (k.as_str(), v))
}

/// Accounts a validated transaction affects (rippled TxMeta::getAffectedAccounts): from
/// each AffectedNodes entry's NewFields (created) or FinalFields (modified, deleted),
/// every account field, the issuers of LowLimit/HighLimit/TakerPays/TakerGets and the
/// issuer inside MPTokenIssuanceID. PreviousFields and the transaction are not used.
pub fn affected_accounts(meta: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (kind, inner) in affected_nodes(meta) {
        let fields = if kind == "CreatedNode" {
            inner.get("NewFields")
        } else {
            inner.get("FinalFields")
        };
        let Some(fields) = fields.and_then(Value::as_object) else {
            continue;
        };
        for (name, v) in fields {
            if ACCOUNT_FIELDS.contains(&name.as_str()) {
                if let Some(a) = v.as_str() {
                    out.insert(a.to_string());
                }
            } else if matches!(
                name.as_str(),
                "LowLimit" | "HighLimit" | "TakerPays" | "TakerGets"
            ) {
                if let Some(i) = v.get("issuer").and_then(Value::as_str) {
                    if decode_address(i).is_some_and(|id| id != [0u8; 20]) {
                        out.insert(i.to_string());
                    }
                }
            } else if name == "MPTokenIssuanceID" {
                let account = v
                    .as_str()
                    .and_then(hex_decode)
                    .filter(|b| b.len() == 24 && b[4..].iter().any(|&x| x != 0));
                if let Some(b) = account {
                    let mut id = [0u8; 20];
                    id.copy_from_slice(&b[4..]);
                    out.insert(encode_address(&id));
                }
            }
        }
    }
    out
}

/// Accounts a proposed transaction mentions (rippled STTx::getMentionedAccounts): its
/// top-level account fields and the issuers of its non-XRP amounts.
pub fn mentioned_accounts(tx: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Some(fields) = tx.as_object() else {
        return out;
    };
    for (name, v) in fields {
        match v {
            Value::String(a) if ACCOUNT_FIELDS.contains(&name.as_str()) => {
                out.insert(a.clone());
            }
            Value::Object(o) if o.contains_key("currency") && o.contains_key("value") => {
                if let Some(i) = o.get("issuer").and_then(Value::as_str) {
                    if decode_address(i).is_some_and(|id| id != [0u8; 20]) {
                        out.insert(i.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Book keys a successful validated transaction touches (rippled OrderBookDB::processTxn):
/// per Offer node, PreviousFields (modified), NewFields (created) or FinalFields (deleted)
/// with both TakerGets and TakerPays; the listening subscription is
/// `{taker_pays: <TakerGets issue>, taker_gets: <TakerPays issue>}`.
pub fn touched_books(meta: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (kind, inner) in affected_nodes(meta) {
        if inner.get("LedgerEntryType").and_then(Value::as_str) != Some("Offer") {
            continue;
        }
        let fields = match kind {
            "ModifiedNode" => inner.get("PreviousFields"),
            "CreatedNode" => inner.get("NewFields"),
            "DeletedNode" => inner.get("FinalFields"),
            _ => None,
        };
        let Some(f) = fields else { continue };
        let (Some(gets), Some(pays)) = (
            f.get("TakerGets").and_then(Issue::of_amount),
            f.get("TakerPays").and_then(Issue::of_amount),
        ) else {
            continue;
        };
        // The domain lives in the full entry (NewFields or FinalFields).
        let domain = ["NewFields", "FinalFields"]
            .iter()
            .find_map(|k| inner.get(*k)?.get("DomainID")?.as_str());
        out.insert(book_params(&gets, &pays, domain));
    }
    out
}

/// Where a `transaction` stream message goes.
pub fn transaction_targets(msg: &Value) -> Vec<(UpstreamSubId, Group)> {
    let mut out = Vec::new();
    let validated = msg.get("validated").and_then(Value::as_bool) == Some(true);
    if validated {
        out.push((
            UpstreamSubId("streams:\"transactions\"".into()),
            GROUP_TRANSACTIONS,
        ));
    }
    out.push((
        UpstreamSubId("streams:\"transactions_proposed\"".into()),
        GROUP_TRANSACTIONS_PROPOSED,
    ));
    if validated {
        let meta = msg.get("meta").unwrap_or(&Value::Null);
        for a in affected_accounts(meta) {
            out.push((account_target("accounts", &a), GROUP_ACCOUNTS));
            out.push((account_target("accounts_proposed", &a), GROUP_ACCOUNTS));
        }
        let success = msg.get("engine_result").and_then(Value::as_str) == Some("tesSUCCESS")
            || meta.get("TransactionResult").and_then(Value::as_str) == Some("tesSUCCESS");
        if success {
            for b in touched_books(meta) {
                out.push((UpstreamSubId(format!("books:{b}").into()), GROUP_BOOKS));
            }
        }
    } else {
        let tx = msg
            .get("tx_json")
            .or_else(|| msg.get("transaction"))
            .unwrap_or(&Value::Null);
        for a in mentioned_accounts(tx) {
            out.push((account_target("accounts_proposed", &a), GROUP_ACCOUNTS));
        }
    }
    out
}

/// What makes one transaction message: hash, validated or not, and its ledger (a
/// re-proposal in a later open ledger is a new message).
pub fn transaction_identity(msg: &Value) -> String {
    let hash = msg
        .get("hash")
        .or_else(|| msg.get("transaction").and_then(|t| t.get("hash")))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let ledger = msg
        .get("ledger_index")
        .or_else(|| msg.get("ledger_current_index"))
        .map(Value::to_string)
        .unwrap_or_default();
    let validated = msg.get("validated").and_then(Value::as_bool) == Some(true);
    format!("{hash}/{validated}/{ledger}")
}

fn range_in(text: &str, inner: &RawValue) -> Range<usize> {
    super::subslice_range(text, inner.get())
}

impl Dialect for Xrpl {
    fn kind(&self) -> DialectKind {
        DialectKind::Xrpl
    }

    fn parse_client(&self, text: &str, transport: Transport) -> ClientFrame {
        ClientFrame::Single(match transport {
            Transport::WebSocket => parse_ws(text),
            Transport::Http => parse_http(text),
        })
    }

    fn mint_sub_id(&self) -> ClientSubId {
        // XRPL subscriptions have no ids; topics only need a placeholder.
        ClientSubId("null".into())
    }

    fn render_subscribed(&self, id: &RequestId, _sub: &ClientSubId) -> String {
        self.render_unsubscribed(id)
    }

    fn render_unsubscribed(&self, id: &RequestId) -> String {
        let mut m = BTreeMap::new();
        if !id.as_str().is_empty() {
            m.insert("id".to_string(), id.as_str().to_string());
        }
        m.insert("result".into(), "{}".into());
        m.insert("status".into(), "\"success\"".into());
        m.insert("type".into(), "\"response\"".into());
        render_object(&m)
    }

    fn render_error(&self, id: &RequestId, error: &RpcError) -> String {
        let fields = match error {
            RpcError::Raw(raw) => raw.clone(),
            RpcError::Std { message, .. } => error_fields("internal", 73, message),
        };
        let mut m: BTreeMap<String, String> =
            serde_json::from_str::<BTreeMap<String, &RawValue>>(&fields)
                .map(|f| {
                    f.into_iter()
                        .map(|(k, v)| (k, v.get().to_string()))
                        .collect()
                })
                .unwrap_or_default();
        if !id.as_str().is_empty() {
            m.insert("id".into(), id.as_str().into());
        }
        m.insert("status".into(), "\"error\"".into());
        m.insert("type".into(), "\"response\"".into());
        render_object(&m)
    }

    fn render_batch(&self, parts: &[String]) -> String {
        format!("[{}]", parts.join(","))
    }

    fn render_join_error(&self, id: &RequestId, context: Option<&str>, error: &RpcError) -> String {
        let plain = self.render_error(id, error);
        let Some(ctx) = context else {
            return plain;
        };
        // Merge raw members: the error's fields plus the request's envelope and echo.
        let raw = |t: &str| -> Option<BTreeMap<String, String>> {
            serde_json::from_str::<BTreeMap<String, &RawValue>>(t)
                .ok()
                .map(|m| {
                    m.into_iter()
                        .map(|(k, v)| (k, v.get().to_string()))
                        .collect()
                })
        };
        match (raw(&plain), raw(ctx)) {
            (Some(mut m), Some(c)) => {
                m.extend(c);
                render_object(&m)
            }
            _ => plain,
        }
    }

    fn render_upstream_subscribe(&self, keys: &[&SubscriptionKey], req: UpstreamReqId) -> String {
        render_set_request("subscribe", keys.iter().copied(), req)
    }

    fn render_upstream_unsubscribe(
        &self,
        items: &[(&SubscriptionKey, &UpstreamSubId)],
        req: UpstreamReqId,
    ) -> Option<String> {
        // book_changes cannot be unsubscribed on rippled; it stays until the connection ends.
        let keys: Vec<&SubscriptionKey> = items
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| !(k.method() == "streams" && k.params() == "\"book_changes\""))
            .collect();
        (!keys.is_empty()).then(|| render_set_request("unsubscribe", keys.into_iter(), req))
    }

    fn render_upstream_call(&self, call: &Call, req: Option<UpstreamReqId>) -> String {
        let body = call.params.as_deref().unwrap_or("{}");
        let rest = body.strip_prefix('{').unwrap_or(body).trim_start();
        let id = req.map_or_else(|| "null".to_string(), |r| r.0.to_string());
        if rest.starts_with('}') {
            format!("{{\"id\":{id}}}")
        } else {
            format!("{{\"id\":{id},{rest}")
        }
    }

    fn subscribe_batch_max(&self) -> usize {
        BATCH
    }

    fn parse_upstream(&self, text: &str) -> UpstreamFrame {
        let env: UpEnvelope = match serde_json::from_str(text) {
            Ok(e) => e,
            Err(e) => return UpstreamFrame::Malformed(e.to_string()),
        };
        let kind = env.kind.and_then(str_of);
        if kind.as_deref() == Some("response") || (env.status.is_some() && env.id.is_some()) {
            let Some(id_raw) = env.id else {
                return UpstreamFrame::Other;
            };
            let Ok(id) = id_raw.get().parse::<u64>() else {
                return UpstreamFrame::Other;
            };
            let success = env.status.and_then(str_of).as_deref() == Some("success");
            let outcome = match (success, env.result) {
                (true, Some(r)) => Ok(range_in(text, r)),
                _ => Err(error_fields(
                    &env.error
                        .and_then(str_of)
                        .unwrap_or_else(|| "unknown".into()),
                    env.error_code
                        .and_then(|c| c.get().parse().ok())
                        .unwrap_or(0),
                    &env.error_message.and_then(str_of).unwrap_or_default(),
                )),
            };
            return UpstreamFrame::Response {
                id: UpstreamReqId(id),
                id_range: range_in(text, id_raw),
                outcome,
            };
        }
        let mut identity = None;
        let targets = match kind.as_deref() {
            Some("ledgerClosed") => vec![stream_target("ledger")],
            Some("validationReceived") => vec![stream_target("validations")],
            Some("serverStatus") => vec![stream_target("server")],
            Some("bookChanges") => vec![stream_target("book_changes")],
            Some("manifestReceived") => vec![stream_target("manifests")],
            Some("consensusPhase") => vec![stream_target("consensus")],
            Some("peerStatusChange") => vec![stream_target("peer_status")],
            Some("transaction") => match serde_json::from_str::<Value>(text) {
                Ok(v) => {
                    identity = Some(transaction_identity(&v).into());
                    transaction_targets(&v)
                }
                Err(e) => return UpstreamFrame::Malformed(e.to_string()),
            },
            _ => return UpstreamFrame::Other,
        };
        UpstreamFrame::Routed { targets, identity }
    }

    fn parse_subscribe_result(
        &self,
        key: &SubscriptionKey,
        _result: &str,
    ) -> Option<UpstreamSubId> {
        Some(UpstreamSubId(
            format!("{}:{}", key.method(), key.params()).into(),
        ))
    }

    fn splice_id(&self, text: &str, id_range: Range<usize>, id: &RequestId) -> String {
        // An error echoes the request, whose `id` is ours too: restore it there first
        // (it lies after the top-level id, so the first range stays valid).
        let mut text = std::borrow::Cow::Borrowed(text);
        if let Some(r) = echoed_request_id(&text, id_range.end) {
            text = std::borrow::Cow::Owned(if id.as_str().is_empty() {
                remove_member(&text, r)
            } else {
                super::splice(&text, r, id.as_str())
            });
        }
        if id.as_str().is_empty() {
            remove_member(&text, id_range)
        } else {
            super::splice(&text, id_range, id.as_str())
        }
    }

    fn http_reply(&self, reply: String) -> String {
        to_http_shape(&reply).unwrap_or(reply)
    }

    fn height(&self, text: &str) -> Option<u64> {
        if !text.contains("\"ledgerClosed\"") {
            return None; // cheap filter: only ledger closes carry the height
        }
        // Borrowed fields only: no tree, no allocation; everything else is skipped.
        #[derive(serde::Deserialize)]
        struct Closed<'a> {
            #[serde(rename = "type", borrow, default)]
            kind: Option<&'a str>,
            #[serde(default)]
            ledger_index: Option<u64>,
        }
        let c: Closed = serde_json::from_str(text).ok()?;
        (c.kind? == "ledgerClosed")
            .then_some(c.ledger_index)
            .flatten()
    }

    fn render_gap(
        &self,
        _sub: &ClientSubId,
        from: Option<u64>,
        to: Option<u64>,
    ) -> Option<(String, Range<usize>)> {
        let frame = format!(
            r#"{{"type":"submuxGap","ledger_index_min":{},"ledger_index_max":{},"reason":"upstream connection replaced; ledgers in this range may have been missed"}}"#,
            super::opt_num(from),
            super::opt_num(to)
        );
        Some((frame, 0..0))
    }

    /// Conditions submux detects, as the rippled entries that mean the same to a client
    /// (`src/libxrpl/protocol/ErrorCodes.cpp`): no upstream or a lost one is rippled's
    /// `noNetwork`, an unanswered request or shutdown `tooBusy`, a submux limit
    /// `slowDown` (the node's own token and code for "you asked too much"), a route that
    /// cannot serve the request `notSupported`. A limit's message is submux's own text,
    /// naming the limit (and the API key when it is a key's): rippled has no such
    /// per-connection limits, and a client must be able to tell which one it hit.
    fn error_for(&self, cond: Condition) -> RpcError {
        let (token, code, message) = match cond {
            Condition::UpstreamUnavailable | Condition::UpstreamLost => NO_NETWORK,
            Condition::UpstreamTimeout | Condition::ShuttingDown => TOO_BUSY,
            Condition::LimitExceeded(what) => {
                let (token, code, _) = SLOW_DOWN;
                let message = format!("Limit exceeded: {what}.");
                return RpcError::Raw(error_fields(token, code, &message));
            }
            Condition::SubscriptionNotFound | Condition::NoHttpUpstream => NOT_SUPPORTED,
        };
        let message = message.to_string();
        RpcError::Raw(error_fields(token, code, &message))
    }
}

fn render_set_request<'a>(
    command: &str,
    keys: impl Iterator<Item = &'a SubscriptionKey>,
    req: UpstreamReqId,
) -> String {
    let mut by_method: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut class = 1;
    for k in keys {
        class = k.class();
        by_method.entry(k.method()).or_default().push(k.params());
    }
    let mut m = BTreeMap::new();
    m.insert("api_version".to_string(), class.to_string());
    m.insert("command".into(), json_string(command));
    m.insert("id".into(), req.0.to_string());
    for (method, params) in by_method {
        m.insert(method.to_string(), format!("[{}]", params.join(",")));
    }
    render_object(&m)
}

/// Where the `id` inside an echoed `request` object sits (error responses only).
fn echoed_request_id(text: &str, after: usize) -> Option<Range<usize>> {
    if !text.contains("\"status\":\"error\"") {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct WithRequest<'a> {
        #[serde(borrow)]
        request: Option<&'a RawValue>,
    }
    #[derive(serde::Deserialize)]
    struct WithId<'a> {
        #[serde(borrow)]
        id: Option<&'a RawValue>,
    }
    let outer: WithRequest = serde_json::from_str(text).ok()?;
    let request = outer.request?;
    let inner: WithId = serde_json::from_str(request.get()).ok()?;
    let id = inner.id?;
    let r = super::subslice_range(text, id.get());
    // The echoed id must not be the top-level one (keys are sorted: "id" < "request").
    (r.start >= after).then_some(r)
}

/// Remove the member whose value sits at `value` (`"id":…` and one adjoining comma).
fn remove_member(text: &str, value: Range<usize>) -> String {
    let before = &text[..value.start];
    let Some(key_start) = before.rfind("\"id\"") else {
        return text.to_string();
    };
    let mut start = key_start;
    let mut end = value.end;
    let rest = &text[end..];
    let trimmed = rest.trim_start();
    if trimmed.starts_with(',') {
        end += rest.len() - trimmed.len() + 1;
    } else if let Some(comma) = text[..start].rfind(',') {
        if text[comma + 1..start].trim().is_empty() {
            start = comma;
        }
    }
    format!("{}{}", &text[..start], &text[end..])
}

/// A WebSocket-shaped response in rippled's HTTP JSON-RPC shape: `{"result":{…,"status"}}`
/// (errors keep their fields and echoed request inside `result`). `None` if already HTTP.
fn to_http_shape(reply: &str) -> Option<String> {
    let m: BTreeMap<String, &RawValue> = serde_json::from_str(reply).ok()?;
    if m.get("type").and_then(|t| str_of(t)).as_deref() != Some("response") {
        return None;
    }
    let status = m.get("status")?.get().to_string();
    let mut inner: BTreeMap<String, String> = match m.get("result") {
        Some(r) if status == "\"success\"" => {
            serde_json::from_str::<BTreeMap<String, &RawValue>>(r.get())
                .ok()?
                .into_iter()
                .map(|(k, v)| (k, v.get().to_string()))
                .collect()
        }
        _ => m
            .iter()
            .filter(|(k, _)| !ECHOED.contains(&k.as_str()) && k.as_str() != "type")
            .map(|(k, v)| (k.clone(), v.get().to_string()))
            .collect(),
    };
    inner.insert("status".into(), status);
    Some(format!("{{\"result\":{}}}", render_object(&inner)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/xrpl");
    const ALICE: &str = "rH3PxjJPrrkvsATddBXkayjAyWR8xigaE8";
    const BOB: &str = "rfdGuuVnq9juqWDV4W3LoLiNcW8g2hAXhN";

    fn fixture(name: &str) -> Value {
        let text = std::fs::read_to_string(format!("{FIXTURES}/{name}"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    fn ws(text: &str) -> ClientMsg {
        match Xrpl.parse_client(text, Transport::WebSocket) {
            ClientFrame::Single(m) => m,
            other => panic!("{other:?}"),
        }
    }

    fn reply_of(msg: &ClientMsg) -> String {
        match msg {
            ClientMsg::Reply(r) => r.clone(),
            ClientMsg::Join {
                then: Answer::Rendered(r),
                ..
            } => r.clone(),
            ClientMsg::Leave { reply, .. } => reply.clone(),
            other => panic!("no rendered reply: {other:?}"),
        }
    }

    fn json(s: &str) -> Value {
        serde_json::from_str(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn fixture_exchanges_are_reproduced() {
        let cases = fixture("exchanges.json");
        for case in cases.as_array().unwrap() {
            let note = case["note"].as_str().unwrap();
            let request = serde_json::to_string(&case["request"]).unwrap();
            let msg = ws(&request);
            if let ClientMsg::Call { .. } = msg {
                // Unknown commands go to the node, which knows its own command set.
                assert!(note.contains("unknown command"), "{note}: forwarded");
                continue;
            }
            let got = reply_of(&msg);
            assert_eq!(json(&got), case["response"], "{note}: {got}");
        }
    }

    #[test]
    fn rendered_keys_are_sorted_and_ids_exact() {
        let got = reply_of(&ws(
            r#"{"id":"sub_1","command":"subscribe","accounts":[],"api_version":2}"#,
        ));
        assert_eq!(
            got,
            r#"{"api_version":2,"error":"actMalformed","error_code":35,"error_message":"Account malformed.","id":"sub_1","request":{"accounts":[],"api_version":2,"command":"subscribe","id":"sub_1"},"status":"error","type":"response"}"#
        );
        let got = reply_of(&ws(
            r#"{"id":7,"command":"subscribe","accounts":["rH3PxjJPrrkvsATddBXkayjAyWR8xigaE8"],"api_version":2}"#,
        ));
        assert_eq!(json(&got), fixture("subscribe_accounts_response.json"));
        assert_eq!(
            got,
            r#"{"api_version":2,"id":7,"result":{},"status":"success","type":"response"}"#
        );
    }

    #[test]
    fn subscribe_keys_are_per_item_and_per_api_version() {
        let ClientMsg::Join { keys, then, id, .. } = ws(&format!(
            r#"{{"id":1,"command":"subscribe","streams":["transactions","rt_transactions"],"accounts":["{ALICE}","{BOB}"],"rt_accounts":["{ALICE}"],"api_version":2}}"#
        )) else {
            panic!()
        };
        assert_eq!(id.as_str(), "1");
        assert!(matches!(then, Answer::Rendered(_)));
        let names: Vec<String> = keys.iter().map(|k| format!("{k:?}")).collect();
        assert_eq!(
            names,
            [
                "v2:streams\"transactions\"",
                "v2:streams\"transactions_proposed\"",
                &format!("v2:accounts_proposed\"{ALICE}\""),
                &format!("v2:accounts\"{ALICE}\""),
                &format!("v2:accounts\"{BOB}\""),
            ]
        );
        // Default API version 1 is another class: never the same key.
        let ClientMsg::Join { keys: v1, .. } = ws(&format!(
            r#"{{"id":1,"command":"subscribe","accounts":["{ALICE}"]}}"#
        )) else {
            panic!()
        };
        assert_eq!(v1[0].class(), 1);
        assert_ne!(v1[0], keys[3]);
    }

    #[test]
    fn an_error_part_way_keeps_the_earlier_parts() {
        let msg = ws(&format!(
            r#"{{"id":1,"command":"subscribe","streams":["ledger"],"accounts":["{ALICE}","rBad"]}}"#
        ));
        let ClientMsg::Join { keys, then, .. } = &msg else {
            panic!()
        };
        assert_eq!(keys.len(), 1, "ledger stays subscribed, as on rippled");
        let Answer::Rendered(r) = then else { panic!() };
        assert!(r.contains("actMalformed"), "{r}");
    }

    #[test]
    fn ledger_server_and_snapshots_ask_the_node_again() {
        let ClientMsg::Join { then, keys, .. } = ws(
            r#"{"id":3,"command":"subscribe","streams":["ledger","transactions"],"books":[{"taker_pays":{"currency":"XRP"},"taker_gets":{"currency":"usd","issuer":"rhub8VRN55s94qWKDv6jmDy1pUykJzF3wq"},"snapshot":true,"both":true}],"api_version":2}"#,
        ) else {
            panic!()
        };
        assert_eq!(
            keys.len(),
            4,
            "ledger, transactions, the book and its reverse"
        );
        assert_eq!(
            keys[2].params(),
            r#"{"taker_gets":{"currency":"USD","issuer":"rhub8VRN55s94qWKDv6jmDy1pUykJzF3wq"},"taker_pays":{"currency":"XRP"}}"#
        );
        let Answer::Call(call) = then else { panic!() };
        assert_eq!(call.class, 2);
        assert_eq!(
            Xrpl.render_upstream_call(&call, Some(UpstreamReqId(9))),
            r#"{"id":9,"api_version":2,"books":[{"both":true,"snapshot":true,"taker_gets":{"currency":"usd","issuer":"rhub8VRN55s94qWKDv6jmDy1pUykJzF3wq"},"taker_pays":{"currency":"XRP"}}],"command":"subscribe","streams":["ledger"]}"#
        );
    }

    #[test]
    fn book_errors_follow_rippled() {
        let cases = [
            (
                r#"{"taker_pays":{"currency":"XRP"},"taker_gets":{"currency":"XRP"}}"#,
                "badMarket",
            ),
            (
                r#"{"taker_pays":{"currency":"XRPP"},"taker_gets":{"currency":"XRP"}}"#,
                "srcCurMalformed",
            ),
            (
                r#"{"taker_pays":{"currency":"USD"},"taker_gets":{"currency":"XRP"}}"#,
                "srcIsrMalformed",
            ),
            (
                r#"{"taker_pays":{"currency":"XRP","issuer":"rhub8VRN55s94qWKDv6jmDy1pUykJzF3wq"},"taker_gets":{"currency":"USD"}}"#,
                "srcIsrMalformed",
            ),
            (
                r#"{"taker_pays":{"currency":"XRP"},"taker_gets":{}}"#,
                "dstAmtMalformed",
            ),
            (
                r#"{"taker_pays":{"currency":"XRP"},"taker_gets":{"currency":"USD"}}"#,
                "dstIsrMalformed",
            ),
            (
                r#"{"taker_pays":{"currency":"XRP"},"taker_gets":{"currency":"USD","issuer":"rhub8VRN55s94qWKDv6jmDy1pUykJzF3wq"},"taker":"x"}"#,
                "badIssuer",
            ),
            (
                r#"{"taker_pays":"XRP","taker_gets":{"currency":"USD"}}"#,
                "invalidParams",
            ),
        ];
        for (book, want) in cases {
            let r = reply_of(&ws(&format!(
                r#"{{"id":1,"command":"subscribe","books":[{book}]}}"#
            )));
            assert_eq!(json(&r)["error"], want, "{book}: {r}");
        }
    }

    #[test]
    fn envelope_errors() {
        let r = reply_of(&ws(r#"{"id":1,"command":"ping","api_version":9}"#));
        assert_eq!(
            r,
            r#"{"api_version":9,"error":"invalid_API_version","id":1,"request":{"api_version":9,"command":"ping","id":1},"status":"error","type":"response"}"#
        );
        let r = reply_of(&ws("[1]"));
        assert_eq!(r, r#"{"error":"jsonInvalid","type":"error","value":"[1]"}"#);
        let r = reply_of(&ws(r#"{"command":"path_find","subcommand":"create"}"#));
        assert!(
            r.contains("notSupported") && r.contains("ripple_path_find"),
            "{r}"
        );
        assert!(!r.contains("\"id\""), "no id in, no id out: {r}");
        let r = reply_of(&ws(r#"{"id":1,"command":"subscribe","url":"http://x"}"#));
        assert!(r.contains("noPermission"), "{r}");
        let r = reply_of(&ws(
            r#"{"id":1,"command":"subscribe","account_history_tx_stream":{}}"#,
        ));
        assert!(r.contains("not available through submux"), "{r}");
    }

    #[test]
    fn calls_forward_everything_but_the_id() {
        let ClientMsg::Call { id, call } = ws(&format!(
            r#"{{"id":"account_info_42","command":"account_info","account":"{ALICE}","api_version":2,"secret":"s"}}"#
        )) else {
            panic!()
        };
        assert_eq!(id.unwrap().as_str(), "\"account_info_42\"");
        let up = Xrpl.render_upstream_call(&call, Some(UpstreamReqId(5)));
        assert_eq!(
            up,
            format!(
                r#"{{"id":5,"account":"{ALICE}","api_version":2,"command":"account_info","secret":"s"}}"#
            )
        );
        // The answer gets the client's id back, at the top and inside an echoed request.
        let answer = r#"{"api_version":2,"error":"actNotFound","error_code":19,"error_message":"Account not found.","id":5,"request":{"account":"x","api_version":2,"command":"account_info","id":5,"secret":"<masked>"},"status":"error","type":"response"}"#;
        let UpstreamFrame::Response { id_range, .. } = Xrpl.parse_upstream(answer) else {
            panic!()
        };
        let out = Xrpl.splice_id(answer, id_range.clone(), &RequestId("\"a_1\"".into()));
        assert_eq!(json(&out)["id"], "a_1");
        assert_eq!(json(&out)["request"]["id"], "a_1");
        // No id in the request: none in the answer.
        let out = Xrpl.splice_id(answer, id_range, &RequestId("".into()));
        let v = json(&out);
        assert!(
            v.get("id").is_none() && v["request"].get("id").is_none(),
            "{out}"
        );
        let ok = r#"{"id":5,"result":{"info":{}},"status":"success","type":"response"}"#;
        let UpstreamFrame::Response { id_range, .. } = Xrpl.parse_upstream(ok) else {
            panic!()
        };
        assert_eq!(
            Xrpl.splice_id(ok, id_range, &RequestId("".into())),
            r#"{"result":{"info":{}},"status":"success","type":"response"}"#
        );
    }

    #[test]
    fn upstream_set_requests_batch_and_skip_book_changes() {
        let a = key(2, "accounts", json_string(ALICE), false);
        let l = key(2, "streams", "\"ledger\"".into(), false);
        let bc = key(2, "streams", "\"book_changes\"".into(), false);
        assert_eq!(
            Xrpl.render_upstream_subscribe(&[&a, &l, &bc], UpstreamReqId(3)),
            format!(
                r#"{{"accounts":["{ALICE}"],"api_version":2,"command":"subscribe","id":3,"streams":["ledger","book_changes"]}}"#
            )
        );
        let up = UpstreamSubId("x".into());
        assert_eq!(
            Xrpl.render_upstream_unsubscribe(&[(&bc, &up)], UpstreamReqId(4)),
            None
        );
        assert_eq!(
            Xrpl.render_upstream_unsubscribe(&[(&bc, &up), (&l, &up)], UpstreamReqId(4)),
            Some(r#"{"api_version":2,"command":"unsubscribe","id":4,"streams":["ledger"]}"#.into())
        );
        // The route id of a key is what routing names.
        assert_eq!(
            Xrpl.parse_subscribe_result(&a, "{}").unwrap().0.as_ref(),
            format!("accounts:\"{ALICE}\"")
        );
    }

    fn routed(v: &Value) -> Vec<(String, u8)> {
        let text = serde_json::to_string(v).unwrap();
        let UpstreamFrame::Routed { targets, .. } = Xrpl.parse_upstream(&text) else {
            panic!("not routed: {text}")
        };
        targets
            .into_iter()
            .map(|(u, g)| (u.0.to_string(), g.0))
            .collect()
    }

    #[test]
    fn validated_payment_routes_to_both_accounts_in_both_api_shapes() {
        for f in [
            "transaction_validated_payment_api_v1.json",
            "transaction_validated_payment_api_v2.json",
        ] {
            let t = routed(&fixture(f));
            let want: Vec<(String, u8)> = vec![
                ("streams:\"transactions\"".into(), 0),
                ("streams:\"transactions_proposed\"".into(), 1),
                (format!("accounts:\"{ALICE}\""), 2),
                (format!("accounts_proposed:\"{ALICE}\""), 2),
                (format!("accounts:\"{BOB}\""), 2),
                (format!("accounts_proposed:\"{BOB}\""), 2),
            ];
            let mut got = t.clone();
            got.sort();
            let mut want = want;
            want.sort();
            assert_eq!(got, want, "{f}");
        }
    }

    #[test]
    fn proposed_payment_routes_by_mentioned_accounts() {
        let t = routed(&fixture("transaction_proposed_payment_api_v2.json"));
        let mut got = t;
        got.sort();
        let mut want = vec![
            ("streams:\"transactions_proposed\"".to_string(), 1),
            (format!("accounts_proposed:\"{ALICE}\""), 2),
            (format!("accounts_proposed:\"{BOB}\""), 2),
        ];
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn stream_messages_route_by_type() {
        assert_eq!(
            routed(&fixture("ledgerClosed.json")),
            [("streams:\"ledger\"".to_string(), 4)]
        );
        assert!(matches!(
            Xrpl.parse_upstream(r#"{"type":"path_find","id":1}"#),
            UpstreamFrame::Other
        ));
    }

    #[test]
    fn affected_accounts_follow_txmeta() {
        let meta = json(&format!(
            r#"{{"AffectedNodes":[
              {{"ModifiedNode":{{"LedgerEntryType":"RippleState","FinalFields":{{"LowLimit":{{"currency":"USD","issuer":"{ALICE}","value":"0"}},"HighLimit":{{"currency":"USD","issuer":"{BOB}","value":"10"}}}},"PreviousFields":{{"Account":"rhub8VRN55s94qWKDv6jmDy1pUykJzF3wq"}}}}}},
              {{"CreatedNode":{{"LedgerEntryType":"MPTokenIssuance","NewFields":{{"MPTokenIssuanceID":"00000001B5F762798A53D543A014CAF8B297CFF8F2F937E8"}}}}}}
            ],"TransactionResult":"tesSUCCESS"}}"#
        ));
        let got = affected_accounts(&meta);
        let issuer = encode_address(
            &hex_decode("B5F762798A53D543A014CAF8B297CFF8F2F937E8")
                .unwrap()
                .try_into()
                .unwrap(),
        );
        let want: BTreeSet<String> = [ALICE.to_string(), BOB.to_string(), issuer].into();
        assert_eq!(got, want, "PreviousFields are ignored");
    }

    #[test]
    fn offers_route_to_the_book_that_listens() {
        let usd = r#"{"currency":"USD","issuer":"rhub8VRN55s94qWKDv6jmDy1pUykJzF3wq","value":"1"}"#;
        let msg = json(&format!(
            r#"{{"type":"transaction","validated":true,"engine_result":"tesSUCCESS","meta":{{"TransactionResult":"tesSUCCESS","AffectedNodes":[{{"CreatedNode":{{"LedgerEntryType":"Offer","NewFields":{{"Account":"{ALICE}","TakerGets":"1000","TakerPays":{usd}}}}}}}]}}}}"#
        ));
        let t = routed(&msg);
        // TakerGets XRP, TakerPays USD → the subscription {taker_pays: XRP, taker_gets: USD}.
        let ClientMsg::Join { keys, .. } = ws(
            r#"{"id":1,"command":"subscribe","books":[{"taker_pays":{"currency":"XRP"},"taker_gets":{"currency":"USD","issuer":"rhub8VRN55s94qWKDv6jmDy1pUykJzF3wq"}}]}"#,
        ) else {
            panic!()
        };
        let route = Xrpl.parse_subscribe_result(&keys[0], "{}").unwrap();
        assert!(
            t.contains(&(route.0.to_string(), 3)),
            "{t:?} lacks {}",
            route.0
        );
        // A failed transaction touches no book.
        let mut failed = msg.clone();
        failed["engine_result"] = "tecUNFUNDED_OFFER".into();
        failed["meta"]["TransactionResult"] = "tecUNFUNDED_OFFER".into();
        assert!(!routed(&failed).iter().any(|(_, g)| *g == 3));
    }

    /// rippled's answers over HTTP, where there is no InfoSub (Subscribe.cpp,
    /// Unsubscribe.cpp, PathFind.cpp; texts from ErrorCodes.cpp).
    #[test]
    fn http_evented_commands_in_rippleds_words() {
        let cases = [
            (
                r#"{"method":"subscribe","params":[{"streams":["ledger"]}]}"#,
                "invalidParams",
                31,
                "Invalid parameters.",
            ),
            (
                r#"{"method":"unsubscribe","params":[{"streams":["ledger"]}]}"#,
                "invalidParams",
                31,
                "Invalid parameters.",
            ),
            (
                r#"{"method":"subscribe","params":[{"url":"http://x"}]}"#,
                "noPermission",
                6,
                "You don't have permission for this command.",
            ),
            (
                r#"{"method":"path_find","params":[{"subcommand":"create"}]}"#,
                "noEvents",
                7,
                "Current transport does not support events.",
            ),
            (
                r#"{"method":"path_find","params":[{}]}"#,
                "invalidParams",
                31,
                "Invalid parameters.",
            ),
        ];
        for (req, token, code, message) in cases {
            let ClientFrame::Single(ClientMsg::Reply(r)) = Xrpl.parse_client(req, Transport::Http)
            else {
                panic!("{req}")
            };
            let v: Value = serde_json::from_str(&r).unwrap();
            assert_eq!(v["result"]["error"], token, "{req}");
            assert_eq!(v["result"]["error_code"], code, "{req}");
            assert_eq!(v["result"]["error_message"], message, "{req}");
        }
        let text = |c| match Xrpl.error_for(c) {
            RpcError::Raw(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            text(Condition::UpstreamUnavailable),
            r#"{"error":"noNetwork","error_code":17,"error_message":"Not synced to the network."}"#
        );
        assert_eq!(
            text(Condition::LimitExceeded(
                "max 2 subscriptions per connection".into()
            )),
            r#"{"error":"slowDown","error_code":10,"error_message":"Limit exceeded: max 2 subscriptions per connection."}"#
        );
        assert_eq!(
            text(Condition::UpstreamTimeout),
            r#"{"error":"tooBusy","error_code":9,"error_message":"The server is too busy to help you now."}"#
        );
    }

    #[test]
    fn http_shape_round_trip() {
        let ClientMsg::Call { call, id } = (match Xrpl.parse_client(
            &format!(r#"{{"method":"account_info","params":[{{"account":"{ALICE}"}}]}}"#),
            Transport::Http,
        ) {
            ClientFrame::Single(m) => m,
            _ => panic!(),
        }) else {
            panic!()
        };
        assert_eq!(
            Xrpl.render_upstream_call(&call, Some(UpstreamReqId(2))),
            format!(r#"{{"id":2,"account":"{ALICE}","command":"account_info"}}"#)
        );
        let ws_answer = r#"{"id":2,"result":{"account_data":{},"validated":true},"status":"success","type":"response"}"#;
        let spliced = Xrpl.splice_id(ws_answer, 6..7, &id.unwrap());
        assert_eq!(
            Xrpl.http_reply(spliced),
            r#"{"result":{"account_data":{},"status":"success","validated":true}}"#
        );
        let err = r#"{"error":"actNotFound","error_code":19,"error_message":"Account not found.","request":{"account":"x","command":"account_info"},"status":"error","type":"response"}"#;
        assert_eq!(
            Xrpl.http_reply(err.into()),
            r#"{"result":{"error":"actNotFound","error_code":19,"error_message":"Account not found.","request":{"account":"x","command":"account_info"},"status":"error"}}"#
        );
    }

    #[test]
    fn addresses_and_currencies() {
        assert!(decode_address(ALICE).is_some());
        assert!(decode_address("rNotAnAddress").is_none());
        assert_eq!(encode_address(&decode_address(BOB).unwrap()), BOB);
        assert_eq!(canonical_currency("usd").as_deref(), Some("USD"));
        assert_eq!(
            canonical_currency("0000000000000000000000005553440000000000").as_deref(),
            Some("USD")
        );
        assert_eq!(canonical_currency("").as_deref(), Some("XRP"));
        assert_eq!(canonical_currency("EURO"), None);
    }

    #[test]
    fn height_reads_ledger_closes_only() {
        let d = Xrpl::new();
        let closed = r#"{"fee_base":10,"ledger_hash":"AB","ledger_index":7,"ledger_time":1,"type":"ledgerClosed","validated_ledgers":"1-7"}"#;
        assert_eq!(d.height(closed), Some(7));
        let tx = r#"{"type":"transaction","ledger_index":7,"meta":{"x":"ledgerClosed"}}"#;
        assert_eq!(d.height(tx), None);
        assert_eq!(d.height(r#"{"type":"ledgerClosed"}"#), None);
    }
}
