"""A bounded load generator on loopback, for the reliability tests."""
import asyncio
import socket
import time

import httpx
import psutil


async def hammer(url: str, body: dict, clients: int, seconds: float) -> dict:
    "Keep `clients` connections POSTing `body` for `seconds`; counts of answers by status."
    counts, end = {}, time.monotonic() + seconds
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=clients), timeout=30) as client:
        async def worker():
            while time.monotonic() < end:
                try: s = (await client.post(url, json=body)).status_code
                except httpx.HTTPError as e: s = type(e).__name__
                counts[s] = counts.get(s, 0) + 1
        await asyncio.gather(*(worker() for _ in range(clients)))
    return counts


def tree_rss(pid: int) -> int:
    "Resident memory of a process and its children, in bytes."
    p = psutil.Process(pid)
    return sum(q.memory_info().rss for q in [p, *p.children(recursive=True)])


def half_open(port: int, n: int = 300) -> list[socket.socket]:
    "`n` connections to 127.0.0.1:`port` left half-sent: odd ones mid-body, even ones mid-headers. Close them after."
    held, head = [], b"POST /predict HTTP/1.1\r\nHost: x\r\n"
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(head + b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"in" if i % 2 else head + b"Content-Le")
        held.append(s)
    return held
