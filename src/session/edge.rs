//! The byte stream under a client WebSocket. tungstenite reads the client's frames from it
//! and writes its own control frames into it (pongs, pings, the close frame); data frames
//! bypass tungstenite: [`Edge::write_frames`] writes shared, pre-encoded frames with
//! vectored writes, after whatever control bytes tungstenite left, so bytes reach the wire
//! in the order they were written. One task owns the edge: nothing here is shared.
//!
//! With permessage-deflate agreed, reads go through an [`Inflater`]: tungstenite then sees
//! each compressed client message as one uncompressed frame.

use super::deflate::{Agreement, Inflater};
use bytes::{Buf, Bytes};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// At most this many buffers go into one vectored write (well under IOV_MAX = 1024).
const MAX_SLICES: usize = 64;
/// Control bytes held before a write must reach the socket first (tungstenite keeps at
/// most one pending pong, so this is never reached in practice).
const CONTROL_CAP: usize = 16 * 1024;
/// A control buffer grown past this by a burst is released once drained.
const CONTROL_KEEP: usize = 1024;

pub struct Edge<S> {
    io: S,
    /// Bytes tungstenite wrote that have not reached the socket yet.
    control: Vec<u8>,
    /// The front frame of the last write is partly on the wire: nothing else may be
    /// written until its remainder is (the stream would be corrupt).
    partial: bool,
    /// permessage-deflate, when agreed in the handshake.
    deflate: Option<Box<Deflating>>,
}

/// The deflate state of a compressing client.
struct Deflating {
    agreement: Agreement,
    inflater: Inflater,
    /// What one read from the socket takes, before the inflater.
    scratch: Box<[u8]>,
}

/// Bytes taken from the socket per read when inflating.
const SCRATCH: usize = 4 * 1024;

impl<S> Edge<S> {
    pub fn new(io: S) -> Edge<S> {
        Edge {
            io,
            control: Vec::new(),
            partial: false,
            deflate: None,
        }
    }

    /// An edge for a client that agreed on permessage-deflate; compressed messages inflate
    /// to at most `max_message` bytes.
    pub fn deflating(io: S, agreement: Agreement, max_message: usize) -> Edge<S> {
        let mut edge = Edge::new(io);
        edge.deflate = Some(Box::new(Deflating {
            agreement,
            inflater: Inflater::new(&agreement, max_message),
            scratch: vec![0; SCRATCH].into_boxed_slice(),
        }));
        edge
    }

    /// What the client agreed on, if it compresses.
    pub fn deflate(&self) -> Option<Agreement> {
        self.deflate.as_ref().map(|d| d.agreement)
    }
}

impl<S: AsyncWrite + Unpin> Edge<S> {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.control.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.control))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.control.drain(..n);
        }
        if self.control.capacity() > CONTROL_KEEP {
            self.control = Vec::new();
        }
        Poll::Ready(Ok(()))
    }

    /// Write every frame in `frames` (popping each once written; a partly written one is
    /// advanced), control bytes first, with as few system calls as the socket allows.
    /// Whether the front frame given to the last, unfinished [`Edge::write_frames`] is
    /// partly written.
    pub fn partial(&self) -> bool {
        self.partial
    }

    pub async fn write_frames(&mut self, frames: &mut VecDeque<Bytes>) -> io::Result<()> {
        poll_fn(|cx| self.poll_write_frames(cx, frames)).await
    }

    fn poll_write_frames(
        &mut self,
        cx: &mut Context<'_>,
        frames: &mut VecDeque<Bytes>,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        while !frames.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let mut k = 0;
            for f in frames.iter().take(MAX_SLICES) {
                slices[k] = IoSlice::new(f);
                k += 1;
            }
            let mut n = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..k]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            while n > 0 {
                let Some(front) = frames.front_mut() else {
                    break;
                };
                if n >= front.len() {
                    n -= front.len();
                    frames.pop_front();
                    self.partial = false;
                } else {
                    front.advance(n);
                    self.partial = true;
                    n = 0;
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Edge<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let Some(d) = this.deflate.as_deref_mut() else {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        };
        loop {
            let ready = d.inflater.output();
            if !ready.is_empty() {
                let n = ready.len().min(buf.remaining());
                buf.put_slice(&ready[..n]);
                d.inflater.consume(n);
                return Poll::Ready(Ok(()));
            }
            let mut raw = ReadBuf::new(&mut d.scratch);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut raw))?;
            if raw.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
            // The error travels to the session inside the io::Error (see ClientSocket::read).
            d.inflater.push(raw.filled()).map_err(io::Error::other)?;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Edge<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.control.len() >= CONTROL_CAP {
            ready!(self.poll_drain(cx))?;
        }
        self.control.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Control bytes go first, then every frame in order, across partial writes (a tiny
    /// duplex buffer forces many), and nothing is left queued.
    #[tokio::test]
    async fn control_bytes_then_frames_in_order_across_partial_writes() {
        let (a, mut b) = tokio::io::duplex(7);
        let mut edge = Edge::new(a);
        edge.write_all(b"PONG").await.expect("control");
        let mut frames: VecDeque<Bytes> = (0..200)
            .map(|i| Bytes::from(format!("frame-{i};")))
            .collect();
        let expected: Vec<u8> = b"PONG"
            .iter()
            .copied()
            .chain(frames.iter().flat_map(|f| f.to_vec()))
            .collect();
        let reader = tokio::spawn(async move {
            let mut got = vec![0; expected.len()];
            b.read_exact(&mut got).await.expect("read");
            assert_eq!(got, expected);
        });
        edge.write_frames(&mut frames).await.expect("write");
        assert!(frames.is_empty());
        reader.await.expect("reader");
    }
}
