//! The `submux` binary: run with a config, check a config, or run the offline demo.

use anyhow::Context as _;
use clap::Parser;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;
use submux::config::{RawConfig, RouteConfig, ServerConfig};
use submux::dialect::DialectKind;
use submux::sim::ethereum::{EthSim, EthSimConfig};
use submux::sim::lnbits::{LnbitsSim, DEMO_INKEY, DEMO_PAYMENT_HASH};
use submux::sim::solana::{SolSim, SolSimConfig};
use submux::sim::xrpl::{XrplSim, XrplSimConfig};

/// WebSocket proxy and subscription multiplexer for Ethereum, Solana, XRPL and LNbits.
///
/// Without --config, runs the built-in demo: simulated upstream nodes started in-process
/// and one route per implemented dialect (works offline).
#[derive(Parser, Debug)]
#[command(name = "submux", version, about, long_about = None)]
struct Cli {
    /// Run with this TOML configuration (see deploy/submux.example.toml).
    #[arg(long, value_name = "FILE", conflicts_with = "check_config")]
    config: Option<PathBuf>,
    /// Validate this TOML configuration and exit (non-zero with a message on error).
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
    /// Print the effective configuration (defaults filled in, SUBMUX_LISTEN applied,
    /// upstream URLs redacted) of --config FILE, or of the demo without it, and exit.
    #[arg(long)]
    print_config: bool,
    /// Run only a simulated upstream node of this dialect (ethereum, solana, xrpl, or lnbits:
    /// an LNbits-like channel server with a payment stream) on loopback ports, print its
    /// URLs, and wait for Ctrl-C. For tests and experiments.
    #[arg(long, value_name = "DIALECT", conflicts_with_all = ["config", "check_config"])]
    sim: Option<DialectKind>,
    /// With --sim: the simulated chain's pace in milliseconds (Ethereum block, Solana slot,
    /// XRPL ledger); 0 = only on demand (the HTTP `sim_*` control methods). Default: 2000,
    /// 400 and 1000.
    #[arg(long, value_name = "MS", requires = "sim")]
    sim_interval_ms: Option<u64>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Some(path) = &cli.check_config {
        let listen = std::env::var("SUBMUX_LISTEN").ok();
        return match RawConfig::load(path).and_then(|c| c.validate(listen.as_deref())) {
            Ok(s) => {
                for w in &s.warnings {
                    eprintln!("submux: warning: {w}");
                }
                println!(
                    "{}: ok ({} route{}, listen {})",
                    path.display(),
                    s.routes.len(),
                    if s.routes.len() == 1 { "" } else { "s" },
                    s.listen
                );
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("submux: invalid configuration: {e}");
                std::process::ExitCode::from(2)
            }
        };
    }
    submux::telemetry::init_tracing();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("submux: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("submux: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run_sim(kind: DialectKind, interval_ms: Option<u64>) -> anyhow::Result<()> {
    let every = |default_ms: u64| match interval_ms.unwrap_or(default_ms) {
        0 => None,
        ms => Some(Duration::from_millis(ms)),
    };
    let _keep: Box<dyn std::any::Any> = match kind {
        DialectKind::Payments => {
            anyhow::bail!("payments is a feed over other routes, not a node: run the demo (no --config) to see it")
        }
        DialectKind::Ethereum => {
            let sim = EthSim::start(EthSimConfig {
                block_interval: every(2000),
                ..EthSimConfig::default()
            })
            .await?;
            println!("sim ethereum {}", sim.url());
            Box::new(sim)
        }
        DialectKind::Solana => {
            let sim = SolSim::start(SolSimConfig {
                slot_interval: every(400),
            })
            .await?;
            println!("sim solana {} {}", sim.ws_url(), sim.http_url());
            Box::new(sim)
        }
        DialectKind::Lnbits => {
            let mut route = RouteConfig::new(LNBITS_PATH, DialectKind::Lnbits, vec![]);
            route.linger_ms = 0;
            let raw = RawConfig {
                server: ServerConfig {
                    listen: "127.0.0.1:0".into(),
                    ..ServerConfig::default()
                },
                routes: vec![route],
                backplane: None,
                source: None,
                auth: Default::default(),
            };
            let running = submux::start(raw.validate(None)?).await?;
            let sim = lnbits_sim(&running);
            println!(
                "sim lnbits {} {}",
                running.ws_url(LNBITS_PATH),
                running.http_url(LNBITS_PATH)
            );
            Box::new((running, sim))
        }
        DialectKind::Xrpl => {
            let sim = XrplSim::start(XrplSimConfig {
                ledger_interval: every(1000),
                ..XrplSimConfig::default()
            })
            .await?;
            println!("sim xrpl {} {}", sim.ws_url(), sim.http_url());
            Box::new(sim)
        }
    };
    let _ = std::io::stdout().flush();
    submux::shutdown::signal().await;
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(kind) = cli.sim {
        return run_sim(kind, cli.sim_interval_ms).await;
    }
    let listen = std::env::var("SUBMUX_LISTEN").ok();
    let (raw, demo) = match &cli.config {
        Some(path) => (RawConfig::load(path)?, None),
        None => {
            let (raw, sims) = demo_config().await?;
            (raw, Some(sims))
        }
    };
    if cli.print_config {
        print!("{}", raw.effective_toml(listen.as_deref())?);
        return Ok(());
    }
    let settings = raw
        .validate(listen.as_deref())
        .context("invalid configuration")?;
    for w in &settings.warnings {
        tracing::warn!("{w}");
    }
    let routes: Vec<(String, DialectKind)> = settings
        .routes
        .iter()
        .map(|r| (r.path.clone(), r.dialect))
        .collect();
    let running = submux::start(settings).await?;
    // The demo's LNbits route gets a simulated payment stream.
    let _payments = demo.is_some().then(|| lnbits_sim(&running));
    // Machine-readable line for scripts and tests (stdout; logs go to stderr).
    println!("submux listening on http://{}", running.addr);
    if demo.is_some() {
        print_banner(&running, &routes);
    }
    let _ = std::io::stdout().flush();
    submux::shutdown::signal().await;
    tracing::info!(
        "shutdown requested: not ready any more; closing clients and unsubscribing upstream"
    );
    let clean = running.drain_and_stop().await;
    drop(demo);
    if !clean {
        tracing::warn!("some tasks did not finish within the grace period");
    }
    Ok(())
}

/// The demo's LNbits route (LNbits' own websocket path).
const LNBITS_PATH: &str = "/api/v1/ws";

/// A payment every 3 s on the LNbits route of `running`, if it has one.
fn lnbits_sim(running: &submux::Running) -> Option<LnbitsSim> {
    running
        .channels
        .iter()
        .find(|c| &*c.path == LNBITS_PATH)
        .map(|c| LnbitsSim::start(c.clone(), Duration::from_secs(3)))
}

/// Simulators kept alive for the demo's lifetime.
struct DemoSims {
    _eth: Vec<std::sync::Arc<EthSim>>,
    _sol: SolSim,
    _xrpl: XrplSim,
}

/// The offline demo: two simulated Ethereum nodes (primary and failover) behind /eth, a
/// simulated Solana validator behind /sol, a simulated rippled behind /xrpl (a ledger every
/// 3 s, a payment every second), an LNbits channel hub at /api/v1/ws (its payment stream
/// starts with the server).
async fn demo_config() -> anyhow::Result<(RawConfig, DemoSims)> {
    let cfg = EthSimConfig {
        block_interval: Some(Duration::from_secs(2)),
        ..EthSimConfig::default()
    };
    let primary = EthSim::start(cfg.clone())
        .await
        .context("starting simulator")?;
    let backup = EthSim::start(cfg).await.context("starting simulator")?;
    let route = RouteConfig::new(
        "/eth",
        DialectKind::Ethereum,
        vec![primary.url(), backup.url()],
    );
    let sol = SolSim::start(SolSimConfig {
        slot_interval: Some(Duration::from_millis(400)),
    })
    .await
    .context("starting simulator")?;
    let mut sol_route = RouteConfig::new("/sol", DialectKind::Solana, vec![sol.ws_url()]);
    sol_route.http_upstream = Some(sol.http_url());
    let xrpl = XrplSim::start(XrplSimConfig {
        ledger_interval: Some(Duration::from_secs(3)),
        payment_interval: Some(Duration::from_secs(1)),
        ..XrplSimConfig::default()
    })
    .await
    .context("starting simulator")?;
    let xrpl_route = RouteConfig::new("/xrpl", DialectKind::Xrpl, vec![xrpl.ws_url()]);
    let raw = RawConfig {
        server: ServerConfig::default(),
        routes: vec![
            route,
            sol_route,
            xrpl_route,
            RouteConfig::new(LNBITS_PATH, DialectKind::Lnbits, vec![]),
            payments_route(),
        ],
        backplane: None,
        source: None,
        auth: Default::default(),
    };
    Ok((
        raw,
        DemoSims {
            _eth: demo_eth_payments(vec![primary, backup]),
            _sol: sol,
            _xrpl: xrpl,
        },
    ))
}

/// The demo's Ethereum payee: ether and a token arrive every 6 s.
const DEMO_ETH_PAYEE: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
/// The demo's token contract (decimals pinned in the demo's payments route).
const DEMO_TOKEN: &str = "0x00000000000000000000000000000000000000aa";

/// Queue the same ether and token transfers on both simulated nodes (so failover keeps
/// them) every 6 s.
fn demo_eth_payments(sims: Vec<EthSim>) -> Vec<std::sync::Arc<EthSim>> {
    let sims: Vec<_> = sims.into_iter().map(std::sync::Arc::new).collect();
    let keep = sims.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(6));
        for n in 1u128.. {
            tick.tick().await;
            for sim in &keep {
                let payer = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";
                sim.send_ether(payer, DEMO_ETH_PAYEE, n * 1_000_000_000_000_000, true);
                sim.send_token(
                    DEMO_TOKEN,
                    payer,
                    DEMO_ETH_PAYEE,
                    &format!("{:064x}", n * 2_500_000),
                );
            }
        }
    });
    sims
}

/// The demo's payments feed over its simulated /xrpl and /eth (log in memory).
const PAYMENTS_PATH: &str = "/payments";

fn payments_route() -> RouteConfig {
    let mut r = RouteConfig::new(PAYMENTS_PATH, DialectKind::Payments, vec![]);
    r.payments = Some(submux::config::PaymentsRouteConfig {
        xrpl: Some("/xrpl".into()),
        ethereum: Some("/eth".into()),
        solana: Some("/sol".into()),
        lnbits: Some(LNBITS_PATH.into()),
        ethereum_confirmations: Some(3),
        token: vec![submux::config::TokenConfig {
            chain: "ethereum".into(),
            address: DEMO_TOKEN.into(),
            decimals: 6,
            symbol: Some("USDS".into()),
        }],
        ..Default::default()
    });
    r
}

fn print_banner(running: &submux::Running, routes: &[(String, DialectKind)]) {
    println!();
    println!("submux demo: simulated upstreams, no network needed. Ctrl-C to stop.");
    for (path, dialect) in routes {
        if *dialect == DialectKind::Payments {
            println!(
                "  {dialect:<9} {}  (payments_subscribe; HTTP POST payments_history: {})",
                running.ws_url(path),
                running.http_url(path)
            );
            continue;
        }
        if *dialect == DialectKind::Lnbits {
            println!(
                "  {dialect:<9} {}/{{item_id}}  (channel hub; push: GET {1}/{{item_id}}/{{data}}, POST {1}/{{item_id}}?data=…)",
                running.ws_url(path),
                running.http_url(path)
            );
            continue;
        }
        println!(
            "  {dialect:<9} {}  (HTTP POST JSON-RPC: {})",
            running.ws_url(path),
            running.http_url(path)
        );
    }
    println!(
        "  health    {}  {}  {}",
        running.http_url("/healthz"),
        running.http_url("/readyz"),
        running.http_url("/metrics")
    );
    println!();
    println!("Try it (a new block every 2 s):");
    println!(
        "  websocat {}   # then paste: {{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_subscribe\",\"params\":[\"newHeads\"]}}",
        running.ws_url("/eth")
    );
    println!(
        "  wscat -c {} -x '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_subscribe\",\"params\":[\"newHeads\"]}}' -w 10",
        running.ws_url("/eth")
    );
    println!(
        "  curl -s -H 'content-type: application/json' -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_blockNumber\"}}' {}",
        running.http_url("/eth")
    );
    if routes.iter().any(|(_, d)| *d == DialectKind::Solana) {
        println!(
            "  websocat {}   # then paste: {{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"slotSubscribe\"}}",
            running.ws_url("/sol")
        );
    }
    if routes.iter().any(|(_, d)| *d == DialectKind::Xrpl) {
        println!(
            "  websocat {}   # then paste: {{\"id\":1,\"command\":\"subscribe\",\"streams\":[\"ledger\",\"transactions\"],\"api_version\":2}}",
            running.ws_url("/xrpl")
        );
    }
    if routes.iter().any(|(p, _)| p == PAYMENTS_PATH) {
        let payee = submux::sim::xrpl::sim_address(1);
        println!();
        println!("Incoming payments (the simulated rippled pays {payee} every few seconds):");
        println!(
            "  websocat {}   # then paste: {{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"payments_subscribe\",\"params\":[{{\"chain\":\"xrpl\",\"address\":\"{payee}\"}}]}}",
            running.ws_url(PAYMENTS_PATH)
        );
        println!(
            "  websocat {}   # ether and a token, pending → confirmed → final: {{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"payments_subscribe\",\"params\":[{{\"chain\":\"ethereum\",\"address\":\"{DEMO_ETH_PAYEE}\"}}]}}",
            running.ws_url(PAYMENTS_PATH)
        );
        println!(
            "  websocat {}   # the demo LNbits wallet: {{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"payments_subscribe\",\"params\":[{{\"chain\":\"lightning\",\"address\":\"{DEMO_INKEY}\"}}]}}",
            running.ws_url(PAYMENTS_PATH)
        );
        println!(
            "  curl -s -H 'content-type: application/json' -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"payments_history\",\"params\":[{{\"chain\":\"xrpl\",\"address\":\"{payee}\"}}]}}' {}",
            running.http_url(PAYMENTS_PATH)
        );
    }
    if routes.iter().any(|(p, _)| p == LNBITS_PATH) {
        let (ws, http) = (running.ws_url(LNBITS_PATH), running.http_url(LNBITS_PATH));
        println!();
        println!("LNbits (a simulated wallet is paid every 3 s):");
        println!("  websocat {ws}/{DEMO_INKEY}   # the wallet's payments, as LNbits sends them");
        println!(
            "  websocat '{ws}/{DEMO_PAYMENT_HASH}?since=0&seq=1'   # the invoice's status, replayed and numbered"
        );
        println!("  curl -s {http}/{DEMO_INKEY}/hello   # push to everyone on that key");
    }
    println!();
}
