// Small async helpers: every wait in the suite is bounded so a hang fails clearly.
import { recordText } from "./frames.mjs";

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Race `promise` against a timer; reject with a message naming `what` on timeout. */
export async function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Poll `predicate` (sync or async) every `intervalMs` until truthy; returns its value. */
export async function waitFor(predicate, { timeoutMs = 10_000, intervalMs = 25, what = "condition", detail } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  for (;;) {
    try {
      const v = await predicate();
      if (v) return v;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() >= deadline) {
      const suffix = lastError ? ` (last error: ${lastError.message ?? lastError})` : "";
      const more = detail ? `\n${detail()}` : "";
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${suffix}${more}`);
    }
    await sleep(intervalMs);
  }
}

/** POST a JSON-RPC body (object or array) over HTTP; returns { status, body }. */
export async function postJson(url, body, timeoutMs = 10_000) {
  const conn = `http POST ${url}`;
  recordText(conn, url, ">>", JSON.stringify(body));
  const res = await withTimeout(
    fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    }),
    timeoutMs,
    `POST ${url} ${JSON.stringify(body).slice(0, 200)}`,
  );
  const text = await res.text();
  recordText(conn, url, "<<", `HTTP ${res.status} ${res.headers.get("content-type") ?? ""} ${text}`);
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error(`POST ${url}: non-JSON response (HTTP ${res.status}): ${text.slice(0, 500)}`);
  }
  return { status: res.status, body: json };
}

/** JSON.stringify that copes with bigint (viem) values. */
export function stringify(v) {
  return JSON.stringify(v, (_, x) => (typeof x === "bigint" ? `${x}n` : x));
}
