//! Opening upstream WebSocket connections (ws:// and wss:// with the webpki roots).

use crate::telemetry::redact_url;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
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

/// What one message read from an upstream socket carries.
#[derive(Debug)]
pub enum Inbound {
    /// A data frame's text: a text frame, or a binary frame holding UTF-8.
    Text(Utf8Bytes),
    /// A binary frame that is not UTF-8: malformed (counted, then ignored).
    NotUtf8,
    /// A control frame (ping, pong, close) or a raw frame.
    Control(Message),
}

/// Nodes may answer in binary frames (ganache `--server.wsBinary`, some gateways); every
/// client library reads a binary frame's UTF-8 as JSON, and so does geth's own server
/// (`rpc/websocket.go` reads both types alike). So a binary frame is handled exactly as a
/// text frame, without a copy; only bytes that are not UTF-8 are malformed.
pub fn inbound(msg: Message) -> Inbound {
    match msg {
        Message::Text(text) => Inbound::Text(text),
        Message::Binary(bytes) => {
            Utf8Bytes::try_from(bytes).map_or(Inbound::NotUtf8, Inbound::Text)
        }
        other => Inbound::Control(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_utf8_is_text_and_other_bytes_are_malformed() {
        let json = r#"{"jsonrpc":"2.0","id":1,"result":"0x1"}"#;
        match inbound(Message::binary(json.as_bytes().to_vec())) {
            Inbound::Text(t) => assert_eq!(t.as_str(), json),
            other => panic!("binary UTF-8 not read as text: {other:?}"),
        }
        match inbound(Message::text(json)) {
            Inbound::Text(t) => assert_eq!(t.as_str(), json),
            other => panic!("text not read as text: {other:?}"),
        }
        assert!(matches!(
            inbound(Message::binary(vec![0xff, 0xfe, b'{'])),
            Inbound::NotUtf8
        ));
        assert!(matches!(
            inbound(Message::Ping(Default::default())),
            Inbound::Control(_)
        ));
    }

    /// The upstream parsers' fuzz corpus as binary frames, valid and invalid UTF-8: a
    /// binary frame is parsed exactly as the same text in a text frame, bytes that are not
    /// UTF-8 never reach a parser, and nothing panics.
    #[test]
    fn binary_frames_fuzz_through_every_upstream_parser() {
        use crate::dialect::fuzz::{check_upstream, mutate_bytes, SEEDS};
        use crate::dialect::DialectKind;
        let iterations: usize = std::env::var("SUBMUX_FUZZ_ITERATIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20_000);
        for kind in [
            DialectKind::Ethereum,
            DialectKind::Solana,
            DialectKind::Xrpl,
        ] {
            let d = kind.build().expect("implemented dialect");
            let mut rng = fastrand::Rng::with_seed(0xb1 ^ kind as u64);
            let (mut valid, mut invalid) = (0, 0);
            for _ in 0..iterations {
                let seed = SEEDS[rng.usize(..SEEDS.len())];
                let bytes = mutate_bytes(&mut rng, seed, true);
                let utf8 = std::str::from_utf8(&bytes).ok().map(str::to_owned);
                match (inbound(Message::binary(bytes)), utf8) {
                    (Inbound::Text(t), Some(s)) => {
                        assert_eq!(t.as_str(), s);
                        check_upstream(&*d, &t);
                        valid += 1;
                    }
                    (Inbound::NotUtf8, None) => invalid += 1,
                    (got, utf8) => panic!("binary frame misread: {got:?} for {utf8:?}"),
                }
            }
            assert!(
                valid > iterations / 4 && invalid > iterations / 10,
                "{valid} {invalid}"
            );
        }
    }
}
