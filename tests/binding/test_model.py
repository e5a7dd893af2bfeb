"""The transformer's contracts: causality, unattendable positions, the embeddings entry, hooks."""
import pytest
import torch

from binding.hooks import hook_points, hooks, run_with_cache
from binding.model import ModelConfig, Transformer
from lab.errors import UserError

V = 50


def make(pos="rope", layers=2):
    torch.manual_seed(0)
    return Transformer(ModelConfig(n_layers=layers, d_model=32, n_heads=4, d_ff=64, pos_encoding=pos,
                                   max_len=64), V).eval()


@pytest.mark.parametrize("pos", ["rope", "nope", "learned"])
def test_a_later_token_never_changes_an_earlier_output(pos):
    model = make(pos)
    x = torch.randint(0, V, (3, 20))
    y = x.clone()
    y[:, 12:] = torch.randint(0, V, (3, 8))
    with torch.no_grad():
        a, b = model(x), model(y)
    assert torch.allclose(a[:, :12], b[:, :12], atol=1e-6)
    assert not torch.allclose(a[:, 12:], b[:, 12:])


@pytest.mark.parametrize("pos", ["rope", "nope", "learned"])
def test_an_unattendable_position_never_influences_any_other_output(pos):
    model = make(pos)
    x = torch.randint(0, V, (2, 16))
    attendable = torch.ones(2, 16, dtype=torch.bool)
    hidden = [3, 4, 9]
    attendable[:, hidden] = False
    y = x.clone()
    y[:, hidden] = torch.randint(0, V, (2, len(hidden)))
    with torch.no_grad():
        a, b = model(x, attendable=attendable), model(y, attendable=attendable)
    others = [i for i in range(16) if i not in hidden]
    assert torch.allclose(a[:, others], b[:, others], atol=1e-6)
    # but it still occupies a position: removing it changes later RoPE/learned distances
    if pos != "nope":
        shorter = torch.cat([x[:, :3], x[:, 5:9], x[:, 10:]], dim=1)
        with torch.no_grad():
            c = model(shorter)
        assert not torch.allclose(a[:, -1], c[:, -1], atol=1e-4)


def test_unattendable_mask_is_respected_in_the_explicit_attention_path_too():
    model = make()
    attendable = torch.ones(1, 10, dtype=torch.bool)
    attendable[0, 4] = False
    patterns = {}
    with hooks(model, [("blocks.0.attn.hook_pattern", lambda p, n: patterns.setdefault(n, p))]):
        model(torch.randint(0, V, (1, 10)), attendable=attendable)
    p = patterns["blocks.0.attn.hook_pattern"][0]       # [H, q, k]
    assert torch.all(p[:, 5:, 4] == 0) and torch.all(p.triu(1) == 0)


def test_embeddings_entry_equals_the_token_path_when_given_the_token_embeddings():
    model = make("learned")
    x = torch.randint(0, V, (2, 12))
    at = torch.zeros(2, 12, dtype=torch.bool)
    at[:, 2:7] = True
    with torch.no_grad():
        plain = model(x)
        via_embeds = model(torch.zeros_like(x), input_embeds=model.embed(x), embeds_at=torch.ones_like(at))
        partial = model(x.masked_fill(at, 0), input_embeds=model.embed(x), embeds_at=at)
    assert torch.allclose(plain, via_embeds, atol=1e-6)
    assert torch.allclose(plain, partial, atol=1e-6)


def test_logits_at_positions_match_the_full_output():
    model = make()
    x = torch.randint(0, V, (3, 10))
    pos = torch.tensor([9, 4, 0])
    with torch.no_grad():
        full, picked = model(x), model(x, positions=pos)
    assert torch.allclose(full[torch.arange(3), pos], picked, atol=1e-6)


def test_hook_points_have_documented_names_and_shapes():
    model = make(layers=3)
    names = set(hook_points(model))
    for l in range(3):
        for h in ("hook_resid_pre", "hook_attn_out", "hook_mlp_out", "hook_resid_post",
                  "attn.hook_pattern", "attn.hook_attn_scores"):
            assert f"blocks.{l}.{h}" in names
    x = torch.randint(0, V, (2, 9))
    _, cache = run_with_cache(model, ["blocks.1.hook_resid_pre", "blocks.1.attn.hook_pattern"], x)
    assert cache["blocks.1.hook_resid_pre"].shape == (2, 9, 32)
    assert cache["blocks.1.attn.hook_pattern"].shape == (2, 4, 9, 9)


def test_explicit_and_fused_attention_agree():
    model = make()
    x = torch.randint(0, V, (2, 11))
    with torch.no_grad():
        fused = model(x)
        explicit, _ = run_with_cache(model, ["blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern"], x)
    assert torch.allclose(fused, explicit, atol=1e-5)


def test_patching_resid_pre_with_its_own_activation_changes_nothing_and_with_another_does():
    model = make()
    x, y = torch.randint(0, V, (2, 10)), torch.randint(0, V, (2, 10))
    name = "blocks.1.hook_resid_pre"
    out_x, cx = run_with_cache(model, [name], x)
    _, cy = run_with_cache(model, [name], y)
    with torch.no_grad(), hooks(model, [(name, lambda a, n: cx[name])]):
        same = model(x)
    with torch.no_grad(), hooks(model, [(name, lambda a, n: cy[name])]):
        swapped = model(x)
    assert torch.allclose(out_x, same, atol=1e-6)
    assert not torch.allclose(out_x, swapped)


def test_bad_model_configs_are_clear_errors():
    with pytest.raises(UserError, match="divisible"):
        ModelConfig(d_model=30, n_heads=4).validate()
    model = make()
    with pytest.raises(UserError, match="max_len"):
        model(torch.zeros(1, 65, dtype=torch.long))
