//! HTTP JSON-RPC forwarding for routes with `http_upstream`: the POST body goes to the
//! upstream verbatim and its answer comes back verbatim (HTTP has no ids to rewrite).

use crate::telemetry::redact_url;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum HttpForwardError {
    #[error("http upstream {url} did not answer within {after:?}")]
    Timeout { url: String, after: Duration },
    #[error("http upstream {url} failed: {reason}")]
    Failed { url: String, reason: String },
}

pub struct HttpForwarder {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    url: http::Uri,
    shown: String,
    timeout: Duration,
    max_body: usize,
}

impl HttpForwarder {
    pub fn new(url: &str, timeout: Duration, max_body: usize) -> Result<Self, String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("{}: {e}", redact_url(url)))?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        Ok(HttpForwarder {
            client,
            url: uri,
            shown: redact_url(url),
            timeout,
            max_body,
        })
    }

    /// POST `body` upstream; returns the upstream's status and body.
    pub async fn forward(
        &self,
        body: Bytes,
    ) -> Result<(http::StatusCode, Bytes), HttpForwardError> {
        self.post_to(self.url.clone(), &self.shown, "application/json", body)
            .await
    }

    /// POST `body` to another URL with this forwarder's client, timeout and size limit
    /// (`shown` is the URL as errors may show it: redacted).
    pub async fn post_to(
        &self,
        url: http::Uri,
        shown: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<(http::StatusCode, Bytes), HttpForwardError> {
        let fail = |reason: String| HttpForwardError::Failed {
            url: shown.to_string(),
            reason,
        };
        let req = http::Request::post(url)
            .header(http::header::CONTENT_TYPE, content_type)
            .body(Full::new(body))
            .map_err(|e| fail(e.to_string()))?;
        let work = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), self.max_body)
                .collect()
                .await
                .map_err(|e| fail(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| HttpForwardError::Timeout {
                url: shown.to_string(),
                after: self.timeout,
            })?
    }
}
