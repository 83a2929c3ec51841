//! The simulated server's commands: subscribe results, book pages, ledgers, the WebSocket
//! and HTTP JSON-RPC handlers, with rippled's error fields.

use super::*;

pub(super) fn issue_matches(spec: &Value, amount: &Value) -> bool {
    let (cur, iss) = issue_of(amount);
    let want = spec
        .get("currency")
        .and_then(Value::as_str)
        .unwrap_or("XRP")
        .to_ascii_uppercase();
    want == cur && spec.get("issuer").and_then(Value::as_str) == iss.as_deref()
}

/// What `account` can deliver of `issue` (rippled accountFunds), in units: XRP above its
/// reserve, its holding of an issued currency, unlimited for the issuer itself.
pub(super) fn funds(st: &State, account: &str, issue: &(String, Option<String>)) -> i128 {
    match &issue.1 {
        None => st.accounts.get(account).map_or(0, |a| {
            let reserve = RESERVE_BASE + a.owner_count * RESERVE_INC;
            i128::from(a.balance.saturating_sub(reserve))
        }),
        Some(issuer) if issuer == account => i128::MAX,
        Some(issuer) => holding(st, account, issuer, &issue.0).max(0),
    }
}

/// An offer's `owner_funds`: [`funds`] as text (the offer itself for its issuer).
pub(super) fn owner_funds(st: &State, o: &Offer) -> String {
    let issue = issue_of(&o.gets);
    match funds(st, &o.account, &issue) {
        i128::MAX => o.gets["value"].as_str().unwrap_or("0").to_string(),
        n if issue.1.is_none() => n.to_string(),
        n => render_value(n),
    }
}

/// rippled's getBookPage for the book {taker_pays: `pays`, taker_gets: `gets`}: offers
/// whose TakerPays is `pays` and TakerGets is `gets`, best quality first, each with its
/// `quality`; an owner's first offer also carries `owner_funds`.
pub(super) fn book_page(st: &State, pays: &Value, gets: &Value) -> Vec<Value> {
    let mut offers: Vec<&Offer> = st
        .offers
        .iter()
        .filter(|o| issue_matches(gets, &o.gets) && issue_matches(pays, &o.pays))
        .collect();
    let rate = |o: &Offer| offer_rate(&o.gets, &o.pays).unwrap_or((0, -100));
    offers.sort_by_key(|o| {
        let (m, e) = rate(o);
        (((e + 100) as u64) << 56) | m
    });
    let mut owners = HashSet::new();
    offers
        .into_iter()
        .map(|o| {
            let (m, e) = rate(o);
            let mut v = json!({"Account": o.account,
                "BookDirectory": book_directory(&o.gets, &o.pays), "BookNode": "0", "Flags": 0,
                "LedgerEntryType": "Offer", "OwnerNode": "0", "PreviousTxnID": o.prev_tx,
                "PreviousTxnLgrSeq": o.prev_seq, "Sequence": o.sequence, "TakerGets": o.gets,
                "TakerPays": o.pays, "index": o.index, "quality": rate_text(m, e)});
            if owners.insert(o.account.as_str()) {
                v["owner_funds"] = json!(owner_funds(st, o));
            }
            v
        })
        .collect()
}

/// A node public key (Base58Check, type 0x1C) for the `server` stream's `pubkey_node`.
pub(super) fn node_public_key() -> String {
    let mut key = vec![0x1C, 0x02];
    key.extend((0u8..32).map(|i| i.wrapping_mul(37) ^ 0x5A));
    crate::dialect::base58::check_encode(&key, crate::dialect::base58::RIPPLE)
}

/// A fresh `random` for every `server` subscribe.
pub(super) fn fresh_random() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    hex64(NEXT.fetch_add(1, Relaxed), nanos)
}

/// The result of the data-bearing parts of a subscribe (docs/xrpl.md, subscribe results).
pub(super) fn subscribe_result(st: &State, parts: &Value) -> Value {
    let mut result = json!({});
    let streams: Vec<&str> = parts["streams"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if streams.contains(&"ledger") {
        result = ledger_fields(st);
    }
    if streams.contains(&"server") {
        result["random"] = json!(fresh_random());
        result["server_status"] = json!("full");
        result["load_base"] = json!(256);
        result["load_factor"] = json!(256);
        result["hostid"] = json!("SIM");
        result["pubkey_node"] = json!(node_public_key());
    }
    // Snapshots of several books append to the same arrays, as rippled does.
    let mut append = |field: &str, page: Vec<Value>| {
        if let Some(a) = result
            .as_object_mut()
            .map(|o| o.entry(field).or_insert_with(|| json!([])))
            .and_then(Value::as_array_mut)
        {
            a.extend(page);
        }
    };
    for book in parts["books"].as_array().into_iter().flatten() {
        let (pays, gets) = (&book["taker_pays"], &book["taker_gets"]);
        let both = ["both", "both_sides"]
            .iter()
            .any(|k| book[*k].as_bool() == Some(true));
        if both {
            append("bids", book_page(st, pays, gets));
            append("asks", book_page(st, gets, pays));
        } else {
            append("offers", book_page(st, pays, gets));
        }
    }
    result
}

pub(super) fn route_id(k: &crate::dialect::SubscriptionKey) -> String {
    format!("{}:{}", k.method(), k.params())
}

/// An error for `req` with the handler's own fields (rippled lifts every field of an
/// error result to the top level of the response).
pub(super) fn error_with(req: &BTreeMap<String, &RawValue>, e: ErrorInfo, extra: Value) -> String {
    let text = request_error_text(req, e.0, e.1, e.2);
    match (serde_json::from_str::<Value>(&text), extra) {
        (Ok(Value::Object(mut m)), Value::Object(x)) => {
            m.extend(x);
            Value::Object(m).to_string()
        }
        _ => text,
    }
}

pub(super) type ErrorInfo = (&'static str, i64, &'static str);

pub(super) const NO_EVENTS: ErrorInfo =
    ("noEvents", 7, "Current transport does not support events.");
pub(super) const NO_PF_REQUEST: ErrorInfo =
    ("noPathRequest", 33, "No pathfinding request in progress.");
pub(super) const ACT_NOT_FOUND: ErrorInfo = ("actNotFound", 19, "Account not found.");
pub(super) const LGR_NOT_FOUND: ErrorInfo = ("lgrNotFound", 21, "ledgerNotFound");
pub(super) const LGR_IDX_MALFORMED: ErrorInfo = ("invalidParams", 31, "ledgerIndexMalformed");

/// Answer one WebSocket request (`conn` is None for HTTP).
pub(super) fn handle_ws(inner: &Inner, conn: Option<u64>, text: &str) -> String {
    if let Some(reply) = path_find(inner, conn, text) {
        return reply;
    }
    let msg = match Xrpl.parse_client(text, Transport::WebSocket) {
        ClientFrame::Single(m) => m,
        _ => return r#"{"error":"jsonInvalid","type":"error"}"#.into(),
    };
    let Ok(req) = serde_json::from_str::<BTreeMap<String, &RawValue>>(text) else {
        return match msg {
            ClientMsg::Reply(r) => r,
            _ => r#"{"error":"jsonInvalid","type":"error"}"#.into(),
        };
    };
    let mut st = inner.lock();
    match msg {
        ClientMsg::Reply(r) => r,
        ClientMsg::Subscribe { keys, then, .. } => {
            inner.counters.subscribe_requests.fetch_add(1, Relaxed);
            let Some(c) = conn.and_then(|c| st.conns.get_mut(&c)) else {
                return error_with(&req, INVALID_PARAMS, Value::Null);
            };
            // Every subscribe sets the connection's API version (1 when not given).
            c.api = req
                .get("api_version")
                .and_then(|v| v.get().parse().ok())
                .unwrap_or(1);
            // peer_status needs an admin connection; the streams before it stay.
            let denied = keys
                .iter()
                .position(|k| k.method() == "streams" && k.params() == "\"peer_status\"");
            let granted = &keys[..denied.unwrap_or(keys.len())];
            c.keys.extend(granted.iter().map(route_id));
            if denied.is_some() {
                return error_with(&req, NO_PERMISSION, Value::Null);
            }
            match then {
                Answer::Rendered(r) => r,
                Answer::Subscribed => request_success(&req, "{}"),
                Answer::Call(call) => {
                    let parts: Value = serde_json::from_str(call.params.as_deref().unwrap_or("{}"))
                        .unwrap_or_default();
                    request_success(&req, &subscribe_result(&st, &parts).to_string())
                }
            }
        }
        ClientMsg::Leave { keys, reply } => {
            if let Some(c) = conn.and_then(|c| st.conns.get_mut(&c)) {
                for k in &keys {
                    c.keys.remove(&route_id(k));
                }
            }
            reply
        }
        ClientMsg::Call { call, .. } => command(&mut st, &req, &call.method),
        _ => error_with(&req, ("internal", 73, "Internal error."), Value::Null),
    }
}

/// Which ledger a command reads (rippled lookupLedger).
pub(super) enum At {
    /// The open ledger (index = last validated + 1).
    Current,
    /// A closed, validated ledger.
    Closed(u64),
}

/// `ledger_index`: "current" (the default), "closed"/"validated", or a number.
pub(super) fn select_ledger(st: &State, v: &Value) -> Result<At, ErrorInfo> {
    let n = match v {
        Value::Null => return Ok(At::Current),
        Value::String(s) if s == "current" => return Ok(At::Current),
        Value::String(s) if s == "closed" || s == "validated" => {
            return Ok(At::Closed(st.ledger_index))
        }
        Value::String(s) => s.parse::<u64>().map_err(|_| LGR_IDX_MALFORMED)?,
        Value::Number(n) => n.as_u64().ok_or(LGR_IDX_MALFORMED)?,
        _ => return Err(LGR_IDX_MALFORMED),
    };
    if n == st.ledger_index + 1 {
        Ok(At::Current)
    } else if (st.first_ledger..=st.ledger_index).contains(&n) {
        Ok(At::Closed(n))
    } else {
        Err(LGR_NOT_FOUND)
    }
}

/// The fields saying which ledger answered: `ledger_current_index` or
/// `ledger_hash`+`ledger_index`, and `validated`.
pub(super) fn ledger_stamp(st: &State, at: &At) -> Value {
    match at {
        At::Current => json!({"ledger_current_index": st.ledger_index + 1, "validated": false}),
        At::Closed(n) => {
            json!({"ledger_hash": hex64(*n, 1), "ledger_index": n, "validated": true})
        }
    }
}

/// "2024-Nov-01 23:59:01.000000000 UTC", as rippled's close_time_human.
pub(super) fn human_time(ripple_secs: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let iso = iso_time(ripple_secs);
    let month = iso
        .get(5..7)
        .and_then(|m| m.parse::<usize>().ok())
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
        .unwrap_or(&"Jan");
    format!(
        "{}-{month}-{} {}.000000000 UTC",
        &iso[..4],
        &iso[8..10],
        &iso[11..19]
    )
}

/// The `ledger` header of ledger `at` (ledger_index a string in API v1).
pub(super) fn ledger_header(st: &State, at: &At, api: u8) -> Value {
    let (n, closed) = match at {
        At::Current => (st.ledger_index + 1, false),
        At::Closed(n) => (*n, true),
    };
    let index = if api >= 2 {
        json!(n)
    } else {
        json!(n.to_string())
    };
    // Ledgers close every 4 s of ledger time; the open one closes next.
    let time = |n: u64| (st.ledger_time + 4 * n).saturating_sub(4 * st.ledger_index);
    let mut h = json!({"closed": closed, "ledger_index": index,
        "parent_close_time": time(n - 1), "parent_hash": hex64(n - 1, 1),
        "total_coins": "99999999999999999"});
    if closed {
        h["account_hash"] = json!(hex64(n, 2));
        h["close_flags"] = json!(0);
        h["close_time"] = json!(time(n));
        h["close_time_human"] = json!(human_time(time(n)));
        h["close_time_iso"] = json!(iso_time(time(n)));
        h["close_time_resolution"] = json!(10);
        h["ledger_hash"] = json!(hex64(n, 1));
        h["transaction_hash"] = json!(hex64(n, 3));
    }
    h
}

pub(super) fn command(st: &mut State, req: &BTreeMap<String, &RawValue>, name: &str) -> String {
    let field = |k: &str| -> Value {
        req.get(k)
            .and_then(|v| serde_json::from_str(v.get()).ok())
            .unwrap_or(Value::Null)
    };
    let api = field("api_version").as_u64().unwrap_or(1) as u8;
    let ok = |v: Value| request_success(req, &v.to_string());
    match name {
        "ping" => ok(json!({})),
        "ledger_current" => ok(json!({"ledger_current_index": st.ledger_index + 1})),
        "ledger_closed" => {
            ok(json!({"ledger_hash": st.ledger_hash, "ledger_index": st.ledger_index}))
        }
        "server_info" => ok(json!({"info": {
            "build_version": "2.4.0-submux-sim",
            "complete_ledgers": format!("{}-{}", st.first_ledger, st.ledger_index),
            "hostid": "SIM", "network_id": 1, "peers": 0,
            "server_state": "full", "load_factor": 1,
            "validated_ledger": {"age": 0, "base_fee_xrp": 0.00001, "hash": st.ledger_hash,
                "reserve_base_xrp": 1, "reserve_inc_xrp": 0.2, "seq": st.ledger_index},
            "validation_quorum": 1}})),
        "fee" => ok(
            json!({"current_ledger_size": "0", "current_queue_size": "0",
            "drops": {"base_fee": "10", "median_fee": "5000", "minimum_fee": "10",
                "open_ledger_fee": "10"},
            "expected_ledger_size": "1000", "ledger_current_index": st.ledger_index + 1,
            "levels": {"median_level": "128000", "minimum_level": "256",
                "open_ledger_level": "256", "reference_level": "256"},
            "max_queue_size": "20000"}),
        ),
        "ledger" => match select_ledger(st, &field("ledger_index")) {
            Err(e) => error_with(req, e, Value::Null),
            Ok(at) => {
                let mut r = ledger_stamp(st, &at);
                r["ledger"] = ledger_header(st, &at, api);
                if field("transactions") == json!(true) {
                    // The ledger's transaction hashes, in ledger order.
                    let n = match at {
                        At::Closed(n) => n,
                        At::Current => st.ledger_index + 1,
                    };
                    let mut txs: Vec<(u64, &String)> = (st.validated.iter())
                        .filter(|(_, v)| v.ledger_index == n)
                        .map(|(h, v)| (v.meta["TransactionIndex"].as_u64().unwrap_or(0), h))
                        .collect();
                    txs.sort();
                    r["ledger"]["transactions"] =
                        json!(txs.iter().map(|(_, h)| h).collect::<Vec<_>>());
                }
                ok(r)
            }
        },
        "account_info" => {
            let account = field("account");
            let Some(addr) = account.as_str() else {
                return request_error_text(req, "invalidParams", 31, "Missing field 'account'.");
            };
            let at = match select_ledger(st, &field("ledger_index")) {
                Ok(at) => at,
                Err(e) => return error_with(req, e, Value::Null),
            };
            let mut r = ledger_stamp(st, &at);
            if decode_address(addr).is_none() {
                return error_with(req, ACT_MALFORMED, r);
            }
            let Some(a) = st.accounts.get(addr) else {
                r["account"] = json!(addr);
                return error_with(req, ACT_NOT_FOUND, r);
            };
            r["account_data"] = json!({"Account": addr, "Balance": a.balance.to_string(),
                "Flags": 0, "LedgerEntryType": "AccountRoot",
                "OwnerCount": a.owner_count, "PreviousTxnID": a.prev_tx,
                "PreviousTxnLgrSeq": a.prev_seq, "Sequence": a.sequence,
                "index": account_root_index(addr)});
            let flags = [
                "allowTrustLineClawback",
                "defaultRipple",
                "depositAuth",
                "disableMasterKey",
                "disallowIncomingCheck",
                "disallowIncomingNFTokenOffer",
                "disallowIncomingPayChan",
                "disallowIncomingTrustline",
                "disallowIncomingXRP",
                "globalFreeze",
                "noFreeze",
                "passwordSpent",
                "requireAuthorization",
                "requireDestinationTag",
            ];
            r["account_flags"] = flags
                .iter()
                .map(|f| (f.to_string(), json!(false)))
                .collect();
            ok(r)
        }
        "tx" => {
            let hash = field("transaction");
            let hash = hash.as_str().unwrap_or_default();
            match st.validated.get(hash) {
                None => request_error_text(req, "txnNotFound", 29, "Transaction not found."),
                Some(v) => {
                    let mut m = tx_message(st, hash, &v.tx_json, api);
                    if let Some(o) = m.as_object_mut() {
                        for k in [
                            "type",
                            "engine_result",
                            "engine_result_code",
                            "engine_result_message",
                            "status",
                        ] {
                            o.remove(k);
                        }
                    }
                    if api < 2 {
                        m = m["transaction"].clone();
                        m["meta"] = v.meta.clone();
                        m["ledger_index"] = json!(v.ledger_index);
                        m["validated"] = json!(true);
                    }
                    ok(m)
                }
            }
        }
        "account_tx" => {
            // rippled's AccountTx.cpp: ledger_index_min/max (-1: the node's extremes),
            // `forward` (oldest first), `limit`, and a `marker` {ledger, seq} to go on from.
            let account = field("account");
            let addr = account.as_str().unwrap_or_default();
            let bound = |k: &str, dflt: u64| match field(k).as_i64() {
                Some(n) if n >= 0 => n as u64,
                _ => dflt,
            };
            let min = bound("ledger_index_min", st.first_ledger).max(st.first_ledger);
            let max = bound("ledger_index_max", st.ledger_index).min(st.ledger_index);
            let forward = field("forward").as_bool().unwrap_or(false);
            let limit = field("limit").as_u64().unwrap_or(200).clamp(10, 400) as usize;
            let order = |v: &Validated| {
                (
                    v.ledger_index,
                    v.meta["TransactionIndex"].as_u64().unwrap_or(0),
                )
            };
            let mut txs: Vec<(&String, &Validated)> = st
                .validated
                .iter()
                .filter(|(_, v)| (min..=max).contains(&v.ledger_index))
                .filter(|(_, v)| crate::dialect::xrpl::affected_accounts(&v.meta).contains(addr))
                .collect();
            txs.sort_by_key(|(_, v)| order(v));
            if !forward {
                txs.reverse();
            }
            let marker = field("marker");
            if let (Some(l), Some(q)) = (marker["ledger"].as_u64(), marker["seq"].as_u64()) {
                let at = txs.iter().position(|(_, v)| order(v) == (l, q));
                txs.drain(..at.unwrap_or(txs.len()));
            }
            let next = txs.get(limit).map(|(_, v)| {
                let (l, q) = order(v);
                json!({"ledger": l, "seq": q})
            });
            txs.truncate(limit);
            let list: Vec<Value> = txs
                .iter()
                .map(|(h, v)| {
                    let mut tx = v.tx_json.clone();
                    tx["date"] = json!(v.close_time);
                    if api >= 2 {
                        json!({"close_time_iso": iso_time(v.close_time), "hash": h,
                            "ledger_hash": v.ledger_hash, "ledger_index": v.ledger_index,
                            "meta": v.meta, "tx_json": tx, "validated": true})
                    } else {
                        if let Some(d) = tx.get("DeliverMax").cloned() {
                            tx["Amount"] = d;
                        }
                        tx["hash"] = json!(h);
                        tx["inLedger"] = json!(v.ledger_index);
                        tx["ledger_index"] = json!(v.ledger_index);
                        json!({"meta": v.meta, "tx": tx, "validated": true})
                    }
                })
                .collect();
            let mut r = json!({"account": addr, "ledger_index_max": max,
                "ledger_index_min": min, "limit": limit, "transactions": list,
                "validated": true});
            if let Some(m) = next {
                r["marker"] = m;
            }
            ok(r)
        }
        _ => request_error_text(req, "unknownCmd", 32, "Unknown method."),
    }
}

/// HTTP: rippled's JSON-RPC shape, plus the `sim_*` control methods.
pub(super) fn handle_http(inner: &Inner, body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_default();
    let method = v["method"].as_str().unwrap_or_default();
    let p = &v["params"][0];
    let s = |k: &str| p[k].as_str().unwrap_or_default().to_string();
    let result = match method {
        "sim_pay" if p["amount"].is_object() => {
            match pay_issued(inner, &s("from"), &s("to"), p["amount"].clone()) {
                Some(hash) => json!({"hash": hash}),
                None => {
                    let e = json!({"error": "invalidParams", "error_code": 31,
                        "error_message": "amount: {currency, issuer, value} expected",
                        "status": "error"});
                    return json!({ "result": e }).to_string();
                }
            }
        }
        "sim_pay" => {
            let drops = p["drops"]
                .as_u64()
                .or_else(|| p["drops"].as_str().and_then(|d| d.parse().ok()))
                .unwrap_or(1);
            json!({"hash": pay(inner, &s("from"), &s("to"), drops)})
        }
        "sim_offer_create" => json!({"hash": offer_create(
            inner, &s("account"), p["taker_gets"].clone(), p["taker_pays"].clone())}),
        "sim_close_ledger" => json!({"ledger_index": close_ledger(inner)}),
        "sim_accounts" => json!({"accounts": inner.lock().accounts.keys().collect::<Vec<_>>()}),
        // rippled answers these itself over HTTP: invalidParams (no url) and noEvents.
        "subscribe" | "unsubscribe" | "path_find" if p.is_object() => {
            let mut req = p.clone();
            req["command"] = json!(method);
            return Xrpl.http_reply(handle_ws(inner, None, &req.to_string()));
        }
        _ => {
            return match Xrpl.parse_client(body, Transport::Http) {
                ClientFrame::Single(ClientMsg::Call { call, .. }) => {
                    let ws_text = handle_ws(inner, None, call.params.as_deref().unwrap_or("{}"));
                    Xrpl.http_reply(ws_text)
                }
                ClientFrame::Single(ClientMsg::Reply(r)) => r,
                _ => json!({"result": {"error": "invalidParams", "status": "error"}}).to_string(),
            };
        }
    };
    let mut r = result;
    r["status"] = json!("success");
    json!({ "result": r }).to_string()
}
