// Backfill against real nodes (issue 14), anvil and ganache: ethers subscribed through
// submux to a contract's logs while submux's link to the node is cut for 5 s. The node
// keeps mining (every ping is a transaction, automined into a block of its own) while
// submux cannot reach it;
// once the link is back, submux fetches what it missed (eth_getLogs with the filter) and
// the client sees every log the contract emitted, once each, in order, under its
// subscription — then the live ones.
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { ethers } from "ethers";
import { startNode, ACCOUNTS, CHAIN_ID } from "./lib/nodes.mjs";
import { startSubmux } from "./lib/submux.mjs";
import { PING_TOPIC, deployPing, pingData } from "./lib/ping-contract.mjs";
import { waitFor, withTimeout } from "./lib/util.mjs";

/** A TCP relay in front of `port` whose link can be cut (every connection dropped,
 * new ones closed at once) and restored. */
async function cuttableLink(port) {
  let cut = false;
  const open = new Set();
  const server = net.createServer((down) => {
    if (cut) return down.destroy();
    const up = net.connect(port, "127.0.0.1");
    const pair = [down, up];
    open.add(pair);
    const end = () => {
      open.delete(pair);
      down.destroy();
      up.destroy();
    };
    down.on("error", end).on("close", end);
    up.on("error", end).on("close", end);
    down.pipe(up);
    up.pipe(down);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `ws://127.0.0.1:${server.address().port}`,
    cut() {
      cut = true;
      for (const [down, up] of open) {
        down.destroy();
        up.destroy();
      }
      open.clear();
    },
    restore() {
      cut = false;
    },
    close: () => new Promise((r) => server.close(r)),
  };
}

for (const id of ["anvil", "ganache"])
test(`${id}: logs emitted while submux's upstream link is cut reach the ethers client`, { timeout: 90_000 }, async () => {
  const bin = process.env.SUBMUX_BIN;
  assert.ok(bin, "SUBMUX_BIN names the submux binary");
  const cleanups = [];
  try {
    const node = await startNode(id);
    cleanups.push(() => node.close());
    const link = await cuttableLink(Number(new URL(node.wsUrl).port));
    cleanups.push(() => link.close());
    const mux = await startSubmux({ bin, upstreamWs: link.url });
    cleanups.push(() => mux.stop());

    const sender = new ethers.JsonRpcProvider(node.httpUrl, CHAIN_ID, {
      staticNetwork: true,
      pollingInterval: 50,
      cacheTimeout: -1,
    });
    cleanups.push(() => sender.destroy());
    const wallet = new ethers.Wallet(ACCOUNTS[0].privateKey, sender);
    const address = await deployPing(wallet);
    const ping = async (value) => {
      const tx = await wallet.sendTransaction({ to: address, data: pingData(value), gasLimit: 100_000 });
      const r = await tx.wait(1, 10_000);
      assert.equal(r.status, 1);
      return r.blockNumber;
    };

    const client = new ethers.WebSocketProvider(mux.wsUrl, CHAIN_ID, { staticNetwork: true });
    cleanups.push(() => client.destroy());
    const seen = [];
    await withTimeout(
      client.on({ address, topics: [PING_TOPIC] }, (log) => seen.push({ value: BigInt(log.data), block: log.blockNumber })),
      10_000,
      "ethers subscribes to the contract's logs through submux",
    );
    // ethers subscribes in the background: wait until the first ping arrives.
    await ping(1);
    await waitFor(() => seen.length === 1, { timeoutMs: 10_000, what: "the first log, live" });
    await ping(2);
    await waitFor(() => seen.length === 2, { timeoutMs: 10_000, what: "the second log, live" });

    // Cut submux off from anvil for 5 s; anvil keeps mining: one block per ping.
    link.cut();
    const missed = [];
    const t0 = Date.now();
    for (let v = 3; v <= 7; v++) missed.push(await ping(v));
    await new Promise((r) => setTimeout(r, Math.max(0, 5_000 - (Date.now() - t0))));
    assert.equal(seen.length, 2, "nothing arrives while the link is cut");
    link.restore();

    await ping(8); // live after the switch (held until the backfill is out)
    await waitFor(() => seen.length >= 8, {
      timeoutMs: 30_000,
      what: "every log, the missed ones backfilled",
      detail: () => `seen: ${seen.map((s) => s.value)}\nsubmux:\n${mux.logs()}`,
    });
    await new Promise((r) => setTimeout(r, 300)); // a duplicate would show up now
    assert.deepEqual(
      seen.map((s) => s.value),
      [1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n],
      "every log the contract emitted, once, in order",
    );
    assert.deepEqual(
      seen.slice(2, 7).map((s) => s.block),
      missed,
      "the backfilled logs carry the blocks anvil mined them in",
    );
    const metrics = await (await fetch(`${mux.baseUrl}/metrics`)).text();
    assert.match(metrics, /submux_backfilled_total\{route="\/eth"\} [1-9]/, "counted as backfilled");
  } finally {
    for (const fn of cleanups.reverse()) {
      try {
        await fn();
      } catch (e) {
        console.error("teardown error:", e);
      }
    }
  }
});
