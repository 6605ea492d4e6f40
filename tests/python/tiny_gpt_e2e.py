"""A small GPT-style model, tapped with the latentwatch Python tap, served through ``generate``.

Used by ``tests/python_tap_e2e_test.ts``: the test writes a config (the
planted directions, the tap settings), runs this script against a real
nats-server (with or without the sidecar), and checks what it prints.

The model: token and position embeddings, ``layers`` pre-LayerNorm blocks
(causal multi-head attention with a KV cache and a padding mask, GELU MLP),
a final LayerNorm and an LM head; fixed seeds. Two directions are planted in
the token embeddings: the trigger token carries ``8 · u`` (the SAE latent a
clamp rule reads) and the stop token ``8 · u2`` (a latent an abort rule
reads). Decoding never generates the planted tokens, so a rule fires only
for the request whose prompt has one.

Output (stdout, one JSON object): the generated ids per row, the hooked
activation of every decode step before and after the tap (hooks registered
around the tap's), whether each request was aborted, the tap's counters,
and the wall time of each decode step.
"""

import json
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, sys.argv[1])  # deploy/taps/python
from latentwatch_tap import LatentwatchTap  # noqa: E402


class Block(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x, mask, past=None):
        b, t, d = x.shape
        dh = d // self.heads
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.heads, dh).transpose(1, 2) for z in (q, k, v))
        if past is not None:
            k = torch.cat([past[0], k], 2)
            v = torch.cat([past[1], v], 2)
        total = k.shape[2]
        att = (q @ k.transpose(-1, -2)) / dh**0.5
        causal = torch.ones(t, total, dtype=torch.bool).tril(total - t)
        allowed = causal[None, None] & mask[:, None, None, :].bool()
        att = torch.nan_to_num(att.masked_fill(~allowed, float("-inf")).softmax(-1))
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(y)
        x = x + self.mlp(self.ln2(x))
        # a Hugging Face decoder layer returns a tuple whose [0] is the hidden states
        return x, (k, v)


class TinyGPT(nn.Module):
    def __init__(self, vocab: int, d: int, heads: int, layers: int, ctx: int):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(ctx, d)
        nn.init.normal_(self.wte.weight, std=0.3)
        nn.init.normal_(self.wpe.weight, std=0.3)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)

    def forward(self, ids, mask, past=None):
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -ids.shape[1]:]
        x = self.wte(ids) + self.wpe(positions)
        presents = []
        for i, block in enumerate(self.blocks):
            x, present = block(x, mask, None if past is None else past[i])
            presents.append(present)
        return self.head(self.ln_f(x)), presents

    @torch.no_grad()
    def generate(
        self, input_ids, attention_mask, max_new_tokens, stopping_criteria=None, pad_token_id=0, banned=()
    ):
        """Greedy decoding with a KV cache, stopping rows the way Hugging Face does.

        ``banned`` tokens are never generated (the planted tokens appear only
        where the test puts them).
        """
        ids, mask = input_ids, attention_mask
        done = torch.zeros(ids.shape[0], dtype=torch.bool)
        logits, past = self(ids, mask)
        for _ in range(max_new_tokens):
            scores = logits[:, -1].clone()
            scores[:, list(banned)] = float("-inf")
            nxt = scores.argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, pad_token_id), nxt)
            ids = torch.cat([ids, nxt[:, None]], 1)
            mask = torch.cat([mask, (~done).long()[:, None]], 1)
            if stopping_criteria is not None:
                done = done | stopping_criteria(ids, logits)
            if bool(done.all()) or ids.shape[1] - input_ids.shape[1] >= max_new_tokens:
                break
            logits, past = self(nxt[:, None], mask, past)
        return ids


def main() -> None:
    cfg = json.loads(open(sys.argv[2]).read())
    torch.manual_seed(cfg["seed"])
    d = cfg["d_model"]
    model = TinyGPT(cfg["vocab"], d, 4, 2, cfg.get("ctx", 64)).eval()
    u = torch.tensor(cfg["u"], dtype=torch.float32)
    u2 = torch.tensor(cfg["u2"], dtype=torch.float32)
    with torch.no_grad():
        model.wte.weight[cfg["trigger_token"]] += 8 * u
        model.wte.weight[cfg["stop_token"]] += 8 * u2
        model.head.bias[cfg["trigger_token"]] += 50.0

    layer = model.blocks[0]
    steps = []
    raw = {}

    def before(_m, _i, out):  # registered before the tap: what the model computed
        if out[0].shape[1] == 1:
            raw["x"] = out[0].detach().clone()

    ticks = []

    def after(_m, _i, out):  # registered after the tap: what the model goes on with
        if out[0].shape[1] == 1:
            steps.append((raw.pop("x"), out[0].detach().clone()))
            ticks.append(time.perf_counter())

    layer.register_forward_hook(before)
    tap = LatentwatchTap(
        cfg["nats"],
        model=cfg["model"],
        hook=cfg["hook"],
        dtype="f32",
        gate=cfg.get("gate"),
        d_model=d,
        name="tiny-gpt-e2e",
    )
    tap.attach(layer)
    layer.register_forward_hook(after)

    prompts = cfg["prompts"]
    width = max(len(p) for p in prompts)
    # left padding, as Hugging Face pads decoder-only models for generation
    input_ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with tap.requests(cfg["request_ids"], attention_mask=attention_mask, input_ids=input_ids):
        out = model.generate(
            input_ids,
            attention_mask,
            cfg["max_new_tokens"],
            stopping_criteria=tap.stopping_criteria(),
            banned=(cfg["trigger_token"], cfg["stop_token"]),
        )
        aborted = {rid: tap.aborted(rid) for rid in cfg["request_ids"]}
    tap.nc.flush()
    lengths = [len(p) for p in prompts]
    result = {
        "generated": out[:, width:].tolist(),
        "aborted": aborted,
        "steps": [
            {
                "step": i,
                "rows": [
                    {"position": lengths[b] + i, "raw": r[b, 0].tolist(), "steered": s[b, 0].tolist()}
                    for b in range(len(prompts))
                ],
            }
            for i, (r, s) in enumerate(steps)
        ],
        "stats": tap.stats,
        # wall time of each decode step but the first (model forward, tap, gate), in ms
        "step_ms": [(b - a) * 1000 for a, b in zip(ticks, ticks[1:])],
    }
    tap.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
