"""A loopback TCP proxy for link faults: latency each way, and a reply that never arrives.

It runs in threads of the test process, so worker processes and trio tests alike can go
through it. Loopback only: it listens on 127.0.0.1 and connects to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import socket
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

CHUNK = 65536


@dataclasses.dataclass
class LinkProxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`target`.

    `delay` seconds are added to each direction (a round trip costs twice that). After
    `cut_reply_to(marker)`, the next request containing `marker` is forwarded, and its reply
    is dropped with the connection cut: the server did the work, the client never heard.
    """

    target: int
    delay: float = 0.0
    port: int = 0
    cuts: int = 0
    _marker: bytes | None = None
    _listener: socket.socket | None = None
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    _open: list[socket.socket] = dataclasses.field(default_factory=list)

    def url(self, path: str = "/0") -> str:
        return f"redis://127.0.0.1:{self.port}{path}"

    def cut_reply_to(self, marker: bytes) -> None:
        with self._lock:
            self._marker = marker

    def _serve(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed: the proxy stops
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            self._open += [client, server]
            cut = threading.Event()
            for source, sink, upstream in ((client, server, True), (server, client, False)):
                threading.Thread(
                    target=self._pump, args=(source, sink, upstream, cut), daemon=True
                ).start()

    def _pump(
        self, source: socket.socket, sink: socket.socket, upstream: bool, cut: threading.Event
    ) -> None:
        """Read from `source`, deliver to `sink` `delay` seconds later, in order."""
        pending: queue.Queue[tuple[float, bytes] | None] = queue.Queue()

        def deliver() -> None:
            while (item := pending.get()) is not None:
                due, data = item
                time.sleep(max(0.0, due - time.monotonic()))
                if not upstream and cut.is_set():  # the reply to the marked request
                    self.cuts += 1
                    for each in (source, sink):
                        with contextlib.suppress(OSError):
                            each.shutdown(socket.SHUT_RDWR)
                    return
                with contextlib.suppress(OSError):
                    sink.sendall(data)

        sender = threading.Thread(target=deliver, daemon=True)
        sender.start()
        try:
            while data := source.recv(CHUNK):
                if upstream:
                    with self._lock:
                        if self._marker is not None and self._marker in data:
                            self._marker = None
                            cut.set()
                pending.put((time.monotonic() + self.delay, data))
        except OSError:
            pass
        finally:
            pending.put(None)
            sender.join()
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def link_proxy(target: int, *, delay: float = 0.0) -> Iterator[LinkProxy]:
    """A `LinkProxy` to 127.0.0.1:`target` for the block."""
    proxy = LinkProxy(target, delay)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    proxy.port = listener.getsockname()[1]
    proxy._listener = listener
    thread = threading.Thread(target=proxy._serve, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        listener.close()
        for each in proxy._open:
            with contextlib.suppress(OSError):
                each.close()
        thread.join(timeout=5)
