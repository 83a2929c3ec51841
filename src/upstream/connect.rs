//! Opening upstream WebSocket connections (ws:// and wss:// with the webpki roots).

use crate::telemetry::redact_url;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type UpstreamStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connecting to {url} timed out after {after:?}")]
    Timeout { url: String, after: Duration },
    #[error("connecting to {url} failed: {reason}")]
    Failed { url: String, reason: String },
}

/// Read buffer of an upstream connection (few sockets, busy).
pub const UPSTREAM_READ_BUFFER: usize = 16 * 1024;
/// Read buffer of a client session: allocated eagerly per client, so it is what an idle
/// client costs; client frames are small requests.
pub const CLIENT_READ_BUFFER: usize = 4 * 1024;

/// Small buffers: tungstenite zero-fills its read buffer before every read, so the
/// default 128 KiB costs throughput with small frames (see DESIGN.md), and it is
/// allocated up front for every connection.
pub fn ws_config(max_message: usize, read_buffer: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(read_buffer)
        .write_buffer_size(0)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

/// Connect to `url` within `timeout`. Errors carry the redacted URL only.
pub async fn connect(
    url: &str,
    timeout: Duration,
    max_message: usize,
) -> Result<UpstreamStream, ConnectError> {
    let fut = tokio_tungstenite::connect_async_tls_with_config(
        url,
        Some(ws_config(max_message, UPSTREAM_READ_BUFFER)),
        true,
        None,
    );
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok((ws, _resp))) => Ok(ws),
        Ok(Err(e)) => Err(ConnectError::Failed {
            url: redact_url(url),
            reason: redact_reason(&e.to_string(), url),
        }),
        Err(_) => Err(ConnectError::Timeout {
            url: redact_url(url),
            after: timeout,
        }),
    }
}

/// Make sure an error text never repeats the secret-bearing URL.
fn redact_reason(reason: &str, url: &str) -> String {
    reason.replace(url, &redact_url(url))
}
