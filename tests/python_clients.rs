//! Python client libraries directly and through submux, each against a simulated node:
//! - xrpl-py (tests/python/test_xrpl_py.py): `AsyncWebsocketClient` subscribes (ledger
//!   stream, accounts), receives a payment, unsubscribes and asks account_info on both
//!   paths at once; `AsyncJsonRpcClient` posts account_info over HTTP.
//! - web3.py (tests/python/test_web3_py.py): `AsyncWeb3` + `WebSocketProvider` (binary
//!   frames, as web3.py sends them) for calls and a newHeads subscription.
//! - websockets (tests/python/test_deflate_py.py, a web3.py dependency): permessage-deflate
//!   negotiated by the library's defaults on a route that enables it; a compressing and a
//!   plain client receive the same `newHeads` and `logs` notifications; bytes saved printed.
//!
//! Needs the virtualenv tests/python/.venv with tests/python/requirements.txt installed
//! (`scripts/test` creates it). A missing virtualenv fails the tests; it never skips them.

use std::path::Path;
use std::process::Command;

fn run_script(script: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("tests/python/.venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: the Python client tests need their virtualenv.\n\
         Run `scripts/test` (creates it, then runs cargo test) or \
         `python3 -m venv tests/python/.venv && tests/python/.venv/bin/pip install -r \
         tests/python/requirements.txt` first.",
        python.display()
    );
    let status = Command::new(&python)
        .arg(script)
        .current_dir(root)
        .env("SUBMUX_BIN", env!("CARGO_BIN_EXE_submux"))
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        status.success(),
        "{script} failed ({status}); its output above names the failing scenario"
    );
}

#[test]
fn xrpl_py_sees_the_same_through_submux_as_directly() {
    run_script("tests/python/test_xrpl_py.py");
}

#[test]
fn web3_py_sees_the_same_through_submux_as_directly() {
    run_script("tests/python/test_web3_py.py");
}

#[test]
fn websockets_negotiates_permessage_deflate_and_sees_the_same_as_a_plain_client() {
    run_script("tests/python/test_deflate_py.py");
}
