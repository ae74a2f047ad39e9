"""Helpers shared by the framework tests: counted token fetches and callers started together."""

from __future__ import annotations

import asyncio
import threading

import httpx
import sniffio
import trio

FULL_TEXT = "chunk-0 chunk-1 chunk-2 "
CALLERS = 20


class Keys:
    """Fresh tokens from the loopback server's token endpoint; `fetches` counts them.

    Every refresh in these tests fetches exactly one token, so `fetches` is the number of
    refreshes that ran, and the server's `token_requests` says the same from the other side.
    """

    def __init__(self, server):
        self.token_url = server.token_url
        self.fetches = 0

    async def fetch(self):
        self.fetches += 1
        async with httpx.AsyncClient() as http:
            response = await http.post(self.token_url)
        return response.json()["access_token"]

    def fetch_sync(self):
        self.fetches += 1
        return httpx.post(self.token_url).json()["access_token"]


async def together(one, count=CALLERS):
    """Run `count` calls of `one()` at once, under trio or asyncio; their results, in order."""
    if sniffio.current_async_library() == "asyncio":
        return list(await asyncio.gather(*(one() for _ in range(count))))
    results = [None] * count

    async def run(index):
        results[index] = await one()

    async with trio.open_nursery() as nursery:
        for index in range(count):
            nursery.start_soon(run, index)
    return results


def in_threads(function, count=CALLERS):
    """Run `function()` in `count` threads released together; their results, in order."""
    barrier = threading.Barrier(count)
    results = [None] * count
    errors = []

    def run(index):
        barrier.wait()
        try:
            results[index] = function()
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def outcome(server, keys, texts):
    """What every herd test checks: token fetches (server and refresh side) and the texts."""
    return (server.stats.token_requests, keys.fetches, texts)


def expected(count=CALLERS):
    """One token fetched, one refresh, and every caller's whole text exactly once."""
    return (1, 1, [FULL_TEXT] * count)
