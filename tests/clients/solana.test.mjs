// Real Solana client libraries (@solana/web3.js v1 and @solana/kit) against the simulated
// Agave validator (`submux --sim solana`), directly and through submux: they must observe
// the same notifications and answers. Driven by tests/client_libs.rs (SUBMUX_BIN set).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startSim, startSubmux, stopAll } from "./lib/procs.mjs";
import { Connection, PublicKey, Keypair } from "@solana/web3.js";
import { createSolanaRpcSubscriptions, createSolanaRpc, address } from "@solana/kit";
import WebSocket from "ws";

const BIN = process.env.SUBMUX_BIN;
const connections = []; // web3.js Connections, closed before the processes stop
let sim; // { ws, http }
let mux; // { ws, http }

async function rpc(url, method, params = []) {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
  });
  return res.json();
}

async function waitFor(what, cond, ms = 10_000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// 64 random bytes, base58: a well-formed signature.
function randomSignature() {
  const A = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
  const bytes = crypto.getRandomValues(new Uint8Array(64));
  let n = BigInt("0x" + Buffer.from(bytes).toString("hex"));
  let s = "";
  while (n > 0n) {
    s = A[Number(n % 58n)] + s;
    n /= 58n;
  }
  for (const b of bytes) {
    if (b !== 0) break;
    s = "1" + s;
  }
  return s;
}

before(async () => {
  assert.ok(BIN, "SUBMUX_BIN must point at the submux binary (tests/client_libs.rs sets it)");
  sim = await startSim(BIN, "solana");
  mux = await startSubmux(BIN, { path: "/sol", dialect: "solana", upstream: sim });
});

after(() => {
  // web3.js v1 has no public close(); without this its sockets reconnect forever.
  for (const c of connections) {
    clearInterval(c._rpcWebSocketHeartbeat);
    clearTimeout(c._rpcWebSocketIdleTimeout);
    if (c._rpcWebSocket) {
      c._rpcWebSocket.reconnect = false;
      c._rpcWebSocket.close();
    }
  }
  stopAll();
});

/** What web3.js v1 delivers for one endpoint, with ids stripped. */
async function web3Scenario(endpoint, { account, program, mention, signature }) {
  const conn = new Connection(endpoint.http, { wsEndpoint: endpoint.ws, commitment: "confirmed" });
  connections.push(conn);
  const seen = { slots: [], roots: [], account: [], program: [], logsAll: [], logsMention: [], signature: [] };
  const ids = {
    slot: conn.onSlotChange((s) => seen.slots.push(s)),
    root: conn.onRootChange((r) => seen.roots.push(r)),
    account: conn.onAccountChange(
      account,
      (a, ctx) =>
        seen.account.push({
          lamports: a.lamports,
          owner: a.owner.toBase58(),
          data: Buffer.from(a.data).toString("hex"),
          rentEpoch: String(a.rentEpoch),
          executable: a.executable,
          slot: ctx.slot,
        }),
      { commitment: "confirmed", encoding: "base64" },
    ),
    program: conn.onProgramAccountChange(
      program,
      (k) => seen.program.push({ pubkey: k.accountId.toBase58(), lamports: k.accountInfo.lamports }),
      "confirmed",
    ),
    logsAll: conn.onLogs("all", (l) => seen.logsAll.push({ sig: l.signature, logs: l.logs, err: l.err })),
    logsMention: conn.onLogs(mention, (l) => seen.logsMention.push({ sig: l.signature, logs: l.logs })),
    signature: conn.onSignature(signature, (r, ctx) => seen.signature.push({ err: r.err, slot: ctx.slot }), "confirmed"),
  };
  return { conn, seen, ids };
}

test("@solana/web3.js v1 sees the same through submux as directly", async () => {
  const account = Keypair.generate().publicKey;
  const program = Keypair.generate().publicKey;
  const mention = Keypair.generate().publicKey;
  const signature = randomSignature();
  const args = { account, program, mention, signature };
  const direct = await web3Scenario(sim, args);
  const via = await web3Scenario(mux, args);
  // Subscriptions are established asynchronously: wait until slots flow on both.
  await waitFor("slot notifications on both", () => direct.seen.slots.length >= 2 && via.seen.slots.length >= 2);
  await waitFor("root notifications on both", () => direct.seen.roots.length >= 1 && via.seen.roots.length >= 1);
  await sleep(300); // every subscribe answered by now
  for (let i = 1; i <= 2; i++) {
    await rpc(sim.http, "sim_setAccount", [account.toBase58(), 1000 * i, program.toBase58(), [1, 2, 3, i]]);
  }
  await rpc(sim.http, "sim_emitLogs", [signature, [mention.toBase58()], ["Program log: submux"], null]);
  await rpc(sim.http, "sim_processSignature", [signature, null]);
  for (const s of [direct.seen, via.seen]) {
    await waitFor("account, program, logs and signature callbacks", () =>
      s.account.length === 2 && s.program.length === 2 && s.logsAll.length >= 1 && s.logsMention.length === 1 && s.signature.length === 1,
    );
  }
  assert.deepEqual(via.seen.account, direct.seen.account);
  assert.equal(via.seen.account[1].lamports, 2000);
  assert.equal(via.seen.account[1].data, "01020302");
  assert.deepEqual(via.seen.program, direct.seen.program);
  assert.deepEqual(
    via.seen.logsAll.filter((l) => l.sig === signature),
    direct.seen.logsAll.filter((l) => l.sig === signature),
  );
  assert.deepEqual(via.seen.logsMention, direct.seen.logsMention);
  assert.deepEqual(via.seen.signature, direct.seen.signature);
  assert.deepEqual(via.seen.signature[0].err, null);
  for (const s of [via.seen.slots, direct.seen.slots]) {
    for (const x of s) assert.deepEqual(Object.keys(x).sort(), ["parent", "root", "slot"]);
  }
  const directSlots = new Set(direct.seen.slots.map((x) => x.slot));
  assert.ok(via.seen.slots.some((x) => directSlots.has(x.slot)), "both saw the same slots");

  // HTTP through submux reaches the node's RPC port.
  assert.equal(await via.conn.getBalance(account), await direct.conn.getBalance(account));
  assert.equal(typeof (await via.conn.getSlot()), "number");

  // Remove every listener: nothing more arrives through submux.
  for (const { conn, ids } of [direct, via]) {
    await conn.removeSlotChangeListener(ids.slot);
    await conn.removeRootChangeListener(ids.root);
    await conn.removeAccountChangeListener(ids.account);
    await conn.removeProgramAccountChangeListener(ids.program);
    await conn.removeOnLogsListener(ids.logsAll);
    await conn.removeOnLogsListener(ids.logsMention);
    await conn.removeSignatureListener(ids.signature); // already ended: a no-op, as directly
  }
  await sleep(300);
  const before = JSON.stringify(via.seen);
  await rpc(sim.http, "sim_setAccount", [account.toBase58(), 7, program.toBase58(), []]);
  await rpc(sim.http, "sim_emitLogs", [randomSignature(), [mention.toBase58()], ["again"], null]);
  await sleep(900);
  assert.equal(JSON.stringify(via.seen), before, "no callbacks after removal");
});

test("two web3.js connections share one topic and stay independent", async () => {
  const account = Keypair.generate().publicKey;
  const a = new Connection(mux.http, { wsEndpoint: mux.ws });
  const b = new Connection(mux.http, { wsEndpoint: mux.ws });
  connections.push(a, b);
  const got = { a: [], b: [] };
  const ia = a.onAccountChange(account, (x) => got.a.push(x.lamports), { commitment: "confirmed", encoding: "base64" });
  const ib = b.onAccountChange(account, (x) => got.b.push(x.lamports), { commitment: "confirmed", encoding: "base64" });
  await sleep(500);
  await rpc(sim.http, "sim_setAccount", [account.toBase58(), 11, "11111111111111111111111111111111", []]);
  await waitFor("both notified", () => got.a.length === 1 && got.b.length === 1);
  await a.removeAccountChangeListener(ia);
  await sleep(300);
  await rpc(sim.http, "sim_setAccount", [account.toBase58(), 12, "11111111111111111111111111111111", []]);
  await waitFor("b still notified", () => got.b.length === 2);
  await sleep(300);
  assert.deepEqual(got, { a: [11], b: [11, 12] });
  await b.removeAccountChangeListener(ib);
});

/** Collect `n` items from a kit subscription, then abort it. */
async function take(subscribe, n, trigger) {
  const ac = new AbortController();
  const it = await subscribe(ac.signal);
  const out = [];
  const done = (async () => {
    for await (const x of it) {
      out.push(x);
      if (out.length >= n) break;
    }
  })();
  if (trigger) {
    await sleep(400);
    await trigger();
  }
  await Promise.race([done, sleep(10_000).then(() => { throw new Error(`kit: got ${out.length} of ${n}`); })]);
  ac.abort();
  return out;
}

const big = (v) => JSON.parse(JSON.stringify(v, (_, x) => (typeof x === "bigint" ? `${x}n` : x)));

test("@solana/kit subscriptions see the same through submux as directly", async () => {
  const account = Keypair.generate().publicKey.toBase58();
  const signature = randomSignature();
  const results = {};
  for (const [name, ep] of [["direct", sim], ["via", mux]]) {
    const subs = createSolanaRpcSubscriptions(ep.ws);
    const slots = await take((signal) => subs.slotNotifications().subscribe({ abortSignal: signal }), 2);
    const accts = await take(
      (signal) => subs.accountNotifications(address(account), { commitment: "confirmed", encoding: "base64" }).subscribe({ abortSignal: signal }),
      1,
      () => rpc(sim.http, "sim_setAccount", [account, 5, "11111111111111111111111111111111", [9]]),
    );
    const sigs = await take(
      (signal) => subs.signatureNotifications(signature, { commitment: "confirmed" }).subscribe({ abortSignal: signal }),
      1,
      () => rpc(sim.http, "sim_processSignature", [signature, null]),
    );
    const slot = await createSolanaRpc(ep.http).getSlot().send();
    results[name] = { slots, accts: big(accts).map((a) => a.value), sigs: big(sigs).map((s) => s.value), slot };
  }
  for (const s of results.via.slots) assert.deepEqual(Object.keys(s).sort(), ["parent", "root", "slot"]);
  assert.deepEqual(results.via.accts, results.direct.accts);
  // kit parses u64 as bigint: the node's u64::MAX rentEpoch survives submux exactly.
  assert.equal(results.via.accts[0].rentEpoch, "18446744073709551615n");
  assert.deepEqual(results.via.sigs, results.direct.sigs);
  assert.equal(typeof results.via.slot, "bigint");
});

test("raw socket: pings get silence, unknown ids Agave's error", async () => {
  const ws = new WebSocket(mux.ws);
  await new Promise((r, j) => { ws.once("open", r); ws.once("error", j); });
  const frames = [];
  ws.on("message", (m) => frames.push(JSON.parse(m.toString())));
  ws.send(JSON.stringify({ jsonrpc: "2.0", method: "ping" }));
  await sleep(700);
  assert.deepEqual(frames, [], "an id-less ping gets no reply");
  ws.send(JSON.stringify({ jsonrpc: "2.0", id: 42, method: "slotUnsubscribe", params: [987654321] }));
  await waitFor("unsubscribe answer", () => frames.length === 1);
  assert.deepEqual(frames[0], { jsonrpc: "2.0", error: { code: -32602, message: "Invalid subscription id." }, id: 42 });
  ws.close();
});
