// xrpl.js (the XRPL Foundation's client library) against the simulated rippled
// (`submux --sim xrpl`), directly and through submux at the same time: every scenario runs
// one Client on each path, drives the simulator once, and asserts that both Clients
// observed the same messages (deepEqual of whole objects: hashes, ledger indexes and
// balances are the simulator's, so they are shared). The simulator closes ledgers only on
// demand here (`--sim-interval-ms 0`), which makes every observation deterministic.
// Driven by tests/client_libs.rs (SUBMUX_BIN set).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Client } from "xrpl";
import { startSim, startSubmux, stopAll } from "./lib/procs.mjs";

const BIN = process.env.SUBMUX_BIN;
const clients = [];
let sim; // { ws, http }
let mux; // { ws, http }
let A; // the simulator's funded genesis accounts

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what, cond, ms = 10_000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** rippled's HTTP JSON-RPC shape: POST {method, params:[{…}]} → body.result. */
async function rpc(url, method, params = {}) {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ method, params: [params] }),
  });
  assert.equal(res.status, 200, `${method} over HTTP`);
  return (await res.json()).result;
}

const simCall = (method, params) => rpc(sim.http, method, params);
const closeLedger = async () => (await simCall("sim_close_ledger")).ledger_index;
const pay = async (from, to, drops) => (await simCall("sim_pay", { from, to, drops: String(drops) })).hash;

before(async () => {
  assert.ok(BIN, "SUBMUX_BIN must point at the submux binary (tests/client_libs.rs sets it)");
  sim = await startSim(BIN, "xrpl", ["--sim-interval-ms", "0"]);
  mux = await startSubmux(BIN, { path: "/xrpl", dialect: "xrpl", upstream: sim });
  A = (await simCall("sim_accounts")).accounts;
  assert.ok(A.length >= 8, "the simulator funds at least 8 accounts");
});

after(async () => {
  await Promise.allSettled(clients.map((c) => c.disconnect()));
  stopAll();
});

/** An xrpl.js Client that records every stream message it emits, in order. */
async function recorder(url) {
  const client = new Client(url, { connectionTimeout: 10_000 });
  clients.push(client);
  const seen = [];
  for (const ev of ["ledgerClosed", "transaction", "validationReceived", "manifestReceived", "consensusPhase"]) {
    client.on(ev, (m) => seen.push(m));
  }
  // bookChanges is emitted by the connection only (Client does not re-emit it).
  client.connection.on("bookChanges", (m) => seen.push(m));
  await client.connect();
  return { client, seen, url };
}

/** One Client straight to the simulator and one through submux. */
async function pair() {
  const [direct, via] = await Promise.all([recorder(sim.ws), recorder(mux.ws)]);
  const both = (fn) => Promise.all([fn(direct), fn(via)]);
  return { direct, via, both };
}

/** A response with the per-client request id removed (each Client counts its own). */
function sansId(r) {
  const { id, ...rest } = r;
  assert.ok(id !== undefined, "the response carries the request's id");
  return rest;
}

const txHash = (m) => m.hash ?? m.transaction?.hash ?? m.tx_json?.hash;
const txs = (seen, hash) => seen.filter((m) => m.type === "transaction" && (hash === undefined || txHash(m) === hash));
const ledgers = (seen) => seen.filter((m) => m.type === "ledgerClosed");

/** Close ledgers until both recorders saw `n` more ledgerClosed (needs a ledger sub). */
async function closeAndSee(p, what, pred) {
  const index = await closeLedger();
  await waitFor(`${what} (ledger ${index}) on both`, () => pred(p.direct.seen) && pred(p.via.seen));
  return index;
}

/** Close one more ledger and let in-flight frames land (before asserting "no more"). */
async function settle() {
  await closeLedger();
  await sleep(400);
}

const LEDGER_FIELDS = ["fee_base", "ledger_hash", "ledger_index", "ledger_time", "reserve_base", "reserve_inc", "validated_ledgers"];

test("ledger stream: subscribe result, ledgerClosed, unsubscribe", async () => {
  const p = await pair();
  const [d, v] = await p.both((c) => c.client.request({ command: "subscribe", streams: ["ledger"] }));
  assert.deepEqual(sansId(v), sansId(d));
  assert.deepEqual(Object.keys(v.result).sort(), LEDGER_FIELDS, "a ledgerClosed without type/txn_count");
  assert.equal(v.api_version, 2, "xrpl.js asks for API v2 and rippled echoes it");
  const first = v.result.ledger_index;
  assert.match(v.result.ledger_hash, /^[0-9A-F]{64}$/);
  assert.match(v.result.validated_ledgers, new RegExp(`^\\d+-${first}$`));

  for (let i = 1; i <= 2; i++) {
    const index = await closeLedger();
    assert.equal(index, first + i);
    await waitFor(`ledgerClosed ${index}`, () => ledgers(p.direct.seen).length === i && ledgers(p.via.seen).length === i);
  }
  assert.deepEqual(p.via.seen, p.direct.seen);
  const closed = ledgers(p.via.seen);
  assert.deepEqual(closed.map((l) => l.ledger_index), [first + 1, first + 2]);
  assert.deepEqual(Object.keys(closed[0]).sort(), [...LEDGER_FIELDS, "network_id", "txn_count", "type"].sort());
  assert.equal(closed[0].txn_count, 0);

  const [du, vu] = await p.both((c) => c.client.request({ command: "unsubscribe", streams: ["ledger"] }));
  assert.deepEqual(sansId(vu), sansId(du));
  assert.deepEqual(vu.result, {});
  await settle();
  assert.equal(ledgers(p.via.seen).length, 2, "no ledgerClosed after unsubscribe (through submux)");
  assert.equal(ledgers(p.direct.seen).length, 2, "no ledgerClosed after unsubscribe (directly)");
});

test("accounts: a payment between two of a client's accounts arrives once, v2 shape, exact drops", async () => {
  const p = await pair();
  const [d, v] = await p.both((c) => c.client.request({ command: "subscribe", accounts: [A[0], A[1]] }));
  assert.deepEqual(sansId(v), sansId(d));
  assert.deepEqual(v.result, {});

  const hash = await pay(A[0], A[1], "12345678");
  // `accounts` gets validated transactions only: nothing while the payment is proposed.
  await sleep(300);
  assert.deepEqual([p.direct.seen, p.via.seen], [[], []], "no proposed transaction on `accounts`");
  const index = await closeAndSee(p, "the validated payment", (s) => txs(s, hash).length === 1);
  await settle();
  assert.deepEqual(p.via.seen, p.direct.seen);
  assert.equal(p.via.seen.length, 1, "both accounts are affected, yet one message per client");

  const m = p.via.seen[0];
  assert.equal(m.type, "transaction");
  assert.equal(m.validated, true);
  assert.equal(m.status, "closed");
  assert.equal(m.ledger_index, index);
  assert.equal(m.hash, hash, "API v2: hash at the top level");
  assert.equal(m.transaction, undefined, "API v2: no `transaction`");
  assert.equal(m.tx_json.TransactionType, "Payment");
  assert.equal(m.tx_json.Account, A[0]);
  assert.equal(m.tx_json.Destination, A[1]);
  assert.equal(m.tx_json.DeliverMax, "12345678");
  assert.equal(m.tx_json.Amount, undefined, "API v2: DeliverMax only");
  assert.equal(m.meta.delivered_amount, "12345678", "drops arrive as the exact string");
  assert.equal(m.meta.TransactionResult, "tesSUCCESS");
  assert.equal(m.engine_result, "tesSUCCESS");
  assert.match(m.close_time_iso, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

  // The balances the stream reported are what account_info says now.
  const [di, vi] = await p.both((c) => c.client.request({ command: "account_info", account: A[1], ledger_index: "validated" }));
  assert.deepEqual(sansId(vi), sansId(di));
  const dest = m.meta.AffectedNodes.map((n) => n.ModifiedNode).find((n) => n?.FinalFields.Account === A[1]);
  assert.equal(vi.result.account_data.Balance, dest.FinalFields.Balance);
  assert.equal(typeof vi.result.account_data.Balance, "string");
});

test("API v1 and v2 clients on the same account each get their own shape", async () => {
  const v1 = await pair();
  const v2 = await pair();
  await v1.both((c) => c.client.request({ command: "subscribe", accounts: [A[2]], api_version: 1 }));
  await v2.both((c) => c.client.request({ command: "subscribe", accounts: [A[2]] }));
  const hash = await pay(A[2], A[3], 1_000_001);
  await closeLedger();
  for (const p of [v1, v2]) await waitFor("the payment", () => txs(p.direct.seen).length === 1 && txs(p.via.seen).length === 1);
  await settle();
  for (const p of [v1, v2]) {
    assert.deepEqual(p.via.seen, p.direct.seen);
    assert.equal(p.via.seen.length, 1);
  }
  const [a, b] = [v1.via.seen[0], v2.via.seen[0]];
  assert.equal(a.transaction.hash, hash, "API v1: hash inside `transaction`");
  assert.equal(a.tx_json, undefined);
  assert.equal(a.hash, undefined);
  assert.equal(a.transaction.Amount, "1000001", "API v1: Amount …");
  assert.equal(a.transaction.DeliverMax, "1000001", "… and DeliverMax");
  assert.equal(b.hash, hash);
  assert.equal(b.tx_json.Amount, undefined);
  assert.deepEqual(a.meta, b.meta);
});

test("two clients through submux with overlapping accounts: each gets its own, once", async () => {
  const x = await pair();
  const y = await pair();
  await x.both((c) => c.client.request({ command: "subscribe", accounts: [A[4], A[5]] }));
  await y.both((c) => c.client.request({ command: "subscribe", accounts: [A[5], A[6]] }));
  const h1 = await pay(A[4], A[5], 2_000_000); // x (twice affected) and y
  const h2 = await pay(A[6], A[7], 3_000_000); // y only
  const h3 = await pay(A[7], A[0], 4_000_000); // neither
  await closeLedger();
  await waitFor("x's payment", () => txs(x.via.seen).length === 1 && txs(x.direct.seen).length === 1);
  await waitFor("y's payments", () => txs(y.via.seen).length === 2 && txs(y.direct.seen).length === 2);
  await settle();
  assert.deepEqual(x.via.seen, x.direct.seen);
  assert.deepEqual(y.via.seen, y.direct.seen);
  assert.deepEqual(x.via.seen.map(txHash), [h1]);
  assert.deepEqual(y.via.seen.map(txHash), [h1, h2]);
  assert.ok(!y.via.seen.some((m) => txHash(m) === h3));
});

test("issued currency: the receiver is found through the trust line (RippleState), as rippled does", async () => {
  const [issuer, alice, bob] = [A[7], A[5], A[6]];
  const usd = (value) => ({ currency: "USD", issuer, value });
  const watchBob = await pair();
  const watchIssuer = await pair();
  await watchBob.both((c) => c.client.request({ command: "subscribe", accounts: [bob] }));
  await watchIssuer.both((c) => c.client.request({ command: "subscribe", accounts: [issuer] }));
  const issue = (await simCall("sim_pay", { from: issuer, to: alice, amount: usd("100") })).hash;
  await closeLedger();
  const ripple = (await simCall("sim_pay", { from: alice, to: bob, amount: usd("40.5") })).hash;
  await closeLedger();
  await waitFor("bob's payment", () => txs(watchBob.direct.seen).length === 1 && txs(watchBob.via.seen).length === 1);
  await waitFor("the issuer's two", () => txs(watchIssuer.direct.seen).length === 2 && txs(watchIssuer.via.seen).length === 2);
  await settle();
  assert.deepEqual(watchBob.via.seen, watchBob.direct.seen);
  assert.deepEqual(watchIssuer.via.seen, watchIssuer.direct.seen);
  assert.deepEqual(watchBob.via.seen.map(txHash), [ripple], "bob is affected by the second payment only");
  assert.deepEqual(watchIssuer.via.seen.map(txHash), [issue, ripple]);
  const m = watchBob.via.seen[0];
  assert.deepEqual(m.meta.delivered_amount, usd("40.5"));
  assert.deepEqual(m.tx_json.DeliverMax, usd("40.5"));
  const lines = m.meta.AffectedNodes.map((n) => Object.values(n)[0]).filter((n) => n.LedgerEntryType === "RippleState");
  assert.equal(lines.length, 2, "alice's and bob's lines with the issuer");
  // bob has no AccountRoot change: only the trust line's limits name him.
  const roots = m.meta.AffectedNodes.map((n) => Object.values(n)[0]).filter((n) => n.LedgerEntryType === "AccountRoot");
  assert.deepEqual(roots.map((r) => r.FinalFields.Account), [alice]);
});

test("transactions + transactions_proposed: proposed once, validated twice (as rippled)", async () => {
  const p = await pair();
  await p.both((c) => c.client.request({ command: "subscribe", streams: ["transactions", "transactions_proposed"] }));
  const hash = await pay(A[1], A[2], 5_000_000);
  await waitFor("the proposed payment", () => txs(p.direct.seen, hash).length === 1 && txs(p.via.seen, hash).length === 1);
  const proposed = p.via.seen[0];
  assert.equal(proposed.validated, false);
  assert.equal(proposed.status, "proposed");
  assert.equal(proposed.meta, undefined);
  assert.equal(typeof proposed.ledger_current_index, "number");
  await closeLedger();
  await waitFor("both validated copies", () => txs(p.direct.seen, hash).length === 3 && txs(p.via.seen, hash).length === 3);
  await settle();
  assert.deepEqual(p.via.seen, p.direct.seen);
  assert.deepEqual(txs(p.via.seen, hash).map((m) => m.validated), [false, true, true]);
  assert.deepEqual(txs(p.via.seen, hash)[1], txs(p.via.seen, hash)[2]);
  await p.both((c) => c.client.request({ command: "unsubscribe", streams: ["transactions", "transactions_proposed"] }));
});

test("accounts_proposed: the proposed and the validated payment", async () => {
  const p = await pair();
  await p.both((c) => c.client.request({ command: "subscribe", accounts_proposed: [A[3]] }));
  const hash = await pay(A[2], A[3], 6_000_000); // A[3] is mentioned (Destination)
  await waitFor("the proposed payment", () => txs(p.direct.seen, hash).length === 1 && txs(p.via.seen, hash).length === 1);
  await closeLedger();
  await waitFor("the validated payment", () => txs(p.direct.seen, hash).length === 2 && txs(p.via.seen, hash).length === 2);
  await settle();
  assert.deepEqual(p.via.seen, p.direct.seen);
  assert.deepEqual(p.via.seen.map((m) => m.validated), [false, true]);
});

test("unsubscribe stops delivery; unsubscribing what was never subscribed is a success", async () => {
  const p = await pair();
  await p.both((c) => c.client.request({ command: "subscribe", accounts: [A[6]] }));
  const h1 = await pay(A[6], A[7], 7_000_000);
  await closeAndSee(p, "the first payment", (s) => txs(s, h1).length === 1);
  const [d, v] = await p.both((c) => c.client.request({ command: "unsubscribe", accounts: [A[6]] }));
  assert.deepEqual(sansId(v), sansId(d));
  assert.deepEqual(v.result, {});
  await pay(A[6], A[7], 8_000_000);
  await closeLedger();
  await settle();
  assert.deepEqual(p.via.seen, p.direct.seen);
  assert.deepEqual(p.via.seen.map(txHash), [h1], "nothing after unsubscribe");
  const [dn, vn] = await p.both((c) => c.client.request({ command: "unsubscribe", accounts: [A[5]], streams: ["ledger"] }));
  assert.deepEqual(sansId(vn), sansId(dn));
  assert.deepEqual(vn.result, {});
});

test("account_info, ping, fee and server_info over WebSocket; account_info over HTTP", async () => {
  const p = await pair();
  for (const req of [
    { command: "account_info", account: A[0] },
    { command: "account_info", account: A[0], ledger_index: "validated" },
    { command: "ping" },
    { command: "ledger_current" },
    { command: "ledger_closed" },
    { command: "ledger", ledger_index: "validated" },
    { command: "fee" },
  ]) {
    const [d, v] = await p.both((c) => c.client.request(req));
    assert.deepEqual(sansId(v), sansId(d), JSON.stringify(req));
  }
  const [, v] = await p.both((c) => c.client.request({ command: "account_info", account: A[0] }));
  assert.equal(v.result.account_data.Account, A[0]);
  assert.match(v.result.account_data.Balance, /^\d+$/, "XRP balance: a string of drops");
  const [, ping] = await p.both((c) => c.client.request({ command: "ping" }));
  assert.deepEqual(ping.result, {});
  const [ds, vs] = await p.both((c) => c.client.request({ command: "server_info" }));
  assert.equal(vs.result.info.validated_ledger.seq, ds.result.info.validated_ledger.seq);

  // Unknown account: rippled's actNotFound, surfaced by xrpl.js as a RippledError.
  const unknown = "rfdGuuVnq9juqWDV4W3LoLiNcW8g2hAXhN";
  const [de, ve] = await p.both((c) =>
    c.client.request({ command: "account_info", account: unknown }).then(
      () => assert.fail("account_info of an unknown account must fail"),
      (e) => e,
    ),
  );
  assert.equal(ve.name, "RippledError");
  assert.equal(ve.data.error, "actNotFound");
  assert.equal(ve.data.error_code, 19);
  assert.deepEqual(normError(ve.data), normError(de.data));

  // HTTP JSON-RPC: the route forwards rippled's shape.
  const [hd, hv] = await Promise.all([rpc(sim.http, "account_info", { account: A[0] }), rpc(mux.http, "account_info", { account: A[0] })]);
  assert.deepEqual(hv, hd);
  assert.equal(hv.status, "success");
  assert.equal(hv.account_data.Balance, v.result.account_data.Balance);
});

/** An error response with the client's id (top level and echoed request) removed. */
function normError(data) {
  const { id, request, ...rest } = data;
  const { id: rid, ...req } = request ?? {};
  assert.equal(rid, id, "the echoed request carries the same id");
  return { ...rest, request: req };
}

test("books: snapshot with bids and asks, then the book's transactions", async () => {
  const issuer = A[7];
  const usd = { currency: "USD", issuer };
  await simCall("sim_offer_create", { account: A[0], taker_gets: "1000000000", taker_pays: { ...usd, value: "500" } });
  await simCall("sim_offer_create", { account: A[1], taker_gets: { ...usd, value: "100" }, taker_pays: "250000000" });
  await closeLedger();

  const p = await pair();
  const book = { taker_gets: { currency: "XRP" }, taker_pays: usd, snapshot: true, both: true };
  const [d, v] = await p.both((c) => c.client.request({ command: "subscribe", books: [book] }));
  assert.deepEqual(sansId(v), sansId(d));
  assert.equal(v.result.asks.length, 1);
  assert.equal(v.result.bids.length, 1);
  // rippled: `bids` is the book as asked (TakerGets XRP, TakerPays USD), `asks` its reverse.
  const [bid, ask] = [v.result.bids[0], v.result.asks[0]];
  assert.equal(bid.Account, A[0]);
  assert.equal(bid.LedgerEntryType, "Offer");
  assert.equal(bid.TakerGets, "1000000000");
  assert.deepEqual(bid.TakerPays, { ...usd, value: "500" });
  assert.equal(bid.quality, "0.0000005", "TakerPays/TakerGets as rippled prints it");
  assert.match(bid.owner_funds, /^\d+$/, "XRP above the reserve, in drops");
  assert.equal(ask.Account, A[1]);
  assert.equal(ask.quality, "2500000");
  assert.equal(ask.owner_funds, "0", "A[1] holds no USD");

  // A new offer in this book reaches both book subscribers once.
  const { hash } = await simCall("sim_offer_create", { account: A[2], taker_gets: "3000000", taker_pays: { ...usd, value: "2" } });
  await closeAndSee(p, "the new offer", (s) => txs(s, hash).length === 1);
  await settle();
  assert.deepEqual(p.via.seen, p.direct.seen);
  assert.equal(txs(p.via.seen).length, 1);
  const created = p.via.seen[0].meta.AffectedNodes.map((n) => n.CreatedNode).find((n) => n?.LedgerEntryType === "Offer");
  assert.equal(created.NewFields.Account, A[2]);
  assert.equal(created.NewFields.TakerGets, "3000000");
});

test("offers cross: bookChanges and the book's transactions, the same on both paths", async () => {
  const [issuer, maker, taker] = [A[7], A[4], A[3]];
  const eur = (value) => ({ currency: "EUR", issuer, value });
  await simCall("sim_pay", { from: issuer, to: maker, amount: eur("50") });
  await closeLedger();
  const p = await pair();
  const book = { taker_pays: { currency: "EUR", issuer }, taker_gets: { currency: "XRP" }, both: true };
  await p.both((c) => c.client.request({ command: "subscribe", streams: ["book_changes"], books: [book] }));
  const made = (await simCall("sim_offer_create", { account: maker, taker_gets: eur("10"), taker_pays: "20000000" })).hash;
  await closeLedger();
  const took = (await simCall("sim_offer_create", { account: taker, taker_gets: "8000000", taker_pays: eur("4") })).hash;
  await closeLedger();
  await waitFor("both offers", () => txs(p.direct.seen).length === 2 && txs(p.via.seen).length === 2);
  await settle();
  assert.deepEqual(p.via.seen, p.direct.seen);
  assert.deepEqual(txs(p.via.seen).map(txHash), [made, took]);
  const changes = p.via.seen.filter((m) => m.type === "bookChanges");
  assert.ok(changes.length >= 3, "one bookChanges per ledger");
  const crossed = changes.find((m) => m.changes.length > 0);
  assert.deepEqual(crossed.changes, [
    { currency_a: "XRP_drops", currency_b: `${issuer}/EUR`, volume_a: "8000000", volume_b: "4", high: "2000000", low: "2000000", open: "2000000", close: "2000000" },
  ]);
  const takerTx = txs(p.via.seen)[1];
  assert.ok(crossed.ledger_index === takerTx.ledger_index, "bookChanges of the crossing ledger");
  const modified = takerTx.meta.AffectedNodes.map((n) => n.ModifiedNode).find((n) => n?.LedgerEntryType === "Offer");
  assert.deepEqual(modified.PreviousFields.TakerGets, eur("10"));
  assert.deepEqual(modified.FinalFields.TakerGets, eur("6"));
});

test("errors: rippled's names and codes reach xrpl.js as RippledError; partial subscribe kept", async () => {
  const p = await pair();
  const fail = (req) =>
    p.both((c) =>
      c.client.request(req).then(
        (r) => assert.fail(`${JSON.stringify(req)} must fail, got ${JSON.stringify(r)}`),
        (e) => e,
      ),
    );
  for (const [req, error, code] of [
    [{ command: "subscribe", streams: ["ledgers"] }, "malformedStream", 71],
    [{ command: "subscribe", accounts: ["rNotAnAddress"] }, "actMalformed", 35],
    [{ command: "subscribe", accounts: [] }, "actMalformed", 35],
    [{ command: "subscribe", accounts: A[0] }, "invalidParams", 31],
    [{ command: "unsubscribe", streams: ["book_changes"] }, "malformedStream", 71],
    [{ command: "subscrib" }, "unknownCmd", 32],
  ]) {
    const [de, ve] = await fail(req);
    assert.equal(ve.name, "RippledError", JSON.stringify(req));
    assert.equal(ve.data.error, error, JSON.stringify(req));
    assert.equal(ve.data.error_code, code, JSON.stringify(req));
    assert.equal(ve.data.status, "error");
    assert.deepEqual(normError(ve.data), normError(de.data), JSON.stringify(req));
  }
  const [dv, vv] = await fail({ command: "ping", api_version: 4 });
  assert.equal(vv.data.error, "invalid_API_version");
  assert.deepEqual(normError(vv.data), normError(dv.data));

  // rippled processes streams before accounts: the ledger stream stays subscribed.
  const [dp, vp] = await fail({ command: "subscribe", streams: ["ledger"], accounts: ["rNotAnAddress"] });
  assert.equal(vp.data.error, "actMalformed");
  assert.deepEqual(normError(vp.data), normError(dp.data));
  await closeAndSee(p, "a ledgerClosed after the partly failed subscribe", (s) => ledgers(s).length === 1);
  assert.deepEqual(p.via.seen, p.direct.seen);
});
