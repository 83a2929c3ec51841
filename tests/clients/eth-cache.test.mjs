// The call cache (issue 15) against real nodes: for each cached kind, the answer through
// submux — the first (sent to the node), a second over WebSocket and one over HTTP POST
// (both from the cache, or for eth_blockNumber from the followed head) — is byte for byte
// the node's own answer to the same request on the same state. anvil and ganache order
// their answers' fields differently, which is what the head answer must reproduce.
//
//   SUBMUX_BIN=target/debug/submux node --test tests/clients/eth-cache.test.mjs
import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { startNode, ACCOUNTS } from "./lib/nodes.mjs";
import { startSubmux } from "./lib/submux.mjs";
import { withTimeout, waitFor } from "./lib/util.mjs";

const BIN = process.env.SUBMUX_BIN;

/** A WebSocket that sends raw text and returns the raw text of the answer with `id`. */
async function open(url) {
  const ws = new WebSocket(url);
  await withTimeout(new Promise((ok, fail) => (ws.once("open", ok), ws.once("error", fail))), 10_000, `open ${url}`);
  const waiting = new Map();
  ws.on("message", (data) => {
    const text = data.toString();
    let v;
    try {
      v = JSON.parse(text);
    } catch {
      return;
    }
    const w = waiting.get(JSON.stringify(v.id));
    if (w) {
      waiting.delete(JSON.stringify(v.id));
      w(text);
    }
  });
  return {
    ask(method, params, id = 7) {
      const text = JSON.stringify({ jsonrpc: "2.0", id, method, params });
      const answer = new Promise((ok) => waiting.set(JSON.stringify(id), ok));
      ws.send(text);
      return withTimeout(answer, 10_000, `${method} on ${url}`);
    },
    close: () => ws.close(),
  };
}

async function post(url, method, params, id = 7) {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id, method, params }),
  });
  assert.equal(res.status, 200);
  return await res.text();
}

async function metric(baseUrl, name) {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{route="/eth"}`));
  return line ? Number(line.split(" ").pop()) : NaN;
}

for (const nodeId of ["anvil", "ganache"]) {
  test(`${nodeId}: answers through the cache are the node's bytes`, { timeout: 90_000 }, async () => {
    assert.ok(BIN, "SUBMUX_BIN must name the submux binary (tests/client_libs.rs sets it)");
    const node = await startNode(nodeId);
    const cleanups = [() => node.close()];
    try {
      const mux = await startSubmux({ bin: BIN, upstreamWs: node.wsUrl });
      cleanups.push(() => mux.stop());
      const direct = await open(node.wsUrl);
      const via = await open(mux.wsUrl);
      cleanups.push(() => direct.close(), () => via.close());
      const [a, b] = ACCOUNTS.map((x) => x.address.toLowerCase());

      // State: one transfer, then 64 blocks on top so that its receipt is final.
      const sent = JSON.parse(await direct.ask("eth_sendTransaction", [{ from: a, to: b, value: "0x1" }], 1));
      assert.ok(sent.result, `transfer: ${JSON.stringify(sent)}`);
      const tx = sent.result;
      for (let i = 0; i < 64; i++) await direct.ask("evm_mine", [], 100 + i);
      const head = JSON.parse(await direct.ask("eth_blockNumber", [], 2)).result;
      await waitFor(async () => (await metric(mux.baseUrl, "submux_followed_head")) === Number(head), {
        timeoutMs: 10_000,
        what: `submux to follow head ${head}`,
      });
      const receipt = JSON.parse(await direct.ask("eth_getTransactionReceipt", [tx], 3)).result;
      assert.ok(receipt?.blockHash, "the transfer was mined");

      const kinds = [
        ["eth_chainId", []],
        ["net_version", []],
        ["web3_clientVersion", []],
        ["eth_getBalance", [a, "latest"]],
        ["eth_getBalance", [b]],
        ["eth_getCode", [a, "latest"]],
        ["eth_getTransactionCount", [a, "latest"]],
        ["eth_call", [{ from: a, to: b, data: "0x" }, "latest"]],
        ["eth_estimateGas", [{ from: a, to: b, value: "0x1" }]],
        ["eth_gasPrice", []],
        ["eth_feeHistory", ["0x4", "latest", [25, 75]]],
        ["eth_getBlockByNumber", ["latest", false]],
        ["eth_getBlockByNumber", [receipt.blockNumber, true]],
        ["eth_getBlockByHash", [receipt.blockHash, false]],
        ["eth_getTransactionByHash", [tx]],
        ["eth_getTransactionReceipt", [tx]],
      ];
      for (const [method, params] of kinds) {
        const want = await direct.ask(method, params);
        const hits = await metric(mux.baseUrl, "submux_cache_hits_total");
        const first = await via.ask(method, params);
        const second = await via.ask(method, params);
        const overHttp = await post(mux.httpUrl, method, params);
        const what = `${method} ${JSON.stringify(params)}`;
        assert.equal(first, want, `${what}: first answer through submux`);
        assert.equal(second, want, `${what}: from the cache over WebSocket`);
        assert.equal(overHttp, want, `${what}: from the cache over HTTP POST`);
        if (JSON.parse(want).error === undefined) {
          assert.equal(await metric(mux.baseUrl, "submux_cache_hits_total"), hits + 2, `${what}: two cache hits`);
        }
      }
      // eth_blockNumber: from the followed head, in the node's own envelope.
      const want = await direct.ask("eth_blockNumber", []);
      const answered = await metric(mux.baseUrl, "submux_head_answers_total");
      assert.equal(await via.ask("eth_blockNumber", []), want, "eth_blockNumber over WebSocket");
      assert.equal(await post(mux.httpUrl, "eth_blockNumber", []), want, "eth_blockNumber over POST");
      assert.equal(await via.ask("eth_blockNumber", [], "x"), want.replace('"id":7', '"id":"x"'), "string id");
      assert.equal(await metric(mux.baseUrl, "submux_head_answers_total"), answered + 3);
      // A new block: what was at latest is asked again; the final receipt is not.
      const calls = await metric(mux.baseUrl, "submux_upstream_calls_total");
      await direct.ask("evm_mine", [], 4);
      const next = JSON.parse(await direct.ask("eth_blockNumber", [], 5)).result;
      await waitFor(async () => (await metric(mux.baseUrl, "submux_followed_head")) === Number(next), {
        timeoutMs: 10_000,
        what: `submux to follow head ${next}`,
      });
      assert.equal(await via.ask("eth_getBalance", [a, "latest"]), await direct.ask("eth_getBalance", [a, "latest"]));
      assert.equal(await via.ask("eth_getTransactionReceipt", [tx]), await direct.ask("eth_getTransactionReceipt", [tx]));
      assert.equal(await metric(mux.baseUrl, "submux_upstream_calls_total"), calls + 1, "only the balance was asked again");
    } finally {
      for (const f of cleanups.reverse()) {
        try {
          await f();
        } catch (e) {
          console.error("cleanup failed:", e);
        }
      }
    }
  });
}
