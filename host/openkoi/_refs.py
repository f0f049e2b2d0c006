"""Model references: `provider/model`, split on the first `/`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from openkoi._errors import ModelRefError


@dataclass(frozen=True, slots=True)
class ModelRef:
    provider: str
    model: str

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"


def parse_model_ref(text: str, known_providers: Iterable[str] = ()) -> ModelRef:
    """`together/meta-llama/Llama-3.3-70B-Instruct-Turbo` -> (`together`, `meta-llama/Llama-...`).

    A reference without a provider prefix is an error that lists the providers we know.
    """
    text = text.strip()
    provider, sep, model = text.partition("/")
    if not sep or not provider or not model:
        known = ", ".join(sorted(set(known_providers)))
        hint = f" Known providers: {known}." if known else ""
        raise ModelRefError(
            f"model reference {text!r} must be written as provider/model "
            f"(for example openai/gpt-5.2).{hint}"
        )
    if provider != provider.strip() or any(c.isspace() for c in provider):
        raise ModelRefError(f"model reference {text!r} has whitespace in its provider name")
    return ModelRef(provider=provider.lower(), model=model)
