//! LNbits websocket channels, as LNbits serves them (lnbits:lnbits/core/views/websocket_api.py,
//! core/services/websockets.py): pure parsing and rendering, no I/O.
//!
//! - `WS {path}/{item_id}`: every text pushed to `item_id` reaches every socket on it,
//!   verbatim; client text is accepted and never answered; nothing is sent on connect.
//! - `GET {path}/{item_id}/{data}` and `POST {path}/{item_id}?data=…` push `data` and answer
//!   `{"sent":true,"data":"…"}` (FastAPI's compact JSON, non-ASCII kept as UTF-8); submux
//!   also takes `POST {path}/{item_id}` with the text as the body (LNbits' own guide shows it
//!   with curl; LNbits itself answers that with 400, so submux forwards it as `?data=`).
//! - Beyond LNbits (opt-in, so default frames stay verbatim): `?since=SEQ` replays what the
//!   channel held after SEQ; `?seq=1` wraps every frame as `{"seq":N,"data":"…"}`.
//!
//! Channel routes do not use the JSON-RPC-shaped [`super::Dialect`] trait: the URL path is
//! the subscription and frames are never parsed.

use crate::query::{self, DecodeError};
use std::sync::Arc;

/// Longest accepted item id (LNbits keys are 32 hex characters, payment hashes 64).
pub const MAX_ITEM_ID_LEN: usize = 128;

/// A channel name: 1–[`MAX_ITEM_ID_LEN`] characters of `A-Z a-z 0-9 _ - .`, not `.` or
/// `..` (it becomes a URL path segment upstream).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemId(Arc<str>);

impl ItemId {
    pub fn parse(s: &str) -> Result<ItemId, PushError> {
        if s.is_empty() {
            return Err(PushError::EmptyItem);
        }
        if s.len() > MAX_ITEM_ID_LEN {
            return Err(PushError::ItemTooLong);
        }
        let ok = s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !ok || s == "." || s == ".." {
            return Err(PushError::BadItem);
        }
        Ok(ItemId(Arc::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ItemId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a channel request is refused; each has an HTTP status and a message for the client.
///
/// Where LNbits itself refuses the same request, the answer is LNbits' own, as LNbits 1.6.2
/// gives it (lnbits/lnbits: `lnbits/core/views/websocket_api.py` declares the routes
/// `WS /{item_id}`, `POST /{item_id}` with a required `data: str` query parameter and
/// `GET /{item_id}/{data}`; FastAPI/Starlette answer everything else, and LNbits' handler
/// for request validation errors answers 400): no route → 404 `{"detail":"Not Found"}`, a
/// POST without `data` → 400 with the validation list. The other refusals guard what
/// submux adds (strict item ids, a size limit, the push token, `?since=`): their texts are
/// submux's own, in FastAPI's `{"detail":…}` shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// No item id: no LNbits route matches (Starlette's router).
    #[error("Not Found")]
    EmptyItem,
    #[error("item id is longer than {MAX_ITEM_ID_LEN} characters")]
    ItemTooLong,
    #[error("item id may contain only A-Z a-z 0-9 _ - . (and is not . or ..)")]
    BadItem,
    /// No LNbits route matches (Starlette's router: `{"detail":"Not Found"}`).
    #[error("Not Found")]
    NotFound,
    /// A POST with neither `data` nor a body: LNbits' validation error for its required
    /// query parameter (see [`PushError::body`]).
    #[error("field required")]
    MissingData,
    #[error("data exceeds {0} bytes")]
    TooLarge(usize),
    #[error("data is not valid UTF-8 text")]
    NotUtf8,
    #[error("bad percent-encoding in the URL")]
    BadEncoding,
    #[error("since must be a sequence number (an unsigned integer)")]
    BadSince,
    #[error("push token required: send Authorization: Bearer <push_token>")]
    Unauthorized,
}

impl From<DecodeError> for PushError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::BadEncoding => PushError::BadEncoding,
            DecodeError::NotUtf8 => PushError::NotUtf8,
        }
    }
}

/// LNbits 1.6.2's answer to `POST {path}/{item_id}` without `data` (its handler for
/// FastAPI's RequestValidationError, pydantic's v1-style entry).
pub const MISSING_DATA_BODY: &str =
    r#"{"detail":[{"loc":["query","data"],"msg":"field required","type":"value_error.missing"}]}"#;

impl PushError {
    /// The HTTP status for this refusal.
    pub fn status(&self) -> u16 {
        match self {
            PushError::NotFound | PushError::EmptyItem => 404,
            PushError::TooLarge(_) => 413,
            PushError::Unauthorized => 401,
            _ => 400,
        }
    }
}

/// What a request under a channel route's path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `{path}/{item_id}`: a WebSocket, or a POST push.
    Channel(ItemId),
    /// `{path}/{item_id}/{data}`: a GET push of `data` (percent-decoded).
    PushPath(ItemId, String),
}

/// Parse the part of the URL path after `{path}/` (still percent-encoded).
pub fn parse_target(rest: &str) -> Result<Target, PushError> {
    let (item, data) = match rest.split_once('/') {
        Some((item, data)) => (item, Some(data)),
        None => (rest, None),
    };
    // Starlette routes on the decoded path, so an encoded `/` separates segments there too.
    let item = query::decode(item, false)?;
    if item.contains('/') {
        return Err(PushError::NotFound);
    }
    let item = ItemId::parse(&item)?;
    match data {
        None => Ok(Target::Channel(item)),
        // LNbits' `{data}` is one path segment (Starlette's default converter).
        Some(d) if d.is_empty() || d.contains('/') => Err(PushError::NotFound),
        Some(d) => match query::decode(d, false)? {
            d if d.contains('/') => Err(PushError::NotFound),
            d => Ok(Target::PushPath(item, d.into_owned())),
        },
    }
}

/// Options a WebSocket client may add to its URL (all submux's own; LNbits ignores queries).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketOptions {
    /// `?since=SEQ`: first replay what the channel holds after SEQ.
    pub since: Option<u64>,
    /// `?seq=1` (or `true`, or bare `?seq`): wrap frames as `{"seq":N,"data":"…"}`.
    pub wrap: bool,
}

impl SocketOptions {
    pub fn parse(query: Option<&str>) -> Result<SocketOptions, PushError> {
        let since = match query::param(query, "since") {
            None => None,
            Some(v) => Some(v?.trim().parse::<u64>().map_err(|_| PushError::BadSince)?),
        };
        let wrap = match query::param(query, "seq") {
            None => false,
            Some(v) => !matches!(&*v?, "0" | "false" | "no"),
        };
        Ok(SocketOptions { since, wrap })
    }
}

/// How a push request carries its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushVia<'a> {
    /// `GET {path}/{item_id}/{data}` (already decoded).
    Path(&'a str),
    /// `POST {path}/{item_id}[?data=…]` with this body.
    Post {
        query: Option<&'a str>,
        body: &'a [u8],
    },
}

/// The pushed text: checked for presence, emptiness and size (`max_bytes`).
pub fn push_text(via: PushVia<'_>, max_bytes: usize) -> Result<String, PushError> {
    let text = match via {
        PushVia::Path(d) => d.to_string(),
        PushVia::Post { query, body } => match query::param(query, "data") {
            Some(d) => d?.into_owned(),
            None if body.is_empty() => return Err(PushError::MissingData),
            None => std::str::from_utf8(body)
                .map_err(|_| PushError::NotUtf8)?
                .to_string(),
        },
    };
    // An empty `data` is delivered as it is, as LNbits does (`{"sent":true,"data":""}`).
    if text.len() > max_bytes {
        return Err(PushError::TooLarge(max_bytes));
    }
    Ok(text)
}

/// A JSON string literal, escaped as serde_json and Python's `json.dumps(ensure_ascii=False)`
/// both do (`"`, `\`, control characters; non-ASCII kept).
pub fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\""))
}

/// LNbits' answer to a push: `{"sent":true,"data":"…"}` (FastAPI's JSONResponse is compact).
pub fn render_sent(data: &str, sent: bool) -> String {
    format!("{{\"sent\":{sent},\"data\":{}}}", json_string(data))
}

impl PushError {
    /// The response body: LNbits' own where it has one, else `{"detail":"…"}`.
    pub fn body(&self) -> String {
        match self {
            PushError::MissingData => MISSING_DATA_BODY.to_string(),
            e => render_detail(&e.to_string()),
        }
    }
}

/// An error body in FastAPI's shape: `{"detail":"…"}`.
pub fn render_detail(message: &str) -> String {
    format!("{{\"detail\":{}}}", json_string(message))
}

/// A frame for a client that asked for `?seq=1`.
pub fn render_seq_frame(seq: u64, text: &str) -> String {
    format!("{{\"seq\":{seq},\"data\":{}}}", json_string(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/tests/fixtures/lnbits/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn item_ids() {
        for ok in [
            "a",
            "0123456789abcdef0123456789abcdef",
            "lnurlp-abc_1.x",
            &"f".repeat(128),
        ] {
            assert_eq!(ItemId::parse(ok).unwrap().as_str(), ok);
        }
        assert_eq!(ItemId::parse(""), Err(PushError::EmptyItem));
        assert_eq!(ItemId::parse(&"f".repeat(129)), Err(PushError::ItemTooLong));
        for bad in [".", "..", "a b", "a/b", "ä", "a?b", "a%20"] {
            assert_eq!(ItemId::parse(bad), Err(PushError::BadItem), "{bad}");
        }
    }

    #[test]
    fn targets() {
        let item = |s: &str| ItemId::parse(s).unwrap();
        assert_eq!(parse_target("abc"), Ok(Target::Channel(item("abc"))));
        assert_eq!(
            parse_target("abc/he%20llo%7B%7D"),
            Ok(Target::PushPath(item("abc"), "he llo{}".into()))
        );
        assert_eq!(
            parse_target("abc/a+b"),
            Ok(Target::PushPath(item("abc"), "a+b".into())),
            "+ is literal in paths"
        );
        assert_eq!(parse_target("abc/"), Err(PushError::NotFound));
        assert_eq!(parse_target("abc/x/y"), Err(PushError::NotFound));
        assert_eq!(parse_target(""), Err(PushError::EmptyItem));
        // An encoded `/` splits segments in LNbits' router too: no route matches.
        assert_eq!(parse_target("a%2Fb"), Err(PushError::NotFound));
        assert_eq!(parse_target("abc/x%2Fy"), Err(PushError::NotFound));
        assert_eq!(
            parse_target("a%40b"),
            Err(PushError::BadItem),
            "submux's strict ids"
        );
        assert_eq!(parse_target("abc/%zz"), Err(PushError::BadEncoding));
        assert_eq!(parse_target("abc/%ff"), Err(PushError::NotUtf8));
    }

    #[test]
    fn push_parsing() {
        let max = 16;
        assert_eq!(push_text(PushVia::Path("hi"), max).unwrap(), "hi");
        let post = |query, body: &'static [u8]| push_text(PushVia::Post { query, body }, max);
        assert_eq!(
            post(Some("data=%7B%22a%22%3A+1%7D"), b"").unwrap(),
            "{\"a\": 1}"
        );
        assert_eq!(
            post(Some("x=1&data=q"), b"body").unwrap(),
            "q",
            "query wins, as in LNbits"
        );
        assert_eq!(post(None, b"body text").unwrap(), "body text");
        assert_eq!(post(Some("other=1"), b""), Err(PushError::MissingData));
        assert_eq!(
            post(Some("data="), b""),
            Ok(String::new()),
            "LNbits delivers empty data"
        );
        assert_eq!(post(None, b"\xff"), Err(PushError::NotUtf8));
        assert_eq!(
            post(None, b"0123456789abcdefX"),
            Err(PushError::TooLarge(16))
        );
        assert_eq!(PushError::TooLarge(1).status(), 413);
        assert_eq!(PushError::MissingData.status(), 400);
        assert_eq!(PushError::Unauthorized.status(), 401);
    }

    #[test]
    fn socket_options() {
        assert_eq!(
            SocketOptions::parse(None).unwrap(),
            SocketOptions::default()
        );
        let o = SocketOptions::parse(Some("since=41&seq=1")).unwrap();
        assert_eq!((o.since, o.wrap), (Some(41), true));
        assert!(SocketOptions::parse(Some("seq")).unwrap().wrap);
        assert!(!SocketOptions::parse(Some("seq=0")).unwrap().wrap);
        assert_eq!(
            SocketOptions::parse(Some("since=-1")),
            Err(PushError::BadSince)
        );
    }

    #[test]
    fn reply_matches_lnbits() {
        // The fixture is pretty-printed; LNbits (FastAPI JSONResponse) sends it compact.
        let data = "{\"paid\": true}";
        let ours = render_sent(data, true);
        assert_eq!(ours, r#"{"sent":true,"data":"{\"paid\": true}"}"#);
        let want: serde_json::Value =
            serde_json::from_str(&fixture("http_send_response.json")).unwrap();
        let got: serde_json::Value = serde_json::from_str(&ours).unwrap();
        assert_eq!(got, want);
        // Byte for byte as Python's json.dumps(ensure_ascii=False, separators=(",", ":")).
        assert_eq!(
            render_sent("é\n\u{1}\"\\/", false),
            "{\"sent\":false,\"data\":\"é\\n\\u0001\\\"\\\\/\"}"
        );
    }

    #[test]
    fn seq_frames_carry_the_text_exactly() {
        let text = fixture("payment_notification.json");
        let frame = render_seq_frame(7, &text);
        let v: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(v["seq"], 7);
        assert_eq!(v["data"].as_str().unwrap(), text);
        assert_eq!(
            render_detail("x \"y\""),
            r#"{"detail":"x \"y\""}"#,
            "FastAPI's error shape"
        );
    }

    /// Random paths and queries never panic the parsers.
    #[test]
    fn parsers_survive_random_input() {
        for s in crate::query::random_inputs(20_000) {
            let _ = parse_target(&s);
            let _ = SocketOptions::parse(Some(&s));
            let _ = push_text(
                PushVia::Post {
                    query: Some(&s),
                    body: s.as_bytes(),
                },
                8,
            );
        }
        assert_eq!(parse_target("abc/%+1"), Err(PushError::BadEncoding));
    }
}
