"""xrpl-py against the simulated rippled, directly and through submux at the same time.

Starts `$SUBMUX_BIN --sim xrpl --sim-interval-ms 0` (ledgers close only on demand, so
every observation is deterministic) and `$SUBMUX_BIN --config <tmp>` with one route
`/xrpl` in front of it. Each scenario opens one `AsyncWebsocketClient` on each path,
drives the simulator once over its HTTP control methods, and asserts that both clients
saw the same messages (whole dicts: hashes, ledger indexes and balances are shared).

Run by tests/python_clients.rs; by hand: `SUBMUX_BIN=target/debug/submux
tests/python/.venv/bin/python tests/python/test_xrpl_py.py`. Exits non-zero on failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import tempfile
import time
import urllib.request
from typing import Any, Callable, Dict, List, Optional

from xrpl.asyncio.clients import AsyncJsonRpcClient, AsyncWebsocketClient
from xrpl.models.requests import (
    AccountInfo,
    Ping,
    StreamParameter,
    Subscribe,
    Unsubscribe,
)
from xrpl.models.response import ResponseStatus

from procs import BIN, start, stop_all, wait_ready


def post(url: str, method: str, params: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """rippled's HTTP JSON-RPC shape: {"method", "params": [{…}]} -> body["result"]."""
    body = json.dumps({"method": method, "params": [params or {}]}).encode()
    req = urllib.request.Request(url, body, {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as res:
        return json.loads(res.read())["result"]


class Env:
    def __init__(self) -> None:
        m = start(
            ["--sim", "xrpl", "--sim-interval-ms", "0"],
            r"^sim xrpl (ws://\S+) (http://\S+)$",
            "the simulator",
        )
        self.sim_ws, self.sim_http = m.group(1), m.group(2)
        cfg = os.path.join(tempfile.mkdtemp(prefix="submux-xrpl-py-"), "submux.toml")
        with open(cfg, "w") as f:
            f.write(
                '[server]\nlisten = "127.0.0.1:0"\n\n[[route]]\npath = "/xrpl"\n'
                f'dialect = "xrpl"\nupstreams = ["{self.sim_ws}"]\n'
                f'http_upstream = "{self.sim_http}"\n'
            )
        m = start(["--config", cfg], r"^submux listening on http://(\S+)$", "submux")
        base = f"http://{m.group(1)}"
        self.mux_ws, self.mux_http = f"ws://{m.group(1)}/xrpl", f"{base}/xrpl"
        wait_ready(base)
        self.accounts: List[str] = post(self.sim_http, "sim_accounts")["accounts"]

    async def sim(self, method: str, params: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        return await asyncio.to_thread(post, self.sim_http, method, params)

    async def close_ledger(self) -> int:
        return (await self.sim("sim_close_ledger"))["ledger_index"]

    async def pay(self, src: str, dst: str, drops: int) -> str:
        r = await self.sim("sim_pay", {"from": src, "to": dst, "drops": str(drops)})
        return r["hash"]


class Recorder:
    """An AsyncWebsocketClient whose stream messages (not responses) are kept in order."""

    def __init__(self, url: str) -> None:
        self.client = AsyncWebsocketClient(url)
        self.seen: List[Dict[str, Any]] = []
        self.task: Optional[asyncio.Task] = None

    async def open(self) -> "Recorder":
        await self.client.open()
        self.task = asyncio.create_task(self._pump())
        return self

    async def _pump(self) -> None:
        async for msg in self.client:
            if msg.get("type") != "response":
                self.seen.append(msg)

    async def close(self) -> None:
        if self.task:
            self.task.cancel()
        await self.client.close()


async def wait_for(what: str, cond: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def tx_hash(m: Dict[str, Any]) -> Optional[str]:
    return m.get("hash") or m.get("transaction", {}).get("hash")


def of_type(seen: List[Dict[str, Any]], t: str) -> List[Dict[str, Any]]:
    return [m for m in seen if m.get("type") == t]


def sans_id(result: Dict[str, Any], rid: Any) -> Dict[str, Any]:
    """An error answer (the whole response in xrpl-py) without the client's own id, which
    must stand at the top and in the echoed request."""
    if "request" not in result:
        return result
    out = dict(result)
    out["request"] = dict(out["request"])
    assert out.pop("id") == rid and out["request"].pop("id") == rid, result
    return out


class Pair:
    """One client straight to the simulator, one through submux."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.direct = Recorder(env.sim_ws)
        self.via = Recorder(env.mux_ws)

    async def __aenter__(self) -> "Pair":
        await asyncio.gather(self.direct.open(), self.via.open())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(self.direct.close(), self.via.close())

    async def both(self, request: Any) -> Any:
        """Send the same request on both; assert the same answer (bar the id); return via's."""
        d, v = await asyncio.gather(
            self.direct.client.request(request), self.via.client.request(request)
        )
        # xrpl-py's ids are random strings ("<method>_<n>"); it matched this one.
        assert isinstance(v.id, str) and "_" in v.id, v.id
        assert v.status == d.status, (d, v)
        assert sans_id(v.result, v.id) == sans_id(d.result, d.id), (d.result, v.result)
        return v

    async def settle(self) -> None:
        """Close one more ledger and let in-flight frames land."""
        await self.env.close_ledger()
        await asyncio.sleep(0.4)

    def same(self) -> List[Dict[str, Any]]:
        assert self.via.seen == self.direct.seen, (self.direct.seen, self.via.seen)
        return self.via.seen


LEDGER_FIELDS = [
    "fee_base",
    "ledger_hash",
    "ledger_index",
    "ledger_time",
    "reserve_base",
    "reserve_inc",
    "validated_ledgers",
]


async def ledger_stream(env: Env) -> None:
    async with Pair(env) as p:
        r = await p.both(Subscribe(streams=[StreamParameter.LEDGER]))
        assert r.status == ResponseStatus.SUCCESS
        assert sorted(r.result) == LEDGER_FIELDS, r.result
        first = r.result["ledger_index"]
        for i in (1, 2):
            assert await env.close_ledger() == first + i
            await wait_for(
                f"ledgerClosed {first + i}",
                lambda: len(p.direct.seen) == i and len(p.via.seen) == i,
            )
        seen = p.same()
        assert [m["ledger_index"] for m in seen] == [first + 1, first + 2]
        assert all(m["type"] == "ledgerClosed" for m in seen)
        r = await p.both(Unsubscribe(streams=[StreamParameter.LEDGER]))
        assert r.result == {}
        await p.settle()
        assert len(p.same()) == 2, "no ledgerClosed after unsubscribe"


async def accounts_payment(env: Env) -> None:
    a = env.accounts
    async with Pair(env) as p:
        r = await p.both(Subscribe(accounts=[a[0], a[1]]))
        assert r.result == {}
        h = await env.pay(a[0], a[1], 20_000_000)
        index = await env.close_ledger()
        await wait_for(
            "the payment",
            lambda: len(p.direct.seen) == 1 and len(p.via.seen) == 1,
        )
        await p.settle()
        seen = p.same()
        assert len(seen) == 1, "two affected accounts of one client: one message"
        m = seen[0]
        assert m["type"] == "transaction" and m["validated"] is True
        assert m["ledger_index"] == index
        assert m["hash"] == h and "transaction" not in m, "API v2 shape"
        assert m["tx_json"]["DeliverMax"] == "20000000" and "Amount" not in m["tx_json"]
        assert m["meta"]["delivered_amount"] == "20000000", "exact drops string"

        # Unsubscribe: the next payment is not delivered on either path.
        r = await p.both(Unsubscribe(accounts=[a[0], a[1]]))
        assert r.result == {}
        await env.pay(a[1], a[0], 1_000_000)
        await env.close_ledger()
        await p.settle()
        assert [tx_hash(x) for x in p.same()] == [h], "nothing after unsubscribe"


async def two_clients_overlapping(env: Env) -> None:
    a = env.accounts
    async with Pair(env) as x, Pair(env) as y:
        await x.both(Subscribe(accounts=[a[2], a[3]]))
        await y.both(Subscribe(accounts=[a[3], a[4]]))
        h1 = await env.pay(a[2], a[3], 2_000_000)
        h2 = await env.pay(a[4], a[5], 3_000_000)
        await env.pay(a[5], a[6], 4_000_000)
        await env.close_ledger()
        await wait_for("x", lambda: len(x.via.seen) == 1 and len(x.direct.seen) == 1)
        await wait_for("y", lambda: len(y.via.seen) == 2 and len(y.direct.seen) == 2)
        await x.settle()
        assert [tx_hash(m) for m in x.same()] == [h1]
        assert [tx_hash(m) for m in y.same()] == [h1, h2]


async def commands(env: Env) -> None:
    a = env.accounts
    async with Pair(env) as p:
        r = await p.both(AccountInfo(account=a[0]))
        assert r.result["account_data"]["Account"] == a[0]
        assert re.fullmatch(r"\d+", r.result["account_data"]["Balance"])
        r = await p.both(AccountInfo(account=a[0], ledger_index="validated"))
        assert r.result["validated"] is True
        r = await p.both(Ping())
        assert r.result == {}
        r = await p.both(Ping(id="ping_mine"))
        assert r.id == "ping_mine"
        # An error answer: rippled's name and code, the request echoed.
        r = await p.both(AccountInfo(account="rfdGuuVnq9juqWDV4W3LoLiNcW8g2hAXhN"))
        assert r.status == ResponseStatus.ERROR
        assert r.result["error"] == "actNotFound" and r.result["error_code"] == 19
        r = await p.both(Subscribe(streams=[StreamParameter.PEER_STATUS]))
        assert r.status == ResponseStatus.ERROR and r.result["error"] == "noPermission"
    # HTTP JSON-RPC with xrpl-py's own client: the route forwards rippled's shape.
    d, v = await asyncio.gather(
        AsyncJsonRpcClient(env.sim_http).request(AccountInfo(account=a[0])),
        AsyncJsonRpcClient(env.mux_http).request(AccountInfo(account=a[0])),
    )
    assert v.status == ResponseStatus.SUCCESS
    assert v.result == d.result, (d.result, v.result)


SCENARIOS = [ledger_stream, accounts_payment, two_clients_overlapping, commands]


async def main() -> int:
    if not BIN:
        print("SUBMUX_BIN must point at the submux binary", file=sys.stderr)
        return 2
    env = await asyncio.to_thread(Env)
    failed = 0
    for scenario in SCENARIOS:
        try:
            await asyncio.wait_for(scenario(env), 60)
            print(f"ok - {scenario.__name__}")
        except Exception as e:  # noqa: BLE001 - report every scenario
            failed += 1
            print(f"not ok - {scenario.__name__}: {type(e).__name__}: {e}")
    print(f"{len(SCENARIOS) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        code = asyncio.run(main())
    finally:
        stop_all()
    sys.exit(code)
