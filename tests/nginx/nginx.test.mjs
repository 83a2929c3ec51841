// nginx/submux.conf proven with a REAL nginx: TLS termination in front of submux's
// built-in demo (/eth: simulated Ethereum, a block every 2 s; /sol: simulated Solana).
//
//   SUBMUX_BIN=$PWD/target/debug/submux node --test tests/nginx/
//   SUBMUX_SLOW_TESTS=1 ...   the idle check lasts 75 s (past submux's 70 s client idle
//                             timeout and nginx's 60 s default proxy_read_timeout)
//                             instead of 10 s
//   NGINX_BIN=/path/to/nginx  use that nginx instead of the one on PATH / in /usr/sbin
//   SUBMUX_NGINX_CONF=FILE    test an edited copy of nginx/submux.conf instead
//   SUBMUX_TEST_VERBOSE=1     echo submux's and nginx's output live
//
// The Rust wrapper tests/nginx_tls.rs runs this with SUBMUX_BIN set (cargo test).
// What happens: nginx/gen-selfsigned.sh makes a CA and a localhost certificate in a temp
// dir; submux (no --config: the demo) listens on a loopback port of its choosing
// (SUBMUX_LISTEN=127.0.0.1:0, read back from its stdout line); a copy of
// nginx/submux.conf with the temp cert paths and free ports substituted (the exact
// strings the conf documents at its top) is included from a minimal nginx.conf, and nginx
// runs in the foreground with its pid, logs and temp files in the temp dir. Everything is
// killed on exit, also on failure. No nginx installed is a FAILURE, never a skip.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { existsSync, accessSync, rmSync, constants as fsc } from "node:fs";
import { mkdtemp, mkdir, readFile, writeFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve, delimiter } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import net from "node:net";
import tls from "node:tls";
import http from "node:http";
import https from "node:https";
import { sleep, withTimeout, waitFor } from "../clients/lib/util.mjs";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const CONF = process.env.SUBMUX_NGINX_CONF ? resolve(process.env.SUBMUX_NGINX_CONF) : join(ROOT, "nginx", "submux.conf");
const GEN = join(ROOT, "nginx", "gen-selfsigned.sh");
const SLOW = process.env.SUBMUX_SLOW_TESTS === "1";
const VERBOSE = !!process.env.SUBMUX_TEST_VERBOSE;
const IDLE_MS = SLOW ? 75_000 : 10_000;
const CHAIN_ID = 1337n; // the demo's simulated chain
const MAX_FRAME_BYTES = 1_048_576; // submux's default max_frame_bytes = nginx client_max_body_size 1m
const PING_INTERVAL_MS = 20_000; // submux's default client_ping_interval_ms


/** A free loopback TCP port (closed again before use; nginx start is retried on a clash). */
function freePort() {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.unref();
    s.on("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

function findNginx() {
  if (process.env.NGINX_BIN) {
    accessSync(process.env.NGINX_BIN, fsc.X_OK); // throws, naming the path, if it is not there
    return process.env.NGINX_BIN;
  }
  const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin"];
  for (const d of dirs) {
    if (!d) continue;
    const p = join(d, "nginx");
    try {
      accessSync(p, fsc.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return null;
}

/** Lines of a child's output, the last `max` kept for failure reports. */
function ringLog(name, max = 400) {
  const lines = [];
  return {
    push(stream, line) {
      lines.push(`[${name} ${stream}] ${line}`);
      if (lines.length > max) lines.splice(0, lines.length - max);
      if (VERBOSE) process.stderr.write(`[${name} ${stream}] ${line}\n`);
    },
    text: () => lines.join("\n"),
  };
}

/** Every process group we started, so an exit handler can SIGKILL leftovers. */
const groups = new Set();
function killAll() {
  for (const pid of groups) {
    try {
      process.kill(-pid, "SIGKILL");
    } catch {
      // gone
    }
  }
}
process.on("exit", killAll);
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.once(sig, () => {
    killAll();
    if (fx.dir) rmSync(fx.dir, { recursive: true, force: true });
    process.exit(128 + (sig === "SIGINT" ? 2 : sig === "SIGTERM" ? 15 : 1));
  });
}

/** Spawn in its own process group (so nginx's workers go with it); collect output. */
function startChild(name, bin, args, opts = {}) {
  const log = ringLog(name);
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"], detached: true, ...opts });
  if (child.pid !== undefined) groups.add(child.pid);
  let exited = null;
  const exit = new Promise((res) => {
    child.on("exit", (code, signal) => {
      exited = { code, signal };
      groups.delete(child.pid);
      res(exited);
    });
    child.on("error", (e) => {
      log.push("spawn", String(e));
      exited = { code: null, signal: null, error: e };
      res(exited);
    });
  });
  createInterface({ input: child.stderr }).on("line", (l) => log.push("stderr", l));
  const stdoutLines = createInterface({ input: child.stdout });
  stdoutLines.on("line", (l) => log.push("stdout", l));
  const signalGroup = (sig) => {
    try {
      process.kill(-child.pid, sig);
    } catch {
      // gone
    }
  };
  return {
    child,
    log,
    stdoutLines,
    exit,
    exited: () => exited,
    /** SIGTERM (graceful), then SIGKILL to the whole group after `graceMs`. */
    async stop(graceMs = 7_000) {
      if (child.pid === undefined) return exited;
      if (!exited) {
        signalGroup("SIGTERM");
        const r = await withTimeout(exit, graceMs, `${name} to exit after SIGTERM`).catch(() => null);
        if (!r) signalGroup("SIGKILL");
        await exit;
      }
      signalGroup("SIGKILL"); // leftover workers, if any
      groups.delete(child.pid);
      return exited;
    },
  };
}

// ---- fixture ----------------------------------------------------------------------------

const fx = {
  dir: null,
  ca: null,
  submux: null,
  submuxPort: null,
  nginx: null,
  tlsPort: null,
  httpPort: null,
  ethers: null,
  WebSocket: null,
  cleanups: [],
};

function loadClientLibs() {
  const req = createRequire(join(ROOT, "tests", "clients", "package.json"));
  try {
    fx.ethers = req("ethers").ethers;
    fx.WebSocket = req("ws");
  } catch (e) {
    throw new Error(
      `ethers/ws not found in tests/clients/node_modules (${e.message}).\n` +
        `Run \`scripts/test\` (installs them) or \`npm ci --prefix tests/clients\`.`,
    );
  }
}

async function startSubmux() {
  const bin = process.env.SUBMUX_BIN;
  assert.ok(
    bin,
    "SUBMUX_BIN is not set: run `SUBMUX_BIN=$PWD/target/debug/submux node --test tests/nginx/` " +
      "(after `cargo build --bin submux`) or `cargo test --test nginx_tls`",
  );
  // Port 0: submux picks a free port and prints it, so there is no race for this one.
  const sm = startChild("submux", resolve(bin), [], {
    env: { RUST_LOG: "info", ...process.env, SUBMUX_LISTEN: "127.0.0.1:0" },
  });
  fx.submux = sm;
  const base = await withTimeout(
    new Promise((res, rej) => {
      sm.stdoutLines.on("line", (l) => {
        const m = /^submux listening on (http:\/\/127\.0\.0\.1:(\d+))\s*$/.exec(l);
        if (m) res(m[1]);
      });
      sm.exit.then((r) => rej(new Error(`submux exited (${JSON.stringify(r)}) before listening`)));
    }),
    20_000,
    "submux to print `submux listening on http://127.0.0.1:PORT`",
  );
  fx.submuxPort = Number(new URL(base).port);
  await waitFor(
    async () => {
      const r = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(2_000) });
      await r.arrayBuffer();
      return r.status === 200;
    },
    { timeoutMs: 20_000, what: `GET ${base}/readyz == 200 (demo upstreams connected)` },
  );
}

/**
 * Replace `from` by `to` in the conf's directives (comment lines are left alone),
 * insisting on `count` occurrences (a number or the allowed numbers): the strings the
 * conf documents at its top.
 */
function substitute(text, from, to, count = 1) {
  let n = 0;
  const out = text
    .split("\n")
    .map((line) => {
      if (line.trimStart().startsWith("#")) return line;
      n += line.split(from).length - 1;
      return line.split(from).join(to);
    })
    .join("\n");
  const allowed = [count].flat();
  assert.ok(
    allowed.includes(n),
    `nginx/submux.conf should contain ${JSON.stringify(from)} ${allowed.join(" or ")}× outside comments (found ${n}); ` +
      `the test substitutes it — update the conf's header and this test together`,
  );
  return out;
}

async function renderNginx(dir, tlsPort, httpPort) {
  let conf = await readFile(CONF, "utf8");
  conf = substitute(conf, "server 127.0.0.1:8545;", `server 127.0.0.1:${fx.submuxPort};`);
  conf = substitute(conf, "listen 443 ssl;", `listen 127.0.0.1:${tlsPort} ssl;`);
  conf = substitute(conf, "listen [::]:443 ssl;", "# (IPv6 listen removed by the test)", [0, 1]);
  conf = substitute(conf, "listen 80;", `listen 127.0.0.1:${httpPort};`);
  conf = substitute(conf, "listen [::]:80;", "# (IPv6 listen removed by the test)", [0, 1]);
  conf = substitute(conf, "/etc/letsencrypt/live/submux.example.com/fullchain.pem", join(fx.dir, "certs", "server.crt"));
  conf = substitute(conf, "/etc/letsencrypt/live/submux.example.com/privkey.pem", join(fx.dir, "certs", "server.key"));
  await writeFile(join(dir, "submux.conf"), conf);

  const tmp = join(dir, "tmp");
  await mkdir(tmp, { recursive: true });
  // The test's own main file: only what a distribution's nginx.conf would provide, with
  // every path inside the temp dir. Workers must write temp files there: as root they
  // would otherwise switch to `nobody`, who cannot enter a mkdtemp (0700) directory.
  const main = [
    process.getuid?.() === 0 ? "user root;" : "# not root: workers keep our user",
    "worker_processes 1;",
    `pid ${join(dir, "nginx.pid")};`,
    "error_log stderr info;",
    "events { worker_connections 512; }",
    "http {",
    `  log_format t '$remote_addr "$request" $status $body_bytes_sent rt=$request_time up=$upstream_addr us=$upstream_status';`,
    `  access_log ${join(dir, "access.log")} t;`,
    `  client_body_temp_path ${join(tmp, "body")};`,
    `  proxy_temp_path ${join(tmp, "proxy")};`,
    `  fastcgi_temp_path ${join(tmp, "fastcgi")};`,
    `  uwsgi_temp_path ${join(tmp, "uwsgi")};`,
    `  scgi_temp_path ${join(tmp, "scgi")};`,
    `  include ${join(dir, "submux.conf")};`,
    "}",
    "",
  ].join("\n");
  const mainPath = join(dir, "nginx.conf");
  await writeFile(mainPath, main);
  return mainPath;
}

async function startNginx(bin) {
  let lastError;
  for (let attempt = 1; attempt <= 3; attempt++) {
    const dir = join(fx.dir, `nginx-${attempt}`);
    await mkdir(dir, { recursive: true });
    const [tlsPort, httpPort] = [await freePort(), await freePort()];
    const mainPath = await renderNginx(dir, tlsPort, httpPort);
    const args = ["-p", dir, "-e", "stderr", "-c", mainPath];

    const t = spawnSync(bin, [...args, "-t"], { encoding: "utf8" });
    if (t.status !== 0) {
      throw new Error(`nginx -t rejected the rendered configuration:\n${t.stderr}\n--- ${mainPath} includes ${join(dir, "submux.conf")}`);
    }

    const ng = startChild("nginx", bin, [...args, "-g", "daemon off;"]);
    fx.nginx = ng;
    fx.tlsPort = tlsPort;
    fx.httpPort = httpPort;
    fx.nginxDir = dir;
    try {
      await waitFor(
        async () => {
          if (ng.exited()) throw new Error(`nginx exited: ${JSON.stringify(ng.exited())}`);
          const r = await request({ path: "/healthz" });
          return r.status === 200;
        },
        { timeoutMs: 10_000, what: `GET https://localhost:${tlsPort}/healthz == 200 through nginx` },
      );
      return;
    } catch (e) {
      lastError = e;
      await ng.stop(2_000);
      if (!/Address already in use/.test(ng.log.text())) break;
      // a port was taken between freePort() and nginx's bind: try other ports
    }
  }
  throw new Error(`nginx did not come up: ${lastError?.message}\n${fx.nginx?.log.text()}`);
}

/** HTTPS (default, CA pinned to the test CA) or plain HTTP request; resolves {status, headers, body}. */
function request({ method = "GET", path, body, headers = {}, plain = false, port, timeoutMs = 10_000 }) {
  const mod = plain ? http : https;
  return new Promise((res, rej) => {
    const req = mod.request(
      {
        host: "localhost",
        family: 4, // nginx listens on 127.0.0.1 only; localhost may resolve to ::1 first
        port: port ?? fx.tlsPort,
        method,
        path,
        headers: body === undefined ? headers : { "content-type": "application/json", "content-length": Buffer.byteLength(body), ...headers },
        ...(plain ? {} : { ca: fx.ca, servername: "localhost" }),
        agent: false,
        timeout: timeoutMs,
      },
      (r) => {
        const chunks = [];
        r.on("data", (c) => chunks.push(c));
        r.on("end", () => res({ status: r.statusCode, headers: r.headers, body: Buffer.concat(chunks).toString("utf8") }));
        r.on("error", rej);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${method} ${path}: no answer within ${timeoutMs} ms`)));
    req.on("error", rej);
    req.end(body);
  });
}

async function postRpc(path, payload) {
  const r = await request({ method: "POST", path, body: JSON.stringify(payload) });
  assert.equal(r.status, 200, `POST ${path} ${JSON.stringify(payload)} → HTTP ${r.status}: ${r.body.slice(0, 300)}`);
  assert.match(r.headers["content-type"] ?? "", /application\/json/);
  return JSON.parse(r.body);
}

/** A `ws` client to wss://localhost:TLSPORT/path trusting only the test CA; records events. */
function openWs(path) {
  const ws = new fx.WebSocket(`wss://localhost:${fx.tlsPort}${path}`, { ca: fx.ca, family: 4 });
  const state = { ws, pings: 0, closed: null, errors: [], messages: [] };
  ws.on("ping", () => state.pings++);
  ws.on("close", (code, reason) => (state.closed = { code, reason: reason.toString(), at: Date.now() }));
  ws.on("error", (e) => state.errors.push(String(e)));
  ws.on("message", (m) => state.messages.push(JSON.parse(m.toString())));
  fx.cleanups.push(() => ws.terminate());
  state.opened = withTimeout(
    new Promise((res, rej) => {
      ws.once("open", res);
      ws.once("error", rej);
    }),
    10_000,
    `WebSocket open wss://localhost:${fx.tlsPort}${path}`,
  );
  let nextId = 1000;
  /** Send a request and wait for the reply with its id. */
  state.call = async (method, params) => {
    const id = nextId++;
    const seen = state.messages.length;
    ws.send(JSON.stringify({ jsonrpc: "2.0", id, method, ...(params ? { params } : {}) }));
    return waitFor(() => state.messages.slice(seen).find((m) => m.id === id), { what: `reply to ${method} (id ${id}) on ${path}` });
  };
  return state;
}

function diagnostics() {
  const access = fx.nginxDir ? join(fx.nginxDir, "access.log") : null;
  let accessTail = "(none)";
  try {
    if (access && existsSync(access)) {
      accessTail = spawnSync("tail", ["-n", "40", access], { encoding: "utf8" }).stdout;
    }
  } catch {
    // best effort
  }
  return (
    `----- submux output (tail) -----\n${fx.submux?.log.text().split("\n").slice(-60).join("\n") ?? ""}\n` +
    `----- nginx stderr (tail) -----\n${fx.nginx?.log.text().split("\n").slice(-60).join("\n") ?? ""}\n` +
    `----- nginx access log (tail) -----\n${accessTail}`
  );
}

/** A test that prints both processes' output when it fails. */
function scenario(name, timeout, fn) {
  test(name, { timeout }, async () => {
    try {
      await fn();
    } catch (e) {
      console.error(`\n===== FAILED: ${name} =====\n${e?.stack ?? e}\n${diagnostics()}\n===== end of ${name} =====\n`);
      throw e;
    }
  });
}

before(async () => {
  const bin = findNginx();
  if (!bin) {
    throw new Error(
      "nginx is not installed, so nginx/submux.conf cannot be tested (this test never skips).\n" +
        "Run `.ci/run` (installs it) or `apt-get install -y nginx` (or set NGINX_BIN).",
    );
  }
  loadClientLibs();
  fx.dir = await mkdtemp(join(tmpdir(), "submux-nginx-"));
  const gen = spawnSync("bash", [GEN, join(fx.dir, "certs")], { encoding: "utf8" });
  assert.equal(gen.status, 0, `nginx/gen-selfsigned.sh failed:\n${gen.stdout}\n${gen.stderr}`);
  fx.ca = await readFile(join(fx.dir, "certs", "ca.crt"));
  try {
    await startSubmux();
    await startNginx(bin);
  } catch (e) {
    console.error(diagnostics());
    throw e;
  }
});

after(async () => {
  for (const f of fx.cleanups.reverse()) {
    try {
      await f();
    } catch {
      // best effort
    }
  }
  await fx.nginx?.stop(5_000);
  await fx.submux?.stop(7_000);
  if (fx.dir) await rm(fx.dir, { recursive: true, force: true });
});

// ---- scenarios --------------------------------------------------------------------------

// Shared by the block and idle scenarios.
const live = { provider: null, blocks: [], ethersWs: null, idle: null };

scenario("wss:// through nginx: ethers v6 reads the chain id and receives new blocks", 30_000, async () => {
  const { ethers } = fx;
  // ethers' WebSocketProvider takes a ready-made WebSocket: a `ws` one trusting the test CA.
  const ws = openWs("/eth");
  live.ethersWs = ws;
  const provider = new ethers.WebSocketProvider(ws.ws);
  live.provider = provider;
  fx.cleanups.push(() => provider.destroy());
  await ws.opened;

  const network = await withTimeout(provider.getNetwork(), 10_000, "provider.getNetwork()");
  assert.equal(network.chainId, CHAIN_ID, "chain id through nginx");

  await provider.on("block", (n) => live.blocks.push({ n, at: Date.now() }));
  await waitFor(() => live.blocks.length >= 2, { timeoutMs: 10_000, what: "two new blocks (the demo makes one every 2 s)" });
  const [a, b] = live.blocks;
  assert.ok(b.n > a.n, `block numbers increase: ${a.n} then ${b.n}`);
  const head = await withTimeout(provider.getBlock(b.n), 10_000, `getBlock(${b.n})`);
  assert.equal(head.number, b.n);
});

/** A bare TLS handshake with the test server; resolves {protocol, cipher} or {error}. */
function handshake(opts) {
  return new Promise((res) => {
    const s = tls.connect({ host: "127.0.0.1", port: fx.tlsPort, servername: "localhost", ...opts }, () => {
      res({ protocol: s.getProtocol(), cipher: s.getCipher().name });
      s.end();
    });
    s.setTimeout(5_000, () => s.destroy(new Error("handshake timed out")));
    s.on("error", (e) => res({ error: e.code ?? e.message }));
  });
}

scenario("TLS: 1.3 and 1.2 accepted, 1.1 refused by the server, certificate verified against the CA", 15_000, async () => {
  const v13 = await handshake({ ca: fx.ca });
  assert.equal(v13.protocol, "TLSv1.3", JSON.stringify(v13));
  const v12 = await handshake({ ca: fx.ca, maxVersion: "TLSv1.2" });
  assert.equal(v12.protocol, "TLSv1.2", JSON.stringify(v12));
  assert.match(v12.cipher, /^ECDHE-/, "TLS 1.2 suites are forward-secret");
  // The client allows TLS 1.0/1.1 (security level 0), so the refusal is nginx's alert.
  const v11 = await handshake({ ca: fx.ca, minVersion: "TLSv1", maxVersion: "TLSv1.1", ciphers: "DEFAULT@SECLEVEL=0" });
  assert.ok(v11.error, `TLS 1.1 must be refused: ${JSON.stringify(v11)}`);
  if (v11.error !== "ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION") {
    console.warn(`note: this Node's OpenSSL refused TLS 1.1 itself (${v11.error}); nginx's refusal is not observed`);
  }
  // Without the test CA the certificate must not verify (proves the checks above verify it).
  const untrusted = await handshake({});
  assert.ok(untrusted.error, `a client without the CA must fail: ${JSON.stringify(untrusted)}`);
});

scenario("https:// POST through nginx: eth_blockNumber, a batch, and Solana's HTTP route", 20_000, async () => {
  const one = await postRpc("/eth", { jsonrpc: "2.0", id: 7, method: "eth_blockNumber" });
  assert.equal(one.id, 7);
  assert.match(one.result, /^0x[0-9a-f]+$/);
  const seen = live.blocks.at(-1)?.n ?? 0;
  assert.ok(Number(BigInt(one.result)) >= seen, `eth_blockNumber ${one.result} ≥ last block seen over wss (${seen})`);

  const batch = await postRpc("/eth", [
    { jsonrpc: "2.0", id: 1, method: "eth_blockNumber" },
    { jsonrpc: "2.0", id: "two", method: "eth_chainId" },
  ]);
  assert.ok(Array.isArray(batch) && batch.length === 2, `batch answer: ${JSON.stringify(batch)}`);
  const byId = new Map(batch.map((r) => [r.id, r]));
  assert.match(byId.get(1)?.result ?? "", /^0x[0-9a-f]+$/);
  assert.equal(byId.get("two")?.result, `0x${CHAIN_ID.toString(16)}`);

  const slot = await postRpc("/sol", { jsonrpc: "2.0", id: 1, method: "getSlot" });
  assert.equal(typeof slot.result, "number", `getSlot: ${JSON.stringify(slot)}`);

  // The TLS server adds HSTS to what submux answers.
  const r = await request({ method: "POST", path: "/eth", body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_chainId" }) });
  assert.match(r.headers["strict-transport-security"] ?? "", /max-age=\d+/);
});

scenario("wss:// /sol through nginx: slotSubscribe delivers notifications", 20_000, async () => {
  const ws = openWs("/sol");
  await ws.opened;
  const sub = await ws.call("slotSubscribe");
  assert.equal(typeof sub.result, "number", `slotSubscribe: ${JSON.stringify(sub)}`);
  await waitFor(() => ws.messages.filter((m) => m.method === "slotNotification" && m.params?.subscription === sub.result).length >= 2, {
    timeoutMs: 5_000,
    what: "two slotNotifications (a slot every 400 ms)",
  });
  ws.ws.close();
});

scenario("POST bodies up to max_frame_bytes (1 MiB) pass nginx; one byte more is refused by nginx with 413", 20_000, async () => {
  const call = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_chainId" });
  const exact = call + " ".repeat(MAX_FRAME_BYTES - call.length); // valid JSON, exactly 1 MiB
  assert.equal(Buffer.byteLength(exact), MAX_FRAME_BYTES);
  const ok = await request({ method: "POST", path: "/eth", body: exact });
  assert.equal(ok.status, 200, `a ${MAX_FRAME_BYTES}-byte body: HTTP ${ok.status} ${ok.body.slice(0, 200)}`);
  assert.equal(JSON.parse(ok.body).result, `0x${CHAIN_ID.toString(16)}`);

  const over = await request({ method: "POST", path: "/eth", body: exact + " " });
  assert.equal(over.status, 413, `a ${MAX_FRAME_BYTES + 1}-byte body: HTTP ${over.status}`);
  assert.match(over.body, /nginx/, "the 413 comes from nginx (client_max_body_size), before submux");
});

scenario("health endpoints are public through nginx; /metrics answers local clients", 10_000, async () => {
  for (const path of ["/healthz", "/readyz"]) {
    const r = await request({ path });
    assert.equal(r.status, 200, `GET ${path}: ${r.status} ${r.body}`);
  }
  const m = await request({ path: "/metrics" });
  assert.equal(m.status, 200);
  assert.match(m.body, /submux_sessions\{route="\/eth"\} [1-9]/, "the wss:// client above is counted as a session");
});

scenario(
  `an idle subscribed WebSocket survives ${IDLE_MS / 1000} s through nginx and still works` +
    (SLOW ? "" : " (SUBMUX_SLOW_TESTS=1: 75 s)"),
  IDLE_MS + 40_000,
  async () => {
    // Truly idle: a logs filter no simulated contract matches, so after the subscribe
    // reply the only traffic is submux's pings (every 20 s) and the client's pongs.
    const idle = openWs("/eth");
    live.idle = idle;
    await idle.opened;
    const sub = await idle.call("eth_subscribe", ["logs", { address: "0x000000000000000000000000000000000000dead" }]);
    assert.match(sub.result ?? "", /^0x[0-9a-f]+$/, `logs subscribe: ${JSON.stringify(sub)}`);
    const [pingsBefore, msgsBefore, blocksBefore] = [idle.pings, idle.messages.length, live.blocks.length];

    const started = Date.now();
    await sleep(IDLE_MS);

    assert.equal(idle.closed, null, `the idle socket was closed after ${(idle.closed?.at - started) / 1000} s: ${JSON.stringify(idle.closed)}`);
    assert.equal(idle.ws.readyState, fx.WebSocket.OPEN, "the idle socket is still open");
    assert.deepEqual(idle.errors, []);
    assert.equal(idle.messages.length, msgsBefore, "nothing but pings arrived on the idle socket");
    const pings = idle.pings - pingsBefore;
    const expected = Math.floor(IDLE_MS / PING_INTERVAL_MS);
    assert.ok(pings >= expected, `submux's pings cross nginx: ${pings} in ${IDLE_MS / 1000} s (expected ≥ ${expected})`);
    // Still usable both ways.
    const chain = await idle.call("eth_chainId");
    assert.equal(chain.result, `0x${CHAIN_ID.toString(16)}`);
    // The ethers socket (blocks every 2 s all along) is open and still receiving.
    assert.equal(live.ethersWs.closed, null, `the ethers socket was closed: ${JSON.stringify(live.ethersWs.closed)}`);
    const after = live.blocks.length;
    assert.ok(after > blocksBefore, "blocks kept arriving during the idle period");
    await waitFor(() => live.blocks.length > after, { timeoutMs: 6_000, what: "a new block after the idle period" });
  },
);

scenario("plain HTTP is redirected to HTTPS (308 keeps POST a POST), on port 80's server (but ACME challenges) and on the TLS port", 10_000, async () => {
  const get = await request({ plain: true, port: fx.httpPort, path: "/eth?x=1" });
  assert.equal(get.status, 308, `GET http://localhost:${fx.httpPort}/eth → ${get.status}`);
  assert.equal(get.headers.location, "https://localhost/eth?x=1");

  const post = await request({ plain: true, port: fx.httpPort, method: "POST", path: "/eth", body: "{}" });
  assert.equal(post.status, 308);
  assert.equal(post.headers.location, "https://localhost/eth");

  // ACME HTTP-01 challenges are served over plain HTTP (renewals), not redirected.
  const acme = await request({ plain: true, port: fx.httpPort, path: "/.well-known/acme-challenge/test-token" });
  assert.notEqual(acme.status, 308, "ACME challenges are not redirected");

  // Plain HTTP spoken to the TLS port (nginx's 497) → same port, https.
  const wrong = await request({ plain: true, port: fx.tlsPort, path: "/eth" });
  assert.equal(wrong.status, 308, `plain HTTP to the TLS port → ${wrong.status}`);
  assert.equal(wrong.headers.location, `https://localhost:${fx.tlsPort}/eth`);
});

scenario("submux's shutdown close (1001) reaches clients through nginx", 15_000, async () => {
  const idle = live.idle ?? openWs("/eth");
  await idle.opened;
  assert.equal(idle.closed, null);
  fx.submux.child.kill("SIGTERM");
  await waitFor(() => idle.closed, { timeoutMs: 10_000, what: "the WebSocket to be closed by submux's shutdown" });
  assert.equal(idle.closed.code, 1001, `close ${JSON.stringify(idle.closed)}`);
  assert.match(idle.closed.reason, /shutting down/);
  const r = await withTimeout(fx.submux.exit, 10_000, "submux to exit after SIGTERM");
  assert.equal(r.code, 0, `submux exit: ${JSON.stringify(r)}`);
});
