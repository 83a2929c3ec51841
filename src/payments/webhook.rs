//! Webhooks (`[[route.payments.webhook]]`): every event to one of a hook's addresses is
//! POSTed to its URL as the event's JSON, signed with HMAC-SHA256.
//!
//! - Headers: `X-Submux-Delivery` (the delivery id: `<event id>:<status>`, the same on
//!   every retry, so receivers drop repeats), `X-Submux-Timestamp` (Unix seconds) and
//!   `X-Submux-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
//! - Delivery is at-least-once and in log order (so in order per address): an event is
//!   retried, with capped exponential backoff and jitter, until the receiver answers 2xx;
//!   later events wait behind it.
//! - Each hook's last acknowledged cursor is kept in the log, so after an outage or a
//!   restart delivery resumes where it stopped (a new hook starts at the log's head).

use super::event::Chain;
use super::log::{address_key, Cursor};
use super::route::PaymentsRoute;
use super::store::Store;
use crate::backoff::Backoff;
use crate::config::{PaymentsSettings, WebhookConfig};
use crate::telemetry::{redact_url, RouteMetrics};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Events read from the log per pass.
const PAGE: usize = 256;
const TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_INITIAL: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// `sha256=<hex>` of HMAC-SHA256(secret, "<timestamp>.<body>").
pub fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Start one delivery task per hook; the returned sender announces each newly logged
/// cursor (`None` without hooks).
pub fn spawn(
    route: &PaymentsRoute,
    p: &PaymentsSettings,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> Option<watch::Sender<Cursor>> {
    if p.webhooks.is_empty() {
        return None;
    }
    let (tx, rx) = watch::channel(Cursor(0));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(https);
    for hook in &p.webhooks {
        let h = Hook::new(hook.clone(), route, client.clone());
        tracker.spawn(h.run(rx.clone(), shutdown.clone()));
    }
    Some(tx)
}

struct Hook {
    cfg: WebhookConfig,
    url: http::Uri,
    shown: String,
    addresses: HashSet<String>,
    log: Store,
    metrics: Arc<RouteMetrics>,
    client: HttpClient,
    mark: String,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Hook {
    fn new(cfg: WebhookConfig, route: &PaymentsRoute, client: HttpClient) -> Hook {
        let addresses = cfg
            .addresses
            .iter()
            .filter_map(|a| {
                let (c, x) = a.split_once(':')?;
                Some(address_key(Chain::parse(c)?, x))
            })
            .collect();
        Hook {
            url: cfg.url.parse().unwrap_or_default(),
            shown: redact_url(&cfg.url),
            mark: format!("webhook:{}", cfg.url),
            addresses,
            log: route.store.clone(),
            metrics: route.metrics.clone(),
            client,
            cfg,
        }
    }

    async fn run(self, mut heads: watch::Receiver<Cursor>, shutdown: CancellationToken) {
        let start = async {
            match self.log.mark(&self.mark).await? {
                Some(c) => Ok(c),
                None => {
                    let head = self.log.head().await?;
                    self.log.set_mark(&self.mark, head).await?;
                    Ok::<_, super::log::LogError>(head)
                }
            }
        }
        .await
        .ok();
        let Some(mut at) = start else {
            tracing::error!(url = %self.shown, "webhook: cannot read its cursor from the log");
            return;
        };
        loop {
            let page = match self.log.after(at, PAGE).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(url = %self.shown, error = %e, "webhook: cannot read the log; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(BACKOFF_INITIAL * 5) => {}
                    }
                    continue;
                }
            };
            if page.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    changed = heads.changed() => if changed.is_err() { return },
                }
                continue;
            }
            for e in &page {
                if self
                    .addresses
                    .contains(&address_key(e.credit.chain, &e.credit.to))
                {
                    let body = match serde_json::to_vec(e) {
                        Ok(b) => Bytes::from(b),
                        Err(_) => continue,
                    };
                    let id = format!("{}:{}", e.credit.id, e.credit.status.as_str());
                    if !self.deliver(&id, body, &shutdown).await {
                        return;
                    }
                }
                if let Ok(c) = Cursor::parse(&e.cursor) {
                    at = c;
                }
            }
            if let Err(e) = self.log.set_mark(&self.mark, at).await {
                tracing::warn!(url = %self.shown, error = %e, "webhook: cannot keep its cursor");
            }
        }
    }

    /// Deliver until acknowledged; `false` at shutdown.
    async fn deliver(&self, id: &str, body: Bytes, shutdown: &CancellationToken) -> bool {
        let mut backoff = Backoff::new(BACKOFF_INITIAL, BACKOFF_MAX);
        loop {
            match self.post(id, body.clone()).await {
                Ok(()) => {
                    RouteMetrics::inc(&self.metrics.webhook_deliveries);
                    return true;
                }
                Err(why) => {
                    RouteMetrics::inc(&self.metrics.webhook_failures);
                    let wait = backoff.next_delay(fastrand::f64());
                    tracing::warn!(url = %self.shown, delivery = id, %why, retry_in = ?wait, "webhook delivery failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    async fn post(&self, id: &str, body: Bytes) -> Result<(), String> {
        let ts = now_secs();
        let sig = signature(&self.cfg.secret, ts, &body);
        let req = http::Request::post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("x-submux-delivery", id)
            .header("x-submux-timestamp", ts.to_string())
            .header("x-submux-signature", sig)
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| format!("no answer within {TIMEOUT:?}"))?
            .map_err(|e| e.to_string())?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", resp.status()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_rfc4231_hmac_sha256() {
        // RFC 4231 test case 2 (key "Jefe"), then our framing "<timestamp>.<body>".
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe");
        let tag = ring::hmac::sign(&key, b"what do ya want for nothing?");
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let a = signature("secret", 1, b"{}");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"secret");
        let want = ring::hmac::sign(&key, b"1.{}");
        let want: String = want.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(a, format!("sha256={want}"));
        assert_ne!(signature("secret", 2, b"{}"), a, "the timestamp is signed");
    }
}
