"""Run state as plain data (common.plain): what goes in comes back with the same types and bits,
through real JSON and a real safetensors file, and nothing but the named dataclasses is rebuilt."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from common.plain import PlainDataError, from_plain, to_plain
from retrieval.metrics import DimResult


def through_disk(value, tmp_path, types):
    arrays = {}
    plain = json.loads(json.dumps(to_plain(value, arrays)))  # strictly what JSON keeps
    save_file(arrays, str(tmp_path / "a.safetensors"))
    return from_plain(plain, load_file(str(tmp_path / "a.safetensors")), types), plain


def test_a_run_state_comes_back_equal_in_type_and_bits(tmp_path):
    rng = np.random.default_rng(0)
    inner = DimResult({"ndcg@10": 0.25}, {"ndcg@10": rng.random(3)}, [["d1"], ["d2", "d3"], []], rng.random((3, 2)))
    result = DimResult(
        metrics={"ndcg@10": 1 / 3, "mrr@10": float("nan")},
        per_query={"ndcg@10": rng.random(3), "hits": np.array([True, False, True])},
        ranked_ids=[["a", "b"], ["c"], []],
        ranked_scores=np.array([[0.5, -np.inf], [np.float32(1 / 3), 0.0], [0.0, 0.0]], dtype=np.float32),
        quantized={"int8": {"ndcg@10": 0.2, "bytes_per_vector": 384.0}},
        fused={"convex": inner},
        fusion_weight=0.45,
    )
    state = {"before": {384: result, 64: None}, "step": 6, "pair": (1, "x"), "config": {"dims": [384, 64]}}
    back, plain = through_disk(state, tmp_path, {"DimResult": DimResult})
    assert set(back["before"]) == {384, 64} and back["before"][64] is None  # int keys stay ints
    assert back["pair"] == (1, "x") and back["step"] == 6 and back["config"] == {"dims": [384, 64]}
    got = back["before"][384]
    assert isinstance(got, DimResult) and isinstance(got.fused["convex"], DimResult)
    assert got.metrics["ndcg@10"] == 1 / 3 and np.isnan(got.metrics["mrr@10"])
    for name, values in result.per_query.items():
        assert got.per_query[name].dtype == values.dtype and np.array_equal(got.per_query[name], values)
    assert got.ranked_scores.dtype == np.float32 and np.array_equal(got.ranked_scores, result.ranked_scores)
    assert got.ranked_ids == result.ranked_ids and got.quantized == result.quantized and got.fusion_weight == 0.45
    assert np.array_equal(got.fused["convex"].ranked_scores, inner.ranked_scores)
    assert "DimResult" in json.dumps(plain) and "numpy" not in json.dumps(plain)


def test_only_the_named_dataclasses_are_rebuilt(tmp_path):
    value = DimResult({}, {}, [], np.zeros((0, 2), dtype=np.float32))
    with pytest.raises(PlainDataError, match="'DimResult' is not something this state may hold"):
        through_disk(value, tmp_path, {})
    forged = {"__dataclass__": "DimResult", "fields": {"metrics": {}, "__class__": "x"}}
    with pytest.raises(PlainDataError, match="has no field '__class__'"):
        from_plain(forged, {}, {"DimResult": DimResult})
    with pytest.raises(PlainDataError, match="refers to array '7'"):
        from_plain({"__array__": "7"}, {}, {})


def test_a_dict_key_that_looks_like_a_marker_stays_a_key(tmp_path):
    back, _ = through_disk({"__array__": "not an array", "ok": 1}, tmp_path, {})
    assert back == {"__array__": "not an array", "ok": 1}


@pytest.mark.parametrize("value", [object(), np.array(["a", "b"]), {1, 2}])
def test_what_has_no_plain_form_is_refused(value):
    with pytest.raises(PlainDataError, match="has no plain form"):
        to_plain({"x": value}, {})
