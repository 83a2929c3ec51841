// Real client libraries (ethers v6, viem 2, web3.js v4) against a real node, once directly and
// once through submux; both sides must observe the same chain. One suite, run by
// tests/clients/eth-<node>.test.mjs once per node of lib/nodes.mjs (ganache in text and in
// binary-frame mode, anvil, Hardhat); what differs between nodes is in NODE_QUIRKS below
// (docs/nodes.md tabulates it).
//
//   SUBMUX_BIN=target/debug/submux node --test tests/clients/
//
// Without SUBMUX_BIN the "submux" side falls back to the node directly (loud
// warning); the Rust wrapper tests/client_libs.rs always sets it.
// SUBMUX_TEST_FRAMES=1 prints every WebSocket frame live; SUBMUX_TEST_VERBOSE=1
// echoes submux's own output. On failure the frames of the failing scenario and
// submux's output are printed.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { ethers } from "ethers";
import { createPublicClient, webSocket } from "viem";
import { Web3 } from "web3";
import WebSocket from "ws";
import { setupEnv, ACCOUNTS, CHAIN_ID } from "./env.mjs";
import { NODE_QUIRKS, SUBMUX_QUIRKS } from "./nodes.mjs";
import { PING_ABI_HUMAN, PING_ABI_JSON, PING_TOPIC } from "./ping-contract.mjs";
import { frameMark, dumpFrames, framesSince, requestsWithResponses, normUrl, recordText } from "./frames.mjs";
import { withTimeout, waitFor, postJson, sleep, stringify } from "./util.mjs";

const N = 3; // measured transactions per scenario
const STEP_MS = 10_000; // bound on any single wait
const TEST_TIMEOUT_MS = 50_000;

let env;
let nodeId;
let quirks; // NODE_QUIRKS[nodeId]

/** Run a scenario; on failure print the frames it exchanged and submux's output. */
function scenario(name, fn) {
  test(`${nodeId}: ${name}`, { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const mark = frameMark();
    const cleanups = [];
    try {
      await fn(t, { mark, defer: (f) => cleanups.push(f) });
    } catch (e) {
      console.error(
        `\n===== FAILED: ${name} on ${nodeId} (proxy side: ${env?.proxy.kind}) =====\n${e?.stack ?? e}\n` +
          `----- frames exchanged in this scenario, WebSocket and HTTP (>> sent, << received) -----\n${dumpFrames(mark)}\n` +
          `----- submux output (tail) -----\n${(env?.proxy.logs() ?? "").split("\n").slice(-80).join("\n")}\n` +
          `----- ${nodeId} output (tail) -----\n${(env?.node.logs() ?? "").split("\n").slice(-40).join("\n")}\n` +
          `===== end of ${name} =====\n`,
      );
      throw e;
    } finally {
      for (const f of cleanups.reverse()) {
        try {
          await f();
        } catch (e) {
          console.error(`cleanup in "${name}" failed:`, e);
        }
      }
    }
  });
}

/**
 * Client subscriptions are set up asynchronously (ethers and viem both return
 * before eth_subscribe is answered), so mine "warm-up" pings until every side
 * reports that all of its subscriptions delivered something. Returns the
 * highest warm-up block number.
 */
async function warmUp(sides, isArmed, what) {
  let lastBlock = -1;
  for (let i = 0; i < 15; i++) {
    const r = await env.sendPing(9_000 + i);
    lastBlock = r.blockNumber;
    try {
      await waitFor(() => sides.every(isArmed), { timeoutMs: 1_000, what });
      return lastBlock;
    } catch {
      // not yet: mine another warm-up block
    }
  }
  const state = sides.map((s) => `${s.kind}: ${isArmed(s) ? "live" : "NOT live"}`).join(", ");
  throw new Error(`subscriptions never became live after 15 warm-up blocks (${state}): ${what}`);
}

/** Mine N measured pings; returns their receipts' data. */
async function mineMeasured(base) {
  const out = [];
  for (let i = 1; i <= N; i++) out.push(await env.sendPing(base + i));
  return out;
}

const inBlocks = (blockNumbers) => (x) => blockNumbers.includes(Number(x.blockNumber));

/** Wait until every `eth_unsubscribe` sent on connections to `url` since `mark` got answered. */
async function unsubscribeResults(mark, url, expectedCount) {
  return waitFor(
    () => {
      const reqs = requestsWithResponses(mark, url, "eth_unsubscribe");
      if (reqs.length < expectedCount || reqs.some((r) => r.response === undefined)) return false;
      return reqs;
    },
    { timeoutMs: STEP_MS, what: `${expectedCount} eth_unsubscribe answers on ${url}` },
  );
}

/** Notification frames (eth_subscription) received on connections to `url` since `mark`. */
function notificationsSince(mark, url) {
  return framesSince(mark).filter((f) => {
    if (f.dir !== "<<" || f.url !== normUrl(url)) return false;
    try {
      return JSON.parse(f.text).method === "eth_subscription";
    } catch {
      return false;
    }
  });
}

/** Register every scenario against node `id` (one of lib/nodes.mjs's NODE_IDS). */
export function ethSuite(id) {
  nodeId = id;
  quirks = NODE_QUIRKS[id];
  before(async () => {
    env = await withTimeout(setupEnv(id), 55_000, `test environment (${id} + Ping contract + submux)`);
  });
  after(async () => {
    await env?.teardown();
  });

  // ---------------------------------------------------------------- ethers v6

  scenario("ethers v6 WebSocketProvider: direct vs submux", async (t, { mark, defer }) => {
    const sender = env.wallet.address;
    const makeSide = (kind, url) => {
      const provider = new ethers.WebSocketProvider(url);
      defer(async () => {
        await provider.removeAllListeners();
        await provider.destroy();
      });
      return {
        kind,
        url,
        provider,
        contract: new ethers.Contract(env.contractAddress, PING_ABI_HUMAN, provider),
        blocks: [],
        pings: [],
        filtered: [],
      };
    };
    const sides = [makeSide("direct", env.direct.wsUrl), makeSide("submux", env.proxy.wsUrl)];
    const [direct, proxied] = sides;

    // --- plain requests
    const basics = await Promise.all(
      sides.map(async (s) => {
        const network = await withTimeout(s.provider.getNetwork(), STEP_MS, `${s.kind} getNetwork`);
        const balance0 = await withTimeout(s.provider.getBalance(ACCOUNTS[0].address), STEP_MS, `${s.kind} getBalance`);
        const balance1 = await withTimeout(s.provider.getBalance(ACCOUNTS[1].address), STEP_MS, `${s.kind} getBalance`);
        const blockNumber = await withTimeout(s.provider.getBlockNumber(), STEP_MS, `${s.kind} getBlockNumber`);
        const block = await withTimeout(s.provider.getBlock(blockNumber), STEP_MS, `${s.kind} getBlock`);
        return { chainId: network.chainId, balance0, balance1, blockNumber, blockHash: block.hash };
      }),
    );
    assert.equal(basics[0].chainId, BigInt(CHAIN_ID), "direct chain id");
    assert.deepEqual(basics[1], basics[0], "chainId/balances/blockNumber/block hash via submux == direct");
    assert.equal(basics[0].balance1, await env.senderProvider.getBalance(ACCOUNTS[1].address));

    // --- subscriptions: newHeads, contract event, raw log filter with an indexed topic
    const logFilter = { address: env.contractAddress, topics: [PING_TOPIC, ethers.zeroPadValue(sender, 32)] };
    for (const s of sides) {
      s.onBlock = (n) => s.blocks.push(n);
      s.onPing = (from, value, ev) =>
        s.pings.push({
          from,
          value,
          blockNumber: ev.log.blockNumber,
          blockHash: ev.log.blockHash,
          txHash: ev.log.transactionHash,
          logIndex: ev.log.index,
          data: ev.log.data,
          topics: [...ev.log.topics],
        });
      s.onLog = (log) =>
        s.filtered.push({
          blockNumber: log.blockNumber,
          blockHash: log.blockHash,
          txHash: log.transactionHash,
          logIndex: log.index,
          data: log.data,
          topics: [...log.topics],
          removed: log.removed,
        });
      await withTimeout(s.provider.on("block", s.onBlock), STEP_MS, `${s.kind} on(block)`);
      await withTimeout(s.contract.on("Ping", s.onPing), STEP_MS, `${s.kind} contract.on(Ping)`);
      await withTimeout(s.provider.on(logFilter, s.onLog), STEP_MS, `${s.kind} on(filter)`);
    }
    const warm = await warmUp(
      sides,
      (s) => s.blocks.length > 0 && s.pings.length > 0 && s.filtered.length > 0,
      "ethers block + Ping + filter events on both sides",
    );

    const expected = await mineMeasured(100);
    const targets = expected.map((e) => e.blockNumber);
    assert.ok(Math.min(...targets) > warm);
    assert.equal(new Set(targets).size, N, "instamine: one block per tx");

    for (const s of sides) {
      await waitFor(
        () =>
          targets.every((b) => s.blocks.includes(b)) &&
          s.pings.filter(inBlocks(targets)).length >= N &&
          s.filtered.filter(inBlocks(targets)).length >= N,
        {
          timeoutMs: STEP_MS,
          what: `${s.kind}: block/Ping/filter events for blocks ${targets}`,
          detail: () =>
            `${s.kind} saw blocks ${s.blocks}; Ping events in blocks ${s.pings.map((x) => x.blockNumber)}; ` +
            `filtered logs in blocks ${s.filtered.map((x) => x.blockNumber)}`,
        },
      );
    }
    await sleep(200); // let duplicates, if any, arrive

    const expectedPings = expected.map((e) => ({
      from: sender,
      value: e.value,
      blockNumber: e.blockNumber,
      blockHash: e.blockHash,
      txHash: e.txHash,
      logIndex: e.logIndex,
      data: e.data,
      topics: e.topics,
    }));
    const expectedLogs = expectedPings.map(({ from, value, ...rest }) => ({ ...rest, removed: false }));
    for (const s of sides) {
      assert.deepEqual(
        s.blocks.filter((b) => targets.includes(b)),
        targets,
        `${s.kind}: each measured block announced exactly once, in order (all seen: ${s.blocks})`,
      );
      assert.deepEqual(s.pings.filter(inBlocks(targets)), expectedPings, `${s.kind}: contract Ping events`);
      assert.deepEqual(s.filtered.filter(inBlocks(targets)), expectedLogs, `${s.kind}: topic-filtered logs`);
      // all blocks announced after the warm-up must be exactly the measured ones
      assert.deepEqual(
        s.blocks.filter((b) => b > warm),
        targets,
        `${s.kind}: no extra or duplicate block announcements`,
      );
      for (const e of expected) {
        const b = await withTimeout(s.provider.getBlock(e.blockNumber), STEP_MS, `${s.kind} getBlock`);
        assert.equal(b.hash, e.blockHash, `${s.kind}: getBlock(${e.blockNumber}).hash`);
      }
    }
    assert.deepEqual(proxied.blocks.filter((b) => b > warm), direct.blocks.filter((b) => b > warm));
    assert.deepEqual(proxied.pings.filter(inBlocks(targets)), direct.pings.filter(inBlocks(targets)));
    assert.deepEqual(proxied.filtered.filter(inBlocks(targets)), direct.filtered.filter(inBlocks(targets)));

    // --- unsubscribe: each of the 3 subscriptions is torn down with eth_unsubscribe -> true
    const offMark = frameMark();
    for (const s of sides) {
      await s.provider.off("block", s.onBlock);
      await s.contract.off("Ping", s.onPing);
      await s.provider.off(logFilter, s.onLog);
    }
    for (const s of sides) {
      const unsubs = await unsubscribeResults(offMark, s.url, 3);
      assert.deepEqual(
        unsubs.map((u) => u.response),
        unsubs.map((u) => ({ jsonrpc: "2.0", id: u.request.id, result: true })),
        `${s.kind}: eth_unsubscribe answers`,
      );
    }
    // after unsubscribing, no more notifications reach either connection
    const quietMark = frameMark();
    const after1 = await env.sendPing(999);
    await waitFor(
      async () => (await direct.provider.getBlockNumber()) >= after1.blockNumber,
      { timeoutMs: STEP_MS, what: "direct sees the post-unsubscribe block" },
    );
    await sleep(300);
    for (const s of sides) {
      assert.deepEqual(
        notificationsSince(quietMark, s.url).map((f) => f.text),
        [],
        `${s.kind}: no notifications after all subscriptions were removed`,
      );
    }
  });

  // ---------------------------------------------------------------- viem

  scenario("viem webSocket transport: direct vs submux", async (t, { mark, defer }) => {
    const sender = env.wallet.address;
    const makeSide = (kind, url) => {
      const client = createPublicClient({
        // no retries / reconnects: they would hide a misbehaving proxy
        transport: webSocket(url, { retryCount: 0, reconnect: false, timeout: STEP_MS, keepAlive: { interval: 250 } }),
      });
      const side = { kind, url, client, blocks: [], blockNumbers: [], events: [], filtered: [], errors: [], unwatch: [] };
      defer(async () => {
        for (const u of side.unwatch) u();
        const rpc = await client.transport.getRpcClient();
        rpc.close();
      });
      return side;
    };
    const sides = [makeSide("direct", env.direct.wsUrl), makeSide("submux", env.proxy.wsUrl)];
    const [direct, proxied] = sides;

    const basics = await Promise.all(
      sides.map(async (s) => {
        const c = s.client;
        const chainId = await withTimeout(c.getChainId(), STEP_MS, `${s.kind} getChainId`);
        const balance0 = await withTimeout(c.getBalance({ address: ACCOUNTS[0].address }), STEP_MS, `${s.kind} getBalance`);
        const balance1 = await withTimeout(c.getBalance({ address: ACCOUNTS[1].address }), STEP_MS, `${s.kind} getBalance`);
        const blockNumber = await withTimeout(c.getBlockNumber({ cacheTime: 0 }), STEP_MS, `${s.kind} getBlockNumber`);
        const block = await withTimeout(c.getBlock({ blockNumber }), STEP_MS, `${s.kind} getBlock`);
        return { chainId, balance0, balance1, blockNumber, block };
      }),
    );
    assert.equal(basics[0].chainId, CHAIN_ID, "direct chain id");
    assert.deepEqual(basics[1], basics[0], "chainId/balances/blockNumber/full block via submux == direct");

    const toLog = (l) => ({
      address: l.address,
      blockNumber: l.blockNumber,
      blockHash: l.blockHash,
      txHash: l.transactionHash,
      logIndex: l.logIndex,
      data: l.data,
      topics: [...l.topics],
      removed: l.removed,
      eventName: l.eventName,
      args: l.args,
    });
    for (const s of sides) {
      const c = s.client;
      const onError = (e) => s.errors.push(e);
      s.unwatch.push(c.watchBlocks({ poll: false, onBlock: (b) => s.blocks.push(b), onError }));
      s.unwatch.push(c.watchBlockNumber({ poll: false, onBlockNumber: (n) => s.blockNumbers.push(n), onError }));
      s.unwatch.push(
        c.watchContractEvent({
          address: env.contractAddress,
          abi: PING_ABI_JSON,
          eventName: "Ping",
          poll: false,
          onLogs: (logs) => s.events.push(...logs.map(toLog)),
          onError,
        }),
      );
      s.unwatch.push(
        c.watchEvent({
          address: env.contractAddress,
          event: PING_ABI_JSON[0],
          args: { from: sender },
          poll: false,
          onLogs: (logs) => s.filtered.push(...logs.map(toLog)),
          onError,
        }),
      );
    }
    const warm = await warmUp(
      sides,
      (s) => s.blocks.length > 0 && s.blockNumbers.length > 0 && s.events.length > 0 && s.filtered.length > 0,
      "viem watchBlocks + watchBlockNumber + watchContractEvent + watchEvent on both sides",
    );

    const expected = await mineMeasured(200);
    const targets = expected.map((e) => e.blockNumber);
    const bigTargets = targets.map(BigInt);
    for (const s of sides) {
      await waitFor(
        () =>
          bigTargets.every((b) => s.blocks.some((x) => x.number === b)) &&
          bigTargets.every((b) => s.blockNumbers.includes(b)) &&
          s.events.filter(inBlocks(targets)).length >= N &&
          s.filtered.filter(inBlocks(targets)).length >= N,
        {
          timeoutMs: STEP_MS,
          what: `${s.kind}: viem callbacks for blocks ${targets}`,
          detail: () =>
            `${s.kind} saw watchBlocks ${s.blocks.map((b) => b.number)}; watchBlockNumber ${s.blockNumbers}; ` +
            `watchContractEvent in blocks ${s.events.map((x) => x.blockNumber)}; ` +
            `watchEvent in blocks ${s.filtered.map((x) => x.blockNumber)}; errors ${s.errors.map(String)}`,
        },
      );
    }
    await sleep(200);

    const expectedLogs = expected.map((e) => ({
      address: env.contractAddress.toLowerCase(),
      blockNumber: BigInt(e.blockNumber),
      blockHash: e.blockHash,
      txHash: e.txHash,
      logIndex: e.logIndex,
      data: e.data,
      topics: e.topics,
      removed: false,
      eventName: "Ping",
      args: { from: sender, value: e.value },
    }));
    const norm = (logs) => logs.map((l) => ({ ...l, address: l.address.toLowerCase() }));
    for (const s of sides) {
      assert.deepEqual(s.errors.map(String), [], `${s.kind}: viem onError calls`);
      const measuredBlocks = s.blocks.filter((b) => b.number > BigInt(warm));
      assert.deepEqual(
        measuredBlocks.map((b) => [b.number, b.hash]),
        expected.map((e) => [BigInt(e.blockNumber), e.blockHash]),
        `${s.kind}: watchBlocks saw exactly the measured blocks with the right hashes`,
      );
      assert.deepEqual(
        s.blockNumbers.filter((n) => n > BigInt(warm)),
        bigTargets,
        `${s.kind}: watchBlockNumber saw exactly the measured blocks`,
      );
      assert.deepEqual(norm(s.events.filter(inBlocks(targets))), expectedLogs, `${s.kind}: watchContractEvent logs`);
      assert.deepEqual(norm(s.filtered.filter(inBlocks(targets))), expectedLogs, `${s.kind}: watchEvent(args) logs`);
    }
    // the full block headers (every field viem formats) must be identical
    assert.deepEqual(
      proxied.blocks.filter((b) => b.number > BigInt(warm)),
      direct.blocks.filter((b) => b.number > BigInt(warm)),
      "newHeads headers via submux == direct",
    );
    assert.deepEqual(proxied.events.filter(inBlocks(targets)), direct.events.filter(inBlocks(targets)));
    assert.deepEqual(proxied.filtered.filter(inBlocks(targets)), direct.filtered.filter(inBlocks(targets)));

    // --- unwatch: 4 subscriptions per side, each eth_unsubscribe -> true
    const offMark = frameMark();
    for (const s of sides) {
      for (const u of s.unwatch.splice(0)) u();
    }
    for (const s of sides) {
      const unsubs = await unsubscribeResults(offMark, s.url, 4);
      assert.deepEqual(
        unsubs.map((u) => u.response),
        unsubs.map((u) => ({ jsonrpc: "2.0", id: u.request.id, result: true })),
        `${s.kind}: eth_unsubscribe answers`,
      );
    }
    const quietMark = frameMark();
    const after1 = await env.sendPing(999);
    await waitFor(async () => (await direct.client.getBlockNumber({ cacheTime: 0 })) >= BigInt(after1.blockNumber), {
      timeoutMs: STEP_MS,
      what: "direct sees the post-unwatch block",
    });
    await sleep(300);
    for (const s of sides) {
      assert.deepEqual(
        notificationsSince(quietMark, s.url).map((f) => f.text),
        [],
        `${s.kind}: no notifications after every watcher was removed`,
      );
    }
    // viem's keepAlive sends {"id":null,"method":"net_version"}: each got a reply with id null
    for (const s of sides) {
      const pings = requestsWithResponses(mark, s.url, "net_version").filter((r) => r.request.id === null);
      const answered = pings.filter((p) => p.response !== undefined);
      assert.ok(answered.length >= 1, `${s.kind}: at least one keepAlive ping answered (${pings.length} sent)`);
      // Hardhat refuses a null id (Invalid request); submux answers it whatever the node
      const want = s === proxied && env.viaSubmux ? { result: String(CHAIN_ID) } : quirks.nullIdNetVersion;
      for (const p of answered) {
        assert.deepEqual(p.response, { jsonrpc: "2.0", id: null, ...want }, `${s.kind}: keepAlive reply`);
      }
    }
  });

  // ---------------------------------------------------------------- HTTP POST JSON-RPC

  // ---------------------------------------------------------------- web3.js v4

  scenario("web3.js v4 WebSocketProvider: direct vs submux", async (t, { defer }) => {
    const makeSide = (kind, url) => {
      const web3 = new Web3(new Web3.providers.WebsocketProvider(url, {}, { autoReconnect: false }));
      const side = { kind, url, web3, heads: [], logs: [], subs: [] };
      defer(async () => {
        for (const s of side.subs) await s.unsubscribe().catch(() => {});
        web3.currentProvider.disconnect();
      });
      return side;
    };
    // web3.js 4 cannot read a node's binary frames at all (docs/nodes.md): against such a
    // node only the through-submux side runs, checked against the chain itself below.
    const sides = quirks.web3jsReadsReplies
      ? [makeSide("direct", env.direct.wsUrl), makeSide("submux", env.proxy.wsUrl)]
      : [makeSide("submux", env.proxy.wsUrl)];

    const basics = await Promise.all(
      sides.map(async (s) => {
        const e = s.web3.eth;
        return {
          chainId: await withTimeout(e.getChainId(), STEP_MS, `${s.kind} getChainId`),
          balance: await withTimeout(e.getBalance(ACCOUNTS[1].address), STEP_MS, `${s.kind} getBalance`),
          blockNumber: await withTimeout(e.getBlockNumber(), STEP_MS, `${s.kind} getBlockNumber`),
        };
      }),
    );
    const truth = {
      chainId: BigInt(CHAIN_ID),
      balance: await env.senderProvider.getBalance(ACCOUNTS[1].address),
      blockNumber: BigInt(await env.senderProvider.getBlockNumber()),
    };
    for (const [i, s] of sides.entries()) {
      assert.deepEqual(basics[i], truth, `${s.kind}: chainId/balance/blockNumber == the node's (via ethers over HTTP)`);
    }

    for (const s of sides) {
      const heads = await withTimeout(s.web3.eth.subscribe("newBlockHeaders"), STEP_MS, `${s.kind} subscribe(newBlockHeaders)`);
      heads.on("data", (h) => s.heads.push(Number(h.number)));
      const logs = await withTimeout(
        s.web3.eth.subscribe("logs", { address: env.contractAddress, topics: [PING_TOPIC] }),
        STEP_MS,
        `${s.kind} subscribe(logs)`,
      );
      logs.on("data", (l) =>
        s.logs.push({
          blockNumber: Number(l.blockNumber),
          blockHash: l.blockHash,
          txHash: l.transactionHash,
          logIndex: Number(l.logIndex),
          data: l.data,
          topics: [...l.topics],
        }),
      );
      s.subs.push(heads, logs);
    }
    const warm = await warmUp(sides, (s) => s.heads.length > 0 && s.logs.length > 0, "web3.js heads + logs on both sides");
    const expected = await mineMeasured(300);
    const targets = expected.map((e) => e.blockNumber);
    assert.ok(Math.min(...targets) > warm);
    for (const s of sides) {
      await waitFor(
        () => targets.every((b) => s.heads.includes(b)) && s.logs.filter(inBlocks(targets)).length >= N,
        { timeoutMs: STEP_MS, what: `${s.kind}: web3.js heads and logs of blocks ${targets}` },
      );
    }
    const expectedLogs = expected.map(({ value, ...log }) => log);
    for (const s of sides) {
      assert.deepEqual(s.logs.filter(inBlocks(targets)), expectedLogs, `${s.kind}: web3.js logs == the receipts' logs`);
      assert.deepEqual(
        s.heads.filter((b) => b > warm),
        targets,
        `${s.kind}: web3.js newBlockHeaders == exactly the measured blocks`,
      );
    }
    if (sides.length === 2) {
      assert.deepEqual(sides[1].logs.filter(inBlocks(targets)), sides[0].logs.filter(inBlocks(targets)), "web3.js logs via submux == direct");
    }
    // Unsubscribing through submux is answered true, as by the node.
    for (const s of sides) {
      for (const sub of s.subs.splice(0)) {
        await withTimeout(sub.unsubscribe(), STEP_MS, `${s.kind} unsubscribe`);
      }
    }
  });

  scenario("HTTP POST JSON-RPC through submux == direct", async () => {
    const directP = new ethers.JsonRpcProvider(env.direct.httpUrl, undefined, { cacheTimeout: -1 });
    const proxyP = new ethers.JsonRpcProvider(env.proxy.httpUrl, undefined, { cacheTimeout: -1 });
    for (const [p, url] of [
      [directP, env.direct.httpUrl],
      [proxyP, env.proxy.httpUrl],
    ]) {
      // log ethers' HTTP JSON-RPC exchanges next to the WebSocket frames
      const conn = `ethers http ${url}`;
      await p.on("debug", (ev) => {
        if (ev.action === "sendRpcPayload") recordText(conn, url, ">>", stringify(ev.payload));
        else if (ev.action === "receiveRpcResult") recordText(conn, url, "<<", stringify(ev.result));
        else if (ev.action === "receiveRpcError") recordText(conn, url, "<<", `error: ${ev.error?.message ?? ev.error}`);
      });
    }
    try {
      const read = async (p, kind) => ({
        chainId: (await withTimeout(p.getNetwork(), STEP_MS, `${kind} getNetwork`)).chainId,
        blockNumber: await withTimeout(p.getBlockNumber(), STEP_MS, `${kind} getBlockNumber`),
        balance0: await withTimeout(p.getBalance(ACCOUNTS[0].address), STEP_MS, `${kind} getBalance`),
        balance1: await withTimeout(p.getBalance(ACCOUNTS[1].address), STEP_MS, `${kind} getBalance`),
      });
      const d = await read(directP, "direct");
      const s = await read(proxyP, "submux");
      assert.equal(d.chainId, BigInt(CHAIN_ID));
      assert.deepEqual(s, d, "JsonRpcProvider via submux == direct");

      // a new block is visible through both
      const r = await env.sendPing(300);
      assert.equal(await proxyP.getBlockNumber(), r.blockNumber);
      const [bd, bs] = await Promise.all([directP.getBlock(r.blockNumber), proxyP.getBlock(r.blockNumber)]);
      assert.equal(bs.hash, r.blockHash);
      assert.deepEqual(bs.toJSON(), bd.toJSON(), "getBlock via submux == direct");
      const [rd, rs] = await Promise.all([
        directP.getTransactionReceipt(r.txHash),
        proxyP.getTransactionReceipt(r.txHash),
      ]);
      assert.deepEqual(rs.toJSON(), rd.toJSON(), "getTransactionReceipt via submux == direct");
    } finally {
      directP.destroy();
      proxyP.destroy();
    }

    // raw batch
    const batch = [
      { jsonrpc: "2.0", id: 1, method: "eth_chainId", params: [] },
      { jsonrpc: "2.0", id: 2, method: "eth_blockNumber", params: [] },
    ];
    const bd = await postJson(env.direct.httpUrl, batch);
    const bs = await postJson(env.proxy.httpUrl, batch);
    for (const [kind, res] of [["direct", bd], ["submux", bs]]) {
      assert.equal(res.status, 200, `${kind}: batch HTTP status`);
      assert.ok(Array.isArray(res.body), `${kind}: batch answer is an array: ${stringify(res.body)}`);
      assert.deepEqual(res.body.map((x) => x.id).sort(), [1, 2], `${kind}: batch answer ids`);
    }
    const byId = (arr) => Object.fromEntries(arr.map((x) => [x.id, x]));
    assert.deepEqual(byId(bs.body), byId(bd.body), "batch answers via submux == direct");
    assert.equal(byId(bs.body)[1].result, `0x${CHAIN_ID.toString(16)}`);

    // eth_subscribe over HTTP: each node answers in its own way (docs/nodes.md); submux
    // refuses it with -32601 (method not found, like geth over HTTP) whatever the node.
    const sub = { jsonrpc: "2.0", id: 7, method: "eth_subscribe", params: ["newHeads"] };
    const httpSubscribe = (res) => {
      if (res.body.error) {
        const { stack, ...error } = res.body.error; // ganache's stack trace
        return { error };
      }
      return { result: typeof res.body.result === "string" ? "a subscription id" : res.body.result };
    };
    const sd = await postJson(env.direct.httpUrl, sub);
    assert.deepEqual(httpSubscribe(sd), quirks.httpSubscribe, `${nodeId}: eth_subscribe over HTTP`);
    const ss = await postJson(env.proxy.httpUrl, sub);
    assert.equal(ss.status, 200, "submux: eth_subscribe over HTTP status");
    assert.equal(ss.body.id, 7, `submux: error reply id (${stringify(ss.body)})`);
    assert.equal(ss.body.jsonrpc, "2.0");
    assert.deepEqual(
      httpSubscribe(ss),
      env.viaSubmux ? SUBMUX_QUIRKS.httpSubscribe : quirks.httpSubscribe,
      `eth_subscribe over HTTP through submux (${stringify(ss.body)})`,
    );
  });

  // ---------------------------------------------------------------- raw ws multiplexing

  async function openRaw(url, label) {
    const ws = new WebSocket(url);
    await withTimeout(
      new Promise((resolve, reject) => {
        ws.once("open", resolve);
        ws.once("error", reject);
      }),
      STEP_MS,
      `${label}: WebSocket open ${url}`,
    );
    const msgs = [];
    const waiters = [];
    ws.on("message", (data, isBinary) => {
      const text = data.toString("utf8");
      let msg;
      try {
        msg = JSON.parse(text);
      } catch {
        msg = { unparsable: text };
      }
      msgs.push({ isBinary, msg });
    });
    return {
      ws,
      label,
      msgs,
      send: (o) => ws.send(JSON.stringify(o)),
      /** Wait for the response with this id that arrived after index `from`. */
      async reply(id, from = 0) {
        const m = await waitFor(() => msgs.slice(from).find((x) => x.msg.method === undefined && x.msg.id === id), {
          timeoutMs: STEP_MS,
          what: `${label}: reply with id ${JSON.stringify(id)}`,
        });
        return m;
      },
      headers(subId) {
        return msgs
          .filter((x) => x.msg.method === "eth_subscription" && x.msg.params?.subscription === subId)
          .map((x) => x.msg.params.result);
      },
      close() {
        ws.close();
      },
    };
  }

  scenario("raw ws: two clients share one newHeads subscription through submux", async (t, { defer }) => {
    const a = await openRaw(env.proxy.wsUrl, "client A (submux)");
    const b = await openRaw(env.proxy.wsUrl, "client B (submux)");
    const d = await openRaw(env.direct.wsUrl, "client D (direct)");
    defer(() => [a, b, d].forEach((c) => c.close()));

    const subscribe = { jsonrpc: "2.0", id: 1, method: "eth_subscribe", params: ["newHeads"] };
    const subIds = {};
    for (const c of [a, b, d]) {
      c.send(subscribe);
      const { msg, isBinary } = await c.reply(1);
      // submux always answers in text frames; a node in binary mode answers in binary ones
      const binary = (c === d || !env.viaSubmux) && quirks.replyFrames === "binary";
      assert.equal(isBinary, binary, `${c.label}: replies are ${binary ? "binary" : "text"} frames`);
      assert.equal(msg.jsonrpc, "2.0", `${c.label}: ${stringify(msg)}`);
      assert.equal(msg.error, undefined, `${c.label}: ${stringify(msg)}`);
      assert.match(msg.result, /^0x[0-9a-f]+$/i, `${c.label}: subscription id is a hex string`);
      subIds[c.label] = msg.result;
    }

    // ids and null ids are echoed; net_version matches the node
    for (const c of [a, d]) {
      const from = c.msgs.length;
      c.send({ jsonrpc: "2.0", id: "str-id", method: "eth_chainId", params: [] });
      c.send({ jsonrpc: "2.0", id: null, method: "net_version", params: [] });
      assert.deepEqual((await c.reply("str-id", from)).msg, { jsonrpc: "2.0", id: "str-id", result: "0x539" }, c.label);
      const want = c === a && env.viaSubmux ? { result: "1337" } : quirks.nullIdNetVersion;
      assert.deepEqual((await c.reply(null, from)).msg, { jsonrpc: "2.0", id: null, ...want }, c.label);
    }

    // two blocks: every client sees both headers, identical to the direct ones
    const r1 = await env.sendPing(401);
    const r2 = await env.sendPing(402);
    const want = [r1.blockHash, r2.blockHash];
    const seenHashes = (c) => c.headers(subIds[c.label]).map((h) => h.hash);
    for (const c of [a, b, d]) {
      await waitFor(() => want.every((h) => seenHashes(c).includes(h)), {
        timeoutMs: STEP_MS,
        what: `${c.label}: newHeads for ${want}`,
        detail: () => `${c.label} (subscription ${subIds[c.label]}) saw headers ${seenHashes(c)}`,
      });
    }
    await sleep(200);
    const pick = (c) => c.headers(subIds[c.label]).filter((h) => want.includes(h.hash));
    assert.equal(pick(d).length, 2, "direct: each block announced once");
    assert.deepEqual(pick(a), pick(d), "client A headers == direct headers (all fields)");
    assert.deepEqual(pick(b), pick(d), "client B headers == direct headers (all fields)");
    for (const c of [a, b]) {
      const foreign = c.msgs.filter(
        (x) => x.msg.method === "eth_subscription" && x.msg.params?.subscription !== subIds[c.label],
      );
      assert.deepEqual(foreign, [], `${c.label}: only notifications for its own subscription id`);
    }

    // A unsubscribes: true, then "subscription not found"; B keeps receiving
    let from = a.msgs.length;
    a.send({ jsonrpc: "2.0", id: 2, method: "eth_unsubscribe", params: [subIds[a.label]] });
    assert.deepEqual((await a.reply(2, from)).msg, { jsonrpc: "2.0", id: 2, result: true }, "first eth_unsubscribe");
    from = a.msgs.length;
    a.send({ jsonrpc: "2.0", id: 3, method: "eth_unsubscribe", params: [subIds[a.label]] });
    const second = (await a.reply(3, from)).msg;
    if (env.viaSubmux) {
      assert.deepEqual(
        second,
        { jsonrpc: "2.0", id: 3, error: { code: -32000, message: "subscription not found" } },
        "second eth_unsubscribe through submux",
      );
    } else {
      // every node here answers `false` for an unknown subscription id
      assert.deepEqual(second, { jsonrpc: "2.0", id: 3, ...quirks.unsubscribeAgain }, `second eth_unsubscribe on ${nodeId}`);
    }

    const aCount = a.headers(subIds[a.label]).length;
    const r3 = await env.sendPing(403);
    for (const c of [b, d]) {
      await waitFor(() => seenHashes(c).includes(r3.blockHash), {
        timeoutMs: STEP_MS,
        what: `${c.label}: still receives newHeads after A unsubscribed`,
      });
    }
    await sleep(300);
    assert.equal(a.headers(subIds[a.label]).length, aCount, "A gets no headers after unsubscribing");
    assert.deepEqual(
      b.headers(subIds[b.label]).find((h) => h.hash === r3.blockHash),
      d.headers(subIds[d.label]).find((h) => h.hash === r3.blockHash),
    );

    from = b.msgs.length;
    b.send({ jsonrpc: "2.0", id: 4, method: "eth_unsubscribe", params: [subIds[b.label]] });
    assert.deepEqual((await b.reply(4, from)).msg, { jsonrpc: "2.0", id: 4, result: true }, "B unsubscribes");
  });
}
