//! Payments webhooks against a local HTTP receiver: HMAC-SHA256 signatures, delivery
//! ids, retries with backoff while the receiver fails, order per address, and resuming
//! from the log after submux restarts with deliveries still owed.

use crate::common::*;
use crate::payments_util::xrpl_payments_routes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use submux::config::{PaymentsRouteConfig, RouteConfig, WebhookConfig};
use submux::sim::xrpl::{XrplSim, XrplSimConfig};

const SECRET: &str = "a-webhook-secret-of-32-characters";

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    /// Answer 503 while set.
    down: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
}

async fn hook(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if r.down.load(Relaxed) {
        r.refused.fetch_add(1, Relaxed);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    r.got.lock().unwrap().push((headers, body));
    StatusCode::OK
}

async fn receiver() -> (Receiver, String) {
    let r = Receiver::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(r.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    (r, url)
}

fn routes(sim: &XrplSim, dir: &std::path::Path, url: &str, watched: &str) -> Vec<RouteConfig> {
    xrpl_payments_routes(
        sim,
        PaymentsRouteConfig {
            data_dir: Some(dir.display().to_string()),
            webhook: vec![WebhookConfig {
                url: url.into(),
                secret: SECRET.into(),
                addresses: vec![format!("xrpl:{watched}")],
            }],
            ..Default::default()
        },
    )
}

fn hmac_hex(secret: &str, msg: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, msg);
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Check each delivery's signature; return the events.
fn verified(r: &Receiver) -> Vec<Value> {
    r.got
        .lock()
        .unwrap()
        .iter()
        .map(|(h, body)| {
            let ts = h["x-submux-timestamp"].to_str().unwrap();
            let mut msg = ts.as_bytes().to_vec();
            msg.push(b'.');
            msg.extend_from_slice(body);
            assert_eq!(
                h["x-submux-signature"].to_str().unwrap(),
                format!("sha256={}", hmac_hex(SECRET, &msg)),
                "signature"
            );
            let e: Value = serde_json::from_slice(body).unwrap();
            assert_eq!(
                h["x-submux-delivery"].to_str().unwrap(),
                format!(
                    "{}:{}",
                    e["id"].as_str().unwrap(),
                    e["status"].as_str().unwrap()
                )
            );
            e
        })
        .collect()
}

#[tokio::test]
async fn signed_retried_in_order_and_resumed_after_restart() {
    let dir = std::env::temp_dir().join(format!("submux-e2e-hooks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let sim = XrplSim::start(XrplSimConfig::default()).await.unwrap();
    let acct = sim.accounts();
    let (a, b, c) = (&acct[0], &acct[1], &acct[2]);
    let (rx, url) = receiver().await;
    {
        let mux = submux_with(server_cfg(), routes(&sim, &dir, &url, b)).await;
        // The hook's address is watched upstream with no client at all.
        wait_for("hook address subscribed", || sim.subscriptions() == 2).await;
        sim.pay(a, b, 11);
        sim.pay(a, c, 99); // not a hook address
        sim.close_ledger();
        wait_for("first delivery", || rx.got.lock().unwrap().len() == 1).await;
        // The receiver fails: deliveries are retried, none skipped.
        rx.down.store(true, Relaxed);
        sim.pay(a, b, 22);
        sim.close_ledger();
        sim.pay(a, b, 33);
        sim.close_ledger();
        wait_for("retries", || rx.refused.load(Relaxed) >= 2).await;
        let m = mux.payments[0].metrics.clone();
        assert!(m.webhook_failures.load(Relaxed) >= 2);
        // submux restarts with two deliveries owed.
        assert!(mux.stop().await);
    }
    rx.down.store(false, Relaxed);
    let mux = submux_with(server_cfg(), routes(&sim, &dir, &url, b)).await;
    wait_for("owed deliveries after restart", || {
        rx.got.lock().unwrap().len() == 3
    })
    .await;
    // Live again only once the hook's address is watched upstream again (a payment made
    // before that, while submux was down, is not caught up after a restart).
    wait_for("hook address subscribed again", || sim.subscriptions() == 2).await;
    sim.pay(a, b, 44);
    sim.close_ledger();
    wait_for("live delivery", || rx.got.lock().unwrap().len() == 4).await;
    let events = verified(&rx);
    let raws: Vec<&str> = events
        .iter()
        .map(|e| e["raw_amount"].as_str().unwrap())
        .collect();
    assert_eq!(raws, ["11", "22", "33", "44"], "in order, each once");
    assert!(events.iter().all(|e| e["to"] == json!(b)));
    let cursors: Vec<&str> = events
        .iter()
        .map(|e| e["cursor"].as_str().unwrap())
        .collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]));
    mux.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
