//! One client of a channel: write what it missed (`?since=`), then every message of the
//! channel as it comes; read and drop what the client sends (LNbits never answers it).
//! Only this task writes to its socket.
//!
//! Overflow policy: the channel's broadcast ring holds `client_queue_len` messages; a client
//! that falls further behind, or whose socket accepts no write within `write_timeout_ms`, is
//! closed with 1008 "slow client: …" and counted in `submux_slow_client_closes_total`.
//! Others never wait for it.

use super::{Frame, Joined};
use crate::config::Settings;
use crate::dialect::lnbits::SocketOptions;
use crate::session::socket::{ClientSocket, End, Read};
use crate::telemetry::RouteMetrics;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_util::sync::CancellationToken;

/// At most this many ready messages are written before one flush.
const WRITE_BATCH: usize = 64;

struct Client<S> {
    sock: ClientSocket<S>,
    wrap: bool,
    settings: Arc<Settings>,
}

/// Serve one client of a channel until it leaves, lags or the server stops.
pub async fn run<S>(
    ws: tokio_tungstenite::WebSocketStream<crate::session::edge::Edge<S>>,
    joined: Joined,
    opts: SocketOptions,
    metrics: Arc<RouteMetrics>,
    settings: Arc<Settings>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let sock = ClientSocket::new(ws, metrics, &settings);
    let mut c = Client {
        sock,
        wrap: opts.wrap,
        settings,
    };
    let Joined {
        mut rx,
        backlog,
        guard,
        ..
    } = joined;
    let end = match c.backlog(&backlog).await {
        Ok(()) => match c.serve(&mut rx, &shutdown).await {
            Err(end) => end,
            Ok(never) => match never {},
        },
        Err(end) => end,
    };
    drop(rx);
    drop(guard);
    c.sock.close(end).await;
}

impl<S> Client<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn backlog(&mut self, frames: &[Arc<Frame>]) -> Result<(), End> {
        if frames.is_empty() {
            return Ok(());
        }
        for f in frames {
            self.put(f).await?;
        }
        self.sock.flush().await
    }

    async fn serve(
        &mut self,
        rx: &mut tokio::sync::broadcast::Receiver<Arc<Frame>>,
        shutdown: &CancellationToken,
    ) -> Result<std::convert::Infallible, End> {
        let mut ping = tokio::time::interval(self.settings.client_ping_interval);
        ping.reset();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Err(End::Shutdown),
                // Text is accepted and never answered, as LNbits does.
                read = self.sock.read() => match read {
                    Ok(Read::Text(_) | Read::NotUtf8 | Read::Control) => {}
                    Err(end) => return Err(end),
                },
                r = rx.recv() => {
                    let first = self.received(r)?;
                    self.put(&first).await?;
                    for _ in 1..WRITE_BATCH {
                        match rx.try_recv() {
                            Ok(f) => self.put(&f).await?,
                            Err(TryRecvError::Lagged(n)) => return Err(self.lagged(n)),
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Closed) => return Err(End::Gone("channel closed")),
                        }
                    }
                    self.sock.flush().await?;
                }
                _ = ping.tick() => self.sock.keepalive().await?,
            }
        }
    }

    fn received(&self, r: Result<Arc<Frame>, RecvError>) -> Result<Arc<Frame>, End> {
        match r {
            Ok(f) => Ok(f),
            Err(RecvError::Lagged(n)) => Err(self.lagged(n)),
            Err(RecvError::Closed) => Err(End::Gone("channel closed")),
        }
    }

    fn lagged(&self, missed: u64) -> End {
        self.sock.slow(&format!(
            "fell {missed} messages behind (queue holds {})",
            self.settings.client_queue_len
        ))
    }

    async fn put(&mut self, f: &Frame) -> Result<(), End> {
        let text = if self.wrap { &f.wrapped } else { &f.text };
        self.sock.feed(text).await
    }
}
