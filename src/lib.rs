//! submux: a WebSocket proxy and subscription multiplexer for blockchain nodes.
//!
//! See ARCHITECTURE.md for the codemap, glossary and invariants. Layers:
//! [`dialect`] (pure protocol knowledge) → [`hub`] (dedup and refcount) →
//! [`upstream`] (the route actor and its sockets) ← [`session`] (one client) ←
//! [`server`] (HTTP front); [`sim`] holds the simulated upstream nodes. Channel routes
//! (LNbits) live in [`channel`], beside the JSON-RPC layers.

pub mod ask;
pub mod auth;
pub mod backoff;
pub mod channel;
mod civil;
pub mod config;
pub mod dialect;
pub mod env;
pub mod forward;
pub mod gate;
pub mod hub;
pub mod payments;
pub mod query;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod sim;
pub mod status;
pub mod telemetry;
pub mod upstream;

use crate::config::Settings;
use crate::hub::Hub;
use crate::telemetry::RouteMetrics;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("dialect {0} is not implemented")]
    Dialect(String),
    #[error("{0}")]
    Payments(#[from] payments::route::PaymentsError),
}

/// A running submux instance.
pub struct Running {
    pub addr: SocketAddr,
    pub hub: Hub,
    /// Channel routes (LNbits), in configuration order.
    pub channels: Vec<channel::ChannelRoute>,
    /// Payments feeds (`dialect = "payments"`), in configuration order.
    pub payments: Vec<payments::route::PaymentsRoute>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    server: tokio::task::JoinHandle<()>,
    grace: std::time::Duration,
    delay: std::time::Duration,
    draining: Arc<std::sync::atomic::AtomicBool>,
}

impl Running {
    /// `ws://ADDR{path}`
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }
    /// `http://ADDR{path}`
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
    /// Stop accepting, close sessions with 1001, unsubscribe upstream; wait at most the
    /// grace period. Returns whether everything finished in time.
    pub async fn stop(self) -> bool {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(self.grace, self.server).await;
        shutdown::drain(&self.tracker, self.grace).await
    }
    /// Graceful stop for orchestrators: report not-ready on `/readyz`, keep serving for
    /// `shutdown_delay_ms` (so load balancers stop sending new clients), then [`stop`].
    ///
    /// [`stop`]: Running::stop
    pub async fn drain_and_stop(self) -> bool {
        self.draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(self.delay).await;
        self.stop().await
    }

    /// Wait until the shutdown token is cancelled elsewhere, then drain.
    pub async fn wait(self) -> bool {
        self.shutdown.cancelled().await;
        self.stop().await
    }
}

/// Bind, start every route's actor and the HTTP front.
pub async fn start(settings: Settings) -> Result<Running, StartError> {
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: settings.listen,
            source,
        })?;
    start_on(listener, settings).await
}

/// Start on an already bound listener (tests bind port 0).
pub async fn start_on(listener: TcpListener, settings: Settings) -> Result<Running, StartError> {
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: settings.listen,
        source,
    })?;
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut routes = Vec::new();
    let mut channels = Vec::new();
    let mut backplane = settings
        .backplane
        .clone()
        .map(channel::backplane::Backplane::new);
    for r in &settings.routes {
        if r.dialect == dialect::DialectKind::Lnbits {
            channels.push(channel::spawn_route(
                r.clone(),
                backplane.as_mut(),
                shutdown.clone(),
                &tracker,
            ));
            continue;
        }
        if r.dialect == dialect::DialectKind::Payments {
            continue;
        }
        let dialect = r
            .dialect
            .build()
            .ok_or_else(|| StartError::Dialect(r.dialect.to_string()))?;
        routes.push(upstream::spawn_route(
            r.clone(),
            dialect,
            Arc::new(RouteMetrics::default()),
            shutdown.clone(),
            &tracker,
        ));
    }
    if let Some(b) = backplane {
        b.start(shutdown.clone(), &tracker);
    }
    let hub = Hub::new(routes);
    let mut feeds = Vec::new();
    for r in &settings.routes {
        if r.dialect == dialect::DialectKind::Payments {
            feeds.push(payments::route::spawn(
                r.clone(),
                &hub,
                &channels,
                settings.backplane.as_ref(),
                shutdown.clone(),
                &tracker,
            )?);
        }
    }
    let grace = settings.shutdown_grace;
    let delay = settings.shutdown_delay;
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let state = server::AppState {
        hub: hub.clone(),
        channels: channels.clone().into(),
        payments: feeds.clone().into(),
        gate: gate::Gate::new(Arc::new(settings), shutdown.clone(), tracker.clone()),
        draining: draining.clone(),
        started: std::time::Instant::now(),
    };
    let app = server::router(state);
    let token = shutdown.clone();
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let server = tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        let serve = axum::serve(listener, app).with_graceful_shutdown(token.cancelled_owned());
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "server error");
        }
    });
    Ok(Running {
        addr,
        hub,
        channels,
        payments: feeds,
        shutdown,
        tracker,
        server,
        grace,
        delay,
        draining,
    })
}
