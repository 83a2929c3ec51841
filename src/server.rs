//! The HTTP front: each route path accepts a WebSocket upgrade (a client session) and
//! HTTP POST JSON-RPC; plus `/healthz`, `/readyz` and `/metrics`. Channel routes (LNbits)
//! serve `{path}/{item_id}…` through [`crate::channel::http`].

use crate::auth::ApiKey;
use crate::channel::ChannelRoute;
use crate::gate::{check_origin, cors, is_ws_upgrade, upgrade, Gate};
use crate::hub::{Hub, RouteHandle};
use crate::payments::route::PaymentsRoute;
use crate::session;
use crate::telemetry::render_prometheus;
use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Shared state of the HTTP front.
#[derive(Clone)]
pub struct AppState {
    pub hub: Hub,
    /// Channel routes (LNbits), beside the hub's JSON-RPC routes.
    pub channels: Arc<[ChannelRoute]>,
    /// Payments feeds over the hub's routes.
    pub payments: Arc<[PaymentsRoute]>,
    /// Upgrades, limits and origins (shared with the channel routes).
    pub gate: Gate,
    pub started: std::time::Instant,
    /// Set when shutdown was requested: `/readyz` answers 503 while still serving.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

pub fn router(state: AppState) -> Router {
    let mut r = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/", get(status_page))
        .route("/status", get(status_page))
        .route("/status.json", get(status_json));
    for route in state.hub.routes() {
        // `/ROUTE` and `/ROUTE/API_KEY` (the key form hosted providers use).
        for path in [route.path.to_string(), format!("{}/{{key}}", route.path)] {
            let (st, rh) = (state.clone(), route.clone());
            r = r.route(
                &path,
                any(move |req: Request| serve_route(st.clone(), rh.clone(), req)),
            );
        }
    }
    for route in state.channels.iter() {
        let (st, ch) = (state.clone(), route.clone());
        let serve =
            any(move |req: Request| crate::channel::http::serve(st.gate.clone(), ch.clone(), req));
        r = r
            .route(&route.path, serve.clone())
            .route(&format!("{}/{{*item}}", route.path), serve);
    }
    for route in state.payments.iter() {
        for path in [route.path.to_string(), format!("{}/{{key}}", route.path)] {
            let (st, pr) = (state.clone(), route.clone());
            r = r.route(
                &path,
                any(move |req: Request| serve_payments(st.clone(), pr.clone(), req)),
            );
        }
    }
    r.with_state(state)
}

async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    if state.draining.load(Ordering::Relaxed) || state.gate.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    let waiting: Vec<&str> = state
        .hub
        .routes()
        .iter()
        .filter(|r| !r.metrics.ready())
        .map(|r| &*r.path)
        .collect();
    if waiting.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no connected upstream for: {}\n", waiting.join(", ")),
        )
            .into_response()
    }
}

async fn status_page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        crate::status::PAGE,
    )
        .into_response()
}

async fn status_json(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    let snap = crate::status::snapshot(&state.hub, &state.channels, state.started);
    match serde_json::to_string(&snap) {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    let routes = state
        .hub
        .routes()
        .iter()
        .map(|r| (r.path.clone(), r.metrics.clone()))
        .chain(
            state
                .channels
                .iter()
                .map(|c| (c.path.clone(), c.metrics.clone())),
        )
        .chain(
            state
                .payments
                .iter()
                .map(|p| (p.path.clone(), p.metrics.clone())),
        )
        .collect();
    (
        [(header::CONTENT_TYPE, crate::telemetry::CONTENT_TYPE)],
        render_prometheus(routes),
    )
        .into_response()
}

/// The API key a request presents, checked against the configured keys.
fn resolve_key(
    state: &AppState,
    route_path: &str,
    req: &Request,
) -> Result<Option<Arc<ApiKey>>, crate::auth::AuthError> {
    let path_rest = req
        .uri()
        .path()
        .strip_prefix(route_path)
        .and_then(|r| r.strip_prefix('/'));
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let presented = crate::auth::presented(path_rest, authorization, req.uri().query());
    state.gate.settings.auth.check(presented.as_deref())
}

/// The `Origin` to answer, whether origins are restricted, and the checked API key.
type Admitted = (Option<header::HeaderValue>, bool, Option<Arc<ApiKey>>);

/// A request to a route let in: its origin checked, then the API key a GET (WebSocket)
/// or POST presents. A refusal is the answer to send (the origin's, or a 401).
fn admit(state: &AppState, route_path: &str, req: &Request) -> Result<Admitted, Box<Response>> {
    let (origin, restricted) = check_origin(&state.gate, req)?;
    let key = request_key(state, route_path, req)?;
    Ok((origin, restricted, key))
}

/// The API key a GET (WebSocket) or POST request presents, checked; other methods need
/// none. A refusal is the 401 answer.
fn request_key(
    state: &AppState,
    route_path: &str,
    req: &Request,
) -> Result<Option<Arc<ApiKey>>, Box<Response>> {
    if !matches!(*req.method(), Method::GET | Method::POST) {
        return Ok(None);
    }
    resolve_key(state, route_path, req).map_err(|e| {
        Box::new(
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                format!("{e}\n"),
            )
                .into_response(),
        )
    })
}

/// A POST body of at most `max_frame_bytes`; a larger one is the 413 answer.
async fn read_body(state: &AppState, req: Request) -> Result<axum::body::Bytes, Box<Response>> {
    let limit = state.gate.settings.max_frame_bytes;
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| {
            Box::new(
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body exceeds {limit} bytes\n"),
                )
                    .into_response(),
            )
        })
}

/// A JSON-RPC answer over HTTP: the reply as JSON, or an empty 200 (notifications only).
fn json_reply(reply: Option<String>) -> Response {
    match reply {
        Some(reply) => ([(header::CONTENT_TYPE, "application/json")], reply).into_response(),
        None => StatusCode::OK.into_response(),
    }
}

/// The answer to a CORS preflight (`OPTIONS`).
fn preflight(origin: Option<&header::HeaderValue>, restricted: bool) -> Response {
    cors(StatusCode::NO_CONTENT.into_response(), origin, restricted)
}

/// 405 for a method a route does not serve, saying how to use it.
fn not_allowed(how: String) -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "GET, POST, OPTIONS")],
        how,
    )
        .into_response()
}

async fn serve_route(state: AppState, route: RouteHandle, req: Request) -> Response {
    let (origin, restricted, key) = match admit(&state, &route.path, &req) {
        Ok(a) => a,
        Err(refused) => return *refused,
    };
    match *req.method() {
        Method::GET if is_ws_upgrade(&req) => {
            let (settings, shutdown) = (state.gate.settings.clone(), state.gate.shutdown.clone());
            let options = match session::ClientOptions::from_query(req.uri().query()) {
                Ok(o) => o,
                Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
            };
            let (path, session_key) = (route.path.clone(), key.clone());
            upgrade(&state.gate, &path, req, key, move |ws| {
                session::run(ws, route, settings, shutdown, session_key, options)
            })
        }
        Method::POST => cors(
            http_rpc(&state, &route, req, key.as_deref().map(|k| &*k.name)).await,
            origin.as_ref(),
            restricted,
        ),
        Method::OPTIONS => preflight(origin.as_ref(), restricted),
        _ => not_allowed(format!(
            "submux route {} ({}): connect with a WebSocket or POST JSON-RPC\n",
            route.path,
            route.dialect.kind()
        )),
    }
}

async fn http_rpc(
    state: &AppState,
    route: &RouteHandle,
    req: Request,
    key: Option<&str>,
) -> Response {
    let body = match read_body(state, req).await {
        Ok(b) => b,
        Err(too_large) => return *too_large,
    };
    if let Some(http) = &route.http {
        return match http.forward(body).await {
            Ok((status, answer)) => {
                (status, [(header::CONTENT_TYPE, "application/json")], answer).into_response()
            }
            Err(e) => {
                tracing::warn!(route = %route.path, error = %e, "http upstream failed");
                (StatusCode::BAD_GATEWAY, format!("{e}\n")).into_response()
            }
        };
    }
    let text = String::from_utf8_lossy(&body);
    json_reply(session::handle_http(route, &text, key).await)
}

/// A payments feed: WebSocket JSON-RPC (`payments_subscribe`), POST `payments_history`.
async fn serve_payments(state: AppState, route: PaymentsRoute, req: Request) -> Response {
    let (origin, restricted, key) = match admit(&state, &route.path, &req) {
        Ok(a) => a,
        Err(refused) => return *refused,
    };
    match *req.method() {
        Method::GET if is_ws_upgrade(&req) => {
            let (settings, shutdown) = (state.gate.settings.clone(), state.gate.shutdown.clone());
            let path = route.path.clone();
            upgrade(&state.gate, &path, req, key, move |ws| {
                crate::payments::session::run(ws, route, settings, shutdown)
            })
        }
        Method::POST => {
            let body = match read_body(&state, req).await {
                Ok(b) => b,
                Err(too_large) => return *too_large,
            };
            let text = String::from_utf8_lossy(&body);
            let max_batch = state.gate.settings.max_batch_len;
            let resp =
                json_reply(crate::payments::session::handle_http(&route, max_batch, &text).await);
            cors(resp, origin.as_ref(), restricted)
        }
        Method::OPTIONS => preflight(origin.as_ref(), restricted),
        _ => not_allowed(format!(
            "submux route {} (payments): connect with a WebSocket or POST payments_history\n",
            route.path
        )),
    }
}
