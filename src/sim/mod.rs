//! Simulated upstream nodes, one per dialect, speaking the real wire protocol over real
//! WebSockets on loopback. Used by the no-config demo, the integration tests and the
//! benchmark. The WebSocket plumbing is shared here; each node supplies its protocol.

pub mod ethereum;
pub mod lnbits;
pub mod solana;
pub mod xrpl;

use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// Connection counters and the refuse switch every simulated node has.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub refuse: std::sync::atomic::AtomicBool,
    last_conn: std::sync::atomic::AtomicU64,
    pub accepted: std::sync::atomic::AtomicU64,
    pub subscribe_requests: std::sync::atomic::AtomicU64,
}

impl Counters {
    /// Count an accepted connection and return its id (from 1).
    pub fn open(&self) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        self.accepted.fetch_add(1, Relaxed);
        self.last_conn.fetch_add(1, Relaxed) + 1
    }
}

/// UTC calendar fields of a Unix time: (year, month, day, hour, minute, second), by
/// Howard Hinnant's days-to-civil algorithm (the simulators render timestamps with it).
pub(crate) fn utc(unix: u64) -> (i64, i64, i64, u64, u64, u64) {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, secs / 3600, secs % 3600 / 60, secs % 60)
}

/// Frames queued per simulated connection before the node drops it as too slow.
pub(crate) const CONN_QUEUE: usize = 65_536;

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
    /// Refuse new connections (accept and drop).
    fn refusing(&self) -> bool {
        false
    }
    /// Hold sockets but read and answer nothing (not even pings).
    fn hanging(&self) -> bool {
        false
    }
}

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
            if node.refusing() {
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
    let cfg = crate::upstream::connect::ws_config(64 << 20, 8 * 1024);
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(cfg)).await else {
        return;
    };
    let (tx, mut rx) = mpsc::channel::<Message>(CONN_QUEUE);
    let id = node.open(tx.clone(), cancel.clone());
    let (mut sink, mut stream) = ws.split();
    let writer_cancel = cancel.clone();
    let writer = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = writer_cancel.cancelled() => break,
                m = rx.recv() => match m {
                    Some(m) => {
                        if sink.feed(m).await.is_err() { break; }
                        while let Ok(m) = rx.try_recv() {
                            if sink.feed(m).await.is_err() { return; }
                        }
                        if sink.flush().await.is_err() { break; }
                    }
                    None => break,
                }
            }
        }
    });
    loop {
        let msg = tokio::select! {
            _ = cancel.cancelled() => break,
            m = stream.next() => m,
        };
        if node.hanging() {
            cancel.cancelled().await;
            break;
        }
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
