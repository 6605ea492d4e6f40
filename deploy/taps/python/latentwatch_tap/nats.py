"""A small NATS client over TCP, standard library only.

Enough of the NATS client protocol for a tap: INFO/CONNECT (user and
password, ``headers`` and ``no_responders``), PUB and HPUB, SUB/UNSUB, MSG
and HMSG (status headers such as ``NATS/1.0 503`` included), PING/PONG,
``-ERR``. A reader thread dispatches messages to subscription callbacks;
writes are serialised by a lock, so any thread may publish. No TLS, no
reconnect: when the connection drops, :attr:`NatsClient.closed` turns true,
publishing raises :class:`NatsConnectionError`, and the owner creates a new
client.

Example::

    from latentwatch_tap.nats import NatsClient

    nc = NatsClient("nats://127.0.0.1:4222", user="tap", password="secret")
    nc.subscribe("greet", lambda msg: print(msg.subject, msg.headers, msg.data))
    nc.publish("greet", b"hi", headers={"Lw-Example": "1"})
    nc.flush()
    reply = nc.request("service", b"ping", timeout=1.0)  # NatsTimeoutError / NoRespondersError
    nc.close()
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import secrets
import socket
import threading
import time
import urllib.parse
from typing import Callable, Dict, List, Mapping, Optional, Tuple, Union

__all__ = [
    "NatsClient",
    "Msg",
    "Subscription",
    "PendingRequest",
    "NatsError",
    "NatsConnectionError",
    "NatsServerError",
    "NatsTimeoutError",
    "NoRespondersError",
    "NatsArgumentError",
    "MaxPayloadError",
]

log = logging.getLogger("latentwatch_tap.nats")

_CRLF = b"\r\n"
_HEADER_PREAMBLE = b"NATS/1.0"
_SUBJECT = re.compile(r"^[^\s.]+(\.[^\s.]+)*$")
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # printable ASCII except ':' and space


class NatsError(Exception):
    """Base class of this client's errors."""


class NatsConnectionError(NatsError, ConnectionError):
    """The connection could not be made, was refused, or is closed."""


class NatsServerError(NatsError):
    """The server answered ``-ERR`` (e.g. ``Permissions Violation``, ``Authorization Violation``)."""


class NatsTimeoutError(NatsError, TimeoutError):
    """No reply (or PONG) within the timeout."""


class NoRespondersError(NatsError):
    """A request found no subscriber: the server answered with status 503."""


class NatsArgumentError(NatsError, ValueError):
    """A subject, header or payload this client refuses (message: ``expected X, found Y``)."""


class MaxPayloadError(NatsArgumentError):
    """Headers plus payload exceed the server's ``max_payload``."""


def _type_name(v: object) -> str:
    return type(v).__name__


class Msg:
    """A received message.

    ``headers`` maps each header name (as sent) to its value (the last one
    when a name repeats; ``header_items`` keeps all of them in order), or is
    None for a plain MSG. ``status`` is the status code of the header block's
    first line (``"503"`` for no responders), or None.
    """

    __slots__ = ("subject", "reply", "data", "headers", "header_items", "status", "description", "sid")

    def __init__(
        self,
        subject: str,
        reply: Optional[str],
        data: bytes,
        headers: Optional[Dict[str, str]] = None,
        header_items: Optional[List[Tuple[str, str]]] = None,
        status: Optional[str] = None,
        description: Optional[str] = None,
        sid: int = 0,
    ):
        self.subject = subject
        self.reply = reply
        self.data = data
        self.headers = headers
        self.header_items = header_items or []
        self.status = status
        self.description = description
        self.sid = sid

    def __repr__(self) -> str:
        return (
            f"Msg(subject={self.subject!r}, reply={self.reply!r}, data={self.data[:40]!r}, "
            f"headers={self.headers!r}, status={self.status!r})"
        )


class Subscription:
    """A subscription; :meth:`unsubscribe` ends it."""

    def __init__(self, client: "NatsClient", sid: int, subject: str, queue: Optional[str], callback):
        self.client = client
        self.sid = sid
        self.subject = subject
        self.queue = queue
        self.callback = callback
        self.received = 0

    def unsubscribe(self) -> None:
        """Stop receiving messages (idempotent)."""
        self.client._unsubscribe(self)


class PendingRequest:
    """A request in flight (see :meth:`NatsClient.request_async`).

    :meth:`result` waits for the reply and returns the :class:`Msg`, or
    raises :class:`NatsTimeoutError` or :class:`NoRespondersError`.
    """

    def __init__(self, client: "NatsClient", subject: str, token: str):
        self._client = client
        self.subject = subject
        self.token = token
        self._event = threading.Event()
        self._msg: Optional[Msg] = None
        self._error: Optional[BaseException] = None

    def _resolve(self, msg: Optional[Msg], error: Optional[BaseException] = None) -> None:
        self._msg = msg
        self._error = error
        self._event.set()

    def done(self) -> bool:
        """True once a reply (or an error) arrived."""
        return self._event.is_set()

    def wait(self, timeout: Optional[float]) -> bool:
        """Wait up to ``timeout`` seconds; True when the request is done."""
        return self._event.wait(timeout)

    def result(self, timeout: Optional[float] = None) -> Msg:
        """The reply; raises :class:`NatsTimeoutError`, :class:`NoRespondersError`."""
        if not self._event.wait(timeout):
            self.cancel()
            raise NatsTimeoutError(
                f"request on {self.subject!r}: expected a reply within {timeout} s, found none"
            )
        if self._error is not None:
            raise self._error
        msg = self._msg
        assert msg is not None
        if msg.status == "503" and not msg.data:
            raise NoRespondersError(
                f"request on {self.subject!r}: expected a responder, found none (no responders, status 503)"
            )
        return msg

    def cancel(self) -> None:
        """Forget the request (a late reply is dropped)."""
        self._client._forget(self.token)


def _check_subject(subject: object, what: str = "subject") -> str:
    if not isinstance(subject, str):
        raise NatsArgumentError(f"{what}: expected a string, found {_type_name(subject)}")
    if not _SUBJECT.match(subject):
        raise NatsArgumentError(
            f"{what}: expected dot-separated tokens without whitespace, found {subject!r}"
        )
    return subject


def _as_bytes(payload: object) -> bytes:
    if payload is None:
        return b""
    if isinstance(payload, str):
        return payload.encode("utf-8")
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload)
    raise NatsArgumentError(f"payload: expected bytes or str, found {_type_name(payload)}")


def encode_headers(headers: Mapping[str, str]) -> bytes:
    """The header block as NATS writes it: ``NATS/1.0\\r\\n``, ``Name: value\\r\\n`` each, ``\\r\\n``.

    >>> encode_headers({"Lw-Version": "1"})
    b'NATS/1.0\\r\\nLw-Version: 1\\r\\n\\r\\n'
    """
    parts = [_HEADER_PREAMBLE, _CRLF]
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise NatsArgumentError(
                f"header name: expected printable ASCII without ':' or spaces, found {name!r}"
            )
        if not isinstance(value, str):
            raise NatsArgumentError(f"header {name}: expected a string value, found {_type_name(value)}")
        if "\r" in value or "\n" in value:
            raise NatsArgumentError(f"header {name}: expected a value without CR or LF, found {value!r}")
        parts += [name.encode("utf-8"), b": ", value.encode("utf-8"), _CRLF]
    parts.append(_CRLF)
    return b"".join(parts)


def parse_headers(block: bytes) -> Tuple[Dict[str, str], List[Tuple[str, str]], Optional[str], Optional[str]]:
    """Parse a header block: (headers, items, status, description)."""
    text = block.decode("utf-8", errors="replace")
    lines = text.split("\r\n")
    first = lines[0]
    if not first.startswith("NATS/1.0"):
        raise NatsError(f"header block: expected 'NATS/1.0', found {first[:40]!r}")
    rest = first[len("NATS/1.0"):].strip()
    status = description = None
    if rest:
        bits = rest.split(" ", 1)
        status = bits[0]
        description = bits[1] if len(bits) > 1 else None
    headers: Dict[str, str] = {}
    items: List[Tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        name = name.strip()
        value = value.strip()
        headers[name] = value
        items.append((name, value))
    return headers, items, status, description


def _parse_url(url: str) -> Tuple[str, int, Optional[str], Optional[str]]:
    if not isinstance(url, str):
        raise NatsArgumentError(f"url: expected a string like nats://host:4222, found {_type_name(url)}")
    u = urllib.parse.urlsplit(url if "://" in url else "nats://" + url)
    if u.scheme not in ("nats", "tcp"):
        raise NatsArgumentError(f"url: expected scheme nats:// (no TLS in this client), found {u.scheme!r}")
    host = u.hostname or "127.0.0.1"
    port = u.port or 4222
    user = urllib.parse.unquote(u.username) if u.username else None
    password = urllib.parse.unquote(u.password) if u.password else None
    return host, port, user, password


class NatsClient:
    """A NATS connection. Connects in the constructor.

    ``url``: ``nats://[user:password@]host:port``. ``user``/``password``
    override the URL's. ``on_error(message)`` is called (from the reader
    thread) for each ``-ERR`` the server sends, such as
    ``Permissions Violation for Publish to "x"``; they are counted in
    ``errors`` and kept in ``last_error``, and logged. An authorization
    failure raises :class:`NatsServerError` from the constructor.

    Example::

        nc = NatsClient("nats://127.0.0.1:4222")
        sub = nc.subscribe("a.>", lambda m: print(m.data))
        nc.publish("a.b", b"x")
        nc.flush()
        sub.unsubscribe()
        nc.close()
    """

    def __init__(
        self,
        url: str = "nats://127.0.0.1:4222",
        user: Optional[str] = None,
        password: Optional[str] = None,
        name: str = "latentwatch-tap",
        connect_timeout: float = 5.0,
        on_error: Optional[Callable[[str], None]] = None,
    ):
        host, port, url_user, url_password = _parse_url(url)
        self.url = url
        self.name = name
        self.on_error = on_error
        self.errors = 0
        self.last_error: Optional[str] = None
        self.server_info: Dict[str, object] = {}
        self.max_payload = 1024 * 1024
        self.closed = False
        self._user = user if user is not None else url_user
        self._password = password if password is not None else url_password
        self._write_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._subs: Dict[int, Subscription] = {}
        self._sid = itertools.count(1)
        self._pongs: List[threading.Event] = []
        self._inbox_prefix = "_INBOX." + secrets.token_hex(11)
        self._inbox_seq = itertools.count(1)
        self._inbox_sub: Optional[Subscription] = None
        self._inbox_lock = threading.Lock()
        self._pending: Dict[str, PendingRequest] = {}
        try:
            self._sock = socket.create_connection((host, port), timeout=connect_timeout)
        except OSError as err:
            raise NatsConnectionError(f"connect to {host}:{port}: {err}") from err
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._rfile = self._sock.makefile("rb")
        try:
            self._handshake(connect_timeout)
        except BaseException:
            self._rfile.close()
            self._sock.close()
            raise
        self._sock.settimeout(None)
        self._reader = threading.Thread(target=self._read_loop, name=f"nats-reader-{name}", daemon=True)
        self._reader.start()

    # -- connection -----------------------------------------------------------

    def _handshake(self, timeout: float) -> None:
        line = self._rfile.readline()
        if not line.startswith(b"INFO "):
            raise NatsConnectionError(f"connect: expected INFO from the server, found {line[:60]!r}")
        self.server_info = json.loads(line[5:].decode("utf-8"))
        self.max_payload = int(self.server_info.get("max_payload", self.max_payload))
        if not self.server_info.get("headers", False):
            raise NatsConnectionError("connect: expected a server with header support (NATS 2.2+), found none")
        opts: Dict[str, object] = {
            "verbose": False,
            "pedantic": False,
            "tls_required": False,
            "name": self.name,
            "lang": "python-latentwatch",
            "version": "1.0",
            "protocol": 1,
            "headers": True,
            "no_responders": True,
        }
        if self._user is not None:
            opts["user"] = self._user
            opts["pass"] = self._password or ""
        self._sock.sendall(b"CONNECT " + json.dumps(opts).encode() + _CRLF + b"PING" + _CRLF)
        deadline = time.monotonic() + timeout
        while True:
            self._sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                line = self._rfile.readline()
            except socket.timeout as err:
                raise NatsTimeoutError(f"connect: expected PONG within {timeout} s, found none") from err
            if not line:
                raise NatsConnectionError("connect: the server closed the connection")
            if line.startswith(b"PONG"):
                return
            if line.startswith(b"-ERR"):
                msg = line[4:].strip().decode("utf-8", "replace").strip("'")
                raise NatsServerError(f"connect: expected PONG, found -ERR {msg!r}")
            if line.startswith(b"PING"):
                self._sock.sendall(b"PONG\r\n")
            # INFO updates and +OK are ignored

    def _send(self, data: bytes) -> None:
        if self.closed:
            raise NatsConnectionError("expected an open connection, found it closed")
        with self._write_lock:
            try:
                self._sock.sendall(data)
            except OSError as err:
                self._mark_closed()
                raise NatsConnectionError(f"write: {err}") from err

    def _mark_closed(self) -> None:
        if self.closed:
            return
        self.closed = True
        with self._state_lock:
            pending = list(self._pending.values())
            self._pending.clear()
            pongs, self._pongs = self._pongs, []
        for p in pending:
            p._resolve(None, NatsConnectionError(f"request on {p.subject!r}: connection closed"))
        for ev in pongs:
            ev.set()

    def close(self) -> None:
        """Flush (briefly, when still open) and close the connection. Idempotent."""
        if not self.closed:
            try:
                self.flush(timeout=1.0)
            except NatsError:
                pass
        self._mark_closed()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if self._reader is not threading.current_thread():
            self._reader.join(timeout=2.0)
        self._rfile.close()
        self._sock.close()

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
        or header. A permission error comes back asynchronously as ``-ERR``
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
            self._send(op + hdr + data + _CRLF)
        else:
            op = f"PUB {subject}{r} {len(data)}\r\n".encode()
            self._send(op + data + _CRLF)

    def flush(self, timeout: float = 5.0) -> None:
        """Send PING and wait for the PONG: everything written before has reached the server."""
        ev = threading.Event()
        with self._state_lock:
            self._pongs.append(ev)
        try:
            self._send(b"PING\r\n")
        except NatsError:
            with self._state_lock:
                if ev in self._pongs:
                    self._pongs.remove(ev)
            raise
        if not ev.wait(timeout):
            with self._state_lock:
                if ev in self._pongs:
                    self._pongs.remove(ev)
            raise NatsTimeoutError(f"flush: expected PONG within {timeout} s, found none")
        if self.closed:
            raise NatsConnectionError("flush: connection closed")

    # -- subscribing ----------------------------------------------------------

    def subscribe(
        self, subject: str, callback: Callable[[Msg], None], queue: Optional[str] = None
    ) -> Subscription:
        """Subscribe; ``callback(msg)`` runs on the reader thread (keep it short, never block on a request)."""
        _check_subject(subject)
        if not callable(callback):
            raise NatsArgumentError(f"callback: expected a callable, found {_type_name(callback)}")
        sid = next(self._sid)
        sub = Subscription(self, sid, subject, queue, callback)
        with self._state_lock:
            self._subs[sid] = sub
        q = f" {queue}" if queue else ""
        self._send(f"SUB {subject}{q} {sid}\r\n".encode())
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._state_lock:
            present = self._subs.pop(sub.sid, None) is not None
        if present and not self.closed:
            try:
                self._send(f"UNSUB {sub.sid}\r\n".encode())
            except NatsError:
                pass

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
        """Publish a request and return at once; ``.result(timeout)`` waits for the reply."""
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
        server says nobody listens on ``subject``.
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

    def _read_loop(self) -> None:
        f = self._rfile
        try:
            while True:
                line = f.readline()
                if not line:
                    break
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
                    self._send(b"PONG\r\n")
                elif line.startswith(b"PONG"):
                    with self._state_lock:
                        ev = self._pongs.pop(0) if self._pongs else None
                    if ev is not None:
                        ev.set()
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
        except (OSError, ValueError, NatsError):
            pass
        finally:
            self._mark_closed()

    def __repr__(self) -> str:
        return f"NatsClient({self.url!r}, closed={self.closed})"
