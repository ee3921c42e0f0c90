"""What a run asked and what it cost: questions, retries, questions that still fail, tokens, money.

Computed from the store alone, like every metric, so a killed and resumed run reports the same
figures as one that ran straight through. Questions that failed for good stay listed until a
later run answers them (their rows are replaced then), so nothing is dropped silently.
"""

from __future__ import annotations

from typing import Any

from classbench import pricing
from classbench.store import Store

LISTED = 200
"""At most this many failed questions in metrics.json; the count is always exact."""


def summary(store: Store, n_images: int) -> dict[str, Any]:
    """`questions`, `retries` (attempts beyond the first), `failed_questions` (still unanswered),
    token totals; `cost_usd` and `cost_per_1000_images` when the run has prices."""
    questions = 0
    retries = 0
    failed = []
    for image, key, attempts, error in store.question_outcomes():
        questions += 1
        retries += attempts - 1
        if error is not None:
            failed.append({"image": image, "key": key, "attempts": attempts, "error": error})
    tokens_in, tokens_out = store.token_totals()
    result: dict[str, Any] = {
        "questions": questions,
        "retries": retries,
        "n_failed_questions": len(failed),
        "failed_questions": failed[:LISTED],
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
    }
    prices = pricing.from_settings(store.meta("model"))
    if prices is not None:
        cost = prices.cost(tokens_in, tokens_out)
        result.update(cost_usd=round(cost, 6),
                      cost_per_1000_images=round(cost / n_images * 1000, 6) if n_images else None,
                      prices=prices.settings())
    return result


def lines(metrics: dict[str, Any], show: int = 5) -> list[str]:
    """The usage lines of a run's summary; none for a run that counted no tokens and no retries."""
    if not (metrics.get("tokens_in") or metrics.get("tokens_out") or metrics.get("retries")
            or metrics.get("n_failed_questions")):
        return []
    text = (f"usage: {metrics['questions']} questions, {metrics['retries']} retries, "
            f"{metrics['n_failed_questions']} failed; "
            f"tokens {metrics['tokens_in']:,} in, {metrics['tokens_out']:,} out")
    if metrics.get("cost_usd") is not None:
        per = metrics.get("cost_per_1000_images")
        text += f"; cost ${metrics['cost_usd']:.4f}" + (f" (${per:.4f} per 1,000 images)" if per is not None else "")
    result = [text]
    failed = metrics.get("failed_questions") or []
    if failed:
        result.append("questions that failed (asked again by the next run of the same command):")
        result += [f"  {q['image']} [{q['key']}]: {q['error']}" for q in failed[:show]]
        if metrics["n_failed_questions"] > show:
            result.append(f"  … and {metrics['n_failed_questions'] - show} more (failed_questions in metrics.json)")
    return result
