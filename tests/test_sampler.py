"""The global-batch sampler: every row once, duplicates spread apart, exact length, resumable."""

from __future__ import annotations

import numpy as np
import pytest

from data import PairsData, SpreadBatchSampler, TrainTable, grouped_batches, index_texts, load_pairs, spread_batches


def table_from_ids(anchor_ids: list[int], positive_ids: list[int]) -> TrainTable:
    pairs = PairsData([f"q{a}" for a in anchor_ids], [f"p{p}" for p in positive_ids], [[] for _ in anchor_ids], "t")
    return index_texts(pairs)


def repeats_within_batches(batches: list[np.ndarray], ids: np.ndarray) -> int:
    return sum(len(batch) - len(set(ids[batch].tolist())) for batch in batches)


def fewest_possible_repeats(ids: np.ndarray, num_batches: int) -> int:
    """A text that occurs c times must repeat at least c - num_batches times within batches."""
    return int(np.maximum(np.bincount(ids) - num_batches, 0).sum())


@pytest.mark.parametrize("rows,batch", [(100, 10), (103, 10), (7, 10), (64, 64)])
def test_every_row_exactly_once_per_epoch(rows, batch):
    rng = np.random.default_rng(0)
    table = table_from_ids(rng.integers(0, 20, rows).tolist(), rng.integers(0, 30, rows).tolist())
    batches = spread_batches(table.anchor_ids, table.positive_ids, batch, np.random.default_rng(1))
    assert sorted(np.concatenate(batches).tolist()) == list(range(rows))
    assert [len(b) for b in batches[:-1]] == [batch] * (len(batches) - 1)  # only the last one may be short


def test_a_passage_shared_by_42_questions_is_spread_evenly():
    """ObliQA's most reused passage is the positive of 42 questions; with 7 batches, 6 per batch."""
    positives = [0] * 42 + list(range(1, 169))
    anchors = list(range(210))
    anchors[100] = anchors[101] = anchors[102] = 999  # and a question asked three times
    table = table_from_ids(anchors, positives)
    batches = spread_batches(table.anchor_ids, table.positive_ids, 30, np.random.default_rng(0))
    assert [int((table.positive_ids[b] == 0).sum()) for b in batches] == [6] * 7
    assert repeats_within_batches(batches, table.anchor_ids) == 0


def test_obliqa_pairs_repeat_texts_far_less_than_a_plain_shuffle(obliqa):
    table = index_texts(load_pairs(obliqa / "train_pairs.jsonl"))
    for batch in (512, 64):
        batches = spread_batches(table.anchor_ids, table.positive_ids, batch, np.random.default_rng(0))
        shuffled = np.random.default_rng(0).permutation(len(table))
        plain = [shuffled[i : i + batch] for i in range(0, len(table), batch)]
        for ids in (table.anchor_ids, table.positive_ids):
            ours, floor = repeats_within_batches(batches, ids), fewest_possible_repeats(ids, len(batches))
            assert ours <= floor * 1.05 + 2  # within 5% of the bound
            assert ours <= repeats_within_batches(plain, ids)
    assert repeats_within_batches(batches, table.positive_ids) == 0  # at batch 64 no passage repeats


@pytest.mark.parametrize("drop_last", [True, False])
@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_length_is_exact_and_the_batches_divide_over_processes(drop_last, world_size):
    table = table_from_ids(list(range(103)), list(range(103)))
    sampler = SpreadBatchSampler(table, 20, seed=3, drop_last=drop_last, world_size=world_size)
    batches = list(sampler)
    assert len(batches) == len(sampler) == (5 if drop_last or world_size > 3 else 6)  # 3 rows left over
    assert all(len(b) % world_size == 0 for b in batches)
    seen = np.concatenate(batches)
    assert len(set(seen.tolist())) == len(seen)  # nothing repeated
    assert len(seen) == (100 if drop_last else 100 + 3 - 3 % world_size)


def test_same_seed_same_batches_on_every_process_new_order_each_epoch():
    table = table_from_ids(list(range(50)), [i % 17 for i in range(50)])
    a, b = SpreadBatchSampler(table, 10, seed=1), SpreadBatchSampler(table, 10, seed=1)
    first_a, first_b = list(a), list(b)
    assert all(np.array_equal(x, y) for x, y in zip(first_a, first_b))
    assert a.epoch == 1 and a.position == 0
    second = list(a)
    assert not all(np.array_equal(x, y) for x, y in zip(first_a, second))
    other_seed = list(SpreadBatchSampler(table, 10, seed=2))
    assert not all(np.array_equal(x, y) for x, y in zip(first_a, other_seed))


def test_state_dict_resumes_at_the_next_batch():
    table = table_from_ids(list(range(60)), list(range(60)))
    sampler = SpreadBatchSampler(table, 10, seed=5)
    full_run = list(sampler) + list(sampler)  # two epochs
    interrupted = SpreadBatchSampler(table, 10, seed=5)
    it = iter(interrupted)
    for _ in range(4):
        next(it)
    state = interrupted.state_dict()
    resumed = SpreadBatchSampler(table, 10, seed=5)
    resumed.load_state_dict(state)
    rest = list(resumed) + list(resumed)
    assert all(np.array_equal(x, y) for x, y in zip(full_run[4:], rest[: len(full_run) - 4]))
    with pytest.raises(ValueError, match="seed"):
        SpreadBatchSampler(table, 10, seed=6).load_state_dict(state)


def test_bad_batch_sizes_are_refused():
    table = table_from_ids(list(range(30)), list(range(30)))
    with pytest.raises(ValueError, match="does not divide over 4 processes"):
        SpreadBatchSampler(table, 10, seed=0, world_size=4)
    with pytest.raises(ValueError, match="30 training rows are fewer than train.global_batch 64"):
        SpreadBatchSampler(table, 64, seed=0)
    assert len(SpreadBatchSampler(table, 64, seed=0, drop_last=False)) == 1
    with pytest.raises(ValueError, match="3 training rows cannot give each of 4 processes a row"):
        SpreadBatchSampler(table_from_ids([0, 1, 2], [0, 1, 2]), 64, seed=0, drop_last=False, world_size=4)


def distinct_groups_per_batch(batches: list[np.ndarray], groups: np.ndarray) -> list[int]:
    return [len(set(groups[batch].tolist())) for batch in batches]


def test_batches_by_group_keep_each_group_together():
    """grouped_batches cuts the groups, laid end to end in a random order, into consecutive batches:
    groups the size of a batch fill one batch each, groups of half a batch two to a batch, and with
    uneven groups a batch holds more than one only where a group ends inside it (at most
    batches + groups - 1 pairs of batch and group in all). Spread batches mix them."""
    rng = np.random.default_rng(0)
    whole = np.repeat(np.arange(5), 64)[rng.permutation(320)]
    batches = grouped_batches(whole, 64, np.random.default_rng(1))
    assert sorted(np.concatenate(batches).tolist()) == list(range(320))
    assert distinct_groups_per_batch(batches, whole) == [1] * 5
    halves = np.repeat(np.arange(10), 32)[rng.permutation(320)]
    assert distinct_groups_per_batch(grouped_batches(halves, 64, np.random.default_rng(2)), halves) == [2] * 5
    sizes = [217, 245, 304, 5, 1, 1, 90, 40, 77]  # ObliQA's largest documents, a few small ones
    uneven = np.repeat(np.arange(len(sizes)), sizes)[rng.permutation(sum(sizes))]
    batches = grouped_batches(uneven, 64, np.random.default_rng(3))
    assert sorted(np.concatenate(batches).tolist()) == list(range(sum(sizes)))
    assert [len(b) for b in batches] == [64] * (sum(sizes) // 64) + [sum(sizes) % 64]
    assert sum(distinct_groups_per_batch(batches, uneven)) <= len(batches) + len(sizes) - 1
    table = table_from_ids(list(range(len(uneven))), list(range(len(uneven))))
    spread = spread_batches(table.anchor_ids, table.positive_ids, 64, np.random.default_rng(3))
    assert sum(distinct_groups_per_batch(spread, uneven)) > 3 * len(spread)  # a plain shuffle mixes them


def test_the_sampler_batches_by_group_resumably_and_refuses_what_it_cannot():
    groups = np.repeat(np.arange(4), 25)
    table = table_from_ids(list(range(100)), list(range(100)))
    sampler = SpreadBatchSampler(table, 25, seed=7, groups=groups)
    first = [batch.tolist() for batch in sampler]
    assert len(first) == 4 and sorted(distinct_groups_per_batch([np.array(b) for b in first], groups)) == [1] * 4
    second = [batch.tolist() for batch in sampler]
    assert second != first  # a new order each epoch
    halfway = SpreadBatchSampler(table, 25, seed=7, groups=groups)
    batches = iter(halfway)
    next(batches), next(batches)
    again = SpreadBatchSampler(table, 25, seed=7, groups=groups)
    again.load_state_dict(halfway.state_dict())
    assert [batch.tolist() for batch in again] == first[2:]
    with pytest.raises(ValueError, match="batch groups: 99 for 100 rows"):
        SpreadBatchSampler(table, 25, seed=7, groups=groups[:99])
    moved = groups.copy()
    moved[[0, 99]] = moved[[99, 0]]  # one row in another document since the checkpoint
    with pytest.raises(ValueError, match="batch groups .* differ from this run's"):
        SpreadBatchSampler(table, 25, seed=7, groups=moved).load_state_dict(again.state_dict())
    with pytest.raises(ValueError, match="batch groups .* differ from this run's"):
        SpreadBatchSampler(table, 25, seed=7).load_state_dict(again.state_dict())
    plain = SpreadBatchSampler(table, 25, seed=7)
    assert plain.state_dict() == {"epoch": 0, "position": 0, "seed": 7}  # as checkpoints before data.batch_by
