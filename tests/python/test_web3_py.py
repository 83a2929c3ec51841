"""web3.py (AsyncWeb3 + WebSocketProvider) against the simulated Ethereum node, directly and
through submux at the same time: chain id, block number, a block by number, a balance, and
a newHeads subscription handled by web3.py's subscription manager, then unsubscribed.

Run by tests/python_clients.rs; by hand: `SUBMUX_BIN=target/debug/submux
tests/python/.venv/bin/python tests/python/test_web3_py.py`. Exits non-zero on failure.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from typing import List

from web3 import AsyncWeb3, WebSocketProvider
from web3.utils.subscriptions import NewHeadsSubscription

from procs import BIN, start, stop_all, wait_ready

HEADS = 3


async def observe(url: str) -> dict:
    heads: List[int] = []
    async with AsyncWeb3(WebSocketProvider(url)) as w3:
        chain_id = await w3.eth.chain_id
        number = await w3.eth.block_number
        block = await w3.eth.get_block(number)
        balance = await w3.eth.get_balance("0x0000000000000000000000000000000000000001")

        async def on_head(ctx) -> None:
            heads.append(int(ctx.result["number"]))
            if len(heads) >= HEADS:
                assert await ctx.subscription.unsubscribe(), "unsubscribe answered false"

        await w3.subscription_manager.subscribe(NewHeadsSubscription(handler=on_head))
        await asyncio.wait_for(w3.subscription_manager.handle_subscriptions(), 30)
    return {
        "chain_id": chain_id,
        "block": (number, block["hash"]),
        "balance": balance,
        "heads": heads,
    }


async def main() -> None:
    m = start(["--sim", "ethereum"], r"^sim ethereum (ws://\S+)$", "the simulator")
    sim = m.group(1)
    cfg = os.path.join(tempfile.mkdtemp(prefix="submux-web3-py-"), "submux.toml")
    with open(cfg, "w") as f:
        f.write(
            '[server]\nlisten = "127.0.0.1:0"\n\n[[route]]\npath = "/eth"\n'
            f'dialect = "ethereum"\nupstreams = ["{sim}"]\n'
        )
    m = start(["--config", cfg], r"^submux listening on http://(\S+)$", "submux")
    base = f"http://{m.group(1)}"
    wait_ready(base)
    direct, proxied = await asyncio.gather(observe(sim), observe(f"ws://{m.group(1)}/eth"))
    print(f"web3.py direct:  {direct}\nweb3.py submux:  {proxied}")
    assert proxied["chain_id"] == direct["chain_id"]
    assert proxied["balance"] == direct["balance"]
    assert len(direct["heads"]) == len(proxied["heads"]) == HEADS
    # Both subscribed within milliseconds; blocks come every 2 s: the last heads agree.
    assert proxied["heads"][1:] == direct["heads"][1:], (direct, proxied)
    assert all(b - a == 1 for a, b in zip(proxied["heads"], proxied["heads"][1:]))
    print("web3.py: ok")


if __name__ == "__main__":
    if not BIN:
        sys.exit("SUBMUX_BIN is not set")
    try:
        asyncio.run(main())
    finally:
        stop_all()
