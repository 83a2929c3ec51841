//! Helpers for LNbits channel routes: submux with lnbits routes on port 0, raw HTTP pushes,
//! channel clients. Shared by tests/e2e/lnbits.rs, tests/lnbits_redis.rs and
//! tests/lnbits_real.rs (included there with `#[path]`).

use crate::common::{server_cfg, Client, WAIT};
use std::collections::HashMap;
use submux::config::{BackplaneConfig, RawConfig, RouteConfig, ServerConfig};
use submux::dialect::DialectKind;
use submux::Running;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const PATH: &str = "/api/v1/ws";

/// An LNbits route at `/api/v1/ws` with fast timers; hub mode without upstreams.
pub fn lnbits_route(upstreams: Vec<String>) -> RouteConfig {
    let mut r = RouteConfig::new(PATH, DialectKind::Lnbits, upstreams);
    r.linger_ms = 150;
    r.backoff_initial_ms = 20;
    r.backoff_max_ms = 200;
    r.connect_timeout_ms = 1_000;
    r.request_timeout_ms = 3_000;
    r
}

pub async fn start(
    server: ServerConfig,
    routes: Vec<RouteConfig>,
    backplane: Option<BackplaneConfig>,
) -> Running {
    let raw = RawConfig {
        server,
        routes,
        backplane,
        source: None,
        auth: Default::default(),
    };
    let settings = raw.validate(None).expect("valid test config");
    submux::start(settings).await.expect("start")
}

/// Hub-mode submux with one LNbits route.
pub async fn hub() -> Running {
    start(server_cfg(), vec![lnbits_route(vec![])], None).await
}

pub struct HttpAnswer {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

/// One HTTP/1.1 request (`Connection: close`); `target` is `http://HOST/PATH?QUERY`.
pub async fn http(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpAnswer {
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut s = tokio::net::TcpStream::connect(host).await.expect("connect");
    let mut req = format!(
        "{method} /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    s.write_all(body).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("answer in time")
        .expect("read");
    let out = String::from_utf8(out).expect("utf-8 answer");
    let (head, body) = out.split_once("\r\n\r\n").expect("http answer");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    HttpAnswer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// `GET {base}/{item}/{data}` (data percent-encoded here).
pub async fn push_get(base: &str, item: &str, data: &str) -> HttpAnswer {
    let enc = submux::query::encode(data);
    http("GET", &format!("{base}/{item}/{enc}"), &[], b"").await
}

/// `POST {base}/{item}?data=…`.
pub async fn push_query(base: &str, item: &str, data: &str) -> HttpAnswer {
    let enc = submux::query::encode(data);
    http("POST", &format!("{base}/{item}?data={enc}"), &[], b"").await
}

/// `POST {base}/{item}` with the text as the body.
pub async fn push_body(base: &str, item: &str, data: &str) -> HttpAnswer {
    http("POST", &format!("{base}/{item}"), &[], data.as_bytes()).await
}

/// Connect a channel client; returns it and the upgrade's response headers.
pub async fn connect(url: &str) -> (Client, HashMap<String, String>) {
    let (ws, resp) = tokio_tungstenite::connect_async(url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    (Client::from_stream(ws), headers)
}

pub fn http_base(running: &Running) -> String {
    running.http_url(PATH)
}

pub fn ws_base(running: &Running) -> String {
    running.ws_url(PATH)
}
