//! Test harness: submux and simulators on port 0, a small WebSocket client, and
//! condition waits (no fixed sleeps for readiness).

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use submux::config::{RawConfig, RouteConfig, ServerConfig};
use submux::dialect::DialectKind;
use submux::sim::ethereum::{EthSim, EthSimConfig};
use submux::Running;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const WAIT: Duration = Duration::from_secs(10);

pub async fn sim() -> EthSim {
    EthSim::start(EthSimConfig::default()).await.expect("sim")
}

/// A route with fast timers for tests.
pub fn fast_route(upstreams: Vec<String>) -> RouteConfig {
    let mut r = RouteConfig::new("/eth", DialectKind::Ethereum, upstreams);
    r.linger_ms = 150;
    r.backoff_initial_ms = 20;
    r.backoff_max_ms = 200;
    r.connect_timeout_ms = 1_000;
    r.request_timeout_ms = 2_000;
    r.subscribe_timeout_ms = 2_000;
    r
}

pub fn server_cfg() -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".into(),
        ..ServerConfig::default()
    }
}

pub async fn submux_with(server: ServerConfig, routes: Vec<RouteConfig>) -> Running {
    let raw = RawConfig {
        server,
        routes,
        backplane: None,
        source: None,
        auth: Default::default(),
    };
    let settings = raw.validate(None).expect("valid test config");
    let running = submux::start(settings).await.expect("start");
    wait_ready(&running).await;
    running
}

pub async fn submux(upstreams: Vec<String>) -> Running {
    submux_with(server_cfg(), vec![fast_route(upstreams)]).await
}

/// submux on one route with the call cache off: for tests that count the node's
/// subscriptions exactly (a cached route also holds a `newHeads` subscription of its own).
pub async fn submux_uncached(upstreams: Vec<String>) -> Running {
    let mut route = fast_route(upstreams);
    route.cache = false;
    submux_with(server_cfg(), vec![route]).await
}

pub async fn wait_ready(running: &Running) {
    let metrics = running.hub.routes()[0].metrics.clone();
    wait_for("upstream connected", || metrics.ready()).await;
}

/// Poll `cond` until it holds (panics after WAIT).
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Client {
    pub fn from_stream(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Client {
        Client { ws, next_id: 1 }
    }

    pub async fn connect(url: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        Client { ws, next_id: 1 }
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::text(text.to_string()))
            .await
            .expect("send");
    }

    pub async fn send(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    /// Next text frame as raw text (panics on timeout or close).
    pub async fn recv_text(&mut self) -> String {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => return t.to_string(),
                Ok(Some(Ok(Message::Close(c)))) => panic!("closed: {c:?}"),
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(e))) => panic!("read error: {e}"),
                Ok(None) => panic!("connection ended"),
                Err(_) => panic!("no frame within {WAIT:?}"),
            }
        }
    }

    /// Next text frame, however long it takes; `Err` says how the socket ended instead.
    pub async fn next_text(&mut self) -> Result<String, String> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) => return Ok(t.to_string()),
                Some(Ok(Message::Close(c))) => return Err(format!("closed: {c:?}")),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(format!("read error: {e}")),
                None => return Err("connection ended".into()),
            }
        }
    }

    pub async fn recv(&mut self) -> Value {
        serde_json::from_str(&self.recv_text().await).expect("json frame")
    }

    /// Read until the close frame; returns its code and reason.
    pub async fn expect_close(&mut self) -> (CloseCode, String) {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Ok(Some(Ok(Message::Close(Some(c))))) => return (c.code, c.reason.to_string()),
                Ok(Some(Ok(Message::Close(None)))) => panic!("close without code"),
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(e))) => panic!("read error before close: {e}"),
                Ok(None) => panic!("ended without close frame"),
                Err(_) => panic!("no close within {WAIT:?}"),
            }
        }
    }

    /// Send a request with the next numeric id and return the reply (skipping notifications).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}))
            .await;
        loop {
            let v = self.recv().await;
            if v.get("id") == Some(&json!(id)) {
                return v;
            }
        }
    }

    /// Subscribe and return the subscription id.
    pub async fn subscribe(&mut self, params: Value) -> String {
        let r = self.call("eth_subscribe", params).await;
        r["result"]
            .as_str()
            .unwrap_or_else(|| panic!("subscribe failed: {r}"))
            .to_string()
    }

    /// Next notification (panics if a non-notification arrives).
    pub async fn notification(&mut self) -> Value {
        let v = self.recv().await;
        assert_eq!(
            v["method"], "eth_subscription",
            "expected a notification, got {v}"
        );
        v
    }
}

/// `ws://HOST/eth` for any `http://HOST/...` URL of the same server.
pub fn ws_url_of(http_url: &str) -> String {
    let host = http_url
        .strip_prefix("http://")
        .and_then(|r| r.split('/').next())
        .unwrap_or_default();
    format!("ws://{host}/eth")
}
