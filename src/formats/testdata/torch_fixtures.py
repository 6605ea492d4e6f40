"""Write PyTorch checkpoints exactly as torch.save (>= 1.6, zip format)
writes them, using only the Python standard library, for the torch_pickle,
openai and dictionary_learning tests.

A fake `torch` / `torch._utils` module is installed into sys.modules so that
pickle emits the real global names (`torch._utils._rebuild_tensor_v2`,
`torch.FloatStorage`, `collections.OrderedDict`), storages are written through
Pickler.persistent_id as torch does (`('storage', torch.FloatStorage, key,
'cpu', numel)`), and the archive holds `<prefix>/data.pkl`, `byteorder`,
`data/<key>` (64-byte aligned, padded with an 'FB' extra field like torch's
writer), `version` and `.data/serialization_id`.

Expected encoder outputs are computed here in plain Python, directly from the
upstream formulas on the upstream orientation (sae-formats.md §4, §5), so the
TypeScript loaders are checked against an independent implementation.

Usage: python3 torch_fixtures.py OUT_DIR
Writes OUT_DIR/<case>/... and OUT_DIR/expected.json.
"""
import collections
import io
import json
import math
import os
import pickle
import struct
import sys
import types
import zipfile
from pathlib import Path

# ---------------------------------------------------------------- fake torch

torch = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")
torch.__path__ = []  # a package, so `torch._utils` is importable by name
torch._utils = torch_utils
sys.modules["torch"] = torch
sys.modules["torch._utils"] = torch_utils


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       metadata=None):
    raise RuntimeError("never called: the fixtures are only written")


def _rebuild_parameter(data, requires_grad, backward_hooks):
    raise RuntimeError("never called")


_rebuild_tensor_v2.__module__ = "torch._utils"
_rebuild_parameter.__module__ = "torch._utils"
torch_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
torch_utils._rebuild_parameter = _rebuild_parameter

# dtype name -> (storage class name, struct format, item size)
DTYPES = {
    "float32": ("FloatStorage", "f", 4),
    "float16": ("HalfStorage", "e", 2),
    "bfloat16": ("BFloat16Storage", None, 2),
    "float64": ("DoubleStorage", "d", 8),
    "int64": ("LongStorage", "q", 8),
    "int32": ("IntStorage", "i", 4),
}
STORAGE_CLASSES = {}
for _dt, (_cls, _fmt, _size) in DTYPES.items():
    c = type(_cls, (), {"__module__": "torch"})
    setattr(torch, _cls, c)
    STORAGE_CLASSES[_dt] = c


class Storage:
    """A typed storage: torch pickles it by persistent id, never by value."""

    def __init__(self, dtype, values):
        self.dtype = dtype
        self.values = list(values)


def f32(v):
    """Round a Python float to float32, as the tensor will hold it."""
    return struct.unpack("<f", struct.pack("<f", v))[0]


def bf16_bits(v):
    bits = struct.unpack("<I", struct.pack("<f", v))[0]
    # round to nearest even, like torch's float -> bfloat16 conversion
    bits += 0x7FFF + ((bits >> 16) & 1)
    return (bits >> 16) & 0xFFFF


def storage_bytes(st):
    _, fmt, _ = DTYPES[st.dtype]
    if st.dtype == "bfloat16":
        return struct.pack("<%dH" % len(st.values), *[bf16_bits(v) for v in st.values])
    return struct.pack("<%d%s" % (len(st.values), fmt), *st.values)


class Tensor:
    """A view of a storage, reduced exactly as torch.Tensor.__reduce_ex__ does."""

    def __init__(self, storage, shape, stride=None, offset=0):
        self.storage = storage
        self.shape = tuple(shape)
        if stride is None:
            stride, acc = [], 1
            for d in reversed(shape):
                stride.insert(0, acc)
                acc *= d
        self.stride = tuple(stride)
        self.offset = offset

    def __reduce_ex__(self, protocol):
        return (_rebuild_tensor_v2,
                (self.storage, self.offset, self.shape, self.stride, False,
                 collections.OrderedDict()))


def tensor(values, shape, dtype="float32"):
    flat = list(values)
    assert len(flat) == math.prod(shape), (len(flat), shape)
    return Tensor(Storage(dtype, flat), shape)


class TorchPickler(pickle.Pickler):
    def __init__(self, f):
        super().__init__(f, protocol=2)  # torch.save's default pickle_protocol
        self.storages = {}

    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            key = self.storages.setdefault(id(obj), (str(len(self.storages)), obj))[0]
            return ("storage", STORAGE_CLASSES[obj.dtype], key, "cpu", len(obj.values))
        return None


def state_dict(items):
    """An nn.Module.state_dict(): an OrderedDict with a `_metadata` attribute."""
    sd = collections.OrderedDict(items)
    sd._metadata = collections.OrderedDict([("", {"version": 1})])
    return sd


def write_records(path, records, prefix="archive"):
    """Write a zip the way torch's PyTorchStreamWriter does: stored entries,
    data aligned to 64 bytes by an 'FB' extra field in the local header."""
    with open(path, "wb") as fp, zipfile.ZipFile(fp, "w", zipfile.ZIP_STORED) as z:
        for name, data in records:
            full = "%s/%s" % (prefix, name)
            info = zipfile.ZipInfo(full, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            offset = fp.tell()
            pad = (-(offset + 30 + len(full.encode()) + 4)) % 64
            info.extra = struct.pack("<2sH", b"FB", pad) + b"Z" * pad
            z.writestr(info, data)


def torch_save(obj, path, prefix="archive", byteorder=b"little", tamper_pickle=None):
    buf = io.BytesIO()
    p = TorchPickler(buf)
    p.dump(obj)
    pkl = buf.getvalue()
    if tamper_pickle:
        pkl = tamper_pickle(pkl)
    records = [("data.pkl", pkl)]
    if byteorder is not None:
        records.append(("byteorder", byteorder))
    for key, st in sorted(p.storages.values(), key=lambda kv: int(kv[0])):
        records.append(("data/%s" % key, storage_bytes(st)))
    records.append(("version", b"3\n"))
    records.append((".data/serialization_id", b"1234567890123456789012345678901234567890"))
    write_records(path, records, prefix)


def raw_archive(path, pkl, prefix="archive"):
    write_records(path, [("data.pkl", pkl), ("byteorder", b"little"), ("version", b"3\n")], prefix)


# ---------------------------------------------------------------- reference math

def matvec_rows(W, x):
    """W given as rows [out][in]: returns W @ x (nn.Linear without bias)."""
    return [sum(w * xi for w, xi in zip(row, x)) for row in W]


def relu(v):
    return max(v, 0.0)


def grid(rows, cols, seed):
    """Deterministic float32 values in about [-1, 1], distinct per cell."""
    out = []
    for r in range(rows):
        row = []
        for c in range(cols):
            v = math.sin(seed * 12.9898 + r * 78.233 + c * 37.719) * 0.9
            row.append(f32(round(v, 3)))
        out.append(row)
    return out


def transpose(M):
    return [list(r) for r in zip(*M)]


def flat(M):
    return [v for row in M for v in row]


D, F = 3, 5
INPUTS = [[0.9, -0.4, 0.3], [-0.2, 0.7, 1.1], [1.5, 0.2, -0.8], [0.0, 0.0, 0.0]]
INPUTS = [[f32(v) for v in x] for x in INPUTS]


def topk_dense(h, k):
    # keep the k largest (ties: lower index), then relu
    order = sorted(range(len(h)), key=lambda i: (-h[i], i))[:k]
    return [relu(h[i]) if i in order else 0.0 for i in range(len(h))]


def layer_norm(x, eps=1e-5):
    mu = sum(x) / len(x)
    xc = [v - mu for v in x]
    sd = math.sqrt(sum(v * v for v in xc) / (len(x) - 1))  # unbiased, as torch.std
    return [v / (sd + eps) for v in xc]


# ---------------------------------------------------------------- OpenAI

def openai_case(out, name, activation, k=None, layer=6, postact="ReLU"):
    """activation None: no 'activation' entry (model.py's from_state_dict pops "ReLU" then);
    postact None: an activation_state_dict without 'postact_fn'."""
    N, d = F, D
    enc = grid(N, d, 1)  # encoder.weight [n_latents, d]
    dec = grid(d, N, 2)  # decoder.weight [d, n_latents]
    pre_bias = [f32(v) for v in (0.1, -0.2, 0.05)]
    latent_bias = [f32(v) for v in (0.05, -0.1, 0.2, 0.0, -0.3)]
    items = [
        ("pre_bias", tensor(pre_bias, [d])),
        ("latent_bias", tensor(latent_bias, [N])),
        ("stats_last_nonzero", tensor([0, 3, 12, 7, 100000], [N], "int64")),
        ("latents_activation_frequency", tensor([0.1] * N, [N])),
        ("latents_mean_square", tensor([0.5] * N, [N])),
        ("encoder.weight", tensor(flat(enc), [N, d])),
        ("decoder.weight", tensor(flat(dec), [d, N])),
    ]
    if activation is not None:
        items.append(("activation", activation))
    if activation == "TopK":
        act_sd = [("k", k)] + ([("postact_fn", postact)] if postact is not None else [])
        items.append(("activation_state_dict", state_dict(act_sd)))
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    torch_save(state_dict(items), folder / ("%d.pt" % layer), prefix=str(layer))
    expected = []
    for x in INPUTS:
        xi = layer_norm(x) if activation == "TopK" else x
        h = [a + b for a, b in zip(matvec_rows(enc, [v - p for v, p in zip(xi, pre_bias)]),
                                   latent_bias)]
        expected.append(topk_dense(h, k) if activation == "TopK" else [relu(v) for v in h])
    return {"path": str(folder / ("%d.pt" % layer)), "inputs": INPUTS, "expected": expected,
            "d": d, "n": N, "wEnc": flat(transpose(enc)), "wDec": flat(transpose(dec))}


# ---------------------------------------------------------------- dictionary_learning

def dl_case(out, name, dict_class, nested=False, norm_factor=None, config_dict_class=None,
            with_config=True, dtype="float32"):
    d, Fn = D, F
    We = grid(Fn, d, 3)        # nn.Linear(d, F).weight  [F, d]
    Wd = grid(d, Fn, 4)        # nn.Linear(F, d).weight  [d, F]
    be = [f32(v) for v in (0.1, -0.05, 0.2, -0.3, 0.0)]
    bd = [f32(v) for v in (0.05, -0.1, 0.15)]
    theta = [f32(v) for v in (0.1, 0.3, 0.05, 0.2, 0.4)]
    k = 2
    expected = []
    T = lambda vals, shape: tensor(vals, shape, dtype)  # noqa: E731
    if dict_class == "AutoEncoder":
        items = [("bias", T(bd, [d])), ("encoder.weight", T(flat(We), [Fn, d])),
                 ("encoder.bias", T(be, [Fn])), ("decoder.weight", T(flat(Wd), [d, Fn]))]
        enc = lambda x: [relu(h + b) for h, b in zip(matvec_rows(We, sub(x, bd)), be)]  # noqa
    elif dict_class == "AutoEncoderNew":
        items = [("encoder.weight", T(flat(We), [Fn, d])), ("encoder.bias", T(be, [Fn])),
                 ("decoder.weight", T(flat(Wd), [d, Fn])), ("decoder.bias", T(bd, [d]))]
        enc = lambda x: [relu(h + b) for h, b in zip(matvec_rows(We, x), be)]  # noqa
    elif dict_class == "GatedAutoEncoder":
        r_mag = [f32(v) for v in (0.5, -0.5, 0.0, 1.0, -1.0)]
        gate_bias = [f32(v) for v in (0.1, -0.2, 0.3, 0.0, -0.1)]
        mag_bias = [f32(v) for v in (-0.1, 0.2, 0.0, 0.05, 0.1)]
        items = [("decoder_bias", T(bd, [d])), ("r_mag", T(r_mag, [Fn])),
                 ("gate_bias", T(gate_bias, [Fn])), ("mag_bias", T(mag_bias, [Fn])),
                 ("encoder.weight", T(flat(We), [Fn, d])), ("decoder.weight", T(flat(Wd), [d, Fn]))]

        def enc(x):
            e = matvec_rows(We, sub(x, bd))
            return [(1.0 if ei + g > 0 else 0.0) * relu(math.exp(r) * ei + m)
                    for ei, g, r, m in zip(e, gate_bias, r_mag, mag_bias)]
    elif dict_class == "JumpReluAutoEncoder":
        W_enc = transpose(We)  # stored [d, F]
        items = [("W_enc", T(flat(W_enc), [d, Fn])), ("b_enc", T(be, [Fn])),
                 ("W_dec", T(flat(transpose(Wd)), [Fn, d])), ("b_dec", T(bd, [d])),
                 ("threshold", T(theta, [Fn]))]

        def enc(x):
            h = [hh + b for hh, b in zip(matvec_rows(We, x), be)]  # x @ W_enc
            return [relu(hh * (1.0 if hh > t else 0.0)) for hh, t in zip(h, theta)]
    elif dict_class in ("AutoEncoderTopK", "BatchTopKSAE"):
        thr = 0.25
        items = [("k", tensor([k], [], "int32")), ("threshold", tensor([thr], [], "float32")),
                 ("encoder.weight", T(flat(We), [Fn, d])), ("encoder.bias", T(be, [Fn])),
                 ("decoder.weight", T(flat(Wd), [d, Fn])), ("b_dec", T(bd, [d]))]
        items[0][1].shape = ()  # a 0-d tensor, as torch saves a scalar buffer

        def enc(x):
            a = [relu(h + b) for h, b in zip(matvec_rows(We, sub(x, bd)), be)]
            if dict_class == "AutoEncoderTopK":
                return topk_dense(a, k)
            return [v * (1.0 if v > thr else 0.0) for v in a]
    elif dict_class == "MatryoshkaBatchTopKSAE":
        thr = 0.15
        items = [("W_enc", T(flat(transpose(We)), [d, Fn])), ("b_enc", T(be, [Fn])),
                 ("W_dec", T(flat(transpose(Wd)), [Fn, d])), ("b_dec", T(bd, [d])),
                 ("k", tensor([k], [], "int32")), ("threshold", tensor([thr], [], "float32")),
                 ("group_sizes", tensor([2, 3], [2], "int64"))]

        def enc(x):
            a = [relu(h + b) for h, b in zip(matvec_rows(We, sub(x, bd)), be)]
            return [v * (1.0 if v > thr else 0.0) for v in a]
    else:  # an unknown class: any state dict will do
        items = [("encoder.weight", T(flat(We), [Fn, d]))]
        enc = None
    sd = state_dict(items)
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"trainer": {"trainer_class": "Trainer", "dict_class": config_dict_class or dict_class,
                       "activation_dim": d, "dict_size": Fn, "k": k, "layer": 3,
                       "lm_name": "EleutherAI/pythia-70m-deduped",
                       "submodule_name": "resid_post_layer_3", "lr": 0.0003},
           "buffer": {"ctx_len": 128}}
    if nested:
        obj = {"step": 4000, "ae": sd,
               "optimizer": {"state": {0: {"step": tensor([4000.0], []),
                                           "exp_avg": T([0.0] * d, [d])}},
                             "param_groups": [{"lr": 0.0003, "betas": (0.9, 0.999), "eps": 1e-08,
                                               "foreach": None, "params": [0]}]},
               "config": cfg["trainer"], "norm_factor": norm_factor}
        obj["optimizer"]["state"][0]["step"].shape = ()
    else:
        obj = sd
    torch_save(obj, folder / "ae.pt", prefix="ae")
    if with_config:
        (folder / "config.json").write_text(json.dumps(cfg, indent=4))
    if enc is not None:
        s = norm_factor if (nested and norm_factor is not None) else 1.0
        # A nested (mid-training) checkpoint holds the training-time SAE, which
        # takes x / norm_factor; the final save scales the biases instead, so
        # its features are norm_factor × the training-time ones.
        expected = [[s * v for v in enc([xi / s for xi in x])] for x in INPUTS]
    return {"path": str(folder), "inputs": INPUTS, "expected": expected, "d": d, "n": Fn}


def sub(a, b):
    return [x - y for x, y in zip(a, b)]


# ---------------------------------------------------------------- malicious and odd pickles

class Evil:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


def malicious(out):
    (out / "evil").mkdir(parents=True, exist_ok=True)
    marker = str(out / "evil" / "PWNED")
    # GLOBAL os.system + REDUCE, nested inside an otherwise normal state dict
    sd = state_dict([("encoder.weight", tensor([1.0, 2.0], [2])),
                     ("payload", Evil(os.system, "touch " + marker))])
    torch_save(sd, out / "evil" / "os_system.pt")
    torch_save(Evil(eval, "__import__('os').system('touch %s')" % marker),
               out / "evil" / "eval.pt")
    # NEWOBJ on an allowed class: GLOBAL collections.OrderedDict, EMPTY_TUPLE, NEWOBJ
    raw_archive(out / "evil" / "newobj.pt",
                b"\x80\x02ccollections\nOrderedDict\nq\x00)\x81q\x01.")
    # INST (protocol 0): builds os.system('...') without a GLOBAL opcode
    cmd = ("touch " + marker).encode()
    raw_archive(out / "evil" / "inst.pt",
                b"\x80\x02(X" + struct.pack("<I", len(cmd)) + cmd + b"ios\nsystem\n.")
    # protocol 4: FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL builtins.exec
    raw_archive(out / "evil" / "stack_global.pt",
                b"\x80\x04\x95\x15\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x04exec\x94\x93\x94.")
    return marker


def odd(out):
    o = out / "odd"
    o.mkdir(parents=True, exist_ok=True)
    st = Storage("float32", [float(i) for i in range(12)])
    # non-contiguous: the transpose of a [3, 4] tensor
    torch_save(state_dict([("w", Tensor(st, [4, 3], [1, 4]))]), o / "noncontig.pt")
    # shared storage with an offset, 0-d scalars, other dtypes, nested containers
    st2 = Storage("float32", [float(i) for i in range(10)])
    sd = state_dict([
        ("a", Tensor(st2, [2, 2], None, 0)),
        ("b", Tensor(st2, [3], None, 7)),
        ("half", tensor([1.0, -0.5, 65504.0], [3], "float16")),
        ("bf16", tensor([1.0, -2.5, 0.1], [3], "bfloat16")),
        ("f64", tensor([0.1, 1e-3], [2], "float64")),
        ("i64", tensor([-3, 2 ** 40], [2], "int64")),
        ("i32", tensor([7], [], "int32")),
        ("scalar", tensor([2.5], [], "float32")),
        ("empty", tensor([], [0, 3], "float32")),
        ("param", ParamLike(tensor([4.0, 5.0], [2]))),
        ("meta", {"n": 3, "big": 2 ** 40, "neg": -70000, "x": 0.25, "s": "héllo",
                  "t": True, "f": False, "none": None, "list": [1, [2, 3]], "tuple": (1, "a"),
                  5: "int key"}),
    ])
    sd["b"].shape = (3,)
    torch_save(sd, o / "mixed.pt", prefix="mixed")
    torch_save(state_dict([("w", tensor([1.0], [1]))]), o / "bigendian.pt", byteorder=b"big")
    torch_save(state_dict([("w", tensor([1.0], [1]))]), o / "nobyteorder.pt", byteorder=None)
    # legacy (pre-1.6) format: a bare pickle stream beginning with the magic number
    (o / "legacy.pt").write_bytes(
        b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02M\xe9\x03.")
    # a tensor whose storage entry is missing from the archive
    buf = io.BytesIO()
    TorchPickler(buf).dump(state_dict([("w", tensor([1.0, 2.0], [2]))]))
    raw_archive(o / "missing_storage.pt", buf.getvalue())
    # a tensor that claims more elements than its storage holds
    torch_save(state_dict([("w", Tensor(Storage("float32", [1.0, 2.0]), [3]))]),
               o / "short_storage.pt")


class ParamLike:
    """Reduced as torch.nn.Parameter is: _rebuild_parameter(data, requires_grad, hooks)."""

    def __init__(self, data):
        self.data = data

    def __reduce_ex__(self, protocol):
        return (_rebuild_parameter, (self.data, True, collections.OrderedDict()))


def main(out):
    out = Path(out)
    exp = {
        "openai_topk": openai_case(out, "openai_topk", "TopK", k=2, layer=6),
        "openai_relu": openai_case(out, "openai_relu", "ReLU", layer=5),
        "openai_noact": openai_case(out, "openai_noact", None, layer=4),
        "openai_topk_nopostact": openai_case(out, "openai_topk_nopostact", "TopK", k=2,
                                             postact=None),
    }
    for cls in ["AutoEncoder", "AutoEncoderNew", "GatedAutoEncoder", "JumpReluAutoEncoder",
                "AutoEncoderTopK", "BatchTopKSAE", "MatryoshkaBatchTopKSAE"]:
        exp["dl_" + cls] = dl_case(out, "dl_" + cls, cls)
    exp["dl_nested"] = dl_case(out, "dl_nested", "AutoEncoderTopK", nested=True, norm_factor=2.0)
    exp["dl_nested_noconfig"] = dl_case(out, "dl_nested_noconfig", "BatchTopKSAE", nested=True,
                                        norm_factor=None, with_config=False)
    exp["dl_f16"] = dl_case(out, "dl_f16", "AutoEncoder", dtype="float16")
    exp["dl_unknown"] = dl_case(out, "dl_unknown", "CrossCoder")
    exp["dl_mismatch"] = dl_case(out, "dl_mismatch", "AutoEncoder",
                                 config_dict_class="AutoEncoder")
    cfgp = out / "dl_mismatch" / "config.json"
    cfg = json.loads(cfgp.read_text())
    cfg["trainer"]["dict_size"] = 7
    cfgp.write_text(json.dumps(cfg))
    exp["evil_marker"] = malicious(out)
    odd(out)
    (out / "expected.json").write_text(json.dumps(exp))


if __name__ == "__main__":
    main(sys.argv[1])
