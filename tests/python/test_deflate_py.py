"""permessage-deflate with a real client library: Python's `websockets` (a web3.py dependency)
negotiates it by default. Through submux, on a route with `permessage_deflate = true`, a
compressing client and a client without compression subscribe to `newHeads` and `logs` on
the simulated Ethereum node; the extension must be agreed for the first (and not the
second), and both must receive the same notifications byte for byte. websockets also
compresses what it sends (with context takeover), so the subscribe requests exercise
submux's inflater. The bytes saved are read from submux's /metrics and printed.

Run by tests/python_clients.rs; by hand: `SUBMUX_BIN=target/debug/submux
tests/python/.venv/bin/python tests/python/test_deflate_py.py`. Exits non-zero on failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import tempfile
import urllib.request
from typing import Dict, List

from websockets.asyncio.client import connect
from websockets.extensions.permessage_deflate import PerMessageDeflate

from procs import BIN, start, stop_all, wait_ready

WANT = 12  # notifications each client must have in common


def key(msg: dict) -> str:
    """One notification's identity: subscription plus block (and log index for logs)."""
    r = msg["params"]["result"]
    return f'{msg["params"]["subscription"]}/{r.get("number") or r["blockNumber"]}/{r.get("logIndex", "")}'


async def collect(url: str, compression, out: Dict[str, str], ready: asyncio.Event, done: asyncio.Event) -> List:
    async with connect(url, compression=compression, max_size=2**22) as ws:
        extensions = [type(e).__name__ for e in ws.protocol.extensions]
        header = ws.response.headers.get("Sec-WebSocket-Extensions")
        for i, params in enumerate((["newHeads"], ["logs", {}])):
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": i + 1, "method": "eth_subscribe", "params": params}))
        ready.set()
        while not done.is_set():
            try:
                text = await asyncio.wait_for(ws.recv(), 0.2)
            except asyncio.TimeoutError:
                continue
            msg = json.loads(text)
            if msg.get("method") == "eth_subscription":
                out[key(msg)] = text
    return [extensions, header]


def metric(text: str, name: str) -> int:
    m = re.search(rf'^{name}{{route="/eth"}} (\d+)$', text, re.M)
    assert m, f"{name} missing from /metrics"
    return int(m.group(1))


async def main() -> None:
    m = start(["--sim", "ethereum", "--sim-interval-ms", "300"], r"^sim ethereum (ws://\S+)$", "the simulator")
    sim = m.group(1)
    cfg = os.path.join(tempfile.mkdtemp(prefix="submux-deflate-py-"), "submux.toml")
    with open(cfg, "w") as f:
        f.write(
            '[server]\nlisten = "127.0.0.1:0"\n\n[[route]]\npath = "/eth"\n'
            f'dialect = "ethereum"\nupstreams = ["{sim}"]\npermessage_deflate = true\n'
            "deflate_min_bytes = 256\n"
        )
    m = start(["--config", cfg], r"^submux listening on http://(\S+)$", "submux")
    base = f"http://{m.group(1)}"
    wait_ready(base)
    url = f"ws://{m.group(1)}/eth"
    zipped: Dict[str, str] = {}
    plain: Dict[str, str] = {}
    ready = [asyncio.Event(), asyncio.Event()]
    done = asyncio.Event()
    tasks = [
        asyncio.create_task(collect(url, "deflate", zipped, ready[0], done)),
        asyncio.create_task(collect(url, None, plain, ready[1], done)),
    ]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 10)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while len(set(zipped) & set(plain)) < WANT:
        assert loop.time() < deadline, f"only {len(set(zipped) & set(plain))} notifications in common"
        await asyncio.sleep(0.1)
    done.set()
    (z_ext, z_header), (p_ext, p_header) = await asyncio.gather(*tasks)
    print(f"websockets {z_ext} agreed: {z_header!r}; without compression: {p_ext} {p_header!r}")
    assert z_ext == [PerMessageDeflate.__name__], z_ext
    assert z_header and z_header.startswith("permessage-deflate; server_no_context_takeover"), z_header
    assert p_ext == [] and p_header is None, (p_ext, p_header)
    common = sorted(set(zipped) & set(plain))
    for k in common:
        assert zipped[k] == plain[k], f"{k} differs:\n{zipped[k]}\n{plain[k]}"
    heads = sum(1 for k in common if k.endswith("/"))
    print(f"{len(common)} notifications identical on both clients ({heads} newHeads, {len(common) - heads} logs)")
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as r:
        text = r.read().decode()
    frames = metric(text, "submux_deflated_frames_out_total")
    before = metric(text, "submux_deflated_plain_bytes_total")
    after = metric(text, "submux_deflated_wire_bytes_total")
    compressions = metric(text, "submux_deflate_compressions_total")
    assert frames >= len(common) // 2 and after < before, (frames, before, after)
    print(
        f"compressing client: {frames} frames compressed, {before} B -> {after} B on the wire "
        f"({100 * (1 - after / before):.1f}% saved), {compressions} compressions"
    )
    print("websockets permessage-deflate: ok")


if __name__ == "__main__":
    if not BIN:
        sys.exit("SUBMUX_BIN is not set")
    try:
        asyncio.run(main())
    finally:
        stop_all()
