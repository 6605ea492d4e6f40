"""The tap's counters and per-request state (see :class:`latentwatch_tap.tap.LatentwatchTap`).

Example::

    from latentwatch_tap.tap_state import STAT_KEYS

    "nats_dropped" in STAT_KEYS   # True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

from . import steer as st

if TYPE_CHECKING:
    from .tap import LatentwatchTap

__all__ = ["STAT_KEYS"]

#: Every counter in :attr:`LatentwatchTap.stats` (all start at 0).
STAT_KEYS = (
    "frames",  # frames published (end markers included)
    "frame_bytes",  # header + payload bytes of those frames
    "end_markers",
    "frame_errors",  # a step's frames of one request could not be encoded (non-finite, too large)
    "publish_errors",  # the NATS client refused or the connection is closed
    "commands_received",  # command messages on the command subject plus commands in verdicts
    "commands_applied",
    "commands_rejected",
    "commands_expired",
    "commands_ignored",  # another replica's request, or a repeated command id
    "commands_not_applied",
    "acks",
    "aborts",  # requests aborted (by command, verdict or fail-closed)
    "gate_waits",  # hook calls (steps) that waited for verdicts
    "gate_frames",  # frames sent as gated requests (one per request and step)
    "gate_verdicts",  # valid verdicts received in time
    "gate_timeouts",  # gated frames without a usable verdict (any of the next three, or the deadline)
    "gate_no_responders",  # ... NATS said nobody listens (no sidecar)
    "gate_errors",  # ... an `error` verdict, or a reply that is no valid verdict
    "fail_open",  # ... and the step went on unsteered
    "fail_closed",  # ... and the request was aborted
    "gate_wait_ms_total",  # time spent waiting for verdicts, ms
    "gate_wait_ms_max",  # longest wait of one step, ms
    "hook_calls",
    "skipped_calls",  # hook calls with no request mapping (or one that does not fit the tensor)
    "hook_errors",  # unexpected errors inside the hook (logged; the model goes on)
    "nats_errors",  # -ERR from the server, e.g. Permissions Violation
    "requests_evicted",  # requests ended because more than max_open_requests were open
    "gate_offline",  # gated frames during a NATS outage: held as plain publishes, failure mode at once
    # the NATS client's counters (latentwatch_tap.reconnect.STAT_KEYS), prefixed
    "nats_disconnects",
    "nats_reconnects",
    "nats_reconnect_attempts",
    "nats_buffered",  # publishes held during outages
    "nats_buffered_bytes",
    "nats_replayed",  # held publishes sent after a reconnect
    "nats_dropped",  # publishes lost: the outage buffer was full (also in publish_errors), or closed with it
    "nats_dropped_bytes",
    "nats_in_doubt",  # publishes written to a connection that died before a PONG confirmed them
    "nats_outage_ms",  # time spent disconnected, over all outages
)


@dataclass
class _Active:
    cmd: st.SteerCommand
    applied: bool = False


@dataclass
class _Req:
    rid: str
    tenant: Optional[str] = None
    meta: Optional[Dict[str, str]] = None
    seq: int = 0
    cursor: int = 0  # next position the model will process
    published: int = 0  # next position to publish (frames cover [0, published))
    started: bool = False
    d_model: Optional[int] = None
    history: List[int] = field(default_factory=list)  # token id per position, where known
    commands: List[_Active] = field(default_factory=list)
    seen: set = field(default_factory=set)
    aborted: bool = False
    finished: bool = False  # EOS seen: no more frames


@dataclass
class _Batch:
    request_ids: List[str]
    masks: Optional[List[List[int]]]
    eos: Optional[set]
    decode_token: Optional[Callable[[int], str]]
    prompt_cols: Optional[int] = None  # T of the first call (the padded prompt)


def _tolist(x: Any) -> Any:
    return x.tolist() if hasattr(x, "tolist") else x


class _StoppingCriteria:
    """Duck-typed Hugging Face ``StoppingCriteria`` (see :meth:`LatentwatchTap.stopping_criteria`)."""

    def __init__(self, tap: "LatentwatchTap"):
        self.tap = tap

    def __call__(self, input_ids, scores=None, **kwargs):
        import torch

        ids = input_ids[:, -1].tolist()
        self.tap.feed_tokens(ids)
        batch = self.tap._batch
        rids = batch.request_ids if batch is not None else []
        done = [self.tap.aborted(r) for r in rids]
        if len(done) != input_ids.shape[0]:
            done = (done + [False] * input_ids.shape[0])[: input_ids.shape[0]]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)
