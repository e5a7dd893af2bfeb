"""The task generator, read as the spec (§1)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from binding.task import (BOS, CTX_END, PAD, QUE, TaskConfig, Vocab, describe, is_heldout,
                          more_queries, sample_batch, seq_len)
from lab.errors import UserError

CFG = TaskConfig(n_colors=40, n_shapes=40, n_items=24, train_n=(2, 8), id_n=(2, 8), ood_n=(9, 24)).validate()


def solve_by_brute_force(tokens: list[int], voc: Vocab) -> int:
    """Read the sequence like a person: find the queried colour, its shape, that shape's item."""
    ctx_end = tokens.index(CTX_END)
    que = tokens.index(QUE)
    context = tokens[1:ctx_end]
    assoc = tokens[ctx_end + 1:que]
    query = tokens[que + 1]
    shape = context[context.index(query) + 1]
    return assoc[assoc.index(shape) + 1]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), lo=st.integers(1, 24), span=st.integers(0, 23))
def test_every_example_is_well_formed_and_its_answer_is_the_brute_force_answer(seed, lo, span):
    hi = min(24, lo + span)
    voc = Vocab.of(CFG)
    batch = sample_batch(CFG, 16, np.random.default_rng(seed), (lo, hi))
    for i in range(len(batch)):
        n = int(batch.n[i])
        assert lo <= n <= hi
        toks = batch.tokens[i].tolist()
        assert toks[0] == BOS and toks[1 + 2 * n] == CTX_END and toks[2 + 4 * n] == QUE
        assert all(t == PAD for t in toks[seq_len(n):])
        assert int(batch.query_pos[i]) == seq_len(n) - 1
        colors, shapes = toks[1:1 + 2 * n:2], toks[2:2 + 2 * n:2]
        items = toks[3 + 2 * n:3 + 4 * n:2]
        # symbols distinct within an example, each from its own vocabulary
        assert len(set(colors)) == len(set(shapes)) == len(set(items)) == n
        assert all(voc.color0 <= c < voc.shape0 for c in colors)
        assert all(voc.shape0 <= s < voc.item0 for s in shapes)
        assert all(voc.item0 <= t < voc.size for t in items)
        # every context shape is bound exactly once
        assert sorted(toks[2 + 2 * n:2 + 4 * n:2]) == sorted(shapes)
        assert solve_by_brute_force(toks[:seq_len(n)], voc) == int(batch.answer[i])
        assert int(batch.hop_target[i]) == shapes[int(batch.query_slot[i])]


def test_associations_are_shuffled_by_default_and_in_context_order_when_not():
    rng = np.random.default_rng(0)
    shuffled = sample_batch(CFG, 500, rng, (8, 8))
    identity = np.arange(8)
    share_in_order = np.mean([(shuffled.assoc_order[i].numpy() == identity).all() for i in range(500)])
    assert share_in_order < 0.01  # 1/8! for a uniform permutation
    plain = sample_batch(TaskConfig(**{**CFG.__dict__, "shuffle_associations": False}), 50, rng, (8, 8))
    assert (plain.assoc_order.numpy() == identity).all()
    # the query slot is uniform over the N objects
    counts = np.bincount(shuffled.query_slot.numpy(), minlength=8)
    assert counts.min() > 30


def test_n_range_boundaries_are_inclusive():
    batch = sample_batch(CFG, 2000, np.random.default_rng(1), (3, 5))
    assert set(batch.n.tolist()) == {3, 4, 5}


def test_same_seed_same_batch_and_different_seed_different_batch():
    a = sample_batch(CFG, 64, np.random.default_rng(7))
    b = sample_batch(CFG, 64, np.random.default_rng(7))
    c = sample_batch(CFG, 64, np.random.default_rng(8))
    assert (a.tokens == b.tokens).all()
    assert a.tokens.shape != c.tokens.shape or not (a.tokens == c.tokens).all()


def test_training_never_sees_an_evaluation_example():
    rng = np.random.default_rng(3)
    train = sample_batch(CFG, 4000, rng, (2, 3))
    evals = sample_batch(CFG, 400, rng, (2, 3), split="eval")
    assert not is_heldout(train.tokens.numpy(), CFG.heldout_fraction).any()
    assert is_heldout(evals.tokens.numpy(), CFG.heldout_fraction).all()
    train_rows = {tuple(r) for r in train.tokens.tolist()}
    assert not any(tuple(r) in train_rows for r in evals.tokens.tolist())


@pytest.mark.parametrize("changes, message", [
    ({"ood_n": (9, 40)}, "N=40"),
    ({"train_n": (5, 3)}, "empty range"),
    ({"id_n": (0, 3)}, "empty range"),
    ({"n_items": 0}, "n_items"),
])
def test_impossible_configs_fail_with_one_clear_message(changes, message):
    with pytest.raises(UserError, match=message):
        TaskConfig(**{**CFG.__dict__, **changes}).validate()


def test_describe_reads_the_example_in_words():
    voc = Vocab.of(CFG)
    batch = sample_batch(CFG, 1, np.random.default_rng(0), (3, 3))
    text = describe(batch, 0, voc, prediction=int(batch.answer[0]))
    assert "N=3" in text and voc.word(int(batch.answer[0])) in text and "wrong" not in text
    wrong = voc.item0 + (int(batch.answer[0]) - voc.item0 + 1) % CFG.n_items
    assert "<- wrong" in describe(batch, 0, voc, prediction=wrong)


def test_first_hop_queries_ask_for_the_colours_shape_and_leave_other_batches_unchanged():
    """The first-hop training aid: [CTX_END] in the [QUE] slot, the answer is the query colour's
    shape; never in evaluation batches; at fraction 0 the batch is the one drawn without it."""
    voc = Vocab.of(CFG)
    batch = sample_batch(CFG, 400, np.random.default_rng(5), first_hop_fraction=0.5)
    first = []
    for i in range(len(batch)):
        n = int(batch.n[i])
        toks = batch.tokens[i, :seq_len(n)].tolist()
        if toks[2 + 4 * n] == CTX_END:
            first.append(i)
            context, query = toks[1:1 + 2 * n], toks[-1]
            assert int(batch.answer[i]) == context[context.index(query) + 1] == int(batch.hop_target[i])
        else:
            assert toks[2 + 4 * n] == QUE and solve_by_brute_force(toks, voc) == int(batch.answer[i])
    assert 150 < len(first) < 250
    assert "first-hop query" in describe(batch, first[0], voc) and "first-hop" not in describe(
        batch, next(i for i in range(len(batch)) if i not in first), voc)
    evals = sample_batch(CFG, 200, np.random.default_rng(5), split="eval", first_hop_fraction=1.0)
    assert (evals.tokens[np.arange(len(evals)), 2 + 4 * evals.n] == CTX_END).all()   # held-out ones
    assert is_heldout(evals.tokens.numpy(), CFG.heldout_fraction).all()
    assert (evals.answer == evals.hop_target).all()
    plain = sample_batch(CFG, 64, np.random.default_rng(9))
    assert (sample_batch(CFG, 64, np.random.default_rng(9), first_hop_fraction=0.0).tokens == plain.tokens).all()


def test_evaluate_first_hop_asks_held_out_colour_to_shape_questions():
    from binding.evaluate import evaluate

    small = TaskConfig(**{**CFG.__dict__, "ood_n": (9, 10)})
    first_hop_oracle = lambda batch: batch.hop_target   # always names the query colour's shape
    fh = evaluate(first_hop_oracle, small, 64, seed=0, first_hop=True)
    assert fh["queries"] == "first-hop" and fh["id_accuracy"] == fh["ood_accuracy"] == 1.0
    assert evaluate(first_hop_oracle, small, 64, seed=0)["id_accuracy"] == 0.0   # two-hop answers are items


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31), k=st.integers(2, 10))
def test_more_queries_ask_distinct_colours_of_the_context_and_show_no_answer(seed, k):
    """The several-queries aid: the example stays as drawn, then `[QUE] colour` pairs follow, one
    per other object (at most k queries in all); each is answered by the two hops at its own
    position, and no item appears after the associations."""
    voc = Vocab.of(CFG)
    batch = sample_batch(CFG, 16, np.random.default_rng(seed))
    tokens, positions, answers = more_queries(batch, CFG, k, np.random.default_rng(seed + 1))
    assert positions.shape == answers.shape == (16, min(k, int(batch.n.max())))
    for i in range(len(batch)):
        n = int(batch.n[i])
        row = tokens[i].tolist()
        assert row[:seq_len(n)] == batch.tokens[i, :seq_len(n)].tolist()      # the example as drawn
        asked = int((answers[i] != -100).sum())
        assert asked == min(k, n)
        end = seq_len(n) + 2 * (asked - 1)
        assert all(t == PAD for t in row[end:])
        assert row[seq_len(n):end:2] == [QUE] * (asked - 1)
        assert not any(voc.item0 <= t for t in row[3 + 4 * n:end])             # no answer shown
        colours = [row[int(p)] for p in positions[i, :asked]]
        assert len(set(colours)) == asked and all(voc.color0 <= c < voc.shape0 for c in colours)
        for p, a in zip(positions[i, :asked].tolist(), answers[i, :asked].tolist()):
            # the question ending at p, read like a person: the same answer as the model is taught
            assert solve_by_brute_force(row[:seq_len(n) - 1] + [row[p]], voc) == a
