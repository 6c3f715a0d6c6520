"""The egress plugin's setting (``bottle_register_settings``): what the Messages API's tokens cost, for
``bottle usage`` and ``[budget] max_usd``.

``model_prices`` maps a model-name prefix to USD per million tokens of each
kind; the longest prefix of a reply's model decides (``claude-opus-4-5``
before ``claude-opus-4``); a model no prefix names is counted, not priced.
The defaults are Anthropic's list prices as published when this was written
(cache writes at 1.25x input, cache reads at 0.1x), with each family's
newest price for the models that came after (``claude-opus``); set your own in
config.toml (``[model_prices."claude-sonnet-4"]`` ...) or ``BOTTLE_MODEL_PRICES``
(JSON).
"""

from pydantic import BaseModel, Field


def _price(input_usd: float, output_usd: float) -> dict[str, float]:
    return {"input_tokens": input_usd, "output_tokens": output_usd,
            "cache_creation_input_tokens": round(input_usd * 1.25, 4), "cache_read_input_tokens": round(input_usd / 10, 4)}


DEFAULT_PRICES = {
    # A family's newest known price, for its models newer than this table (the longest prefix decides).
    "claude-opus": _price(5, 25),
    "claude-sonnet": _price(3, 15),
    "claude-haiku": _price(1, 5),
    "claude-opus-4-5": _price(5, 25),
    "claude-opus-4": _price(15, 75),
    "claude-sonnet-4": _price(3, 15),
    "claude-3-7-sonnet": _price(3, 15),
    "claude-haiku-4-5": _price(1, 5),
    "claude-3-5-haiku": _price(0.8, 4),
}


class EgressSettings(BaseModel):
    model_prices: dict[str, dict[str, float]] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES),
        description="USD per million tokens by model-name prefix (input_tokens, output_tokens, "
        "cache_creation_input_tokens, cache_read_input_tokens): for `bottle usage` and [budget] max_usd",
    )
