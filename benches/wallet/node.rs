//! The node as wallets and submux see it: the simulated node behind a front that answers
//! each call after a service time (`--node-ms`), over WebSocket and HTTP POST alike. The
//! simulator itself answers in tens of microseconds, in the bench's own process — less
//! than any real node (geth executing an `eth_call` on its own machine, or a provider
//! across a network). Subscriptions and pushes pass through without delay.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// A running front: its WebSocket and HTTP URLs.
pub struct Front {
    pub ws: String,
    pub http: String,
}

/// Serve `sim_ws`/`sim_http` with `delay` added to every call.
pub async fn start(sim_ws: String, sim_http: String, delay: Duration) -> Front {
    let ws_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let http_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let front = Front {
        ws: format!("ws://{}", ws_listener.local_addr().expect("addr")),
        http: format!("http://{}", http_listener.local_addr().expect("addr")),
    };
    tokio::spawn(async move {
        while let Ok((tcp, _)) = ws_listener.accept().await {
            let _ = tcp.set_nodelay(true);
            let sim_ws = sim_ws.clone();
            tokio::spawn(async move {
                let Ok(client) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let Ok((node, _)) = tokio_tungstenite::connect_async(sim_ws.as_str()).await else {
                    return;
                };
                let (mut client_tx, mut client_rx) = client.split();
                let (mut node_tx, mut node_rx) = node.split();
                let (to_node, mut queued) = mpsc::unbounded_channel::<Message>();
                tokio::spawn(async move {
                    while let Some(m) = queued.recv().await {
                        if node_tx.send(m).await.is_err() {
                            break;
                        }
                    }
                });
                let up = async move {
                    while let Some(Ok(m)) = client_rx.next().await {
                        let to_node = to_node.clone();
                        let subscribe = m.to_text().is_ok_and(|t| t.contains("_subscribe"));
                        if delay.is_zero() || subscribe {
                            let _ = to_node.send(m);
                        } else {
                            tokio::spawn(async move {
                                tokio::time::sleep(delay).await;
                                let _ = to_node.send(m);
                            });
                        }
                    }
                };
                let down = async move {
                    while let Some(Ok(m)) = node_rx.next().await {
                        if client_tx.send(m).await.is_err() {
                            break;
                        }
                    }
                };
                tokio::select! {
                    _ = up => {}
                    _ = down => {}
                }
            });
        }
    });
    let http: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |body: Bytes| {
            let (http, sim_http) = (http.clone(), sim_http.clone());
            async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let req = http::Request::post(sim_http.as_str())
                    .header("content-type", "application/json")
                    .body(Full::new(body))
                    .expect("request");
                let answer = match http.request(req).await {
                    Ok(res) => res
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default(),
                    Err(_) => Bytes::new(),
                };
                ([(http::header::CONTENT_TYPE, "application/json")], answer)
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(http_listener, app).await;
    });
    front
}
