"""The NATS client protocol pieces the client in :mod:`latentwatch_tap.nats` is built from.

Errors, received messages (:class:`Msg`), subscriptions, requests in
flight, header blocks (:func:`encode_headers`, :func:`parse_headers`) and
subject checks. Standard library only.

Example::

    from latentwatch_tap.protocol import encode_headers, parse_headers

    block = encode_headers({"Lw-Version": "1"})
    headers, items, status, description = parse_headers(block)
"""

from __future__ import annotations

import re
import threading
from typing import Dict, List, Mapping, Optional, Tuple

__all__ = [
    "Msg",
    "Subscription",
    "PendingRequest",
    "NatsError",
    "NatsConnectionError",
    "NatsTlsError",
    "ReconnectBufferFullError",
    "NatsServerError",
    "NatsTimeoutError",
    "NoRespondersError",
    "NatsArgumentError",
    "MaxPayloadError",
    "encode_headers",
    "parse_headers",
]

_CRLF = b"\r\n"
_HEADER_PREAMBLE = b"NATS/1.0"
_SUBJECT = re.compile(r"^[^\s.]+(\.[^\s.]+)*$")
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # printable ASCII except ':' and space


class NatsError(Exception):
    """Base class of this client's errors."""


class NatsConnectionError(NatsError, ConnectionError):
    """The connection could not be made, was refused, or is closed."""


class NatsTlsError(NatsConnectionError):
    """The TLS upgrade failed (an unknown CA, a name mismatch, a server without TLS for ``tls://``)."""


class ReconnectBufferFullError(NatsConnectionError):
    """A publish during an outage found the reconnect buffer full: it is dropped (and counted)."""


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
