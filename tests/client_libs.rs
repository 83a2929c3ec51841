//! Real client libraries, directly and through submux: ethers v6, viem and web3.js against
//! four real Ethereum nodes (ganache in text and in binary-frame mode, anvil, Hardhat's node;
//! tests/clients/eth-*.test.mjs, whose quirks tests/clients/eth-nodes.test.mjs probes and
//! docs/nodes.md tabulates), @solana/web3.js v1 and @solana/kit
//! against the simulated Solana validator (tests/clients/solana.test.mjs), xrpl.js against
//! the simulated rippled (tests/clients/xrpl.test.mjs). Runs
//! `node --test tests/clients/` with `SUBMUX_BIN` set to this crate's binary.
//!
//! Needs Node.js >= 20 and the npm packages of tests/clients (installed by `scripts/test`,
//! or `npm ci --prefix tests/clients`). Missing packages fail the test; they never skip it.

use std::path::Path;
use std::process::Command;

#[test]
fn client_libraries_see_the_same_through_submux_as_directly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let clients = root.join("tests").join("clients");
    assert!(
        clients.join("node_modules").is_dir(),
        "{} is missing: the client-library tests need their npm packages.\n\
         Run `scripts/test` (installs them, then runs cargo test) or \
         `npm ci --prefix tests/clients` first.",
        clients.join("node_modules").display()
    );

    let status = Command::new("node")
        .arg("--test")
        .arg("tests/clients/")
        .current_dir(root)
        .env("SUBMUX_BIN", env!("CARGO_BIN_EXE_submux"))
        .status()
        .unwrap_or_else(|e| panic!("cannot run `node` (Node.js >= 20 is required): {e}"));
    assert!(
        status.success(),
        "`node --test tests/clients/` failed ({status}); its output above names the failing \
         scenario and the WebSocket frames it exchanged"
    );
}
