// Start the submux binary as a child process in front of an upstream node.
import { spawn } from "node:child_process";
import { mkdtemp, writeFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { withTimeout, waitFor } from "./util.mjs";

const LISTEN_RE = /^submux listening on (http:\/\/127\.0\.0\.1:(\d+))\s*$/;

/**
 * Spawn `bin --config <tmp>.toml` with one ethereum route `/eth` -> upstreamWs,
 * wait for its "submux listening on http://127.0.0.1:PORT" stdout line and for
 * GET /readyz == 200. Returns URLs, a log accessor and stop().
 */
export async function startSubmux({ bin, upstreamWs, path = "/eth", startTimeoutMs = 20_000 }) {
  const dir = await mkdtemp(join(tmpdir(), "submux-clients-"));
  const configPath = join(dir, "submux.toml");
  const config = [
    "[server]",
    'listen = "127.0.0.1:0"',
    "",
    "[[route]]",
    `path = "${path}"`,
    'dialect = "ethereum"',
    `upstreams = ["${upstreamWs}"]`,
    "",
  ].join("\n");
  await writeFile(configPath, config);

  // Own process group, so stop() also reaches anything the binary spawned (e.g. a
  // wrapper script's children) and no orphan keeps our stdout pipe open.
  const child = spawn(bin, ["--config", configPath], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { RUST_LOG: "info", ...process.env },
    detached: true,
  });
  const logLines = []; // stdout+stderr, kept for failure reports
  const keep = (stream, line) => {
    logLines.push(`[submux ${stream}] ${line}`);
    if (logLines.length > 2000) logLines.splice(0, logLines.length - 2000);
    if (process.env.SUBMUX_TEST_VERBOSE) process.stderr.write(`[submux ${stream}] ${line}\n`);
  };
  let exited = null;
  const exitPromise = new Promise((resolve) => {
    child.on("exit", (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    });
  });
  let spawnError = null;
  child.on("error", (e) => {
    spawnError = e;
  });
  createInterface({ input: child.stderr }).on("line", (l) => keep("stderr", l));

  const signalGroup = (sig) => {
    try {
      process.kill(-child.pid, sig); // the child's process group (detached above)
    } catch {
      try {
        child.kill(sig);
      } catch {
        // already gone
      }
    }
  };
  const stop = async () => {
    let r = exited;
    if (!r && child.pid !== undefined) {
      signalGroup("SIGTERM");
      r = await withTimeout(exitPromise, 5_000, "submux to exit after SIGTERM").catch(() => null);
      if (!r) {
        signalGroup("SIGKILL");
        r = await exitPromise;
      }
    }
    if (child.pid !== undefined) signalGroup("SIGKILL"); // leftovers in the group, if any
    child.stdout?.destroy();
    child.stderr?.destroy();
    return r ?? { code: null, signal: null };
  };
  const logs = () => logLines.join("\n");

  try {
    const baseUrl = await withTimeout(
      new Promise((resolve, reject) => {
        const rl = createInterface({ input: child.stdout });
        rl.on("line", (line) => {
          keep("stdout", line);
          const m = LISTEN_RE.exec(line);
          if (m) resolve(m[1]);
        });
        child.on("error", (e) => reject(new Error(`cannot spawn ${bin}: ${e.message}`)));
        exitPromise.then(({ code, signal }) =>
          reject(new Error(`submux exited (code ${code}, signal ${signal}) before printing its listening line`)),
        );
      }),
      startTimeoutMs,
      `submux to print "submux listening on http://127.0.0.1:PORT" on stdout`,
    );

    const readyz = `${baseUrl}/readyz`;
    let lastStatus = "no response";
    await waitFor(
      async () => {
        if (exited) throw new Error(`submux exited (code ${exited.code}, signal ${exited.signal})`);
        try {
          const res = await fetch(readyz, { signal: AbortSignal.timeout(2_000) });
          lastStatus = `HTTP ${res.status}`;
          await res.arrayBuffer();
          return res.status === 200;
        } catch (e) {
          lastStatus = String(e.message ?? e);
          return false;
        }
      },
      { timeoutMs: startTimeoutMs, intervalMs: 50, what: `GET ${readyz} == 200 (last: ${lastStatus})` },
    );

    const hostPort = baseUrl.replace(/^http:\/\//, "");
    return {
      child,
      baseUrl,
      wsUrl: `ws://${hostPort}${path}`,
      httpUrl: `${baseUrl}${path}`,
      logs,
      stop: async () => {
        const r = await stop();
        await rm(dir, { recursive: true, force: true });
        return r;
      },
    };
  } catch (e) {
    await stop();
    await rm(dir, { recursive: true, force: true });
    const why = spawnError ? `${e.message} (${spawnError.message})` : e.message;
    throw new Error(`starting submux failed: ${why}\nconfig:\n${config}\nsubmux output:\n${logs()}`);
  }
}
