//! permessage-deflate (RFC 7692) for client sockets, compressed once per message.
//!
//! - **Negotiation** ([`negotiate`]): pure, from the client's `Sec-WebSocket-Extensions`
//!   offers to an [`Agreement`] and the response header. submux always answers
//!   `server_no_context_takeover`, so every message it sends is compressed on its own.
//! - **Sending** ([`compress_frame`]): because each message is compressed alone, its
//!   compressed frame is the same bytes for every compressing client: it is computed once
//!   per message (cached in the [`WireText`](crate::hub::WireText)) and shared.
//! - **Receiving** ([`Inflater`]): a sans-IO transcoder under tungstenite (which knows no
//!   extensions and refuses RSV1 frames). It passes control frames and uncompressed data
//!   frames through untouched, and turns each compressed message (all its fragments) into
//!   one uncompressed frame, masked with a zero key, with a cap on the inflated size.

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::cell::RefCell;

/// The extension token.
const EXTENSION: &str = "permessage-deflate";
/// What ends a sync-flushed deflate stream, stripped on send, appended on receive (§7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// Compression level: 1 (fastest) keeps most of the gain on JSON for a fraction of the CPU
/// of the default level (see `tests::measure_fixture_savings`).
const LEVEL: u32 = 1;
/// Inflated bytes produced per step (bounds the overshoot past the cap).
const CHUNK: usize = 16 * 1024;

pub use crate::config::DeflateSettings;

/// What one client and submux agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreement {
    /// The client resets its compression context after every message: so does our
    /// inflater.
    pub client_no_context_takeover: bool,
    /// The client limited our window (`server_max_window_bits`). A message compressed on
    /// its own never refers back further than its own length, so messages up to
    /// 2^bits bytes are compressed and longer ones go uncompressed.
    pub server_max_window_bits: Option<u8>,
    /// The route's threshold.
    pub min_bytes: usize,
}

impl Agreement {
    /// Whether a message of `len` bytes goes compressed to this client.
    pub fn compresses(&self, len: usize) -> bool {
        let window = self.server_max_window_bits.map_or(usize::MAX, |b| 1 << b);
        len >= self.min_bytes && len <= window
    }
}

/// Pick the first `permessage-deflate` offer submux can honour from the values of the
/// client's `Sec-WebSocket-Extensions` headers; `None` answers without the extension.
/// Returns the agreement and the response header value.
pub fn negotiate<'a>(
    offers: impl IntoIterator<Item = &'a str>,
    settings: DeflateSettings,
) -> Option<(Agreement, String)> {
    offers
        .into_iter()
        .flat_map(|h| h.split(','))
        .find_map(|offer| accept(offer, settings))
}

/// One offer (`permessage-deflate; param[=value]; …`): accepted, or `None` if it is
/// another extension or has a parameter submux cannot honour (RFC 7692 §7.1: unknown
/// parameters, duplicates, bad values decline the offer).
fn accept(offer: &str, settings: DeflateSettings) -> Option<(Agreement, String)> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case(EXTENSION) {
        return None;
    }
    let (mut server_nct, mut client_nct) = (false, false);
    let (mut server_bits, mut client_bits) = (None, false);
    for p in parts {
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (p, None),
        };
        match (name.to_ascii_lowercase().as_str(), value) {
            ("server_no_context_takeover", None) if !server_nct => server_nct = true,
            ("client_no_context_takeover", None) if !client_nct => client_nct = true,
            ("server_max_window_bits", Some(v)) if server_bits.is_none() => {
                server_bits = Some(window_bits(v)?)
            }
            ("client_max_window_bits", v) if !client_bits => {
                if let Some(v) = v {
                    window_bits(v)?;
                }
                client_bits = true;
            }
            _ => return None,
        }
    }
    let mut response = format!("{EXTENSION}; server_no_context_takeover");
    if client_nct {
        response.push_str("; client_no_context_takeover");
    }
    if let Some(b) = server_bits {
        response.push_str(&format!("; server_max_window_bits={b}"));
    }
    // client_max_window_bits is a hint we need not answer: the inflater's 32 KiB window
    // reads whatever window the client uses.
    let agreement = Agreement {
        client_no_context_takeover: client_nct,
        server_max_window_bits: server_bits,
        min_bytes: settings.min_bytes,
    };
    Some((agreement, response))
}

/// A window size parameter: 8 to 15, decimal without a leading zero.
fn window_bits(v: &str) -> Option<u8> {
    if v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok().filter(|b| (8..=15).contains(b))
}

thread_local! {
    /// One compressor per thread, reset per message (its state is large to allocate).
    static COMPRESS: RefCell<Option<Compress>> = const { RefCell::new(None) };
}

/// Compress one text message (alone, no context) into a complete, final, unmasked text
/// frame with RSV1 set; `None` when compressing would not make it smaller.
pub fn compress_frame(text: &[u8]) -> Option<Bytes> {
    let mut payload = COMPRESS.with(|c| {
        let mut c = c.borrow_mut();
        let z = c.get_or_insert_with(|| Compress::new(Compression::new(LEVEL), false));
        z.reset();
        deflate_sync(z, text)
    })?;
    if !payload.ends_with(&TAIL) {
        return None;
    }
    payload.truncate(payload.len() - TAIL.len());
    let len = payload.len();
    if len >= text.len() {
        return None;
    }
    // FIN | RSV1 | text opcode, then the length (unmasked, RFC 6455 §5.2).
    let mut frame = Vec::with_capacity(len + 10);
    frame.push(0x80 | 0x40 | 0x1);
    push_len(&mut frame, len as u64, false);
    frame.extend_from_slice(&payload);
    Some(Bytes::from(frame))
}

/// Deflate `input` with a sync flush (the stream then ends with [`TAIL`]).
fn deflate_sync(z: &mut Compress, input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() / 2 + 64);
    let start = z.total_in();
    loop {
        let done = (z.total_in() - start) as usize;
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(64));
        }
        let before = z.total_out();
        z.compress_vec(&input[done..], &mut out, FlushCompress::Sync)
            .ok()?;
        let all_in = (z.total_in() - start) as usize == input.len();
        // Finished when everything went in and the flush left room to spare.
        if all_in && out.len() < out.capacity() {
            return Some(out);
        }
        if z.total_out() == before && !all_in && out.len() < out.capacity() {
            return None;
        }
    }
}

/// The second header byte and the extended length (RFC 6455 §5.2).
fn push_len(out: &mut Vec<u8>, len: u64, masked: bool) {
    let m = if masked { 0x80 } else { 0 };
    if len < 126 {
        out.push(m | len as u8);
    } else if len <= u64::from(u16::MAX) {
        out.push(m | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
}

/// Why a client's input cannot be read; the session closes with the matching code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeflateError {
    /// The client's fault: 1009.
    #[error("a compressed message inflates past {max} bytes")]
    TooBig { max: usize },
    /// The client's fault: 1002.
    #[error("{0}")]
    Protocol(&'static str),
    /// The client's fault: 1002.
    #[error("bad compressed data: {0}")]
    Corrupt(String),
}

/// Where the transcoder is in the client's byte stream.
#[derive(Debug, Clone, Copy)]
enum At {
    /// Reading a frame header (its bytes so far are in `head`).
    Header,
    /// Passing `left` payload bytes through untouched.
    Plain { left: u64 },
    /// Unmasking and inflating `left` payload bytes of a compressed message's frame.
    Deflated {
        left: u64,
        mask: [u8; 4],
        offset: usize,
        last: bool,
    },
}

/// The fragmented data message in progress, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Message {
    None,
    Plain,
    /// A compressed message; its first frame's opcode.
    Deflated(u8),
}

/// The read side of a compressing client: client bytes in, bytes for tungstenite out.
pub struct Inflater {
    /// Cap on a message's inflated (and compressed) size.
    max: usize,
    no_context_takeover: bool,
    at: At,
    message: Message,
    head: Vec<u8>,
    /// Bytes ready for tungstenite, from `out_pos`.
    out: Vec<u8>,
    out_pos: usize,
    /// The inflated message so far, and its compressed size.
    inflated: Vec<u8>,
    compressed: usize,
    inflate: Option<Box<Decompress>>,
}

impl Inflater {
    pub fn new(agreement: &Agreement, max: usize) -> Inflater {
        Inflater {
            max,
            no_context_takeover: agreement.client_no_context_takeover,
            at: At::Header,
            message: Message::None,
            head: Vec::with_capacity(14),
            out: Vec::new(),
            out_pos: 0,
            inflated: Vec::new(),
            compressed: 0,
            inflate: None,
        }
    }

    /// Bytes ready for tungstenite.
    pub fn output(&self) -> &[u8] {
        &self.out[self.out_pos..]
    }

    /// `n` bytes of [`output`](Inflater::output) were handed on.
    pub fn consume(&mut self, n: usize) {
        self.out_pos = (self.out_pos + n).min(self.out.len());
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
            if self.out.capacity() > 64 * 1024 {
                self.out = Vec::new();
            }
        }
    }

    /// Take bytes read from the client.
    pub fn push(&mut self, mut input: &[u8]) -> Result<(), DeflateError> {
        while !input.is_empty() {
            match self.at {
                At::Header => {
                    let need = header_len(&self.head).saturating_sub(self.head.len());
                    let take = need.min(input.len());
                    self.head.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if header_len(&self.head) == self.head.len() {
                        self.on_header()?;
                    }
                }
                At::Plain { left } => {
                    let take = (left.min(input.len() as u64)) as usize;
                    self.out.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    self.at = At::Plain {
                        left: left - take as u64,
                    };
                    if left == take as u64 {
                        self.at = At::Header;
                    }
                }
                At::Deflated {
                    left,
                    mask,
                    offset,
                    last,
                } => {
                    let take = (left.min(input.len() as u64)) as usize;
                    let mut chunk = input[..take].to_vec();
                    for (i, b) in chunk.iter_mut().enumerate() {
                        *b ^= mask[(offset + i) % 4];
                    }
                    input = &input[take..];
                    self.inflate_some(&chunk)?;
                    let left = left - take as u64;
                    self.at = At::Deflated {
                        left,
                        mask,
                        offset: offset + take,
                        last,
                    };
                    if left == 0 {
                        self.end_frame(last)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// A whole header is in `head`: decide what its frame is.
    fn on_header(&mut self) -> Result<(), DeflateError> {
        let h = std::mem::take(&mut self.head);
        let (fin, rsv1, opcode) = (h[0] & 0x80 != 0, h[0] & 0x40 != 0, h[0] & 0x0f);
        let masked = h[1] & 0x80 != 0;
        let len = payload_len(&h);
        let control = opcode >= 8;
        let deflated = match (control, opcode, self.message) {
            (true, ..) | (false, 0, Message::Plain | Message::None) if rsv1 => {
                return Err(DeflateError::Protocol(
                    "RSV1 set on a control or continuation frame",
                ))
            }
            (true, ..) => false,
            (false, 0, Message::Deflated(_)) if rsv1 => {
                return Err(DeflateError::Protocol("RSV1 set on a continuation frame"))
            }
            (false, 0, Message::Deflated(_)) => true,
            (false, 0, _) => false,
            (false, _, Message::Deflated(_)) => {
                return Err(DeflateError::Protocol(
                    "a new data frame inside a fragmented message",
                ))
            }
            (false, 1 | 2, Message::None) if rsv1 => {
                self.message = Message::Deflated(opcode);
                self.compressed = 0;
                true
            }
            (false, _, _) => false,
        };
        if deflated {
            if h[0] & 0x30 != 0 {
                return Err(DeflateError::Protocol(
                    "RSV2 or RSV3 set without an extension",
                ));
            }
            if !masked {
                return Err(DeflateError::Protocol("an unmasked client frame"));
            }
            self.compressed = self.compressed.saturating_add(len as usize);
            if self.compressed > self.max {
                return Err(DeflateError::TooBig { max: self.max });
            }
            let mask = [
                h[h.len() - 4],
                h[h.len() - 3],
                h[h.len() - 2],
                h[h.len() - 1],
            ];
            self.at = At::Deflated {
                left: len,
                mask,
                offset: 0,
                last: fin,
            };
            if len == 0 {
                self.end_frame(fin)?;
            }
        } else {
            if !control && opcode != 0 || opcode == 0 && self.message == Message::Plain {
                self.message = if fin { Message::None } else { Message::Plain };
            }
            self.out.extend_from_slice(&h);
            self.at = if len == 0 {
                At::Header
            } else {
                At::Plain { left: len }
            };
        }
        self.head = h;
        self.head.clear();
        Ok(())
    }

    /// Inflate some of a compressed message, within the cap.
    fn inflate_some(&mut self, mut input: &[u8]) -> Result<(), DeflateError> {
        let z = self
            .inflate
            .get_or_insert_with(|| Box::new(Decompress::new(false)));
        loop {
            if self.inflated.capacity() - self.inflated.len() < CHUNK / 4 {
                self.inflated.reserve(CHUNK);
            }
            let spare = self.inflated.capacity() - self.inflated.len();
            let (in0, out0) = (z.total_in(), z.total_out());
            let status = z
                .decompress_vec(input, &mut self.inflated, FlushDecompress::None)
                .map_err(|e| DeflateError::Corrupt(e.to_string()))?;
            let used = (z.total_in() - in0) as usize;
            let produced = (z.total_out() - out0) as usize;
            input = &input[used..];
            if self.inflated.len() > self.max {
                return Err(DeflateError::TooBig { max: self.max });
            }
            if status == Status::StreamEnd {
                // A final block (BFINAL) ends this deflate stream; what follows starts anew.
                z.reset(false);
            }
            if input.is_empty() && produced < spare {
                return Ok(());
            }
            if used == 0 && produced == 0 && status != Status::StreamEnd {
                return match input.is_empty() {
                    true => Ok(()),
                    false => Err(DeflateError::Corrupt("no progress".into())),
                };
            }
        }
    }

    /// A compressed message's frame ended; on the last one, emit the message.
    fn end_frame(&mut self, last: bool) -> Result<(), DeflateError> {
        self.at = At::Header;
        if !last {
            return Ok(());
        }
        self.inflate_some(&TAIL)?;
        let Message::Deflated(opcode) = self.message else {
            return Err(DeflateError::Protocol("compressed frame outside a message"));
        };
        // FIN, the message's opcode, RSV clear; masked with a zero key (payload unchanged).
        self.out.push(0x80 | opcode);
        push_len(&mut self.out, self.inflated.len() as u64, true);
        self.out.extend_from_slice(&[0; 4]);
        self.out.extend_from_slice(&self.inflated);
        self.inflated.clear();
        if self.inflated.capacity() > 64 * 1024 {
            self.inflated = Vec::new();
        }
        self.message = Message::None;
        if self.no_context_takeover {
            // Dropped rather than reset: an idle client then holds no inflate state.
            self.inflate = None;
        }
        Ok(())
    }
}

/// The full length of the header whose first bytes are `head` (2 until they are known).
fn header_len(head: &[u8]) -> usize {
    let Some(&b) = head.get(1) else {
        return 2;
    };
    let ext = match b & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + if b & 0x80 != 0 { 4 } else { 0 }
}

/// The payload length of a complete header.
fn payload_len(h: &[u8]) -> u64 {
    match h[1] & 0x7f {
        126 => u64::from(u16::from_be_bytes([h[2], h[3]])),
        127 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[2..10]);
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::WireText;
    use std::io::{Cursor, Read, Write};
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocket, WebSocketConfig};
    use tokio_tungstenite::tungstenite::Message;

    const SETTINGS: DeflateSettings = DeflateSettings { min_bytes: 100 };

    fn offer(headers: &[&str]) -> Option<String> {
        negotiate(headers.iter().copied(), SETTINGS).map(|(_, r)| r)
    }

    #[test]
    fn negotiation_table() {
        let base = "permessage-deflate; server_no_context_takeover";
        let cases: &[(&[&str], Option<String>)] = &[
            (&[], None),
            (&["x-webkit-deflate-frame"], None),
            (&["permessage-deflate"], Some(base.into())),
            (&["Permessage-Deflate"], Some(base.into())),
            // What browsers, Node's ws and Python's websockets offer.
            (
                &["permessage-deflate; client_max_window_bits"],
                Some(base.into()),
            ),
            (
                &["permessage-deflate; client_max_window_bits=10"],
                Some(base.into()),
            ),
            (
                &["permessage-deflate; server_no_context_takeover"],
                Some(base.into()),
            ),
            (
                &["permessage-deflate; client_no_context_takeover"],
                Some(format!("{base}; client_no_context_takeover")),
            ),
            (
                &["permessage-deflate; server_max_window_bits=10"],
                Some(format!("{base}; server_max_window_bits=10")),
            ),
            (
                &["permessage-deflate; server_max_window_bits=\"12\""],
                Some(format!("{base}; server_max_window_bits=12")),
            ),
            // Bad or unknown parameters decline that offer; the next one is taken.
            (&["permessage-deflate; server_max_window_bits"], None),
            (&["permessage-deflate; server_max_window_bits=7"], None),
            (&["permessage-deflate; server_max_window_bits=16"], None),
            (&["permessage-deflate; server_max_window_bits=010"], None),
            (&["permessage-deflate; client_max_window_bits=x"], None),
            (&["permessage-deflate; server_no_context_takeover=1"], None),
            (&["permessage-deflate; mystery"], None),
            (
                &["permessage-deflate; client_no_context_takeover; client_no_context_takeover"],
                None,
            ),
            (
                &["permessage-deflate; mystery, permessage-deflate; client_no_context_takeover"],
                Some(format!("{base}; client_no_context_takeover")),
            ),
            (
                &[
                    "foo",
                    "permessage-deflate; server_max_window_bits=99",
                    "permessage-deflate",
                ],
                Some(base.into()),
            ),
        ];
        for (headers, want) in cases {
            assert_eq!(&offer(headers), want, "{headers:?}");
        }
        let (a, _) = negotiate(
            ["permessage-deflate; client_no_context_takeover; server_max_window_bits=9"],
            SETTINGS,
        )
        .unwrap();
        assert!(a.client_no_context_takeover);
        assert_eq!(a.server_max_window_bits, Some(9));
    }

    #[test]
    fn threshold_and_window_decide_per_message() {
        let a = Agreement {
            client_no_context_takeover: false,
            server_max_window_bits: None,
            min_bytes: 100,
        };
        assert!(!a.compresses(99));
        assert!(a.compresses(100) && a.compresses(10 << 20));
        let w = Agreement {
            server_max_window_bits: Some(9),
            ..a
        };
        assert!(w.compresses(512) && !w.compresses(513));
    }

    fn sample(n: usize) -> String {
        let mut s = String::new();
        let mut i = 0u64;
        while s.len() < n {
            s.push_str(&format!(
                "{{\"number\":\"0x{i:x}\",\"hash\":\"0x{:064x}\"}},",
                i * 7919
            ));
            i += 1;
        }
        s.truncate(n);
        s
    }

    /// Split a server frame into (first byte, payload).
    fn split(frame: &[u8]) -> (u8, &[u8]) {
        let hl = header_len(frame);
        assert_eq!(payload_len(frame) as usize, frame.len() - hl);
        (frame[0], &frame[hl..])
    }

    fn inflate_raw(payload: &[u8]) -> Vec<u8> {
        let mut z = Decompress::new(false);
        let mut out = Vec::with_capacity(1 << 20);
        let input = [payload, &TAIL].concat();
        z.decompress_vec(&input, &mut out, FlushDecompress::Sync)
            .unwrap();
        out
    }

    #[test]
    fn compressed_frames_round_trip_through_flate2() {
        for n in [200, 1_000, 70_000, 300_000] {
            let text = sample(n);
            let frame = compress_frame(text.as_bytes()).unwrap();
            let (b0, payload) = split(&frame);
            assert_eq!(b0, 0xc1, "FIN | RSV1 | text");
            assert!(payload.len() < n / 2, "{n}: {}", payload.len());
            assert_eq!(inflate_raw(payload), text.as_bytes());
        }
        // Incompressible or tiny: not worth it.
        assert!(compress_frame(b"{}").is_none());
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(compress_frame(&noise).is_none());
    }

    /// An independent decoder: CPython's zlib (raw deflate, wbits -15).
    #[test]
    fn compressed_frames_inflate_with_python_zlib() {
        let text = sample(5_000);
        let frame = compress_frame(text.as_bytes()).unwrap();
        let (_, payload) = split(&frame);
        let mut child = std::process::Command::new("python3")
            .args([
                "-c",
                "import sys, zlib; d = zlib.decompressobj(-15); \
                 sys.stdout.buffer.write(d.decompress(sys.stdin.buffer.read() + b'\\x00\\x00\\xff\\xff'))",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 (needed by this test)");
        child.stdin.take().unwrap().write_all(payload).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, text.as_bytes());
    }

    /// A client frame: masked with `mask`, RSV1 as given.
    fn client_frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut f = vec![(if fin { 0x80 } else { 0 }) | (if rsv1 { 0x40 } else { 0 }) | opcode];
        push_len(&mut f, payload.len() as u64, true);
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    /// Raw deflate of each message with one compressor, as a client with context takeover
    /// (or a fresh one per message).
    fn client_deflate(messages: &[&[u8]], takeover: bool) -> Vec<Vec<u8>> {
        let mut z = Compress::new(Compression::default(), false);
        messages
            .iter()
            .map(|m| {
                if !takeover {
                    z.reset();
                }
                let mut out = deflate_sync(&mut z, m).unwrap();
                assert!(out.ends_with(&TAIL));
                out.truncate(out.len() - 4);
                out
            })
            .collect()
    }

    /// A stream tungstenite reads from (what the inflater produced) and writes into.
    struct Pipe(Cursor<Vec<u8>>, Vec<u8>);
    impl Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.0.read(buf)
        }
    }
    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.1.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What tungstenite (as the server) reads from the inflater's output.
    fn tungstenite_reads(bytes: Vec<u8>) -> Vec<Message> {
        let cfg = WebSocketConfig::default().max_message_size(Some(1 << 20));
        let mut ws = WebSocket::from_raw_socket(
            Pipe(Cursor::new(bytes), Vec::new()),
            Role::Server,
            Some(cfg),
        );
        let mut got = Vec::new();
        loop {
            match ws.read() {
                Ok(m) => got.push(m),
                // The end of the bytes.
                Err(tokio_tungstenite::tungstenite::Error::Protocol(
                    ProtocolError::ResetWithoutClosingHandshake,
                )) => return got,
                Err(e) => panic!("tungstenite refused the output: {e}"),
            }
        }
    }

    fn agreement(no_takeover: bool) -> Agreement {
        Agreement {
            client_no_context_takeover: no_takeover,
            server_max_window_bits: None,
            min_bytes: 0,
        }
    }

    /// Feed `input` in pieces of `step` bytes; the whole output.
    fn transcode(inf: &mut Inflater, input: &[u8], step: usize) -> Result<Vec<u8>, DeflateError> {
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            inf.push(piece)?;
            out.extend_from_slice(inf.output());
            let n = inf.output().len();
            inf.consume(n);
        }
        Ok(out)
    }

    #[test]
    fn compressed_messages_become_plain_frames_with_context_takeover() {
        let (a, b) = (sample(3_000), sample(2_000));
        let z = client_deflate(&[a.as_bytes(), b.as_bytes()], true);
        let mut input = client_frame(true, true, 1, &z[0], [1, 2, 3, 4]);
        input.extend(client_frame(true, true, 1, &z[1], [9, 8, 7, 6]));
        for step in [1, 7, 4096, input.len()] {
            let mut inf = Inflater::new(&agreement(false), 1 << 20);
            let out = transcode(&mut inf, &input, step).unwrap();
            assert_eq!(
                tungstenite_reads(out),
                vec![Message::text(a.clone()), Message::text(b.clone())],
                "step {step}"
            );
        }
        // The second message refers back into the first: a reset context cannot read it.
        let mut inf = Inflater::new(&agreement(true), 1 << 20);
        assert!(transcode(&mut inf, &input, 4096).map_or(true, |out| {
            tungstenite_reads(out).get(1) != Some(&Message::text(b.clone()))
        }));
    }

    #[test]
    fn no_context_takeover_messages_each_inflate_alone() {
        let msgs = [sample(500), sample(800)];
        let z = client_deflate(&[msgs[0].as_bytes(), msgs[1].as_bytes()], false);
        let input: Vec<u8> = z
            .iter()
            .flat_map(|p| client_frame(true, true, 2, p, [5; 4]))
            .collect();
        let mut inf = Inflater::new(&agreement(true), 1 << 20);
        let out = transcode(&mut inf, &input, 100).unwrap();
        assert!(
            inf.inflate.is_none(),
            "no inflate state held between messages"
        );
        assert_eq!(
            tungstenite_reads(out),
            vec![
                Message::binary(msgs[0].clone()),
                Message::binary(msgs[1].clone())
            ]
        );
    }

    #[test]
    fn fragments_with_control_frames_between_and_plain_frames_untouched() {
        let text = sample(6_000);
        let z = &client_deflate(&[text.as_bytes()], true)[0];
        let (p1, rest) = z.split_at(z.len() / 3);
        let (p2, p3) = rest.split_at(rest.len() / 2);
        let ping = client_frame(true, false, 9, b"hi", [1, 1, 1, 1]);
        let plain = client_frame(true, false, 1, b"{\"plain\":true}", [3, 1, 4, 1]);
        let frag1 = client_frame(false, false, 1, b"{\"frag", [2, 7, 1, 8]);
        let frag2 = client_frame(true, false, 0, b"\":1}", [2, 7, 1, 8]);
        let mut input = plain.clone();
        input.extend(client_frame(false, true, 1, p1, [1, 2, 3, 4]));
        input.extend(&ping);
        input.extend(client_frame(false, false, 0, p2, [4, 3, 2, 1]));
        input.extend(client_frame(true, false, 0, p3, [0, 9, 0, 9]));
        input.extend(&frag1);
        input.extend(&ping);
        input.extend(&frag2);
        let mut inf = Inflater::new(&agreement(false), 1 << 20);
        let out = transcode(&mut inf, &input, 333).unwrap();
        // Uncompressed frames pass through byte for byte.
        assert!(out.starts_with(&plain));
        assert!(out.ends_with(&[frag1.clone(), ping.clone(), frag2.clone()].concat()));
        assert_eq!(
            tungstenite_reads(out),
            vec![
                Message::text("{\"plain\":true}"),
                Message::Ping("hi".into()),
                Message::text(text),
                Message::Ping("hi".into()),
                Message::text("{\"frag\":1}"),
            ]
        );
    }

    #[test]
    fn inflate_bomb_is_capped() {
        let bomb = vec![b' '; 50 << 20];
        let z = &client_deflate(&[&bomb], false)[0];
        assert!(z.len() < 100_000, "{}", z.len());
        let mut inf = Inflater::new(&agreement(false), 1 << 20);
        let err = transcode(&mut inf, &client_frame(true, true, 1, z, [7; 4]), 4096).unwrap_err();
        assert_eq!(err, DeflateError::TooBig { max: 1 << 20 });
        assert!(
            inf.inflated.capacity() <= 3 << 20,
            "{}",
            inf.inflated.capacity()
        );
    }

    #[test]
    fn protocol_errors() {
        let cases = [
            client_frame(true, true, 9, b"x", [1; 4]),
            [
                client_frame(false, true, 1, b"", [1; 4]),
                client_frame(true, true, 0, b"", [1; 4]),
            ]
            .concat(),
            [
                client_frame(false, true, 1, b"", [1; 4]),
                client_frame(true, false, 1, b"", [1; 4]),
            ]
            .concat(),
            vec![0xc1, 0x01, 0x00],
            client_frame(true, true, 1 | 0x20, b"x", [1; 4]),
        ];
        for input in cases {
            let mut inf = Inflater::new(&agreement(false), 1 << 20);
            assert!(
                matches!(inf.push(&input), Err(DeflateError::Protocol(_))),
                "{input:?}"
            );
        }
        let mut inf = Inflater::new(&agreement(false), 1 << 20);
        let garbage = client_frame(true, true, 1, &[0xff; 20], [1; 4]);
        assert!(matches!(inf.push(&garbage), Err(DeflateError::Corrupt(_))));
    }

    /// Bytes saved and compression CPU on recorded payloads, compact as nodes send them.
    /// `cargo test --lib measure_fixture_savings -- --nocapture` prints the table.
    #[test]
    fn measure_fixture_savings() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
        let cases = [
            ("ethereum newHeads", "ethereum/newHeads_notification.json"),
            ("ethereum logs", "ethereum/logs_notification.json"),
            (
                "xrpl transaction",
                "xrpl/transaction_validated_payment_api_v2.json",
            ),
            ("xrpl ledgerClosed", "xrpl/ledgerClosed.json"),
        ];
        const RUNS: u32 = 2_000;
        for (name, file) in cases {
            let text = std::fs::read_to_string(format!("{root}{file}")).unwrap();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let compact = v.to_string();
            let plain = WireText::new(&compact).wire().len();
            let frame = compress_frame(compact.as_bytes()).unwrap();
            let (_, payload) = split(&frame);
            assert_eq!(inflate_raw(payload), compact.as_bytes());
            let start = std::time::Instant::now();
            for _ in 0..RUNS {
                std::hint::black_box(compress_frame(std::hint::black_box(compact.as_bytes())));
            }
            let per = start.elapsed() / RUNS;
            let mut best = Compress::new(Compression::best(), false);
            let best_len = deflate_sync(&mut best, compact.as_bytes()).unwrap().len() - 4;
            println!(
                "{name:<18} {plain:>5} B frame -> {:>5} B compressed ({:>4.1}% saved; level 9: {best_len} B payload); {:>5.1} us to compress (level {LEVEL})",
                frame.len(),
                100.0 * (1.0 - frame.len() as f64 / plain as f64),
                per.as_secs_f64() * 1e6,
            );
            assert!(frame.len() * 10 < plain * 8, "{name}: at least 20% saved");
        }
        let mut z = Compress::new(Compression::new(LEVEL), false);
        let start = std::time::Instant::now();
        for _ in 0..RUNS {
            z.reset();
            std::hint::black_box(&mut z);
        }
        let per = start.elapsed() / RUNS;
        println!(
            "of which resetting the compressor between messages: {:.1} us",
            per.as_secs_f64() * 1e6
        );
    }
}
