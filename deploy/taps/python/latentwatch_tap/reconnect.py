"""What the NATS client needs to outlive its server: backoff and the outage buffer.

- :class:`Backoff`: jittered, capped exponential delays between reconnect passes.
- :class:`OutageBuffer`: the bounded buffer publishes wait in while the
  connection is down (bytes and messages; a publish that does not fit is refused).

Standard library only.

Example::

    from latentwatch_tap.reconnect import Backoff, OutageBuffer

    b = Backoff(base=0.05, cap=2.0)
    [round(b.delay(i), 2) for i in range(3)]   # e.g. [0.04, 0.09, 0.17]
    buf = OutageBuffer(max_bytes=1 << 20, max_msgs=1000)
    buf.add(b"PUB x 1\\r\\na\\r\\n")              # True: held until the reconnect
"""

from __future__ import annotations

import collections
import random
import threading
from typing import Deque, Optional

from .protocol import NatsArgumentError

__all__ = ["Backoff", "OutageBuffer", "STAT_KEYS"]

#: Every counter in :attr:`latentwatch_tap.nats.NatsClient.stats`.
STAT_KEYS = (
    "disconnects",  # connections lost
    "reconnects",  # connections made again
    "reconnect_attempts",  # failed connection attempts while reconnecting
    "buffered",  # publishes held in the outage buffer
    "buffered_bytes",
    "replayed",  # held publishes sent after a reconnect
    "dropped",  # publishes refused: the outage buffer was full, or left in it at close / on giving up
    "dropped_bytes",
    "in_doubt",  # publishes written to a connection that died before a PONG confirmed them
    "outage_ms",  # time spent disconnected, over all outages
)


class Backoff:
    """Delays between reconnect passes: ``base · factor^n``, capped at ``cap``, then jittered
    down by up to ``jitter`` (a fraction), so taps restarted together do not reconnect in step.

    >>> b = Backoff(base=0.1, cap=1.0, jitter=0.0)
    >>> [b.delay(i) for i in range(6)]
    [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    """

    def __init__(self, base: float = 0.05, cap: float = 2.0, factor: float = 2.0, jitter: float = 0.5,
                 rng: Optional[random.Random] = None):
        for what, v in (("reconnect_wait", base), ("reconnect_wait_max", cap)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                raise NatsArgumentError(f"{what}: expected a number of seconds >= 0, found {v!r}")
        if cap < base:
            raise NatsArgumentError(f"reconnect_wait_max: expected at least reconnect_wait ({base}), found {cap}")
        if not 0 <= jitter <= 1:
            raise NatsArgumentError(f"reconnect_jitter: expected a fraction in [0, 1], found {jitter!r}")
        self.base, self.cap, self.factor, self.jitter = float(base), float(cap), float(factor), float(jitter)
        self._rng = rng or random.Random()

    def delay(self, attempt: int) -> float:
        d = min(self.cap, self.base * self.factor ** min(attempt, 64))
        return d * (1.0 - self.jitter * self._rng.random())


class OutageBuffer:
    """Wire-ready publishes held while the connection is down, in order, bounded.

    ``max_bytes`` and ``max_msgs`` bound it (0 messages or bytes: hold
    nothing). :meth:`add` refuses what does not fit (the caller counts the
    drop); :meth:`peek_all` gives everything for the replay after a reconnect, :meth:`clear` forgets it once sent.
    """

    def __init__(self, max_bytes: int = 8 * 1024 * 1024, max_msgs: int = 65536):
        for what, v in (("reconnect_buffer_bytes", max_bytes), ("reconnect_buffer_msgs", max_msgs)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise NatsArgumentError(f"{what}: expected an integer >= 0, found {v!r}")
        self.max_bytes = max_bytes
        self.max_msgs = max_msgs
        self._items: Deque[bytes] = collections.deque()
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def add(self, data: bytes) -> bool:
        if len(self._items) + 1 > self.max_msgs or self.nbytes + len(data) > self.max_bytes:
            return False
        self._items.append(data)
        self.nbytes += len(data)
        return True

    def peek_all(self) -> bytes:
        return b"".join(self._items)

    def clear(self) -> int:
        n = len(self._items)
        self._items.clear()
        self.nbytes = 0
        return n


class _Pong:
    """A PING sent: what it confirms once its PONG comes (``mark``), who waits (``event``)."""

    __slots__ = ("event", "mark", "error")

    def __init__(self, mark: int, event: Optional[threading.Event]):
        self.mark = mark  # messages written on this connection before the PING
        self.event = event
        self.error: Optional[str] = None
