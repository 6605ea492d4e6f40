"""A small NATS client over TCP or TLS, standard library only, that outlives its server.

Enough of the NATS client protocol for a tap: INFO/CONNECT with user and
password or token, TLS (see :mod:`latentwatch_tap.dial`), PUB/HPUB, SUB/UNSUB,
MSG/HMSG (status headers such as ``NATS/1.0 503`` included), PING/PONG,
``-ERR``. One I/O thread reads and dispatches messages to subscription
callbacks; writes are serialised by a lock, so any thread may publish.

When the connection drops, the client reconnects: it tries the servers of
its list in turn (starting after the one that failed), sleeping a jittered,
capped, growing delay between passes (:class:`~latentwatch_tap.reconnect.Backoff`),
sends its subscriptions again, then the publishes it held meanwhile in a
bounded buffer (:class:`~latentwatch_tap.reconnect.OutageBuffer`), in order,
before any new one. A publish that does not fit raises
:class:`ReconnectBufferFullError` and is counted in ``stats["dropped"]``.
Publishes written to a connection that then died without a PONG confirming
them are counted in ``stats["in_doubt"]`` (they may or may not have reached
the server). Requests in flight when the connection drops fail at once with
:class:`NatsConnectionError`; new ones fail at once until it is back.

Example::

    from latentwatch_tap.nats import NatsClient

    nc = NatsClient(["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"], user="tap", password="secret")
    nc.subscribe("greet", lambda msg: print(msg.subject, msg.headers, msg.data))
    nc.publish("greet", b"hi", headers={"Lw-Example": "1"})
    reply = nc.request("service", b"ping", timeout=1.0)  # NatsTimeoutError / NoRespondersError
    print(nc.stats)   # disconnects, reconnects, buffered, replayed, dropped, in_doubt, ...
    nc.close()
"""

from __future__ import annotations

import itertools
import json
import logging
import secrets
import socket
import ssl
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .protocol import (MaxPayloadError, Msg, NatsArgumentError, NatsConnectionError, NatsError, NatsServerError,
                       NatsTimeoutError, NatsTlsError, NoRespondersError, PendingRequest, ReconnectBufferFullError,
                       Subscription, _as_bytes, _check_subject, _type_name, encode_headers, parse_headers)
from .dial import DialOptions, ServerUrl, close_quietly, dial, parse_servers
from .reconnect import STAT_KEYS, Backoff, OutageBuffer, _Pong

__all__ = ["NatsClient", "Msg", "Subscription", "PendingRequest", "NatsError", "NatsConnectionError", "NatsTlsError",
           "ReconnectBufferFullError", "NatsServerError", "NatsTimeoutError", "NoRespondersError",
           "NatsArgumentError", "MaxPayloadError", "encode_headers", "parse_headers", "STAT_KEYS"]

log = logging.getLogger("latentwatch_tap.nats")

_CRLF = b"\r\n"



class NatsClient:
    """A NATS connection to one of ``servers``. Connects in the constructor.

    - ``servers``: ``nats://[user:password@|token@]host:port`` or ``tls://...``;
      one URL, several separated by commas, or a list. The first that answers
      is used; on a reconnect, the next ones in turn.
    - ``user``/``password`` or ``token`` override the URLs' credentials.
    - ``tls``: None, True (system CAs), ``{"ca_file", "cert_file", "key_file",
      "server_hostname", "verify"}``, or an :class:`ssl.SSLContext`. Needed for
      a ``tls://`` URL or a server with ``tls_required`` (default: system CAs).
    - ``reconnect``: False closes the client for good when the connection drops.
      ``max_reconnect_attempts``: passes over the server list before giving up
      (-1, the default: never). ``reconnect_wait``, ``reconnect_wait_max``,
      ``reconnect_jitter``: the :class:`~latentwatch_tap.reconnect.Backoff`.
    - ``reconnect_buffer_bytes``/``reconnect_buffer_msgs``: what publishes may
      wait during an outage (default 8 MiB, 65 536 messages; 0: nothing waits).
    - ``ping_interval``: seconds between PINGs (default 2; 0: none); ``max_pings_out``
      unanswered ones (default 2) declare the connection dead, as a silent server
      would leave it. ``confirm_interval``: while publishing, a PING at most this
      often (default 0.1 s; 0: none) confirms what was written (see ``in_doubt``).
    - ``replay_delay``: seconds to hold publishes after a reconnect (default 0), so
      that subscribers that reconnect later (a sidecar) are back for the replay.
    - ``on_error(message)`` is called (from the I/O thread) for each ``-ERR`` the
      server sends, such as ``Permissions Violation for Publish to "x"``;
      counted in ``errors``, kept in ``last_error``, and logged.

    A failed first connection raises: :class:`NatsServerError` (authorization),
    :class:`NatsTlsError`, or :class:`NatsConnectionError` naming each server's error.
    """

    def __init__(
        self,
        servers: Union[str, Sequence[str]] = "nats://127.0.0.1:4222",
        user: Optional[str] = None, password: Optional[str] = None,
        name: str = "latentwatch-tap", connect_timeout: float = 5.0,
        on_error: Optional[Callable[[str], None]] = None,
        token: Optional[str] = None, tls: Union[None, bool, Mapping[str, Any], ssl.SSLContext] = None,
        reconnect: bool = True, max_reconnect_attempts: int = -1,
        reconnect_wait: float = 0.05, reconnect_wait_max: float = 2.0, reconnect_jitter: float = 0.5,
        reconnect_buffer_bytes: int = 8 * 1024 * 1024, reconnect_buffer_msgs: int = 65536,
        ping_interval: float = 2.0, max_pings_out: int = 2, confirm_interval: float = 0.1,
        replay_delay: float = 0.0,
    ):
        self.servers: List[ServerUrl] = parse_servers(servers)
        self.url = str(self.servers[0])
        self.name, self.on_error, self.errors, self.max_payload = name, on_error, 0, 1024 * 1024
        self.last_error: Optional[str] = None
        self.server_info: Dict[str, object] = {}
        self.stats: Dict[str, int] = {k: 0 for k in STAT_KEYS}
        self._dial_opts = DialOptions(user, password, token, tls, name)
        self._connect_timeout, self._reconnect = connect_timeout, reconnect
        if isinstance(max_reconnect_attempts, bool) or not isinstance(max_reconnect_attempts, int):
            raise NatsArgumentError(f"max_reconnect_attempts: expected an integer, found {max_reconnect_attempts!r}")
        self._max_attempts = max_reconnect_attempts
        self._backoff = Backoff(reconnect_wait, reconnect_wait_max, jitter=reconnect_jitter)
        self._buffer = OutageBuffer(reconnect_buffer_bytes, reconnect_buffer_msgs)
        self._ping_interval = float(ping_interval)
        self._max_pings_out = max_pings_out
        self._confirm_every, self._last_confirm = float(confirm_interval), 0.0
        self._replay_delay = float(replay_delay)
        self._state = "connecting"  # connected | reconnecting | closed
        self._closing = False
        self._why_closed = "close() was called"
        self._wake = threading.Event()
        self._up = threading.Condition()
        self._write_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._subs: Dict[int, Subscription] = {}
        self._sid = itertools.count(1)
        self._pongs: List[_Pong] = []
        self._written = self._confirmed = self._pings_out = 0
        # what the PONG before the last one confirmed: a server answers a PING once it has
        # read what came before, and one shutting down can still lose those; only what an
        # earlier PONG confirmed (a ping interval ago) counts as delivered
        self._settled = 0
        self._inbox_prefix = "_INBOX." + secrets.token_hex(11)
        self._inbox_seq = itertools.count(1)
        self._inbox_sub: Optional[Subscription] = None
        self._inbox_lock = threading.Lock()
        self._pending: Dict[str, PendingRequest] = {}
        self._lost_at = 0.0
        self._dropping = False
        self._index = 0
        failures: List[NatsError] = []
        for i, srv in enumerate(self.servers):
            try:
                self._sock, self._rfile = self._connect(srv)
                self._index = i
                break
            except NatsServerError:
                raise
            except NatsError as err:
                failures.append(err)
        else:
            if len(failures) == 1:
                raise failures[0]
            raise NatsConnectionError(
                "connect: expected one of the servers to answer, found none: " + "; ".join(map(str, failures)))
        self._state = "connected"
        self._io = threading.Thread(target=self._run, name=f"nats-io-{name}", daemon=True)
        self._io.start()
        self._pinger = None
        if self._ping_interval > 0:
            self._pinger = threading.Thread(target=self._ping_loop, name=f"nats-ping-{name}", daemon=True)
            self._pinger.start()

    # -- state ----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the client is closed for good (close(), reconnect off, or gave up)."""
        return self._state == "closed"

    @property
    def connected(self) -> bool:
        """True while a connection is up (False while reconnecting)."""
        return self._state == "connected"

    @property
    def buffered(self) -> Tuple[int, int]:
        """Publishes (messages, bytes) waiting in the outage buffer now."""
        return len(self._buffer), self._buffer.nbytes

    def wait_connected(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a connection; True when connected."""
        with self._up:
            return self._up.wait_for(lambda: self._state in ("connected", "closed"), timeout) and self.connected

    # -- connection -----------------------------------------------------------

    def _connect(self, srv: ServerUrl) -> Tuple[socket.socket, Any]:
        sock, rfile, self.server_info = dial(srv, self._dial_opts, self._connect_timeout)
        self.max_payload = int(self.server_info.get("max_payload", self.max_payload))
        return sock, rfile

    def _run(self) -> None:
        """The I/O thread: read until the connection drops, reconnect, read again."""
        while True:
            sock, rfile = self._sock, self._rfile
            reason = self._read_loop(rfile)
            self._lost(sock, rfile, reason)
            if self._closing or not self._reconnect or not self._reconnect_loop():
                break
        self._finish()

    def _lost(self, sock, rfile, reason: str) -> None:
        with self._write_lock:
            if self._state == "connected":
                self._state = "reconnecting"
            doubt = max(0, self._written - self._settled)
            self._written = self._confirmed = self._settled = self._pings_out = 0
        close_quietly(sock, rfile)
        with self._state_lock:
            pending = list(self._pending.values())
            self._pending.clear()
            pongs, self._pongs = self._pongs, []
        why = f"connection to {self.servers[self._index]} lost ({reason})"
        for p in pending:
            p._resolve(None, NatsConnectionError(f"request on {p.subject!r}: {why}"))
        for pong in pongs:
            pong.error = why
            if pong.event is not None:
                pong.event.set()
        if self._closing:
            return
        self._lost_at = time.monotonic()
        self.stats["disconnects"] += 1
        self.stats["in_doubt"] += doubt
        log.warning("nats: %s; %s publishes were not confirmed (in doubt)%s", why, doubt,
                    "; reconnecting" if self._reconnect else "")

    def _reconnect_loop(self) -> bool:
        n = len(self.servers)
        seen_errors = set()
        attempt = 0
        while not self._closing:
            for k in range(n):
                i = (self._index + 1 + k) % n
                if self._closing:
                    return False
                try:
                    sock, rfile = self._connect(self.servers[i])
                except NatsError as err:
                    self.stats["reconnect_attempts"] += 1
                    self.last_error = str(err)
                    if str(err) not in seen_errors and len(seen_errors) < 16:
                        seen_errors.add(str(err))
                        log.warning("nats: reconnect: %s", err)
                    continue
                if self._resume(i, sock, rfile):
                    return True
            attempt += 1
            if 0 <= self._max_attempts <= attempt:
                self._why_closed = (f"gave up reconnecting after {attempt} passes over {n} server(s) "
                                    f"(last error: {self.last_error})")
                log.error("nats: %s", self._why_closed)
                return False
            self._wake.wait(self._backoff.delay(attempt - 1))
        return False

    def _resume(self, index: int, sock, rfile) -> bool:
        """Subscriptions again, then the held publishes, then new ones: the write lock keeps that order."""
        with self._state_lock:
            subs = list(self._subs.values())
        ops = b"".join(f"SUB {s.subject}{' ' + s.queue if s.queue else ''} {s.sid}\r\n".encode() for s in subs)
        if self._replay_delay > 0 and self._try_send(sock, ops):  # subscriptions now, held publishes later
            ops = b""
            self._wake.wait(self._replay_delay)
        if self._closing:  # close() during the replay delay: what is held counts as dropped
            return close_quietly(sock, rfile)
        with self._write_lock:
            held = len(self._buffer)
            try:
                sock.sendall(ops + self._buffer.peek_all())
            except OSError as err:
                log.warning("nats: reconnect to %s: resending failed: %s", self.servers[index], err)
                return close_quietly(sock, rfile)
            self._buffer.clear()
            self._written, self._confirmed, self._settled = held, 0, 0
            self._sock, self._rfile, self._index = sock, rfile, index
            self._state = "connected"
            self._dropping = False
        self.stats["reconnects"] += 1
        self.stats["replayed"] += held
        self.stats["outage_ms"] += int((time.monotonic() - self._lost_at) * 1000)
        log.warning("nats: reconnected to %s after %.2f s; %d subscriptions and %d held publishes sent",
                    self.servers[index], time.monotonic() - self._lost_at, len(subs), held)
        with self._up:
            self._up.notify_all()
        return True

    @staticmethod
    def _try_send(sock, data: bytes) -> bool:
        try:
            sock.sendall(data)
        except OSError:
            return False
        return True

    def _finish(self) -> None:
        with self._write_lock:
            self._state = "closed"
            left, nbytes = len(self._buffer), self._buffer.nbytes
            self._buffer.clear()
        if left:
            self.stats["dropped"] += left
            self.stats["dropped_bytes"] += nbytes
            log.warning("nats: closed with %d held publishes unsent (counted as dropped)", left)
        with self._up:
            self._up.notify_all()

    def _ping_loop(self) -> None:
        while not self._wake.wait(self._ping_interval):
            if self._state != "connected":
                continue
            if self._pings_out >= self._max_pings_out:
                self._abort_socket(f"stale: {self._pings_out} PINGs unanswered")
                continue
            self._pings_out += 1
            self._ping(None)

    def _abort_socket(self, why: str) -> None:
        log.warning("nats: connection to %s: %s", self.servers[self._index], why)
        self._shutdown()

    def _shutdown(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _ping(self, event: Optional[threading.Event]) -> Optional[_Pong]:
        with self._write_lock:
            return self._ping_locked(event) if self._state == "connected" else None

    def _ping_locked(self, event: Optional[threading.Event]) -> _Pong:
        pong = _Pong(self._written, event)
        with self._state_lock:
            self._pongs.append(pong)
        try:
            self._sock.sendall(b"PING\r\n")
        except OSError as err:  # what was written stays in doubt; the reader sees the drop
            self._write_failed(err)
        return pong

    def _write_failed(self, err: OSError) -> None:
        """Write lock held: the connection is gone; publishes wait from now on."""
        self._state = "reconnecting"
        self._abort_socket(f"write failed: {err}")

    def _send(self, data: bytes, hold: bool) -> None:
        """Write one operation; during an outage, hold it (``hold``) or raise."""
        with self._write_lock:
            if self._state == "connected":
                try:
                    self._sock.sendall(data)
                except OSError as err:
                    self._write_failed(err)
                    if not self._reconnect:
                        raise NatsConnectionError(f"write: {err}") from err
                else:
                    self._written += 1
                    now = time.monotonic()
                    if self._confirm_every > 0 and now - self._last_confirm >= self._confirm_every:
                        self._last_confirm = now
                        self._ping_locked(None)
                    return
            if self._state == "closed" or not self._reconnect:
                raise NatsConnectionError(f"expected an open connection, found it closed: {self._why_closed}")
            if not hold:
                raise NatsConnectionError(f"expected a connection, found none: reconnecting to {self.url}")
            if self._buffer.add(data):
                self.stats["buffered"] += 1
                self.stats["buffered_bytes"] += len(data)
                return
            self.stats["dropped"] += 1
            self.stats["dropped_bytes"] += len(data)
            err = ReconnectBufferFullError(
                f"publish during an outage: expected room in the reconnect buffer, found it full "
                f"({len(self._buffer)} messages, {self._buffer.nbytes} bytes held; limits "
                f"{self._buffer.max_msgs} messages, {self._buffer.max_bytes} bytes)"
            )
            if not self._dropping:  # once per outage; every drop is counted
                self._dropping = True
                log.warning("nats: %s; dropping publishes until the reconnect", err)
            raise err

    def _send_ctl(self, data: bytes) -> None:
        """SUB, UNSUB, PONG: sent when connected; otherwise the reconnect takes care of them."""
        with self._write_lock:
            if self._state == "connected":
                try:
                    self._sock.sendall(data)
                except OSError as err:
                    self._write_failed(err)

    def close(self) -> None:
        """Flush (briefly, when connected) and close; held publishes left are counted as dropped. Idempotent."""
        if self.closed:
            return
        if self.connected:
            try:
                self.flush(timeout=1.0)
            except NatsError:
                pass
        self._closing = True
        self._wake.set()
        if self.connected:
            self._shutdown()
        if self._io is not threading.current_thread():
            self._io.join(timeout=5.0)
        if self._pinger is not None:
            self._pinger.join(timeout=2.0)

    def __enter__(self) -> "NatsClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- publishing -----------------------------------------------------------

    def publish(
        self,
        subject: str,
        payload: Union[bytes, bytearray, memoryview, str, None] = b"",
        headers: Optional[Mapping[str, str]] = None,
        reply: Optional[str] = None,
    ) -> None:
        """Publish ``payload`` (with ``headers``, as HPUB) on ``subject``.

        Raises :class:`MaxPayloadError` when headers plus payload exceed the
        server's ``max_payload``, :class:`NatsArgumentError` for a bad subject
        or header, :class:`ReconnectBufferFullError` during an outage with the
        buffer full. A permission error comes back asynchronously as ``-ERR``
        (see ``on_error``).
        """
        _check_subject(subject)
        if reply is not None:
            _check_subject(reply, "reply subject")
        data = _as_bytes(payload)
        hdr = encode_headers(headers) if headers else b""
        total = len(hdr) + len(data)
        if total > self.max_payload:
            raise MaxPayloadError(
                f"publish on {subject!r}: expected at most {self.max_payload} bytes (max_payload), "
                f"found {total} (headers {len(hdr)} + payload {len(data)})"
            )
        r = (" " + reply) if reply else ""
        if hdr:
            op = f"HPUB {subject}{r} {len(hdr)} {total}\r\n".encode()
            self._send(op + hdr + data + _CRLF, hold=True)
        else:
            op = f"PUB {subject}{r} {len(data)}\r\n".encode()
            self._send(op + data + _CRLF, hold=True)

    def flush(self, timeout: float = 5.0) -> None:
        """Send PING and wait for the PONG: everything written before has reached the server.

        During an outage, waits for the reconnect (within ``timeout``) first.
        """
        deadline = time.monotonic() + timeout
        if not self.wait_connected(timeout):
            raise NatsConnectionError(f"flush: expected a connection within {timeout} s, found "
                                      + ("it closed" if self.closed else "none (reconnecting)"))
        ev = threading.Event()
        pong = self._ping(ev)
        if pong is None or not ev.wait(max(0.0, deadline - time.monotonic())):
            with self._state_lock:
                if pong in self._pongs:
                    self._pongs.remove(pong)
            raise NatsTimeoutError(f"flush: expected PONG within {timeout} s, found none")
        if pong.error is not None:
            raise NatsConnectionError(f"flush: {pong.error}")

    # -- subscribing ----------------------------------------------------------

    def subscribe(
        self, subject: str, callback: Callable[[Msg], None], queue: Optional[str] = None
    ) -> Subscription:
        """Subscribe (again after each reconnect); ``callback(msg)`` runs on the I/O thread
        (keep it short, never block on a request)."""
        _check_subject(subject)
        if not callable(callback):
            raise NatsArgumentError(f"callback: expected a callable, found {_type_name(callback)}")
        if self.closed:
            raise NatsConnectionError(f"subscribe: expected an open connection, found it closed: {self._why_closed}")
        sid = next(self._sid)
        sub = Subscription(self, sid, subject, queue, callback)
        with self._state_lock:
            self._subs[sid] = sub
        q = f" {queue}" if queue else ""
        self._send_ctl(f"SUB {subject}{q} {sid}\r\n".encode())
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._state_lock:
            present = self._subs.pop(sub.sid, None) is not None
        if present:
            self._send_ctl(f"UNSUB {sub.sid}\r\n".encode())

    # -- requests -------------------------------------------------------------

    def new_inbox(self) -> str:
        """A unique inbox subject ``_INBOX.<random>.<n>``."""
        return f"{self._inbox_prefix}.{next(self._inbox_seq)}"

    def request_async(
        self,
        subject: str,
        payload: Union[bytes, bytearray, memoryview, str, None] = b"",
        headers: Optional[Mapping[str, str]] = None,
    ) -> PendingRequest:
        """Publish a request and return at once; ``.result(timeout)`` waits for the reply.

        Raises :class:`NatsConnectionError` at once during an outage (no reply could come).
        """
        if not self.connected:
            raise NatsConnectionError(
                f"request on {subject!r}: expected a connection, found "
                + ("it closed" if self.closed else "none (reconnecting)")
            )
        with self._inbox_lock:
            if self._inbox_sub is None:
                self._inbox_sub = self.subscribe(self._inbox_prefix + ".*", self._on_reply)
        inbox = self.new_inbox()
        token = inbox.rsplit(".", 1)[1]
        pending = PendingRequest(self, subject, token)
        with self._state_lock:
            self._pending[token] = pending
        try:
            self.publish(subject, payload, headers, reply=inbox)
        except BaseException:
            self._forget(token)
            raise
        return pending

    def request(
        self,
        subject: str,
        payload: Union[bytes, bytearray, memoryview, str, None] = b"",
        headers: Optional[Mapping[str, str]] = None,
        timeout: float = 1.0,
    ) -> Msg:
        """Send a request and wait for its reply.

        Raises :class:`NatsTimeoutError` (a ``TimeoutError``) when no reply
        comes within ``timeout`` seconds, :class:`NoRespondersError` when the
        server says nobody listens on ``subject``, :class:`NatsConnectionError`
        when the connection is down or drops meanwhile.
        """
        return self.request_async(subject, payload, headers).result(timeout)

    def _forget(self, token: str) -> None:
        with self._state_lock:
            self._pending.pop(token, None)

    def _on_reply(self, msg: Msg) -> None:
        token = msg.subject.rsplit(".", 1)[1]
        with self._state_lock:
            pending = self._pending.pop(token, None)
        if pending is not None:
            pending._resolve(msg)

    # -- reading --------------------------------------------------------------

    def _server_error(self, text: str) -> None:
        self.errors += 1
        self.last_error = text
        log.warning("nats: server error: %s", text)
        if self.on_error is not None:
            try:
                self.on_error(text)
            except Exception:  # a callback must not kill the reader
                log.exception("nats: on_error callback failed")

    def _dispatch(self, msg: Msg) -> None:
        with self._state_lock:
            sub = self._subs.get(msg.sid)
        if sub is None:
            return
        sub.received += 1
        try:
            sub.callback(msg)
        except Exception:
            log.exception("nats: callback for %r failed", sub.subject)

    def _read_loop(self, f) -> str:
        """Read one connection until it ends; returns why it ended."""
        try:
            while True:
                line = f.readline()
                if not line:
                    return "closed by the server"
                if line.startswith(b"MSG "):
                    # MSG <subject> <sid> [reply] <#bytes>
                    parts = line[4:].split()
                    size = int(parts[-1])
                    reply = parts[2].decode() if len(parts) == 4 else None
                    data = f.read(size + 2)[:size]
                    self._dispatch(Msg(parts[0].decode(), reply, data, sid=int(parts[1])))
                elif line.startswith(b"HMSG "):
                    # HMSG <subject> <sid> [reply] <#header bytes> <#total bytes>
                    parts = line[5:].split()
                    hsize, total = int(parts[-2]), int(parts[-1])
                    reply = parts[2].decode() if len(parts) == 5 else None
                    body = f.read(total + 2)
                    headers, items, status, desc = parse_headers(body[:hsize])
                    self._dispatch(
                        Msg(parts[0].decode(), reply, body[hsize:total], headers, items, status, desc, int(parts[1]))
                    )
                elif line.startswith(b"PING"):
                    self._send_ctl(b"PONG\r\n")
                elif line.startswith(b"PONG"):
                    with self._state_lock:
                        pong = self._pongs.pop(0) if self._pongs else None
                    self._pings_out = 0
                    if pong is not None:
                        self._settled = self._confirmed
                        self._confirmed = max(self._confirmed, pong.mark)
                        if pong.event is not None:
                            pong.event.set()
                elif line.startswith(b"-ERR"):
                    self._server_error(line[4:].strip().decode("utf-8", "replace").strip("'"))
                elif line.startswith(b"INFO "):
                    try:
                        info = json.loads(line[5:].decode("utf-8"))
                        self.server_info.update(info)
                        if "max_payload" in info:
                            self.max_payload = int(info["max_payload"])
                    except ValueError:
                        pass
                # +OK: ignored
        except (OSError, ValueError, NatsError) as err:
            return f"{type(err).__name__}: {err}"

    def __repr__(self) -> str:
        return f"NatsClient({self.url!r}, state={self._state})"
