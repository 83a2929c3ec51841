//! Wallet-like workload (issue 15): `cargo bench --bench wallet [-- --quick]`.
//!
//! 1,000 clients (half over WebSocket, half over HTTP POST with keep-alive) each send
//! `eth_chainId` once when they connect, then poll `eth_blockNumber`, `eth_getBalance` of
//! their own address, `eth_getBalance` of a popular address and one `eth_call` on one
//! contract, one after the other, `--polls-per-block` times per block (default 3: viem's
//! 4 s `pollingInterval` against Ethereum's 12 s blocks; 1 is also measured). The chain is
//! the simulated node with a block every `--block-ms` (default 4000; time runs 3× faster
//! than on Ethereum, so 3,000 calls/s reach the node direct), in this process;
//! submux runs as a child process (the release binary). The same workload then runs with
//! the clients straight to the node (its WebSocket and HTTP ports), in the same run. The
//! node answers each call after `--node-ms` (default 1 ms, see `wallet/node.rs`); the bare
//! simulator, which answers in microseconds, is measured too.
//!
//! Reported: client calls, upstream calls (every call the node answered, counted by the
//! node itself: misses, submux's head probes, everything), upstream calls per client
//! call, and round-trip latency per method through submux vs direct.
//! Targets (2 cores): ≥ 10× fewer upstream calls than client calls; cached round trips at
//! least 1.5× as fast as direct.

mod common;
#[path = "wallet/node.rs"]
mod node;

use bytes::Bytes;
use common::{connect, verdict, write_result, Submux, Ws};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use submux::sim::ethereum::{contract_address, EthSim, EthSimConfig};

const POPULAR: &str = "0xdac17f958d2ee523a2206206994597c13d831ec7";
const METHODS: [&str; 4] = [
    "eth_blockNumber",
    "balance (own)",
    "balance (popular)",
    "eth_call",
];

struct Opts {
    clients: usize,
    blocks: u64,
    block_ms: u64,
    /// The node's service time per call (the front before the simulator).
    node_ms: u64,
    quick: bool,
}

impl Opts {
    fn parse() -> Opts {
        let quick = std::env::args().any(|a| a == "--quick");
        Opts {
            clients: common::arg("--clients").unwrap_or(if quick { 200 } else { 1_000 }),
            blocks: common::arg("--blocks").unwrap_or(if quick { 3 } else { 5 }),
            block_ms: common::arg("--block-ms").unwrap_or(if quick { 1_500 } else { 4_000 }),
            node_ms: common::arg("--node-ms").unwrap_or(1),
            quick,
        }
    }
}

/// Round trips of one run, in µs, per method and transport (0: WebSocket, 1: HTTP).
#[derive(Default)]
struct Samples {
    rtt: [[Vec<u32>; 4]; 2],
    calls: u64,
    errors: u64,
}

fn params(i: usize, client: usize) -> (&'static str, String) {
    let own = format!("0x{:040x}", 0xa000_0000u64 + client as u64);
    match i {
        0 => ("eth_blockNumber", "[]".into()),
        1 => ("eth_getBalance", format!(r#"["{own}","latest"]"#)),
        2 => ("eth_getBalance", format!(r#"["{POPULAR}","latest"]"#)),
        _ => (
            "eth_call",
            format!(
                r#"[{{"to":"{}","data":"0x70a08231000000000000000000000000{}"}},"latest"]"#,
                contract_address(1),
                &POPULAR[2..]
            ),
        ),
    }
}

type Http = Client<HttpConnector, Full<Bytes>>;

async fn post(http: &Http, url: &str, body: String) -> Result<String, String> {
    let req = http::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let res = http.request(req).await.map_err(|e| e.to_string())?;
    let body = res.into_body().collect().await.map_err(|e| e.to_string())?;
    String::from_utf8(body.to_bytes().to_vec()).map_err(|e| e.to_string())
}

enum Conn {
    Ws(Box<Ws>),
    Http(Http, String),
}

impl Conn {
    async fn call(&mut self, id: u64, method: &str, params: &str) -> Result<String, String> {
        match self {
            Conn::Ws(ws) => common::try_request(ws, id, method, params).await,
            Conn::Http(http, url) => {
                let body = format!(
                    r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}}}"#
                );
                post(http, url, body).await
            }
        }
    }
}

/// One run: `clients` wallets for `blocks` blocks against `ws_url` / `http_url`.
async fn run(o: &Opts, ws_url: &str, http_url: &str, polls_per_block: u64) -> Samples {
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Samples::default()));
    let started = Arc::new(AtomicU64::new(0));
    let mut http = Client::builder(TokioExecutor::new());
    http.pool_idle_timeout(Duration::from_secs(30));
    let http: Http = http.build_http();
    let poll = Duration::from_millis(o.block_ms / polls_per_block);
    let clients = o.clients;
    let mut tasks = Vec::new();
    for client in 0..o.clients {
        let (stop, samples, started) = (stop.clone(), samples.clone(), started.clone());
        let transport = client % 2;
        let (ws_url, http_url, http) = (ws_url.to_string(), http_url.to_string(), http.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = if transport == 0 {
                Conn::Ws(Box::new(connect(&ws_url).await))
            } else {
                Conn::Http(http, http_url)
            };
            let mut local = Samples::default();
            let mut id = 1u64;
            match conn.call(id, "eth_chainId", "[]").await {
                Ok(r) if r.contains("\"result\"") => local.calls += 1,
                _ => local.errors += 1,
            }
            started.fetch_add(1, Relaxed);
            // Measured once every wallet is connected, after one poll of warm-up.
            while started.load(Relaxed) < clients as u64 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            for i in 0..4 {
                let (method, p) = params(i, client);
                id += 1;
                // Counted as client calls (the node counts them too), not timed.
                match conn.call(id, method, &p).await {
                    Ok(r) if r.contains("\"result\"") => local.calls += 1,
                    _ => local.errors += 1,
                }
            }
            // Each wallet polls on its own timer, at a random phase.
            tokio::time::sleep(poll.mul_f64(fastrand::f64())).await;
            let mut tick = tokio::time::interval(poll);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop.load(Relaxed) {
                tick.tick().await;
                if stop.load(Relaxed) {
                    break;
                }
                for i in 0..4 {
                    let (method, p) = params(i, client);
                    id += 1;
                    let t = Instant::now();
                    match conn.call(id, method, &p).await {
                        Ok(r) if r.contains("\"result\"") => {
                            local.calls += 1;
                            let us = t.elapsed().as_micros().min(u32::MAX as u128) as u32;
                            local.rtt[transport][i].push(us);
                        }
                        _ => local.errors += 1,
                    }
                }
            }
            let mut s = samples.lock().unwrap_or_else(|p| p.into_inner());
            s.calls += local.calls;
            s.errors += local.errors;
            for (t, per) in local.rtt.into_iter().enumerate() {
                for (m, v) in per.into_iter().enumerate() {
                    s.rtt[t][m].extend(v);
                }
            }
        }));
    }
    while started.load(Relaxed) < o.clients as u64 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(o.block_ms * o.blocks)).await;
    stop.store(true, Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    Arc::try_unwrap(samples)
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        .unwrap_or_default()
}

fn pct(v: &mut [u32], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i] as f64
}

struct Measured {
    client_calls: u64,
    upstream: u64,
    errors: u64,
    /// p50 per transport per method.
    p50: [[f64; 4]; 2],
    p99: [[f64; 4]; 2],
}

fn measure(mut s: Samples, upstream: u64) -> Measured {
    let mut p50 = [[0.0; 4]; 2];
    let mut p99 = [[0.0; 4]; 2];
    for t in 0..2 {
        for m in 0..4 {
            p50[t][m] = pct(&mut s.rtt[t][m], 0.5);
            p99[t][m] = pct(&mut s.rtt[t][m], 0.99);
        }
    }
    Measured {
        client_calls: s.calls,
        upstream,
        errors: s.errors,
        p50,
        p99,
    }
}

/// submux over `node_ws`, once it follows the head.
async fn submux_over(o: &Opts, node_ws: &str) -> Submux {
    let max = o.clients * 2 + 100;
    let mux = Submux::with_config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nmax_connections = {max}\nmax_connections_per_ip = {max}\nmax_requests_per_second = 0\nmax_inflight_per_connection = 64\n\n[[route]]\npath = \"/eth\"\ndialect = \"ethereum\"\nupstreams = [\"{node_ws}\"]\ncache = true\n"
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = mux.metrics().await.unwrap_or_default();
        if m.get("submux_followed_head{route=\"/eth\"}")
            .copied()
            .unwrap_or(0.0)
            > 0.0
        {
            return mux;
        }
        assert!(Instant::now() < deadline, "submux never followed the head");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What one scenario showed: its section, calls ÷ upstream calls, the worst p50 ratio
/// (direct ÷ submux) over the cached kinds, and errors.
struct Outcome {
    text: String,
    fewer: f64,
    worst: f64,
    errors: u64,
}

/// One scenario: the workload through submux, then direct, against one node.
async fn scenario(o: &Opts, sim: &EthSim, title: &str, node: (&str, &str), polls: u64) -> Outcome {
    let mux = submux_over(o, node.0).await;
    let mux_http = format!("http://{}/eth", mux.addr());
    eprintln!("{title}: through submux …");
    let before = sim.calls();
    let via = run(o, &mux.url(), &mux_http, polls).await;
    let via = measure(via, sim.calls() - before);
    let counters = match mux.metrics().await {
        Ok(m) => {
            let get = |k: &str| {
                m.get(&format!("{k}{{route=\"/eth\"}}"))
                    .copied()
                    .unwrap_or(0.0)
            };
            format!(
                "submux counters: cache hits {}, misses {}, head answers {}, coalesced {}, calls saved {}, latest waits {}.\n\n",
                get("submux_cache_hits_total"),
                get("submux_cache_misses_total"),
                get("submux_head_answers_total"),
                get("submux_coalesced_calls_total"),
                get("submux_upstream_calls_saved_total"),
                get("submux_latest_waits_total"),
            )
        }
        Err(e) => format!("metrics unavailable: {e}\n\n"),
    };
    drop(mux);
    eprintln!("{title}: direct …");
    let before = sim.calls();
    let direct = run(o, node.0, node.1, polls).await;
    let direct = measure(direct, sim.calls() - before);
    let per = via.upstream as f64 / via.client_calls.max(1) as f64;
    let fewer = via.client_calls as f64 / via.upstream.max(1) as f64;
    let mut text = format!(
        "## {title}\n\n| | through submux | direct |\n|---|---|---|\n| client calls | {} | {} |\n| upstream calls (answered by the node) | {} | {} |\n| upstream calls per client call | **{per:.3}** ({fewer:.1}× fewer) | 1.000 |\n| errors | {} | {} |\n\n",
        via.client_calls, direct.client_calls, via.upstream, direct.upstream, via.errors, direct.errors
    );
    text.push_str("| round trip p50 / p99 (µs) | transport | through submux | direct | direct ÷ submux (p50) |\n|---|---|---|---|---|\n");
    for (t, name) in ["WebSocket", "HTTP POST"].iter().enumerate() {
        for (m, method) in METHODS.iter().enumerate() {
            let ratio = direct.p50[t][m] / via.p50[t][m].max(1.0);
            text.push_str(&format!(
                "| {method} | {name} | {:.0} / {:.0} | {:.0} / {:.0} | {ratio:.2}× |\n",
                via.p50[t][m], via.p99[t][m], direct.p50[t][m], direct.p99[t][m]
            ));
        }
    }
    text.push('\n');
    text.push_str(&counters);
    // Cached kinds: the head answer and the shared reads (the own balance is a miss at
    // its first poll of each block).
    let worst = (0..2)
        .flat_map(|t| [0usize, 2, 3].into_iter().map(move |m| (t, m)))
        .map(|(t, m)| direct.p50[t][m] / via.p50[t][m].max(1.0))
        .fold(f64::INFINITY, f64::min);
    Outcome {
        text,
        fewer,
        worst,
        errors: via.errors + direct.errors,
    }
}

fn main() {
    if !common::invoked_as_bench("wallet") {
        return;
    }
    let o = Opts::parse();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let sim = EthSim::start(EthSimConfig {
            block_interval: Some(Duration::from_millis(o.block_ms)),
            pending_per_block: 0,
            ..EthSimConfig::default()
        })
        .await
        .expect("sim");
        let sim_http = sim.serve_http().await.expect("sim http");
        let delay = Duration::from_millis(o.node_ms);
        let front = node::start(sim.url(), sim_http.clone(), delay).await;
        let mut out = format!(
            "# Wallet workload (issue 15)\n\n{} clients ({} WebSocket, {} HTTP POST), a block every {} ms, {} blocks per run; `eth_chainId` once per client, then per poll `eth_blockNumber`, own `eth_getBalance`, popular `eth_getBalance`, `eth_call`, one after the other. Simulated node in the bench process, submux a child process (release build); {} CPU(s).\n\n",
            o.clients,
            o.clients.div_ceil(2),
            o.clients / 2,
            o.block_ms,
            o.blocks,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
        );
        let node_title = format!("node answering each call after a {} ms timer, 3 polls per block", o.node_ms);
        let main = scenario(&o, &sim, &node_title, (&front.ws, &front.http), 3).await;
        let raw = scenario(&o, &sim, "bare simulator (answers in µs, in the bench process), 3 polls per block", (&sim.url(), &sim_http), 3).await;
        let once = scenario(&o, &sim, &format!("node answering each call after a {} ms timer, 1 poll per block", o.node_ms), (&front.ws, &front.http), 1).await;
        let ok_calls = main.fewer >= 10.0 && main.errors == 0;
        let ok_rtt = main.worst >= 1.5;
        out.push_str(&format!(
            "**Targets** ({node_title}): ≥ 10× fewer upstream calls than client calls: {:.1}× **{}**; cached round trips (`eth_blockNumber`, popular balance, `eth_call`; both transports) ≥ 1.5× as fast as direct at p50: worst {:.2}× **{}**. Against the bare simulator, which answers faster than a hop costs: {:.1}× fewer calls, cached round trips {:.2}× direct (worst). At one poll per block: {:.1}× fewer (each wallet's own balance is a new question every block, so about 4 client calls per upstream call).\n\n",
            main.fewer,
            verdict(ok_calls),
            main.worst,
            verdict(ok_rtt),
            raw.fewer,
            raw.worst,
            once.fewer,
        ));
        for s in [&main, &raw, &once] {
            out.push_str(&s.text);
        }
        out.push_str(&format!(
            "Command: `flock /tmp/bench.lock cargo bench --bench wallet --{}{}`.\n",
            if o.quick { " --quick" } else { "" },
            if o.node_ms != 1 { format!(" --node-ms {}", o.node_ms) } else { String::new() }
        ));
        println!("{out}");
        write_result(if o.quick { "wallet-quick.md" } else { "wallet.md" }, &out);
    });
}
