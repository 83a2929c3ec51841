//! Solana route against the simulated validator: dedup by canonical config, one-shot
//! signatures shared by several clients, isolation, reconnect, HTTP, pings, exact numbers.

use crate::common::*;
use crate::protocol::http_post;
use serde_json::{json, Value};
use std::sync::atomic::Ordering::Relaxed;
use submux::config::RouteConfig;
use submux::dialect::DialectKind;
use submux::sim::solana::{SolSim, SolSimConfig, SYSTEM_PROGRAM};

const PK: &str = "CM78CPUeXjn8o3yroDHxUtKsZZgoy4GPkPPXfouKNH12";
const SIG: &str =
    "2EBVM6cB8vAAD93Ktr6Vd8p67XPbQzCJX47MpReuiCXJAtcjaxpvWpcg9Ege1Nr5Tk3a2GFrByT7WPBjdsTycY9b";

fn sol_route(sim: &SolSim, http: bool) -> RouteConfig {
    let mut r = fast_route(vec![sim.ws_url()]);
    r.path = "/sol".into();
    r.dialect = DialectKind::Solana;
    if http {
        r.http_upstream = Some(sim.http_url());
    }
    r
}

async fn setup() -> (SolSim, submux::Running) {
    let sim = SolSim::start(SolSimConfig::default()).await.unwrap();
    let mux = submux_with(server_cfg(), vec![sol_route(&sim, true)]).await;
    (sim, mux)
}

async fn sub(c: &mut Client, method: &str, params: Value) -> u64 {
    let r = c.call(method, params).await;
    r["result"]
        .as_u64()
        .unwrap_or_else(|| panic!("{method} failed: {r}"))
}

async fn note(c: &mut Client, method: &str) -> Value {
    let v = c.recv().await;
    assert_eq!(v["method"], method, "{v}");
    v
}

#[tokio::test]
async fn equivalent_configs_share_one_upstream_subscription() {
    let (sim, mux) = setup().await;
    let mut a = Client::connect(&mux.ws_url("/sol")).await;
    let mut b = Client::connect(&mux.ws_url("/sol")).await;
    let ia = sub(&mut a, "accountSubscribe", json!([PK])).await;
    let ib = sub(
        &mut b,
        "accountSubscribe",
        json!([PK, {"commitment": "finalized", "encoding": "binary", "minContextSlot": 3}]),
    )
    .await;
    assert_eq!(
        sim.subscribe_requests(),
        1,
        "defaults filled: one upstream subscription"
    );
    // A different encoding changes the payload: its own topic.
    let mut c = Client::connect(&mux.ws_url("/sol")).await;
    let ic = sub(
        &mut c,
        "accountSubscribe",
        json!([PK, {"encoding": "base64"}]),
    )
    .await;
    assert_eq!(sim.subscriptions(), 2);
    sim.set_account(PK, 42, SYSTEM_PROGRAM, b"hi");
    for (cl, id) in [(&mut a, ia), (&mut b, ib)] {
        let v = note(cl, "accountNotification").await;
        assert_eq!(v["params"]["subscription"], json!(id));
        assert_eq!(
            v["params"]["result"]["value"]["data"],
            json!("8wr"),
            "legacy binary = bare base58"
        );
    }
    let v = note(&mut c, "accountNotification").await;
    assert_eq!(v["params"]["subscription"], json!(ic));
    assert_eq!(
        v["params"]["result"]["value"]["data"],
        json!(["aGk=", "base64"])
    );
}

#[tokio::test]
async fn u64_max_passes_through_exactly() {
    let (sim, mux) = setup().await;
    let mut a = Client::connect(&mux.ws_url("/sol")).await;
    sub(&mut a, "accountSubscribe", json!([PK])).await;
    sim.set_account(PK, 1, SYSTEM_PROGRAM, b"");
    let text = a.recv_text().await;
    assert!(
        text.contains("\"rentEpoch\":18446744073709551615"),
        "{text}"
    );
}

#[tokio::test]
async fn one_shot_signature_ends_for_every_sharing_client() {
    let (sim, mux) = setup().await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut c = Client::connect(&mux.ws_url("/sol")).await;
        let id = sub(
            &mut c,
            "signatureSubscribe",
            json!([SIG, {"commitment": "confirmed"}]),
        )
        .await;
        clients.push((c, id));
    }
    assert_eq!(sim.subscribe_requests(), 1);
    sim.process_signature(SIG);
    for (c, id) in clients.iter_mut() {
        let v = note(c, "signatureNotification").await;
        assert_eq!(v["params"]["subscription"], json!(*id));
        assert_eq!(v["params"]["result"]["value"], json!({"err": null}));
    }
    // The subscription is gone for everyone, as on the node.
    for (c, id) in clients.iter_mut() {
        let r = c.call("signatureUnsubscribe", json!([*id])).await;
        assert_eq!(
            r["error"],
            json!({"code": -32602, "message": "Invalid subscription id."})
        );
    }
    let m = &mux.hub.routes()[0].metrics;
    wait_for("topic gone", || m.topics.load(Relaxed) == 0).await;
    assert_eq!(
        sim.subscriptions(),
        0,
        "no upstream unsubscribe needed or sent"
    );
    // A latecomer for the same signature gets the result, not silence.
    let mut late = Client::connect(&mux.ws_url("/sol")).await;
    let id = sub(
        &mut late,
        "signatureSubscribe",
        json!([SIG, {"commitment": "confirmed"}]),
    )
    .await;
    let v = note(&mut late, "signatureNotification").await;
    assert_eq!(v["params"]["subscription"], json!(id));
    assert_eq!(v["params"]["result"]["value"], json!({"err": null}));
}

#[tokio::test]
async fn received_notification_is_not_final() {
    let (sim, mux) = setup().await;
    let mut a = Client::connect(&mux.ws_url("/sol")).await;
    let id = sub(
        &mut a,
        "signatureSubscribe",
        json!([SIG, {"enableReceivedNotification": true}]),
    )
    .await;
    sim.process_signature(SIG);
    let v = note(&mut a, "signatureNotification").await;
    assert_eq!(v["params"]["result"]["value"], json!("receivedSignature"));
    let v = note(&mut a, "signatureNotification").await;
    assert_eq!(v["params"]["subscription"], json!(id));
    assert_eq!(v["params"]["result"]["value"], json!({"err": null}));
}

#[tokio::test]
async fn unsubscribe_isolation_and_any_unsubscribe_method() {
    let (sim, mux) = setup().await;
    let mut a = Client::connect(&mux.ws_url("/sol")).await;
    let mut b = Client::connect(&mux.ws_url("/sol")).await;
    let ia = sub(&mut a, "slotSubscribe", json!([])).await;
    let r = b.call("slotUnsubscribe", json!([ia])).await;
    assert_eq!(
        r["error"],
        json!({"code": -32602, "message": "Invalid subscription id."})
    );
    let s = sim.advance_slot();
    let v = note(&mut a, "slotNotification").await;
    assert_eq!(
        v["params"],
        json!({"result": {"slot": s, "parent": s - 1, "root": s - 32}, "subscription": ia})
    );
    // Any *Unsubscribe removes any kind of id.
    let r = a.call("rootUnsubscribe", json!([ia])).await;
    assert_eq!(r, json!({"jsonrpc": "2.0", "result": true, "id": r["id"]}));
    wait_for("upstream unsubscribed after linger", || {
        sim.subscriptions() == 0
    })
    .await;
}

#[tokio::test]
async fn reconnect_keeps_client_ids() {
    let (sim, mux) = setup().await;
    let mut a = Client::connect(&mux.ws_url("/sol")).await;
    let id = sub(&mut a, "slotSubscribe", json!([])).await;
    let logs = sub(&mut a, "logsSubscribe", json!([{"mentions": [PK]}])).await;
    sim.drop_connections();
    wait_for("resubscribed", || {
        sim.accepted() == 2 && sim.subscriptions() == 2
    })
    .await;
    sim.advance_slot();
    assert_eq!(
        note(&mut a, "slotNotification").await["params"]["subscription"],
        json!(id)
    );
    sim.emit_logs(SIG, &[PK], &["Program log: hi"]);
    let v = note(&mut a, "logsNotification").await;
    assert_eq!(v["params"]["subscription"], json!(logs));
    assert_eq!(
        v["params"]["result"]["value"]["logs"],
        json!(["Program log: hi"])
    );
}

#[tokio::test]
async fn pings_get_no_reply_and_errors_are_agaves() {
    let (_sim, mux) = setup().await;
    let mut a = Client::connect(&mux.ws_url("/sol")).await;
    a.send_text(r#"{"jsonrpc":"2.0","method":"ping"}"#).await;
    a.send_text(r#"{"jsonrpc":"2.0","id":9,"method":"logsSubscribe","params":[{"mentions":[]}]}"#)
        .await;
    // The first frame back answers id 9: the ping got nothing.
    let v = a.recv().await;
    assert_eq!(
        v,
        json!({"jsonrpc":"2.0","error":{"code":-32602,"message":"Invalid Request: Only 1 address supported"},"id":9})
    );
    let text = {
        a.send_text(r#"{"jsonrpc":"2.0","id":10,"method":"slotSubscribe"}"#)
            .await;
        a.recv_text().await
    };
    assert!(
        text.starts_with(r#"{"jsonrpc":"2.0","result":"#),
        "jsonrpc-core member order: {text}"
    );
}

#[tokio::test]
async fn http_posts_go_to_http_upstream_or_get_a_clear_error() {
    let (sim, mux) = setup().await;
    sim.set_account(PK, 77, SYSTEM_PROGRAM, b"");
    let v = http_post(
        &mux.http_url("/sol"),
        &format!(r#"{{"jsonrpc":"2.0","id":"b","method":"getBalance","params":["{PK}"]}}"#),
    )
    .await;
    assert_eq!(v["id"], json!("b"));
    assert_eq!(v["result"]["value"], json!(77));
    // Without http_upstream: a JSON-RPC error saying what to configure.
    let sim2 = SolSim::start(SolSimConfig::default()).await.unwrap();
    let mux2 = submux_with(server_cfg(), vec![sol_route(&sim2, false)]).await;
    let v = http_post(
        &mux2.http_url("/sol"),
        r#"{"jsonrpc":"2.0","id":1,"method":"getSlot"}"#,
    )
    .await;
    assert_eq!(v["error"]["code"], json!(-32601));
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("http_upstream"),
        "{v}"
    );
}

/// The same subscribe twice on one connection: Agave answers with the id it gave already
/// and notifies once (one slot); one unsubscribe ends it. Checked on a direct client to
/// the simulated validator and on a client through submux, side by side.
#[tokio::test]
async fn identical_subscribe_on_one_connection_returns_the_same_id() {
    let (sim, mux) = setup().await;
    let mut direct = Client::connect(&sim.ws_url()).await;
    let mut through = Client::connect(&mux.ws_url("/sol")).await;
    for c in [&mut direct, &mut through] {
        let first = sub(c, "accountSubscribe", json!([PK])).await;
        let again = sub(c, "accountSubscribe", json!([PK])).await;
        assert_eq!(first, again, "the id it gave already");
    }
    let metrics = &mux.hub.routes()[0].metrics;
    assert_eq!(metrics.client_subscriptions.load(Relaxed), 1, "one slot");
    sim.set_account(PK, 7, SYSTEM_PROGRAM, b"x");
    for c in [&mut direct, &mut through] {
        note(c, "accountNotification").await;
        // Exactly once: the next frame is the answer to this ping-like call.
        let r = c.call("getVersion", json!([])).await;
        assert!(r.get("method").is_none(), "a second notification: {r}");
    }
    let id = sub(&mut through, "accountSubscribe", json!([PK])).await;
    let r = through.call("accountUnsubscribe", json!([id])).await;
    assert_eq!(r["result"], true, "{r}");
    let r = through.call("accountUnsubscribe", json!([id])).await;
    assert_eq!(r["error"]["message"], "Invalid subscription id.", "{r}");
    assert_eq!(metrics.client_subscriptions.load(Relaxed), 0);
}
