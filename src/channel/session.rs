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
use crate::session::{CLOSE_GOING_AWAY, CLOSE_SLOW, CLOSE_TOO_BIG};
use crate::telemetry::{CloseReason, RouteMetrics};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// At most this many ready messages are written before one flush.
const WRITE_BATCH: usize = 64;

enum End {
    ClientGone,
    /// A read or write failed.
    Failed,
    Close(u16, String),
}

struct Client<S> {
    ws: WebSocketStream<S>,
    wrap: bool,
    metrics: Arc<RouteMetrics>,
    settings: Arc<Settings>,
}

/// Serve one client of a channel until it leaves, lags or the server stops.
pub async fn run<S>(
    ws: WebSocketStream<S>,
    joined: Joined,
    opts: SocketOptions,
    metrics: Arc<RouteMetrics>,
    settings: Arc<Settings>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    RouteMetrics::add(&metrics.sessions, 1);
    let mut c = Client {
        ws,
        wrap: opts.wrap,
        metrics: metrics.clone(),
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
    metrics.count_close(match &end {
        End::ClientGone => CloseReason::Client,
        End::Failed => CloseReason::Error,
        End::Close(CLOSE_SLOW, _) => CloseReason::Slow,
        End::Close(CLOSE_TOO_BIG, _) => CloseReason::TooBig,
        End::Close(_, r) if r.starts_with("client did not answer") => CloseReason::Idle,
        End::Close(..) => CloseReason::Shutdown,
    });
    if let End::Close(code, reason) = end {
        debug!(code, %reason, "closing channel client");
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(
            c.settings.write_timeout,
            c.ws.send(Message::Close(Some(frame))),
        )
        .await;
    }
    RouteMetrics::add(&metrics.sessions, -1);
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
        self.flush().await
    }

    async fn serve(
        &mut self,
        rx: &mut tokio::sync::broadcast::Receiver<Arc<Frame>>,
        shutdown: &CancellationToken,
    ) -> Result<std::convert::Infallible, End> {
        let mut ping = tokio::time::interval(self.settings.client_ping_interval);
        ping.reset();
        let mut last_rx = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    return Err(End::Close(CLOSE_GOING_AWAY, "server shutting down".into()));
                }
                msg = self.ws.next() => {
                    last_rx = Instant::now();
                    match msg {
                        Some(Ok(Message::Close(_))) | None => return Err(End::ClientGone),
                        // Text is accepted and never answered, as LNbits does.
                        Some(Ok(_)) => {}
                        Some(Err(WsError::Capacity(e))) => {
                            return Err(End::Close(CLOSE_TOO_BIG, format!("frame too large: {e}")));
                        }
                        Some(Err(e)) => {
                            debug!(error = %e, "channel client read error");
                            return Err(End::Failed);
                        }
                    }
                }
                r = rx.recv() => {
                    let first = self.received(r)?;
                    self.put(&first).await?;
                    for _ in 1..WRITE_BATCH {
                        match rx.try_recv() {
                            Ok(f) => self.put(&f).await?,
                            Err(TryRecvError::Lagged(n)) => return Err(self.lagged(n)),
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Closed) => return Err(closed()),
                        }
                    }
                    self.flush().await?;
                }
                _ = ping.tick() => {
                    if last_rx.elapsed() >= self.settings.client_idle_timeout {
                        return Err(End::Close(CLOSE_GOING_AWAY, "client did not answer pings".into()));
                    }
                    self.feed(Message::Ping(Default::default())).await?;
                    self.flush().await?;
                }
            }
        }
    }

    fn received(&self, r: Result<Arc<Frame>, RecvError>) -> Result<Arc<Frame>, End> {
        match r {
            Ok(f) => Ok(f),
            Err(RecvError::Lagged(n)) => Err(self.lagged(n)),
            Err(RecvError::Closed) => Err(closed()),
        }
    }

    fn lagged(&self, missed: u64) -> End {
        RouteMetrics::inc(&self.metrics.slow_client_closes);
        End::Close(
            CLOSE_SLOW,
            format!(
                "slow client: fell {missed} messages behind (queue holds {})",
                self.settings.client_queue_len
            ),
        )
    }

    async fn put(&mut self, f: &Frame) -> Result<(), End> {
        let text = if self.wrap { &f.wrapped } else { &f.text };
        self.feed(Message::Text(text.clone())).await?;
        RouteMetrics::inc(&self.metrics.frames_out);
        Ok(())
    }

    async fn feed(&mut self, m: Message) -> Result<(), End> {
        let t = self.settings.write_timeout;
        match tokio::time::timeout(t, self.ws.feed(m)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Failed),
            Err(_) => Err(self.unwritable()),
        }
    }

    async fn flush(&mut self) -> Result<(), End> {
        let t = self.settings.write_timeout;
        match tokio::time::timeout(t, self.ws.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Failed),
            Err(_) => Err(self.unwritable()),
        }
    }

    fn unwritable(&self) -> End {
        RouteMetrics::inc(&self.metrics.slow_client_closes);
        End::Close(
            CLOSE_SLOW,
            "slow client: socket not writable within the write timeout".into(),
        )
    }
}

fn closed() -> End {
    End::Close(CLOSE_GOING_AWAY, "channel closed".into())
}
