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
