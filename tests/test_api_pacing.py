"""The arithmetic behind API runs, without a server: backoff, Retry-After, the request-rate cap,
prices, the cost columns, which settings are runtime-only, and reading top_logprobs."""

from __future__ import annotations

import asyncio
import base64
import io
import random
import time
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

import pytest
from PIL import Image

from classbench import pricing
from classbench.errors import UserError
from classbench.models.ratelimit import Backoff, RateLimiter, retry_after_s
from classbench.report import leaderboard
from classbench.spec import RunSpec


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 8])
def test_backoff_doubles_with_jitter_and_a_cap(attempt: int) -> None:
    backoff = Backoff(base_s=0.5, cap_s=3.0, rng=random.Random(attempt))
    full = min(3.0, 0.5 * 2 ** (attempt - 1))
    delays = [backoff.delay(attempt) for _ in range(200)]
    assert all(full / 2 <= d <= full for d in delays)
    assert len(set(delays)) > 100


def test_retry_after_is_a_floor_but_never_beyond_the_cap() -> None:
    backoff = Backoff(base_s=0.1, cap_s=30.0, rng=random.Random(0))
    assert backoff.delay(1, retry_after=2.5) == 2.5
    assert backoff.delay(1, retry_after=3600) == 30.0
    assert backoff.delay(1, retry_after=0.0) <= 0.1


def test_retry_after_headers_in_every_form() -> None:
    assert retry_after_s({"Retry-After": "3"}) == 3.0
    assert retry_after_s({"retry-after": "0.25"}) == 0.25
    assert retry_after_s({"retry-after-ms": "1500", "Retry-After": "9"}) == 1.5
    now = datetime(2025, 1, 1, tzinfo=timezone.utc)
    date = format_datetime(now + timedelta(seconds=7), usegmt=True)
    assert retry_after_s({"Retry-After": date}, now=now.timestamp()) == pytest.approx(7.0)
    assert retry_after_s({"Retry-After": "soon"}) is None
    assert retry_after_s({}) is None and retry_after_s(None) is None


def test_the_rate_cap_spaces_request_starts_evenly() -> None:
    limiter = RateLimiter(rpm=1200)  # one start every 50 ms

    async def starts() -> list[float]:
        stamps = []
        for _ in range(5):
            await limiter.wait()
            stamps.append(time.monotonic())
        return stamps

    stamps = asyncio.run(starts())
    # Starts keep to their slots: the k-th is never sooner than k intervals after the first (a late
    # wake-up may shorten the next gap, never the rate over the window).
    assert all(stamp - stamps[0] >= k * 0.05 - 1e-3 for k, stamp in enumerate(stamps))


def test_prices_come_from_flags_then_the_table() -> None:
    table = f"table {pricing.TABLE_DATE} (approximate)"
    assert pricing.lookup("gpt-4o", None, None) == pricing.Prices(2.5, 10.0, table)
    assert pricing.lookup("gpt-4o-2024-11-20", None, None).input == 2.5
    assert pricing.lookup("gpt-4o-mini-2024-07-18", None, None).input == 0.15
    assert pricing.lookup("gpt-4o-2024-05-13", None, None).input == 5.0
    assert pricing.lookup("Qwen/Qwen2-VL-7B-Instruct", None, None) is None
    assert pricing.lookup("Qwen/Qwen2-VL-7B-Instruct", 0.1, None) == pricing.Prices(0.1, 0.0, "--price-in/--price-out")
    assert pricing.lookup("gpt-4o", None, 0.0).input == 2.5
    assert pricing.Prices(2.5, 10.0, "").cost(1_000_000, 100_000) == pytest.approx(3.5)


def test_a_cost_cap_without_prices_is_refused() -> None:
    with pytest.raises(UserError, match="--price-in and --price-out"):
        pricing.Budget.for_run(1.0, {"model_id": "openai:my-local-model", "settings": {}})
    assert pricing.Budget.for_run(None, None) is None


def _metrics(model: str, cost: float | None) -> dict:
    average = {"precision": 0.9, "recall": 0.9, "f1-score": 0.9, "support": 10}
    return {"model": model, "strategy": "closed-set", "macro_avg": average, "weighted_avg": average,
            "accuracy": 0.9, "peak_gpu_gb": None, "images_per_s": 2.0, "cost_usd": cost,
            "cost_per_1000_images": None if cost is None else cost * 100}


def test_the_leaderboard_shows_cost_only_when_a_run_was_priced() -> None:
    local = leaderboard.markdown([_metrics("hf:Qwen", None)])
    assert local.splitlines()[0] == "| " + " | ".join(leaderboard.COLUMNS) + " |"
    mixed = leaderboard.markdown([_metrics("openai:gpt-4o", 0.0123), _metrics("hf:Qwen", None)])
    header, _, api, hf = mixed.splitlines()
    assert header.endswith("| Cost (USD) | USD / 1k images |")
    assert api.endswith("| 0.0123 | 1.23 |") and hf.endswith("| N/A | N/A |")
    assert leaderboard.as_csv([_metrics("openai:gpt-4o", 0.5)]).splitlines()[0].endswith("Cost (USD),USD / 1k images")


def test_api_settings_never_change_a_runs_identity() -> None:
    plain = RunSpec.from_flat(dataset="/tmp/photos", model="openai:gpt-4o", strategy="closed-set")
    tuned = RunSpec.from_flat(dataset="/tmp/photos", model="openai:gpt-4o", strategy="closed-set",
                              base_url=["http://a:8000/v1", "http://b:8000/v1"], concurrency=64, rpm=500, timeout_s=5,
                              max_retries=2, price_in=1, price_out=2, max_cost=10, api_key_env="MY_KEY",
                              options={"backoff_s": 0.1})
    assert plain.identity_hash() == tuned.identity_hash()
    one = RunSpec.from_flat(dataset="/tmp/photos", model="openai:x", base_url="http://a/v1")
    assert one.model.settings["base_url"] == ["http://a/v1"]
    assert tuned.model_settings().base_url == ["http://a:8000/v1", "http://b:8000/v1"]
    assert tuned.runtime.max_cost == 10 and "max_cost" not in tuned.model.settings
    sampled = RunSpec.from_flat(dataset="/tmp/photos", model="openai:gpt-4o", strategy="closed-set",
                                options={"temperature": 0.7})
    assert sampled.identity_hash() != plain.identity_hash()  # sampling settings do change answers


def test_top_logprobs_of_the_first_answer_token_are_read() -> None:
    from classbench.models.api_response import _first_token_logprobs

    choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "cat"},
              "logprobs": {"content": [
                  {"token": "cat", "logprob": -0.1, "bytes": None,
                   "top_logprobs": [{"token": "cat", "logprob": -0.1, "bytes": None},
                                    {"token": "dog", "logprob": -2.5, "bytes": None}]},
                  {"token": ".", "logprob": -0.01, "bytes": None, "top_logprobs": []}]}}
    assert _first_token_logprobs(choice) == ("cat", {"cat": -0.1, "dog": -2.5})
    assert _first_token_logprobs({"message": {"content": "cat"}, "logprobs": None}) == (None, None)


def test_images_are_sent_lossless_and_bounded_by_max_pixels() -> None:
    from classbench.models.api_payload import data_url

    image = Image.new("RGB", (400, 300), (12, 34, 56))
    image.putpixel((0, 0), (255, 0, 0))
    sent = data_url(image)
    decoded = Image.open(io.BytesIO(base64.b64decode(sent.split(",", 1)[1])))
    assert sent.startswith("data:image/png;base64,") and decoded.size == (400, 300)
    assert decoded.convert("RGB").tobytes() == image.tobytes()
    small = Image.open(io.BytesIO(base64.b64decode(data_url(image, max_pixels=30_000).split(",", 1)[1])))
    assert small.size[0] * small.size[1] <= 30_000 and abs(small.size[0] / small.size[1] - 4 / 3) < 0.02
