"""`compare-pretrained`: the interchange intervention on Hugging Face models, on tiny random ones.

The models (Llama, Qwen2, Qwen2-VL and Qwen3-VL) and their byte-level BPE tokenizer are built here and saved
into a temporary folder: nothing is downloaded.
"""
import json
import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("nnsight")
transformers = pytest.importorskip("transformers")
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402

from binding.interp import nl_task  # noqa: E402
from binding.interp.counterfactual import OUTCOMES, make_pairs  # noqa: E402
from binding.interp.nl_task import choose, render  # noqa: E402
from binding.interp.pretrained import (  # noqa: E402
    compare_pretrained, load_model, patched_logits, run_and_save, summarize)
from binding.cli import parser as binding_parser  # noqa: E402
from binding.task import TaskConfig, Vocab  # noqa: E402
from lab.errors import UserError  # noqa: E402

TEMPLATE_WORDS = "The the object is a holds Question what does hold Answer . ? :".split()
TASK = TaskConfig(n_colors=8, n_shapes=8, n_items=8, train_n=(3, 5), id_n=(3, 5), ood_n=(3, 5))


def bpe_tokenizer(vocab_size=1000, every=1):
    """A byte-level BPE (as Qwen's and Llama 3's) trained on the template and every `every`-th word of
    the word lists; with a small vocabulary, many words split into several tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    text = " ".join(TEMPLATE_WORDS + list(nl_task.COLOR_WORDS + nl_task.SHAPE_WORDS + nl_task.ITEM_WORDS)[::every])
    tok.train_from_iterator([text] * 10, trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def text_kwargs(vocab):
    return dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    tok = bpe_tokenizer()
    v = len(tok)
    torch.manual_seed(0)
    built = {
        "llama": transformers.LlamaForCausalLM(transformers.LlamaConfig(**text_kwargs(v))),
        "qwen2": transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**text_kwargs(v))),
        "qwen2vl": transformers.Qwen2VLForConditionalGeneration(transformers.Qwen2VLConfig(
            text_config=dict(text_kwargs(v + 3), rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]}),
            vision_config=dict(depth=1, embed_dim=16, hidden_size=32, num_heads=2, mlp_ratio=2),
            image_token_id=v, video_token_id=v + 1, vision_start_token_id=v + 2)),
        "qwen3vl": transformers.Qwen3VLForConditionalGeneration(transformers.Qwen3VLConfig(
            text_config=dict(text_kwargs(v + 3), head_dim=8, rope_scaling={
                "rope_type": "default", "mrope_section": [1, 1, 2], "mrope_interleaved": True}),
            vision_config=dict(depth=1, hidden_size=16, out_hidden_size=32, num_heads=2, intermediate_size=32,
                               deepstack_visual_indexes=[]),
            image_token_id=v, video_token_id=v + 1, vision_start_token_id=v + 2)),
    }
    out = {}
    for name, model in built.items():
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
        out[name] = root / name
    return out


def pairs_ids(m, n=6, seed=0):
    pairs = make_pairs(TASK, n, seed, (4, 4))
    words = nl_task.choose_words(m.tokenizer, 8, 8, 8)
    orig, cf, keep = render(pairs, words, m.tokenizer)
    assert keep.all()
    return torch.tensor(orig), torch.tensor(cf)


def test_prompt_reads_as_the_template():
    pairs = make_pairs(TASK, 4, seed=1)
    words = nl_task.choose_words(bpe_tokenizer(), 8, 8, 8)
    b = pairs.original
    for i in range(4):
        text = nl_task.prompt(b, i, words)
        q = int(b.query_slot[i])
        color, shape = words.colors[int(b.colors[i, q])], words.shapes[int(b.shapes[i, q])]
        answer = nl_task.answer_word(b, i, words)
        assert text.startswith("The ") and text.endswith("\nAnswer: the")
        assert f"The {color} object is a {shape}." in text and f"The {shape} holds the {answer}." in text
        assert f"Question: what does the {color} object hold?" in text
        assert text.count(" holds the ") == int(b.n[i])


def test_original_and_counterfactual_prompts_tokenize_to_equal_lengths():
    tok = bpe_tokenizer(vocab_size=400, every=3)
    words = nl_task.choose_words(tok, 12, 12, 12)
    token_counts = {len(nl_task.word_tokens(tok, w)) for w in words.items}
    assert token_counts != {1}  # this tokenizer splits some items, so some pairs differ in length
    pairs = make_pairs(TaskConfig(n_colors=12, n_shapes=12, n_items=12, id_n=(3, 6), ood_n=(3, 6)), 40, seed=0, n_range=(3, 6))
    orig, cf, keep = render(pairs, words, tok)
    assert all((len(o) == len(c)) == k for o, c, k in zip(orig, cf, keep))
    assert keep.any() and not keep.all()
    assert len(set(words.item_token.tolist())) == 12  # items are told apart by their first token


def test_the_prediction_is_the_candidate_item_with_the_largest_first_token_logit():
    pairs = make_pairs(TASK, 3, seed=2)
    words = nl_task.choose_words(bpe_tokenizer(), 8, 8, 8)
    item0 = Vocab.of(TASK).item0
    logits = torch.zeros(3, 1000)
    logits[:, 999] = 50.0  # the largest logit, but no item's token: never chosen
    strategies = ("positional", "symbolic", "reflexive")
    for i, strategy in enumerate(strategies):
        logits[i, words.item_token[int(pairs.predicted[strategy][i]) - item0]] = 10.0
    pred = choose(logits, pairs, words, item0)
    assert pred.tolist() == [int(pairs.predicted[s][i]) for i, s in enumerate(strategies)]


@pytest.mark.parametrize("name", ["llama", "qwen2", "qwen2vl", "qwen3vl"])
def test_patching_the_originals_own_activations_changes_nothing(folders, name):
    m = load_model(folders[name])
    orig, _ = pairs_ids(m)
    states, clean = run_and_save(m, orig)
    assert states.shape == (3, len(orig), 32)
    for layer in range(m.n_layers):
        torch.testing.assert_close(patched_logits(m, orig, layer, states[layer]), clean, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["llama", "qwen2", "qwen2vl", "qwen3vl"])
def test_patching_the_last_layer_reproduces_the_counterfactuals_logits(folders, name):
    m = load_model(folders[name])
    orig, cf = pairs_ids(m)
    _, clean = run_and_save(m, orig)
    cf_states, cf_logits = run_and_save(m, cf)
    assert not torch.allclose(clean, cf_logits, atol=1e-4)
    patched = patched_logits(m, orig, m.n_layers - 1, cf_states[-1])
    torch.testing.assert_close(patched, cf_logits, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(patched_logits(m, orig, 0, cf_states[0]), clean, atol=1e-6)  # earlier layers count


def test_a_vlm_folder_loads_its_language_backbone(folders):
    for name in ("qwen2vl", "qwen3vl"):
        m = load_model(folders[name])
        assert m.is_vlm and m.layers_path == "model.language_model.layers" and m.n_layers == 3
    assert not load_model(folders["llama"]).is_vlm


def test_end_to_end_writes_the_json_the_table_and_the_plot(folders, tmp_path):
    r = compare_pretrained(folders["llama"], folders["qwen2vl"], tmp_path, n_pairs=12, n_range=(3, 5), n_words=8,
                           batch_size=4, only_correct=False)
    saved = json.loads((tmp_path / "pretrained.json").read_text())
    assert saved == json.loads(json.dumps(r))
    assert (tmp_path / "pretrained.png").stat().st_size > 0 and "| llm |" in (tmp_path / "pretrained.md").read_text()
    assert saved["paper_reference"]["symbolic_positional_ratio"]["Qwen3-VL-8B"] == 2.463
    for name in ("llm", "vlm"):
        m = saved[name]
        assert {"model_path", "layers", "proportions_by_layer", "peak_layer", "symbolic_positional_ratio",
                "n_pairs", "n_pairs_generated", "baseline_accuracy"} <= set(m)
        assert m["layers"] == len(m["proportions_by_layer"]) == 3
        assert m["n_pairs"] == m["n_pairs_generated"] == 12  # single-token items: every pair has equal lengths
        for p in m["proportions_by_layer"]:
            assert set(p) == set(OUTCOMES) and sum(p.values()) == pytest.approx(1.0)
        assert 0 <= m["baseline_accuracy"] <= 1


def test_only_pairs_answered_correctly_count_and_the_peak_is_the_lowest_best_layer():
    # outcome indices follow OUTCOMES: 0 positional, 1 symbolic, 2 reflexive, 3 no_effect, 4 other
    res = dict(kept=np.arange(4), outcome=np.array([[3, 3, 4, 0], [0, 1, 1, 0], [1, 0, 1, 1]]),
               correct_orig=np.array([True, True, True, False]), correct_cf=np.array([True, True, False, True]))
    s = summarize(res, n_generated=5)
    assert s["n_pairs"] == 2 and s["n_pairs_generated"] == 5 and s["n_pairs_equal_length"] == 4
    assert s["proportions_by_layer"][0] == {"positional": 0, "symbolic": 0, "reflexive": 0, "no_effect": 1, "other": 0}
    assert s["peak_layer"] == 1 and s["symbolic_positional_ratio"] == 1.0
    assert s["baseline_accuracy"] == 0.75
    none = summarize(dict(res, correct_cf=np.zeros(4, bool)), n_generated=4)
    assert none["n_pairs"] == 0 and none["peak_layer"] is None and none["proportions_by_layer"] == [None] * 3


def test_a_symbolic_only_peak_has_no_ratio():
    res = dict(kept=np.arange(2), outcome=np.array([[1, 1]]), correct_orig=np.ones(2, bool), correct_cf=np.ones(2, bool))
    assert summarize(res, 2)["symbolic_positional_ratio"] is None


def test_bad_model_folders_give_one_clear_error(tmp_path, folders):
    with pytest.raises(UserError, match="does not exist"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no config.json"):
        load_model(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="config.json cannot be read"):
        load_model(tmp_path / "bad")
    (tmp_path / "notokenizer").mkdir()
    (tmp_path / "notokenizer" / "config.json").write_text((folders["llama"] / "config.json").read_text())
    with pytest.raises(UserError, match="has no tokenizer"):
        load_model(tmp_path / "notokenizer")
    shutil.copytree(folders["llama"], tmp_path / "noweights")
    (tmp_path / "noweights" / "model.safetensors").unlink()
    with pytest.raises(UserError, match="weights cannot be loaded"):
        load_model(tmp_path / "noweights")
    with pytest.raises(UserError, match="no CUDA device|not a torch device"):
        load_model(folders["llama"], device="cuda" if not torch.cuda.is_available() else "nonsense")


def test_the_command_line(folders, tmp_path):
    p = binding_parser()
    args = p.parse_args(["compare-pretrained", "--llm", str(folders["qwen2"]), "--out", str(tmp_path), "--pairs", "4",
                         "--n-range", "3,4", "--words", "10"])
    args.func(args)
    saved = json.loads((tmp_path / "pretrained.json").read_text())
    assert saved["vlm"] is None and saved["llm"]["n_pairs_generated"] == 4
    for flag, message in (("3", "--n-range: expected LO,HI"), ("2,4", "--n-range: expected 3 <= LO <= HI")):
        with pytest.raises(UserError, match=message):   # refused where the flag is parsed
            p.parse_args(["compare-pretrained", "--llm", str(folders["qwen2"]), "--out", str(tmp_path), "--n-range", flag])
    bad = p.parse_args(["compare-pretrained", "--llm", str(folders["qwen2"]), "--out", str(tmp_path), "--n-range", "3,40"])
    with pytest.raises(UserError, match="<= --words"):
        bad.func(bad)
    with pytest.raises(UserError, match="--vlm: .*nope not found"):  # found before any work on the LLM
        p.parse_args(["compare-pretrained", "--llm", str(folders["qwen2"]), "--vlm", str(tmp_path / "nope"),
                      "--out", str(tmp_path / "never")])
    assert not (tmp_path / "never").exists()
