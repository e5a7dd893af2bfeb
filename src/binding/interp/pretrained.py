"""Pretrained LLM vs VLM: the interchange intervention on Hugging Face models (spec §6).

The counterfactual pairs of `counterfactual.py`, rendered in English (`nl_task.py`), run on any
causal language model from a local folder; for a vision-language model, its language backbone.
For each pair, the counterfactual prompt's residual stream (each decoder layer's output) at the
last token is patched, one layer at a time, into the original prompt's run at its last token, and
the patched prediction is classified as positional / symbolic / reflexive / no_effect / other.

Loading (never from the network: `local_files_only=True`):
    a config with a `vision_config` (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, LLaVA, ...) is a VLM: the
    whole model is loaded with `AutoModelForImageTextToText` and run on text alone, so its
    language backbone (`model.language_model.layers`) runs exactly as inside the VLM (for the
    Qwen VL families the multimodal RoPE positions of a text-only prompt are ordinary positions);
    anything else is loaded with `AutoModelForCausalLM`.
The decoder layers are the first of `LAYER_PATHS` that exists; a family with none is refused.
Activations are read and written with nnsight; pairs are batched by token length (the original
and counterfactual of a kept pair have equal lengths), so no padding is ever needed.
"""
from __future__ import annotations

import gc
import inspect
from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lab.errors import UserError
from lab.io import atomic_write_json

from ..task import TaskConfig, Vocab
from .counterfactual import OUTCOMES, Pairs, classify, make_pairs
from .interventions import ratio_text
from .nl_task import ITEM_WORDS, Words, answer_word, choose, choose_words, prompt, render

LAYER_PATHS = ("model.language_model.layers", "model.layers", "language_model.model.layers",
               "model.model.layers", "language_model.layers", "transformer.h", "gpt_neox.layers")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
PAPER_REFERENCE = {  # spec §6; the paper's peak layers are per family (LLM and VLM alike)
    "symbolic_positional_ratio": {"Qwen2-7B": 1.383, "Qwen2-VL-7B": 1.499, "Qwen2.5-7B": 1.218,
                                  "Qwen2.5-VL-7B": 1.282, "Qwen3-8B": 1.819, "Qwen3-VL-8B": 2.463},
    "peak_layer": {"Qwen2": 22, "Qwen2.5": 22, "Qwen3": 28},
    "long_context_text_retrieval_accuracy": {"Qwen3-8B": 0.626, "Qwen3-VL-8B": 0.760},
}


@dataclass
class Loaded:
    model: Any            # the transformers model (eval mode)
    lm: Any               # the same model wrapped by nnsight
    tokenizer: Any
    layers_path: str      # e.g. "model.layers": the decoder layers whose outputs are patched
    n_layers: int
    is_vlm: bool
    device: torch.device
    forward_kwargs: dict  # e.g. {"logits_to_keep": 1} where the model accepts it

    def layer(self, i: int):
        """The nnsight envoy of decoder layer i."""
        return reduce(getattr, self.layers_path.split("."), self.lm)[i]


def load_model(path: str | Path, device: str = "cpu", dtype: str = "float32",
               trust_remote_code: bool = False) -> Loaded:
    """A causal LM (or a VLM's language backbone) and its tokenizer from a local folder."""
    try:
        import transformers
        from nnsight import NNsight
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer
    except ImportError as e:
        raise UserError(f"compare-pretrained needs transformers and nnsight ({e}): pip install -e '.[hf]'") from None

    path = check_folder(path)
    if dtype not in DTYPES:
        raise UserError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    dev = _device(device)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    opts = dict(local_files_only=True, trust_remote_code=trust_remote_code)
    try:
        config = AutoConfig.from_pretrained(path, **opts)
    except Exception as e:  # malformed JSON, unknown model_type, remote code not trusted, ...
        raise UserError(f"{path}/config.json cannot be read as a model config: {e}") from None
    if not any((path / f).is_file() for f in TOKENIZER_FILES) and not list(path.glob("*.tiktoken")):
        raise UserError(f"{path} has no tokenizer (none of {', '.join(TOKENIZER_FILES)})")
    is_vlm = hasattr(config, "vision_config")
    # a VLM whose auto class is not image-text-to-text (some remote-code models) may be a causal LM
    autos = (AutoModelForImageTextToText, AutoModelForCausalLM) if is_vlm else (AutoModelForCausalLM,)
    model = None
    for auto in autos:
        try:
            model = auto.from_pretrained(path, config=config, dtype=DTYPES[dtype], **opts)
            break
        except ValueError as e:  # this auto class has no model for this config
            unsupported = e
        except Exception as e:  # missing or truncated weights, shape mismatch, ...
            raise UserError(f"{path}: the model weights cannot be loaded: {e}") from None
    if model is None:
        kind = "vision-language (image-text-to-text) or causal" if is_vlm else "causal"
        raise UserError(f"{path}: {type(config).__name__} is not a supported {kind} language model "
                        f"family: {unsupported}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **opts)
    except Exception as e:
        raise UserError(f"{path}: the tokenizer cannot be loaded: {e}") from None
    model.eval().to(dev)
    layers_path = next((p for p in LAYER_PATHS if isinstance(_get(model, p), torch.nn.ModuleList)), None)
    if layers_path is None:
        raise UserError(f"{path}: cannot find the decoder layers of {type(model).__name__} "
                        f"(looked for {', '.join(LAYER_PATHS)})")
    kwargs = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    return Loaded(model, NNsight(model), tokenizer, layers_path, len(_get(model, layers_path)), is_vlm,
                  dev, kwargs)


def check_folder(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"model folder {path} does not exist")
    if not (path / "config.json").is_file():
        raise UserError(f"{path} is not a Hugging Face model folder: it has no config.json")
    return path


def _get(obj, dotted: str):
    try:
        return reduce(getattr, dotted.split("."), obj)
    except AttributeError:
        return None


def _device(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UserError(f"--device {device!r} is not a torch device (cpu, cuda, cuda:1, mps)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: no CUDA device is available here")
    return dev


def _hidden(output):
    """A decoder layer's output is the residual stream, or a tuple starting with it (older families)."""
    return output[0] if isinstance(output, tuple) else output


def run_and_save(m: Loaded, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean run: (last-token residual stream after every layer [L, B, D], next-token logits [B, V])."""
    states: list[torch.Tensor] = []
    with torch.no_grad(), m.lm.trace(ids.to(m.device), **m.forward_kwargs):
        for i in range(m.n_layers):
            states.append(_hidden(m.layer(i).output)[:, -1, :].clone().save())
        logits = m.lm.output.logits[:, -1, :].save()
    return torch.stack([s.float().cpu() for s in states]), logits.float().cpu()


def patched_logits(m: Loaded, ids: torch.Tensor, layer: int, state: torch.Tensor) -> torch.Tensor:
    """Next-token logits [B, V] of `ids` with layer `layer`'s output at the last token set to `state` [B, D]."""
    state = state.to(m.device, next(m.model.parameters()).dtype)
    with torch.no_grad(), m.lm.trace(ids.to(m.device), **m.forward_kwargs):
        _hidden(m.layer(layer).output)[:, -1, :] = state
        logits = m.lm.output.logits[:, -1, :].save()
    return logits.float().cpu()


def intervene(m: Loaded, pairs: Pairs, words: Words, item0: int, batch_size: int = 8) -> dict[str, Any]:
    """Per pair: clean predictions and the outcome of patching each layer ([L, B] outcome index)."""
    orig_ids, cf_ids, keep = render(pairs, words, m.tokenizer)
    kept = np.nonzero(keep)[0]
    pairs = pairs.select(kept)
    outcome = np.full((m.n_layers, len(kept)), -1)
    pred_orig = torch.empty(len(kept), dtype=torch.long)
    pred_cf = torch.empty(len(kept), dtype=torch.long)
    lengths = np.array([len(orig_ids[i]) for i in kept])
    for length in np.unique(lengths):
        group = np.nonzero(lengths == length)[0]
        for start in range(0, len(group), batch_size):
            idx = group[start:start + batch_size]
            sub = pairs.select(idx)
            orig = torch.tensor([orig_ids[kept[i]] for i in idx])                # [b, T]
            cf = torch.tensor([cf_ids[kept[i]] for i in idx])                    # [b, T]
            _, clean = run_and_save(m, orig)
            cf_states, cf_logits = run_and_save(m, cf)
            pred_orig[idx] = choose(clean, sub, words, item0)
            pred_cf[idx] = choose(cf_logits, sub, words, item0)
            for layer in range(m.n_layers):
                pred = choose(patched_logits(m, orig, layer, cf_states[layer]), sub, words, item0)
                hit = classify(pred, sub)
                outcome[layer, idx] = np.argmax(np.stack([hit[o].numpy() for o in OUTCOMES]), axis=0)
    correct_orig = (pred_orig == pairs.original.answer).numpy()
    correct_cf = (pred_cf == pairs.counterfactual.answer).numpy()
    return dict(kept=kept, outcome=outcome, correct_orig=correct_orig, correct_cf=correct_cf)


def summarize(res: dict[str, Any], n_generated: int, only_correct: bool = True) -> dict[str, Any]:
    """Per-layer outcome shares over the pairs used, the peak layer and the symbolic/positional ratio."""
    use = res["correct_orig"] & res["correct_cf"] if only_correct else np.ones_like(res["correct_orig"])
    outcome = res["outcome"][:, use]                                              # [L, used]
    n_used = int(use.sum())
    props = [({o: float(np.mean(row == k)) for k, o in enumerate(OUTCOMES)} if n_used else None)
             for row in outcome]
    peak = ratio = None
    if n_used:
        peak = int(np.argmax([p["positional"] + p["symbolic"] for p in props]))  # ties: the lower layer
        pos = props[peak]["positional"]
        ratio = props[peak]["symbolic"] / pos if pos > 0 else None
    n_kept = len(res["kept"])
    return dict(
        layers=len(props), proportions_by_layer=props, peak_layer=peak, symbolic_positional_ratio=ratio,
        n_pairs=n_used, n_pairs_generated=n_generated, n_pairs_equal_length=n_kept,
        baseline_accuracy=float(res["correct_orig"].mean()) if n_kept else None,
        counterfactual_accuracy=float(res["correct_cf"].mean()) if n_kept else None,
    )


def analyse(path: str | Path, pairs: Pairs, task: TaskConfig, batch_size: int = 8, only_correct: bool = True,
            **load_opts) -> dict[str, Any]:
    """Load one model folder and run the whole intervention on `pairs`; the summary for pretrained.json."""
    m = load_model(path, **load_opts)
    words = choose_words(m.tokenizer, task.n_colors, task.n_shapes, task.n_items)
    res = intervene(m, pairs, words, Vocab.of(task).item0, batch_size)
    out = dict(model_path=str(path), model_class=type(m.model).__name__, is_vlm=m.is_vlm,
               layers_path=m.layers_path, **summarize(res, len(pairs), only_correct))
    out["example"] = {"prompt": prompt(pairs.original, 0, words), "answer": " " + answer_word(pairs.original, 0, words)}
    del m
    gc.collect()  # free the first model before the second is loaded
    return out


def compare_pretrained(llm: str | Path, vlm: str | Path | None, out: str | Path, n_pairs: int = 64, seed: int = 0,
                       n_range: tuple[int, int] = (3, 6), n_words: int = 20, batch_size: int = 8,
                       only_correct: bool = True, device: str = "cpu", dtype: str = "float32",
                       trust_remote_code: bool = False) -> dict[str, Any]:
    """Run the intervention on an LLM (and a VLM); write out/pretrained.json, .md and .png."""
    lo, hi = n_range
    if not 3 <= lo <= hi <= n_words:
        raise UserError(f"--n-range {lo},{hi}: need 3 <= LO <= HI <= --words ({n_words}): a pair needs three "
                        "distinct slots and N distinct words of each kind")
    task = TaskConfig(n_colors=n_words, n_shapes=n_words, n_items=n_words, train_n=n_range, id_n=n_range,
                      ood_n=n_range).validate()
    if batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {batch_size}")
    if n_words > len(ITEM_WORDS):
        raise UserError(f"--words {n_words}: at most {len(ITEM_WORDS)} words per vocabulary")
    for path in (llm, vlm) if vlm else (llm,):
        check_folder(path)  # before hours of work on the first model
    pairs = make_pairs(task, n_pairs, seed, n_range)
    load = dict(device=device, dtype=dtype, trust_remote_code=trust_remote_code)
    result: dict[str, Any] = dict(
        settings=dict(n_pairs=n_pairs, seed=seed, n_range=[lo, hi], n_words=n_words, only_correct=only_correct,
                      device=device, dtype=dtype),
        llm=analyse(llm, pairs, task, batch_size, only_correct, **load),
        vlm=analyse(vlm, pairs, task, batch_size, only_correct, **load) if vlm else None,
        paper_reference=PAPER_REFERENCE,
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "pretrained.json", result)
    _plot(result, out / "pretrained.png")
    (out / "pretrained.md").write_text(_markdown(result))
    return result


def models_of(result: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(k, result[k]) for k in ("llm", "vlm") if result.get(k)]


def _plot(result: dict[str, Any], path: Path) -> None:
    from matplotlib.ticker import MaxNLocator

    from lab.report import plt, save_figure

    models = models_of(result)
    fig, axes = plt.subplots(len(models), 1, figsize=(8, 3 * len(models)), squeeze=False)
    colors = {"positional": "tab:blue", "symbolic": "tab:orange", "reflexive": "tab:green",
              "no_effect": "tab:gray", "other": "tab:red"}
    for ax, (name, r) in zip(axes[:, 0], models):
        x = np.arange(r["layers"])
        bottom = np.zeros(r["layers"])
        for o in OUTCOMES:
            h = np.array([p[o] if p else 0.0 for p in r["proportions_by_layer"]])
            ax.bar(x, h, bottom=bottom, color=colors[o], label=o)
            bottom += h
        ax.set_title(f"{name}: {Path(r['model_path']).name} ({r['n_pairs']} pairs used)")
        ax.set_xlabel("layer (patched output, 0-based)")
        ax.set_ylabel("share of pairs")
        ax.set_ylim(0, 1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0, 0].legend(loc="lower center", bbox_to_anchor=(0.5, 1.12), fontsize=8, ncol=len(OUTCOMES))
    save_figure(fig, path)


def _markdown(result: dict[str, Any]) -> str:
    from lab.report import md_table

    def f(x):
        return "n/a" if x is None else x

    s = result["settings"]
    lines = ["# Pretrained LLM vs VLM: interchange intervention\n",
             f"{s['n_pairs']} pairs generated (seed {s['seed']}, N {s['n_range'][0]}..{s['n_range'][1]}, "
             f"{s['n_words']} words per vocabulary); a pair is used only if the model answers both prompts "
             f"correctly{'' if s['only_correct'] else ' (off: every equal-length pair is used)'}.\n"]
    rows = []
    for name, r in models_of(result):
        peak = r["proportions_by_layer"][r["peak_layer"]] if r["peak_layer"] is not None else {}
        rows.append([name, Path(r["model_path"]).name, r["layers"], f"{r['n_pairs']}/{r['n_pairs_generated']}",
                     f(r["baseline_accuracy"]), f(r["peak_layer"]), f(peak.get("positional")),
                     f(peak.get("symbolic")), ratio_text(r["symbolic_positional_ratio"], peak, r["n_pairs"]) if peak else "n/a"])
    lines.append(md_table(["model", "folder", "layers", "pairs used", "baseline acc", "peak layer",
                           "positional", "symbolic", "symbolic/positional"], rows))
    ref = result["paper_reference"]
    lines.append("\nPaper (spec §6), symbolic/positional at the peak layer: " +
                 ", ".join(f"{k} {v}" for k, v in ref["symbolic_positional_ratio"].items()) +
                 "; peak layers " + ", ".join(f"{k} {v}" for k, v in ref["peak_layer"].items()) + ".\n")
    for name, r in models_of(result):
        lines.append(f"\n## {name}: per layer\n")
        lines.append(md_table(["layer", *OUTCOMES], [[i, *(f(p and p[o]) for o in OUTCOMES)]
                                                     for i, p in enumerate(r["proportions_by_layer"])]))
    lines.append(f"\n![outcomes per layer](pretrained.png)\n\nExample prompt:\n\n```\n"
                 f"{result['llm']['example']['prompt']}{result['llm']['example']['answer']}\n```\n")
    return "\n".join(lines)
