//! Dedup and refcount: the handle sessions use to reach a route's upstream actor.
//!
//! The hub is an immutable map built at start-up: route path → [`RouteHandle`]. Each route
//! has exactly one actor, whose sans-IO [`core::RouteCore`] owns its [`table::TopicTable`],
//! so every key has one home and dedup is exact without a global lock; a new subscribe can
//! never race the last release because both are messages to the same owner.

pub mod core;
pub mod subscription;
pub mod table;
pub mod wire;

use crate::dialect::{Call, Condition, Dialect, RpcError, SubscriptionKey};
use crate::telemetry::RouteMetrics;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
pub use subscription::{Delivered, Delivery, Joined, Mailbox, Release, ReleaseGuard, Subscribed};
use tokio::sync::{mpsc, oneshot};
/// The shared frame buffer every layer passes around (a refcounted UTF-8 buffer, no I/O).
pub use tokio_tungstenite::tungstenite::Utf8Bytes;
pub use wire::WireText;

/// One notification as every session of a topic sends it: the frame carries the topic's
/// public id at `id_range`, so a session with another id splices, everyone else shares.
#[derive(Debug, Clone)]
pub struct Notice {
    /// Encoded once for every client that shares the public id.
    pub frame: WireText,
    pub id_range: Range<usize>,
    /// A gap notice (written only to clients that asked for them).
    pub gap: bool,
}

/// An upstream answer to a forwarded call: the upstream's frame with our id at `id_range`;
/// the session splices the client's own id there and passes everything else untouched.
#[derive(Debug, Clone)]
pub struct UpstreamReply {
    pub text: Utf8Bytes,
    pub id_range: Range<usize>,
    /// This caller's answer cost an upstream call of its own (false: from the cache or
    /// the followed head, or shared with an identical call in flight).
    pub upstream: bool,
}

/// Why a hub request failed; each maps to a dialect error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    #[error("no upstream connection available")]
    Unavailable,
    #[error("upstream did not answer in time")]
    Timeout,
    #[error("upstream connection lost with the request in flight")]
    Lost,
    #[error("limit exceeded: {0}")]
    Full(String),
    /// The upstream's own error object, passed to the client verbatim.
    #[error("upstream error: {0}")]
    Upstream(String),
    #[error("shutting down")]
    ShuttingDown,
}

impl HubError {
    pub fn to_rpc(&self, dialect: &dyn Dialect) -> RpcError {
        match self {
            HubError::Unavailable => dialect.error_for(Condition::UpstreamUnavailable),
            HubError::Timeout => dialect.error_for(Condition::UpstreamTimeout),
            HubError::Lost => dialect.error_for(Condition::UpstreamLost),
            HubError::Full(what) => dialect.error_for(Condition::LimitExceeded(what.clone())),
            HubError::Upstream(raw) => RpcError::Raw(raw.clone()),
            HubError::ShuttingDown => dialect.error_for(Condition::ShuttingDown),
        }
    }
}

/// Messages to a route actor.
#[derive(Debug)]
pub enum Command {
    /// Join one or more keys (id-routed dialects: exactly one). Content-routed keys
    /// deliver through the session's `mailbox`; id-routed ones pass none and each get
    /// their topic's ring.
    Subscribe {
        keys: Vec<SubscriptionKey>,
        mailbox: Option<Mailbox>,
        reply: oneshot::Sender<Subscribed>,
        /// `?since=N`: join with what each topic's history holds after height N.
        since: Option<u64>,
    },
    /// `reply: None` forwards a JSON-RPC notification (no answer expected).
    Call {
        call: Call,
        reply: Option<oneshot::Sender<Result<UpstreamReply, HubError>>>,
    },
}

/// A cheap, cloneable handle to one route's actor.
#[derive(Clone)]
pub struct RouteHandle {
    pub path: Arc<str>,
    pub dialect: Arc<dyn Dialect>,
    pub metrics: Arc<RouteMetrics>,
    /// The route's upstream URLs, redacted, in failover order (for status views).
    pub upstreams: Arc<[String]>,
    /// Forwarder for HTTP POSTs when the route has `http_upstream`.
    pub http: Option<Arc<crate::forward::HttpForwarder>>,
    cmd: mpsc::Sender<Command>,
    /// Sessions that asked for gap notices; the route reads heights only while some do.
    gap_listeners: Arc<AtomicUsize>,
    /// Upper bound on waiting for the actor's answer (the actor enforces its own timeouts;
    /// this only guards against a wedged actor).
    answer_timeout: Duration,
}

impl RouteHandle {
    pub fn new(
        path: Arc<str>,
        dialect: Arc<dyn Dialect>,
        metrics: Arc<RouteMetrics>,
        cmd: mpsc::Sender<Command>,
        answer_timeout: Duration,
    ) -> Self {
        RouteHandle {
            path,
            dialect,
            metrics,
            upstreams: Arc::from(Vec::new()),
            http: None,
            cmd,
            gap_listeners: Arc::new(AtomicUsize::new(0)),
            answer_timeout,
        }
    }

    /// The counter of sessions that asked for gap notices (shared with the route core).
    pub fn gap_listeners(&self) -> Arc<AtomicUsize> {
        self.gap_listeners.clone()
    }

    /// Count this session as wanting gap notices for as long as the guard lives.
    pub fn listen_for_gaps(&self) -> GapListener {
        self.gap_listeners.fetch_add(1, Ordering::Relaxed);
        GapListener(self.gap_listeners.clone())
    }

    /// Record the (redacted) upstream URLs for status views.
    pub fn with_upstreams(mut self, upstreams: Vec<String>) -> Self {
        self.upstreams = upstreams.into();
        self
    }

    /// Attach an HTTP forwarder (routes with `http_upstream`).
    pub fn with_http(mut self, http: crate::forward::HttpForwarder) -> Self {
        self.http = Some(Arc::new(http));
        self
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, HubError> {
        crate::ask::ask(&self.cmd, self.answer_timeout, make)
            .await
            .map_err(|no| match no {
                crate::ask::NoAnswer::Gone => HubError::ShuttingDown,
                crate::ask::NoAnswer::Timeout => HubError::Timeout,
            })
    }

    /// Join `keys`; content-routed pushes for them go to `mailbox`. What could not be
    /// joined is the answer's error.
    pub async fn subscribe(
        &self,
        keys: Vec<SubscriptionKey>,
        mailbox: Option<Mailbox>,
        since: Option<u64>,
    ) -> Subscribed {
        let ask = self.ask(|reply| Command::Subscribe {
            keys,
            mailbox,
            reply,
            since,
        });
        ask.await.unwrap_or_else(Subscribed::failed)
    }

    pub async fn call(&self, call: Call) -> Result<UpstreamReply, HubError> {
        self.ask(|reply| Command::Call {
            call,
            reply: Some(reply),
        })
        .await?
    }

    /// Count one answered call of API key `key` (`None`: no key) for per-key accounting.
    pub fn count_key_call(&self, key: Option<&str>, answer: &Result<UpstreamReply, HubError>) {
        let upstream = answer.as_ref().is_ok_and(|r| r.upstream);
        self.metrics.count_key_call(key, upstream);
    }

    /// Forward a notification (fire and forget; dropped if the actor's queue is full).
    pub fn notify(&self, call: Call) {
        if self
            .cmd
            .try_send(Command::Call { call, reply: None })
            .is_err()
        {
            tracing::debug!(route = %self.path, "dropped client notification: actor queue full");
        }
    }
}

/// A session's registration as a gap-notice listener; dropping it unregisters.
#[derive(Debug)]
pub struct GapListener(Arc<AtomicUsize>);

impl Drop for GapListener {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The immutable routing map.
#[derive(Clone, Default)]
pub struct Hub {
    routes: Vec<RouteHandle>,
}

impl Hub {
    pub fn new(routes: Vec<RouteHandle>) -> Self {
        Hub { routes }
    }
    pub fn routes(&self) -> &[RouteHandle] {
        &self.routes
    }
    pub fn get(&self, path: &str) -> Option<&RouteHandle> {
        self.routes.iter().find(|r| &*r.path == path)
    }
}
