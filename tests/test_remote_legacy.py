"""The transformers 4.x APIs restored for remote code (`models/remote/legacy.py`) keep their 4.x
meaning, and a checkpoint whose code cannot load says so in one line. No model needed."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from classbench.errors import UserError  # noqa: E402
from classbench.models.hf_adapters import code_error  # noqa: E402
from classbench.models.remote import legacy  # noqa: E402


def _allowed(mask: list[list[int]], queries: int, past: int, window: int | None) -> torch.Tensor:
    """The 4.38 rule, spelled out: a query sees an unpadded key at or before its position and within
    the sliding window."""
    batch, keys = len(mask), len(mask[0])
    allowed = torch.zeros(batch, 1, queries, keys, dtype=torch.bool)
    for b in range(batch):
        for q in range(queries):
            for k in range(keys):
                inside = window is None or k > q + past - window
                allowed[b, 0, q, k] = bool(mask[b][k]) and k <= q + past and inside
    return allowed


@pytest.mark.parametrize(("mask", "queries", "past", "window"), [
    ([[0, 1, 1, 1], [1, 1, 1, 1]], 4, 0, None),
    ([[0, 0, 1, 1, 1, 1]], 2, 4, None),
    ([[1, 1, 1, 1, 1]], 5, 0, 2),
    ([[0, 1, 1, 1, 1]], 1, 4, 2),
])
def test_the_causal_mask_is_additive_with_the_4_38_rule(mask: list[list[int]], queries: int, past: int,
                                                       window: int | None) -> None:
    embeds = torch.zeros(len(mask), queries, 8, dtype=torch.float32)
    got = legacy._prepare_4d_causal_attention_mask(torch.tensor(mask), (len(mask), queries), embeds, past, window)
    expected = _allowed(mask, queries, past, window)
    assert got.shape == expected.shape
    assert torch.equal(got == 0, expected)
    assert torch.all(got[~expected] == torch.finfo(torch.float32).min)


def test_the_padding_mask_expands_without_causality() -> None:
    got = legacy._prepare_4d_attention_mask(torch.tensor([[1, 1, 0]]), torch.float16, tgt_len=2)
    assert got.shape == (1, 1, 2, 3) and got.dtype == torch.float16
    assert torch.equal(got[0, 0, :, :2], torch.zeros(2, 2, dtype=torch.float16))
    assert torch.all(got[0, 0, :, 2] == torch.finfo(torch.float16).min)


def test_the_legacy_cache_api_round_trips_tuples() -> None:
    from transformers.cache_utils import DynamicCache

    legacy.install_legacy_cache_api()
    layers = tuple((torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4)) for _ in range(2))
    cache = DynamicCache.from_legacy_cache(layers)
    assert cache.get_usable_length(1, 1) == 3 and cache.seen_tokens == 3 and cache.get_max_length() is None
    back = cache.to_legacy_cache()
    assert all(torch.equal(a, b) for pair, original in zip(back, layers) for a, b in zip(pair, original))
    assert DynamicCache.from_legacy_cache(None).get_seq_length() == 0


def test_code_that_imports_a_removed_transformers_module_is_one_line_with_what_to_do() -> None:
    missing = ModuleNotFoundError("No module named 'transformers.modeling_attn_mask_utils'",
                                  name="transformers.modeling_attn_mask_utils")
    error = code_error("some/model", "newfamily", missing, trust=True)
    assert isinstance(error, UserError) and "\n" not in str(error)
    assert str(error).startswith("hf:some/model (newfamily): its code imports transformers.modeling_attn_mask_utils")
    assert "vllm serve" in str(error)
    assert "pip install" in str(code_error("m", "x", ModuleNotFoundError("No module named 'einops'", name="einops"), True))
