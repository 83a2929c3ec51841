// Probe one Ethereum JSON-RPC WebSocket endpoint (a node, or submux in front of it) with raw
// frames and report what it does, in a comparable form: frame types, subscription id shape,
// unsubscribe answers, error answers, batches, automine. docs/nodes.md tabulates the results;
// tests/clients/eth-nodes.test.mjs asserts them.
import WebSocket from "ws";
import { withTimeout, waitFor, postJson } from "./util.mjs";

const STEP_MS = 10_000;

async function open(url) {
  const ws = new WebSocket(url);
  await withTimeout(
    new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
    }),
    STEP_MS,
    `WebSocket open ${url}`,
  );
  const msgs = [];
  ws.on("message", (data, isBinary) => {
    let msg;
    try {
      msg = JSON.parse(data.toString("utf8"));
    } catch {
      msg = { unparsable: data.toString("utf8") };
    }
    msgs.push({ isBinary, msg });
  });
  let nextId = 1000;
  const c = {
    ws,
    msgs,
    sendRaw: (text) => ws.send(text),
    /** Send a request (or a batch: array of [method, params]) and wait for its answer. */
    async call(method, params = []) {
      const id = nextId++;
      const from = msgs.length;
      ws.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
      return (await c.answer((m) => !Array.isArray(m) && m.id === id, from, `${method} #${id}`)).msg;
    },
    async batch(calls) {
      const ids = calls.map(() => nextId++);
      const from = msgs.length;
      ws.send(JSON.stringify(calls.map(([method, params], i) => ({ jsonrpc: "2.0", id: ids[i], method, params }))));
      return (await c.answer((m) => Array.isArray(m) || ids.includes(m.id), from, `batch ${ids}`)).msg;
    },
    /** The first message since index `from` that is not a notification and matches. */
    answer(pred, from, what) {
      return waitFor(() => msgs.slice(from).find((x) => x.msg.method === undefined && pred(x.msg)), {
        timeoutMs: STEP_MS,
        what: `answer to ${what}`,
      });
    },
    notifications: (subId) =>
      msgs.filter((x) => x.msg.method === "eth_subscription" && x.msg.params?.subscription === subId),
    close: () => ws.close(),
  };
  return c;
}

/** A JSON-RPC error or result without its envelope, and without ganache's `stack`. */
function body(m) {
  if (Array.isArray(m)) return m.map(body);
  if (m.error) {
    const { stack, ...error } = m.error;
    return { id: m.id, error };
  }
  return { id: m.id, result: m.result };
}

/** How a node (or submux) spells subscription ids, from a few samples. */
export function idShape(ids) {
  if (!ids.every((id) => typeof id === "string" && /^0x[0-9a-f]+$/.test(id))) return `other: ${ids.join(", ")}`;
  if (ids.every((id) => BigInt(id) < 10_000n)) return "counter: 0x1, 0x2, …";
  const ascii = (id) => id.length === 34 && /^[0-9A-Za-z]+$/.test(Buffer.from(id.slice(2), "hex").toString("latin1"));
  if (ids.every(ascii)) return "16 random ASCII letters/digits, hex-encoded: 0x + 32 digits";
  if (ids.every((id) => id.length <= 34 && id[2] !== "0")) return "random 128-bit number, minimal hex: 0x + up to 32 digits";
  return `other: ${ids.join(", ")}`;
}

/**
 * Probe `wsUrl` (and `httpUrl` for eth_subscribe over HTTP). `mine()` makes the node mine
 * one block (a transaction, sent elsewhere) and resolves with its number.
 */
export async function probe({ wsUrl, httpUrl, mine }) {
  const c = await open(wsUrl);
  try {
    const out = {};
    out.clientVersion = (await c.call("web3_clientVersion")).result;
    out.chainId = (await c.call("eth_chainId")).result;
    out.netVersion = (await c.call("net_version")).result;

    // subscription ids, unsubscribe answers
    const s1 = (await c.call("eth_subscribe", ["newHeads"])).result;
    const s2 = (await c.call("eth_subscribe", ["logs", {}])).result;
    const s3 = (await c.call("eth_subscribe", ["newPendingTransactions"])).result;
    out.subscriptionIds = idShape([s1, s2, s3]);
    out.unsubscribe = (await c.call("eth_unsubscribe", [s1])).result;
    out.unsubscribeAgain = body(await c.call("eth_unsubscribe", [s1]));
    delete out.unsubscribeAgain.id;
    out.unsubscribeNeverIssued = body(await c.call("eth_unsubscribe", ["0x1234"]));
    delete out.unsubscribeNeverIssued.id;
    await c.call("eth_unsubscribe", [s2]);
    await c.call("eth_unsubscribe", [s3]);

    // errors
    let from = c.msgs.length;
    c.sendRaw("not json");
    out.parseError = body((await c.answer(() => true, from, "not json")).msg);
    from = c.msgs.length;
    c.sendRaw(JSON.stringify({ jsonrpc: "2.0", id: 77 }));
    out.noMethod = body((await c.answer(() => true, from, "request without method")).msg);
    from = c.msgs.length;
    c.sendRaw(JSON.stringify({ jsonrpc: "2.0", id: null, method: "net_version", params: [] }));
    out.nullIdNetVersion = body((await c.answer(() => true, from, "net_version with id null")).msg);
    delete out.nullIdNetVersion.id;
    out.unknownMethod = body(await c.call("foo_bar"));
    delete out.unknownMethod.id;

    // batches
    const b = await c.batch([
      ["eth_chainId", []],
      ["net_version", []],
    ]);
    out.batch = Array.isArray(b) ? `array of ${b.length}` : `not an array: ${JSON.stringify(body(b))}`;
    from = c.msgs.length;
    c.sendRaw("[]");
    out.emptyBatch = body((await c.answer(() => true, from, "empty batch")).msg);
    const bs = await c.batch([
      ["eth_subscribe", ["newHeads"]],
      ["eth_subscribe", ["newHeads"]],
    ]);
    const batchIds = Array.isArray(bs) ? bs.map((x) => x.result).filter((x) => typeof x === "string") : [];
    out.batchOfSubscribes = Array.isArray(bs)
      ? `array of ${bs.length}, ${batchIds.length} ids`
      : `not an array: ${JSON.stringify(body(bs))}`;

    // automine: one transaction, one block; who gets a newHeads for it
    const single = (await c.call("eth_subscribe", ["newHeads"])).result;
    const before = BigInt((await c.call("eth_blockNumber")).result);
    const mined = await mine();
    out.automine = BigInt(mined) === before + 1n ? "one block per transaction" : `block ${mined} after ${before}`;
    await waitFor(() => c.notifications(single).length > 0, { timeoutMs: STEP_MS, what: "newHeads after mining" });
    out.batchSubscribesNotified = batchIds.filter((id) => c.notifications(id).length > 0).length;
    out.newHeadsFields = Object.keys(c.notifications(single)[0].msg.params.result).sort();
    out.header = c.notifications(single)[0].msg.params.result;
    const frames = (xs) => [...new Set(xs.map((x) => (x.isBinary ? "binary" : "text")))].sort().join("+");
    out.replyFrames = frames(c.msgs.filter((x) => x.msg.method === undefined));
    out.notificationFrames = frames(c.msgs.filter((x) => x.msg.method === "eth_subscription"));

    if (httpUrl) {
      const h = await postJson(httpUrl, { jsonrpc: "2.0", id: 5, method: "eth_subscribe", params: ["newHeads"] });
      out.httpSubscribe = body(h.body);
      delete out.httpSubscribe.id;
      if (typeof out.httpSubscribe.result === "string") out.httpSubscribe.result = "a subscription id";
    }
    return out;
  } finally {
    c.close();
  }
}
