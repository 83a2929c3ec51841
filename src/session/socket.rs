//! The client edge shared by every kind of session (JSON-RPC routes and LNbits channels):
//! one upgraded WebSocket with its write timeout, keepalive, metrics and a typed close.
//! Only the session task that owns it reads or writes the socket.
//!
//! Writes are fed and then flushed once per wake-up: a session feeds everything that is
//! ready (up to its batch) and flushes once. Data frames arrive already encoded
//! ([`WireText`], shared by every client of a topic) and are written with one vectored
//! write per flush through the [`Edge`] under the WebSocket, bypassing tungstenite (which
//! still reads, and writes its control frames); a flush also happens once the fed bytes
//! reach [`WRITE_BUDGET`]. A socket that accepts no write within `write_timeout` makes the
//! client slow ([`End::Slow`]).
//!
//! A client that agreed on permessage-deflate gets the compressed form of every frame of
//! at least the route's `deflate_min_bytes` (computed once per message and shared, see
//! [`super::deflate`]); its compressed input is inflated under tungstenite by the [`Edge`].

use super::deflate::{compress_frame, Agreement, DeflateError};
use super::edge::Edge;
use crate::hub::WireText;
use crate::telemetry::{CloseReason, RouteMetrics};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use tracing::debug;

/// Fed bytes that make a flush happen before the session's batch ends.
pub const WRITE_BUDGET: usize = 256 * 1024;
/// Queue slots kept after a flush; a burst's larger queue is released.
const QUEUE_KEEP: usize = 64;

/// Close code for a client that cannot keep up (RFC 6455 1008, policy violation).
pub const CLOSE_SLOW: u16 = 1008;
/// Close code on shutdown and for a client that stops answering pings (RFC 6455 1001,
/// going away).
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code for an oversized frame (RFC 6455 1009, message too big).
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close code for a broken compressed message (RFC 6455 1002, protocol error).
pub const CLOSE_PROTOCOL: u16 = 1002;

/// Why a session ends. Each reason has one close code (or none), one metric label and one
/// reason text, so no caller classifies strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The client closed or went away.
    ClientGone,
    /// A read or write failed: the connection is dropped without a close frame.
    Failed(String),
    /// The client fell behind or its socket stopped accepting writes: 1008.
    Slow(String),
    /// A frame over the size limit: 1009.
    TooBig(String),
    /// A compressed message that cannot be read: 1002.
    Protocol(String),
    /// The client stopped answering pings: 1001.
    Idle,
    /// The server is shutting down: 1001.
    Shutdown,
    /// What the session served ended under it (a channel closed): 1001.
    Gone(&'static str),
}

impl End {
    /// The close frame to send, if any.
    pub fn close_frame(&self) -> Option<(u16, String)> {
        match self {
            End::ClientGone | End::Failed(_) => None,
            End::Slow(why) => Some((CLOSE_SLOW, format!("slow client: {why}"))),
            End::TooBig(why) => Some((CLOSE_TOO_BIG, format!("frame too large: {why}"))),
            End::Protocol(why) => Some((CLOSE_PROTOCOL, format!("protocol error: {why}"))),
            End::Idle => Some((CLOSE_GOING_AWAY, "client did not answer pings".into())),
            End::Shutdown => Some((CLOSE_GOING_AWAY, "server shutting down".into())),
            End::Gone(what) => Some((CLOSE_GOING_AWAY, (*what).into())),
        }
    }

    /// The `reason` label of `submux_client_closes_total`.
    pub fn metric(&self) -> CloseReason {
        match self {
            End::ClientGone => CloseReason::Client,
            End::Failed(_) | End::Protocol(_) => CloseReason::Error,
            End::Slow(_) => CloseReason::Slow,
            End::TooBig(_) => CloseReason::TooBig,
            End::Idle => CloseReason::Idle,
            End::Shutdown | End::Gone(_) => CloseReason::Shutdown,
        }
    }
}

/// What one read from the client gave.
pub enum Read {
    /// A data frame's text (a binary frame holding UTF-8 counts as text).
    Text(Utf8Bytes),
    /// A binary frame that is not UTF-8.
    NotUtf8,
    /// A ping or pong (pings are answered by tungstenite on the next flush).
    Control,
}

pub struct ClientSocket<S> {
    ws: WebSocketStream<Edge<S>>,
    /// Encoded frames fed and not yet written, and their bytes.
    out: VecDeque<Bytes>,
    out_bytes: usize,
    metrics: Arc<RouteMetrics>,
    write_timeout: Duration,
    idle_timeout: Duration,
    last_rx: Instant,
    /// permessage-deflate, when the client agreed on it.
    deflate: Option<Agreement>,
}

impl<S> ClientSocket<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Wrap an upgraded socket with the settings' write and idle timeouts; counts the
    /// session in `submux_sessions` until [`close`].
    ///
    /// [`close`]: ClientSocket::close
    pub fn new(
        ws: WebSocketStream<Edge<S>>,
        metrics: Arc<RouteMetrics>,
        settings: &crate::config::Settings,
    ) -> Self {
        RouteMetrics::add(&metrics.sessions, 1);
        ClientSocket {
            deflate: ws.get_ref().deflate(),
            ws,
            out: VecDeque::new(),
            out_bytes: 0,
            metrics,
            write_timeout: settings.write_timeout,
            idle_timeout: settings.client_idle_timeout,
            last_rx: Instant::now(),
        }
    }

    /// The next frame from the client; the end of the session if the socket closed or
    /// failed.
    pub async fn read(&mut self) -> Result<Read, End> {
        let msg = self.ws.next().await;
        self.last_rx = Instant::now();
        match msg {
            Some(Ok(Message::Text(t))) => Ok(Read::Text(t)),
            Some(Ok(Message::Binary(b))) => {
                Ok(Utf8Bytes::try_from(b).map_or(Read::NotUtf8, Read::Text))
            }
            Some(Ok(Message::Close(_))) | None => Err(End::ClientGone),
            Some(Ok(_)) => Ok(Read::Control),
            Some(Err(e)) => Err(read_error(e)),
        }
    }

    /// On every ping tick: a client silent for `idle_timeout` ends; otherwise ping it.
    pub async fn keepalive(&mut self) -> Result<(), End> {
        if self.last_rx.elapsed() >= self.idle_timeout {
            return Err(End::Idle);
        }
        self.feed_control(Message::Ping(Default::default())).await?;
        self.flush().await
    }

    /// Queue one encoded text frame (counted in `submux_frames_out_total`); written by the
    /// next [`flush`](ClientSocket::flush) at the latest.
    pub async fn feed(&mut self, frame: &WireText) -> Result<(), End> {
        let wire = self.encoded(frame);
        self.out_bytes += wire.len();
        self.out.push_back(wire);
        RouteMetrics::inc(&self.metrics.frames_out);
        if self.out_bytes >= WRITE_BUDGET {
            self.flush().await?;
        }
        Ok(())
    }

    /// The bytes this client gets for `frame`: its compressed form for a compressing client
    /// (when at least the threshold and smaller compressed), else the plain frame.
    fn encoded(&self, frame: &WireText) -> Bytes {
        let plain = frame.wire();
        if !self.deflate.is_some_and(|a| a.compresses(frame.len())) {
            return plain.clone();
        }
        let m = &self.metrics;
        let deflated = frame.deflated(|text| {
            RouteMetrics::inc(&m.deflate_compressions);
            compress_frame(text)
        });
        match deflated {
            Some(z) => {
                RouteMetrics::inc(&m.deflated_frames_out);
                m.deflated_plain_bytes
                    .fetch_add(plain.len() as u64, Relaxed);
                m.deflated_wire_bytes.fetch_add(z.len() as u64, Relaxed);
                z.clone()
            }
            None => plain.clone(),
        }
    }

    /// Encode and queue a frame of this client's own (a reply).
    pub async fn feed_text(&mut self, text: impl Into<WireText>) -> Result<(), End> {
        self.feed(&text.into()).await
    }

    /// Feed and flush one text frame.
    pub async fn write_text(&mut self, text: impl Into<WireText>) -> Result<(), End> {
        self.feed_text(text).await?;
        self.flush().await
    }

    async fn feed_control(&mut self, msg: Message) -> Result<(), End> {
        match tokio::time::timeout(self.write_timeout, self.ws.feed(msg)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(End::Failed(format!("write error: {e}"))),
            Err(_) => Err(self.slow("socket not writable within the write timeout")),
        }
    }

    /// Write what tungstenite holds (control frames), then every fed frame, in order.
    pub async fn flush(&mut self) -> Result<(), End> {
        let (ws, out) = (&mut self.ws, &mut self.out);
        let write = async {
            ws.flush().await.map_err(|e| e.to_string())?;
            ws.get_mut()
                .write_frames(out)
                .await
                .map_err(|e| e.to_string())
        };
        let r = tokio::time::timeout(self.write_timeout, write).await;
        self.out_bytes = self.out.iter().map(Bytes::len).sum();
        if self.out.capacity() > QUEUE_KEEP {
            self.out.shrink_to(QUEUE_KEEP);
        }
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(End::Failed(format!("write error: {e}"))),
            Err(_) => Err(self.slow("socket not writable within the write timeout")),
        }
    }

    /// The client is too slow: counted in `submux_slow_client_closes_total` here, once.
    pub fn slow(&self, why: &str) -> End {
        RouteMetrics::inc(&self.metrics.slow_client_closes);
        End::Slow(why.to_string())
    }

    /// End the session: count it by reason, send the close frame its reason calls for
    /// (within the write timeout), and stop counting the session.
    pub async fn close(mut self, end: End) {
        self.metrics.count_close(end.metric());
        match end.close_frame() {
            Some((code, reason)) => {
                debug!(code, %reason, "closing client");
                let frame = CloseFrame {
                    code: CloseCode::from(code),
                    reason: reason.into(),
                };
                // Frames not yet begun are dropped; one already partly on the wire must be
                // finished first, or the close frame would land inside it.
                if self.ws.get_ref().partial() {
                    self.out.truncate(1);
                } else {
                    self.out.clear();
                }
                let (ws, out) = (&mut self.ws, &mut self.out);
                let _ = tokio::time::timeout(self.write_timeout, async {
                    ws.get_mut().write_frames(out).await?;
                    ws.send(Message::Close(Some(frame)))
                        .await
                        .map_err(std::io::Error::other)
                })
                .await;
            }
            None => debug!(?end, "client gone"),
        }
        RouteMetrics::add(&self.metrics.sessions, -1);
    }
}

/// How a failed read ends the session: an oversized message (tungstenite's limit, or an
/// [`Edge`] inflating past it) 1009, a broken compressed message 1002, else no close frame.
fn read_error(e: WsError) -> End {
    let deflate = match &e {
        WsError::Capacity(c) => return End::TooBig(c.to_string()),
        WsError::Io(io) => io.get_ref().and_then(|i| i.downcast_ref::<DeflateError>()),
        _ => None,
    };
    match deflate {
        Some(d @ DeflateError::TooBig { .. }) => End::TooBig(d.to_string()),
        Some(d) => End::Protocol(d.to_string()),
        None => End::Failed(format!("read error: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_end_has_one_code_reason_and_label() {
        let cases = [
            (End::ClientGone, None, CloseReason::Client),
            (End::Failed("x".into()), None, CloseReason::Error),
            (
                End::Slow("behind".into()),
                Some(CLOSE_SLOW),
                CloseReason::Slow,
            ),
            (
                End::TooBig("big".into()),
                Some(CLOSE_TOO_BIG),
                CloseReason::TooBig,
            ),
            (
                End::Protocol("bad".into()),
                Some(CLOSE_PROTOCOL),
                CloseReason::Error,
            ),
            (End::Idle, Some(CLOSE_GOING_AWAY), CloseReason::Idle),
            (End::Shutdown, Some(CLOSE_GOING_AWAY), CloseReason::Shutdown),
            (
                End::Gone("channel closed"),
                Some(CLOSE_GOING_AWAY),
                CloseReason::Shutdown,
            ),
        ];
        for (end, code, label) in cases {
            assert_eq!(end.close_frame().map(|(c, _)| c), code, "{end:?}");
            assert_eq!(end.metric(), label, "{end:?}");
        }
        assert_eq!(
            End::Slow("fell 3 behind".into()).close_frame().map(|f| f.1),
            Some("slow client: fell 3 behind".to_string())
        );
        assert_eq!(
            End::Idle.close_frame().map(|f| f.1),
            Some("client did not answer pings".to_string())
        );
    }
}
