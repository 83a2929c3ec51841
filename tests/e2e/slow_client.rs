//! A client that cannot keep up is closed with 1008 and counted; others keep receiving.

use crate::common::*;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test]
async fn slow_client_is_closed_and_others_are_unaffected() {
    let sim = sim().await;
    let mut server = server_cfg();
    server.client_queue_len = 64;
    server.write_timeout_ms = 500;
    let mux = submux_with(server, vec![fast_route(vec![sim.url()])]).await;

    // The slow client has a tiny receive buffer and never reads.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let tcp = sock.connect(mux.addr).await.unwrap();
    let (mut slow, _) = tokio_tungstenite::client_async(mux.ws_url("/eth"), tcp)
        .await
        .unwrap();
    use futures_util::{SinkExt, StreamExt};
    slow.send(tokio_tungstenite::tungstenite::Message::text(
        r#"{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}"#,
    ))
    .await
    .unwrap();

    let mut fast = Client::connect(&mux.ws_url("/eth")).await;
    fast.subscribe(json!(["newHeads"])).await;
    let received = Arc::new(AtomicU64::new(0));
    let r2 = received.clone();
    let reader = tokio::spawn(async move {
        loop {
            let v = fast.recv().await;
            assert_eq!(v["method"], "eth_subscription");
            r2.fetch_add(1, Relaxed);
        }
    });
    let metrics = mux.hub.routes()[0].metrics.clone();
    // Emit in bursts paced by the fast client, until the slow one is closed.
    let mut emitted = 0u64;
    while metrics.slow_client_closes.load(Relaxed) == 0 {
        for _ in 0..16 {
            sim.emit_block();
            emitted += 1;
        }
        let target = emitted;
        let r = received.clone();
        wait_for("fast client keeps up", move || r.load(Relaxed) >= target).await;
        assert!(emitted < 200_000, "slow client never closed");
    }
    // Keep going: the fast client is unaffected by the close.
    for _ in 0..8 {
        for _ in 0..16 {
            sim.emit_block();
            emitted += 1;
        }
        let (r, target) = (received.clone(), emitted);
        wait_for("fast client got everything", move || {
            r.load(Relaxed) == target
        })
        .await;
    }
    assert!(!reader.is_finished());
    reader.abort();
    let slow_closes = &metrics.closes[1];
    wait_for("close counted by reason", || slow_closes.load(Relaxed) >= 1).await;

    // The slow client, once it reads, finds its frames then a 1008 close with a reason
    // (or, if the close frame could not be written in time, the end of the stream).
    let end = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(m) = slow.next().await {
            match m {
                Ok(tokio_tungstenite::tungstenite::Message::Close(Some(c))) => {
                    return Some((c.code, c.reason.to_string()))
                }
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .expect("slow client stream ends");
    if let Some((code, reason)) = end {
        assert_eq!(code, CloseCode::Policy);
        assert!(reason.starts_with("slow client"), "{reason}");
    }
    assert_eq!(metrics.slow_client_closes.load(Relaxed), 1);
}

#[tokio::test]
async fn a_client_that_opts_in_skips_to_the_latest_head_instead_of_being_closed() {
    use futures_util::{SinkExt, StreamExt};
    let sim = sim().await;
    let mut server = server_cfg();
    server.client_queue_len = 16;
    server.write_timeout_ms = 20_000;
    let mux = submux_with(server, vec![fast_route(vec![sim.url()])]).await;
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let tcp = sock.connect(mux.addr).await.unwrap();
    let url = format!("{}?coalesce=1", mux.ws_url("/eth"));
    let (mut slow, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
    slow.send(tokio_tungstenite::tungstenite::Message::text(
        r#"{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}"#,
    ))
    .await
    .unwrap();
    // Wait for the reply before flooding (the reply is read now; heads are not).
    let reply = slow.next().await.unwrap().unwrap();
    assert!(reply.to_text().unwrap().contains("\"result\""));
    let metrics = mux.hub.routes()[0].metrics.clone();
    let mut last = 0;
    for _ in 0..3000 {
        last = sim.emit_block();
    }
    let want = format!("\"0x{last:x}\"");
    let mut frames = 0u64;
    let got_latest = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(m) = slow.next().await {
            match m.unwrap() {
                tokio_tungstenite::tungstenite::Message::Text(t) => {
                    frames += 1;
                    if t.contains(&want) {
                        return true;
                    }
                }
                tokio_tungstenite::tungstenite::Message::Close(c) => panic!("closed: {c:?}"),
                _ => {}
            }
        }
        false
    })
    .await
    .expect("latest head arrives");
    assert!(got_latest);
    assert!(frames < 3000, "skipped the backlog ({frames} frames)");
    assert!(metrics.coalesced.load(Relaxed) >= 1);
    assert_eq!(metrics.slow_client_closes.load(Relaxed), 0, "not closed");
}
