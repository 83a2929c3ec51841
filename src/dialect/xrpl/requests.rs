//! Client requests: rendering rippled's answer envelopes (the request echoed, secrets
//! masked) and parsing commands, subscription sets and books into keys.

use super::*;

/// Members of a response envelope that rippled copies from the request.
pub(super) const ECHOED: &[&str] = &["api_version", "id", "jsonrpc", "ripplerpc"];

/// A JSON object from raw member texts, keys sorted as rippled emits them.
pub(super) fn render_object(members: &BTreeMap<String, String>) -> String {
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
pub(super) fn echo_request(req: &BTreeMap<String, &RawValue>, mask: bool) -> String {
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
pub(super) fn echoed(req: &BTreeMap<String, &RawValue>) -> BTreeMap<String, String> {
    ECHOED
        .iter()
        .filter_map(|k| req.get(*k).map(|v| (k.to_string(), v.get().to_string())))
        .collect()
}

/// An error response for a parsed request, as rippled's processSession shapes it.
pub(super) fn request_error(req: &BTreeMap<String, &RawValue>, e: ErrorInfo) -> String {
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
pub(super) fn error_fields(token: &str, code: i64, message: &str) -> String {
    format!(
        r#"{{"error":{},"error_code":{code},"error_message":{}}}"#,
        json_string(token),
        json_string(message)
    )
}

/// A request that failed envelope checks (no command, bad API version).
pub(super) fn envelope_error(req: &BTreeMap<String, &RawValue>, token: &str) -> String {
    let mut m = echoed(req);
    m.insert("error".into(), json_string(token));
    m.insert("request".into(), echo_request(req, false));
    m.insert("status".into(), "\"error\"".into());
    m.insert("type".into(), "\"response\"".into());
    render_object(&m)
}

/// `api_version` of a request: 1 when absent, `None` when invalid.
pub(super) fn api_version(req: &BTreeMap<String, &RawValue>) -> Option<u8> {
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

pub(super) fn str_of(v: &RawValue) -> Option<String> {
    serde_json::from_str::<String>(v.get()).ok()
}

/// The request object without its `id`, as forwarded upstream.
pub(super) fn without_id(req: &BTreeMap<String, &RawValue>) -> String {
    let m: BTreeMap<String, String> = req
        .iter()
        .filter(|(k, _)| k.as_str() != "id")
        .map(|(k, v)| (k.clone(), v.get().to_string()))
        .collect();
    render_object(&m)
}

/// What a subscribe or unsubscribe asks for, in rippled's processing order; parsing stops
/// at the first error, keeping what came before (rippled subscribes those parts).
pub(super) struct SetRequest {
    pub(super) keys: Vec<SubscriptionKey>,
    /// Parts whose subscribe result carries data (streams `ledger`/`server`, snapshots).
    pub(super) result_streams: Vec<&'static str>,
    pub(super) result_books: Vec<String>,
    pub(super) error: Option<ErrorInfo>,
    /// A submux refusal with its own message (unsupported parts).
    pub(super) refusal: Option<String>,
}

pub(super) fn key(class: u8, method: &str, params: String, solo: bool) -> SubscriptionKey {
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

pub(super) fn parse_accounts(v: &RawValue) -> Result<Vec<String>, ErrorInfo> {
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

pub(super) fn parse_issue(
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

pub(super) fn truthy(o: &Map<String, Value>, k: &str) -> bool {
    match o.get(k) {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|x| x != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        _ => false,
    }
}

/// One `books` entry → the keys it listens on; `Err` with rippled's error.
pub(super) fn parse_book(
    entry: &Value,
    class: u8,
) -> Result<(Vec<SubscriptionKey>, bool), ErrorInfo> {
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

pub(super) fn parse_set(
    req: &BTreeMap<String, &RawValue>,
    class: u8,
    subscribe: bool,
) -> SetRequest {
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

pub(super) fn parse_ws(text: &str) -> ClientMsg {
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

pub(super) fn set_change(
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
        ClientMsg::Subscribe {
            id,
            keys: set.keys,
            then,
            context: Some(render_object(&envelope).into()),
        }
    } else {
        let reply = match then {
            Answer::Rendered(r) => r,
            Answer::Call(_) | Answer::Subscribed => request_success(req, "{}"),
        };
        ClientMsg::Leave {
            keys: set.keys,
            reply,
        }
    }
}

/// rippled's HTTP JSON-RPC shape: `{"method": …, "params": [{…}]}`.
pub(super) fn parse_http(text: &str) -> ClientMsg {
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
