"""Visual frontends (spec §3): a frozen encoder, a trainable projector, patch tokens of size d_model."""
import json

import numpy as np
import pytest
import torch

from binding.images.encoders import EncoderConfig, build_visual_frontend, load_encoder, object_token_index
from binding.images.pretrain import evaluate_encoder, load_encoder_and_head, pretrain_encoder
from binding.images.render import RenderConfig, Renderer, random_objects
from lab.errors import UserError

# A tiny render config: 32-px canvas, 2x2 cells of 16 px, 8 colours, 8 shapes.
TINY = RenderConfig(canvas_px=32, cell_px=16, sprite_px=14, patch_px=16, n_colors=8, n_shapes=8)
D_MODEL = 24


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A CNN and a ViT encoder pretrained for a few steps (enough to test saving, not accuracy)."""
    out = tmp_path_factory.mktemp("encoders")
    for kind in ("cnn", "vit"):
        pretrain_encoder(kind, TINY, steps=3, out_dir=out / kind, seed=0, batch_size=8, eval_images=32, log=None)
    return out


def images(cfg=TINY, batch=4, seed=0):
    rng = np.random.default_rng(seed)
    colors, shapes, n = random_objects(cfg, batch, 1, min(4, cfg.max_objects), rng)
    return Renderer(cfg).render(colors, shapes, n, rng, as_tensor=True)


@pytest.mark.parametrize("kind", ["cnn", "vit", "linear"])
def test_frontend_maps_images_to_n_tokens_of_d_model(pretrained, kind):
    path = str(pretrained / kind) if kind != "linear" else ""
    frontend = build_visual_frontend(EncoderConfig(kind=kind, path=path), D_MODEL, TINY)
    x, _ = images()
    assert frontend.n_tokens == (32 // 16) ** 2 == TINY.n_tokens
    assert frontend(x).shape == (4, frontend.n_tokens, D_MODEL)


@pytest.mark.parametrize("kind", ["cnn", "vit"])
def test_encoder_is_frozen_and_only_the_projector_learns(pretrained, kind):
    frontend = build_visual_frontend(EncoderConfig(kind=kind, path=str(pretrained / kind)), D_MODEL, TINY)
    before = {k: v.clone() for k, v in frontend.encoder.state_dict().items()}
    frontend.train()
    assert not frontend.encoder.training  # stays in eval mode (BatchNorm statistics never move)
    opt = torch.optim.SGD([p for p in frontend.parameters() if p.requires_grad], lr=0.1)
    x, _ = images()
    frontend(x).pow(2).sum().backward()
    assert all(p.grad is None and not p.requires_grad for p in frontend.encoder.parameters())
    assert all(p.grad is not None for p in frontend.projector.parameters())
    opt.step()
    frontend(x)
    assert all(torch.equal(before[k], v) for k, v in frontend.encoder.state_dict().items())


def test_linear_ablation_has_no_frozen_part():
    frontend = build_visual_frontend(EncoderConfig(kind="linear"), D_MODEL, TINY)
    assert frontend.encoder is None and all(p.requires_grad for p in frontend.parameters())


def test_pretrained_encoder_round_trips_through_safetensors_and_json(pretrained):
    meta = json.loads((pretrained / "cnn" / "encoder.json").read_text())
    assert meta["kind"] == "cnn" and meta["render"]["canvas_px"] == 32 and "arch" in meta
    assert set(meta["eval"]) >= {"presence_acc", "color_acc", "shape_acc", "object_acc"}
    assert not list((pretrained / "cnn").glob("*.pt")) and not list((pretrained / "cnn").glob("*.pkl"))
    encoder, head, meta2 = load_encoder_and_head(pretrained / "cnn")  # rebuilt from the JSON alone
    again = evaluate_encoder(encoder, head, TINY, n_images=32)
    assert {k: round(v, 4) for k, v in again.items()} == {k: v for k, v in meta["eval"].items() if k != "images"}
    enc_b, _ = load_encoder(pretrained / "cnn" / "encoder.json")
    x, _ = images()
    assert torch.equal(encoder(x), enc_b(x))


def test_pretraining_is_deterministic_for_a_seed(pretrained, tmp_path):
    pretrain_encoder("cnn", TINY, steps=3, out_dir=tmp_path, seed=0, batch_size=8, eval_images=32, log=None)
    a = (pretrained / "cnn" / "encoder.safetensors").read_bytes()
    assert (tmp_path / "encoder.safetensors").read_bytes() == a


@pytest.mark.parametrize("patch_px", [8, 32])  # 2x2 patches per cell (pooled); 2x2 cells per patch (split)
def test_pretraining_works_when_patches_and_cells_differ_in_size(tmp_path, patch_px):
    cfg = RenderConfig(canvas_px=32, cell_px=16, sprite_px=14, patch_px=patch_px, n_colors=8, n_shapes=8)
    meta = pretrain_encoder("cnn", cfg, steps=2, out_dir=tmp_path, seed=0, batch_size=4, eval_images=8, log=None)
    frontend = build_visual_frontend(EncoderConfig(kind="cnn", path=meta["path"]), D_MODEL, cfg)
    assert frontend(images(cfg)[0]).shape == (4, (32 // patch_px) ** 2, D_MODEL)


def test_missing_or_mismatched_encoder_is_a_user_error(pretrained):
    with pytest.raises(UserError, match="pretrain-encoder"):
        build_visual_frontend(EncoderConfig(kind="cnn"), D_MODEL, TINY)
    with pytest.raises(UserError, match="holds a 'vit' encoder"):
        build_visual_frontend(EncoderConfig(kind="cnn", path=str(pretrained / "vit")), D_MODEL, TINY)
    with pytest.raises(UserError, match="n_shapes=9"):
        build_visual_frontend(EncoderConfig(kind="cnn", path=str(pretrained / "cnn")), D_MODEL,
                              RenderConfig(canvas_px=32, cell_px=16, sprite_px=14, patch_px=16, n_colors=8, n_shapes=9))
    with pytest.raises(UserError, match="checkpoint file missing"):
        build_visual_frontend(EncoderConfig(kind="vit", path="/nonexistent/enc"), D_MODEL, TINY)


def test_a_cnn_encoder_runs_on_a_larger_canvas_a_vit_does_not(pretrained):
    big = RenderConfig(canvas_px=64, cell_px=16, sprite_px=14, patch_px=16, n_colors=8, n_shapes=8)
    frontend = build_visual_frontend(EncoderConfig(kind="cnn", path=str(pretrained / "cnn")), D_MODEL, big)
    assert frontend(images(big)[0]).shape == (4, 16, D_MODEL)
    with pytest.raises(UserError, match="canvas_px=64"):
        build_visual_frontend(EncoderConfig(kind="vit", path=str(pretrained / "vit")), D_MODEL, big)


def test_object_token_index_points_at_the_token_over_each_object():
    x, positions = images(RenderConfig(n_colors=8, n_shapes=8), batch=2)  # 64 px, 16-px cells and patches
    idx = object_token_index(positions, RenderConfig(), (4, 4))
    valid = positions[..., 0] >= 0
    assert (idx[valid] == positions[valid][:, 0] * 4 + positions[valid][:, 1]).all() and (idx[~valid] == -1).all()
    idx8 = object_token_index(positions, RenderConfig(), (8, 8))  # 8-px patches: 2x2 tokens per cell
    assert (idx8[valid] == (positions[valid][:, 0] * 2 + 1) * 8 + positions[valid][:, 1] * 2 + 1).all()


# --- Hugging Face backbones from a local folder (tiny random models; skipped without transformers)


def _tiny_hf_models():
    transformers = pytest.importorskip("transformers")
    return {
        "vit": (transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=64, image_size=32, patch_size=8), 16),
        "dinov2": (transformers.Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                             mlp_ratio=2, image_size=32, patch_size=8), 16),
        "resnet": (transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                             layer_type="basic"), None),
    }


@pytest.mark.parametrize("name", ["vit", "dinov2", "resnet"])
def test_hf_backbone_loads_from_a_local_folder_and_drops_cls(tmp_path, name):
    transformers = pytest.importorskip("transformers")
    config, n_patches = _tiny_hf_models()[name]
    torch.manual_seed(0)
    transformers.AutoModel.from_config(config).save_pretrained(tmp_path / name)
    cfg = EncoderConfig(kind="hf", path=str(tmp_path / name), hf_image_px=32 if name == "resnet" else 0)
    frontend = build_visual_frontend(cfg, D_MODEL, TINY)
    x, _ = images()
    out = frontend(x)
    if name == "resnet":  # 32 px: stem /4, second stage /2 -> 4x4 map
        assert frontend.n_tokens == 16
    else:  # 32-px input, 8-px patches: 16 patch tokens, the CLS token dropped
        assert frontend.n_tokens == n_patches
    assert out.shape == (4, frontend.n_tokens, D_MODEL)
    frontend.train()
    out.sum().backward()
    assert not frontend.encoder.training
    assert all(p.grad is None for p in frontend.encoder.parameters())


def test_hf_folder_that_does_not_exist_is_a_user_error(tmp_path):
    pytest.importorskip("transformers")
    with pytest.raises(UserError, match="config.json missing"):
        build_visual_frontend(EncoderConfig(kind="hf", path=str(tmp_path / "nope")), D_MODEL, TINY)
