// Record every WebSocket frame sent/received by the `ws` package (used by our raw
// clients, by ethers through the socket factory we hand it, and by viem through
// isows), so a failing scenario can print exactly what was exchanged.
import { createRequire } from "node:module";
import WebSocket from "ws";

const frames = [];
const MAX_FRAMES = 5_000;
let connSeq = 0;
const t0 = Date.now();

function label(ws) {
  if (!ws.__frameLabel) ws.__frameLabel = `#${++connSeq} ${ws.url ?? "?"}`;
  return ws.__frameLabel;
}

/** Canonical form of a ws URL, as `ws` reports it in `.url`. */
export function normUrl(u) {
  try {
    return new URL(u).href;
  } catch {
    return String(u);
  }
}

/** Record a non-WebSocket exchange (HTTP) under `conn`, e.g. "http POST <url>". */
export function recordText(conn, url, dir, text) {
  frames.push({ t: Date.now() - t0, conn, url: normUrl(url), dir, text });
  if (frames.length > MAX_FRAMES) frames.splice(0, frames.length - MAX_FRAMES);
  if (process.env.SUBMUX_TEST_FRAMES) process.stderr.write(`[frame ${dir} ${conn}] ${text.slice(0, 2000)}\n`);
}

function record(ws, dir, data) {
  let text;
  if (typeof data === "string") text = data;
  else if (Buffer.isBuffer(data)) text = data.toString("utf8");
  else if (Array.isArray(data)) text = Buffer.concat(data).toString("utf8");
  else if (data instanceof ArrayBuffer) text = Buffer.from(data).toString("utf8");
  else text = String(data);
  recordText(label(ws), ws.url, dir, text);
}

function patch(WS) {
  if (!WS || WS.prototype.__framesPatched) return;
  WS.prototype.__framesPatched = true;
  const send = WS.prototype.send;
  WS.prototype.send = function (data, ...rest) {
    record(this, ">>", data);
    return send.call(this, data, ...rest);
  };
  const emit = WS.prototype.emit;
  WS.prototype.emit = function (event, ...args) {
    if (event === "message") record(this, "<<", args[0]);
    else if (event === "close") record(this, "--", `close code=${args[0]} reason=${String(args[1] ?? "")}`);
    return emit.call(this, event, ...args);
  };
}

/** Patch every copy of `ws` reachable from here, ethers and viem (isows). */
export function installFrameLogger() {
  patch(WebSocket);
  const here = createRequire(import.meta.url);
  for (const pkg of ["ethers", "viem", "isows"]) {
    try {
      const req = createRequire(here.resolve(pkg));
      const mod = req("ws");
      patch(mod.WebSocket ?? mod);
    } catch {
      // package resolves ws elsewhere or not at all: nothing to patch
    }
  }
}

export function frameMark() {
  return frames.length;
}

export function framesSince(mark = 0) {
  return frames.slice(mark);
}

/** Human readable dump of frames since `mark` (long frames truncated). */
export function dumpFrames(mark = 0, { maxLen = 700 } = {}) {
  return framesSince(mark)
    .map((f) => {
      const text = f.text.length > maxLen ? `${f.text.slice(0, maxLen)}…(${f.text.length} bytes)` : f.text;
      return `  +${String(f.t).padStart(6)}ms ${f.dir} ${f.conn}  ${text}`;
    })
    .join("\n");
}

/**
 * For connections to exactly `url`, pair outgoing requests of
 * `method` with their responses (by id, per connection). Returns
 * [{ conn, request, response|undefined }].
 */
export function requestsWithResponses(mark, url, method) {
  const want = normUrl(url);
  const out = [];
  const byConn = new Map();
  for (const f of framesSince(mark)) {
    if (f.url !== want || f.dir === "--") continue;
    let msg;
    try {
      msg = JSON.parse(f.text);
    } catch {
      continue;
    }
    for (const m of Array.isArray(msg) ? msg : [msg]) {
      if (f.dir === ">>" && m.method === method) {
        const entry = { conn: f.conn, request: m, response: undefined };
        out.push(entry);
        if (!byConn.has(f.conn)) byConn.set(f.conn, []);
        byConn.get(f.conn).push(entry);
      } else if (f.dir === "<<" && m.method === undefined && "id" in m) {
        const pending = byConn.get(f.conn) ?? [];
        const e = pending.find((p) => p.response === undefined && p.request.id === m.id);
        if (e) e.response = m;
      }
    }
  }
  return out;
}
