//! Channel routes (`dialect = "lnbits"`): the URL path names a channel (`{path}/{item_id}`),
//! every text pushed to it reaches every client on it. Not JSON-RPC, so these routes bypass
//! the [`crate::dialect::Dialect`] trait and the topic table; protocol knowledge stays pure
//! in [`crate::dialect::lnbits`] and [`replay`].
//!
//! One actor per route ([`actor`]) owns every channel of the route: its broadcast sender,
//! replay buffer, client count and (proxy mode) upstream socket task. Sessions
//! ([`session`]), the HTTP front ([`http`]), upstream sockets ([`upstream`]) and the Redis
//! backplane ([`backplane`]) hold a [`ChannelRoute`] handle and send it commands.
//!
//! Modes: with `upstreams` (proxy) a channel with clients has one upstream WebSocket to
//! LNbits at `{upstream}/{item_id}` and pushes are forwarded to LNbits over HTTP; without
//! (hub) submux is the channel server, and a `[backplane]` makes several instances one.

pub mod actor;
pub mod backplane;
pub mod http;
pub mod replay;
pub mod session;
pub mod upstream;

use crate::config::{LnbitsSettings, RouteSettings};
use crate::dialect::lnbits::ItemId;
use crate::hub::WireText;
use crate::telemetry::RouteMetrics;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// One message of a channel, as every client of it gets it: verbatim, or wrapped with its
/// sequence number for clients that asked (`?seq=1`). Rendered once per message.
#[derive(Debug)]
pub struct Frame {
    pub seq: u64,
    /// Encoded once for every client of the channel (see [`WireText`]).
    pub text: WireText,
    /// The same message wrapped with its sequence number (`?seq=1` clients).
    pub wrapped: WireText,
}

impl Frame {
    pub fn new(seq: u64, text: Utf8Bytes) -> Frame {
        let wrapped = crate::dialect::lnbits::render_seq_frame(seq, &text).into();
        Frame {
            seq,
            text: text.into(),
            wrapped,
        }
    }
}

impl replay::ByteSize for Arc<Frame> {
    fn size(&self) -> usize {
        self.text.len() + self.wrapped.len() + 64
    }
}

/// Why a channel request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("limit exceeded: max {0} channels on this route")]
    Full(usize),
    #[error("server shutting down")]
    ShuttingDown,
    #[error("channel server did not answer in time")]
    Timeout,
}

/// A client's place in a channel: its live receiver, what it missed (`?since=`), and the
/// guard that releases its place when dropped.
pub struct Joined {
    pub rx: broadcast::Receiver<Arc<Frame>>,
    pub backlog: Vec<Arc<Frame>>,
    /// The backlog may be missing messages (dropped from the buffer, or channel reset).
    pub gap: bool,
    /// The channel's last sequence number when the client joined.
    pub last_seq: u64,
    pub guard: ChannelGuard,
}

/// Dropping it tells the actor a client left (the only way to leave, so counts stay exact).
pub struct ChannelGuard {
    item: Option<ItemId>,
    release: mpsc::UnboundedSender<ItemId>,
}

impl Drop for ChannelGuard {
    fn drop(&mut self) {
        if let Some(item) = self.item.take() {
            let _ = self.release.send(item);
        }
    }
}

/// Messages to a route's channel actor.
pub enum Command {
    Join {
        item: ItemId,
        since: Option<u64>,
        reply: oneshot::Sender<Result<Joined, ChannelError>>,
    },
    /// A push received by this instance (hub mode).
    Publish {
        item: ItemId,
        text: String,
        reply: oneshot::Sender<Result<u64, ChannelError>>,
    },
    /// Deliver here only: the backplane could not take a push.
    PublishLocal {
        item: ItemId,
        text: String,
        reply: oneshot::Sender<Result<u64, ChannelError>>,
    },
    /// A message from an upstream socket (proxy) or the backplane (with its number).
    Deliver {
        item: ItemId,
        seq: Option<u64>,
        text: Utf8Bytes,
    },
    /// The backplane's subscription is up (pushes go through Redis) or down (local only).
    Backplane(bool),
}

/// Commands queued per route before senders wait.
pub const COMMAND_QUEUE: usize = 4096;

/// A cheap, cloneable handle to one channel route.
#[derive(Clone)]
pub struct ChannelRoute {
    pub path: Arc<str>,
    pub metrics: Arc<RouteMetrics>,
    /// Redacted upstream URLs (proxy mode), for status views.
    pub upstreams: Arc<[String]>,
    pub settings: Arc<RouteSettings>,
    /// Proxy mode: forwards pushes to LNbits.
    pub forward: Option<Arc<http::PushForwarder>>,
    /// Hub mode with a `[backplane]`.
    backplane: bool,
    cmd: mpsc::Sender<Command>,
}

/// Upper bound on waiting for the actor (it never awaits I/O; this guards a wedged one).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

impl ChannelRoute {
    pub fn lnbits(&self) -> &LnbitsSettings {
        &self.settings.lnbits
    }

    pub fn has_backplane(&self) -> bool {
        self.backplane
    }

    /// Proxy mode (`upstreams` set) rather than hub mode.
    pub fn is_proxy(&self) -> bool {
        !self.settings.upstreams.is_empty()
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, ChannelError>>) -> Command,
    ) -> Result<T, ChannelError> {
        match crate::ask::ask(&self.cmd, ANSWER_TIMEOUT, make).await {
            Ok(answer) => answer,
            Err(crate::ask::NoAnswer::Gone) => Err(ChannelError::ShuttingDown),
            Err(crate::ask::NoAnswer::Timeout) => Err(ChannelError::Timeout),
        }
    }

    /// Join channel `item`, replaying what it holds after `since`.
    pub async fn join(&self, item: ItemId, since: Option<u64>) -> Result<Joined, ChannelError> {
        self.ask(|reply| Command::Join { item, since, reply }).await
    }

    /// Push `text` to every client of `item` (hub mode; through the backplane when up).
    /// Returns the message's sequence number.
    pub async fn publish(&self, item: ItemId, text: String) -> Result<u64, ChannelError> {
        self.ask(|reply| Command::Publish { item, text, reply })
            .await
    }

    pub(crate) fn sender(&self) -> mpsc::Sender<Command> {
        self.cmd.clone()
    }
}

/// Start the actor of one channel route.
pub fn spawn_route(
    settings: RouteSettings,
    backplane: Option<&mut backplane::Backplane>,
    shutdown: tokio_util::sync::CancellationToken,
    tracker: &tokio_util::task::TaskTracker,
) -> ChannelRoute {
    let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
    let metrics = Arc::new(RouteMetrics::default());
    let settings = Arc::new(settings);
    let forward = if settings.upstreams.is_empty() {
        None
    } else {
        match http::PushForwarder::new(
            &settings.upstreams,
            settings.http_upstream.as_deref(),
            settings.request_timeout,
            settings.upstream_max_message_bytes,
        ) {
            Ok(f) => Some(Arc::new(f)),
            Err(e) => {
                tracing::warn!(route = %settings.path, error = %e, "pushes cannot be forwarded");
                None
            }
        }
    };
    let route = ChannelRoute {
        path: settings.path.clone().into(),
        metrics,
        upstreams: settings
            .upstreams
            .iter()
            .map(|u| crate::telemetry::redact_url(u))
            .collect(),
        settings,
        forward,
        backplane: false,
        cmd: cmd_tx,
    };
    let mut route = route;
    let publisher = if route.is_proxy() {
        None
    } else {
        backplane.map(|b| b.attach(&route))
    };
    route.backplane = publisher.is_some();
    actor::spawn(route.clone(), cmd_rx, publisher, shutdown, tracker);
    route
}
