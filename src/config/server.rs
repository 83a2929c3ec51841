//! `[server]`: the listener, connection limits, client timeouts and trusted proxies.

use super::ConfigError;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: String,
    /// Browser origins allowed to connect (`Origin` header); empty = any.
    pub allowed_origins: Vec<String>,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub trusted_proxies: Vec<String>,
    pub max_frame_bytes: usize,
    pub max_batch_len: usize,
    pub max_subscriptions_per_connection: usize,
    pub max_inflight_per_connection: usize,
    pub max_requests_per_second: u32,
    pub request_burst: u32,
    pub client_queue_len: usize,
    pub client_ping_interval_ms: u64,
    pub client_idle_timeout_ms: u64,
    pub write_timeout_ms: u64,
    pub shutdown_delay_ms: u64,
    pub shutdown_grace_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8545".into(),
            allowed_origins: Vec::new(),
            max_connections: 10_000,
            max_connections_per_ip: 1_000,
            trusted_proxies: Vec::new(),
            max_frame_bytes: 1 << 20,
            max_batch_len: 1000,
            max_subscriptions_per_connection: 1000,
            max_inflight_per_connection: 256,
            max_requests_per_second: 500,
            request_burst: 1000,
            client_queue_len: 256,
            client_ping_interval_ms: 20_000,
            client_idle_timeout_ms: 70_000,
            write_timeout_ms: 10_000,
            shutdown_delay_ms: 0,
            shutdown_grace_ms: 5_000,
        }
    }
}

/// A trusted proxy: an IP address or CIDR range (`10.0.0.0/8`, `fd00::/8`, `127.0.0.1`).
/// IPv4-mapped IPv6 addresses (`::ffff:10.1.1.1`, as a dual-stack listener sees IPv4 peers)
/// match IPv4 ranges, and IPv4 addresses match IPv4-mapped ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet(ipnet::IpNet);

impl IpNet {
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

impl std::str::FromStr for IpNet {
    type Err = ipnet::AddrParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let net = match s.parse::<std::net::IpAddr>() {
            Ok(addr) => ipnet::IpNet::from(addr),
            Err(_) => s.parse::<ipnet::IpNet>()?,
        };
        // A range of IPv4-mapped addresses is kept as the IPv4 range it maps.
        let net = match net {
            ipnet::IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
                Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                    .map(ipnet::IpNet::V4)
                    .unwrap_or(net),
                None => net,
            },
            _ => net,
        };
        Ok(IpNet(net))
    }
}

/// What validating `[server]` gives beyond its plain values.
pub(super) struct ServerParts {
    pub listen: SocketAddr,
    pub trusted_proxies: Vec<IpNet>,
}

impl ServerConfig {
    /// Check `[server]`; `listen_override` is `SUBMUX_LISTEN`, `line` finds a key's line.
    pub(super) fn validate(
        &self,
        listen_override: Option<&str>,
        line: impl Fn(&str, usize, &str) -> Option<usize>,
    ) -> Result<ServerParts, ConfigError> {
        let s = self;
        let bad = |m: String| Err(ConfigError::Invalid(m));
        for o in &s.allowed_origins {
            if !(o.starts_with("http://") || o.starts_with("https://")) || o.ends_with('/') {
                return bad(format!(
                    "server.allowed_origins: {o:?} is not an origin (scheme://host[:port], no path)"
                ));
            }
        }
        let listen_text = listen_override.unwrap_or(&s.listen);
        let listen: SocketAddr = match listen_text.parse() {
            Ok(a) => a,
            Err(e) => {
                let origin = match (listen_override, line("[server]", 0, "listen")) {
                    (Some(_), _) => " (from SUBMUX_LISTEN)".to_string(),
                    (None, Some(n)) => format!(" (line {n})"),
                    (None, None) => String::new(),
                };
                return bad(format!(
                    "server.listen = {listen_text:?}{origin}: {e} (want HOST:PORT, e.g. 127.0.0.1:8545)"
                ));
            }
        };
        for (name, v) in [
            ("server.max_connections", s.max_connections),
            ("server.max_frame_bytes", s.max_frame_bytes),
            ("server.max_batch_len", s.max_batch_len),
            (
                "server.max_subscriptions_per_connection",
                s.max_subscriptions_per_connection,
            ),
            (
                "server.max_inflight_per_connection",
                s.max_inflight_per_connection,
            ),
            ("server.client_queue_len", s.client_queue_len),
        ] {
            if v == 0 {
                return bad(format!("{name} must be greater than 0"));
            }
        }
        for (name, v) in [
            ("server.client_ping_interval_ms", s.client_ping_interval_ms),
            ("server.client_idle_timeout_ms", s.client_idle_timeout_ms),
            ("server.write_timeout_ms", s.write_timeout_ms),
        ] {
            if v == 0 {
                return bad(format!("{name} must be greater than 0"));
            }
        }
        if s.client_idle_timeout_ms <= s.client_ping_interval_ms {
            return bad(
                "server.client_idle_timeout_ms must be longer than server.client_ping_interval_ms"
                    .into(),
            );
        }
        let mut trusted_proxies = Vec::new();
        for p in &s.trusted_proxies {
            match p.parse::<IpNet>() {
                Ok(net) => trusted_proxies.push(net),
                Err(e) => {
                    let at = line("[server]", 0, "trusted_proxies")
                        .map(|n| format!(" (line {n})"))
                        .unwrap_or_default();
                    return bad(format!(
                        "server.trusted_proxies{at}: {p:?} is not an IP address or CIDR range ({e}; e.g. \"10.0.0.0/8\")"
                    ));
                }
            }
        }
        if s.max_connections_per_ip == 0 {
            return bad("server.max_connections_per_ip must be greater than 0".into());
        }
        Ok(ServerParts {
            listen,
            trusted_proxies,
        })
    }
}
