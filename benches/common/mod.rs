//! Shared by the end-to-end benchmarks (`load`, `soak`): submux as a child process with
//! the three simulated routes, readings from its `/proc` entry and its `/metrics`, and a
//! small WebSocket client.
#![allow(dead_code)] // each bench uses its own subset

pub mod relay;

use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// `cargo test --benches` runs bench binaries without `--bench`: they stay out of test runs.
pub fn invoked_as_bench(name: &str) -> bool {
    if std::env::args().any(|a| a == "--bench") {
        return true;
    }
    println!("{name} benchmark: run with `cargo bench --bench {name}` (add `-- --quick` for a short run)");
    false
}

/// The value after `--flag` on the command line, parsed.
pub fn arg<T: std::str::FromStr>(flag: &str) -> Option<T> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == flag)?;
    args.get(i + 1)?.parse().ok()
}

/// Write a result table to `bench-results/{name}`.
pub fn write_result(name: &str, text: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-results");
    let _ = std::fs::create_dir_all(&dir);
    if let Err(e) = std::fs::write(dir.join(name), text) {
        eprintln!("could not write bench-results/{name}: {e}");
    }
}

/// A field of /proc/PID/status in its unit (kB for memory), 0 if unreadable.
pub fn proc_field(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// utime + stime of a process, in seconds.
pub fn cpu_secs(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

/// submux running as a child process (the release binary cargo built for the bench) with
/// routes `/eth`, `/sol` and `/xrpl` over the given upstreams; killed on drop.
pub struct Submux {
    child: Child,
    addr: String,
    _dir: std::path::PathBuf,
}

impl Submux {
    pub fn start(eth: &str, sol_ws: &str, xrpl_ws: &str) -> Submux {
        Submux::with_config(&format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nmax_connections = 19000\nmax_connections_per_ip = 19000\nmax_requests_per_second = 0\n\n[[route]]\npath = \"/eth\"\ndialect = \"ethereum\"\nupstreams = [\"{eth}\"]\n\n[[route]]\npath = \"/sol\"\ndialect = \"solana\"\nupstreams = [\"{sol_ws}\"]\n\n[[route]]\npath = \"/xrpl\"\ndialect = \"xrpl\"\nupstreams = [\"{xrpl_ws}\"]\n\n[[route]]\npath = \"/api/v1/ws\"\ndialect = \"lnbits\"\n"
        ))
    }

    /// submux with only an `/eth` route over `eth`, `client_queue_len` as given and
    /// connection limits high enough for `max_clients` from one address.
    pub fn eth_only(eth: &str, client_queue_len: usize, max_clients: usize) -> Submux {
        Submux::with_config(&format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nmax_connections = {max_clients}\nmax_connections_per_ip = {max_clients}\nmax_requests_per_second = 0\nclient_queue_len = {client_queue_len}\n\n[[route]]\npath = \"/eth\"\ndialect = \"ethereum\"\nupstreams = [\"{eth}\"]\n"
        ))
    }

    /// submux with the given TOML configuration (its `listen` must be port 0).
    pub fn with_config(toml: &str) -> Submux {
        static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!("submux-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let cfg = dir.join(format!("bench-{n}.toml"));
        std::fs::write(&cfg, toml).expect("config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_submux"))
            .arg("--config")
            .arg(&cfg)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn submux");
        let out = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line).expect("read");
        let addr = line
            .trim()
            .strip_prefix("submux listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_string();
        Submux {
            child,
            addr,
            _dir: dir,
        }
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// `HOST:PORT`
    pub fn addr(&self) -> &str {
        &self.addr
    }
    pub fn url(&self) -> String {
        format!("ws://{}/eth", self.addr)
    }
    pub fn sol_url(&self) -> String {
        format!("ws://{}/sol", self.addr)
    }
    pub fn xrpl_url(&self) -> String {
        format!("ws://{}/xrpl", self.addr)
    }
    /// An LNbits channel of the `/api/v1/ws` route.
    pub fn channel_url(&self, item: &str) -> String {
        format!("ws://{}/api/v1/ws/{item}", self.addr)
    }
    /// `GET /metrics`, as `name{labels}` → value.
    pub async fn metrics(&self) -> Result<HashMap<String, f64>, String> {
        let mut tcp = TcpStream::connect(&self.addr)
            .await
            .map_err(|e| e.to_string())?;
        let req = format!(
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        tcp.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut body = String::new();
        tcp.read_to_string(&mut body)
            .await
            .map_err(|e| e.to_string())?;
        let (head, text) = body.split_once("\r\n\r\n").ok_or("no HTTP body")?;
        if !head.starts_with("HTTP/1.1 200") {
            return Err(format!("/metrics answered {head}"));
        }
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect())
    }
}

impl Drop for Submux {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One WebSocket connection attempt (small read buffer, as a lean client would use).
pub async fn try_connect(url: &str) -> Result<Ws, String> {
    let cfg = WebSocketConfig::default().read_buffer_size(8 * 1024);
    tokio_tungstenite::connect_async_with_config(url, Some(cfg), true)
        .await
        .map(|(ws, _)| ws)
        .map_err(|e| format!("connect {url}: {e}"))
}

/// Connect, retrying for about a second (panics after that).
pub async fn connect(url: &str) -> Ws {
    let mut last = String::new();
    for _ in 0..50 {
        match try_connect(url).await {
            Ok(ws) => return ws,
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{last}")
}

/// Send a JSON-RPC request and wait for its reply (notifications before it are skipped).
pub async fn request(ws: &mut Ws, id: u64, method: &str, params: &str) -> String {
    try_request(ws, id, method, params)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// [`request`], with the connection's end as an error instead of a panic.
pub async fn try_request(
    ws: &mut Ws,
    id: u64,
    method: &str,
    params: &str,
) -> Result<String, String> {
    let req = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}}}"#);
    ws.send(Message::text(req))
        .await
        .map_err(|e| format!("send: {e}"))?;
    // geth puts the id before the result, jsonrpc-core (Solana) after it.
    let (mid, end) = (format!("\"id\":{id},"), format!("\"id\":{id}}}"));
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.contains(&mid) || t.ends_with(&end) => {
                return Ok(t.to_string())
            }
            Some(Ok(_)) => continue,
            other => return Err(format!("connection ended: {other:?}")),
        }
    }
}

/// CPU time of process `pid`'s live threads whose name starts with `prefix` ("" for all),
/// in seconds at nanosecond resolution (`/proc/PID/task/*/schedstat`). Threads that have
/// exited no longer count: use it for deltas over a window in which none exits.
pub fn threads_cpu_secs(pid: u32, prefix: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    dir.flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|n| n.starts_with(prefix))
        })
        .filter_map(|t| {
            let s = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
            s.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum::<f64>()
        / 1e9
}

/// The median and the range of some figures (`NaN`s left out).
#[derive(Debug, Clone, Copy, Default)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Spread {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Spread {
        let mut v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return Spread {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
                n: 0,
            };
        }
        v.sort_by(f64::total_cmp);
        let m = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[m]
        } else {
            (v[m - 1] + v[m]) / 2.0
        };
        Spread {
            median,
            min: v[0],
            max: v[v.len() - 1],
            n: v.len(),
        }
    }

    /// `median (min–max)` with `decimals` decimals and thousands separators; `—` if empty.
    pub fn show(&self, decimals: usize, unit: &str) -> String {
        if self.n == 0 {
            return "—".into();
        }
        let f = |x: f64| thousands(x, decimals);
        if self.n == 1 {
            return format!("{}{unit}", f(self.median));
        }
        format!("{}{unit} ({}–{})", f(self.median), f(self.min), f(self.max))
    }
}

/// `x` with `decimals` decimals and a comma every three digits.
pub fn thousands(x: f64, decimals: usize) -> String {
    let s = format!("{:.*}", decimals, x.abs());
    let (int, frac) = s.split_once('.').map_or((s.as_str(), ""), |(i, f)| (i, f));
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    if x < 0.0 {
        out.insert(0, '-');
    }
    out
}
