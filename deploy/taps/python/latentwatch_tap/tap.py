"""The Python tap: forward hooks on a PyTorch model that publish frames, steer and gate.

Example (Hugging Face ``generate``)::

    from transformers import StoppingCriteriaList
    from latentwatch_tap import LatentwatchTap

    tap = LatentwatchTap("nats://tap:secret@127.0.0.1:4222", model="gpt2",
                         hook="blocks.6.hook_resid_post", dtype="bf16")
    tap.attach(model.transformer.h[6])
    batch = tokenizer(prompts, return_tensors="pt", padding=True)   # padding_side="left"
    with tap.requests(["req-1", "req-2"], attention_mask=batch.attention_mask,
                      input_ids=batch.input_ids, eos_token_id=tokenizer.eos_token_id):
        out = model.generate(**batch, max_new_tokens=32,
                             stopping_criteria=StoppingCriteriaList([tap.stopping_criteria()]))
    # leaving the block sent the end markers of req-1 and req-2
    print(tap.stats)
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import socket
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from . import frame as fr
from . import steer as st
from .nats import (NatsClient, NatsConnectionError, NatsError, NatsTimeoutError, NoRespondersError,
                   ReconnectBufferFullError)
from .tap_state import STAT_KEYS, _Active, _Batch, _Req, _StoppingCriteria, _tolist

__all__ = ["LatentwatchTap", "TapError", "STAT_KEYS"]

log = logging.getLogger("latentwatch_tap")

class TapError(ValueError):
    """A tap argument or request mapping that cannot be used (message: ``expected X, found Y``)."""


class LatentwatchTap:
    """Publishes one hook's activations as frame v1, applies steering commands, optionally gates.

    Arguments:

    - ``nats``: a URL (``nats://[user:pass@|token@]host:port``, ``tls://...``), several
      (a list, or separated by commas: tried in turn, also on reconnects), or a
      connected :class:`~latentwatch_tap.nats.NatsClient` (the tap then does not close it).
    - ``model``, ``hook``: the ``Lw-Model``/``Lw-Hook`` names (and, sanitised, the subjects).
    - ``dtype``: wire element type, ``f32`` (default), ``f16`` or ``bf16``.
    - ``partitions``: subject partitions (same as the sidecars'); default 1.
    - ``gate``: None (no gating) or ``{"deadline_ms": 50, "on_timeout": "open"|"closed"}``.
    - ``steering``: subscribe to ``latentwatch.steer.v1.<model>.<hook>.*`` (default True).
    - ``user``, ``password`` or ``token``: NATS credentials (override the URL's);
      ``tls``: TLS options (``{"ca_file", "cert_file", "key_file", "server_hostname"}``);
      ``nats_options``: more :class:`~latentwatch_tap.nats.NatsClient` arguments
      (reconnect backoff, outage buffer limits, PINGs). Its counters are in
      ``stats`` as ``nats_*``. A gated frame during an outage is held as a plain
      publish and gets the failure mode at once (``gate_offline``).
    - ``name``: this tap in acks (``tap`` field) and as the NATS connection
      name; default ``<model>@<host>:<pid>``.
    - ``d_model``: the hook's width, when known before the first forward pass
      (commands are checked against it on arrival; otherwise on first use).
    - ``clock``: ``() -> Unix ms`` for command expiry (tests).
    - ``max_open_requests``: requests held at once (default 100 000); past it the
      oldest is ended (end marker, ``not_applied`` acks) and counted in
      ``requests_evicted``.

    Gating: in each hook call (one model step), the last frame of each
    request's step is published as a NATS request (earlier frames of a split
    step are plain publishes; the sidecar evaluates a request's frames in
    order). All requests of the step are sent first; then the tap waits,
    once, until every verdict has come or ``deadline_ms`` has passed since
    the wait began. A verdict's commands take effect from their
    ``from_position`` (the next step); an ``abort`` verdict aborts its
    request. A request whose verdict did not come (timeout, no responders),
    or came as ``error`` or unreadable, gets the failure mode (counted in
    ``gate_timeouts``): ``open`` goes on unsteered (``fail_open``),
    ``closed`` aborts the request (``fail_closed``). End markers are not gated.

    Example (a hand-written loop, one request)::

        tap = LatentwatchTap("nats://127.0.0.1:4222", "my-llm", "blocks.6.hook_resid_post")
        tap.attach(model.blocks[6].hook_resid_post)
        with tap.requests(["req-1"], input_ids=ids):
            for _ in range(32):
                logits = model(ids)            # hook publishes (and steers) this step
                nxt = logits[:, -1].argmax(-1, keepdim=True)
                ids = torch.cat([ids, nxt], 1)
                tap.feed_tokens(nxt[:, 0].tolist())
                if tap.should_stop():
                    break
    """

    def __init__(
        self,
        nats: Union[str, Sequence[str], NatsClient],
        model: str,
        hook: str,
        dtype: str = "f32",
        partitions: int = 1,
        gate: Optional[Mapping[str, Any]] = None,
        steering: bool = True,
        user: Optional[str] = None,
        password: Optional[str] = None,
        name: Optional[str] = None,
        d_model: Optional[int] = None,
        clock: Optional[Callable[[], float]] = None,
        max_open_requests: int = 100_000,
        token: Optional[str] = None,
        tls: Optional[Any] = None,
        nats_options: Optional[Mapping[str, Any]] = None,
    ):
        fr.frame_headers(model, hook, "x", 0, 0, dtype, 0, 1)  # validates model, hook, dtype
        fr.partition_of("", partitions)  # validates partitions
        self.model = model
        self.hook = hook
        self.dtype = dtype
        self.partitions = partitions
        self.name = name or f"{model}@{socket.gethostname()}:{os.getpid()}"
        if d_model is not None and (isinstance(d_model, bool) or not isinstance(d_model, int) or d_model < 1):
            raise TapError(f"d_model: expected a positive integer, found {d_model!r}")
        self.d_model = d_model
        self.gate = self._check_gate(gate)
        if isinstance(max_open_requests, bool) or not isinstance(max_open_requests, int) or max_open_requests < 1:
            raise TapError(f"max_open_requests: expected a positive integer, found {max_open_requests!r}")
        self.max_open_requests = max_open_requests
        self._clock = clock or (lambda: time.time() * 1000.0)
        self._stats: Dict[str, float] = {k: 0 for k in STAT_KEYS}
        self._lock = threading.RLock()
        self._requests: Dict[str, _Req] = {}
        self._aborted_ended: "collections.OrderedDict[str, bool]" = collections.OrderedDict()
        self._ended: "collections.OrderedDict[str, set]" = collections.OrderedDict()
        self._batch: Optional[_Batch] = None
        self._token_map: Optional[List[Optional[Tuple[str, int, Optional[int]]]]] = None
        self._handles: List[Any] = []
        self._warned: set = set()
        self._map_decode_token: Optional[Callable[[int], str]] = None
        if isinstance(nats, (str, list, tuple)):
            self.nc = NatsClient(nats, user=user, password=password, name=self.name, on_error=self._on_nats_error,
                                 token=token, tls=tls, **dict(nats_options or {}))
            self._owns_nc = True
        else:
            self.nc = nats
            self._owns_nc = False
            if getattr(nats, "on_error", None) is None:
                try:
                    nats.on_error = self._on_nats_error
                except AttributeError:
                    pass
        self._ack_subject = fr.steer_ack_subject(model, hook)
        self._sub = None
        if steering:
            self._sub = self.nc.subscribe(fr.steer_subject_filter(model, hook), self._on_command_msg)
            self.nc.flush()  # the subscription is in place before the first step

    @property
    def stats(self) -> Dict[str, float]:
        """The counters of :data:`STAT_KEYS`; the ``nats_*`` ones read from the NATS client now."""
        for k, v in getattr(self.nc, "stats", {}).items():
            self._stats["nats_" + k] = v
        return self._stats

    @staticmethod
    def _check_gate(gate: Optional[Mapping[str, Any]]) -> Optional[Dict[str, Any]]:
        if gate is None:
            return None
        if not isinstance(gate, Mapping):
            raise TapError(f"gate: expected None or {{'deadline_ms': n, 'on_timeout': 'open'|'closed'}}, found {gate!r}")
        unknown = set(gate) - {"deadline_ms", "on_timeout"}
        if unknown:
            raise TapError(f"gate: expected keys deadline_ms, on_timeout, found {sorted(unknown)}")
        ms = gate.get("deadline_ms", 50)
        if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not ms > 0:
            raise TapError(f"gate.deadline_ms: expected a positive number, found {ms!r}")
        mode = gate.get("on_timeout", "open")
        if mode not in ("open", "closed"):
            raise TapError(f"gate.on_timeout: expected 'open' or 'closed', found {mode!r}")
        return {"deadline_ms": float(ms), "on_timeout": mode}

    # ------------------------------------------------------------------ life cycle

    def close(self) -> None:
        """Remove the hooks, unsubscribe, and close the NATS connection when the tap opened it."""
        self.detach()
        if self._sub is not None:
            self._sub.unsubscribe()
            self._sub = None
        if self._owns_nc:
            self.nc.close()

    def __enter__(self) -> "LatentwatchTap":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def attach(self, module, sum_outputs: bool = False):
        """Register the tap as a forward hook on ``module``; returns the torch hook handle.

        The module's output is a tensor (TransformerLens ``HookPoint``) or a
        tuple/list whose ``[0]`` is the hidden states (Hugging Face decoder
        layers): ``[batch, tokens, d_model]`` with a :meth:`requests` mapping,
        or ``[num_tokens, d_model]`` with a :meth:`set_token_map` mapping.
        ``sum_outputs=True``: the output is ``(hidden, residual)`` and the
        residual stream is their sum (vLLM decoder layers); steering then
        changes ``hidden`` so that the sum takes the steered value.
        """
        if not hasattr(module, "register_forward_hook"):
            raise TapError(f"attach: expected a torch.nn.Module, found {type(module).__name__}")

        def hook(_module, _inputs, output):
            return self._hook(output, sum_outputs)

        handle = module.register_forward_hook(hook)
        self._handles.append(handle)
        return handle

    def detach(self) -> None:
        """Remove every hook :meth:`attach` registered."""
        for h in self._handles:
            h.remove()
        self._handles.clear()

    # ------------------------------------------------------------------ request mapping

    def begin(self, request_id: str, tenant: Optional[str] = None, meta: Optional[Mapping[str, str]] = None) -> None:
        """Declare a request served by this tap (commands for it are accepted from now on).

        :meth:`requests` and :meth:`set_token_map` call this for you;
        ``tenant``/``meta`` go in every frame (``Lw-Tenant``, ``Lw-Meta-<key>``).
        """
        fr.frame_headers(self.model, self.hook, request_id, 0, 0, self.dtype, 0, 1, tenant=tenant, meta=meta)
        with self._lock:
            req = self._requests.get(request_id)
            if req is None:
                self._requests[request_id] = _Req(request_id, tenant, dict(meta) if meta else None)
                # requests never ended (a client went away, a scheduler preempted them)
                # must not pile up: the oldest is ended, its pending commands acked not_applied
                while len(self._requests) > self.max_open_requests:
                    oldest = next(iter(self._requests))
                    self._stats["requests_evicted"] += 1
                    log.warning("latentwatch tap: request %s evicted (more than %d open)", oldest,
                                self.max_open_requests)
                    self.end(oldest)
            else:
                if tenant is not None:
                    req.tenant = tenant
                if meta is not None:
                    req.meta = dict(meta)

    @contextlib.contextmanager
    def requests(
        self,
        request_ids: Sequence[str],
        attention_mask: Any = None,
        input_ids: Any = None,
        eos_token_id: Union[None, int, Sequence[int]] = None,
        decode_token: Optional[Callable[[int], str]] = None,
        tenant: Union[None, str, Sequence[Optional[str]]] = None,
        meta: Union[None, Mapping[str, str], Sequence[Optional[Mapping[str, str]]]] = None,
        end_on_exit: bool = True,
    ) -> Iterator["LatentwatchTap"]:
        """Map batch rows to request ids for a batched forward/``generate`` ([B, T, D] hidden states).

        Row ``b`` of every hook call inside the block is request
        ``request_ids[b]``. ``attention_mask`` (``[B, T]``, left or right
        padding) tells which prompt positions are real: positions count real
        tokens only, from 0, and advance by one per decode step (a call with
        one token per row once the prompt was seen). A later call with at
        least the prompt's length is taken as a recomputation without KV
        cache: every token is steered, only new positions are published.
        ``input_ids`` (``[B, T]``) gives the prompt's token ids
        (``Lw-Token-Ids``); decode steps take theirs from
        :meth:`feed_tokens` (the stopping criteria call it).
        ``eos_token_id``: a row that produced it publishes no more frames.
        ``decode_token(id) -> str`` fills ``Lw-Token-Text``. ``tenant`` and
        ``meta`` (one value, or one per row) go into every frame.
        Leaving the block sends each request's end marker unless
        ``end_on_exit=False`` (then call :meth:`end`).
        """
        rids = list(request_ids)
        if not rids or not all(isinstance(r, str) for r in rids):
            raise TapError(f"request_ids: expected a non-empty list of strings, found {request_ids!r}")
        if len(set(rids)) != len(rids):
            raise TapError(f"request_ids: expected distinct ids, found {rids!r}")
        masks = None
        if attention_mask is not None:
            masks = [[int(v) for v in row] for row in _tolist(attention_mask)]
            if len(masks) != len(rids):
                raise TapError(f"attention_mask: expected {len(rids)} rows (one per request), found {len(masks)}")
        ids_rows = None
        if input_ids is not None:
            ids_rows = [[int(v) for v in row] for row in _tolist(input_ids)]
            if len(ids_rows) != len(rids):
                raise TapError(f"input_ids: expected {len(rids)} rows (one per request), found {len(ids_rows)}")
        tenants = tenant if isinstance(tenant, (list, tuple)) else [tenant] * len(rids)
        metas = meta if isinstance(meta, (list, tuple)) else [meta] * len(rids)
        for i, rid in enumerate(rids):
            self.begin(rid, tenants[i], metas[i])
            if ids_rows is not None:
                row = ids_rows[i]
                m = masks[i] if masks is not None else [1] * len(row)
                with self._lock:
                    self._requests[rid].history = [t for t, keep in zip(row, m) if keep]
        eos = None
        if eos_token_id is not None:
            eos = {int(eos_token_id)} if isinstance(eos_token_id, int) else {int(e) for e in eos_token_id}
        previous = self._batch
        self._batch = _Batch(rids, masks, eos, decode_token)
        try:
            yield self
        finally:
            self._batch = previous
            if end_on_exit:
                for rid in rids:
                    self.end(rid)

    def set_token_map(
        self,
        entries: Optional[Sequence[Optional[Sequence[Any]]]],
        decode_token: Optional[Callable[[int], str]] = None,
    ) -> None:
        """Map the rows of a flat ``[num_tokens, D]`` hidden state (vLLM) for the next hook calls.

        ``entries[i]`` is ``(request_id, position)`` or ``(request_id,
        position, token_id)`` for row ``i``, or None for a padding row; rows
        past the end of the list are padding. The map stays until it is
        replaced or cleared (``set_token_map(None)``). Each request is
        :meth:`begin`-declared; call :meth:`end` when it finishes.
        """
        if entries is None:
            self._token_map = None
            return
        parsed: List[Optional[Tuple[str, int, Optional[int]]]] = []
        for i, e in enumerate(entries):
            if e is None:
                parsed.append(None)
                continue
            if not isinstance(e, (list, tuple)) or len(e) not in (2, 3) or not isinstance(e[0], str):
                raise TapError(f"token map entry {i}: expected (request_id, position[, token_id]), found {e!r}")
            pos = int(e[1])
            if pos < 0:
                raise TapError(f"token map entry {i}: expected a position >= 0, found {pos}")
            parsed.append((e[0], pos, int(e[2]) if len(e) == 3 and e[2] is not None else None))
        with self._lock:
            for e in parsed:
                if e is not None and e[0] not in self._requests:
                    self.begin(e[0])
        self._map_decode_token = decode_token
        self._token_map = parsed

    def feed_tokens(self, token_ids: Sequence[int]) -> None:
        """Record the token id each row of the current :meth:`requests` batch feeds into the next step.

        Gives decode frames their ``Lw-Token-Ids`` and detects
        ``eos_token_id``. The stopping criteria call this; a hand-written loop
        calls it after sampling.
        """
        batch = self._batch
        if batch is None:
            return
        ids = [int(t) for t in _tolist(token_ids)]
        with self._lock:
            for rid, tid in zip(batch.request_ids, ids):
                req = self._requests.get(rid)
                if req is None or req.finished or req.aborted:
                    continue
                if len(req.history) == req.cursor:
                    req.history.append(tid)
                if batch.eos is not None and tid in batch.eos:
                    req.finished = True

    # ------------------------------------------------------------------ aborts

    def aborted(self, request_id: str) -> bool:
        """True once ``request_id`` must stop: an ``abort`` took effect, or the gate failed closed."""
        with self._lock:
            req = self._requests.get(request_id)
            if req is None:
                return self._aborted_ended.get(request_id, False)
            return req.aborted

    def should_stop(self) -> bool:
        """For hand-written loops: True when every request of the current mapping is aborted or finished."""
        with self._lock:
            if self._batch is not None:
                rids = self._batch.request_ids
            elif self._token_map is not None:
                rids = list({e[0] for e in self._token_map if e is not None})
            else:
                return False
            for rid in rids:
                req = self._requests.get(rid)
                if req is not None and not (self.aborted(rid) or req.finished):
                    return False
            return True

    def stopping_criteria(self):
        """An object usable as a Hugging Face ``StoppingCriteria`` (no ``transformers`` import).

        ``criteria(input_ids, scores, **kw)`` records each row's new token
        (:meth:`feed_tokens`) and returns a bool tensor, True for rows whose
        request is aborted. Wrap it: ``StoppingCriteriaList([tap.stopping_criteria()])``.
        Hugging Face appends the token sampled in the step that saw the abort
        before it checks the criteria, so that token ends the output.
        """
        return _StoppingCriteria(self)

    def _abort(self, req: _Req, reason: str) -> None:
        if not req.aborted:
            req.aborted = True
            self._stats["aborts"] += 1
            log.info("latentwatch tap: request %s aborted at position %d: %s", req.rid, req.cursor, reason)

    # ------------------------------------------------------------------ end

    def end(self, request_id: str) -> None:
        """End a request: send its end marker (``Lw-End: 1``) and ack ``not_applied`` what never took effect.

        Nothing is sent for a request that never published a frame. Idempotent.
        """
        with self._lock:
            req = self._requests.pop(request_id, None)
            if req is None:
                return
            if req.aborted:
                self._aborted_ended[request_id] = True
                while len(self._aborted_ended) > 4096:
                    self._aborted_ended.popitem(last=False)
            self._ended[request_id] = req.seen
            while len(self._ended) > 4096:
                self._ended.popitem(last=False)
            for a in req.commands:
                if not a.applied:
                    self._stats["commands_not_applied"] += 1
                    self._ack(
                        a.cmd, "not_applied",
                        reason=f"request ended at position {req.cursor} before the operation took effect",
                    )
            if not req.started or req.d_model is None:
                return
            headers = fr.frame_headers(
                self.model, self.hook, request_id, req.published, req.seq, self.dtype, 0, req.d_model,
                tenant=req.tenant, meta=req.meta, end=True,
            )
            req.seq += 1
        self._publish(request_id, headers, b"")
        self._stats["end_markers"] += 1

    # ------------------------------------------------------------------ commands

    def _on_nats_error(self, message: str) -> None:
        self._stats["nats_errors"] += 1

    def _on_command_msg(self, msg) -> None:
        with self._lock:
            self._stats["commands_received"] += 1
            try:
                o = st._parse_json(msg.data, "steering command")
            except st.SteerProtocolError as err:
                self._stats["commands_rejected"] += 1
                log.warning("latentwatch tap: command on %s: %s", msg.subject, err)
                return
            self._take_command(o, None)

    def _take_command(self, o: Dict[str, Any], parsed: Optional[st.SteerCommand],
                      error: Optional[st.SteerProtocolError] = None) -> None:
        """Lock held. Validate (unless ``parsed``), check expiry, queue; ack rejections and expiries."""
        rid = o.get("request_id") if parsed is None else parsed.request_id
        cid = o.get("id") if parsed is None else parsed.id
        req = self._requests.get(rid) if isinstance(rid, str) else None
        if req is None:
            if isinstance(rid, str) and rid in self._ended and isinstance(cid, str) and 0 < len(cid) <= st.MAX_ID:
                if cid not in self._ended[rid]:
                    self._ended[rid].add(cid)
                    self._stats["commands_not_applied"] += 1
                    self._ack_raw(cid, rid, "not_applied", reason="the request had already ended")
                return
            self._stats["commands_ignored"] += 1
            return
        if isinstance(cid, str) and cid in req.seen:
            return  # the same command again (verdict and subject): applied and acknowledged once
        if isinstance(cid, str):
            req.seen.add(cid)
        if parsed is None and error is None:
            try:
                parsed = st.parse_command(o, self.model, self.hook, self.d_model)
            except st.SteerProtocolError as err:
                error = err
        if error is not None or parsed is None:
            self._stats["commands_rejected"] += 1
            log.warning("latentwatch tap: %s", error)
            if isinstance(cid, str) and 0 < len(cid) <= st.MAX_ID:
                self._ack_raw(cid, rid, "rejected", reason=str(error))
            return
        now = self._clock()
        if st.is_expired(parsed, now):
            self._stats["commands_expired"] += 1
            self._ack(parsed, "expired", reason=f"received {now - parsed.expires_at_ms:.0f} ms after expires_at_ms")
            return
        if parsed.op.kind == "abort" and parsed.from_position <= req.cursor:
            # stops the request before its next token at or after from_position
            self._take_abort(req, parsed)
            return
        req.commands.append(_Active(parsed))  # an abort from a later position waits for it

    def _take_abort(self, req: _Req, cmd: st.SteerCommand) -> None:
        """Lock held: an abort whose from_position has been reached takes effect now."""
        self._stats["commands_applied"] += 1
        self._ack(cmd, "applied", position=max(cmd.from_position, req.cursor))
        op = cmd.op
        self._abort(req, getattr(op, "reason", None) or f"abort command {cmd.id} (rule {cmd.rule or '?'})")

    def _ack(self, cmd: st.SteerCommand, status: str, position: Optional[int] = None,
             reason: Optional[str] = None) -> None:
        self._ack_raw(cmd.id, cmd.request_id, status, position, reason)

    def _ack_raw(self, cid: str, rid: str, status: str, position: Optional[int] = None,
                 reason: Optional[str] = None) -> None:
        try:
            self.nc.publish(self._ack_subject, st.encode_ack(cid, rid, status, position, reason, self.name))
            self._stats["acks"] += 1
        except (NatsError, OSError) as err:
            self._stats["publish_errors"] += 1
            log.warning("latentwatch tap: ack %s of %s: %s", status, cid, err)

    # ------------------------------------------------------------------ the hook

    def _hook(self, output, sum_outputs: bool):
        self._stats["hook_calls"] += 1
        try:
            return self._on_output(output, sum_outputs)
        except Exception:  # monitoring must never break the model
            self._stats["hook_errors"] += 1
            log.exception("latentwatch tap: hook failed")
            return None

    def _locate(self, hidden) -> Optional[List[Tuple[str, List[Tuple[int, ...]], List[int], Optional[Callable]]]]:
        """Per request: (rid, index tuples into hidden, positions, decode_token). None: skip the call."""
        if hidden.dim() == 3:
            batch = self._batch
            if batch is None:
                return None
            B, T = hidden.shape[0], hidden.shape[1]
            if B != len(batch.request_ids):
                self._warn_once(f"hook: expected batch size {len(batch.request_ids)} (requests), found {B}")
                return None
            if batch.prompt_cols is None:
                batch.prompt_cols = len(batch.masks[0]) if batch.masks else T
            out = []
            with self._lock:
                for b, rid in enumerate(batch.request_ids):
                    req = self._requests.get(rid)
                    if req is None or req.finished or req.aborted:
                        continue
                    if req.started and T == 1:
                        out.append((rid, [(b, 0)], [req.cursor], batch.decode_token))
                        continue
                    m = batch.masks[b] if batch.masks is not None else None
                    if req.started and T < batch.prompt_cols:
                        # a continuation chunk of new tokens
                        out.append((rid, [(b, t) for t in range(T)], list(range(req.cursor, req.cursor + T)),
                                    batch.decode_token))
                        continue
                    # the prompt, or (T at least the prompt's length once started) the whole
                    # sequence again, recomputed without a KV cache
                    if m is None:
                        m = [1] * T
                    elif T >= len(m):
                        m = m + [1] * (T - len(m))
                    else:
                        self._warn_once(f"hook: expected at least {len(m)} tokens (the attention mask), found {T}")
                        continue
                    idx = [(b, t) for t in range(T) if m[t]]
                    if idx:
                        out.append((rid, idx, list(range(len(idx))), batch.decode_token))
            return out
        if hidden.dim() == 2:
            tmap = self._token_map
            if tmap is None:
                return None
            N = hidden.shape[0]
            if N < len(tmap):
                self._warn_once(f"hook: expected at least {len(tmap)} tokens (the token map), found {N}")
                return None
            groups: Dict[str, Tuple[List[Tuple[int, ...]], List[int]]] = {}
            with self._lock:
                for i, e in enumerate(tmap):
                    if e is None:
                        continue
                    rid, pos, tid = e
                    req = self._requests.get(rid)
                    if req is None or req.finished or req.aborted:
                        continue
                    g = groups.setdefault(rid, ([], []))
                    g[0].append((i,))
                    g[1].append(pos)
                    if tid is not None:
                        while len(req.history) < pos:
                            req.history.append(-1)
                        if len(req.history) == pos:
                            req.history.append(tid)
                        else:
                            req.history[pos] = tid
            dec = self._map_decode_token
            return [(rid, idx, pos, dec) for rid, (idx, pos) in groups.items()]
        self._warn_once(f"hook: expected hidden states [batch, tokens, d_model] or [tokens, d_model], "
                        f"found shape {tuple(hidden.shape)}")
        return None

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            log.warning("latentwatch tap: %s", message)

    def _on_output(self, output, sum_outputs: bool):
        import torch

        if isinstance(output, (tuple, list)):
            hidden = output[0]
            resid = output[1] if sum_outputs and len(output) > 1 else None
        else:
            hidden, resid = output, None
        if not isinstance(hidden, torch.Tensor):
            self._stats["skipped_calls"] += 1
            self._warn_once(f"hook: expected a tensor output (or a tuple starting with one), found {type(hidden).__name__}")
            return None
        located = self._locate(hidden)
        if not located:  # None: no usable mapping; []: no row to publish (all ended, aborted, padding)
            if located is None:
                self._stats["skipped_calls"] += 1
            return None
        D = hidden.shape[-1]
        if self.d_model is None:
            self.d_model = D
        elif self.d_model != D:
            self._stats["skipped_calls"] += 1
            self._warn_once(f"hook: expected width {self.d_model} (d_model), found {D}")
            return None

        with torch.no_grad():
            all_idx = [ix for _, idx, _, _ in located for ix in idx]
            index = tuple(torch.tensor(col, dtype=torch.long, device=hidden.device) for col in zip(*all_idx))
            X = hidden[index].to(torch.float32)
            R = resid[index].to(torch.float32) if resid is not None else None
            if R is not None:
                X = X + R
            changed_any = torch.zeros(X.shape[0], dtype=torch.bool, device=X.device)

            # steer, request by request, commands in the order received
            spans = []
            start = 0
            with self._lock:
                for rid, idx, positions, dec in located:
                    n = len(idx)
                    spans.append((rid, start, n, positions, dec))
                    req = self._requests[rid]
                    req.d_model = D
                    if req.commands:
                        self._steer(req, X[start:start + n], positions, changed_any[start:start + n], D)
                    start += n
            if bool(changed_any.any()):
                # write the steered rows back in the model's dtype; frames carry
                # exactly what the model continues with (rounded as written)
                sel = changed_any.nonzero()[:, 0]
                new = X[sel]
                if R is not None:
                    new = new - R[sel]
                written = new.to(hidden.dtype)
                hidden[tuple(col[sel] for col in index)] = written
                X[sel] = written.to(torch.float32) + (R[sel] if R is not None else 0)
            X_cpu = X.detach().to("cpu")

        # publish (or gate), then advance cursors and check aborts
        pending = []
        for rid, s, n, positions, dec in spans:
            pending += self._publish_step(rid, X_cpu[s:s + n], positions, dec, D)
        with self._lock:
            for rid, _s, _n, positions, _dec in spans:
                req = self._requests.get(rid)
                if req is not None:
                    req.cursor = max(req.cursor, max(positions) + 1)
                    req.started = True
                    # aborts waiting for a later position: reached now?
                    for a in [a for a in req.commands if a.cmd.op.kind == "abort"]:
                        if a.cmd.from_position <= req.cursor:
                            req.commands.remove(a)
                            self._take_abort(req, a.cmd)
        if pending:
            self._await_verdicts(pending)
        return output

    def _steer(self, req: _Req, x, positions: List[int], changed_rows, D: int) -> None:
        """Lock held. Apply req's active commands to x (f32 [n, D], a view) in order."""
        import torch

        pos_t = torch.tensor(positions, dtype=torch.long, device=x.device)
        keep = []
        for a in req.commands:
            cmd = a.cmd
            if cmd.d_model != D:
                self._stats["commands_rejected"] += 1
                self._ack(cmd, "rejected", reason=f"d_model: expected {D} (the hook's width), found {cmd.d_model}")
                continue
            keep.append(a)
            if cmd.op.kind == "abort":
                continue
            mask = pos_t >= cmd.from_position
            if cmd.until_position is not None:
                mask &= pos_t < cmd.until_position
            if not bool(mask.any()):
                continue
            rows = mask.nonzero()[:, 0]
            sub = x[rows]
            changed = st.apply_op(cmd.op, sub)
            if bool(changed.any()):
                x[rows] = sub
                changed_rows[rows] |= changed
            if not a.applied:
                a.applied = True
                self._stats["commands_applied"] += 1
                self._ack(cmd, "applied", position=int(pos_t[rows].min()))
        # applied operations whose window has passed are done
        last = max(positions) if positions else -1
        req.commands = [
            a for a in keep if not (a.applied and a.cmd.until_position is not None and a.cmd.until_position <= last + 1)
        ]

    def _publish_step(self, rid: str, x_cpu, positions: List[int], dec, D: int) -> List[Tuple[str, Any]]:
        """Publish the new positions of one request; returns gated (rid, PendingRequest) pairs."""
        with self._lock:
            req = self._requests.get(rid)
            if req is None:
                return []
            # runs of consecutive positions not yet published
            order = sorted(range(len(positions)), key=lambda i: positions[i])
            runs: List[List[int]] = []
            for i in order:
                p = positions[i]
                if p < req.published:
                    continue
                if runs and positions[runs[-1][-1]] + 1 == p:
                    runs[-1].append(i)
                else:
                    runs.append([i])
            frames = []
            try:
                for run in runs:
                    first = positions[run[0]]
                    ids = [req.history[p] if p < len(req.history) else -1 for p in (positions[i] for i in run)]
                    token_ids = ids if all(t >= 0 for t in ids) else None
                    token_text = [dec(t) for t in ids] if dec is not None and token_ids is not None else None
                    values = x_cpu[run[0]:run[-1] + 1] if run == list(range(run[0], run[-1] + 1)) else x_cpu[run]
                    out = fr.split_frames(
                        self.model, self.hook, rid, first, req.seq + len(frames), self.dtype, values,
                        len(run), D, self.nc.max_payload, token_ids=token_ids, token_text=token_text,
                        phase="decode" if req.started else "prefill", tenant=req.tenant, meta=req.meta,
                    )
                    frames += out
            except (fr.FrameError, fr.FrameTooLargeError) as err:
                self._stats["frame_errors"] += 1
                log.warning("latentwatch tap: %s", err)
                if self.gate is not None and self.gate["on_timeout"] == "closed":
                    self._stats["fail_closed"] += 1
                    self._abort(req, f"frame not encodable: {err}")
                return []
            if runs:
                req.published = positions[runs[-1][-1]] + 1
            req.seq += len(frames)
        # with a gate, the step's last frame carries it: the sidecar answers after
        # evaluating it, and it evaluates a request's frames in order
        pending = []
        for i, (headers, payload) in enumerate(frames):
            p = self._publish(rid, headers, payload, gated=self.gate is not None and i == len(frames) - 1)
            if p is not None:
                pending.append((rid, p, int(headers["Lw-Seq"])))
        return pending

    def _publish(self, rid: str, headers: Dict[str, str], payload: bytes, gated: bool = False):
        subject = fr.tap_subject(self.model, self.hook, fr.partition_of(rid, self.partitions))
        offline = gated and not getattr(self.nc, "connected", True)
        try:
            p = None
            if gated and not offline:
                try:
                    p = self.nc.request_async(subject, payload, headers)
                    self._stats["gate_frames"] += 1
                except NatsConnectionError as err:  # the connection dropped just now: hold it instead
                    if isinstance(err, ReconnectBufferFullError) or getattr(self.nc, "closed", True):
                        raise
                    offline = True
            if not gated or offline:
                self.nc.publish(subject, payload, headers)
            self._stats["frames"] += 1
            self._stats["frame_bytes"] += fr.header_wire_bytes(headers) + len(payload)
            if offline:  # held for the reconnect; no verdict can come in time
                self._stats["gate_offline"] += 1
                self._gate_result_failed(rid, "no NATS connection (reconnecting)")
            return p
        except (NatsError, OSError) as err:
            self._stats["publish_errors"] += 1
            quiet = isinstance(err, ReconnectBufferFullError)  # counted in nats_dropped; logged per outage
            (log.debug if quiet else log.warning)("latentwatch tap: publish on %s: %s", subject, err)
            if gated:
                with self._lock:
                    req = self._requests.get(rid)
                    if req is not None:
                        self._gate_failed(req, f"publish failed: {err}")
            return None

    # ------------------------------------------------------------------ gating

    def _gate_failed(self, req: _Req, why: str) -> None:
        """Lock held: apply the failure mode to one request (counted in gate_timeouts and fail_open/fail_closed)."""
        if self.gate is None:
            return
        self._stats["gate_timeouts"] += 1
        if self.gate["on_timeout"] == "closed":
            self._stats["fail_closed"] += 1
            self._abort(req, f"gate failed closed: {why}")
        else:
            self._stats["fail_open"] += 1
            log.debug("latentwatch tap: gate failed open for %s: %s", req.rid, why)

    def _await_verdicts(self, pending: List[Tuple[str, Any]]) -> None:
        assert self.gate is not None
        t0 = time.monotonic()
        deadline = t0 + self.gate["deadline_ms"] / 1000.0
        for _rid, p, _seq in pending:
            p.wait(max(0.0, deadline - time.monotonic()))
        waited_ms = (time.monotonic() - t0) * 1000.0
        self._stats["gate_waits"] += 1
        self._stats["gate_wait_ms_total"] += waited_ms
        self._stats["gate_wait_ms_max"] = max(self._stats["gate_wait_ms_max"], waited_ms)
        for rid, p, seq in pending:
            try:
                msg = p.result(0)
            except NatsTimeoutError:
                self._gate_result_failed(rid, "no verdict before the deadline")
                continue
            except NoRespondersError:
                self._stats["gate_no_responders"] += 1
                self._gate_result_failed(rid, "no responders")
                continue
            except NatsError as err:
                self._stats["gate_errors"] += 1
                self._gate_result_failed(rid, str(err))
                continue
            self._take_verdict(rid, seq, msg.data)

    def _gate_result_failed(self, rid: str, why: str) -> None:
        with self._lock:
            req = self._requests.get(rid)
            if req is not None:
                self._gate_failed(req, why)

    def _take_verdict(self, rid: str, seq: int, data: bytes) -> None:
        try:
            verdict, bad = st.parse_verdict(data, self.model, self.hook, self.d_model)
        except st.SteerProtocolError as err:
            self._stats["gate_errors"] += 1
            log.warning("latentwatch tap: verdict for %s: %s", rid, err)
            self._gate_result_failed(rid, f"invalid verdict: {err.reason}")
            return
        if verdict.request_id != rid or verdict.seq != seq:
            self._stats["gate_errors"] += 1
            why = (f"verdict: expected the answer to request {rid} seq {seq}, "
                   f"found request {verdict.request_id} seq {verdict.seq}")
            log.warning("latentwatch tap: %s", why)
            self._gate_result_failed(rid, why)
            return
        self._stats["gate_verdicts"] += 1
        with self._lock:
            req = self._requests.get(rid)
            if req is None:
                return
            for raw, err in bad:
                self._stats["commands_received"] += 1
                self._take_command(raw, None, err)
            for cmd in verdict.commands:
                self._stats["commands_received"] += 1
                if cmd.request_id != rid:
                    self._take_command(cmd.raw or {}, None)
                else:
                    self._take_command(cmd.raw or {}, cmd)
            # an abort comes from its command (as in the TypeScript tap): an expired
            # or rejected abort command does not stop the request
            if verdict.verdict == "error":
                self._stats["gate_errors"] += 1
                self._gate_failed(req, f"error verdict: {verdict.reason or 'no reason'}")
