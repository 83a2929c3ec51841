//! nginx/submux.conf in front of submux, with a real nginx: `node --test tests/nginx/`
//! with `SUBMUX_BIN` set to this crate's binary. See tests/nginx/nginx.test.mjs: wss://
//! subscriptions (ethers v6), https:// POSTs and batches, the 1 MiB body limit, an idle
//! WebSocket kept open (10 s; 75 s with `SUBMUX_SLOW_TESTS=1`), HTTP→HTTPS redirects and
//! the shutdown close, all through TLS with a throwaway CA from nginx/gen-selfsigned.sh.
//!
//! Needs nginx (`scripts/test` installs it; or `apt-get install -y nginx`), openssl,
//! Node.js 20 or newer and the npm packages of tests/clients (ethers, ws). Anything missing
//! fails the test; it never skips.

use std::path::Path;
use std::process::Command;

#[test]
fn nginx_terminates_tls_for_websockets_and_http_json_rpc() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let modules = root.join("tests").join("clients").join("node_modules");
    assert!(
        modules.join("ethers").is_dir() && modules.join("ws").is_dir(),
        "{} has no ethers/ws: the nginx test uses the client-library packages.\n\
         Run `scripts/test` (installs them, then runs cargo test) or \
         `npm ci --prefix tests/clients` first.",
        modules.display()
    );

    let status = Command::new("node")
        .arg("--test")
        .arg("tests/nginx/")
        .current_dir(root)
        .env("SUBMUX_BIN", env!("CARGO_BIN_EXE_submux"))
        .status()
        .unwrap_or_else(|e| panic!("cannot run `node` (Node.js >= 20 is required): {e}"));
    assert!(
        status.success(),
        "`node --test tests/nginx/` failed ({status}); its output above names the failing \
         scenario with submux's and nginx's output (if nginx is missing: run `.ci/run` or \
         `apt-get install -y nginx`)"
    );
}
