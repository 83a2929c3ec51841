//! permessage-deflate (RFC 7692) end to end, with a raw client that reads the wire itself:
//! compressed frames really carry RSV1 above the route's threshold and not below it, a
//! compressing client and a plain one get the same payloads, a notification is compressed
//! once for all compressing clients, compressed requests are answered, and an inflate bomb
//! ends in 1009.

use crate::common::*;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use serde_json::{json, Value};
use std::sync::atomic::Ordering::Relaxed;
use submux::config::RouteConfig;
use submux::telemetry::CloseReason;
use submux::Running;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];
const MIN_BYTES: usize = 200;

fn deflate_route(upstreams: Vec<String>) -> RouteConfig {
    let mut r = fast_route(upstreams);
    r.permessage_deflate = true;
    r.deflate_min_bytes = MIN_BYTES;
    r
}

/// One frame as read off the wire.
#[derive(Debug)]
struct WireFrame {
    fin: bool,
    rsv1: bool,
    opcode: u8,
    payload: Vec<u8>,
}

/// A WebSocket client that writes its own handshake and reads raw frames.
struct RawWs {
    tcp: TcpStream,
    buf: Vec<u8>,
    /// The answer's `Sec-WebSocket-Extensions`, if any.
    extensions: Option<String>,
    /// Client-side compressor, keeping its context across messages (context takeover).
    z: Compress,
}

impl RawWs {
    async fn connect(mux: &Running, path: &str, offer: Option<&str>) -> RawWs {
        let mut tcp = TcpStream::connect(mux.addr).await.expect("connect");
        let ext = offer.map_or(String::new(), |o| {
            format!("Sec-WebSocket-Extensions: {o}\r\n")
        });
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n",
            mux.addr
        );
        tcp.write_all(req.as_bytes()).await.expect("handshake");
        let mut buf = Vec::new();
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 1024];
            let n = tokio::time::timeout(WAIT, tcp.read(&mut chunk))
                .await
                .expect("handshake answer in time")
                .expect("read");
            assert!(n > 0, "closed during handshake");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(buf[..end].to_vec()).expect("ascii head");
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let extensions = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("sec-websocket-extensions")
                .then(|| v.trim().to_string())
        });
        buf.drain(..end);
        RawWs {
            tcp,
            buf,
            extensions,
            z: Compress::new(Compression::default(), false),
        }
    }

    async fn fill(&mut self, n: usize) {
        while self.buf.len() < n {
            let mut chunk = [0u8; 16 * 1024];
            let got = tokio::time::timeout(WAIT, self.tcp.read(&mut chunk))
                .await
                .expect("frame in time")
                .expect("read");
            assert!(got > 0, "connection ended");
            self.buf.extend_from_slice(&chunk[..got]);
        }
    }

    async fn frame(&mut self) -> WireFrame {
        self.fill(2).await;
        let (b0, b1) = (self.buf[0], self.buf[1]);
        assert_eq!(b1 & 0x80, 0, "server frames are unmasked");
        let (ext, len) = match b1 & 0x7f {
            126 => {
                self.fill(4).await;
                (2, u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize)
            }
            127 => {
                self.fill(10).await;
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.buf[2..10]);
                (8, u64::from_be_bytes(b) as usize)
            }
            n => (0, n as usize),
        };
        self.fill(2 + ext + len).await;
        let payload = self.buf[2 + ext..2 + ext + len].to_vec();
        self.buf.drain(..2 + ext + len);
        WireFrame {
            fin: b0 & 0x80 != 0,
            rsv1: b0 & 0x40 != 0,
            opcode: b0 & 0x0f,
            payload,
        }
    }

    /// The next text message (pings skipped): whether it came compressed, and its text.
    async fn message(&mut self) -> (bool, String) {
        loop {
            let f = self.frame().await;
            match f.opcode {
                9 | 10 => continue,
                1 => {
                    assert!(f.fin, "submux sends whole messages");
                    let text = if f.rsv1 {
                        inflate(&f.payload)
                    } else {
                        f.payload
                    };
                    return (f.rsv1, String::from_utf8(text).expect("utf-8"));
                }
                8 => panic!("closed: {:?}", close_of(&f)),
                op => panic!("unexpected opcode {op}"),
            }
        }
    }

    async fn json(&mut self) -> (bool, Value) {
        let (rsv1, text) = self.message().await;
        (rsv1, serde_json::from_str(&text).expect("json"))
    }

    /// Read until the close frame: its code and reason.
    async fn close(&mut self) -> (u16, String) {
        loop {
            let f = self.frame().await;
            if f.opcode == 8 {
                return close_of(&f);
            }
        }
    }

    async fn send_raw(&mut self, fin: bool, rsv1: bool, opcode: u8, payload: &[u8]) {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut f = vec![(u8::from(fin) << 7) | (u8::from(rsv1) << 6) | opcode];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n <= 0xffff => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.tcp.write_all(&f).await.expect("send");
    }

    /// Compress with the client's running context (sync flush, tail stripped).
    fn compress(&mut self, text: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len() + 64);
        self.z
            .compress_vec(text, &mut out, FlushCompress::Sync)
            .expect("compress");
        assert!(out.ends_with(&TAIL));
        out.truncate(out.len() - 4);
        out
    }

    async fn send_compressed(&mut self, v: &Value) {
        let z = self.compress(v.to_string().as_bytes());
        self.send_raw(true, true, 1, &z).await;
    }
}

fn close_of(f: &WireFrame) -> (u16, String) {
    let code = u16::from_be_bytes([f.payload[0], f.payload[1]]);
    (code, String::from_utf8_lossy(&f.payload[2..]).into_owned())
}

/// Inflate one server message (each compressed alone: server_no_context_takeover).
fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut z = Decompress::new(false);
    let mut out = Vec::with_capacity(payload.len() * 8 + 1024);
    z.decompress_vec(&[payload, &TAIL].concat(), &mut out, FlushDecompress::Sync)
        .expect("inflate");
    out
}

fn eth_subscribe(id: u64, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "eth_subscribe", "params": params})
}

#[tokio::test]
async fn compressing_and_plain_clients_get_the_same_payloads_compressed_once() {
    let sim = sim().await;
    let mux = submux_with(server_cfg(), vec![deflate_route(vec![sim.url()])]).await;
    let offer = "permessage-deflate; client_max_window_bits";
    let mut z1 = RawWs::connect(&mux, "/eth", Some(offer)).await;
    let mut z2 = RawWs::connect(&mux, "/eth", Some("permessage-deflate")).await;
    let mut raw_plain = RawWs::connect(&mux, "/eth", None).await;
    let mut plain = Client::connect(&mux.ws_url("/eth")).await;
    let answer = "permessage-deflate; server_no_context_takeover";
    assert_eq!(z1.extensions.as_deref(), Some(answer));
    assert_eq!(z2.extensions.as_deref(), Some(answer));
    assert_eq!(raw_plain.extensions, None);

    let id = plain.subscribe(json!(["newHeads"])).await;
    for c in [&mut z1, &mut z2, &mut raw_plain] {
        c.send_raw(
            true,
            false,
            1,
            eth_subscribe(1, json!(["newHeads"])).to_string().as_bytes(),
        )
        .await;
        let (compressed, reply) = c.json().await;
        assert!(!compressed, "a reply under {MIN_BYTES} bytes goes plain");
        assert_eq!(reply["result"], json!(id), "one topic, one public id");
    }
    let m = mux.hub.routes()[0].metrics.clone();
    let before = m.deflate_compressions.load(Relaxed);
    const BLOCKS: u64 = 3;
    for _ in 0..BLOCKS {
        sim.emit_block();
        let want = plain.recv_text().await;
        assert!(want.len() >= MIN_BYTES, "{want}");
        for c in [&mut z1, &mut z2] {
            let (compressed, text) = c.message().await;
            assert!(compressed, "RSV1 set above the threshold");
            assert_eq!(text, want, "same payload as the plain client");
        }
        let (compressed, text) = raw_plain.message().await;
        assert!(!compressed);
        assert_eq!(text, want);
    }
    assert_eq!(
        m.deflate_compressions.load(Relaxed) - before,
        BLOCKS,
        "each notification compressed once, not once per client"
    );
    assert_eq!(m.deflated_frames_out.load(Relaxed), 2 * BLOCKS);
    let (p, w) = (
        m.deflated_plain_bytes.load(Relaxed),
        m.deflated_wire_bytes.load(Relaxed),
    );
    assert!(w * 10 < p * 8, "saved at least 20%: {p} -> {w}");
}

#[tokio::test]
async fn routes_without_deflate_and_bad_offers_get_the_plain_protocol() {
    let sim = sim().await;
    let mux = submux_with(
        server_cfg(),
        vec![fast_route(vec![sim.url()]), {
            let mut r = deflate_route(vec![sim.url()]);
            r.path = "/ethz".into();
            r
        }],
    )
    .await;
    let off = RawWs::connect(&mux, "/eth", Some("permessage-deflate")).await;
    assert_eq!(off.extensions, None, "route without permessage_deflate");
    let bad = "permessage-deflate; server_max_window_bits=7, permessage-deflate; foo=1";
    let declined = RawWs::connect(&mux, "/ethz", Some(bad)).await;
    assert_eq!(declined.extensions, None, "no offer it can honour");
    let second = "permessage-deflate; foo, permessage-deflate; client_no_context_takeover; server_max_window_bits=10";
    let mut z = RawWs::connect(&mux, "/ethz", Some(second)).await;
    assert_eq!(
        z.extensions.as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10")
    );
    // Agreed client_no_context_takeover: each request compressed alone is read.
    for id in 1..=3u64 {
        z.z.reset();
        let req = json!({"jsonrpc": "2.0", "id": id, "method": "eth_chainId", "params": [], "pad": "x".repeat(300)});
        z.send_compressed(&req).await;
        let (_, reply) = z.json().await;
        assert_eq!(reply["id"], json!(id));
        assert!(reply["result"].is_string(), "{reply}");
    }
    // server_max_window_bits=10: a message over 1 KiB goes uncompressed (a message
    // compressed alone may refer back as far as its own length).
    z.z.reset();
    z.send_compressed(&eth_subscribe(4, json!(["newHeads"])))
        .await;
    assert_eq!(z.json().await.1["id"], json!(4));
    sim.emit_block();
    let (compressed, head) = z.message().await;
    assert!(head.len() > 1024 && !compressed, "{} bytes", head.len());
}

#[tokio::test]
async fn compressed_requests_fragmented_or_not_get_correct_answers() {
    let sim = sim().await;
    let mux = submux_with(server_cfg(), vec![deflate_route(vec![sim.url()])]).await;
    let mut plain = Client::connect(&mux.ws_url("/eth")).await;
    let want = plain.call("eth_chainId", json!([])).await;
    let mut z = RawWs::connect(&mux, "/eth", Some("permessage-deflate")).await;
    assert!(z.extensions.is_some());
    // Context taken over from one message to the next: the later ones refer back.
    for id in 1..=3u64 {
        let req = json!({"jsonrpc": "2.0", "id": id, "method": "eth_chainId", "params": []});
        z.send_compressed(&req).await;
        let (_, reply) = z.json().await;
        assert_eq!(reply["id"], json!(id));
        assert_eq!(reply["result"], want["result"]);
    }
    // One compressed message in three fragments, a ping between them; then a plain one.
    let req = json!({"jsonrpc": "2.0", "id": 9, "method": "eth_chainId", "params": []});
    let data = z.compress(req.to_string().as_bytes());
    let (a, rest) = data.split_at(data.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    z.send_raw(false, true, 1, a).await;
    z.send_raw(true, false, 9, b"ping").await;
    z.send_raw(false, false, 0, b).await;
    z.send_raw(true, false, 0, c).await;
    let pong = z.frame().await;
    assert_eq!((pong.opcode, pong.payload.as_slice()), (10, &b"ping"[..]));
    let (_, reply) = z.json().await;
    assert_eq!(
        (reply["id"].clone(), reply["result"].clone()),
        (json!(9), want["result"].clone())
    );
    let plain_req = json!({"jsonrpc": "2.0", "id": 10, "method": "eth_chainId", "params": []});
    z.send_raw(true, false, 1, plain_req.to_string().as_bytes())
        .await;
    assert_eq!(z.json().await.1["id"], json!(10));
}

#[tokio::test]
async fn inflate_bomb_gets_1009_and_broken_data_1002() {
    let sim = sim().await;
    let mux = submux_with(server_cfg(), vec![deflate_route(vec![sim.url()])]).await;
    let mut z = RawWs::connect(&mux, "/eth", Some("permessage-deflate")).await;
    // 64 MiB of spaces inside a JSON string: ~64 KiB compressed, 64× max_frame_bytes.
    let mut bomb = br#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[],"x":""#.to_vec();
    bomb.resize(bomb.len() + (64 << 20), b' ');
    bomb.extend_from_slice(br#""}"#);
    let data = z.compress(&bomb);
    assert!(data.len() < 1 << 20, "{}", data.len());
    z.send_raw(true, true, 1, &data).await;
    let (code, reason) = z.close().await;
    assert_eq!(code, 1009, "{reason}");
    assert!(reason.starts_with("frame too large"), "{reason}");
    let m = mux.hub.routes()[0].metrics.clone();
    wait_for("the close counted", || {
        let i = CloseReason::ALL
            .iter()
            .position(|r| *r == CloseReason::TooBig);
        i.is_some_and(|i| m.closes[i].load(Relaxed) == 1)
    })
    .await;

    let mut broken = RawWs::connect(&mux, "/eth", Some("permessage-deflate")).await;
    broken.send_raw(true, true, 1, &[0xff; 16]).await;
    let (code, reason) = broken.close().await;
    assert_eq!(code, 1002, "{reason}");
}
