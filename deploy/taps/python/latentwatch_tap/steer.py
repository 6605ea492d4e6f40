"""Steering protocol v1 (``docs/steering.md``): commands, acks, verdicts, and the arithmetic.

Parsing is standard library only and as strict as ``src/core/steer/parse.ts``: a
malformed command raises :class:`SteerProtocolError` naming the field, what
was expected and what was found. :func:`apply_op` changes rows of a torch
tensor ``[tokens, d_model]`` exactly as the table in ``docs/steering.md``
says (dot products and updates in f64, rounded once to f32, like the
TypeScript reference).

Example::

    import torch
    from latentwatch_tap.steer import parse_command, apply_op

    cmd = parse_command(payload, model="gpt2", hook="blocks.6.hook_resid_post", d_model=768)
    x = hidden_rows.float()          # [tokens, 768]
    changed = apply_op(cmd.op, x)    # bool per row; x changed in place
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

__all__ = [
    "STEER_VERSION",
    "SteerProtocolError",
    "LatentRef",
    "LatentRead",
    "SteerOp",
    "SteerCommand",
    "GateVerdict",
    "vector_from_base64",
    "vector_to_base64",
    "parse_command",
    "parse_verdict",
    "is_expired",
    "encode_ack",
    "command_to_wire",
    "read_latent",
    "apply_op",
]

STEER_VERSION = 1
MAX_ID = 256
_MAX_SAFE = 2**53 - 1
OP_KINDS = ("clamp", "ablate", "add", "cap", "abort")
VERDICTS = ("continue", "steer", "abort", "error")
ACK_STATUSES = ("applied", "rejected", "expired", "not_applied")


class SteerProtocolError(TypeError):
    """A command or verdict that does not follow the protocol.

    ``steering (command c1, request r1): d_model: expected 768 (the hook's
    width), found 512``; ``field``, ``expected``, ``found``, ``command_id``,
    ``request_id`` as attributes. ``reason`` is the part after the
    location, which is what a ``rejected`` acknowledgement carries.
    """

    def __init__(
        self,
        field: str,
        expected: str,
        found: str,
        command_id: Optional[str] = None,
        request_id: Optional[str] = None,
    ):
        at = ", ".join(
            s for s in (
                f"command {command_id}" if command_id is not None else "",
                f"request {request_id}" if request_id is not None else "",
            ) if s
        )
        self.reason = f"{field}: expected {expected}, found {found}"
        super().__init__(f"steering{f' ({at})' if at else ''}: {self.reason}")
        self.field = field
        self.expected = expected
        self.found = found
        self.command_id = command_id
        self.request_id = request_id


@dataclass(frozen=True)
class LatentRef:
    """A latent of an SAE loaded by the sidecar (for logs)."""

    sae: str
    index: int


@dataclass
class LatentRead:
    """How a latent is read from ``x``: ``pre = w·x + b``; ``a = pre if pre > threshold else 0``."""

    w: Tuple[float, ...]
    b: float
    threshold: float


@dataclass
class SteerOp:
    """One operation. ``kind`` is ``clamp``, ``ablate``, ``add``, ``cap`` or ``abort``.

    Fields by kind: clamp ``value, latent, read, direction``; ablate
    ``latent, read, direction``; add ``scale, vector`` (``latent``
    optional); cap ``max, direction`` (``latent`` optional); abort
    ``reason`` (optional). Vectors are tuples of ``d_model`` floats.
    """

    kind: str
    value: Optional[float] = None
    scale: Optional[float] = None
    max: Optional[float] = None
    vector: Optional[Tuple[float, ...]] = None
    direction: Optional[Tuple[float, ...]] = None
    read: Optional[LatentRead] = None
    latent: Optional[LatentRef] = None
    reason: Optional[str] = None
    _tensors: Dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    def tensor(self, name: str, device: Any):
        """The vector ``name`` (``vector``, ``direction``, ``w``) as an f64 tensor on ``device``, cached."""
        import torch

        key = (name, str(device))
        t = self._tensors.get(key)
        if t is None:
            values = self.read.w if name == "w" else getattr(self, name)  # type: ignore[union-attr]
            t = torch.tensor(values, dtype=torch.float64, device=device)
            self._tensors[key] = t
        return t


@dataclass
class SteerCommand:
    """A parsed, valid command (field names as in the JSON, snake_case)."""

    id: str
    request_id: str
    model: str
    hook: str
    d_model: int
    from_position: int
    until_position: Optional[int]
    issued_at_ms: int
    expires_at_ms: int
    op: SteerOp
    monitor: Optional[str] = None
    rule: Optional[str] = None
    alert_id: Optional[str] = None
    raw: Optional[Dict[str, Any]] = field(default=None, repr=False)

    def covers(self, position: int) -> bool:
        """True when the operation applies to a token at ``position``."""
        return position >= self.from_position and (
            self.until_position is None or position < self.until_position
        )


@dataclass
class GateVerdict:
    """The sidecar's answer to a gated frame."""

    request_id: str
    seq: int
    verdict: str
    commands: List[SteerCommand]
    reason: Optional[str] = None


# ---------------------------------------------------------------------------
# helpers


def _type_of(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (list, tuple)):
        return "an array"
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, str):
        return f"the string {_show(v)}"
    if isinstance(v, (int, float)):
        return "a number"
    return type(v).__name__


def _show(v: object) -> str:
    s = v if isinstance(v, str) else json.dumps(v, default=str)
    return json.dumps(s[:57] + "..." if len(s) > 60 else s)


def _num(v: object) -> str:
    return repr(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else _type_of(v)


class _Where:
    def __init__(self, command_id: Optional[str] = None, request_id: Optional[str] = None):
        self.command_id = command_id
        self.request_id = request_id

    def error(self, field: str, expected: str, found: str) -> SteerProtocolError:
        return SteerProtocolError(field, expected, found, self.command_id, self.request_id)


def _as_object(v: object, field: str, what: str, where: _Where) -> Dict[str, Any]:
    if not isinstance(v, dict):
        raise where.error(field, what, _type_of(v))
    return v


def _name(o: Mapping[str, Any], key: str, where: _Where, prefix: str = "") -> str:
    v = o.get(key)
    if not isinstance(v, str) or len(v) == 0 or len(v) > MAX_ID:
        raise where.error(prefix + key, f"a non-empty string of at most {MAX_ID} characters", _type_of(v))
    return v


def _optional_name(o: Mapping[str, Any], key: str, where: _Where) -> Optional[str]:
    return None if o.get(key) is None and key not in o else _name(o, key, where)


def _as_int(v: object) -> Optional[int]:
    """An integral JSON number (JSON ``8.0`` counts, as in JavaScript), else None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v if abs(v) <= _MAX_SAFE else None
    if isinstance(v, float) and math.isfinite(v) and v.is_integer() and abs(v) <= _MAX_SAFE:
        return int(v)
    return None


def _int(o: Mapping[str, Any], key: str, minimum: int, where: _Where, prefix: str = "") -> int:
    v = o.get(key)
    n = _as_int(v)
    if n is None or n < minimum:
        raise where.error(prefix + key, f"an integer ≥ {minimum}", _num(v))
    return n


def _finite(o: Mapping[str, Any], key: str, where: _Where, prefix: str = "op.") -> float:
    v = o.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise where.error(prefix + key, "a finite number", _num(v))
    return float(v)


def vector_to_base64(values: Sequence[float]) -> str:
    """Base64 (padded) of ``values`` as little-endian f32.

    >>> vector_to_base64([1.0])
    'AACAPw=='
    """
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")


def vector_from_base64(text: object, n: int, field: str = "vector", where: Optional[_Where] = None) -> Tuple[float, ...]:
    """Decode base64 of exactly ``n`` finite little-endian f32 values.

    >>> vector_from_base64("AACAPw==", 1)
    (1.0,)
    """
    where = where or _Where()
    if not isinstance(text, str):
        raise where.error(field, f"a base64 string of {n} f32 values", _type_of(text))
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise where.error(field, "valid base64", _show(text)) from None
    if len(raw) != n * 4:
        raise where.error(field, f"{n} f32 values ({n * 4} bytes, d_model {n})", f"{len(raw)} bytes")
    values = struct.unpack(f"<{n}f", raw)
    for i, v in enumerate(values):
        if not math.isfinite(v):
            raise where.error(field, "finite values", f"{v} at index {i}")
    return values


def _latent(o: Mapping[str, Any], where: _Where, required: bool) -> Optional[LatentRef]:
    if "latent" not in o and not required:
        return None
    lat = _as_object(o.get("latent"), "op.latent", "an object {sae, index}", where)
    return LatentRef(_name(lat, "sae", where, "op.latent."), _int(lat, "index", 0, where, "op.latent."))


def _parse_op(raw: object, d_model: int, where: _Where) -> SteerOp:
    o = _as_object(raw, "op", "an object with a kind", where)
    kind = o.get("kind")

    def vec(key: str) -> Tuple[float, ...]:
        return vector_from_base64(o.get(key), d_model, f"op.{key}", where)

    if kind in ("clamp", "ablate"):
        r = _as_object(o.get("read"), "op.read", "an object {w, b, threshold}", where)
        read = LatentRead(
            vector_from_base64(r.get("w"), d_model, "op.read.w", where),
            _finite(r, "b", where, "op.read."),
            _finite(r, "threshold", where, "op.read."),
        )
        latent = _latent(o, where, True)
        direction = vec("direction")
        if kind == "clamp":
            return SteerOp("clamp", value=_finite(o, "value", where), latent=latent, read=read, direction=direction)
        return SteerOp("ablate", latent=latent, read=read, direction=direction)
    if kind == "add":
        latent = _latent(o, where, False)
        return SteerOp("add", scale=_finite(o, "scale", where), vector=vec("vector"), latent=latent)
    if kind == "cap":
        latent = _latent(o, where, False)
        direction = vec("direction")
        norm = math.sqrt(sum(d * d for d in direction))
        if abs(norm - 1) > 1e-3:
            raise where.error("op.direction", "a unit vector (‖direction‖ = 1)", f"‖direction‖ = {norm}")
        return SteerOp("cap", max=_finite(o, "max", where), direction=direction, latent=latent)
    if kind == "abort":
        reason = o.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise where.error("op.reason", "a string", _type_of(reason))
        return SteerOp("abort", reason=reason)
    raise where.error("op.kind", f"one of {', '.join(OP_KINDS)}", _type_of(kind))


def _parse_json(data: Union[bytes, bytearray, str], what: str) -> Dict[str, Any]:
    try:
        text = data if isinstance(data, str) else bytes(data).decode("utf-8")
        value = json.loads(text)
    except (UnicodeDecodeError, ValueError) as err:
        raise SteerProtocolError("payload", f"a UTF-8 JSON {what}", str(err)) from None
    return _as_object(value, "payload", what, _Where())


def parse_command(
    raw: Union[bytes, bytearray, str, Mapping[str, Any]],
    model: Optional[str] = None,
    hook: Optional[str] = None,
    d_model: Optional[int] = None,
) -> SteerCommand:
    """Parse and check one command (payload bytes/str, or a parsed JSON object).

    ``model``, ``hook``, ``d_model``: what the tap expects (a mismatch is a
    rejection). Expiry is not checked here (see :func:`is_expired`).
    Raises :class:`SteerProtocolError`.

    >>> parse_command(b'{"v": 2}').reason
    Traceback (most recent call last):
    ...
    latentwatch_tap.steer.SteerProtocolError: steering: v: expected 1, found 2
    """
    o = _parse_json(raw, "steering command") if isinstance(raw, (bytes, bytearray, str)) else dict(raw)
    where = _Where()
    if isinstance(o.get("id"), str) and 0 < len(o["id"]) <= MAX_ID:
        where.command_id = o["id"]
    if isinstance(o.get("request_id"), str) and len(o["request_id"]) <= MAX_ID:
        where.request_id = o["request_id"]
    if _as_int(o.get("v")) != STEER_VERSION:
        raise where.error("v", str(STEER_VERSION), _num(o.get("v")))
    cid = _name(o, "id", where)
    request_id = _name(o, "request_id", where)
    cmd_model = _name(o, "model", where)
    cmd_hook = _name(o, "hook", where)
    dm = _int(o, "d_model", 1, where)
    if model is not None and cmd_model != model:
        raise where.error("model", _show(model), _show(cmd_model))
    if hook is not None and cmd_hook != hook:
        raise where.error("hook", _show(hook), _show(cmd_hook))
    if d_model is not None and dm != d_model:
        raise where.error("d_model", f"{d_model} (the hook's width)", str(dm))
    from_position = _int(o, "from_position", 0, where)
    until_position = None
    if o.get("until_position") is not None:
        until_position = _int(o, "until_position", from_position + 1, where)
    issued = _int(o, "issued_at_ms", 0, where)
    expires = _int(o, "expires_at_ms", issued, where)
    op = _parse_op(o.get("op"), dm, where)
    return SteerCommand(
        id=cid,
        request_id=request_id,
        model=cmd_model,
        hook=cmd_hook,
        d_model=dm,
        from_position=from_position,
        until_position=until_position,
        issued_at_ms=issued,
        expires_at_ms=expires,
        op=op,
        monitor=_optional_name(o, "monitor", where),
        rule=_optional_name(o, "rule", where),
        alert_id=_optional_name(o, "alert_id", where),
        raw=o,
    )


def is_expired(cmd: SteerCommand, now_ms: float) -> bool:
    """True when a command received at ``now_ms`` (Unix ms) is past ``expires_at_ms``."""
    return now_ms > cmd.expires_at_ms


def parse_verdict(
    data: Union[bytes, bytearray, str],
    model: Optional[str] = None,
    hook: Optional[str] = None,
    d_model: Optional[int] = None,
) -> Tuple[GateVerdict, List[Tuple[Dict[str, Any], SteerProtocolError]]]:
    """Parse a gate verdict: ``(verdict, bad_commands)``.

    The verdict's own fields are checked strictly (raises
    :class:`SteerProtocolError`). Each command is checked like
    :func:`parse_command`; a bad one does not spoil the others: it comes
    back in ``bad_commands`` with its error, so the tap can reject it.
    """
    o = _parse_json(data, "gate verdict")
    where = _Where()
    if _as_int(o.get("v")) != STEER_VERSION:
        raise where.error("v", str(STEER_VERSION), _num(o.get("v")))
    request_id = _name(o, "request_id", where)
    where.request_id = request_id
    seq = _int(o, "seq", 0, where)
    verdict = o.get("verdict")
    if verdict not in VERDICTS:
        raise where.error("verdict", f"one of {', '.join(VERDICTS)}", _type_of(verdict))
    raw_cmds = o.get("commands", [] if verdict in ("continue", "error") else None)
    if not isinstance(raw_cmds, list):
        raise where.error("commands", "an array", _type_of(raw_cmds))
    commands: List[SteerCommand] = []
    bad: List[Tuple[Dict[str, Any], SteerProtocolError]] = []
    for i, c in enumerate(raw_cmds):
        if not isinstance(c, dict):
            bad.append(({}, where.error(f"commands[{i}]", "a command object", _type_of(c))))
            continue
        try:
            commands.append(parse_command(c, model, hook, d_model))
        except SteerProtocolError as err:
            bad.append((c, err))
    reason = o.get("reason") if isinstance(o.get("reason"), str) else None
    return GateVerdict(request_id, seq, verdict, commands, reason), bad


def encode_ack(
    command_id: str,
    request_id: str,
    status: str,
    position: Optional[int] = None,
    reason: Optional[str] = None,
    tap: Optional[str] = None,
) -> bytes:
    """The payload of an acknowledgement.

    >>> encode_ack("c1", "r1", "applied", position=8)
    b'{"v":1,"id":"c1","request_id":"r1","status":"applied","position":8}'
    """
    if status not in ACK_STATUSES:
        raise ValueError(f"ack status: expected one of {', '.join(ACK_STATUSES)}, found {status!r}")
    o: Dict[str, Any] = {"v": STEER_VERSION, "id": command_id, "request_id": request_id, "status": status}
    if position is not None:
        o["position"] = position
    if reason is not None:
        o["reason"] = reason
    if tap is not None:
        o["tap"] = tap
    return json.dumps(o, separators=(",", ":")).encode("utf-8")


def command_to_wire(
    command_id: str,
    request_id: str,
    model: str,
    hook: str,
    d_model: int,
    from_position: int,
    op: Mapping[str, Any],
    until_position: Optional[int] = None,
    issued_at_ms: int = 0,
    expires_at_ms: int = 2**52,
    **extra: Any,
) -> Dict[str, Any]:
    """A command as its JSON object (for tests and for playing the sidecar); ``op`` is given as on the wire."""
    o: Dict[str, Any] = {
        "v": STEER_VERSION,
        "id": command_id,
        "request_id": request_id,
        "model": model,
        "hook": hook,
        "d_model": d_model,
        "from_position": from_position,
        "until_position": until_position,
        "issued_at_ms": issued_at_ms,
        "expires_at_ms": expires_at_ms,
        "op": dict(op),
    }
    o.update(extra)
    return o


# ---------------------------------------------------------------------------
# Arithmetic (torch)


def read_latent(read: LatentRead, x, op: Optional[SteerOp] = None):
    """The latent's value per row of ``x`` (``[N, D]``), as f64: ``pre = w·x + b``, ``pre`` above the threshold else 0."""
    import torch

    w = op.tensor("w", x.device) if op is not None else torch.tensor(read.w, dtype=torch.float64, device=x.device)
    pre = x.to(torch.float64) @ w + read.b
    return torch.where(pre > read.threshold, pre, torch.zeros_like(pre))


def apply_op(op: SteerOp, x) -> "Any":
    """Apply ``op`` to every row of ``x`` (f32 tensor ``[N, D]``) in place; returns a bool tensor ``[N]`` of rows changed.

    Per ``docs/steering.md`` (``a`` the latent read-out, see :func:`read_latent`):

    - ``clamp``: ``x ← x + (value − a)·direction``
    - ``ablate``: ``x ← x − a·direction``
    - ``add``: ``x ← x + scale·vector``
    - ``cap``: ``p = direction·x``; where ``p > max``: ``x ← x − (p − max)·direction``
    - ``abort``: nothing (the tap stops the request)

    The coefficient and the update are computed in f64 and rounded to f32
    once, like ``applyOp`` in ``src/core/steer/arithmetic.ts``. A row whose
    coefficient is 0 is unchanged.

    >>> import torch
    >>> x = torch.tensor([[3.0, 0.0]])
    >>> apply_op(SteerOp("cap", max=1.0, direction=(1.0, 0.0)), x).tolist(), x.tolist()
    ([True], [[1.0, 0.0]])
    """
    import torch

    n = x.shape[0]
    if op.kind == "abort" or n == 0:
        return torch.zeros(n, dtype=torch.bool, device=x.device)
    x64 = x.to(torch.float64)
    if op.kind == "clamp":
        coef = op.value - read_latent(op.read, x64, op)  # type: ignore[operator,arg-type]
        d = op.tensor("direction", x.device)
    elif op.kind == "ablate":
        coef = -read_latent(op.read, x64, op)  # type: ignore[arg-type]
        d = op.tensor("direction", x.device)
    elif op.kind == "add":
        coef = torch.full((n,), float(op.scale), dtype=torch.float64, device=x.device)  # type: ignore[arg-type]
        d = op.tensor("vector", x.device)
    elif op.kind == "cap":
        d = op.tensor("direction", x.device)
        p = x64 @ d
        coef = torch.where(p > op.max, op.max - p, torch.zeros_like(p))  # type: ignore[operator]
    else:  # pragma: no cover - parse_command admits no other kind
        raise ValueError(f"op.kind: expected one of {', '.join(OP_KINDS)}, found {op.kind!r}")
    changed = coef != 0
    if bool(changed.any()):
        new = (x64 + coef[:, None] * d[None, :]).to(x.dtype)
        x[changed] = new[changed]
    return changed
