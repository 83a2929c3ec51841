// Each real Ethereum node of the client suites (lib/nodes.mjs), probed with raw WebSocket
// frames directly and through submux (lib/probe.mjs): what the node does must be what
// docs/nodes.md says (NODE_QUIRKS), and what submux does in front of it must be the same
// whatever the node (SUBMUX_QUIRKS), except for answers it passes through (chain id,
// net_version, client version, unknown methods, newHeads payloads).
import { test } from "node:test";
import assert from "node:assert/strict";
import { resolve } from "node:path";
import { startNode, installedVersion, NODE_IDS, NODE_QUIRKS, SUBMUX_QUIRKS, ACCOUNTS } from "./lib/nodes.mjs";
import { probe } from "./lib/probe.mjs";
import { startSubmux } from "./lib/submux.mjs";
import { postJson, waitFor } from "./lib/util.mjs";

const PACKAGE = { ganache: "ganache", "ganache-binary": "ganache", anvil: "@foundry-rs/anvil", hardhat: "hardhat" };

for (const id of NODE_IDS) {
  test(`${id}: quirks as in docs/nodes.md, and submux's answers in front of it`, { timeout: 60_000 }, async (t) => {
    const node = await startNode(id);
    t.after(() => node.close());
    const bin = process.env.SUBMUX_BIN;
    const sm = bin ? await startSubmux({ bin: resolve(bin), upstreamWs: node.wsUrl }) : null;
    if (sm) t.after(() => sm.stop());

    // one plain transfer, sent over HTTP to the node; resolves with its block number
    const mine = async () => {
      const tx = { from: ACCOUNTS[0].address, to: ACCOUNTS[1].address, value: "0x1" };
      const sent = await postJson(node.httpUrl, { jsonrpc: "2.0", id: 1, method: "eth_sendTransaction", params: [tx] });
      assert.equal(typeof sent.body.result, "string", `eth_sendTransaction: ${JSON.stringify(sent.body)}`);
      const receipt = await waitFor(
        async () =>
          (await postJson(node.httpUrl, { jsonrpc: "2.0", id: 2, method: "eth_getTransactionReceipt", params: [sent.body.result] }))
            .body.result,
        { what: "the transfer's receipt" },
      );
      return receipt.blockNumber;
    };

    const direct = await probe({ wsUrl: node.wsUrl, httpUrl: node.httpUrl, mine });
    const version = installedVersion(PACKAGE[id]);
    assert.ok(direct.clientVersion.includes(version), `${id}: web3_clientVersion ${direct.clientVersion} names ${version}`);
    const { clientVersion, header, ...observed } = direct;
    const { web3jsReadsReplies, ...want } = NODE_QUIRKS[id]; // that one is eth-suite's to show
    assert.deepEqual(observed, want, `${id}: observed behaviour vs docs/nodes.md (NODE_QUIRKS)`);

    if (!sm) return;
    const via = await probe({ wsUrl: sm.wsUrl, httpUrl: sm.httpUrl, mine });
    const passedThrough = ["chainId", "netVersion", "unknownMethod", "automine", "newHeadsFields"];
    const expected = { ...SUBMUX_QUIRKS, clientVersion };
    for (const k of passedThrough) expected[k] = NODE_QUIRKS[id][k];
    const { header: viaHeader, ...viaObserved } = via;
    assert.deepEqual(viaObserved, expected, `${id}: submux in front of it`);
    assert.deepEqual(Object.keys(viaHeader), Object.keys(header), `${id}: newHeads payload passed through unchanged`);
  });
}
