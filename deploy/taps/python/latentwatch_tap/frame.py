"""Frame format v1 (``docs/frame-format.md``): subjects, headers, payloads.

The Python counterpart of ``src/core/frame/encode.ts`` (encoder side) and of the
splitting in ``src/tap/tap.ts``. Standard library only; a torch tensor is
accepted wherever values are (encoded with torch when it is one).

Example::

    from latentwatch_tap.frame import encode_frame, tap_subject, partition_of

    headers, payload = encode_frame(
        model="gpt2", hook="blocks.6.hook_resid_post", request_id="req-42",
        position=7, seq=0, dtype="bf16", values=[1, -2, 0.5, 3, -0.25, 0],
        tokens=2, d_model=3, token_ids=[318, 257], token_text=["Hello", " w\\u00f6rld"],
        phase="prefill",
    )
    payload.hex(" ")  # '80 3f 00 c0 00 3f 40 40 80 be 00 00'
    tap_subject("gpt2", "blocks.6.hook_resid_post", partition_of("req-42", 1))
    # 'latentwatch.tap.v1.gpt2.blocks_6_hook_resid_post.0'
"""

from __future__ import annotations

import array
import json
import math
import re
import struct
import sys
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

__all__ = [
    "FRAME_VERSION",
    "HEADER",
    "BYTES_PER_ELEMENT",
    "FrameError",
    "FrameTooLargeError",
    "subject_token",
    "tap_subject",
    "tap_subject_filter",
    "steer_subject",
    "steer_subject_filter",
    "steer_ack_subject",
    "fnv1a32",
    "partition_of",
    "header_wire_bytes",
    "ascii_json",
    "frame_headers",
    "encode_payload",
    "encode_frame",
    "split_frames",
    "f32_to_bf16_bits",
    "f32_bits",
]

FRAME_VERSION = 1
MAX_NAME_LENGTH = 256
BYTES_PER_ELEMENT = {"f32": 4, "f16": 2, "bf16": 2}
META_PREFIX = "Lw-Meta-"

HEADER = {
    "version": "Lw-Version",
    "model": "Lw-Model",
    "hook": "Lw-Hook",
    "request_id": "Lw-Request-Id",
    "position": "Lw-Pos",
    "seq": "Lw-Seq",
    "dtype": "Lw-Dtype",
    "shape": "Lw-Shape",
    "token_ids": "Lw-Token-Ids",
    "token_text": "Lw-Token-Text",
    "phase": "Lw-Phase",
    "tenant": "Lw-Tenant",
    "end": "Lw-End",
    "traceparent": "traceparent",
    "tracestate": "tracestate",
}

_META_KEY = re.compile(r"^[a-z0-9_-]+$")
_NOT_TOKEN = re.compile(r"[^A-Za-z0-9_-]")
_CONTROL = re.compile("[\u0000-\u001f\u007f-\u009f\ud800-\udfff]")
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_NAME_EXPECTED = (
    f"a non-empty printable name of at most {MAX_NAME_LENGTH} characters, no surrounding whitespace"
)
_MAX_SAFE = 2**53 - 1


class FrameError(TypeError):
    """Metadata or values that break frame format v1.

    The message names the header (or ``payload``/argument), what was
    expected and what was found: ``frame (request r1): Lw-Pos: expected a
    non-negative integer, found -1``.
    """

    def __init__(self, field: str, expected: str, found: str, request_id: Optional[str] = None):
        where = "frame" if request_id is None else f"frame (request {request_id})"
        super().__init__(f"{where}: {field}: expected {expected}, found {found}")
        self.field = field
        self.expected = expected
        self.found = found
        self.request_id = request_id


class FrameTooLargeError(ValueError):
    """Even one token (headers plus ``D * bytes(dtype)``) does not fit in ``max_payload``."""

    def __init__(self, request_id: str, position: int, header_bytes: int, payload_bytes: int, max_payload: int):
        super().__init__(
            f"tap (request {request_id}): token at position {position}: expected a frame of at most "
            f"{max_payload} bytes (the server's max_payload), found {header_bytes + payload_bytes} bytes "
            f"for one token (headers {header_bytes} + payload {payload_bytes}); raise max_payload, "
            f"use f16/bf16, or shorten the token text"
        )
        self.request_id = request_id
        self.position = position
        self.header_bytes = header_bytes
        self.payload_bytes = payload_bytes
        self.max_payload = max_payload


def _show(v: object) -> str:
    s = v if isinstance(v, str) else repr(v)
    cut = s[:80] + "…" if len(s) > 80 else s
    return json.dumps(cut)


# ---------------------------------------------------------------------------
# Names, subjects, partitions


def _name_problem(value: str) -> Optional[str]:
    if len(value) == 0:
        return "empty"
    if _CONTROL.search(value):
        return "contains a control character"
    if value != value.strip():
        return "has leading or trailing whitespace"
    if len(value) > MAX_NAME_LENGTH:
        return f"{len(value)} characters"
    return None


def _check_name(field: str, value: object, request_id: Optional[str] = None) -> str:
    if not isinstance(value, str):
        raise FrameError(field, _NAME_EXPECTED, type(value).__name__, request_id)
    problem = _name_problem(value)
    if problem is not None:
        raise FrameError(field, _NAME_EXPECTED, f"{_show(value)} ({problem})", request_id)
    return value


def _check_count(field: str, value: object, request_id: Optional[str], minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or value > _MAX_SAFE:
        what = "a non-negative integer" if minimum == 0 else f"an integer >= {minimum}"
        raise FrameError(field, what, repr(value), request_id)
    return value


def subject_token(name: str, field: str = "name") -> str:
    """Make ``name`` one subject token: every code point outside ``[A-Za-z0-9_-]`` becomes ``_``.

    >>> subject_token("google/gemma-2-2b")
    'google_gemma-2-2b'
    """
    if not isinstance(name, str) or not name:
        raise FrameError(field, "a non-empty name", _show(name))
    return _NOT_TOKEN.sub("_", name)


def _partition_str(partition: int) -> str:
    if isinstance(partition, bool) or not isinstance(partition, int) or partition < 0:
        raise ValueError(f"partition: expected a non-negative integer, found {partition!r}")
    return str(partition)


def tap_subject(model: str, hook: str, partition: int = 0) -> str:
    """``latentwatch.tap.v1.<model>.<hook>.<partition>``.

    >>> tap_subject("google/gemma-2-2b", "blocks.6.hook_resid_post", 3)
    'latentwatch.tap.v1.google_gemma-2-2b.blocks_6_hook_resid_post.3'
    """
    p = _partition_str(partition)
    return f"latentwatch.tap.v1.{subject_token(model, 'model')}.{subject_token(hook, 'hook')}.{p}"


def tap_subject_filter(model: str, hook: str) -> str:
    """``latentwatch.tap.v1.<model>.<hook>.*`` (every partition)."""
    return f"latentwatch.tap.v1.{subject_token(model, 'model')}.{subject_token(hook, 'hook')}.*"


def steer_subject(model: str, hook: str, partition: int = 0) -> str:
    """``latentwatch.steer.v1.<model>.<hook>.<partition>`` (commands; the sidecar publishes)."""
    p = _partition_str(partition)
    return f"latentwatch.steer.v1.{subject_token(model, 'model')}.{subject_token(hook, 'hook')}.{p}"


def steer_subject_filter(model: str, hook: str) -> str:
    """``latentwatch.steer.v1.<model>.<hook>.*``: what a tap subscribes to."""
    return f"latentwatch.steer.v1.{subject_token(model, 'model')}.{subject_token(hook, 'hook')}.*"


def steer_ack_subject(model: str, hook: str) -> str:
    """``latentwatch.steer-ack.v1.<model>.<hook>``: where a tap acknowledges commands.

    >>> steer_ack_subject("gpt2", "blocks.6.hook_resid_post")
    'latentwatch.steer-ack.v1.gpt2.blocks_6_hook_resid_post'
    """
    return f"latentwatch.steer-ack.v1.{subject_token(model, 'model')}.{subject_token(hook, 'hook')}"


def fnv1a32(data: bytes) -> int:
    """FNV-1a, 32 bit.

    >>> hex(fnv1a32(b"a"))
    '0xe40c292c'
    """
    h = 0x811C9DC5
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def partition_of(request_id: str, partitions: int) -> int:
    """The partition of a request: FNV-1a-32 of its UTF-8 bytes, modulo ``partitions``.

    >>> partition_of("a", 1000)
    220
    """
    if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
        raise ValueError(f"partitions: expected a positive integer, found {partitions!r}")
    if not isinstance(request_id, str):
        raise TypeError(f"request id: expected a string, found {type(request_id).__name__}")
    return fnv1a32(request_id.encode("utf-8")) % partitions


# ---------------------------------------------------------------------------
# Headers


def header_wire_bytes(headers: Mapping[str, str]) -> int:
    """Bytes of the header block as NATS writes it (0 for no headers).

    >>> header_wire_bytes({"Lw-Version": "1"})
    27
    """
    if not headers:
        return 0
    return 12 + sum(len(k.encode("utf-8")) + len(v.encode("utf-8")) + 4 for k, v in headers.items())


def ascii_json(strings: Sequence[str]) -> str:
    """JSON array text with everything outside printable ASCII as ``\\uXXXX`` (as frame.ts writes it).

    >>> ascii_json(["Hello", " w\\u00f6rld"])
    '["Hello"," w\\\\u00f6rld"]'
    """
    text = json.dumps(list(strings), ensure_ascii=True, separators=(",", ":"))
    return text.replace("\u007f", "\\u007f")


def _valid_traceparent(v: str) -> bool:
    m = _TRACEPARENT.match(v)
    if not m:
        return False
    version, trace_id, parent_id, _flags, rest = m.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return False
    return set(trace_id) != {"0"} and set(parent_id) != {"0"}


def frame_headers(
    model: str,
    hook: str,
    request_id: str,
    position: int,
    seq: int,
    dtype: str,
    tokens: int,
    d_model: int,
    token_ids: Optional[Sequence[int]] = None,
    token_text: Optional[Sequence[str]] = None,
    phase: Optional[str] = None,
    tenant: Optional[str] = None,
    meta: Optional[Mapping[str, str]] = None,
    end: bool = False,
    traceparent: Optional[str] = None,
    tracestate: Optional[str] = None,
) -> Dict[str, str]:
    """The headers of one frame, in the order of ``docs/frame-format.md``; validates every field.

    >>> frame_headers("gpt2", "blocks.6.hook_resid_post", "r1", 0, 0, "f32", 2, 768)["Lw-Shape"]
    '2,768'
    """
    _check_name(HEADER["request_id"], request_id)
    rid = request_id
    _check_name(HEADER["model"], model, rid)
    _check_name(HEADER["hook"], hook, rid)
    _check_count(HEADER["position"], position, rid)
    _check_count(HEADER["seq"], seq, rid)
    if dtype not in BYTES_PER_ELEMENT:
        raise FrameError(HEADER["dtype"], "one of f32, f16, bf16", _show(dtype), rid)
    _check_count("tokens", tokens, rid)
    _check_count("d_model", d_model, rid, 1)
    h: Dict[str, str] = {
        HEADER["version"]: str(FRAME_VERSION),
        HEADER["model"]: model,
        HEADER["hook"]: hook,
        HEADER["request_id"]: request_id,
        HEADER["position"]: str(position),
        HEADER["seq"]: str(seq),
        HEADER["dtype"]: dtype,
        HEADER["shape"]: f"{tokens},{d_model}",
    }
    if token_ids is not None:
        ids = list(token_ids)
        if len(ids) != tokens:
            raise FrameError(HEADER["token_ids"], f"{tokens} token ids (one per token)", str(len(ids)), rid)
        for i in ids:
            _check_count(HEADER["token_ids"], i, rid)
        if tokens > 0:
            h[HEADER["token_ids"]] = ",".join(str(i) for i in ids)
    if token_text is not None:
        texts = list(token_text)
        if len(texts) != tokens:
            raise FrameError(
                HEADER["token_text"], f"{tokens} token strings (one per token)", str(len(texts)), rid
            )
        for t in texts:
            if not isinstance(t, str):
                raise FrameError(HEADER["token_text"], "strings", type(t).__name__, rid)
        if tokens > 0:
            h[HEADER["token_text"]] = ascii_json(texts)
    if phase is not None:
        if phase not in ("prefill", "decode"):
            raise FrameError(HEADER["phase"], "prefill or decode", _show(phase), rid)
        h[HEADER["phase"]] = phase
    if tenant is not None:
        h[HEADER["tenant"]] = _check_name(HEADER["tenant"], tenant, rid)
    for key, value in (meta or {}).items():
        field = META_PREFIX + str(key)
        if not isinstance(key, str) or not _META_KEY.match(key):
            raise FrameError(field, "a metadata key of [a-z0-9_-]+", _show(key), rid)
        h[field] = _check_name(field, value, rid)
    if end:
        h[HEADER["end"]] = "1"
    if traceparent is not None:
        if not isinstance(traceparent, str) or not _valid_traceparent(traceparent):
            raise FrameError(
                HEADER["traceparent"], "a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)", _show(traceparent), rid
            )
        h[HEADER["traceparent"]] = traceparent
        if tracestate is not None:
            if "\r" in tracestate or "\n" in tracestate:
                raise FrameError(HEADER["tracestate"], "no CR or LF", _show(tracestate), rid)
            h[HEADER["tracestate"]] = tracestate
    return h


# ---------------------------------------------------------------------------
# Payload


def f32_bits(value: float) -> int:
    """The binary32 bit pattern of ``value`` rounded to f32.

    >>> hex(f32_bits(0.1))
    '0x3dcccccd'
    """
    return struct.unpack("<I", struct.pack("<f", value))[0]


def f32_to_bf16_bits(value: float) -> int:
    """Round an f32 value to bfloat16 bits, nearest even (NaN stays a quiet NaN).

    ``bits16 = (bits32 + 0x7fff + ((bits32 >> 16) & 1)) >> 16``

    >>> hex(f32_to_bf16_bits(0.1))
    '0x3dcd'
    """
    bits = f32_bits(value)
    if (bits & 0x7F800000) == 0x7F800000 and (bits & 0x007FFFFF) != 0:
        return (bits >> 16) | 0x0040
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) & 0xFFFF


def _is_torch_tensor(v: object) -> bool:
    mod = type(v).__module__
    return mod.startswith("torch") and hasattr(v, "detach")


def _flat_floats(values: object) -> List[float]:
    if _is_torch_tensor(values):
        return [float(x) for x in values.detach().reshape(-1).to("cpu").tolist()]  # type: ignore[attr-defined]
    out: List[float] = []

    def walk(v: object) -> None:
        if isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        else:
            out.append(float(v))  # type: ignore[arg-type]

    if isinstance(values, (array.array, memoryview)):
        return [float(x) for x in values]
    walk(values)
    return out


def _non_finite(value: float, index: int, d_model: int, position: int, note: str, rid: Optional[str]) -> FrameError:
    token = index // d_model
    return FrameError(
        "payload",
        "finite values",
        f"{value}{note} at token {token} (position {position + token}), element {index % d_model}",
        rid,
    )


def _encode_torch(t, dtype: str, d_model: int, position: int, rid: Optional[str]) -> bytes:
    import torch  # only reached with a tensor, so torch is there

    x = t.detach().reshape(-1).to(device="cpu", dtype=torch.float32).contiguous()
    bad = (~torch.isfinite(x)).nonzero()
    if bad.numel():
        i = int(bad[0, 0])
        raise _non_finite(float(x[i]), i, d_model, position, "", rid)
    if dtype == "f32":
        y = x
    elif dtype == "f16":
        y = x.to(torch.float16)
        bad = (~torch.isfinite(y)).nonzero()
        if bad.numel():
            i = int(bad[0, 0])
            raise _non_finite(float(x[i]), i, d_model, position, " (overflows f16 to ±Infinity)", rid)
    else:
        y = x.to(torch.bfloat16)
        bad = (~torch.isfinite(y.to(torch.float32))).nonzero()
        if bad.numel():
            i = int(bad[0, 0])
            raise _non_finite(float(x[i]), i, d_model, position, " (overflows bf16 to ±Infinity)", rid)
        y = y.view(torch.int16)
    try:
        data = y.numpy().tobytes()
    except (RuntimeError, TypeError, ImportError):  # torch built without numpy
        fmt = {"f32": "f", "f16": "e", "bf16": "h"}[dtype]
        data = struct.pack(f"<{y.numel()}{fmt}", *y.tolist())
        return data
    if sys.byteorder != "little":  # pragma: no cover
        a = array.array("f" if dtype == "f32" else "H", data)
        a.byteswap()
        data = a.tobytes()
    return data


def encode_payload(
    values: object, dtype: str, d_model: int = 1, position: int = 0, request_id: Optional[str] = None
) -> bytes:
    """Little-endian bytes of ``values`` (a flat or nested sequence of floats, or a torch tensor) in ``dtype``.

    f16 and bf16 round to nearest, ties to even. Every value must be finite
    after rounding (:class:`FrameError` otherwise, naming token, position and
    element; ``d_model``/``position`` only serve that message).

    >>> encode_payload([1.0, -2.0], "bf16").hex(" ")
    '80 3f 00 c0'
    """
    if dtype not in BYTES_PER_ELEMENT:
        raise FrameError(HEADER["dtype"], "one of f32, f16, bf16", _show(dtype), request_id)
    if _is_torch_tensor(values):
        return _encode_torch(values, dtype, d_model, position, request_id)
    xs = _flat_floats(values)
    for i, v in enumerate(xs):
        if not math.isfinite(v):
            raise _non_finite(v, i, d_model, position, "", request_id)
    if dtype == "f32":
        try:
            return struct.pack(f"<{len(xs)}f", *xs)
        except OverflowError:
            for i, v in enumerate(xs):
                if abs(v) > 3.4028234663852886e38:
                    raise _non_finite(v, i, d_model, position, " (overflows f32 to ±Infinity)", request_id)
            raise
    if dtype == "f16":
        out = bytearray()
        for i, v in enumerate(xs):
            v32 = struct.unpack("<f", struct.pack("<f", v))[0]
            try:
                out += struct.pack("<e", v32)
            except OverflowError:
                raise _non_finite(v, i, d_model, position, " (overflows f16 to ±Infinity)", request_id) from None
        return bytes(out)
    out = bytearray()
    for i, v in enumerate(xs):
        b = f32_to_bf16_bits(v)
        if (b & 0x7F80) == 0x7F80:
            raise _non_finite(v, i, d_model, position, " (overflows bf16 to ±Infinity)", request_id)
        out += struct.pack("<H", b)
    return bytes(out)


def _count_values(values: object) -> int:
    if _is_torch_tensor(values):
        return int(values.numel())  # type: ignore[attr-defined]
    return len(_flat_floats(values))


def encode_frame(
    model: str,
    hook: str,
    request_id: str,
    position: int,
    seq: int,
    dtype: str,
    values: object,
    tokens: int,
    d_model: int,
    **extra,
) -> Tuple[Dict[str, str], bytes]:
    """Encode one frame: ``(headers, payload)``.

    ``values`` holds ``tokens * d_model`` floats, row-major ``[tokens,
    d_model]`` (a torch tensor of that shape works too). ``extra``:
    ``token_ids``, ``token_text``, ``phase``, ``tenant``, ``meta``, ``end``,
    ``traceparent``, ``tracestate`` (see :func:`frame_headers`).
    """
    headers = frame_headers(model, hook, request_id, position, seq, dtype, tokens, d_model, **extra)
    n = _count_values(values)
    if n != tokens * d_model:
        raise FrameError("payload", f"{tokens}·{d_model} = {tokens * d_model} values", str(n), request_id)
    return headers, encode_payload(values, dtype, d_model, position, request_id)


def split_frames(
    model: str,
    hook: str,
    request_id: str,
    position: int,
    first_seq: int,
    dtype: str,
    values: object,
    tokens: int,
    d_model: int,
    max_payload: int,
    token_ids: Optional[Sequence[int]] = None,
    token_text: Optional[Sequence[str]] = None,
    **extra,
) -> List[Tuple[Dict[str, str], bytes]]:
    """Split ``tokens`` tokens into as few frames as fit ``max_payload`` (headers included), like ``src/tap/tap.ts``.

    Each frame gets its own ``Lw-Pos``, ``Lw-Seq`` (from ``first_seq``) and
    slice of token ids and text; a token is never split. Everything is
    encoded before anything is returned, so an error (including
    :class:`FrameTooLargeError` when one token cannot fit) leaves nothing
    half sent. ``values`` is ``[tokens, d_model]`` (tensor) or a flat
    sequence. Returns ``[]`` for ``tokens == 0``.
    """
    _check_count("tokens", tokens, request_id)
    _check_count("d_model", d_model, request_id, 1)
    ids = list(token_ids) if token_ids is not None else None
    texts = list(token_text) if token_text is not None else None
    for field, seq_ in ((HEADER["token_ids"], ids), (HEADER["token_text"], texts)):
        if seq_ is not None and len(seq_) != tokens:
            raise FrameError(field, f"{tokens} entries (one per token)", str(len(seq_)), request_id)
    n_values = _count_values(values)
    if n_values != tokens * d_model:
        raise FrameError("payload", f"{tokens}·{d_model} = {tokens * d_model} values", str(n_values), request_id)
    if tokens == 0:
        return []
    torch_values = _is_torch_tensor(values)
    flat = values.reshape(tokens, d_model) if torch_values else _flat_floats(values)  # type: ignore[attr-defined]
    bytes_per_token = d_model * BYTES_PER_ELEMENT.get(dtype, 4)

    def headers_for(start: int, n: int, seq: int) -> Dict[str, str]:
        return frame_headers(
            model, hook, request_id, position + start, seq, dtype, n, d_model,
            token_ids=ids[start:start + n] if ids is not None else None,
            token_text=texts[start:start + n] if texts is not None else None,
            **extra,
        )

    plan: List[Tuple[int, int]] = []
    start = 0
    while start < tokens:
        seq = first_seq + len(plan)

        def fits(n: int) -> bool:
            return header_wire_bytes(headers_for(start, n, seq)) + n * bytes_per_token <= max_payload

        n = tokens - start
        if not fits(n):
            if not fits(1):
                raise FrameTooLargeError(
                    request_id, position + start, header_wire_bytes(headers_for(start, 1, seq)),
                    bytes_per_token, max_payload,
                )
            lo, hi = 1, n
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if fits(mid):
                    lo = mid
                else:
                    hi = mid
            n = lo
        plan.append((start, n))
        start += n

    frames = []
    for i, (start, n) in enumerate(plan):
        part = flat[start:start + n] if torch_values else flat[start * d_model:(start + n) * d_model]
        headers = headers_for(start, n, first_seq + i)
        frames.append((headers, encode_payload(part, dtype, d_model, position + start, request_id)))
    return frames
