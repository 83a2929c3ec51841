//! Solana backfill after a switch: what the validator did while submux's PubSub link was
//! down is asked of its HTTP endpoint and pushed as its own notifications would have
//! been, under each client's ids: an account's and a program account's current value if
//! it changed, the logs of signatures that mention an address (oldest first), a pending
//! signature's final status (which ends that subscription, as the node's would).

use crate::common::*;
use serde_json::{json, Value};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use submux::dialect::DialectKind;
use submux::sim::solana::{base58_encode, SolSim, SolSimConfig, SYSTEM_PROGRAM};

const PK: &str = "CM78CPUeXjn8o3yroDHxUtKsZZgoy4GPkPPXfouKNH12";

fn sig(n: u8) -> String {
    base58_encode(&[n; 64])
}

/// Next frame, whatever it is.
async fn next(c: &mut Client) -> Value {
    c.recv().await
}

async fn quiet(c: &mut Client) {
    let next = tokio::time::timeout(Duration::from_millis(200), c.next_text()).await;
    assert!(next.is_err(), "unexpected frame: {next:?}");
}

#[tokio::test]
async fn what_the_validator_did_while_cut_off_is_fetched_over_http_and_pushed() {
    let sim = SolSim::start(SolSimConfig::default()).await.unwrap();
    let mut route = fast_route(vec![sim.ws_url()]);
    route.path = "/sol".into();
    route.dialect = DialectKind::Solana;
    route.http_upstream = Some(sim.http_url());
    let mux = submux_with(server_cfg(), vec![route]).await;
    let m = mux.hub.routes()[0].metrics.clone();
    let mentioned = base58_encode(&[7; 32]);
    let pending = sig(9);
    let mut c = Client::connect(&mux.ws_url("/sol")).await;
    let mut ids = Vec::new();
    for (method, params) in [
        ("accountSubscribe", json!([PK, {"encoding": "base64"}])),
        (
            "programSubscribe",
            json!([SYSTEM_PROGRAM, {"encoding": "base64"}]),
        ),
        ("logsSubscribe", json!([{"mentions": [mentioned]}])),
        ("signatureSubscribe", json!([pending])),
    ] {
        let r = c.call(method, params).await;
        assert!(r["result"].is_u64(), "{method}: {r}");
        ids.push(r["result"].clone());
    }
    // Live: one account change (account + program) and one transaction's logs.
    sim.set_account(PK, 1, SYSTEM_PROGRAM, &[1]);
    sim.emit_logs(&sig(1), &[&mentioned], &["Program log: one"]);
    for _ in 0..3 {
        next(&mut c).await;
    }
    // Cut the PubSub link; the validator goes on (its HTTP endpoint stays reachable).
    sim.set_refuse(true);
    sim.drop_connections();
    wait_for("disconnected", || m.upstream_connections.load(Relaxed) == 0).await;
    sim.advance_slot();
    sim.set_account(PK, 2, SYSTEM_PROGRAM, &[2]);
    sim.emit_logs(&sig(2), &[&mentioned], &["Program log: two"]);
    sim.advance_slot();
    sim.set_account(PK, 3, SYSTEM_PROGRAM, &[3]);
    sim.emit_logs(&sig(3), &[&mentioned], &["Program log: three"]);
    sim.emit_logs(&sig(4), &[], &["not ours"]);
    sim.process_signature(&pending);
    sim.set_refuse(false);
    wait_for("backfilled", || m.backfilled.load(Relaxed) == 5).await;
    let mut got: Vec<(Value, String)> = Vec::new();
    for _ in 0..5 {
        let v = next(&mut c).await;
        let r = &v["params"]["result"];
        let what = match v["method"].as_str().unwrap() {
            "accountNotification" => format!("account {}", r["value"]["lamports"]),
            "programNotification" => format!("program {}", r["value"]["account"]["lamports"]),
            "logsNotification" => format!("logs {}", r["value"]["logs"][0].as_str().unwrap()),
            "signatureNotification" => format!("signature {}", r["value"]),
            other => panic!("unexpected {other}: {v}"),
        };
        got.push((v["params"]["subscription"].clone(), what));
    }
    let of = |i: usize| -> Vec<String> {
        got.iter()
            .filter(|(s, _)| *s == ids[i])
            .map(|(_, w)| w.clone())
            .collect()
    };
    assert_eq!(of(0), ["account 3"], "the current value, once");
    assert_eq!(of(1), ["program 3"]);
    assert_eq!(
        of(2),
        ["logs Program log: two", "logs Program log: three"],
        "the missed logs, oldest first"
    );
    assert_eq!(of(3), [r#"signature {"err":null}"#]);
    quiet(&mut c).await;
    // Live again; the signature subscription has ended.
    sim.set_account(PK, 4, SYSTEM_PROGRAM, &[4]);
    let v = next(&mut c).await;
    let v2 = next(&mut c).await;
    let methods = [v["method"].clone(), v2["method"].clone()];
    assert!(
        methods.contains(&json!("accountNotification")),
        "{methods:?}"
    );
    let r = c.call("signatureUnsubscribe", json!([ids[3]])).await;
    assert!(
        r.get("error").is_some(),
        "the signature subscription ended: {r}"
    );
}

#[tokio::test]
async fn logs_older_than_backfill_max_slots_are_announced() {
    let sim = SolSim::start(SolSimConfig::default()).await.unwrap();
    let mut route = fast_route(vec![sim.ws_url()]);
    route.path = "/sol".into();
    route.dialect = DialectKind::Solana;
    route.http_upstream = Some(sim.http_url());
    route.backfill_max_slots = 2;
    let mux = submux_with(server_cfg(), vec![route]).await;
    let m = mux.hub.routes()[0].metrics.clone();
    let mentioned = base58_encode(&[7; 32]);
    let mut c = Client::connect(&mux.ws_url("/sol?gap_notices=1")).await;
    let r = c
        .call("logsSubscribe", json!([{"mentions": [mentioned]}]))
        .await;
    let id = r["result"].clone();
    let first = sim.advance_slot();
    sim.emit_logs(&sig(1), &[&mentioned], &["Program log: one"]);
    next(&mut c).await;
    sim.set_refuse(true);
    sim.drop_connections();
    wait_for("disconnected", || m.upstream_connections.load(Relaxed) == 0).await;
    for n in 2..=5u8 {
        sim.advance_slot();
        sim.emit_logs(&sig(n), &[&mentioned], &[&format!("Program log: {n}")]);
    }
    sim.set_refuse(false);
    let gap = next(&mut c).await;
    assert_eq!(gap["method"], "submuxGapNotification", "{gap}");
    assert_eq!(gap["params"]["subscription"], id);
    assert_eq!(
        (
            &gap["params"]["result"]["fromSlot"],
            &gap["params"]["result"]["toSlot"]
        ),
        (&json!(first + 1), &json!(first + 2)),
        "the slots beyond the cap, exactly"
    );
    for n in [4, 5] {
        let v = next(&mut c).await;
        assert_eq!(
            v["params"]["result"]["value"]["logs"][0],
            format!("Program log: {n}")
        );
        assert_eq!(v["params"]["subscription"], id);
    }
    quiet(&mut c).await;
}
