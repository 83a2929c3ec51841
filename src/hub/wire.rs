//! A text message encoded once as a complete WebSocket frame. Server frames are not masked
//! (RFC 6455 §5.1), so the header and payload bytes of a notification are the same for
//! every client that receives it with the same id: the route encodes them once per topic,
//! and every session writes the same shared buffer (a reference count, no copy).
//!
//! The same holds for its permessage-deflate form: submux compresses every message on its
//! own (`server_no_context_takeover`), so the compressed frame is computed once, by the first
//! compressing session that writes it, and shared by the others.

use bytes::Bytes;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// One text frame, header and payload in one buffer, with the payload as text; a clone is
/// a reference count.
#[derive(Debug, Clone)]
pub struct WireText(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// The whole frame as written to a client socket.
    wire: Bytes,
    /// The payload: the same buffer from the end of the header.
    text: Utf8Bytes,
    /// The compressed frame (permessage-deflate), once a compressing client needed it;
    /// `None` inside when compressing does not make it smaller.
    deflated: OnceLock<Option<Bytes>>,
}

impl WireText {
    /// Encode `text` as a final, unmasked text frame.
    pub fn new(text: &str) -> WireText {
        let header = FrameHeader {
            is_final: true,
            opcode: OpCode::Data(Data::Text),
            mask: None,
            ..FrameHeader::default()
        };
        let len = text.len() as u64;
        let header_len = header.len(len);
        let mut buf = Vec::with_capacity(header_len + text.len());
        // Formatting into a Vec cannot fail; a failure would show as a short header below.
        let _ = header.format(len, &mut buf);
        buf.extend_from_slice(text.as_bytes());
        let wire = Bytes::from(buf);
        let payload = wire.slice(wire.len() - text.len()..);
        // Valid by construction (copied from a &str); checked once per frame, not per client.
        let text = Utf8Bytes::try_from(payload).unwrap_or_else(|_| Utf8Bytes::from(text));
        WireText(Arc::new(Inner {
            wire,
            text,
            deflated: OnceLock::new(),
        }))
    }

    /// The complete frame (header and payload).
    pub fn wire(&self) -> &Bytes {
        &self.0.wire
    }

    pub fn as_str(&self) -> &str {
        self.0.text.as_str()
    }

    /// The payload as tungstenite text (shares the buffer).
    pub fn text(&self) -> &Utf8Bytes {
        &self.0.text
    }

    /// The compressed frame: `compress` runs on the payload the first time any holder asks
    /// (once per message, whatever the number of clients); `None` when it declined.
    pub fn deflated(&self, compress: impl FnOnce(&[u8]) -> Option<Bytes>) -> Option<&Bytes> {
        self.0
            .deflated
            .get_or_init(|| compress(self.0.text.as_bytes()))
            .as_ref()
    }
}

impl Deref for WireText {
    type Target = str;
    fn deref(&self) -> &str {
        self.0.text.as_str()
    }
}

impl From<&str> for WireText {
    fn from(text: &str) -> WireText {
        WireText::new(text)
    }
}

impl From<String> for WireText {
    fn from(text: String) -> WireText {
        WireText::new(&text)
    }
}

impl From<Utf8Bytes> for WireText {
    fn from(text: Utf8Bytes) -> WireText {
        WireText::new(text.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::Message;

    /// The frame is byte for byte what tungstenite writes for the same text message, for
    /// each of the three length encodings.
    #[test]
    fn encodes_as_tungstenite_does() {
        for len in [0usize, 1, 125, 126, 127, 65_535, 65_536, 70_000] {
            let text: String = "é".repeat(len / 2) + &"x".repeat(len % 2);
            let ours = WireText::new(&text);
            let mut theirs = Vec::new();
            Frame::message(Bytes::from(text.clone()), OpCode::Data(Data::Text), true)
                .format(&mut theirs)
                .expect("format");
            assert_eq!(ours.wire().as_ref(), theirs.as_slice(), "len {len}");
            assert_eq!(ours.as_str(), text);
            assert_eq!(&*ours, text.as_str());
            let _ = Message::Text(ours.text().clone());
        }
    }

    /// Clones share one compressed frame, computed once.
    #[test]
    fn compressed_once_for_every_clone() {
        let frame = WireText::new(&"x".repeat(1000));
        let copy = frame.clone();
        let mut runs = 0;
        let a = frame
            .deflated(|t| {
                runs += 1;
                Some(Bytes::copy_from_slice(&t[..3]))
            })
            .cloned();
        let b = copy.deflated(|_| unreachable!("computed once")).cloned();
        assert_eq!(
            (runs, a.as_deref(), b.as_deref()),
            (1, Some(&b"xxx"[..]), Some(&b"xxx"[..]))
        );
    }
}
