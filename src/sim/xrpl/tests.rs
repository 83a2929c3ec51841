use super::*;
use futures_util::{SinkExt, StreamExt};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/xrpl");

fn fixture(name: &str) -> Value {
    let path = format!("{FIXTURES}/{name}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// The structure of a JSON value: key names (sorted) and value kinds; an array by the
/// union of its elements' shapes. Two messages of the same shape differ only in values.
fn shape(v: &Value) -> Value {
    fn merge(a: &mut Value, b: Value) {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for (k, v) in y {
                    match x.get_mut(&k) {
                        Some(old) => merge(old, v),
                        None => {
                            x.insert(k, v);
                        }
                    }
                }
            }
            (a, b) => *a = b,
        }
    }
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => {
            let mut u = Value::Null;
            for x in a {
                if u.is_null() {
                    u = shape(x);
                } else {
                    merge(&mut u, shape(x));
                }
            }
            Value::Array(if u.is_null() { vec![] } else { vec![u] })
        }
        Value::String(_) => json!("string"),
        Value::Number(_) => json!("number"),
        Value::Bool(_) => json!("bool"),
        Value::Null => Value::Null,
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One WebSocket client of the simulator.
struct Ws(Socket);

impl Ws {
    async fn open(sim: &XrplSim) -> Ws {
        let (s, _) = tokio_tungstenite::connect_async(sim.ws_url())
            .await
            .unwrap();
        Ws(s)
    }
    async fn send(&mut self, v: Value) {
        self.0.send(Message::text(v.to_string())).await.unwrap();
    }
    async fn recv(&mut self) -> Value {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(5), self.0.next())
                .await
                .expect("a frame within 5 s")
                .expect("socket open")
                .unwrap();
            if let Message::Text(t) = m {
                return serde_json::from_str(&t).unwrap();
            }
        }
    }
    /// Send a request and return the next frame (its response when nothing else flows).
    async fn call(&mut self, v: Value) -> Value {
        self.send(v).await;
        self.recv().await
    }
    async fn quiet(&mut self) {
        let got = tokio::time::timeout(Duration::from_millis(200), self.0.next()).await;
        assert!(got.is_err(), "expected silence, got {got:?}");
    }
}

async fn sim() -> (XrplSim, Vec<String>) {
    let sim = XrplSim::start(XrplSimConfig::default()).await.unwrap();
    let accounts = sim.accounts();
    (sim, accounts)
}

fn meta_of(sim: &XrplSim, hash: &str) -> Value {
    sim.inner.lock().validated[hash].meta.clone()
}

#[test]
fn addresses_are_valid_and_distinct() {
    let a = sim_address(0);
    let b = sim_address(1);
    assert_ne!(a, b);
    assert!(crate::dialect::xrpl::decode_address(&a).is_some(), "{a}");
}

#[test]
fn iso_time_of_the_ripple_epoch() {
    assert_eq!(iso_time(0), "2000-01-01T00:00:00Z");
    assert_eq!(iso_time(783_820_741), "2024-11-01T23:59:01Z");
    assert_eq!(
        human_time(783_820_741),
        "2024-Nov-01 23:59:01.000000000 UTC"
    );
}

#[test]
fn issued_values_and_quality_as_rippled_computes_and_prints_them() {
    for s in ["0", "12", "-0.5", "40.5", "0.000000000000001", "1000000000"] {
        assert_eq!(render_value(parse_value(s).unwrap()), s);
    }
    assert_eq!(parse_value("1e3"), None);
    assert_eq!(parse_value("0.0000000000000001"), None, "beyond 15 places");
    // The fixture's quality text, from its mantissa and exponent.
    assert_eq!(rate_text(5_159_486_363_000_000, -22), "0.0000005159486363");
    let usd = |v: &str| json!({"currency":"USD","issuer":sim_address(7),"value":v});
    let rate = |gets: Value, pays: Value| {
        let (m, e) = offer_rate(&gets, &pays).unwrap();
        rate_text(m, e)
    };
    assert_eq!(rate(json!("1000000000"), usd("500")), "0.0000005");
    assert_eq!(rate(usd("100"), json!("250000000")), "2500000");
    assert_eq!(rate(usd("3"), usd("1")), "0.3333333333333333");
    assert_eq!(
        rate(json!("1"), usd("1000000000000")),
        "1000000000000000e-3"
    );
    // The BookDirectory ends with the quality: exponent + 100, then the mantissa.
    let dir = fixture("subscribe_books_snapshot_response.json")["result"]["offers"][0]
        ["BookDirectory"]
        .as_str()
        .unwrap()
        .to_string();
    let q = u64::from_str_radix(&dir[48..], 16).unwrap();
    let (m, e) = (q & ((1 << 56) - 1), (q >> 56) as i32 - 100);
    assert_eq!(rate_hex(m, e), dir[48..]);
    let d = book_directory(&json!("1000000000"), &usd("500"));
    assert!(d.ends_with(&rate_hex(5_000_000_000_000_000, -22)), "{d}");
}

#[tokio::test]
async fn exchanges_fixture_over_a_websocket() {
    let (sim, _) = sim().await;
    let mut ws = Ws::open(&sim).await;
    for case in fixture("exchanges.json").as_array().unwrap() {
        let got = ws.call(case["request"].clone()).await;
        assert_eq!(got, case["response"], "{}", case["note"]);
    }
    // Keys come out sorted at every level (serde_json without preserve_order).
    ws.send(json!({"id":1,"command":"account_info","account":"rNotAnAddress","z":{"b":1,"a":2}}))
        .await;
    let text = match ws.0.next().await {
        Some(Ok(Message::Text(t))) => t.to_string(),
        other => panic!("{other:?}"),
    };
    assert!(
        text.starts_with(r#"{"error":"actMalformed","error_code":35"#),
        "{text}"
    );
    assert!(text.contains(r#""z":{"a":2,"b":1}"#), "{text}");
    let bad = ws
        .call(json!({"id":2,"command":"ping","api_version":4}))
        .await;
    assert_eq!(bad["error"], "invalid_API_version", "{bad}");
}

#[tokio::test]
async fn transaction_messages_have_the_fixture_shapes_per_api_version() {
    let (sim, a) = sim().await;
    let (mut v1, mut v2) = (Ws::open(&sim).await, Ws::open(&sim).await);
    v1.call(json!({"command":"subscribe","accounts":[&a[0]],"api_version":1}))
        .await;
    v2.call(json!({"command":"subscribe","accounts_proposed":[&a[0]],"api_version":2}))
        .await;
    let hash = sim.pay(&a[0], &a[1], 20_000_000);
    let proposed = v2.recv().await;
    assert_eq!(
        shape(&proposed),
        shape(&fixture("transaction_proposed_payment_api_v2.json"))
    );
    assert_eq!(proposed["hash"], json!(hash));
    let index = sim.close_ledger();
    let (m1, m2) = (v1.recv().await, v2.recv().await);
    assert_eq!(
        shape(&m1),
        shape(&fixture("transaction_validated_payment_api_v1.json"))
    );
    assert_eq!(
        shape(&m2),
        shape(&fixture("transaction_validated_payment_api_v2.json"))
    );
    assert_eq!(m1["transaction"]["hash"], json!(hash));
    assert_eq!(m1["transaction"]["Amount"], "20000000");
    assert_eq!(m1["transaction"]["DeliverMax"], "20000000");
    assert_eq!(m2["hash"], json!(hash));
    assert_eq!(m2["ledger_index"], json!(index));
    assert_eq!(m2["meta"]["delivered_amount"], "20000000");
    assert_eq!(m1["meta"], m2["meta"]);
    // The next subscribe without api_version sets the connection back to v1.
    v2.call(json!({"command":"subscribe","streams":["server"]}))
        .await;
    sim.pay(&a[1], &a[0], 1);
    assert!(v2.recv().await.get("transaction").is_some(), "proposed, v1");
}

#[tokio::test]
async fn affected_accounts_of_the_simulated_transactions() {
    use crate::dialect::xrpl::affected_accounts;
    let set = |xs: &[&String]| {
        xs.iter()
            .map(|s| s.to_string())
            .collect::<std::collections::BTreeSet<_>>()
    };
    let fixture_meta = &fixture("transaction_validated_payment_api_v2.json")["meta"];
    assert_eq!(
        affected_accounts(fixture_meta),
        [
            "rH3PxjJPrrkvsATddBXkayjAyWR8xigaE8",
            "rfdGuuVnq9juqWDV4W3LoLiNcW8g2hAXhN"
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    );
    let (sim, a) = sim().await;
    let usd = |v: &str| json!({"currency":"USD","issuer":&a[2],"value":v});
    let xrp = sim.pay(&a[0], &a[1], 5);
    let issue = sim.pay_issued(&a[2], &a[0], usd("10")).unwrap();
    let ripple = sim.pay_issued(&a[0], &a[1], usd("4")).unwrap();
    let offer = sim.offer_create(&a[3], json!("1000000"), usd("1"));
    sim.close_ledger();
    assert_eq!(
        affected_accounts(&meta_of(&sim, &xrp)),
        set(&[&a[0], &a[1]])
    );
    assert_eq!(
        affected_accounts(&meta_of(&sim, &issue)),
        set(&[&a[0], &a[2]])
    );
    // a[1] has no AccountRoot change: the trust line's limits name it.
    let m = meta_of(&sim, &ripple);
    assert_eq!(affected_accounts(&m), set(&[&a[0], &a[1], &a[2]]));
    assert_eq!(m["delivered_amount"], usd("4"));
    // The offer's owner and the issuer of its TakerPays.
    assert_eq!(
        affected_accounts(&meta_of(&sim, &offer)),
        set(&[&a[2], &a[3]])
    );
    // Trust-line balances: a[0] got 10, sent 4; a[1] holds 4.
    let st = sim.inner.lock();
    assert_eq!(holding(&st, &a[0], &a[2], "USD"), parse_value("6").unwrap());
    assert_eq!(holding(&st, &a[1], &a[2], "USD"), parse_value("4").unwrap());
}

#[tokio::test]
async fn fan_out_keeps_rippleds_duplicates_and_ledger_order() {
    let (sim, a) = sim().await;
    let usd = json!({"currency":"USD","issuer":&a[2]});
    let mut x = Ws::open(&sim).await;
    x.call(json!({"command":"subscribe","streams":["ledger","transactions","transactions_proposed"],"accounts":[&a[0],&a[1]],"api_version":2}))
        .await;
    let mut z = Ws::open(&sim).await;
    z.call(json!({"command":"subscribe","accounts":[&a[3]],"books":[{"taker_pays":{"currency":"XRP"},"taker_gets":usd}],"api_version":2}))
        .await;
    let hash = sim.pay(&a[0], &a[1], 7);
    let p = x.recv().await;
    assert_eq!(
        (p["validated"].clone(), p["hash"].clone()),
        (json!(false), json!(hash))
    );
    x.quiet().await;
    sim.close_ledger();
    assert_eq!(x.recv().await["type"], "ledgerClosed", "the ledger first");
    // transactions, transactions_proposed, and accounts once for two accounts.
    for _ in 0..3 {
        let v = x.recv().await;
        assert_eq!(
            (v["validated"].clone(), v["hash"].clone()),
            (json!(true), json!(hash))
        );
    }
    x.quiet().await;
    // Account and book deliveries are independent: z gets the offer twice.
    let mut one = usd.clone();
    one["value"] = json!("1");
    let offer = sim.offer_create(&a[3], json!("1000000"), one);
    sim.close_ledger();
    for _ in 0..2 {
        assert_eq!(z.recv().await["hash"], json!(offer));
    }
    z.quiet().await;
}

#[tokio::test]
async fn subscribe_results_ledger_server_and_book_snapshots() {
    let (sim, a) = sim().await;
    let usd = |v: &str| json!({"currency":"USD","issuer":&a[7],"value":v});
    sim.offer_create(&a[0], json!("1000000000"), usd("500"));
    sim.offer_create(&a[0], json!("1000000000"), usd("400"));
    sim.offer_create(&a[1], usd("100"), json!("250000000"));
    sim.close_ledger();
    let mut ws = Ws::open(&sim).await;
    let r = ws
        .call(json!({"id":"x","command":"subscribe","streams":["ledger"]}))
        .await;
    let want = fixture("subscribe_ledger_response.json");
    assert_eq!(shape(&r), shape(&want));
    assert_eq!(r["result"]["ledger_index"], json!(sim.ledger_index()));
    let s1 = ws
        .call(json!({"command":"subscribe","streams":["server"]}))
        .await;
    let s2 = ws
        .call(json!({"command":"subscribe","streams":["server"]}))
        .await;
    assert_ne!(s1["result"]["random"], s2["result"]["random"], "fresh");
    let key = s1["result"]["pubkey_node"].as_str().unwrap();
    let decoded = crate::dialect::base58::check_decode(key, crate::dialect::base58::RIPPLE);
    assert_eq!(decoded.map(|k| (k.len(), k[0])), Some((34, 0x1C)), "{key}");
    let book = json!({"taker_pays":{"currency":"USD","issuer":&a[7]},"taker_gets":{"currency":"XRP"},"snapshot":true});
    let r = ws
        .call(json!({"id":3,"command":"subscribe","books":[book]}))
        .await;
    let want = fixture("subscribe_books_snapshot_response.json");
    assert_eq!(shape(&r), shape(&want));
    let offers = r["result"]["offers"].as_array().unwrap();
    let qualities: Vec<&Value> = offers.iter().map(|o| &o["quality"]).collect();
    assert_eq!(
        qualities,
        [&json!("0.0000004"), &json!("0.0000005")],
        "best first"
    );
    assert!(offers[0].get("owner_funds").is_some() && offers[1].get("owner_funds").is_none());
    // XRP funds are the balance above the reserve (two offers owned).
    let balance = GENESIS_BALANCE - 2 * FEE;
    let funds = balance - RESERVE_BASE - 2 * RESERVE_INC;
    assert_eq!(offers[0]["owner_funds"], json!(funds.to_string()));
    let mut both = book.clone();
    both["both"] = json!(true);
    let r = ws
        .call(json!({"command":"subscribe","books":[both, book]}))
        .await;
    assert_eq!(r["result"]["bids"].as_array().unwrap().len(), 2);
    assert_eq!(r["result"]["asks"][0]["Account"], json!(&a[1]));
    assert_eq!(r["result"]["offers"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn peer_status_needs_admin_and_the_streams_before_it_stay() {
    let (sim, a) = sim().await;
    let mut ws = Ws::open(&sim).await;
    let r = ws
        .call(
            json!({"id":1,"command":"subscribe","streams":["ledger","peer_status","transactions"]}),
        )
        .await;
    assert_eq!(r["error"], "noPermission", "{r}");
    assert_eq!(r["error_code"], 6);
    sim.pay(&a[0], &a[1], 1);
    sim.close_ledger();
    assert_eq!(ws.recv().await["type"], "ledgerClosed");
    ws.quiet().await;
}

#[tokio::test]
async fn path_find_is_one_request_per_connection() {
    let (sim, a) = sim().await;
    let mut ws = Ws::open(&sim).await;
    let pf = |sub: &str| json!({"id":5,"command":"path_find","subcommand":sub});
    assert_eq!(ws.call(pf("status")).await["error"], "noPathRequest");
    assert_eq!(ws.call(pf("create")).await["error"], "srcActMissing");
    let mut create = pf("create");
    create["source_account"] = json!(&a[0]);
    create["destination_account"] = json!(&a[1]);
    create["destination_amount"] = json!("1000");
    let r = ws.call(create).await;
    assert_eq!(r["result"]["alternatives"], json!([]), "{r}");
    assert_eq!(r["result"]["id"], 5);
    sim.close_ledger();
    let update = ws.recv().await;
    assert_eq!(update["type"], "path_find");
    assert_eq!(update["full_reply"], true);
    assert_eq!(ws.call(pf("close")).await["result"]["closed"], true);
    assert_eq!(ws.call(pf("close")).await["error"], "noPathRequest");
    sim.close_ledger();
    ws.quiet().await;
    let http = handle_http(
        &sim.inner,
        r#"{"method":"path_find","params":[{"subcommand":"create"}]}"#,
    );
    assert!(http.contains("noEvents"), "{http}");
    let http = handle_http(
        &sim.inner,
        r#"{"method":"subscribe","params":[{"streams":["ledger"]}]}"#,
    );
    let v: Value = serde_json::from_str(&http).unwrap();
    assert_eq!(v["result"]["error"], "invalidParams", "{http}");
    assert_eq!(v["result"]["request"]["command"], "subscribe", "{http}");
}

#[tokio::test]
async fn ledger_and_account_info_honour_ledger_index() {
    let (sim, a) = sim().await;
    sim.close_ledger();
    let n = sim.ledger_index();
    let mut ws = Ws::open(&sim).await;
    let cur = ws.call(json!({"command":"ledger","api_version":2})).await;
    assert_eq!(cur["result"]["ledger_current_index"], json!(n + 1), "{cur}");
    assert_eq!(cur["result"]["ledger"]["closed"], false);
    let val = ws
        .call(json!({"command":"ledger","ledger_index":"validated","api_version":2}))
        .await;
    assert_eq!(val["result"]["ledger_index"], json!(n));
    assert_eq!(val["result"]["ledger"]["ledger_index"], json!(n));
    let old = ws
        .call(json!({"command":"ledger","ledger_index":n - 1}))
        .await;
    assert_eq!(
        old["result"]["ledger"]["ledger_index"],
        json!((n - 1).to_string()),
        "v1"
    );
    assert_eq!(
        old["result"]["ledger"]["close_time"].as_u64().unwrap() + 4,
        val["result"]["ledger"]["close_time"].as_u64().unwrap()
    );
    let gone = ws
        .call(json!({"command":"ledger","ledger_index":n + 5}))
        .await;
    assert_eq!(gone["error"], "lgrNotFound");
    let info = ws
        .call(json!({"command":"account_info","account":&a[0]}))
        .await;
    assert_eq!(
        info["result"]["ledger_current_index"],
        json!(n + 1),
        "{info}"
    );
    assert_eq!(info["result"]["validated"], false);
    assert_eq!(
        info["result"]["account_flags"]["requireDestinationTag"],
        false
    );
    let unknown = ws
        .call(json!({"id":1,"command":"account_info","account":"rfdGuuVnq9juqWDV4W3LoLiNcW8g2hAXhN","ledger_index":"validated"}))
        .await;
    assert_eq!(unknown["error"], "actNotFound");
    assert_eq!(unknown["account"], "rfdGuuVnq9juqWDV4W3LoLiNcW8g2hAXhN");
    assert_eq!(unknown["ledger_index"], json!(n));
    assert_eq!(unknown["validated"], true);
}

#[tokio::test]
async fn offers_cross_at_the_makers_price() {
    use crate::dialect::xrpl::{affected_accounts, touched_books};
    let (sim, a) = sim().await;
    let (maker, taker, late, issuer) = (&a[0], &a[1], &a[2], &a[7]);
    let usd = |v: &str| json!({"currency":"USD","issuer":issuer,"value":v});
    let mut z = Ws::open(&sim).await;
    z.call(json!({"command":"subscribe","streams":["book_changes"],"books":[{"taker_pays":{"currency":"USD","issuer":issuer},"taker_gets":{"currency":"XRP"}}],"api_version":2}))
        .await;
    sim.pay_issued(issuer, maker, usd("100")).unwrap();
    sim.close_ledger();
    assert_eq!(z.recv().await["changes"], json!([]));
    // The maker sells 10 USD at 2 XRP each.
    let made = sim.offer_create(maker, usd("10"), json!("20000000"));
    sim.close_ledger();
    assert_eq!(
        z.recv().await["changes"],
        json!([]),
        "a new offer is no change"
    );
    assert_eq!(
        z.recv().await["hash"],
        json!(made),
        "the maker's offer is in the book"
    );
    // A taker buys 4 USD for 8 XRP: filled, the maker's offer shrinks.
    let t1 = sim.offer_create(taker, json!("8000000"), usd("4"));
    sim.close_ledger();
    let changes = z.recv().await;
    assert_eq!(changes["type"], "bookChanges");
    assert_eq!(changes["validated"], true);
    assert_eq!(
        changes["changes"],
        json!([{"currency_a":"XRP_drops","currency_b":format!("{issuer}/USD"),
            "volume_a":"8000000","volume_b":"4","high":"2000000","low":"2000000",
            "open":"2000000","close":"2000000"}])
    );
    assert_eq!(z.recv().await["hash"], json!(t1), "the maker's book moved");
    let m = meta_of(&sim, &t1);
    let set: std::collections::BTreeSet<String> = [maker, taker, issuer]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(affected_accounts(&m), set);
    assert_eq!(touched_books(&m).len(), 1, "{m}");
    let nodes = m["AffectedNodes"].as_array().unwrap();
    let offer = nodes
        .iter()
        .find_map(|n| {
            n.get("ModifiedNode")
                .filter(|b| b["LedgerEntryType"] == "Offer")
        })
        .expect("the maker's offer modified");
    assert_eq!(offer["PreviousFields"]["TakerGets"], usd("10"));
    assert_eq!(offer["FinalFields"]["TakerGets"], usd("6"));
    assert_eq!(offer["FinalFields"]["TakerPays"], "12000000");
    let rests = |n: &Value| {
        n.get("CreatedNode")
            .is_some_and(|b| b["LedgerEntryType"] == "Offer")
    };
    assert!(!nodes.iter().any(rests), "filled: nothing rests");
    {
        let st = sim.inner.lock();
        assert_eq!(
            holding(&st, taker, issuer, "USD"),
            parse_value("4").unwrap()
        );
        assert_eq!(
            holding(&st, maker, issuer, "USD"),
            parse_value("96").unwrap()
        );
        assert_eq!(
            st.accounts[maker].balance,
            GENESIS_BALANCE - FEE + 8_000_000
        );
        assert_eq!(
            st.accounts[taker].balance,
            GENESIS_BALANCE - FEE - 8_000_000
        );
    }
    // A second taker wants 10: takes the last 6, the rest rests on the other side.
    let t2 = sim.offer_create(late, json!("20000000"), usd("10"));
    sim.close_ledger();
    z.recv().await;
    assert_eq!(z.recv().await["hash"], json!(t2));
    z.quiet().await;
    let m = meta_of(&sim, &t2);
    let nodes = m["AffectedNodes"].as_array().unwrap();
    let deleted = nodes
        .iter()
        .find_map(|n| n.get("DeletedNode"))
        .expect("the maker's offer used up");
    assert_eq!(deleted["PreviousFields"]["TakerGets"], usd("6"));
    let created = nodes
        .iter()
        .find_map(|n| {
            n.get("CreatedNode")
                .filter(|b| b["LedgerEntryType"] == "Offer")
        })
        .expect("the remainder rests");
    assert_eq!(created["NewFields"]["TakerGets"], "8000000");
    assert_eq!(created["NewFields"]["TakerPays"], usd("4"));
    let keys: Vec<_> = nodes
        .iter()
        .map(|n| node_body(n)["LedgerIndex"].clone())
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_by(|x, y| x.as_str().cmp(&y.as_str()));
    assert_eq!(keys, sorted, "AffectedNodes in ledger-key order");
    let st = sim.inner.lock();
    assert_eq!(st.offers.len(), 1);
    assert_eq!(st.accounts[maker].owner_count, 0);
    assert_eq!(st.accounts[late].owner_count, 1);
    // An unfunded taker crosses nothing: its offer just rests.
    drop(st);
    let before = sim.inner.lock().offers.len();
    sim.offer_create(&a[3], usd("1"), json!("1"));
    sim.close_ledger();
    assert_eq!(sim.inner.lock().offers.len(), before + 1);
}
