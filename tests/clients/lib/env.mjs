// Shared fixture: a real node (lib/nodes.mjs) + deployed Ping contract + (submux in front of it).
import assert from "node:assert/strict";
import { resolve } from "node:path";
import { ethers } from "ethers";
import { startNode, ACCOUNTS, CHAIN_ID } from "./nodes.mjs";
import { startSubmux } from "./submux.mjs";
import { installFrameLogger } from "./frames.mjs";
import { INIT_CODE, RUNTIME_CODE, PING_TOPIC, deployPing, pingData } from "./ping-contract.mjs";

export { ACCOUNTS, CHAIN_ID };

/** `nodeId`: one of lib/nodes.mjs NODE_IDS. */
export async function setupEnv(nodeId) {
  installFrameLogger();
  const cleanups = [];
  const teardown = async () => {
    for (const fn of cleanups.reverse()) {
      try {
        await fn();
      } catch (e) {
        console.error("teardown error:", e);
      }
    }
  };

  try {
    const node = await startNode(nodeId);
    cleanups.push(() => node.close());

    // The transaction sender talks to the node directly over HTTP, separate from
    // every provider under test.
    const senderProvider = new ethers.JsonRpcProvider(node.httpUrl, CHAIN_ID, {
      staticNetwork: true,
      pollingInterval: 50,
      cacheTimeout: -1,
    });
    cleanups.push(() => senderProvider.destroy());
    const accounts = await senderProvider.send("eth_accounts", []);
    for (const [i, a] of ACCOUNTS.entries()) {
      assert.equal(accounts[i].toLowerCase(), a.address.toLowerCase(), `${nodeId}: account ${i} of the shared mnemonic`);
    }
    const wallet = new ethers.Wallet(ACCOUNTS[0].privateKey, senderProvider);
    assert.equal(wallet.address, ACCOUNTS[0].address);

    // Deploy and sanity-check the hand-assembled contract against the node directly.
    const contractAddress = await deployPing(wallet);
    assert.equal(await senderProvider.getCode(contractAddress), RUNTIME_CODE, "deployed runtime code");

    let sendQueue = Promise.resolve();
    /** Send one ping (serialised) and return what the chain recorded for it. */
    const sendPing = (value) => {
      const run = async () => {
        const tx = await wallet.sendTransaction({ to: contractAddress, data: pingData(value), gasLimit: 100_000 });
        const receipt = await tx.wait(1, 10_000);
        assert.equal(receipt.status, 1, `ping(${value}) tx status`);
        assert.equal(receipt.logs.length, 1, `ping(${value}) emits exactly one log`);
        const log = receipt.logs[0];
        return {
          value: BigInt(value),
          blockNumber: receipt.blockNumber,
          blockHash: receipt.blockHash,
          txHash: receipt.hash,
          logIndex: log.index,
          data: log.data,
          topics: [...log.topics],
        };
      };
      const p = sendQueue.then(run, run);
      sendQueue = p.catch(() => {});
      return p;
    };

    const probe = await sendPing(7);
    assert.deepEqual(
      probe.topics,
      [PING_TOPIC, ethers.zeroPadValue(wallet.address.toLowerCase(), 32)],
      "Ping log topics = [keccak(Ping(address,uint256)), caller]",
    );
    assert.equal(probe.data, pingData(7), "Ping log data = calldata word");
    const latest = await senderProvider.getBlockNumber();
    assert.equal(latest, probe.blockNumber, "instamine: the ping is in the latest block");

    let proxy;
    const submuxBin = process.env.SUBMUX_BIN;
    if (submuxBin) {
      const sm = await startSubmux({ bin: resolve(submuxBin), upstreamWs: node.wsUrl });
      cleanups.push(async () => {
        const r = await sm.stop();
        if (process.env.SUBMUX_TEST_VERBOSE) console.error("submux exit:", r);
      });
      proxy = { kind: "submux", wsUrl: sm.wsUrl, httpUrl: sm.httpUrl, logs: sm.logs };
    } else {
      const banner = "!".repeat(78);
      console.warn(
        `\n${banner}\n!! SUBMUX_BIN is not set: the "through submux" side of every scenario talks to\n` +
          `!! THE NODE DIRECTLY. Nothing about submux is being tested in this run.\n` +
          `!! (cargo test / scripts/test always set SUBMUX_BIN.)\n${banner}\n`,
      );
      // A query string keeps the URLs distinct (for frame logs) while the nodes ignore it.
      proxy = {
        kind: `${nodeId}-fallback`,
        wsUrl: `${node.wsUrl}/?via=proxy-fallback`,
        httpUrl: `${node.httpUrl}/?via=proxy-fallback`,
        logs: () => "(no submux: fallback to the node)",
      };
    }

    return {
      node,
      direct: { kind: nodeId, wsUrl: node.wsUrl, httpUrl: node.httpUrl },
      proxy,
      viaSubmux: proxy.kind === "submux",
      senderProvider,
      wallet,
      contractAddress,
      initCode: INIT_CODE,
      sendPing,
      teardown,
    };
  } catch (e) {
    await teardown();
    throw e;
  }
}
