//! Shutdown: clients get 1001, upstream subscriptions are removed, tasks drain in time.

use crate::common::*;
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test]
async fn shutdown_closes_clients_and_unsubscribes_upstream() {
    let sim = sim().await;
    let mux = submux(vec![sim.url()]).await;
    let mut a = Client::connect(&mux.ws_url("/eth")).await;
    let mut b = Client::connect(&mux.ws_url("/eth")).await;
    a.subscribe(json!(["newHeads"])).await;
    b.subscribe(json!(["syncing"])).await;
    b.recv().await; // syncing false
    assert_eq!(sim.subscriptions(), 2);
    let addr = mux.addr;
    let stop = tokio::spawn(mux.stop());
    for c in [&mut a, &mut b] {
        let (code, reason) = c.expect_close().await;
        assert_eq!(code, CloseCode::Away);
        assert_eq!(reason, "server shutting down");
    }
    assert!(stop.await.unwrap(), "drained within the grace period");
    wait_for("upstream subscriptions removed", || {
        sim.subscriptions() == 0
    })
    .await;
    wait_for("upstream connection closed", || sim.connections() == 0).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}

#[tokio::test]
async fn drain_reports_not_ready_first_then_closes() {
    let sim = sim().await;
    let mut server = server_cfg();
    server.shutdown_delay_ms = 600;
    let mux = submux_with(server, vec![fast_route(vec![sim.url()])]).await;
    let ready = mux.http_url("/readyz");
    let (line, _) = crate::protocol::http_get(&ready).await;
    assert!(line.contains("200"), "{line}");
    let mut a = Client::connect(&mux.ws_url("/eth")).await;
    a.subscribe(json!(["newHeads"])).await;
    let stop = tokio::spawn(mux.drain_and_stop());
    // During the delay: not ready, yet still serving existing and new clients.
    let (line, body) = crate::protocol::http_get(&ready).await;
    assert!(
        line.contains("503") && body.contains("shutting down"),
        "{line} {body}"
    );
    sim.emit_block();
    a.notification().await;
    let mut b = Client::connect(&crate::common::ws_url_of(&ready)).await;
    assert!(b.call("eth_chainId", json!([])).await["result"].is_string());
    // Then everyone is closed with 1001.
    for c in [&mut a, &mut b] {
        assert_eq!(c.expect_close().await.0, CloseCode::Away);
    }
    assert!(stop.await.unwrap());
}
