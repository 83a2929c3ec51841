//! The HTTP side of a channel route: `{path}/{item_id}` upgrades to a channel client;
//! `GET {path}/{item_id}/{data}`, `POST {path}/{item_id}?data=…` and `POST {path}/{item_id}`
//! (text body) push. Hub mode answers pushes itself, as LNbits does; proxy mode forwards
//! them to LNbits (`POST {upstream}/{item_id}?data=…`) and passes its answer back verbatim.

use super::{session, ChannelError, ChannelRoute};
use crate::dialect::lnbits::{
    parse_target, push_text, render_detail, render_sent, ItemId, PushError, PushVia, SocketOptions,
    Target,
};
use crate::forward::{HttpForwardError, HttpForwarder};
use crate::gate::{check_origin, cors, is_ws_upgrade, upgrade, Gate};
use crate::telemetry::{redact_url, RouteMetrics};
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// Response header: the channel's last sequence number (on the 101 of a channel socket and
/// on a hub-mode push answer, where it is the pushed message's number).
pub const SEQ_HEADER: &str = "x-submux-seq";
/// Response header on a `?since=` upgrade: `true` when the replay may be missing messages.
pub const GAP_HEADER: &str = "x-submux-replay-gap";

/// Serve any request under a channel route's path.
pub async fn serve(state: Gate, route: ChannelRoute, req: Request) -> Response {
    // `server.allowed_origins` applies here too; API keys (`[auth]`) do not: LNbits' own
    // clients cannot present one (pushes have `push_token`).
    let (origin, restricted) = match check_origin(&state, &req) {
        Ok(o) => o,
        Err(refused) => return *refused,
    };
    let cors = |r: Response| cors(r, origin.as_ref(), restricted);
    if req.method() == Method::OPTIONS {
        return cors(StatusCode::NO_CONTENT.into_response());
    }
    let path = req.uri().path();
    let rest = path.strip_prefix(&*route.path).unwrap_or_default();
    let target = match parse_target(rest.strip_prefix('/').unwrap_or(rest)) {
        Ok(t) => t,
        Err(e) => return cors(refuse(&e)),
    };
    let method = req.method().clone();
    match (method, target) {
        (Method::GET, Target::Channel(item)) if is_ws_upgrade(&req) => {
            connect(state, route, item, req).await
        }
        (Method::GET, Target::PushPath(item, data)) => {
            cors(push(&route, req.headers(), item, PushVia::Path(&data)).await)
        }
        (Method::POST, Target::Channel(item)) => {
            let query = req.uri().query().map(str::to_string);
            let headers = req.headers().clone();
            let limit = route.lnbits().max_push_bytes;
            // The body may carry the text; anything bigger than the limit is refused.
            let body = match axum::body::to_bytes(req.into_body(), limit).await {
                Ok(b) => b,
                Err(_) => return cors(refuse(&PushError::TooLarge(limit))),
            };
            let via = PushVia::Post {
                query: query.as_deref(),
                body: &body,
            };
            cors(push(&route, &headers, item, via).await)
        }
        // The path matches one of LNbits' routes, the method does not: Starlette's 405
        // naming the route's method (`{item_id}` is POST over HTTP, `{item_id}/{data}` GET).
        (_, Target::Channel(_)) => method_not_allowed("POST"),
        (_, Target::PushPath(..)) => method_not_allowed("GET"),
    }
}

fn method_not_allowed(allow: &'static str) -> Response {
    let mut r = detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

fn detail(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        render_detail(message),
    )
        .into_response()
}

fn refuse(e: &PushError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        e.body(),
    )
        .into_response();
    if matches!(e, PushError::Unauthorized) {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

fn unavailable(e: &ChannelError) -> Response {
    detail(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
}

/// Join the channel first (so the replay and the live stream meet without a gap, and a full
/// route is refused before the handshake), then switch protocols.
async fn connect(state: Gate, route: ChannelRoute, item: ItemId, req: Request) -> Response {
    let opts = match SocketOptions::parse(req.uri().query()) {
        Ok(o) => o,
        Err(e) => return refuse(&e),
    };
    let joined = match route.join(item, opts.since).await {
        Ok(j) => j,
        Err(e) => return unavailable(&e),
    };
    let (last, gap) = (joined.last_seq, joined.gap);
    let metrics = route.metrics.clone();
    let (settings, shutdown) = (state.settings.clone(), state.shutdown.clone());
    let mut resp = upgrade(&state, &route.path, req, None, move |ws| {
        session::run(ws, joined, opts, metrics, settings, shutdown)
    });
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let h = resp.headers_mut();
        h.insert(SEQ_HEADER, HeaderValue::from(last));
        if opts.since.is_some() {
            h.insert(GAP_HEADER, HeaderValue::from_static(bool_str(gap)));
        }
    }
    resp
}

fn bool_str(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

/// Whether the request carries the route's push token (always, when none is configured).
fn authorized(route: &ChannelRoute, headers: &HeaderMap) -> bool {
    let Some(want) = &route.lnbits().push_token else {
        return true;
    };
    let got = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    token_matches(got.trim(), want)
}

/// Compare without an early exit on the first differing byte (only the lengths may differ
/// in time).
fn token_matches(got: &str, want: &str) -> bool {
    got.as_bytes().ct_eq(want.as_bytes()).into()
}

async fn push(
    route: &ChannelRoute,
    headers: &HeaderMap,
    item: ItemId,
    via: PushVia<'_>,
) -> Response {
    if !authorized(route, headers) {
        return refuse(&PushError::Unauthorized);
    }
    let text = match push_text(via, route.lnbits().max_push_bytes) {
        Ok(t) => t,
        Err(e) => return refuse(&e),
    };
    if route.is_proxy() {
        let Some(fwd) = &route.forward else {
            return detail(StatusCode::BAD_GATEWAY, "no usable upstream to push to");
        };
        let start = route.metrics.active_upstream.load(Relaxed);
        return match fwd.forward(&item, &text, start).await {
            Ok((status, body)) => {
                RouteMetrics::inc(&route.metrics.pushes);
                (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
            }
            Err(e) => {
                tracing::warn!(route = %route.path, error = %e, "push not forwarded");
                detail(StatusCode::BAD_GATEWAY, &e.to_string())
            }
        };
    }
    match route.publish(item, text.clone()).await {
        Ok(seq) => {
            RouteMetrics::inc(&route.metrics.pushes);
            (
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    ),
                    (
                        header::HeaderName::from_static(SEQ_HEADER),
                        HeaderValue::from(seq),
                    ),
                ],
                render_sent(&text, true),
            )
                .into_response()
        }
        Err(e) => unavailable(&e),
    }
}

/// Forwards pushes to LNbits over HTTP (proxy mode): `POST {base}/{item_id}?data=…`, where
/// a base is `http_upstream`, or each of `upstreams` with ws→http and wss→https.
pub struct PushForwarder {
    client: HttpForwarder,
    /// (base URL, redacted form), in failover order.
    bases: Vec<(String, String)>,
}

impl PushForwarder {
    pub fn new(
        upstreams: &[String],
        http_upstream: Option<&str>,
        timeout: Duration,
        max_body: usize,
    ) -> Result<Self, String> {
        let bases: Vec<String> = match http_upstream {
            Some(h) => vec![h.trim_end_matches('/').to_string()],
            None => upstreams
                .iter()
                .map(|u| {
                    let u = u.trim_end_matches('/');
                    match u.split_once("://") {
                        Some(("wss", rest)) => format!("https://{rest}"),
                        Some((_, rest)) => format!("http://{rest}"),
                        None => u.to_string(),
                    }
                })
                .collect(),
        };
        let first = bases.first().ok_or("no upstream to push to")?;
        let client = HttpForwarder::new(first, timeout, max_body)?;
        Ok(PushForwarder {
            client,
            bases: bases
                .into_iter()
                .map(|b| {
                    let shown = redact_url(&b);
                    (b, shown)
                })
                .collect(),
        })
    }

    /// Push `text` to `item` upstream, trying the bases from `start` on until one answers
    /// (any HTTP status counts as an answer). Returns LNbits' status and body.
    pub async fn forward(
        &self,
        item: &ItemId,
        text: &str,
        start: usize,
    ) -> Result<(StatusCode, Bytes), HttpForwardError> {
        let n = self.bases.len();
        let mut last = None;
        for i in 0..n {
            let (base, shown) = &self.bases[(start + i) % n];
            let url = format!("{base}/{item}?data={}", crate::query::encode(text));
            let uri: axum::http::Uri = match url.parse() {
                Ok(u) => u,
                Err(e) => {
                    last = Some(HttpForwardError::Failed {
                        url: shown.clone(),
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            match self
                .client
                .post_to(uri, shown, "application/json", Bytes::new())
                .await
            {
                Ok(answer) => return Ok(answer),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(HttpForwardError::Failed {
            url: String::new(),
            reason: "no upstream".into(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::token_matches;

    #[test]
    fn token_comparison() {
        assert!(token_matches("s3cret", "s3cret"));
        assert!(!token_matches("s3cres", "s3cret"));
        assert!(!token_matches("s3cre", "s3cret"));
        assert!(!token_matches("", "s3cret"));
        assert!(!token_matches("s3crets3cret", "s3cret"));
    }
}
