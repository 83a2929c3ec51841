//! The door of every route: the WebSocket upgrade (handshake, the connection limits in
//! total, per client IP and per API key, permessage-deflate negotiation), browser origins
//! and CORS, and the client's IP behind trusted proxies. Used by the JSON-RPC routes
//! (`server.rs`) and the LNbits channel routes (`channel/http.rs`) alike.

use crate::auth::ApiKey;
use crate::config::{IpNet, Settings};
use crate::session;
use crate::session::edge::Edge;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// What the door needs: the settings, the task tracker sessions run on, the shutdown token
/// they watch, and the open-connection counters (touched on connect and disconnect only).
#[derive(Clone)]
pub struct Gate {
    pub settings: Arc<Settings>,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    /// Open client WebSockets across all routes.
    pub connections: Arc<AtomicUsize>,
    /// Open client WebSockets per client IP.
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Gate {
    pub fn new(settings: Arc<Settings>, shutdown: CancellationToken, tracker: TaskTracker) -> Gate {
        Gate {
            settings,
            shutdown,
            tracker,
            connections: Arc::new(AtomicUsize::new(0)),
            per_ip: Arc::default(),
        }
    }
}

/// Holds one per-IP connection slot; releases it when the session ends.
struct IpSlot {
    map: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// The client's address: the peer, or — when the peer is a trusted proxy — the rightmost
/// `X-Forwarded-For` entry that is not itself a trusted proxy.
pub fn client_ip(peer: IpAddr, xff: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(*ip));
    if !is_trusted(&peer) {
        return peer;
    }
    xff.into_iter()
        .flat_map(|h| h.rsplit(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer)
}

pub(crate) fn is_ws_upgrade(req: &Request) -> bool {
    let has = |name: header::HeaderName, want: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(want)))
        })
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, "websocket")
}

/// CORS headers: `*` without an origin allowlist, else the (allowed) request origin.
pub(crate) fn cors(mut resp: Response, origin: Option<&HeaderValue>, restricted: bool) -> Response {
    let h = resp.headers_mut();
    match (restricted, origin) {
        (false, _) => {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
        (true, Some(o)) => {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o.clone());
            h.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
        (true, None) => {}
    }
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, GET, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type, authorization"),
    );
    resp
}

/// The request's `Origin` and whether origins are restricted; a 403 when it is not allowed
/// (`server.allowed_origins`).
pub(crate) fn check_origin(
    state: &Gate,
    req: &Request,
) -> Result<(Option<HeaderValue>, bool), Box<Response>> {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let allowed = &state.settings.allowed_origins;
    let restricted = !allowed.is_empty();
    if let (true, Some(o)) = (restricted, &origin) {
        if !allowed.iter().any(|a| a.as_bytes() == o.as_bytes()) {
            let message = format!(
                "origin {} is not allowed (server.allowed_origins)\n",
                o.to_str().unwrap_or("?")
            );
            return Err(Box::new((StatusCode::FORBIDDEN, message).into_response()));
        }
    }
    Ok((origin, restricted))
}

/// A client WebSocket after the handshake.
pub(crate) type ClientWs = WebSocketStream<Edge<TokioIo<hyper::upgrade::Upgraded>>>;

/// Check the handshake and the connection limits (total, per IP, per API key), answer 101
/// and run `serve` on the socket (tracked, counted, in a span named after `route_path`).
pub(crate) fn upgrade<F, Fut>(
    state: &Gate,
    route_path: &str,
    mut req: Request,
    api_key: Option<Arc<ApiKey>>,
    serve: F,
) -> Response
where
    F: FnOnce(ClientWs) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let version_ok = req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v == "13");
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return (StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key\n").into_response();
    };
    if !version_ok {
        return (
            StatusCode::BAD_REQUEST,
            [(header::SEC_WEBSOCKET_VERSION, "13")],
            "unsupported WebSocket version\n",
        )
            .into_response();
    }
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip());
    let xff = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    let ip = client_ip(peer, xff, &state.settings.trusted_proxies);
    let per_ip_max = state.settings.max_connections_per_ip;
    let ip_slot = {
        let mut m = state.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_insert(0);
        if *n >= per_ip_max {
            drop(m);
            return (
                StatusCode::TOO_MANY_REQUESTS,
                format!("limit exceeded: max {per_ip_max} connections per IP\n"),
            )
                .into_response();
        }
        *n += 1;
        IpSlot {
            map: state.per_ip.clone(),
            ip,
        }
    };
    let key_slot = match &api_key {
        Some(k) => match k.connect() {
            Some(slot) => Some(slot),
            None => {
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "limit exceeded: max {} connections for API key {}\n",
                        k.max_connections, k.name
                    ),
                )
                    .into_response()
            }
        },
        None => None,
    };
    let max = state.settings.max_connections;
    if state.connections.fetch_add(1, Ordering::AcqRel) >= max {
        state.connections.fetch_sub(1, Ordering::AcqRel);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("limit exceeded: max {max} connections\n"),
        )
            .into_response();
    }
    static NEXT_SESSION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let span = tracing::info_span!(
        "session",
        id = NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
        route = %route_path,
        client = %ip,
        key = api_key.as_ref().map_or("-", |k| k.name.as_str()),
    );
    let on_upgrade = hyper::upgrade::on(&mut req);
    let connections = state.connections.clone();
    let max_frame = state.settings.max_frame_bytes;
    let cfg = crate::upstream::connect::ws_config(
        max_frame,
        crate::upstream::connect::CLIENT_READ_BUFFER,
    );
    let (deflate, deflate_answer) = negotiate_deflate(state, route_path, &req).unzip();
    state.tracker.spawn(
        async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let io = TokioIo::new(upgraded);
                    let edge = match deflate {
                        Some(agreement) => Edge::deflating(io, agreement, max_frame),
                        None => Edge::new(io),
                    };
                    let ws = WebSocketStream::from_raw_socket(edge, Role::Server, Some(cfg)).await;
                    serve(ws).await;
                }
                Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
            }
            connections.fetch_sub(1, Ordering::AcqRel);
            drop(ip_slot);
            drop(key_slot);
        }
        .instrument(span),
    );
    let mut resp = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(
            header::SEC_WEBSOCKET_ACCEPT,
            derive_accept_key(key.as_bytes()),
        );
    if let Some(answer) = deflate_answer {
        resp = resp.header(header::SEC_WEBSOCKET_EXTENSIONS, answer);
    }
    resp.body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// permessage-deflate for this client: only on a route that enables it, and only if the
/// client offered it (RFC 7692; see [`session::deflate::negotiate`]).
fn negotiate_deflate(
    state: &Gate,
    route_path: &str,
    req: &Request,
) -> Option<(session::deflate::Agreement, String)> {
    let route = state
        .settings
        .routes
        .iter()
        .find(|r| r.path == route_path)?;
    let offers = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok());
    session::deflate::negotiate(offers, route.deflate?)
}

#[cfg(test)]
mod tests {
    use super::client_ip;
    use crate::config::IpNet;
    use std::net::IpAddr;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let nginx = ip("10.0.0.2");
        let trusted = [net("10.0.0.2")];
        // An untrusted peer cannot claim another address.
        assert_eq!(
            client_ip(ip("203.0.113.9"), Some("1.2.3.4"), &trusted),
            ip("203.0.113.9")
        );
        // Through nginx: the rightmost entry nginx appended is the client.
        assert_eq!(client_ip(nginx, Some("1.2.3.4"), &trusted), ip("1.2.3.4"));
        // A client-supplied prefix is ignored: nginx appends the real peer last.
        assert_eq!(
            client_ip(nginx, Some("6.6.6.6, 1.2.3.4"), &trusted),
            ip("1.2.3.4")
        );
        // Chained trusted proxies are skipped.
        let trusted = [net("10.0.0.0/24")];
        assert_eq!(
            client_ip(nginx, Some("1.2.3.4, 10.0.0.3"), &trusted),
            ip("1.2.3.4")
        );
        // No usable header: the peer itself.
        assert_eq!(client_ip(nginx, Some("garbage"), &trusted), nginx);
        assert_eq!(client_ip(nginx, None, &trusted), nginx);
    }
}
