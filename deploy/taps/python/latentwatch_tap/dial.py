"""Opening one NATS connection: the server list, TCP, INFO, the TLS upgrade, CONNECT, the first PONG.

- :func:`parse_servers`: ``nats://`` and ``tls://`` URLs (one, a comma-separated
  string, or a list), each with optional ``user:password@`` or ``token@``.
- :func:`make_ssl_context`: an :class:`ssl.SSLContext` from ``tls`` options
  (``ca_file``, ``cert_file``, ``key_file``, ``server_hostname``, ``verify``).
- :func:`dial`: one connection, ready for SUB and PUB, or a clear error
  (:class:`NatsServerError` for a refused authorization, :class:`NatsTlsError`).

nats-server 2.9 sends its INFO in plaintext and expects the client to start
TLS right after it when INFO says ``tls_required`` (servers from 2.10 can
also be configured for a TLS handshake first; this client does not do that).

Example::

    from latentwatch_tap.dial import DialOptions, dial, parse_servers

    srv = parse_servers("tls://127.0.0.1:4222")[0]
    sock, rfile, info = dial(srv, DialOptions(tls={"ca_file": "ca.pem"}, user="tap", password="secret"), 5.0)
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .protocol import NatsArgumentError, NatsConnectionError, NatsServerError, NatsTimeoutError, NatsTlsError

__all__ = ["ServerUrl", "parse_servers", "make_ssl_context", "TLS_KEYS", "DialOptions", "dial", "close_quietly"]

_CRLF = b"\r\n"

#: Keys of the ``tls`` option.
TLS_KEYS = ("ca_file", "cert_file", "key_file", "server_hostname", "verify")


@dataclass(frozen=True)
class ServerUrl:
    """One server of the list: where it is, whether ``tls://`` demands TLS, credentials from the URL."""

    host: str
    port: int
    tls: bool
    user: Optional[str] = None
    password: Optional[str] = None
    token: Optional[str] = None

    def __str__(self) -> str:  # never the credentials
        return f"{'tls' if self.tls else 'nats'}://{self.host}:{self.port}"


def _parse_one(url: object) -> ServerUrl:
    if not isinstance(url, str) or not url.strip():
        raise NatsArgumentError(f"url: expected a string like nats://host:4222, found {url!r}")
    text = url.strip()
    u = urllib.parse.urlsplit(text if "://" in text else "nats://" + text)
    if u.scheme not in ("nats", "tcp", "tls"):
        raise NatsArgumentError(f"url: expected scheme nats:// or tls://, found {u.scheme!r} in {text!r}")
    try:
        port = u.port or 4222
    except ValueError as err:
        raise NatsArgumentError(f"url: expected a port number, found {text!r} ({err})") from err
    user = urllib.parse.unquote(u.username) if u.username else None
    password = urllib.parse.unquote(u.password) if u.password is not None else None
    token = None
    if user is not None and password is None:  # nats://token@host, as the NATS clients read it
        token, user = user, None
    return ServerUrl(u.hostname or "127.0.0.1", port, u.scheme == "tls", user, password, token)


def parse_servers(urls: Union[str, Sequence[str]]) -> List[ServerUrl]:
    """The server list: a URL, several separated by commas, or a list of URLs (order kept).

    >>> [str(s) for s in parse_servers("nats://a:1, tls://b")]
    ['nats://a:1', 'tls://b:4222']
    """
    if isinstance(urls, str):
        items: List[Any] = urls.split(",")
    elif isinstance(urls, (list, tuple)):
        items = list(urls)
    else:
        raise NatsArgumentError(f"servers: expected a URL or a list of URLs, found {type(urls).__name__}")
    if not items:
        raise NatsArgumentError("servers: expected at least one URL, found an empty list")
    return [_parse_one(u) for u in items]


def make_ssl_context(tls: Union[None, bool, Mapping[str, Any], ssl.SSLContext]) -> Optional[ssl.SSLContext]:
    """A client context from the ``tls`` option, or None when it is None/False.

    ``True``: the system's CAs. A mapping: ``ca_file`` (PEM CAs to trust
    instead), ``cert_file`` and ``key_file`` (a client certificate, for
    servers that verify clients), ``verify`` (default True; False accepts any
    certificate: tests only). ``server_hostname`` is read by the client.
    """
    if tls is None or tls is False:
        return None
    if isinstance(tls, ssl.SSLContext):
        return tls
    if tls is True:
        return ssl.create_default_context()
    if not isinstance(tls, Mapping):
        raise NatsArgumentError(f"tls: expected None, True, a mapping or an ssl.SSLContext, found {tls!r}")
    unknown = sorted(set(tls) - set(TLS_KEYS))
    if unknown:
        raise NatsArgumentError(f"tls: expected keys among {', '.join(TLS_KEYS)}, found {unknown}")
    for key in ("ca_file", "cert_file", "key_file"):
        path = tls.get(key)
        if path is not None and not (isinstance(path, str) and os.path.isfile(path)):
            raise NatsArgumentError(f"tls.{key}: expected a readable file, found {path!r}")
    if tls.get("key_file") and not tls.get("cert_file"):
        raise NatsArgumentError("tls.key_file: expected cert_file with it, found none")
    try:
        ctx = ssl.create_default_context(cafile=tls.get("ca_file"))
        if tls.get("cert_file"):
            ctx.load_cert_chain(tls["cert_file"], tls.get("key_file"))
    except (ssl.SSLError, OSError) as err:
        raise NatsArgumentError(f"tls: expected PEM files the ssl module loads, found an error: {err}") from err
    if tls.get("verify", True) is False:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass
class DialOptions:
    """What every connection attempt uses: credentials (over the URL's), TLS, the connection name."""

    user: Optional[str] = None
    password: Optional[str] = None
    token: Optional[str] = None
    tls: Union[None, bool, Mapping[str, Any], ssl.SSLContext] = None
    name: str = "latentwatch-tap"
    ssl_context: Optional[ssl.SSLContext] = field(default=None, init=False)
    tls_opts: Mapping[str, Any] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.ssl_context = make_ssl_context(self.tls)
        self.tls_opts = self.tls if isinstance(self.tls, Mapping) else {}


def close_quietly(*files) -> bool:
    """Close each (errors ignored); returns False, for ``return close_quietly(sock, rfile)`` on a failed attempt."""
    for f in files:
        try:
            f.close()
        except OSError:
            pass
    return False


def dial(srv: ServerUrl, opts: DialOptions, timeout: float) -> Tuple[socket.socket, Any, Dict[str, Any]]:
    """Connect to ``srv``: (socket, its reader, the server's INFO), handshake done (PONG received)."""
    try:
        sock = socket.create_connection((srv.host, srv.port), timeout=timeout)
    except OSError as err:
        raise NatsConnectionError(f"connect to {srv.host}:{srv.port}: {err}") from err
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        info = _read_info(sock, srv, timeout)
        wants_tls = srv.tls or opts.ssl_context is not None
        if wants_tls and not (info.get("tls_required") or info.get("tls_available")):
            raise NatsTlsError(f"connect to {srv}: expected a server that offers TLS, found none in its INFO")
        if wants_tls or info.get("tls_required"):
            sock = _upgrade(sock, srv, opts)
        rfile = sock.makefile("rb")
        try:
            _handshake(sock, rfile, srv, opts, timeout)
        except BaseException:
            rfile.close()
            raise
    except BaseException:
        sock.close()
        raise
    sock.settimeout(None)
    return sock, rfile, info


def _read_info(sock: socket.socket, srv: ServerUrl, timeout: float) -> Dict[str, Any]:
    # exactly the INFO line, read from the raw socket: a TLS upgrade may follow it
    line = b""
    try:
        while not line.endswith(_CRLF) and len(line) < 65536:
            peek = sock.recv(4096, socket.MSG_PEEK)
            if not peek:
                raise NatsConnectionError(f"connect to {srv}: the server closed the connection before INFO")
            end = peek.find(b"\n")
            line += sock.recv(end + 1 if end >= 0 else len(peek))
    except socket.timeout as err:
        raise NatsTimeoutError(f"connect to {srv}: expected INFO within {timeout} s, found none") from err
    if not line.startswith(b"INFO "):
        raise NatsConnectionError(f"connect to {srv}: expected INFO from the server, found {line[:60]!r}")
    info = json.loads(line[5:].decode("utf-8"))
    if not info.get("headers", False):
        raise NatsConnectionError("connect: expected a server with header support (NATS 2.2+), found none")
    return info


def _upgrade(sock: socket.socket, srv: ServerUrl, opts: DialOptions) -> socket.socket:
    ctx = opts.ssl_context or ssl.create_default_context()
    hostname = opts.tls_opts.get("server_hostname") or srv.host
    try:
        return ctx.wrap_socket(sock, server_hostname=hostname)
    except ssl.SSLCertVerificationError as err:
        where = opts.tls_opts.get("ca_file") or "the system's CAs (set tls ca_file for a private CA)"
        raise NatsTlsError(
            f"tls handshake with {srv.host}:{srv.port}: expected a certificate for {hostname!r} signed by "
            f"{where}, found: {err.verify_message or err.reason}"
        ) from err
    except (ssl.SSLError, OSError) as err:
        raise NatsTlsError(f"tls handshake with {srv.host}:{srv.port}: {err}") from err


def _handshake(sock, rfile, srv: ServerUrl, o: DialOptions, timeout: float) -> None:
    opts: Dict[str, object] = {
        "verbose": False, "pedantic": False, "tls_required": isinstance(sock, ssl.SSLSocket),
        "name": o.name, "lang": "python-latentwatch", "version": "1.1", "protocol": 1,
        "headers": True, "no_responders": True,
    }
    user = o.user if o.user is not None else srv.user
    token = o.token if o.token is not None else srv.token
    if user is not None:
        opts["user"] = user
        opts["pass"] = (o.password if o.password is not None else srv.password) or ""
    elif token is not None:
        opts["auth_token"] = token
    sock.sendall(b"CONNECT " + json.dumps(opts).encode() + _CRLF + b"PING" + _CRLF)
    deadline = time.monotonic() + timeout
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            line = rfile.readline()
        except socket.timeout as err:
            raise NatsTimeoutError(f"connect to {srv}: expected PONG within {timeout} s, found none") from err
        except ssl.SSLError as err:  # TLS 1.3: a refused client certificate arrives as an alert here
            raise NatsTlsError(f"connect to {srv}: expected PONG, found a TLS alert: {err.reason or err} "
                               "(a server with tls verify wants tls cert_file and key_file)") from err
        except OSError as err:
            raise NatsConnectionError(f"connect to {srv}: expected PONG, found {err}") from err
        if not line:
            raise NatsConnectionError(f"connect to {srv}: the server closed the connection")
        if line.startswith(b"PONG"):
            return
        if line.startswith(b"-ERR"):
            msg = line[4:].strip().decode("utf-8", "replace").strip("'")
            raise NatsServerError(f"connect to {srv}: expected PONG, found -ERR {msg!r}")
        if line.startswith(b"PING"):
            sock.sendall(b"PONG\r\n")
        # INFO updates and +OK are ignored
