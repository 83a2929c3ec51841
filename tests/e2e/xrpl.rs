//! XRPL route against the simulated rippled: subscription sets shared per item, content
//! routing once per client, rippled's duplicates kept, API versions kept apart, fresh
//! subscribe results, reconnect, forwarded commands and the HTTP JSON-RPC shape.

use crate::common::*;
use crate::protocol::http_post;
use serde_json::{json, Value};
use std::time::Duration;
use submux::config::RouteConfig;
use submux::dialect::DialectKind;
use submux::sim::xrpl::{XrplSim, XrplSimConfig};

fn xrpl_route(sim: &XrplSim) -> RouteConfig {
    let mut r = fast_route(vec![sim.ws_url()]);
    r.path = "/xrpl".into();
    r.dialect = DialectKind::Xrpl;
    r
}

async fn setup() -> (XrplSim, submux::Running) {
    let sim = XrplSim::start(XrplSimConfig::default()).await.unwrap();
    let mux = submux_with(server_cfg(), vec![xrpl_route(&sim)]).await;
    (sim, mux)
}

/// A client speaking rippled's envelope.
struct X {
    c: Client,
    next: u64,
}

impl X {
    async fn connect(mux: &submux::Running) -> X {
        X {
            c: Client::connect(&mux.ws_url("/xrpl")).await,
            next: 1,
        }
    }

    /// Send a command (id added) and return its response; stream messages that arrive
    /// first are kept in `early`.
    async fn request(&mut self, mut req: Value, early: &mut Vec<Value>) -> Value {
        let id = self.next;
        self.next += 1;
        req["id"] = json!(id);
        self.c.send(req).await;
        loop {
            let v = self.c.recv().await;
            if v["type"] == "response" && v["id"] == json!(id) {
                return v;
            }
            early.push(v);
        }
    }

    async fn ok(&mut self, req: Value) -> Value {
        let mut early = Vec::new();
        let r = self.request(req, &mut early).await;
        assert_eq!(r["status"], "success", "{r}");
        assert!(
            early.is_empty(),
            "unexpected frames before the reply: {early:?}"
        );
        r
    }

    async fn next(&mut self) -> Value {
        self.c.recv().await
    }

    /// The next frame must not arrive within `ms`.
    async fn quiet(&mut self, ms: u64) {
        let got = tokio::time::timeout(Duration::from_millis(ms), self.c.recv()).await;
        if let Ok(v) = got {
            panic!("expected silence, got {v}");
        }
    }
}

fn tx_hash(v: &Value) -> String {
    v["hash"]
        .as_str()
        .or_else(|| v["tx_json"]["hash"].as_str())
        .or_else(|| v["transaction"]["hash"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn accounts_are_shared_and_a_transaction_reaches_each_client_once() {
    let (sim, mux) = setup().await;
    let acc = sim.accounts();
    let (alice, bob, carol) = (&acc[0], &acc[1], &acc[2]);
    let mut a = X::connect(&mux).await;
    let mut b = X::connect(&mux).await;
    let mut c = X::connect(&mux).await;
    a.ok(json!({"command":"subscribe","accounts":[alice, bob],"api_version":2}))
        .await;
    b.ok(json!({"command":"subscribe","accounts":[bob],"api_version":2}))
        .await;
    c.ok(json!({"command":"subscribe","accounts":[carol],"api_version":2}))
        .await;
    let before = sim.subscribe_requests();
    // Re-subscribing what a client holds is a no-op, as on rippled.
    b.ok(json!({"command":"subscribe","accounts":[bob],"api_version":2}))
        .await;
    assert_eq!(sim.subscribe_requests(), before, "nothing new upstream");

    let hash = sim.pay(alice, bob, 20_000_000);
    sim.close_ledger();
    // alice and bob are both affected: client a gets it once, b once, c never.
    let va = a.next().await;
    assert_eq!(va["type"], "transaction");
    assert_eq!(va["validated"], true);
    assert_eq!(tx_hash(&va), hash);
    assert_eq!(
        va["meta"]["delivered_amount"], "20000000",
        "drops stay a string"
    );
    let vb = b.next().await;
    assert_eq!(tx_hash(&vb), hash);
    let hash2 = sim.pay(carol, alice, 1_000_000);
    sim.close_ledger();
    let vc = c.next().await;
    assert_eq!(tx_hash(&vc), hash2, "c's first message is its own payment");
    let va2 = a.next().await;
    assert_eq!(
        tx_hash(&va2),
        hash2,
        "no duplicate of the first payment before it"
    );
    b.quiet(200).await;
}

#[tokio::test]
async fn rippled_duplicates_are_kept_and_the_ledger_comes_first() {
    let (sim, mux) = setup().await;
    let acc = sim.accounts();
    let mut x = X::connect(&mux).await;
    x.ok(json!({"command":"subscribe","streams":["transactions","transactions_proposed","ledger"],"accounts":[&acc[0]],"api_version":2}))
        .await;
    let hash = sim.pay(&acc[0], &acc[1], 5_000_000);
    // Proposed: once, via transactions_proposed (accounts_proposed not held).
    let p = x.next().await;
    assert_eq!(p["validated"], false, "{p}");
    assert_eq!(tx_hash(&p), hash);
    let index = sim.close_ledger();
    let l = x.next().await;
    assert_eq!(
        l["type"], "ledgerClosed",
        "ledgerClosed before its transactions: {l}"
    );
    assert_eq!(l["ledger_index"], json!(index));
    // Validated: transactions + transactions_proposed + accounts = three copies.
    for _ in 0..3 {
        let v = x.next().await;
        assert_eq!(v["type"], "transaction", "{v}");
        assert_eq!(v["validated"], true);
        assert_eq!(tx_hash(&v), hash);
    }
    x.quiet(200).await;
}

#[tokio::test]
async fn api_versions_never_share_a_connection() {
    let (sim, mux) = setup().await;
    let acc = sim.accounts();
    let mut v1 = X::connect(&mux).await;
    let mut v2 = X::connect(&mux).await;
    let r1 = v1
        .ok(json!({"command":"subscribe","accounts":[&acc[1]]}))
        .await;
    assert!(
        r1.get("api_version").is_none(),
        "none sent, none echoed: {r1}"
    );
    v2.ok(json!({"command":"subscribe","accounts":[&acc[1]],"api_version":2}))
        .await;
    assert_eq!(
        sim.open_connections(),
        2,
        "one upstream connection per version"
    );
    sim.pay(&acc[0], &acc[1], 7);
    sim.close_ledger();
    let a = v1.next().await;
    assert_eq!(a["transaction"]["Amount"], "7", "v1 shape: {a}");
    assert!(a.get("tx_json").is_none());
    let b = v2.next().await;
    assert_eq!(b["tx_json"]["DeliverMax"], "7", "v2 shape: {b}");
    assert!(b["tx_json"].get("Amount").is_none());
}

#[tokio::test]
async fn a_late_ledger_subscriber_gets_the_current_ledger() {
    let (sim, mux) = setup().await;
    let mut a = X::connect(&mux).await;
    let first = a
        .ok(json!({"command":"subscribe","streams":["ledger"],"api_version":2}))
        .await;
    assert!(first["result"]["ledger_index"].is_u64(), "{first}");
    let index = sim.close_ledger();
    let _ = a.next().await;
    let mut b = X::connect(&mux).await;
    let late = b
        .ok(json!({"command":"subscribe","streams":["ledger"],"api_version":2}))
        .await;
    assert_eq!(late["result"]["ledger_index"], json!(index), "{late}");
    assert!(late["result"]["ledger_hash"].is_string());
}

#[tokio::test]
async fn unsubscribe_releases_upstream_after_the_linger() {
    let (sim, mux) = setup().await;
    let acc = sim.accounts();
    let mut a = X::connect(&mux).await;
    let mut b = X::connect(&mux).await;
    a.ok(json!({"command":"subscribe","accounts":[&acc[0]],"api_version":2}))
        .await;
    b.ok(json!({"command":"subscribe","accounts":[&acc[0]],"api_version":2}))
        .await;
    a.ok(json!({"command":"unsubscribe","accounts":[&acc[0]],"api_version":2}))
        .await;
    // Unsubscribing something never held succeeds, as on rippled.
    a.ok(json!({"command":"unsubscribe","accounts":[&acc[3]]}))
        .await;
    sim.pay(&acc[1], &acc[0], 3);
    sim.close_ledger();
    let v = b.next().await;
    assert_eq!(v["type"], "transaction");
    a.quiet(200).await;
    let metrics = mux.hub.routes()[0].metrics.clone();
    drop(b);
    wait_for("the account released upstream", || {
        metrics.topics.load(std::sync::atomic::Ordering::Relaxed) == 0
    })
    .await;
    wait_for("sim saw the unsubscribe", || sim.subscriptions() == 0).await;
}

#[tokio::test]
async fn reconnect_resubscribes_the_union() {
    let (sim, mux) = setup().await;
    let acc = sim.accounts();
    let mut a = X::connect(&mux).await;
    a.ok(json!({"command":"subscribe","streams":["ledger"],"accounts":[&acc[2]],"api_version":2}))
        .await;
    sim.drop_connections();
    let metrics = mux.hub.routes()[0].metrics.clone();
    wait_for("reconnected", || {
        metrics
            .upstream_reconnects
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    })
    .await;
    wait_for("resubscribed", || sim.subscriptions() >= 2).await;
    let hash = sim.pay(&acc[0], &acc[2], 11);
    sim.close_ledger();
    let l = a.next().await;
    assert_eq!(l["type"], "ledgerClosed");
    let t = a.next().await;
    assert_eq!(tx_hash(&t), hash, "the client kept its subscriptions: {t}");
}

#[tokio::test]
async fn commands_are_forwarded_with_the_clients_ids() {
    let (sim, mux) = setup().await;
    let acc = sim.accounts();
    let mut x = X::connect(&mux).await;
    // xrpl-py style string ids, concurrently with another client using the same id.
    let mut y = X::connect(&mux).await;
    x.c.send(
        json!({"id":"account_info_1","command":"account_info","account":&acc[0],"api_version":2}),
    )
    .await;
    y.c.send(json!({"id":"account_info_1","command":"ping"}))
        .await;
    let rx = x.next().await;
    let ry = y.next().await;
    assert_eq!(rx["id"], "account_info_1");
    assert_eq!(rx["status"], "success", "{rx}");
    assert!(rx["result"]["account_data"]["Balance"].is_string(), "{rx}");
    assert_eq!(rx["api_version"], 2);
    assert_eq!(ry["id"], "account_info_1");
    assert_eq!(ry["result"], json!({}), "{ry}");
    // An error echoes the request with the client's id, not submux's.
    x.c.send(
        json!({"id":{"k":[1]},"command":"account_info","account":"rrrrrrrrrrrrrrrrrrrrBZbvji"}),
    )
    .await;
    let e = x.next().await;
    assert_eq!(e["status"], "error", "{e}");
    assert_eq!(e["id"], json!({"k":[1]}));
    assert_eq!(e["request"]["id"], json!({"k":[1]}), "{e}");
    // No id in, no id out.
    x.c.send(json!({"command":"ping"})).await;
    let p = x.next().await;
    assert!(p.get("id").is_none(), "{p}");
    assert_eq!(p["status"], "success");
    // path_find is refused clearly; bad input gets rippled's errors and the socket lives.
    x.c.send(json!({"id":9,"command":"path_find","subcommand":"create"}))
        .await;
    let pf = x.next().await;
    assert_eq!(pf["error"], "notSupported", "{pf}");
    x.c.send_text("{not json").await;
    let bad = x.next().await;
    assert_eq!(bad["error"], "jsonInvalid");
    x.c.send(json!({"id":10,"command":"subscribe","streams":["ledgers"]}))
        .await;
    let ms = x.next().await;
    assert_eq!(ms["error"], "malformedStream");
    assert_eq!(ms["error_code"], 71);
    let ok = x.ok(json!({"command":"ping"})).await;
    assert_eq!(ok["status"], "success");
}

#[tokio::test]
async fn http_post_speaks_rippled_json_rpc() {
    let (sim, mux) = setup().await;
    let acc = sim.accounts();
    let body = json!({"method":"account_info","params":[{"account":&acc[0],"api_version":2}]});
    let v = http_post(&mux.http_url("/xrpl"), &body.to_string()).await;
    assert_eq!(v["result"]["status"], "success", "{v}");
    assert!(v["result"]["account_data"]["Balance"].is_string(), "{v}");
    assert!(v.get("id").is_none() && v.get("type").is_none(), "{v}");
    let body = json!({"method":"subscribe","params":[{"streams":["ledger"]}]});
    let v = http_post(&mux.http_url("/xrpl"), &body.to_string()).await;
    assert_eq!(v["result"]["status"], "error", "{v}");
}

#[tokio::test]
async fn books_share_a_topic_and_each_snapshot_is_the_clients_own() {
    let (sim, mux) = setup().await;
    let acc = sim.accounts();
    let (alice, issuer, carol) = (&acc[0], &acc[1], &acc[2]);
    let usd = |v: &str| json!({"currency":"USD","issuer":issuer,"value":v});
    sim.offer_create(alice, usd("10"), json!("1000000"));
    sim.close_ledger();
    let book =
        json!({"taker_pays":{"currency":"XRP"},"taker_gets":{"currency":"USD","issuer":issuer}});
    let mut with_snapshot = book.clone();
    with_snapshot["snapshot"] = json!(true);
    let mut a = X::connect(&mux).await;
    let mut b = X::connect(&mux).await;
    let ra = a
        .ok(json!({"command":"subscribe","books":[with_snapshot],"api_version":2}))
        .await;
    let offers = ra["result"]["offers"].as_array().expect("a snapshot");
    assert_eq!(offers.len(), 1, "{ra}");
    assert_eq!(offers[0]["Account"], json!(alice));
    let rb = b
        .ok(json!({"command":"subscribe","books":[book],"api_version":2}))
        .await;
    assert_eq!(rb["result"], json!({}), "no snapshot asked, none given");
    // An offer on the listened side reaches both book clients, once each.
    let hash = sim.offer_create(carol, json!("5000"), usd("1"));
    sim.close_ledger();
    for x in [&mut a, &mut b] {
        let v = x.next().await;
        assert_eq!(v["type"], "transaction", "{v}");
        assert_eq!(tx_hash(&v), hash);
        x.quiet(150).await;
    }
}

/// With `backfill = false` (with it, they are fetched: `backfill_routed`).
#[tokio::test]
async fn ledgers_missed_while_reconnecting_are_announced_to_clients_that_ask() {
    let sim = XrplSim::start(XrplSimConfig::default()).await.unwrap();
    let mut route = xrpl_route(&sim);
    route.backfill = false;
    let mux = submux_with(server_cfg(), vec![route]).await;
    let mut x = X {
        c: Client::connect(&format!("{}?gap_notices=1", mux.ws_url("/xrpl"))).await,
        next: 1,
    };
    x.ok(json!({"command":"subscribe","streams":["ledger"],"api_version":2}))
        .await;
    let seen = sim.close_ledger();
    assert_eq!(x.next().await["ledger_index"], json!(seen));
    sim.set_refuse(true);
    sim.drop_connections();
    let metrics = mux.hub.routes()[0].metrics.clone();
    wait_for("connection lost", || {
        metrics
            .upstream_connections
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0
    })
    .await;
    for _ in 0..3 {
        sim.close_ledger(); // nobody is connected to hear these
    }
    sim.set_refuse(false);
    wait_for("resubscribed", || sim.subscriptions() >= 1).await;
    let next = sim.close_ledger();
    let gap = x.next().await;
    assert_eq!(gap["type"], "submuxGap", "{gap}");
    assert_eq!(gap["ledger_index_min"], json!(seen + 1));
    assert_eq!(gap["ledger_index_max"], json!(next - 1));
    assert_eq!(x.next().await["ledger_index"], json!(next));
}
