//! Backfill of content-routed streams (XRPL): what rippled published while submux's link
//! to it was cut reaches every client, in order, once, byte for byte as a client
//! connected to the node directly got it, in that client's API version; beyond
//! `backfill_max_ledgers` the opt-in gap notice names the exact range.
//!
//! The link is cut with a TCP proxy between submux and the node, so a reference client
//! connected to the node directly keeps receiving everything meanwhile.

use crate::common::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use submux::config::RouteConfig;
use submux::dialect::DialectKind;
use submux::sim::xrpl::{XrplSim, XrplSimConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// A TCP proxy that can cut every connection through it and refuse new ones.
pub struct Proxy {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    pipes: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let pipes: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (c, p) = (cut.clone(), pipes.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if c.load(Relaxed) {
                    continue; // dropped: closed at once
                }
                let pipe = tokio::spawn(async move {
                    if let Ok(mut out) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                p.lock().unwrap().push(pipe.abort_handle());
            }
        })
        .abort_handle();
        Proxy {
            addr,
            cut,
            pipes,
            accept,
        }
    }
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }
    /// Cut every connection and refuse new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.cut.store(true, Relaxed);
        for p in self.pipes.lock().unwrap().drain(..) {
            p.abort();
        }
    }
    pub fn restore(&self) {
        self.cut.store(false, Relaxed);
    }
}

fn addr_of(ws_url: &str) -> SocketAddr {
    ws_url.trim_start_matches("ws://").parse().unwrap()
}

async fn xrpl_through(proxy: &Proxy, max_ledgers: u64) -> submux::Running {
    let mut r: RouteConfig = fast_route(vec![proxy.url()]);
    r.path = "/xrpl".into();
    r.dialect = DialectKind::Xrpl;
    r.backfill_max_ledgers = max_ledgers;
    submux_with(server_cfg(), vec![r]).await
}

/// Subscribe `account` and the ledger stream in API version `api`; the response.
async fn subscribe(c: &mut Client, account: &str, api: u8) {
    c.send(
        json!({"id": 1, "command": "subscribe", "accounts": [account],
        "streams": ["ledger"], "api_version": api}),
    )
    .await;
    let r = c.recv().await;
    assert_eq!(r["status"], "success", "{r}");
}

/// The next `n` frames as text.
async fn frames(c: &mut Client, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(c.recv_text().await);
    }
    out
}

async fn quiet(c: &mut Client) {
    let next = tokio::time::timeout(Duration::from_millis(200), c.next_text()).await;
    assert!(next.is_err(), "unexpected frame: {next:?}");
}

#[tokio::test]
async fn ledgers_validated_while_cut_off_reach_xrpl_clients_as_the_node_sent_them() {
    let sim = XrplSim::start(XrplSimConfig::default()).await.unwrap();
    let proxy = Proxy::start(addr_of(&sim.ws_url())).await;
    let mux = xrpl_through(&proxy, 256).await;
    let m = mux.hub.routes()[0].metrics.clone();
    let acc = sim.accounts();
    let (a, b) = (acc[0].clone(), acc[1].clone());
    // Per API version: a client of the node itself, and one through submux.
    let mut clients = Vec::new();
    for api in [1u8, 2] {
        let mut direct = Client::connect(&sim.ws_url()).await;
        subscribe(&mut direct, &a, api).await;
        let mut via = Client::connect(&mux.ws_url("/xrpl")).await;
        subscribe(&mut via, &a, api).await;
        clients.push((direct, via));
    }
    sim.pay(&a, &b, 1_000);
    sim.close_ledger();
    for (direct, via) in &mut clients {
        assert_eq!(frames(direct, 2).await, frames(via, 2).await);
    }
    // Cut: three ledgers (two with a payment of `a`, one empty) are validated meanwhile.
    proxy.cut();
    wait_for("disconnected", || m.upstream_connections.load(Relaxed) == 0).await;
    sim.pay(&a, &b, 2_000);
    sim.close_ledger();
    sim.close_ledger();
    sim.pay(&b, &a, 3_000);
    sim.pay(&a, &b, 4_000);
    sim.close_ledger();
    proxy.restore();
    // 3 ledgers and 3 payments, per version: 12.
    wait_for("backfilled", || m.backfilled.load(Relaxed) == 12).await;
    sim.pay(&a, &b, 5_000);
    sim.close_ledger();
    for (direct, via) in &mut clients {
        let want = frames(direct, 3 + 3 + 2).await;
        assert_eq!(
            frames(via, want.len()).await,
            want,
            "through submux, byte for byte what the node sent"
        );
        quiet(via).await;
    }
}

#[tokio::test]
async fn beyond_backfill_max_ledgers_the_gap_notice_names_the_range() {
    let sim = XrplSim::start(XrplSimConfig::default()).await.unwrap();
    let proxy = Proxy::start(addr_of(&sim.ws_url())).await;
    let mux = xrpl_through(&proxy, 2).await;
    let m = mux.hub.routes()[0].metrics.clone();
    let a = sim.accounts()[0].clone();
    let mut direct = Client::connect(&sim.ws_url()).await;
    subscribe(&mut direct, &a, 2).await;
    let mut via = Client::connect(&mux.ws_url("/xrpl?gap_notices=1")).await;
    subscribe(&mut via, &a, 2).await;
    let first = sim.close_ledger();
    assert_eq!(frames(&mut direct, 1).await, frames(&mut via, 1).await);
    proxy.cut();
    wait_for("disconnected", || m.upstream_connections.load(Relaxed) == 0).await;
    for _ in 0..5 {
        sim.close_ledger();
    }
    proxy.restore();
    let gap: Value = via.recv().await;
    assert_eq!(
        gap,
        json!({"type": "submuxGap", "ledger_index_min": first + 1, "ledger_index_max": first + 3,
            "reason": "upstream connection replaced; ledgers in this range may have been missed"})
    );
    let missed = frames(&mut direct, 5).await;
    assert_eq!(
        frames(&mut via, 2).await,
        missed[3..],
        "the newest 2, as sent"
    );
}
