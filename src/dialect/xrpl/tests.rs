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
        ClientMsg::Subscribe {
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
    let ClientMsg::Subscribe { keys, then, id, .. } = ws(&format!(
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
    let ClientMsg::Subscribe { keys: v1, .. } = ws(&format!(
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
    let ClientMsg::Subscribe { keys, then, .. } = &msg else {
        panic!()
    };
    assert_eq!(keys.len(), 1, "ledger stays subscribed, as on rippled");
    let Answer::Rendered(r) = then else { panic!() };
    assert!(r.contains("actMalformed"), "{r}");
}

#[test]
fn ledger_server_and_snapshots_ask_the_node_again() {
    let ClientMsg::Subscribe { then, keys, .. } = ws(
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
    let UpstreamFrame::Notification { targets, .. } = Xrpl.parse_upstream(&text) else {
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
    let ClientMsg::Subscribe { keys, .. } = ws(
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
