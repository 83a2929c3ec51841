//! The thin splice-and-forward relay that issue 13 measured submux against, as a reference
//! for the unpaced fan-out workloads. It runs in a child process (the bench binary
//! re-executed with `--relay-child UPSTREAM`), so its CPU time and RSS are its own.
//!
//! Shape: one upstream WebSocket; one upstream `eth_subscribe` per distinct params (key),
//! made when the first client asks; each client's `eth_subscribe` answered with its own
//! id. For every upstream notification it copies the frame with each subscriber's id
//! spliced in and queues it on that client's bounded queue; the client's writer task
//! writes up to [`FLUSH_FRAMES`] queued frames, then flushes. A client whose queue is full
//! is closed with 1008, as submux closes slow clients. Nothing else (no other methods, no
//! reconnects, no upstream unsubscribe): it is a yardstick, not a proxy.

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

/// Frames written per flush, at most.
pub const FLUSH_FRAMES: usize = 32;
/// Read buffers as submux's (client 4 KiB, upstream 16 KiB); a 16 KiB write buffer, so a
/// flush of 32 frames is a few large writes rather than one syscall per frame.
const CLIENT_READ_BUFFER: usize = 4 * 1024;
const UPSTREAM_READ_BUFFER: usize = 16 * 1024;
const WRITE_BUFFER: usize = 16 * 1024;

fn ws_config(read_buffer: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(read_buffer)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

/// One subscriber of an upstream subscription.
struct Sub {
    conn: u64,
    id: String,
    tx: mpsc::Sender<Message>,
    /// Cancelled when the queue overflowed: the writer closes the client.
    slow: CancellationToken,
}

#[derive(Default)]
struct State {
    /// Upstream subscription id → its subscribers.
    routes: HashMap<String, Vec<Sub>>,
    /// Subscribe params (as sent) → upstream subscription id.
    keys: HashMap<String, String>,
    /// Upstream request id → who waits for the reply.
    pending: HashMap<u64, oneshot::Sender<String>>,
}

struct Relay {
    state: Mutex<State>,
    upstream: mpsc::UnboundedSender<Message>,
    /// Serialises upstream subscribes, so a key is subscribed once.
    subscribing: tokio::sync::Mutex<()>,
    next: AtomicU64,
    queue_len: usize,
}

impl Relay {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The upstream subscription id for `params`, subscribing on first use.
    async fn upstream_id(&self, params: &str) -> Result<String, String> {
        let _one = self.subscribing.lock().await;
        if let Some(id) = self.lock().keys.get(params) {
            return Ok(id.clone());
        }
        let rid = self.next.fetch_add(1, Relaxed);
        let (tx, rx) = oneshot::channel();
        self.lock().pending.insert(rid, tx);
        let req =
            format!(r#"{{"jsonrpc":"2.0","id":{rid},"method":"eth_subscribe","params":{params}}}"#);
        self.upstream
            .send(Message::text(req))
            .map_err(|_| "upstream gone")?;
        let reply = rx.await.map_err(|_| "upstream gone")?;
        let v: Value = serde_json::from_str(&reply).map_err(|e| e.to_string())?;
        let id = v["result"].as_str().ok_or(reply.clone())?.to_string();
        self.lock().keys.insert(params.to_string(), id.clone());
        Ok(id)
    }

    /// One upstream frame: a notification goes to every subscriber with its id spliced
    /// in; anything else is a reply to a subscribe.
    fn upstream_frame(&self, text: &str) {
        const PAT: &str = "\"subscription\":\"";
        let head = text.get(..96).unwrap_or(text);
        let at = head.find(PAT).map(|i| i + PAT.len());
        let Some((start, end)) = at.and_then(|s| Some((s, s + text[s..].find('"')?))) else {
            let id = serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|v| v["id"].as_u64());
            if let Some(tx) = id.and_then(|id| self.lock().pending.remove(&id)) {
                let _ = tx.send(text.to_string());
            }
            return;
        };
        let (before, after) = (&text[..start], &text[end..]);
        let mut st = self.lock();
        let Some(subs) = st.routes.get_mut(&text[start..end]) else {
            return;
        };
        subs.retain(|s| {
            let mut f = String::with_capacity(before.len() + s.id.len() + after.len());
            f.push_str(before);
            f.push_str(&s.id);
            f.push_str(after);
            let queued = s.tx.try_send(Message::Text(Utf8Bytes::from(f))).is_ok();
            if !queued {
                s.slow.cancel();
            }
            queued
        });
    }

    fn forget(&self, conn: u64) {
        for subs in self.lock().routes.values_mut() {
            subs.retain(|s| s.conn != conn);
        }
    }
}

/// Serve clients on `listener`, relaying from the node at `upstream`; `queue_len` frames
/// per client at most.
pub async fn serve(upstream: &str, listener: TcpListener, queue_len: usize) {
    let (ws, _) = tokio_tungstenite::connect_async_with_config(
        upstream,
        Some(ws_config(UPSTREAM_READ_BUFFER)),
        true,
    )
    .await
    .expect("relay: connect upstream");
    let (mut up_tx, mut up_rx) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if up_tx.send(m).await.is_err() {
                break;
            }
        }
    });
    let relay = Arc::new(Relay {
        state: Mutex::default(),
        upstream: tx,
        subscribing: tokio::sync::Mutex::new(()),
        next: AtomicU64::new(1),
        queue_len,
    });
    let r = relay.clone();
    tokio::spawn(async move {
        while let Some(Ok(m)) = up_rx.next().await {
            if let Message::Text(t) = m {
                r.upstream_frame(&t);
            }
        }
        eprintln!("relay: upstream closed");
        std::process::exit(1);
    });
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(client(relay.clone(), tcp));
    }
}

/// One client: its reader answers subscribes; its writer drains the queue.
async fn client(relay: Arc<Relay>, tcp: TcpStream) {
    let cfg = ws_config(CLIENT_READ_BUFFER);
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(cfg)).await else {
        return;
    };
    let conn = relay.next.fetch_add(1, Relaxed);
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(relay.queue_len);
    let slow = CancellationToken::new();
    let overflow = slow.clone();
    let writer = tokio::spawn(async move {
        let mut buf = Vec::with_capacity(FLUSH_FRAMES);
        loop {
            let n = tokio::select! {
                biased;
                _ = overflow.cancelled() => 0,
                n = rx.recv_many(&mut buf, FLUSH_FRAMES) => n,
            };
            if n == 0 {
                let close = CloseFrame {
                    code: CloseCode::Policy,
                    reason: "relay: client too slow".into(),
                };
                let _ = sink.send(Message::Close(Some(close))).await;
                return;
            }
            for m in buf.drain(..) {
                if sink.feed(m).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    let mut id = 0u64;
    while let Some(Ok(m)) = stream.next().await {
        let Message::Text(t) = m else { continue };
        let Ok(v) = serde_json::from_str::<Value>(&t) else {
            continue;
        };
        let rid = v.get("id").cloned().unwrap_or(Value::Null);
        let answer = match v["method"].as_str() {
            Some("eth_subscribe") => match relay.upstream_id(&v["params"].to_string()).await {
                Ok(up) => {
                    id += 1;
                    let mine = format!("0x{conn:016x}{id:016x}");
                    let sub = Sub {
                        conn,
                        id: mine.clone(),
                        tx: tx.clone(),
                        slow: slow.clone(),
                    };
                    relay.lock().routes.entry(up).or_default().push(sub);
                    format!(r#"{{"jsonrpc":"2.0","id":{rid},"result":"{mine}"}}"#)
                }
                Err(e) => format!(
                    r#"{{"jsonrpc":"2.0","id":{rid},"error":{{"code":-32000,"message":{}}}}}"#,
                    Value::String(e)
                ),
            },
            Some("eth_unsubscribe") => {
                let gone = v["params"][0].as_str().unwrap_or_default().to_string();
                let mut found = false;
                for subs in relay.lock().routes.values_mut() {
                    subs.retain(|s| {
                        let it = s.conn == conn && s.id == gone;
                        found |= it;
                        !it
                    });
                }
                format!(r#"{{"jsonrpc":"2.0","id":{rid},"result":{found}}}"#)
            }
            _ => format!(
                r#"{{"jsonrpc":"2.0","id":{rid},"error":{{"code":-32601,"message":"relay: only eth_subscribe"}}}}"#
            ),
        };
        if tx.send(Message::text(answer)).await.is_err() {
            break;
        }
    }
    relay.forget(conn);
    drop(tx);
    writer.abort();
}

/// The relay running as a child process; killed on drop.
pub struct RelayChild {
    child: Child,
    addr: String,
}

impl RelayChild {
    /// Re-execute this bench binary as a relay in front of `upstream`.
    pub fn start(upstream: &str, queue_len: usize) -> RelayChild {
        let mut child = Command::new(std::env::current_exe().expect("current exe"))
            .args([
                "--relay-child",
                upstream,
                "--queue-len",
                &queue_len.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn relay");
        let out = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line).expect("read");
        let addr = line
            .trim()
            .strip_prefix("relay listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_string();
        RelayChild { child, addr }
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }
}

impl Drop for RelayChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// In the child: if this process was started as a relay, serve until killed and return
/// true (the caller returns); false otherwise.
pub async fn run_if_child() -> bool {
    let args: Vec<String> = std::env::args().collect();
    let Some(i) = args.iter().position(|a| a == "--relay-child") else {
        return false;
    };
    let upstream = args.get(i + 1).expect("--relay-child UPSTREAM").clone();
    let queue_len = super::arg("--queue-len").unwrap_or(256);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    println!("relay listening on {addr}");
    serve(&upstream, listener, queue_len).await;
    true
}
