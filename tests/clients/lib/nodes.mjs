// The real Ethereum nodes the client suites run against, all on 127.0.0.1 with a port the
// OS picks (port 0), chain id 1337, automine, and the same deterministic accounts (ganache's
// `wallet.deterministic` mnemonic, which anvil and Hardhat are given too):
//   ganache        ganache 7.9.2 in-process, text frames (answers in the request's frame type)
//   ganache-binary ganache 7.9.2 in-process with `server.wsBinary: true`: every frame binary
//   anvil          anvil (npm @foundry-rs/anvil ships the binary) as a child process
//   hardhat        `hardhat node` (Hardhat 2, EDR) as a child process, config in ../hardhat/
// Each start function resolves with { id, name, version, wsUrl, httpUrl, logs(), close() }.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { withTimeout } from "./util.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const clientsDir = join(here, "..");
const require = createRequire(import.meta.url);

export const CHAIN_ID = 1337;
export const MNEMONIC = "myth like bonus scare over problem client lizard pioneer submit female collect";

// The first two accounts of MNEMONIC (m/44'/60'/0'/0/i).
export const ACCOUNTS = [
  {
    address: "0x90F8bf6A479f320ead074411a4B0e7944Ea8c9C1",
    privateKey: "0x4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d",
  },
  {
    address: "0xFFcf8FDEE72ac11b5c542428B35EEF5769C409f0",
    privateKey: "0x6cbed15c793ce57650b9877cf6fa156fbef513c4e6134f022a85b1ffdd59b2a1",
  },
];

/** The version npm installed for `pkg` (== the exact pin in package.json). */
export function installedVersion(pkg) {
  return JSON.parse(readFileSync(join(clientsDir, "node_modules", pkg, "package.json"), "utf8")).version;
}

export const NODE_IDS = ["ganache", "ganache-binary", "anvil", "hardhat"];

export function startNode(id) {
  switch (id) {
    case "ganache":
      return startGanache({ binary: false });
    case "ganache-binary":
      return startGanache({ binary: true });
    case "anvil":
      return startAnvil();
    case "hardhat":
      return startHardhat();
    default:
      throw new Error(`unknown node ${id} (known: ${NODE_IDS.join(", ")})`);
  }
}

async function startGanache({ binary }) {
  const { default: ganache } = await import("ganache");
  const server = ganache.server({
    logging: { quiet: true },
    wallet: { mnemonic: MNEMONIC, totalAccounts: 4 },
    // networkId defaults to Date.now() in ganache; pin it so net_version is stable.
    chain: { chainId: CHAIN_ID, networkId: CHAIN_ID },
    miner: { instamine: "eager" },
    // "auto" (the default) answers in the frame type of the request; true: always binary.
    server: { wsBinary: binary ? true : "auto" },
  });
  await server.listen(0, "127.0.0.1");
  const { port } = server.address();
  if (!port) throw new Error("ganache did not report a listening port");
  let closed = false;
  return {
    id: binary ? "ganache-binary" : "ganache",
    name: "ganache",
    version: installedVersion("ganache"),
    // ganache serves WebSocket (only on path "/") and HTTP POST on the same port.
    wsUrl: `ws://127.0.0.1:${port}`,
    httpUrl: `http://127.0.0.1:${port}`,
    logs: () => "(ganache runs in-process, quiet)",
    async close() {
      if (closed) return;
      closed = true;
      await server.close();
    },
  };
}

/** anvil's own binary from the platform package npm picked (no wrapper process). */
function anvilBinary() {
  const arch = { x64: "amd64", arm64: "arm64" }[process.arch] ?? process.arch;
  try {
    return join(dirname(require.resolve(`@foundry-rs/anvil-${process.platform}-${arch}/package.json`)), "bin", "anvil");
  } catch {
    return join(clientsDir, "node_modules", ".bin", "anvil"); // the package's node wrapper
  }
}

async function startAnvil() {
  const child = await spawnNode({
    what: "anvil",
    bin: anvilBinary(),
    args: [
      "--host", "127.0.0.1",
      "--port", "0",
      "--chain-id", String(CHAIN_ID),
      "--mnemonic", MNEMONIC,
      "--accounts", "4",
    ],
    readyRe: /^Listening on (127\.0\.0\.1:\d+)\s*$/,
  });
  return {
    id: "anvil",
    name: "anvil",
    version: installedVersion("@foundry-rs/anvil"),
    wsUrl: `ws://${child.match[1]}`,
    httpUrl: `http://${child.match[1]}`,
    logs: child.logs,
    close: child.stop,
  };
}

async function startHardhat() {
  const cwd = join(clientsDir, "hardhat");
  const child = await spawnNode({
    what: "hardhat node",
    bin: process.execPath,
    args: [
      join(clientsDir, "node_modules", "hardhat", "internal", "cli", "bootstrap.js"),
      "--config", join(cwd, "hardhat.config.cjs"),
      "node",
      "--hostname", "127.0.0.1",
      "--port", "0",
    ],
    cwd,
    env: { HARDHAT_DISABLE_TELEMETRY_PROMPT: "true", NO_COLOR: "1" },
    readyRe: /^Started HTTP and WebSocket JSON-RPC server at http:\/\/(127\.0\.0\.1:\d+)\/\s*$/,
  });
  return {
    id: "hardhat",
    name: "Hardhat",
    version: installedVersion("hardhat"),
    wsUrl: `ws://${child.match[1]}`,
    httpUrl: `http://${child.match[1]}`,
    logs: child.logs,
    close: child.stop,
  };
}

/**
 * Spawn a node as a child process in its own process group; resolve once a stdout line
 * matches `readyRe` (the node prints its bound address: that is the readiness signal).
 * Returns { match, logs(), stop() }; stop() ends the whole group.
 */
async function spawnNode({ what, bin, args, cwd, env = {}, readyRe, startTimeoutMs = 30_000 }) {
  const child = spawn(bin, args, { cwd, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env }, detached: true });
  const lines = [];
  const keep = (stream, line) => {
    lines.push(`[${what} ${stream}] ${line}`);
    if (lines.length > 500) lines.splice(0, lines.length - 500);
    if (process.env.SUBMUX_TEST_VERBOSE) process.stderr.write(`[${what} ${stream}] ${line}\n`);
  };
  let exited = null;
  const exitPromise = new Promise((resolve) =>
    child.on("exit", (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    }),
  );
  const group = (sig) => {
    try {
      process.kill(-child.pid, sig);
    } catch {
      // already gone
    }
  };
  const stop = async () => {
    if (!exited && child.pid !== undefined) {
      group("SIGTERM");
      const r = await withTimeout(exitPromise, 5_000, `${what} to exit`).catch(() => null);
      if (!r) group("SIGKILL");
    }
    if (child.pid !== undefined) group("SIGKILL");
    child.stdout.destroy();
    child.stderr.destroy();
  };
  const logs = () => lines.join("\n");
  createInterface({ input: child.stderr }).on("line", (l) => keep("stderr", l));
  try {
    const match = await withTimeout(
      new Promise((resolve, reject) => {
        createInterface({ input: child.stdout }).on("line", (l) => {
          keep("stdout", l);
          const m = readyRe.exec(l);
          if (m) resolve(m);
        });
        child.on("error", (e) => reject(new Error(`cannot spawn ${bin}: ${e.message}`)));
        exitPromise.then(({ code, signal }) => reject(new Error(`${what} exited (code ${code}, signal ${signal})`)));
      }),
      startTimeoutMs,
      `${what} to print its listening address`,
    );
    return { match, logs, stop };
  } catch (e) {
    await stop();
    throw new Error(`starting ${what} failed: ${e.message}\n${logs()}`);
  }
}

const GANACHE_HEADER = [
  "baseFeePerGas", "difficulty", "extraData", "gasLimit", "gasUsed", "hash", "logsBloom", "miner", "mixHash",
  "nonce", "number", "parentHash", "receiptsRoot", "sha3Uncles", "stateRoot", "timestamp", "totalDifficulty",
  "transactionsRoot", "withdrawalsRoot",
];
// anvil and Hardhat (EDR) send the whole block (transaction hashes, uncles, size, withdrawals)
// in a newHeads notification, not just the header.
const FULL_BLOCK_HEADER = [
  "baseFeePerGas", "blobGasUsed", "difficulty", "excessBlobGas", "extraData", "gasLimit", "gasUsed", "hash",
  "logsBloom", "miner", "mixHash", "nonce", "number", "parentBeaconBlockRoot", "parentHash", "receiptsRoot",
  "requestsHash", "sha3Uncles", "size", "stateRoot", "timestamp", "totalDifficulty", "transactions",
  "transactionsRoot", "uncles", "withdrawals", "withdrawalsRoot",
];
const ganacheQuirks = {
  chainId: "0x539",
  netVersion: "1337",
  subscriptionIds: "counter: 0x1, 0x2, …",
  unsubscribe: true,
  unsubscribeAgain: { result: false },
  unsubscribeNeverIssued: { result: false },
  // ganache also sends a `stack` (its own source paths) in every error; lib/probe.mjs drops it
  parseError: { id: null, error: { message: `Unexpected token 'o', "not json" is not valid JSON`, code: -32700 } },
  noMethod: { id: 77, error: { message: "The method undefined does not exist/is not available", code: -32700 } },
  unknownMethod: { error: { message: "The method foo_bar does not exist/is not available", code: -32700 } },
  batch: "array of 2",
  emptyBatch: [],
  batchOfSubscribes: "array of 2, 2 ids",
  // subscriptions made inside a batch are answered with ids but never notified
  batchSubscribesNotified: 0,
  automine: "one block per transaction",
  newHeadsFields: GANACHE_HEADER,
  replyFrames: "text",
  notificationFrames: "text",
  httpSubscribe: { error: { message: "notifications not supported", code: -32004 } },
  nullIdNetVersion: { result: "1337" },
  // web3.js 4 cannot read binary frames (its chunk parser calls data.replace on a Buffer)
  web3jsReadsReplies: true,
};

/**
 * What lib/probe.mjs observes on each node directly (eth-nodes.test.mjs asserts it;
 * docs/nodes.md tabulates it). `clientVersion` is checked to contain the pinned version.
 */
export const NODE_QUIRKS = {
  ganache: ganacheQuirks,
  // --server.wsBinary true: replies in binary frames, but notifications still in text frames
  "ganache-binary": { ...ganacheQuirks, replyFrames: "binary", web3jsReadsReplies: false },
  anvil: {
    chainId: "0x539",
    netVersion: "1337",
    subscriptionIds: "16 random ASCII letters/digits, hex-encoded: 0x + 32 digits",
    unsubscribe: true,
    unsubscribeAgain: { result: false },
    unsubscribeNeverIssued: { result: false },
    parseError: { id: null, error: { code: -32600, message: "Invalid request" } },
    noMethod: { id: 77, error: { code: -32600, message: "Invalid request" } },
    unknownMethod: { error: { code: -32602, message: "data did not match any variant of untagged enum EthRpcCall" } },
    batch: "array of 2",
    emptyBatch: { id: null, error: { code: -32600, message: "Invalid request" } },
    batchOfSubscribes: "array of 2, 2 ids",
    batchSubscribesNotified: 2,
    automine: "one block per transaction",
    newHeadsFields: FULL_BLOCK_HEADER,
    replyFrames: "text",
    notificationFrames: "text",
    httpSubscribe: { error: { code: -32601, message: "Method not found" } },
    nullIdNetVersion: { result: "1337" },
    web3jsReadsReplies: true,
  },
  hardhat: {
    chainId: "0x539",
    netVersion: "1337",
    subscriptionIds: "counter: 0x1, 0x2, …",
    unsubscribe: true,
    unsubscribeAgain: { result: false },
    unsubscribeNeverIssued: { result: false },
    parseError: {
      id: null,
      error: {
        code: -32700,
        message: `Parse error: Unexpected token 'o', "not json" is not valid JSON`,
        data: { message: `Parse error: Unexpected token 'o', "not json" is not valid JSON` },
      },
    },
    // the request's id is dropped
    noMethod: { id: null, error: { code: -32600, message: "Invalid request", data: { message: "Invalid request" } } },
    unknownMethod: {
      error: {
        code: -32004,
        message: "Method foo_bar is not supported",
        data: { message: "Method foo_bar is not supported", data: { method: "foo_bar", params: [] } },
      },
    },
    batch: "array of 2",
    emptyBatch: [],
    batchOfSubscribes: "array of 2, 2 ids",
    batchSubscribesNotified: 2,
    automine: "one block per transaction",
    newHeadsFields: FULL_BLOCK_HEADER,
    replyFrames: "text",
    notificationFrames: "text",
    // Hardhat creates a subscription for an HTTP caller (nothing can ever be delivered)
    httpSubscribe: { result: "a subscription id" },
    // a request with "id": null is refused (viem's keepAlive sends exactly that)
    nullIdNetVersion: { error: { code: -32600, message: "Invalid request", data: { message: "Invalid request" } } },
    web3jsReadsReplies: true,
  },
};

/** What the same probe observes through submux, whichever node is behind it. */
export const SUBMUX_QUIRKS = {
  subscriptionIds: "random 128-bit number, minimal hex: 0x + up to 32 digits",
  unsubscribe: true,
  unsubscribeAgain: { error: { code: -32000, message: "subscription not found" } },
  unsubscribeNeverIssued: { error: { code: -32000, message: "subscription not found" } },
  parseError: { id: null, error: { code: -32700, message: "expected ident at line 1 column 2" } },
  noMethod: { id: 77, error: { code: -32600, message: "invalid request" } },
  batch: "array of 2",
  emptyBatch: { id: null, error: { code: -32600, message: "empty batch" } },
  batchOfSubscribes: "array of 2, 2 ids",
  batchSubscribesNotified: 2,
  replyFrames: "text",
  notificationFrames: "text",
  httpSubscribe: { error: { code: -32601, message: "notifications not supported" } },
  nullIdNetVersion: { result: "1337" },
};
