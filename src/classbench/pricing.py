"""What a run costs: prices per million tokens, the run's spend, and the `--max-cost` cap.

Tokens are counted per question in the store, so cost is derived like every other metric: from
the store alone, never from a running total that a killed process could lose. Prices are looked
up once when the backend loads (flags first, then the table below) and stored with the model's
settings, so a report prices a run the way it was priced when it ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from classbench.errors import UserError

TABLE_DATE = "2025-08"
"""When PRICES was checked against https://openai.com/api/pricing (standard tier, text tokens)."""

PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-2024-05-13": (5.00, 15.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "o4-mini": (1.10, 4.40),
}
"""USD per million (input, output) tokens for known API models. Approximate: providers change
prices, batch and cached-input discounts are ignored, and images are billed as the input tokens
the server reports. Pass --price-in/--price-out for exact or other prices."""

IN, OUT, SOURCE = "price_in_per_mtok", "price_out_per_mtok", "price_source"


@dataclass(frozen=True)
class Prices:
    """USD per million input and output tokens."""

    input: float
    output: float
    source: str

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input + tokens_out * self.output) / 1e6

    def settings(self) -> dict[str, Any]:
        """How the prices travel in a backend's settings (and so into the run's provenance)."""
        return {IN: self.input, OUT: self.output, SOURCE: self.source}


def lookup(model: str, price_in: float | None, price_out: float | None) -> Prices | None:
    """Flags win; otherwise the table entry for the model or its dated snapshot (`gpt-4o-2024-11-20`
    is priced as `gpt-4o`, the longest matching name). None when nothing is known."""
    known = PRICES.get(model)
    if known is None:
        prefixes = [name for name in PRICES if model.startswith(name + "-")]
        known = PRICES[max(prefixes, key=len)] if prefixes else None
    if price_in is None and price_out is None:
        return Prices(*known, source=f"table {TABLE_DATE} (approximate)") if known else None
    table_in, table_out = known or (0.0, 0.0)
    return Prices(table_in if price_in is None else price_in, table_out if price_out is None else price_out,
                  source="--price-in/--price-out")


def from_settings(model_meta: dict[str, Any] | None) -> Prices | None:
    settings = (model_meta or {}).get("settings") or {}
    if settings.get(IN) is None or settings.get(OUT) is None:
        return None
    return Prices(float(settings[IN]), float(settings[OUT]), str(settings.get(SOURCE, "")))


class BudgetReached(Exception):
    """The next batch would pass --max-cost: stop between batches, keep every answer, resume later."""


@dataclass
class Budget:
    """The --max-cost cap. It reads the store incrementally (only the questions written since its
    last check), so checking before every chunk costs nothing however large the run grows."""

    cap: float
    prices: Prices
    _tokens_in: int = 0
    _tokens_out: int = 0
    _priced_images: set[str] = field(default_factory=set)
    _seen_id: int = 0

    @classmethod
    def for_run(cls, max_cost: float | None, model_meta: dict[str, Any] | None) -> Budget | None:
        if max_cost is None:
            return None
        prices = from_settings(model_meta)
        if prices is None:
            model = (model_meta or {}).get("model_id", "this model")
            raise UserError(f"--max-cost {max_cost}: no prices are known for {model}; "
                            "pass --price-in and --price-out (USD per million tokens)")
        return cls(max_cost, prices)

    def check(self, store: Any, upcoming: int) -> None:
        """Raise BudgetReached when the answers so far, plus what `upcoming` more images would cost
        at the run's average so far, pass the cap: the run stops before the batch, not after it."""
        rows = store.token_rows(self._seen_id)
        for row_id, image, tokens_in, tokens_out in rows:
            self._seen_id = row_id
            if tokens_in is not None:
                self._tokens_in += tokens_in
                self._tokens_out += tokens_out or 0
                self._priced_images.add(image)
        spent = self.prices.cost(self._tokens_in, self._tokens_out)
        priced = len(self._priced_images)
        estimate = spent / priced * upcoming if priced else 0.0
        if spent + estimate > self.cap or spent >= self.cap:
            raise BudgetReached(
                f"stopped: spent ${spent:.4f}; the next {upcoming} images would cost about ${estimate:.4f} more, "
                f"past --max-cost ${self.cap:g}. Every answer so far is kept; run the same command with a higher "
                "--max-cost to go on."
            )
