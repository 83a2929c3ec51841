//! Simulated upstream nodes, one per dialect, speaking the real wire protocol over real
//! WebSockets on loopback. Used by the no-config demo, the integration tests and the
//! benchmark. The WebSocket plumbing is shared here; each node supplies its protocol.

/// The accessors every simulator handle (a struct keeping its [`Node`] in `inner`) has
/// over the node's shared [`Counters`] and connections.
macro_rules! handle_accessors {
    () => {
        /// Close every open connection abruptly (as a crash would).
        pub fn drop_connections(&self) {
            crate::sim::Node::close_all(&*self.inner);
        }
        /// Refuse (accept and immediately close) new connections.
        pub fn set_refuse(&self, refuse: bool) {
            self.inner.counters.faults.set_refuse(refuse);
        }
        /// WebSocket connections accepted since start.
        pub fn accepted(&self) -> u64 {
            self.inner
                .counters
                .accepted
                .load(std::sync::atomic::Ordering::Relaxed)
        }
        /// Subscribe requests received (over all connections).
        pub fn subscribe_requests(&self) -> u64 {
            self.inner
                .counters
                .subscribe_requests
                .load(std::sync::atomic::Ordering::Relaxed)
        }
    };
}

pub mod ethereum;
pub mod lnbits;
pub mod solana;
pub mod xrpl;

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

/// Connection counters and the fault controls every simulated node has.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    last_conn: AtomicU64,
    pub accepted: AtomicU64,
    pub subscribe_requests: AtomicU64,
    pub faults: Faults,
}

impl Counters {
    /// Count an accepted connection and return its id (from 1).
    pub fn open(&self) -> u64 {
        self.accepted.fetch_add(1, Relaxed);
        self.last_conn.fetch_add(1, Relaxed) + 1
    }
}

/// UTC calendar fields of a Unix time (the simulators render timestamps with it).
pub(crate) use crate::civil::utc;

/// What tests and benchmarks do with any simulated node.
pub trait Simulator: Send + Sync + 'static {
    /// The WebSocket URL.
    fn ws_url(&self) -> String;
    /// Fault controls and the record of frames written.
    fn faults(&self) -> &Faults;
    /// Close every open connection abruptly (as a crash would).
    fn drop_connections(&self);
    /// The chain's clock: block number, slot or ledger index.
    fn clock(&self) -> u64;
    /// Jump the clock to `n` (the next block, slot or ledger is `n + 1`).
    fn set_clock(&self, n: u64);
    /// Subscriptions the node holds (over all connections).
    fn subscriptions(&self) -> usize;
}

/// What a node writes instead of (or besides) its real frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Garbage {
    /// Real frames only.
    Off,
    /// A garbage frame before every real reply and notification.
    Interleave,
    /// A garbage frame instead of every real reply and notification.
    Replace,
    /// Replies keep their id but carry a wrong-shape `result`; pushes pass unchanged.
    Mangle,
}

/// Frames a node wrote to its sockets while recording (see [`Faults::record`]), each with
/// the id of its connection (from 1, in accept order).
#[derive(Debug, Default, Clone)]
pub struct Sent {
    /// Written and flushed to the socket: the peer gets them unless it is already gone.
    pub flushed: Vec<(u64, String)>,
    /// Part of a write that failed: the peer may or may not have them.
    pub unsure: Vec<(u64, String)>,
}

/// Fault controls shared by every simulated node: refuse, hang, answer garbage, and a
/// record of what was actually written on each connection (so a test can tell what the
/// node delivered while a peer was connected from what was legitimately missed).
#[derive(Debug)]
pub struct Faults {
    refuse: AtomicBool,
    hang: watch::Sender<bool>,
    garbage: AtomicU8,
    garbage_frames: AtomicU64,
    record: AtomicBool,
    binary: AtomicBool,
    sent: Mutex<Sent>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            refuse: AtomicBool::new(false),
            hang: watch::Sender::new(false),
            garbage: AtomicU8::new(Garbage::Off as u8),
            garbage_frames: AtomicU64::new(0),
            record: AtomicBool::new(false),
            binary: AtomicBool::new(false),
            sent: Mutex::new(Sent::default()),
        }
    }
}

impl Faults {
    /// Refuse new connections (accept the TCP connection and close it at once).
    pub fn set_refuse(&self, refuse: bool) {
        self.refuse.store(refuse, Relaxed);
    }
    pub fn refusing(&self) -> bool {
        self.refuse.load(Relaxed)
    }
    /// Freeze like a stopped process: read nothing (so no pongs), write nothing (pushes
    /// meanwhile are discarded), and leave new connections' handshakes unanswered. Turning
    /// it off resumes every connection where it stood.
    pub fn set_hang(&self, hang: bool) {
        self.hang.send_replace(hang);
    }
    pub fn hanging(&self) -> bool {
        *self.hang.borrow()
    }
    /// Send garbage (non-JSON, truncated, wrong-shape and unknown-id frames, a binary
    /// frame, an oversized one) between or instead of the real frames, or mangle replies.
    pub fn set_garbage(&self, mode: Garbage) {
        self.garbage.store(mode as u8, Relaxed);
    }
    pub fn garbage(&self) -> Garbage {
        match self.garbage.load(Relaxed) {
            0 => Garbage::Off,
            1 => Garbage::Interleave,
            2 => Garbage::Replace,
            _ => Garbage::Mangle,
        }
    }
    /// Garbage frames written so far.
    pub fn garbage_frames(&self) -> u64 {
        self.garbage_frames.load(Relaxed)
    }
    /// Answer in binary frames only (UTF-8 JSON in binary frames, as ganache does with
    /// `--server.wsBinary`): every real frame written from now on, on every connection.
    pub fn set_binary(&self, binary: bool) {
        self.binary.store(binary, Relaxed);
    }
    fn binary(&self) -> bool {
        self.binary.load(Relaxed)
    }
    /// Start (or stop) recording every real frame written (see [`Faults::sent`]).
    pub fn record(&self, on: bool) {
        self.record.store(on, Relaxed);
    }
    /// The frames written while recording.
    pub fn sent(&self) -> Sent {
        self.lock_sent().clone()
    }

    fn lock_sent(&self) -> std::sync::MutexGuard<'_, Sent> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn recording(&self) -> bool {
        self.record.load(Relaxed)
    }

    fn note_written(&self, conn: u64, frames: &mut Vec<String>, flushed: bool) {
        if frames.is_empty() {
            return;
        }
        let mut sent = self.lock_sent();
        let list = if flushed {
            &mut sent.flushed
        } else {
            &mut sent.unsure
        };
        list.extend(frames.drain(..).map(|f| (conn, f)));
    }
}

/// Wait until the node is not hanging; `false` if `cancel` fired first.
async fn until_answering(hang: &mut watch::Receiver<bool>, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        r = hang.wait_for(|h| !*h) => r.is_ok(),
    }
}

/// The `k`-th garbage frame: a rotation of bad inputs no node would send, none of which
/// can be mistaken for a reply to a real request or a push for a real subscription.
fn garbage_frame(k: u64) -> Message {
    const TEXT: &[&str] = &[
        "this is not JSON",
        r#"{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"0x1","res"#,
        "null",
        "42",
        r#""a string""#,
        "[]",
        "[1,2,3]",
        "{}",
        r#"{"jsonrpc":"2.0","id":"not-a-request-of-yours","result":"0x1"}"#,
        r#"{"jsonrpc":"2.0","id":987654321987,"error":{"code":-1,"message":"stray"}}"#,
        r#"{"jsonrpc":"2.0","method":"eth_subscription","params":"oops"}"#,
        r#"{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"0xdead","result":{}}}"#,
        r#"{"jsonrpc":"2.0","method":"slotNotification","params":{"result":{},"subscription":"x"}}"#,
        r#"{"jsonrpc":"2.0","method":"accountNotification","params":{"subscription":-1}}"#,
        r#"{"type":42}"#,
        r#"{"type":"response","id":"zzz","status":"success","result":{}}"#,
        r#"{"type":"no_such_stream","ledger_index":"x"}"#,
        "\u{feff}{\"jsonrpc\":\"2.0\"}",
        "{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    ];
    let i = (k as usize) % (TEXT.len() + 2);
    match TEXT.get(i) {
        Some(t) => Message::text(*t),
        None if i == TEXT.len() => Message::binary(vec![0xff, 0x00, 0xfe, 0x7b]),
        None => Message::text("x".repeat(64 * 1024)),
    }
}

/// A reply (a JSON object with an `id` and a `result`) with its result swapped for an
/// object no protocol expects there; anything else unchanged.
/// A reply with its result replaced by a wrong shape; `true` when the frame was changed.
fn mangle(m: Message) -> (Message, bool) {
    let Message::Text(t) = &m else {
        return (m, false);
    };
    let Ok(serde_json::Value::Object(mut o)) = serde_json::from_str(t) else {
        return (m, false);
    };
    if !o.contains_key("id") || !o.contains_key("result") {
        return (m, false);
    }
    o.insert("result".into(), serde_json::json!({"garbage": [1, 2, 3]}));
    (
        Message::text(serde_json::Value::Object(o).to_string()),
        true,
    )
}

/// The protocol side of a simulated node.
pub(crate) trait Node: Send + Sync + 'static {
    /// A connection opened: keep `tx` to push frames; returns the connection id.
    fn open(&self, tx: mpsc::Sender<Message>, cancel: CancellationToken) -> u64;
    /// Answer one text frame (replies first, then any pushes it causes).
    fn frame(&self, conn: u64, text: &str) -> Vec<String>;
    /// The connection closed.
    fn close(&self, conn: u64);
    /// Close every connection (node stopping or told to drop them).
    fn close_all(&self);
    /// Connection counters and fault controls.
    fn counters(&self) -> &Counters;
}

/// What [`Node::close_all`] does with a node's connection table: empty it and cancel
/// each connection (its `cancel` token ends its reader and writer).
pub(crate) fn close_conns<C>(
    conns: &mut std::collections::HashMap<u64, C>,
    cancel: fn(&C) -> &CancellationToken,
) {
    for (_, c) in conns.drain() {
        cancel(&c).cancel();
    }
}

/// Frames queued per simulated connection before the node drops it as too slow.
pub(crate) const CONN_QUEUE: usize = 65_536;

/// Accept WebSocket connections on `listener` for `node` until `cancel`.
pub(crate) fn spawn_ws_server<N: Node>(
    listener: TcpListener,
    node: Arc<N>,
    cancel: CancellationToken,
) {
    tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                _ = cancel.cancelled() => break,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(_) => continue,
                },
            };
            if node.counters().faults.refusing() {
                drop(tcp);
                continue;
            }
            let _ = tcp.set_nodelay(true);
            tokio::spawn(serve(node.clone(), tcp, cancel.child_token()));
        }
        node.close_all();
    });
}

async fn serve<N: Node>(node: Arc<N>, tcp: TcpStream, cancel: CancellationToken) {
    let mut hang = node.counters().faults.hang.subscribe();
    // A hung node accepts the TCP connection but leaves the handshake unanswered.
    if !until_answering(&mut hang, &cancel).await {
        return;
    }
    let cfg = crate::upstream::connect::ws_config(64 << 20, 8 * 1024);
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(cfg)).await else {
        return;
    };
    let (tx, rx) = mpsc::channel::<Message>(CONN_QUEUE);
    let id = node.open(tx.clone(), cancel.clone());
    let (sink, mut stream) = ws.split();
    let writer = tokio::spawn(write_frames(node.clone(), id, sink, rx, cancel.clone()));
    loop {
        if !until_answering(&mut hang, &cancel).await {
            break;
        }
        let msg = tokio::select! {
            // A dropped connection answers nothing more, even what it has already read.
            biased;
            _ = cancel.cancelled() => break,
            // Stop reading the moment the node hangs: not even pings get their pong.
            _ = hang.wait_for(|h| *h) => continue,
            m = stream.next() => m,
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            // Nodes read binary frames as JSON text too (web3.py sends binary by default).
            Some(Ok(Message::Binary(b))) => match String::from_utf8(b.to_vec()) {
                Ok(t) => t.into(),
                Err(_) => continue,
            },
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => continue,
        };
        for r in node.frame(id, &text) {
            if tx.send(Message::text(r)).await.is_err() {
                break;
            }
        }
    }
    cancel.cancel();
    let _ = writer.await;
    node.close(id);
}

type Sink = SplitSink<WebSocketStream<TcpStream>, Message>;

/// Write a connection's queued frames, applying the hang and garbage faults and recording
/// what was written.
async fn write_frames<N: Node>(
    node: Arc<N>,
    conn: u64,
    mut sink: Sink,
    mut rx: mpsc::Receiver<Message>,
    cancel: CancellationToken,
) {
    let faults = &node.counters().faults;
    let mut written: Vec<String> = Vec::new();
    let mut k = 0u64;
    // Once a reply was mangled, what this connection carries may belong to subscriptions
    // the peer could not confirm: recorded as unsure, not as delivered.
    let mut mangled = false;
    loop {
        let first = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            m = rx.recv() => match m {
                Some(m) => m,
                None => break,
            },
        };
        let (hung, garbage, recording) = (faults.hanging(), faults.garbage(), faults.recording());
        let mut ok = true;
        let mut next = Some(first);
        while let Some(m) = next.take() {
            if !hung {
                let m = if garbage == Garbage::Mangle {
                    let (m, changed) = mangle(m);
                    mangled |= changed;
                    m
                } else {
                    m
                };
                if matches!(garbage, Garbage::Interleave | Garbage::Replace) {
                    faults.garbage_frames.fetch_add(1, Relaxed);
                    ok = sink.feed(garbage_frame(k)).await.is_ok();
                    k += 1;
                }
                if ok && garbage != Garbage::Replace {
                    if let (true, Message::Text(t)) = (recording, &m) {
                        written.push(t.to_string());
                    }
                    let m = match m {
                        Message::Text(t) if faults.binary() => Message::Binary(t.into()),
                        m => m,
                    };
                    ok = sink.feed(m).await.is_ok();
                }
            }
            if !ok {
                break;
            }
            next = rx.try_recv().ok();
        }
        // A hung node flushes nothing either (not even a pending pong).
        ok = ok && (hung || sink.flush().await.is_ok());
        faults.note_written(conn, &mut written, ok && !mangled);
        if !ok {
            break;
        }
    }
}

/// A node served on two loopback ports: WebSocket and HTTP JSON-RPC. Dropping it stops
/// the servers and every task started with its [`cancel`](Served::cancel) token.
pub(crate) struct Served {
    ws: std::net::SocketAddr,
    http: std::net::SocketAddr,
    cancel: CancellationToken,
}

impl Served {
    /// Bind 127.0.0.1 on two OS-assigned ports and serve `node` and `http` there.
    pub async fn start<N: Node>(
        node: Arc<N>,
        http: impl Fn(&str) -> String + Clone + Send + Sync + 'static,
    ) -> std::io::Result<Served> {
        let ws_listener = TcpListener::bind("127.0.0.1:0").await?;
        let http_listener = TcpListener::bind("127.0.0.1:0").await?;
        let served = Served {
            ws: ws_listener.local_addr()?,
            http: http_listener.local_addr()?,
            cancel: CancellationToken::new(),
        };
        // HTTP answers are recorded too while recording (as `unsure`, connection 0: what
        // a backfill fetched may be delivered, or dropped with its connection).
        let recorder = node.clone();
        let http = move |body: &str| {
            let answer = http(body);
            let faults = &recorder.counters().faults;
            if faults.recording() {
                faults.note_written(0, &mut vec![answer.clone()], false);
            }
            answer
        };
        spawn_ws_server(ws_listener, node, served.cancel.clone());
        spawn_http_rpc(http_listener, http, served.cancel.clone());
        Ok(served)
    }
    pub fn cancel(&self) -> CancellationToken {
        self.cancel.clone()
    }
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.ws)
    }
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Serve `POST /` on `listener` with `handle(body) -> JSON text` until `cancel`.
pub(crate) fn spawn_http_rpc(
    listener: TcpListener,
    handle: impl Fn(&str) -> String + Clone + Send + Sync + 'static,
    cancel: CancellationToken,
) {
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |body: String| {
            let handle = handle.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    handle(&body),
                )
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await;
    });
}

/// Run `tick` every `every` until `cancel` (first run after one interval).
pub(crate) fn spawn_every(
    every: std::time::Duration,
    cancel: CancellationToken,
    tick: impl Fn() + Send + 'static,
) {
    tokio::spawn(async move {
        let mut t = tokio::time::interval(every);
        t.tick().await;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = t.tick() => tick(),
            }
        }
    });
}
