"""A value that must never be printed: not in a repr, an error, a log line or a traceback."""

from __future__ import annotations


class Secret:
    """Holds a credential. `str()` and `repr()` hide it; `reveal()` is the only way out."""

    __slots__ = ("_value", "expires_at", "kind", "source")

    def __init__(
        self,
        value: str,
        source: str = "",
        *,
        kind: str = "api-key",
        expires_at: float | None = None,
    ) -> None:
        self._value = value
        self.source = source  # where it came from, e.g. "env:OPENAI_API_KEY"; never the value
        self.kind = kind  # "api-key" or "oauth" (sent as a Bearer token)
        self.expires_at = expires_at  # unix time, for tokens that expire

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        where = f", source={self.source!r}" if self.source else ""
        return f"Secret('********'{where})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[object, ...]:  # pickling would write the secret out
        raise TypeError("a Secret cannot be pickled")
