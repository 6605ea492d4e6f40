"""A generating model for the tap restart test (``tests/tap_restart_test.ts``).

A small torch model (embedding, one residual block tapped by the Python tap,
LM head; fixed seed) decodes one request, one token per step, with a pause
of ``step_ms`` between steps, until a line ``stop`` arrives on stdin. The
test restarts nats-server meanwhile and sends a steering command.

Arguments: the path of ``deploy/taps/python`` and a JSON config file
(``nats``: a list of URLs, ``model``, ``hook``, ``d_model``, ``step_ms``,
``request_id``, ``nats_options``).

Output (stdout): ``{"ready": true}`` after the first step, then at the end
one JSON object: the tap's counters, the steps taken, the last frame seq
(the end marker's), and the positions whose activations the tap changed.
"""

import json
import sys
import threading
import time

import torch
import torch.nn as nn

sys.path.insert(0, sys.argv[1])
from latentwatch_tap import LatentwatchTap  # noqa: E402


class Block(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x):
        return x + self.mlp(x)


def main() -> None:
    cfg = json.load(open(sys.argv[2]))
    torch.manual_seed(0)
    d, vocab = cfg["d_model"], 64
    wte, block, head = nn.Embedding(vocab, d), Block(d), nn.Linear(d, vocab)
    tap = LatentwatchTap(cfg["nats"], cfg["model"], cfg["hook"], d_model=d, name="restart-gen",
                         nats_options=cfg.get("nats_options") or {})
    changed = []
    raw = {}
    # hooks run in registration order: the raw output, the tap (steering), then the check
    block.register_forward_hook(lambda m, i, o: raw.__setitem__("x", o.detach().clone()))
    tap.attach(block)
    block.register_forward_hook(
        lambda m, i, o: changed.append(steps) if not torch.equal(o, raw["x"]) else None)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    rid = cfg["request_id"]
    ids = torch.tensor([[1]])
    steps = 0
    t0 = time.monotonic()
    with torch.no_grad(), tap.requests([rid], input_ids=ids):
        while not stop.is_set() and steps < 100_000:
            x = wte(ids[:, -1:])
            nxt = head(block(x))[:, -1].argmax(-1)
            ids = torch.cat([ids, nxt[:, None]], 1)[:, -8:]
            tap.feed_tokens(nxt.tolist())
            steps += 1
            if steps == 1:
                print(json.dumps({"ready": True}), flush=True)
            time.sleep(cfg["step_ms"] / 1000.0)
    wall = time.monotonic() - t0
    tap.nc.flush(timeout=10)
    stats = dict(tap.stats)
    tap.close()
    print(json.dumps({"stats": stats, "steps": steps, "end_seq": steps, "changed_positions": changed,
                      "wall_s": wall}), flush=True)


if __name__ == "__main__":
    main()
