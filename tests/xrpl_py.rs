//! xrpl-py (the XRPL Foundation's Python library) directly and through submux against the
//! simulated rippled: runs tests/python/test_xrpl_py.py with `SUBMUX_BIN` set to this
//! crate's binary. Its `AsyncWebsocketClient` subscribes (ledger stream, accounts),
//! receives a payment notification, unsubscribes and asks account_info, on both paths at
//! once; `AsyncJsonRpcClient` posts account_info over HTTP.
//!
//! Needs the virtualenv tests/python/.venv with tests/python/requirements.txt installed
//! (`scripts/test` creates it). A missing virtualenv fails the test; it never skips it.

use std::path::Path;
use std::process::Command;

#[test]
fn xrpl_py_sees_the_same_through_submux_as_directly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("tests/python/.venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: the xrpl-py test needs its virtualenv.\n\
         Run `scripts/test` (creates it, then runs cargo test) or \
         `python3 -m venv tests/python/.venv && tests/python/.venv/bin/pip install -r \
         tests/python/requirements.txt` first.",
        python.display()
    );
    let status = Command::new(&python)
        .arg("tests/python/test_xrpl_py.py")
        .current_dir(root)
        .env("SUBMUX_BIN", env!("CARGO_BIN_EXE_submux"))
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        status.success(),
        "tests/python/test_xrpl_py.py failed ({status}); its output above names the \
         failing scenario"
    );
}
