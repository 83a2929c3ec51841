//! Protocol knowledge only: parsing and rendering of client and upstream frames.
//!
//! Nothing in this module tree awaits, spawns or touches a socket (enforced by
//! `tests/invariants.rs`). Each dialect exposes the same items through the
//! [`Dialect`] trait, so the session, hub and upstream actor are dialect-agnostic.

mod agave_params;
pub mod backfill;
pub mod base58;
pub mod cache;
pub mod ethereum;
pub mod identity;
pub mod jsonrpc;
pub mod lnbits;
pub mod solana;
pub mod xrpl;

#[cfg(test)]
pub(crate) mod fuzz;

use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::sync::Arc;

/// Which protocol a route speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DialectKind {
    Ethereum,
    Solana,
    Xrpl,
    Lnbits,
    /// The incoming-payments feed over other routes (`crate::payments`), not a [`Dialect`].
    Payments,
}

impl DialectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DialectKind::Ethereum => "ethereum",
            DialectKind::Solana => "solana",
            DialectKind::Xrpl => "xrpl",
            DialectKind::Lnbits => "lnbits",
            DialectKind::Payments => "payments",
        }
    }

    /// Whether this build implements the dialect. LNbits routes are channel routes
    /// (`crate::channel`), not [`Dialect`]s: [`build`](Self::build) has none for them.
    pub fn implemented(self) -> bool {
        matches!(
            self,
            DialectKind::Ethereum
                | DialectKind::Solana
                | DialectKind::Xrpl
                | DialectKind::Lnbits
                | DialectKind::Payments
        )
    }

    /// The dialect object for this kind, if implemented.
    pub fn build(self) -> Option<Arc<dyn Dialect>> {
        match self {
            DialectKind::Ethereum => Some(Arc::new(ethereum::Ethereum::new())),
            DialectKind::Solana => Some(Arc::new(solana::Solana::new())),
            DialectKind::Xrpl => Some(Arc::new(xrpl::Xrpl::new())),
            _ => None,
        }
    }
}

impl std::str::FromStr for DialectKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ethereum" => Ok(DialectKind::Ethereum),
            "solana" => Ok(DialectKind::Solana),
            "xrpl" => Ok(DialectKind::Xrpl),
            "lnbits" => Ok(DialectKind::Lnbits),
            "payments" => Ok(DialectKind::Payments),
            other => Err(format!(
                "unknown dialect {other:?} (ethereum, solana, xrpl, lnbits, payments)"
            )),
        }
    }
}

impl fmt::Display for DialectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a client frame came from: a WebSocket can hold subscriptions, HTTP cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    WebSocket,
    Http,
}

/// A client's request id, kept as the raw JSON text it sent (`1`, `"a"`, `1.0`, `null`)
/// so that it is echoed byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(pub Box<str>);

impl RequestId {
    pub fn null() -> Self {
        RequestId("null".into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The subscription id a client sees, as the JSON text that goes into a frame
/// (`"0x1f…"` with quotes for Ethereum, `17` for Solana).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientSubId(pub Arc<str>);

impl ClientSubId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The subscription id an upstream gave a topic, as raw JSON text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamSubId(pub Box<str>);

/// The id submux puts on a request it sends upstream (always a JSON number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UpstreamReqId(pub u64);

/// Extra behaviour a topic needs beyond plain fan-out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyFlags {
    /// A client joining an existing topic first receives the topic's last notification
    /// (geth `syncing`: a synced node tells every new subscriber `false` at once).
    pub replay_last: bool,
    /// Subscribe this key in an upstream request of its own, never batched with others
    /// (XRPL `peer_status`: an admin-only stream whose refusal must not sink the rest).
    pub solo: bool,
    /// A steady stream (new heads, slots, ledgers): a long silence means a stalled
    /// upstream, and a client that opts in may get only the latest when it falls behind.
    pub steady: bool,
}

/// The canonical identity of a topic: method plus canonical params. Two client
/// subscriptions with equal keys share one upstream subscription.
#[derive(Clone)]
pub struct SubscriptionKey(Arc<KeyInner>);

struct KeyInner {
    /// Upstream connection class: 0 = any connection; otherwise the key needs a connection
    /// of its own class (XRPL: the API version, which shapes every stream message).
    class: u8,
    method: Box<str>,
    /// Canonical params as JSON text; also what is sent upstream.
    params: Box<str>,
    flags: KeyFlags,
}

impl SubscriptionKey {
    pub fn new(method: impl Into<Box<str>>, params: impl Into<Box<str>>, flags: KeyFlags) -> Self {
        SubscriptionKey(Arc::new(KeyInner {
            class: 0,
            method: method.into(),
            params: params.into(),
            flags,
        }))
    }
    /// The same key in upstream connection class `class`.
    pub fn in_class(
        class: u8,
        method: impl Into<Box<str>>,
        params: impl Into<Box<str>>,
        flags: KeyFlags,
    ) -> Self {
        SubscriptionKey(Arc::new(KeyInner {
            class,
            method: method.into(),
            params: params.into(),
            flags,
        }))
    }
    pub fn class(&self) -> u8 {
        self.0.class
    }
    pub fn method(&self) -> &str {
        &self.0.method
    }
    pub fn params(&self) -> &str {
        &self.0.params
    }
    pub fn flags(&self) -> KeyFlags {
        self.0.flags
    }
}

impl PartialEq for SubscriptionKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.class == other.0.class
            && self.0.method == other.0.method
            && self.0.params == other.0.params
    }
}
impl Eq for SubscriptionKey {}
impl Hash for SubscriptionKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.class.hash(state);
        self.0.method.hash(state);
        self.0.params.hash(state);
    }
}
impl fmt::Debug for SubscriptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.class != 0 {
            write!(f, "v{}:", self.0.class)?;
        }
        write!(f, "{}{}", self.0.method, self.0.params)
    }
}

/// An ordinary call to forward upstream with a rewritten id.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Box<str>,
    /// Raw params JSON, absent when the client sent none. (XRPL: the whole request object
    /// without its `id`.)
    pub params: Option<Box<str>>,
    /// Upstream connection class the call must go to (0 = any).
    pub class: u8,
}

/// An error in the dialect's own shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcError {
    /// Code and message (and optional raw `data`).
    Std {
        code: i64,
        message: String,
        data: Option<String>,
    },
    /// An upstream's error object, passed through verbatim.
    Raw(String),
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError::Std {
            code,
            message: message.into(),
            data: None,
        }
    }
}

/// One message from a client, after parsing.
#[derive(Debug, Clone)]
pub enum ClientMsg {
    /// Subscribe to one or more keys, then answer with `then`. Id-routed dialects name
    /// exactly one key and answer [`Answer::Subscribed`]; content-routed ones (XRPL) add a
    /// set of keys to the client's subscriptions (keys it already holds are no-ops). A key
    /// that fails upstream turns the answer into that error; the others stay subscribed,
    /// as on rippled, where a subscribe failing part-way keeps its earlier parts.
    Subscribe {
        id: RequestId,
        keys: Vec<SubscriptionKey>,
        then: Answer,
        /// What the dialect needs to render a subscribe error as the node would (XRPL: the
        /// envelope and the echoed request); see [`Dialect::render_subscribe_error`].
        context: Option<Arc<str>>,
    },
    Unsubscribe {
        id: RequestId,
        sub: ClientSubId,
    },
    /// Forward upstream; `id: None` is a notification (no reply expected).
    Call {
        id: Option<RequestId>,
        call: Call,
    },
    /// Answer locally with this error.
    Error {
        id: RequestId,
        error: RpcError,
    },
    /// Nothing to do and nothing to answer (e.g. a stray response).
    Ignore,
    /// Answer with this text, rendered by the dialect already (XRPL errors echo the
    /// whole request, so they are rendered where the request is parsed).
    Reply(String),
    /// Content-routed dialects: drop these keys from the client's set, then answer.
    Leave {
        keys: Vec<SubscriptionKey>,
        reply: String,
    },
}

impl ClientMsg {
    /// An id-routed subscribe: one key, answered with the client's subscription id.
    pub fn subscribe(id: RequestId, key: SubscriptionKey) -> Self {
        ClientMsg::Subscribe {
            id,
            keys: vec![key],
            then: Answer::Subscribed,
            context: None,
        }
    }
}

/// How a subscribe is answered once its keys are joined.
#[derive(Debug, Clone)]
pub enum Answer {
    /// The dialect's subscribed reply naming the client's subscription id
    /// ([`Dialect::render_subscribed`]; id-routed dialects).
    Subscribed,
    /// This reply, rendered by the dialect already (success or a validation error).
    Rendered(String),
    /// The upstream's answer to this call (XRPL: `ledger`/`server` streams and book
    /// snapshots answer with fresh data, so the subscribe itself is re-sent upstream).
    Call(Call),
}

/// One client frame: a single message, a batch, or a frame-level error.
#[derive(Debug, Clone)]
pub enum ClientFrame {
    Single(ClientMsg),
    Batch(Vec<ClientMsg>),
    /// The whole frame is bad (invalid JSON, empty batch): answer with this, keep the socket.
    Invalid(RpcError),
}

/// One parsed upstream frame. Ranges index into the text that was parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamFrame {
    /// An answer to a request submux sent; `id_range` is where its id sits, so the
    /// session can splice in the client's own id and pass the rest through untouched.
    Response {
        id: UpstreamReqId,
        id_range: Range<usize>,
        /// `Ok(result range)` or `Err(error object text)`.
        outcome: Result<Range<usize>, String>,
    },
    /// A push: delivered to the clients of every topic named in `targets`, once per
    /// client per [`Group`]. Id-routed dialects name the one upstream subscription id the
    /// push carries (group 0); content-routed ones (XRPL) every key the push matches.
    Notification {
        targets: Vec<(UpstreamSubId, Group)>,
        /// Where the subscription id sits (id-routed: the topic's public id is spliced in
        /// there); `None`: the frame is delivered verbatim (content-routed).
        id_range: Option<Range<usize>>,
        /// The upstream ends the subscription with this notification (one-shots).
        is_final: bool,
        /// The message's identity (content-routed): the node itself sends one copy per
        /// group a connection matches, so repeats of the same identity on a connection are
        /// dropped (submux re-creates the copies each client is owed).
        identity: Option<Box<str>>,
    },
    /// Valid JSON that submux has no use for (logged and counted).
    Other,
    /// Not parseable.
    Malformed(String),
}

impl UpstreamFrame {
    /// An id-routed push for upstream subscription `sub`, whose id sits at `id_range`.
    pub fn by_id(sub: UpstreamSubId, id_range: Range<usize>, is_final: bool) -> Self {
        UpstreamFrame::Notification {
            targets: vec![(sub, Group(0))],
            id_range: Some(id_range),
            is_final,
            identity: None,
        }
    }
}

/// How a dialect's upstream pushes find their clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// Each push names the upstream subscription it belongs to (Ethereum, Solana): a
    /// topic's clients share one ring and one encoded frame, with the topic's public id.
    ById,
    /// Pushes carry no subscription id (XRPL): the dialect names the keys each push
    /// matches, and every session gets it, verbatim, once per matched group, in upstream
    /// order, through one ordered mailbox per session.
    ByContent,
}

/// Delivery group of a content-routed push: a client matching several targets of one
/// group gets the frame once; each matched group delivers its own copy (rippled sends a
/// validated transaction separately to `transactions`, `transactions_proposed`, the
/// account set and the book set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Group(pub u8);

/// Protocol knowledge of one dialect. Implementations are pure: no I/O, no awaiting.
/// The coalescing key of a call that only reads (its method is in `reads`): connection
/// class, method and params as canonical JSON (object keys sorted, no whitespace). Params
/// holding a number that JSON may not carry exactly (a float or beyond 64 bits) keep their
/// raw text, so two calls are only ever merged when they are the same request.
pub(crate) fn read_call_key(call: &Call, reads: &[&str]) -> Option<Box<str>> {
    if !reads.contains(&&*call.method) {
        return None;
    }
    let params = match call.params.as_deref() {
        None => String::new(),
        Some(raw) => match serde_json::from_str::<serde_json::Value>(raw) {
            Ok(v) if exact_numbers(&v) => v.to_string(),
            Ok(_) => raw.trim().to_string(),
            Err(_) => return None,
        },
    };
    Some(format!("{}\u{0}{}\u{0}{params}", call.class, call.method).into())
}

fn exact_numbers(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Number(n) => !n.is_f64(),
        serde_json::Value::Array(a) => a.iter().all(exact_numbers),
        serde_json::Value::Object(o) => o.values().all(exact_numbers),
        _ => true,
    }
}

pub trait Dialect: Send + Sync + 'static {
    fn kind(&self) -> DialectKind;

    /// How this dialect's pushes are routed to clients.
    fn routing(&self) -> Routing {
        Routing::ById
    }

    /// The key under which identical calls in flight at the same time are sent upstream
    /// once and answered to every caller (each under its own id): the method and its
    /// canonical params, for calls that only read. `None`: always sent on its own
    /// (anything that sends, signs, submits, administers, or holds node-side state).
    fn coalesce_key(&self, _call: &Call) -> Option<Box<str>> {
        None
    }

    /// The head-aware cache's rules ([`cache`]): lifetimes per call, the followed head.
    /// `None`: nothing is cached on this dialect's routes.
    fn cache_rules(&self) -> Option<&'static dyn cache::Rules> {
        None
    }

    /// Whether the node answers an identical subscribe on one connection with the id it
    /// already gave (one subscription, one notification each) rather than a second one.
    fn same_params_same_id(&self) -> bool {
        false
    }

    /// Parse one client text frame.
    fn parse_client(&self, text: &str, transport: Transport) -> ClientFrame;

    /// A fresh client-facing subscription id in the dialect's native format.
    fn mint_sub_id(&self) -> ClientSubId;

    /// Canonical text of a client-supplied subscription id (for unsubscribe lookups).
    fn render_subscribed(&self, id: &RequestId, sub: &ClientSubId) -> String;
    fn render_unsubscribed(&self, id: &RequestId) -> String;
    fn render_error(&self, id: &RequestId, error: &RpcError) -> String;
    /// Join already rendered replies into one batch reply.
    fn render_batch(&self, parts: &[String]) -> String;

    /// Requests submux sends upstream. `keys` has at most [`subscribe_batch_max`] keys,
    /// all of one connection class.
    ///
    /// [`subscribe_batch_max`]: Dialect::subscribe_batch_max
    fn render_upstream_subscribe(&self, keys: &[&SubscriptionKey], req: UpstreamReqId) -> String;
    /// `None` when the protocol has no way to unsubscribe these (XRPL `book_changes`).
    fn render_upstream_unsubscribe(
        &self,
        items: &[(&SubscriptionKey, &UpstreamSubId)],
        req: UpstreamReqId,
    ) -> Option<String>;
    fn render_upstream_call(&self, call: &Call, req: Option<UpstreamReqId>) -> String;
    /// How many keys one upstream subscribe request may carry.
    fn subscribe_batch_max(&self) -> usize {
        1
    }

    /// Parse one upstream text frame.
    fn parse_upstream(&self, text: &str) -> UpstreamFrame;
    /// The upstream subscription id of `key` from a successful subscribe result (content-
    /// routed dialects derive it from the key: it is what a content-routed [`UpstreamFrame::Notification`] names).
    fn parse_subscribe_result(&self, key: &SubscriptionKey, result: &str) -> Option<UpstreamSubId>;
    /// Put the client's id where the upstream's sits (`id_range`) in an upstream answer.
    fn splice_id(&self, text: &str, id_range: Range<usize>, id: &RequestId) -> String {
        splice(text, id_range, id.as_str())
    }
    /// Turn a rendered reply into its HTTP POST shape (XRPL's JSON-RPC differs from its
    /// WebSocket envelope); identity for JSON-RPC dialects.
    fn http_reply(&self, reply: String) -> String {
        reply
    }

    /// Whether ordinary calls can be answered over the WebSocket upstream (geth serves
    /// every method on its WebSocket; Agave's pubsub port serves subscriptions only, so a
    /// Solana route needs `http_upstream` for HTTP POSTs).
    fn calls_over_websocket(&self) -> bool {
        true
    }

    /// Error shapes for conditions submux itself detects.
    fn error_for(&self, cond: Condition) -> RpcError;

    /// A subscribe failed upstream: the error as the node would have answered the request.
    fn render_subscribe_error(
        &self,
        id: &RequestId,
        _context: Option<&str>,
        error: &RpcError,
    ) -> String {
        self.render_error(id, error)
    }

    /// The height (block number, slot, ledger index) a steady stream's notification
    /// carries, for gap notices.
    fn height(&self, _text: &str) -> Option<u64> {
        None
    }

    /// The height a notification is kept under in its topic's history (`?since=`): the
    /// steady streams' [`Dialect::height`] unless a dialect keys more streams (Ethereum
    /// `logs` by block number). `None`: not kept.
    fn history_height(&self, text: &str) -> Option<u64> {
        self.height(text)
    }

    /// What makes a notification (or a content-routed message) one event, for hedged
    /// subscriptions ([`identity`]). `None`: it has no identity; hedged routes take such
    /// messages from one connection at a time.
    fn identity(&self, _text: &str) -> Option<identity::Ident> {
        None
    }

    /// Backfill after an upstream switch: whether this dialect fetches what `key`'s
    /// subscription missed ([`backfill`]: Ethereum `newHeads` and `logs`).
    fn backfills(&self, _key: &SubscriptionKey) -> bool {
        false
    }

    /// Whether backfill calls go to the node's HTTP endpoint ([`crate::hub::core`]'s
    /// `Action::Fetch`) rather than on the subscription socket (Solana: the PubSub socket
    /// serves no calls).
    fn backfill_over_http(&self) -> bool {
        false
    }

    /// A notification for `sub` carrying `result`, exactly as the node's own would read
    /// (for backfilled results); the frame and where `sub` sits in it.
    fn render_notification(&self, _sub: &str, _result: &str) -> Option<(String, Range<usize>)> {
        None
    }

    /// A gap notice for subscription `sub` (ignored by content-routed dialects): heights
    /// `from..=to` may have been missed while submux switched upstream connections
    /// (`None` = unknown). Returns the frame and where `sub` sits in it.
    fn render_gap(
        &self,
        _sub: &ClientSubId,
        _from: Option<u64>,
        _to: Option<u64>,
    ) -> Option<(String, Range<usize>)> {
        None
    }
}

/// Conditions submux answers itself, rendered by each dialect in its own shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// No upstream connection could be had in time.
    UpstreamUnavailable,
    /// The upstream did not answer within the request timeout.
    UpstreamTimeout,
    /// The upstream connection dropped while the request was in flight.
    UpstreamLost,
    /// A configured limit was hit; the text names the limit.
    LimitExceeded(String),
    /// The server is shutting down.
    ShuttingDown,
    /// Unknown client subscription id on unsubscribe.
    SubscriptionNotFound,
    /// An HTTP POST on a route that has no way to answer it (no `http_upstream`).
    NoHttpUpstream,
}

/// Replace `range` of `text` with `with`: the one operation fan-out and id rewriting need.
pub fn splice(text: &str, range: Range<usize>, with: &str) -> String {
    let mut out = String::with_capacity(text.len() - range.len() + with.len());
    out.push_str(&text[..range.start]);
    out.push_str(with);
    out.push_str(&text[range.end..]);
    out
}

/// Byte range of `inner` inside `outer`; `inner` must be a sub-slice of `outer`
/// (as `serde_json::value::RawValue` borrows are).
pub(crate) fn subslice_range(outer: &str, inner: &str) -> Range<usize> {
    let start = inner.as_ptr() as usize - outer.as_ptr() as usize;
    debug_assert!(start + inner.len() <= outer.len());
    start..start + inner.len()
}

/// JSON for an optional height: a number or `null`.
pub(crate) fn opt_num(v: Option<u64>) -> String {
    v.map_or_else(|| "null".into(), |n| n.to_string())
}

/// Place `id` where `{ID}` stands in `template`; the frame and the id's range.
pub(crate) fn with_id(template: &str, id: &str) -> (String, Range<usize>) {
    let at = template.find("{ID}").unwrap_or(template.len());
    let frame = format!(
        "{}{id}{}",
        &template[..at],
        template.get(at + 4..).unwrap_or("")
    );
    (frame, at..at + id.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_replaces_exactly_the_range() {
        assert_eq!(splice("ab\"x\"cd", 2..5, "\"yy\""), "ab\"yy\"cd");
        assert_eq!(splice("xyz", 0..0, "a"), "axyz");
    }

    #[test]
    fn each_dialect_declares_its_routing() {
        let routing = |k: DialectKind| k.build().map(|d| d.routing());
        assert_eq!(routing(DialectKind::Ethereum), Some(Routing::ById));
        assert_eq!(routing(DialectKind::Solana), Some(Routing::ById));
        assert_eq!(routing(DialectKind::Xrpl), Some(Routing::ByContent));
    }

    #[test]
    fn keys_compare_by_method_and_params_only() {
        let a = SubscriptionKey::new("eth_subscribe", "[\"newHeads\"]", KeyFlags::default());
        let b = SubscriptionKey::new(
            "eth_subscribe",
            "[\"newHeads\"]",
            KeyFlags {
                replay_last: true,
                ..KeyFlags::default()
            },
        );
        let c = SubscriptionKey::new("foo_subscribe", "[\"newHeads\"]", KeyFlags::default());
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
