"""latentwatch tap for PyTorch models: publish residual-stream activations to latentwatch over NATS.

Standard library plus torch. See ``deploy/taps/python/README.md``.

Example::

    from latentwatch_tap import LatentwatchTap

    tap = LatentwatchTap("nats://127.0.0.1:4222", model="gpt2", hook="blocks.6.hook_resid_post")
    tap.attach(model.transformer.h[6])
    with tap.requests(["req-1"], attention_mask=batch.attention_mask, input_ids=batch.input_ids):
        model.generate(**batch, max_new_tokens=16)
"""

from .frame import FrameError, FrameTooLargeError, encode_frame, partition_of, split_frames, tap_subject
from .nats import (MaxPayloadError, Msg, NatsClient, NatsConnectionError, NatsError, NatsServerError, NatsTimeoutError,
                   NatsTlsError, NoRespondersError, ReconnectBufferFullError)
from .steer import SteerCommand, SteerOp, SteerProtocolError, apply_op, parse_command
from .tap import STAT_KEYS, LatentwatchTap, TapError

__version__ = "1.1.0"

__all__ = [
    "LatentwatchTap",
    "TapError",
    "STAT_KEYS",
    "NatsClient",
    "Msg",
    "NatsError",
    "NatsConnectionError",
    "NatsServerError",
    "NatsTlsError",
    "ReconnectBufferFullError",
    "NatsTimeoutError",
    "NoRespondersError",
    "MaxPayloadError",
    "FrameError",
    "FrameTooLargeError",
    "encode_frame",
    "split_frames",
    "tap_subject",
    "partition_of",
    "SteerCommand",
    "SteerOp",
    "SteerProtocolError",
    "parse_command",
    "apply_op",
]
