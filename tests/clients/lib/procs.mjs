// Child processes of the client tests: a simulated node (`submux --sim DIALECT`) and submux
// itself with a one-route config in front of it. Every process is killed by stopAll().
import { spawn } from "node:child_process";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

const procs = [];

/** Spawn `bin args`, resolve with the first stdout line matching `re` (its match). */
export function startProcess(bin, args, re, what) {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"], env: { RUST_LOG: "warn", ...process.env } });
    procs.push(child);
    const err = [];
    createInterface({ input: child.stderr }).on("line", (l) => {
      err.push(l);
      if (process.env.SUBMUX_TEST_VERBOSE) process.stderr.write(`[${what}] ${l}\n`);
    });
    const timer = setTimeout(() => reject(new Error(`${what} did not start in 20 s: ${err.join("\n")}`)), 20_000);
    child.on("exit", (code) => reject(new Error(`${what} exited early (${code}): ${err.join("\n")}`)));
    createInterface({ input: child.stdout }).on("line", (line) => {
      const m = line.match(re);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    });
  });
}

/** `submux --sim <dialect> [extra args]`: resolves with its printed URLs { ws, http }. */
export async function startSim(bin, dialect, extra = []) {
  const m = await startProcess(bin, ["--sim", dialect, ...extra], new RegExp(`^sim ${dialect} (ws://\\S+)(?: (http://\\S+))?$`), `the ${dialect} simulator`);
  return { ws: m[1], http: m[2] };
}

/**
 * submux with one route `path` of `dialect` in front of `upstream` ({ ws, http }; http
 * becomes the route's http_upstream). Waits for /readyz; resolves with { ws, http, base }.
 */
export async function startSubmux(bin, { path, dialect, upstream }) {
  const dir = await mkdtemp(join(tmpdir(), `submux-${dialect}-`));
  const cfg = join(dir, "submux.toml");
  const lines = ["[server]", 'listen = "127.0.0.1:0"', "", "[[route]]", `path = "${path}"`, `dialect = "${dialect}"`, `upstreams = ["${upstream.ws}"]`];
  if (upstream.http) lines.push(`http_upstream = "${upstream.http}"`);
  await writeFile(cfg, `${lines.join("\n")}\n`);
  const l = await startProcess(bin, ["--config", cfg], /^submux listening on http:\/\/(\S+)$/, "submux");
  const base = `http://${l[1]}`;
  const end = Date.now() + 10_000;
  while ((await fetch(`${base}/readyz`)).status !== 200) {
    if (Date.now() > end) throw new Error("submux never became ready");
    await new Promise((r) => setTimeout(r, 50));
  }
  return { ws: `ws://${l[1]}${path}`, http: `${base}${path}`, base };
}

export function stopAll() {
  for (const p of procs.splice(0)) p.kill("SIGTERM");
}
