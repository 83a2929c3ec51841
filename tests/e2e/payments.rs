//! The payments feed (issue 16) over the simulated rippled: credits with exact amounts,
//! one upstream subscription per watched address however many watchers, JSON-RPC errors,
//! `since` replay across a restart of submux, and `payments_history` over HTTP.

use crate::common::*;
use crate::payments_util::{event, subscribe, xrpl_payments_routes};
use crate::protocol::http_post;
use serde_json::{json, Value};
use std::path::PathBuf;
use submux::config::{PaymentsRouteConfig, RouteConfig};
use submux::dialect::DialectKind;
use submux::sim::xrpl::{XrplSim, XrplSimConfig};

fn routes(sim: &XrplSim, data_dir: Option<&PathBuf>) -> Vec<RouteConfig> {
    xrpl_payments_routes(
        sim,
        PaymentsRouteConfig {
            data_dir: data_dir.map(|d| d.display().to_string()),
            ..Default::default()
        },
    )
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("submux-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[tokio::test]
async fn xrp_and_issued_credits_with_exact_amounts() {
    let sim = XrplSim::start(XrplSimConfig::default()).await.unwrap();
    let mux = submux_with(server_cfg(), routes(&sim, None)).await;
    let acct = sim.accounts();
    let (a, b, issuer) = (&acct[0], &acct[1], &acct[2]);
    let mut c = Client::connect(&mux.ws_url("/payments")).await;
    let sub = subscribe(&mut c, json!({"chain": "xrpl", "address": b})).await;
    // One account, plus the ledger stream the watcher follows for catch-ups.
    wait_for("one upstream subscription", || sim.subscriptions() == 2).await;
    // 1 drop, then 1.000001 XRP, then a payment *from* b (no credit to b), then an
    // issued currency through the trust line the payment opens.
    sim.pay(a, b, 1);
    sim.close_ledger();
    let e = event(&mut c, &sub).await;
    assert_eq!(e["amount"], "0.000001");
    assert_eq!(e["raw_amount"], "1");
    assert_eq!(
        e["asset"],
        json!({"type": "native", "symbol": "XRP", "decimals": 6})
    );
    assert_eq!(
        (e["to"].as_str(), e["from"].as_str()),
        (Some(b.as_str()), Some(a.as_str()))
    );
    assert_eq!(e["status"], "final");
    assert_eq!(e["chain"], "xrpl");
    let tx = e["tx"].as_str().unwrap().to_string();
    assert_eq!(e["id"], format!("xrpl:{tx}:0"));
    assert!(e["height"].as_u64().is_some() && e["time"].as_str().unwrap().ends_with('Z'));
    let first_cursor = e["cursor"].as_str().unwrap().to_string();
    sim.pay(a, b, 1_000_001);
    sim.pay(b, a, 5_000_000);
    sim.close_ledger();
    let e = event(&mut c, &sub).await;
    assert_eq!(
        (e["amount"].as_str(), e["raw_amount"].as_str()),
        (Some("1.000001"), Some("1000001"))
    );
    assert!(
        e["cursor"].as_str().unwrap() > first_cursor.as_str(),
        "cursors increase"
    );
    sim.pay_issued(
        issuer,
        b,
        json!({"currency": "USD", "issuer": issuer, "value": "12.000000000000001"}),
    )
    .unwrap();
    sim.close_ledger();
    let e = event(&mut c, &sub).await;
    assert_eq!(e["amount"], "12.000000000000001");
    assert_eq!(
        e["raw_amount"],
        Value::Null,
        "issued currencies have no base unit"
    );
    assert_eq!(
        e["asset"],
        json!({"type": "issued", "currency": "USD", "issuer": issuer})
    );
    // An assets filter: only USD from that issuer.
    let usd = subscribe(
        &mut c,
        json!({"chain": "xrpl", "address": b, "assets": {"currency": "USD", "issuer": issuer}}),
    )
    .await;
    sim.pay(a, b, 7);
    sim.pay_issued(
        issuer,
        b,
        json!({"currency": "USD", "issuer": issuer, "value": "1"}),
    )
    .unwrap();
    sim.close_ledger();
    let mut got = Vec::new();
    for _ in 0..3 {
        let v = c.recv().await;
        got.push((
            v["params"]["subscription"].as_str().unwrap().to_string(),
            v["params"]["result"]["amount"]
                .as_str()
                .unwrap()
                .to_string(),
        ));
    }
    got.sort();
    let mut want = vec![
        (sub.clone(), "0.000007".to_string()),
        (sub.clone(), "1".to_string()),
        (usd.clone(), "1".to_string()),
    ];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(
        sim.subscriptions(),
        2,
        "two watchers of one address: one upstream subscription (and the ledger stream)"
    );
    mux.stop().await;
}

#[tokio::test]
async fn bad_requests_get_json_rpc_errors() {
    let sim = XrplSim::start(XrplSimConfig::default()).await.unwrap();
    let mux = submux_with(server_cfg(), routes(&sim, None)).await;
    let mut c = Client::connect(&mux.ws_url("/payments")).await;
    let b = &sim.accounts()[1];
    let cases = [
        (
            json!({"chain": "dogecoin", "address": b}),
            "unknown chain \"dogecoin\" (xrpl, ethereum, solana, lightning)",
        ),
        (
            json!({"chain": "ethereum", "address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"}),
            "this route does not watch ethereum",
        ),
        (
            json!({"chain": "xrpl", "address": format!("{}x", &b[..b.len() - 1])}),
            "invalid xrpl address",
        ),
        (
            json!({"chain": "xrpl", "address": b, "since": "00000000000000ff"}),
            "unknown cursor",
        ),
        (
            json!({"chain": "xrpl", "address": b, "since": "cursor?"}),
            "unknown cursor",
        ),
    ];
    for (params, want) in cases {
        let r = c.call("payments_subscribe", json!([params])).await;
        assert_eq!(r["error"]["code"], -32602, "{r}");
        assert!(
            r["error"]["message"].as_str().unwrap().starts_with(want),
            "{r}"
        );
    }
    let r = c
        .call("payments_unsubscribe", json!(["0x0000000000000001"]))
        .await;
    assert_eq!(r["result"], false);
    let r = c.call("eth_subscribe", json!(["newHeads"])).await;
    assert_eq!(r["error"]["code"], -32601);
    c.send_text("{not json").await;
    assert_eq!(c.recv().await["error"]["code"], -32700);
    // The socket stays usable, and nothing was subscribed upstream.
    let sub = subscribe(&mut c, json!({"chain": "xrpl", "address": b})).await;
    let r = c.call("payments_unsubscribe", json!([sub])).await;
    assert_eq!(r["result"], true);
    // Over HTTP, subscribing is refused (no notifications on HTTP), history works.
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "payments_subscribe", "params": [{"chain": "xrpl", "address": b}]});
    let r = http_post(&mux.http_url("/payments"), &body.to_string()).await;
    assert_eq!(r["error"]["code"], -32001, "{r}");
    mux.stop().await;
}

#[tokio::test]
async fn thousand_watchers_share_one_upstream_subscription_per_address() {
    let sim = XrplSim::start(XrplSimConfig::default()).await.unwrap();
    let mux = submux_with(server_cfg(), routes(&sim, None)).await;
    let acct = sim.accounts();
    let watched = [&acct[1], &acct[2], &acct[3]];
    let mut clients = Vec::new();
    let mut subs = Vec::new();
    for i in 0..10 {
        let mut c = Client::connect(&mux.ws_url("/payments")).await;
        let mut mine = Vec::new();
        for j in 0..100 {
            let addr = watched[(i * 100 + j) % 3];
            mine.push((
                subscribe(&mut c, json!({"chain": "xrpl", "address": addr})).await,
                addr.to_string(),
            ));
        }
        clients.push(c);
        subs.push(mine);
    }
    wait_for(
        "three upstream subscriptions (and the ledger stream)",
        || sim.subscriptions() == 4,
    )
    .await;
    for (k, to) in watched.iter().enumerate() {
        sim.pay(&acct[0], to, 10 + k as u64);
    }
    sim.close_ledger();
    // Every watcher gets exactly its address's credit.
    for (c, mine) in clients.iter_mut().zip(&subs) {
        let mut got = std::collections::HashMap::new();
        for _ in 0..mine.len() {
            let v = c.recv().await;
            let e = &v["params"]["result"];
            got.insert(
                v["params"]["subscription"].as_str().unwrap().to_string(),
                e["to"].as_str().unwrap().to_string(),
            );
        }
        for (sub, addr) in mine {
            assert_eq!(got.get(sub), Some(addr), "{sub}");
        }
    }
    assert_eq!(
        sim.subscriptions(),
        4,
        "1,000 watchers, 3 addresses: 3 upstream subscriptions (and the ledger stream)"
    );
    let m = &mux.payments[0].metrics;
    assert_eq!(
        m.client_subscriptions
            .load(std::sync::atomic::Ordering::Relaxed),
        1000
    );
    assert_eq!(
        m.payments_watched
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
    drop(clients);
    wait_for("upstream released after watchers leave", || {
        sim.subscriptions() == 0
    })
    .await;
    mux.stop().await;
}

#[tokio::test]
async fn since_replays_from_the_log_across_a_restart() {
    let dir = temp_dir("payments-restart");
    let sim = XrplSim::start(XrplSimConfig::default()).await.unwrap();
    let acct = sim.accounts();
    let (a, b) = (&acct[0], &acct[1]);
    let mut cursors = Vec::new();
    {
        let mux = submux_with(server_cfg(), routes(&sim, Some(&dir))).await;
        let mut c = Client::connect(&mux.ws_url("/payments")).await;
        let sub = subscribe(&mut c, json!({"chain": "xrpl", "address": b})).await;
        wait_for("subscribed upstream", || sim.subscriptions() == 2).await;
        for drops in [100, 200, 300] {
            sim.pay(a, b, drops);
            sim.close_ledger();
            let e = event(&mut c, &sub).await;
            cursors.push((
                e["cursor"].as_str().unwrap().to_string(),
                e["raw_amount"].as_str().unwrap().to_string(),
            ));
        }
        drop(c);
        assert!(mux.stop().await);
    }
    // A new instance on the same data_dir: the cursor of the first event still works.
    let mux = submux_with(server_cfg(), routes(&sim, Some(&dir))).await;
    let mut c = Client::connect(&mux.ws_url("/payments")).await;
    let sub = subscribe(
        &mut c,
        json!({"chain": "xrpl", "address": b, "since": cursors[0].0}),
    )
    .await;
    for (cursor, raw) in &cursors[1..] {
        let e = event(&mut c, &sub).await;
        assert_eq!(
            (
                e["cursor"].as_str().unwrap(),
                e["raw_amount"].as_str().unwrap()
            ),
            (cursor.as_str(), raw.as_str())
        );
    }
    // Then live, after the replay.
    wait_for("subscribed upstream", || sim.subscriptions() == 2).await;
    sim.pay(a, b, 400);
    sim.close_ledger();
    let e = event(&mut c, &sub).await;
    assert_eq!(e["raw_amount"], "400");
    assert!(e["cursor"].as_str().unwrap() > cursors[2].0.as_str());
    // The same history over HTTP, paged with limit.
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "payments_history",
        "params": [{"chain": "xrpl", "address": b, "since": cursors[0].0, "limit": 2}]});
    let r = http_post(&mux.http_url("/payments"), &body.to_string()).await;
    let events = r["result"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"));
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["raw_amount"], "200");
    assert_eq!(r["result"]["cursor"], cursors[2].0);
    let body = json!({"jsonrpc": "2.0", "id": 8, "method": "payments_history",
        "params": {"chain": "xrpl", "address": b, "since": cursors[2].0}});
    let r = http_post(&mux.http_url("/payments"), &body.to_string()).await;
    assert_eq!(r["result"]["events"][0]["raw_amount"], "400", "{r}");
    mux.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn partial_payments_failures_checks_escrows_and_offers_crossed() {
    let sim = XrplSim::start(XrplSimConfig::default()).await.unwrap();
    let mux = submux_with(server_cfg(), routes(&sim, None)).await;
    let acct = sim.accounts();
    let (a, b, c, issuer) = (&acct[0], &acct[1], &acct[2], &acct[3]);
    let mut ws = Client::connect(&mux.ws_url("/payments")).await;
    let sub_b = subscribe(&mut ws, json!({"chain": "xrpl", "address": b})).await;
    let sub_a = subscribe(&mut ws, json!({"chain": "xrpl", "address": a})).await;
    wait_for("two upstream subscriptions", || sim.subscriptions() == 3).await;
    // A partial payment: DeliverMax 100,000 XRP, 1 drop delivered.
    let tx = sim.pay_partial(a, b, 100_000_000_000, 1);
    sim.close_ledger();
    let e = event(&mut ws, &sub_b).await;
    assert_eq!(
        (
            e["tx"].as_str(),
            e["amount"].as_str(),
            e["raw_amount"].as_str()
        ),
        (Some(tx.as_str()), Some("0.000001"), Some("1"))
    );
    // A tec failure: nothing. Then a check of 3 XRP cashed by b itself (its fee is not
    // taken off the credit) and an escrow of 2 XRP finished by c.
    sim.pay_failing(a, b, 5_000_000);
    sim.close_ledger();
    let check = sim.check_cash(a, b, 3_000_000);
    sim.close_ledger();
    let e = event(&mut ws, &sub_b).await;
    assert_eq!(
        (e["tx"].as_str(), e["amount"].as_str()),
        (Some(check.as_str()), Some("3")),
        "the tec payment gave nothing"
    );
    let escrow = sim.escrow_finish(c, a, b, 2_000_000);
    sim.close_ledger();
    let e = event(&mut ws, &sub_b).await;
    assert_eq!(
        (e["tx"].as_str(), e["amount"].as_str(), e["from"].as_str()),
        (Some(escrow.as_str()), Some("2"), Some(c.as_str()))
    );
    // Offers crossed: a sells 10 USD for 10 XRP; b's offer takes it. b is credited the
    // USD through its trust line, a (the maker) the XRP.
    sim.pay_issued(
        issuer,
        a,
        json!({"currency": "USD", "issuer": issuer, "value": "50"}),
    )
    .unwrap();
    sim.close_ledger();
    let e = event(&mut ws, &sub_a).await;
    assert_eq!(e["amount"], "50");
    sim.pay_issued(
        issuer,
        b,
        json!({"currency": "USD", "issuer": issuer, "value": "1"}),
    )
    .unwrap();
    sim.close_ledger();
    let e = event(&mut ws, &sub_b).await;
    assert_eq!(e["amount"], "1");
    sim.offer_create(
        a,
        json!({"currency": "USD", "issuer": issuer, "value": "10"}),
        json!("10000000"),
    );
    sim.close_ledger();
    let taker = sim.offer_create(
        b,
        json!("10000000"),
        json!({"currency": "USD", "issuer": issuer, "value": "10"}),
    );
    sim.close_ledger();
    let mut got = Vec::new();
    for _ in 0..2 {
        let v = ws.recv().await;
        let e = &v["params"]["result"];
        assert_eq!(e["tx"], taker, "{v}");
        got.push((
            v["params"]["subscription"].as_str().unwrap().to_string(),
            e["amount"].as_str().unwrap().to_string(),
            e["asset"]["type"].as_str().unwrap().to_string(),
        ));
    }
    got.sort();
    let mut want = vec![
        (sub_a.clone(), "10".to_string(), "native".to_string()),
        (sub_b.clone(), "10".to_string(), "issued".to_string()),
    ];
    want.sort();
    assert_eq!(got, want);
    mux.stop().await;
}

#[tokio::test]
async fn lightning_settled_incoming_payments_from_the_lnbits_route() {
    use crate::lnbits_util::{http_base, lnbits_route, push_body, start};
    let mut p = RouteConfig::new("/payments", DialectKind::Payments, vec![]);
    p.payments = Some(PaymentsRouteConfig {
        lnbits: Some(crate::lnbits_util::PATH.into()),
        ..Default::default()
    });
    let mux = start(server_cfg(), vec![lnbits_route(vec![]), p], None).await;
    let inkey = "0f5e0c7a2b9d4e6f8a1b3c5d7e9f1a2b";
    let mut c = Client::connect(&mux.ws_url("/payments")).await;
    let sub = subscribe(&mut c, json!({"chain": "lightning", "address": inkey})).await;
    wait_for("the LNbits channel joined", || {
        mux.channels[0]
            .metrics
            .channels
            .load(std::sync::atomic::Ordering::Relaxed)
            == 1
    })
    .await;
    let fixture: Value =
        serde_json::from_str(include_str!("../fixtures/lnbits/payment_notification.json")).unwrap();
    // Pending, outgoing, then settled incoming (as LNbits sends them, to the invoice key).
    let mut pending = fixture.clone();
    pending["payment"]["status"] = json!("pending");
    let mut outgoing = fixture.clone();
    outgoing["payment"]["amount"] = json!(-5000);
    for m in [&pending, &outgoing, &fixture] {
        let a = push_body(&http_base(&mux), inkey, &m.to_string()).await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let e = event(&mut c, &sub).await;
    assert_eq!(e["raw_amount"], "250000000");
    assert_eq!(e["amount"], "0.0025");
    assert_eq!(
        e["asset"],
        json!({"type": "lightning", "symbol": "BTC", "decimals": 11})
    );
    assert_eq!(e["status"], "final");
    assert_eq!(e["to"], inkey);
    assert_eq!(
        e["id"],
        format!(
            "lightning:{}:0",
            fixture["payment"]["payment_hash"].as_str().unwrap()
        )
    );
    // The same settled message again (a reconnect, a repeat): logged once.
    push_body(&http_base(&mux), inkey, &fixture.to_string()).await;
    let mut other = fixture.clone();
    other["payment"]["payment_hash"] = json!("ff".repeat(32));
    other["payment"]["amount"] = json!(1);
    push_body(&http_base(&mux), inkey, &other.to_string()).await;
    let e = event(&mut c, &sub).await;
    assert_eq!(
        e["amount"], "0.00000000001",
        "the repeat was not delivered again"
    );
    let r = c
        .call(
            "payments_history",
            json!([{"chain": "lightning", "address": inkey, "since": "0000000000000000"}]),
        )
        .await;
    assert_eq!(r["result"]["events"].as_array().unwrap().len(), 2, "{r}");
    mux.stop().await;
}

#[tokio::test]
async fn solana_sol_and_spl_credits_confirmed_then_final() {
    use submux::sim::solana::sol_payments::{Token, Transfer};
    use submux::sim::solana::{base58_encode, SolSim, SolSimConfig};
    let sim = SolSim::start(SolSimConfig::default()).await.unwrap();
    let mut sol = fast_route(vec![sim.ws_url()]);
    sol.path = "/sol".into();
    sol.dialect = DialectKind::Solana;
    sol.http_upstream = Some(sim.http_url());
    let mut p = RouteConfig::new("/payments", DialectKind::Payments, vec![]);
    p.payments = Some(PaymentsRouteConfig {
        solana: Some("/sol".into()),
        ..Default::default()
    });
    let mux = submux_with(server_cfg(), vec![sol, p]).await;
    let key = |b: u8| base58_encode(&[b; 32]);
    let (from, to, mint) = (key(1), key(2), key(3));
    let mut c = Client::connect(&mux.ws_url("/payments")).await;
    let sub = subscribe(&mut c, json!({"chain": "solana", "address": to})).await;
    wait_for("logs subscriptions at two commitments", || {
        sim.subscriptions() == 2
    })
    .await;
    // A failed transaction first: nothing.
    let t = |sig: &str, token: Option<Token>| Transfer {
        signature: sig.into(),
        from: from.clone(),
        to: to.clone(),
        lamports: 1_000_000_001,
        token,
    };
    sim.confirm_transfer(
        &t("failedSig", None),
        json!({"InstructionError": [0, {"Custom": 1}]}),
    );
    let spl = Token {
        mint: mint.clone(),
        decimals: 6,
        amount: u64::MAX as u128 + 1,
        from_account: key(4),
        to_account: key(5),
        to_before: 0,
    };
    sim.confirm_transfer(&t("okSig", Some(spl)), Value::Null);
    let mut got = Vec::new();
    for _ in 0..4 {
        let e = event(&mut c, &sub).await;
        assert_eq!(e["tx"], "okSig", "the failed transaction gave nothing: {e}");
        got.push((
            e["status"].as_str().unwrap().to_string(),
            e["asset"]["type"].as_str().unwrap().to_string(),
            e["amount"].as_str().unwrap().to_string(),
            e["raw_amount"].as_str().unwrap().to_string(),
        ));
    }
    got.sort();
    let row = |s: &str, t: &str, a: &str, r: &str| {
        (s.to_string(), t.to_string(), a.to_string(), r.to_string())
    };
    assert_eq!(
        got,
        vec![
            row("confirmed", "native", "1.000000001", "1000000001"),
            row(
                "confirmed",
                "spl",
                "18446744073709.551616",
                "18446744073709551616"
            ),
            row("final", "native", "1.000000001", "1000000001"),
            row(
                "final",
                "spl",
                "18446744073709.551616",
                "18446744073709551616"
            ),
        ]
    );
    mux.stop().await;
}

#[tokio::test]
async fn ethereum_simulator_ether_tokens_finality_and_reorg() {
    use submux::config::TokenConfig;
    let sim = submux::sim::ethereum::EthSim::start(Default::default())
        .await
        .unwrap();
    let mut p = RouteConfig::new("/payments", DialectKind::Payments, vec![]);
    let token = "0x00000000000000000000000000000000000000aa";
    p.payments = Some(PaymentsRouteConfig {
        ethereum: Some("/eth".into()),
        ethereum_confirmations: Some(2),
        token: vec![TokenConfig {
            chain: "ethereum".into(),
            address: token.into(),
            decimals: 18,
            symbol: Some("SIM".into()),
        }],
        ..Default::default()
    });
    let mux = submux_with(server_cfg(), vec![fast_route(vec![sim.url()]), p]).await;
    let (alice, bob) = (
        "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266",
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    );
    let mut c = Client::connect(&mux.ws_url("/payments")).await;
    let sub = subscribe(&mut c, json!({"chain": "ethereum", "address": bob})).await;
    wait_for("logs and newHeads upstream", || sim.subscriptions() == 2).await;
    let paid = sim.send_ether(alice, bob, 1_000_000_000_000_000_001, true);
    sim.send_ether(alice, bob, 5, false); // reverts: no credit
    let sent = sim.send_token(token, alice, bob, &"f".repeat(64));
    sim.emit_block();
    let mut by_id = std::collections::BTreeMap::new();
    for _ in 0..2 {
        let e = event(&mut c, &sub).await;
        by_id.insert(e["id"].as_str().unwrap().to_string(), e);
    }
    let ether = &by_id[&format!("ethereum:{paid}:native")];
    assert_eq!(
        (ether["amount"].as_str(), ether["status"].as_str()),
        (Some("1.000000000000000001"), Some("pending"))
    );
    assert_eq!(ether["to"], bob, "EIP-55");
    let tok = by_id.values().find(|e| e["tx"] == sent.as_str()).unwrap();
    assert_eq!(
        tok["amount"],
        "115792089237316195423570985008687907853269984665640564039457.584007913129639935"
    );
    assert_eq!(tok["asset"]["symbol"], "SIM");
    // Two blocks on top: confirmed, then final (ethereum_confirmations = 2).
    for want in ["confirmed", "final"] {
        sim.emit_block();
        for _ in 0..2 {
            assert_eq!(event(&mut c, &sub).await["status"], want);
        }
    }
    // A token transfer whose block is reorganised away: pending, then retracted.
    let gone = sim.send_token(token, alice, bob, &format!("{:064x}", 7));
    sim.emit_block();
    let e = event(&mut c, &sub).await;
    assert_eq!(
        (e["tx"].as_str(), e["status"].as_str(), e["amount"].as_str()),
        (
            Some(gone.as_str()),
            Some("pending"),
            Some("0.000000000000000007")
        )
    );
    sim.reorg_last();
    let e = event(&mut c, &sub).await;
    assert_eq!(
        (e["tx"].as_str(), e["status"].as_str()),
        (Some(gone.as_str()), Some("retracted"))
    );
    assert_eq!(
        e["id"],
        format!(
            "ethereum:{gone}:{}",
            e["id"].as_str().unwrap().rsplit(':').next().unwrap()
        )
    );
    mux.stop().await;
}

#[tokio::test]
async fn limits_match_the_other_routes() {
    let sim = XrplSim::start(XrplSimConfig::default()).await.unwrap();
    let mut server = server_cfg();
    server.max_subscriptions_per_connection = 2;
    server.max_requests_per_second = 1;
    server.request_burst = 4;
    let mux = submux_with(server, routes(&sim, None)).await;
    let b = &sim.accounts()[1];
    let mut c = Client::connect(&mux.ws_url("/payments")).await;
    for _ in 0..2 {
        subscribe(&mut c, json!({"chain": "xrpl", "address": b})).await;
    }
    let r = c
        .call(
            "payments_subscribe",
            json!([{"chain": "xrpl", "address": b}]),
        )
        .await;
    assert_eq!(r["error"]["code"], -32005, "{r}");
    assert!(r["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_subscriptions_per_connection 2"));
    // The burst (4) is nearly spent at 1 request per second: of six quick requests, some
    // are refused by the rate limit with the limit's error.
    let mut refused = 0;
    for _ in 0..6 {
        let r = c.call("payments_unsubscribe", json!(["0x01"])).await;
        if r["error"]["code"] == -32005 {
            let m = r["error"]["message"].as_str().unwrap();
            assert!(m.contains("1 requests per second"), "{r}");
            refused += 1;
        }
    }
    assert!(refused >= 3, "{refused} refused");
    mux.stop().await;
}

#[tokio::test]
async fn xrpl_payments_validated_while_cut_off_are_caught_up() {
    let sim = XrplSim::start(XrplSimConfig::default()).await.unwrap();
    let mux = submux_with(server_cfg(), routes(&sim, None)).await;
    let acct = sim.accounts();
    let (a, b) = (&acct[0], &acct[1]);
    let mut c = Client::connect(&mux.ws_url("/payments")).await;
    let sub = subscribe(&mut c, json!({"chain": "xrpl", "address": b})).await;
    wait_for("subscribed upstream", || sim.subscriptions() == 2).await;
    sim.pay(a, b, 1);
    sim.close_ledger();
    assert_eq!(event(&mut c, &sub).await["raw_amount"], "1");
    // rippled goes away; two ledgers validate payments to b meanwhile.
    sim.set_refuse(true);
    sim.drop_connections();
    wait_for("cut off", || sim.open_connections() == 0).await;
    sim.pay(a, b, 2);
    sim.close_ledger();
    sim.pay(a, b, 3);
    sim.close_ledger();
    sim.set_refuse(false);
    // After the reconnect, account_tx from the last ledger seen brings both, in order,
    // once each; then live again.
    for want in ["2", "3"] {
        assert_eq!(event(&mut c, &sub).await["raw_amount"], want);
    }
    sim.pay(a, b, 4);
    sim.close_ledger();
    assert_eq!(event(&mut c, &sub).await["raw_amount"], "4");
    let r = c
        .call(
            "payments_history",
            json!([{"chain": "xrpl", "address": b, "since": "0000000000000000"}]),
        )
        .await;
    assert_eq!(
        r["result"]["events"].as_array().unwrap().len(),
        4,
        "no duplicates: {r}"
    );
    mux.stop().await;
}
