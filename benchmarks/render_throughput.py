"""Is rendering or the frozen encoder a training bottleneck? Images/s of the vectorised renderer
against a naive per-image Pillow baseline (ImageDraw, one polygon call per shape part), and the
frozen encoders' forward cost per batch, all in the same run.

    .venv/bin/python benchmarks/render_throughput.py                       # default render config
    .venv/bin/python benchmarks/render_throughput.py --out runs/bench/render_throughput.json \
        --encoder-dir runs/enc-cnn --encoder-dir runs/enc-vit

Encoder timings use the default architectures with random weights unless --encoder-dir points at
pretrained ones (the cost does not depend on the weights).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from binding.images.encoders import (EncoderConfig, ShapeCNN, ShapeViT, VisualFrontend,  # noqa: E402
                              build_visual_frontend, default_arch, load_encoder)
from binding.images.render import RenderConfig, Renderer, palette_rgb, random_objects, shape_programs  # noqa: E402
from lab.io import atomic_write_json  # noqa: E402
from lab.report import md_table  # noqa: E402
from timing import best_of  # noqa: E402



def pillow_render(cfg: RenderConfig, colors, shapes, n, positions, offsets) -> np.ndarray:
    """The naive baseline: one PIL image per example, ImageDraw.polygon per shape part."""
    from PIL import Image, ImageDraw

    progs, rgb, bg = shape_programs(cfg), palette_rgb(cfg), tuple(cfg.background_rgb)
    half = cfg.sprite_px / 2
    out = []
    for b in range(len(n)):
        img = Image.new("RGB", (cfg.canvas_px, cfg.canvas_px), bg)
        draw = ImageDraw.Draw(img)
        for i in range(n[b]):
            y0 = positions[b, i, 0] * cfg.cell_px + offsets[b, i, 0]
            x0 = positions[b, i, 1] * cfg.cell_px + offsets[b, i, 1]
            fill = tuple(int(v) for v in rgb[colors[b, i]])
            for sign, poly in progs[shapes[b, i]]:
                pts = [(x0 + (x + 1) * half, y0 + (y + 1) * half) for x, y in poly]
                draw.polygon(pts, fill=fill if sign > 0 else bg)
        out.append(np.asarray(img))
    return np.stack(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--n-min", type=int, default=2)
    ap.add_argument("--n-max", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--encoder-dir", action="append", default=[], help="pretrain_encoder output (repeatable)")
    ap.add_argument("--out", default="runs/bench/render_throughput.json")
    ap.add_argument("overrides", nargs="*", help="render config overrides, e.g. canvas_px=96 n_shapes=64")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from lab.config import apply_overrides

    cfg = apply_overrides(RenderConfig(), args.overrides).validate()
    renderer = Renderer(cfg)
    rng = np.random.default_rng(0)
    colors, shapes, n = random_objects(cfg, args.batch, args.n_min, min(args.n_max, cfg.max_objects), rng)
    B = args.batch
    rows, results = [], {"config": {**cfg.__dict__}, "batch": B, "n_range": [args.n_min, args.n_max],
                         "threads": args.threads, "torch": torch.__version__}

    t_np = best_of(lambda: renderer.render(colors, shapes, n, np.random.default_rng(1)), args.repeats, warmup=True)
    t_t = best_of(lambda: renderer.render(colors, shapes, n, np.random.default_rng(1), as_tensor=True), args.repeats,
                  warmup=True)
    _, positions, offsets = renderer.render(colors, shapes, n, np.random.default_rng(1), return_offsets=True)
    t_pil = best_of(lambda: pillow_render(cfg, colors, shapes, n, positions, offsets), max(1, args.repeats // 2),
                    warmup=True)
    for name, t in (("renderer (uint8)", t_np), ("renderer (float tensor)", t_t), ("Pillow per image (naive)", t_pil)):
        rows.append([name, f"{t * 1e3:.1f}", f"{B / t:,.0f}"])
        results[name] = {"ms_per_batch": round(t * 1e3, 2), "images_per_s": round(B / t, 1)}
    results["speedup_vs_pillow"] = round(t_pil / t_np, 1)

    images, _ = renderer.render(colors, shapes, n, np.random.default_rng(1), as_tensor=True)
    encoders: dict[str, torch.nn.Module] = {}
    for d in args.encoder_dir:
        enc, meta = load_encoder(d)
        encoders[f"{meta['kind']} ({d})"] = enc
    if not args.encoder_dir:
        encoders["cnn (default arch)"] = ShapeCNN(**default_arch("cnn", cfg)).eval()
        encoders["vit (default arch)"] = ShapeViT(**default_arch("vit", cfg)).eval()
    for name, enc in encoders.items():
        enc.eval()
        with torch.no_grad():
            t = best_of(lambda: enc(images), args.repeats, warmup=True)
            frontend = VisualFrontend(enc, enc.out_dim, 128, "mlp", 0, (0, 0))
            t_f = best_of(lambda: frontend(images), args.repeats, warmup=True)
        rows.append([f"frozen encoder {name}", f"{t * 1e3:.1f}", f"{B / t:,.0f}"])
        rows.append(["  + MLP projector to d_model 128", f"{t_f * 1e3:.1f}", f"{B / t_f:,.0f}"])
        results[f"encoder {name}"] = {"ms_per_batch": round(t * 1e3, 2), "images_per_s": round(B / t, 1),
                                      "with_projector_ms_per_batch": round(t_f * 1e3, 2),
                                      "params": sum(p.numel() for p in enc.parameters())}
    lin = build_visual_frontend(EncoderConfig(kind="linear"), 128, cfg)
    with torch.no_grad():
        t = best_of(lambda: lin(images), args.repeats, warmup=True)
    rows.append(["linear patch embedding (ablation)", f"{t * 1e3:.1f}", f"{B / t:,.0f}"])
    results["linear patch embedding"] = {"ms_per_batch": round(t * 1e3, 2), "images_per_s": round(B / t, 1)}

    print(f"canvas {cfg.canvas_px} px, cells {cfg.cell_px} px, sprites {cfg.sprite_px} px, N {args.n_min}..{args.n_max}, "
          f"batch {B}, {args.threads} thread(s)\n")
    print(md_table(["what", "ms / batch", "images / s"], rows))
    print(f"renderer vs Pillow: {results['speedup_vs_pillow']}x")
    atomic_write_json(args.out, results)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
