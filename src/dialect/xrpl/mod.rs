//! XRP Ledger (rippled) WebSocket commands: pure parsing, routing and rendering.
//!
//! rippled has no subscription ids: a connection holds a *set* of streams, accounts and
//! order books, and every push is routed by its content. So each stream, account and book
//! is a key of its own (`streams:"ledger"`, `accounts:"r…"`, `accounts_proposed:"r…"`,
//! `books:{…}`), a client subscribe joins a set of keys, and each upstream message names
//! the keys it belongs to (a [`UpstreamFrame::Notification`] without an id range) with the delivery group rippled
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
    KeyFlags, RequestId, Routing, RpcError, SubscriptionKey, Transport, UpstreamFrame,
    UpstreamReqId, UpstreamSubId,
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

mod addresses;
pub mod cache;
mod requests;
mod routing;
#[cfg(test)]
mod tests;

use addresses::*;
pub use addresses::{decode_address, encode_address};
use requests::*;
pub(crate) use requests::{json_string, request_error_text, request_success};
use routing::*;
pub use routing::{
    affected_accounts, mentioned_accounts, touched_books, transaction_identity, transaction_targets,
};

fn range_in(text: &str, inner: &RawValue) -> Range<usize> {
    super::subslice_range(text, inner.get())
}

/// Commands that only read (rippled's public read handlers): identical ones in flight
/// together are sent once. `submit`, `sign`, `path_find` and admin commands never are.
const READS: &[&str] = &[
    "account_info",
    "account_lines",
    "account_objects",
    "account_offers",
    "account_tx",
    "book_offers",
    "fee",
    "ledger",
    "ledger_closed",
    "ledger_current",
    "ledger_entry",
    "server_info",
    "server_state",
    "tx",
];

impl Dialect for Xrpl {
    fn coalesce_key(&self, call: &Call) -> Option<Box<str>> {
        super::read_call_key(call, READS)
    }

    fn cache_rules(&self) -> Option<&'static dyn super::cache::Rules> {
        Some(&cache::XrplRules)
    }

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

    fn render_subscribe_error(
        &self,
        id: &RequestId,
        context: Option<&str>,
        error: &RpcError,
    ) -> String {
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

    fn routing(&self) -> Routing {
        Routing::ByContent
    }

    fn backfills(&self, key: &SubscriptionKey) -> bool {
        super::backfill::xrpl::supported(key)
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
        UpstreamFrame::Notification {
            targets,
            id_range: None,
            is_final: false,
            identity,
        }
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

    fn identity(&self, text: &str) -> Option<super::identity::Ident> {
        super::identity::xrpl(text)
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
