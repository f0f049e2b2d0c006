"""Nearest-name suggestions ("did you mean 'anthropic'?") for names a user types."""

from __future__ import annotations

from collections.abc import Iterable

MAX_DISTANCE = 2


def distance(a: str, b: str) -> int:
    """Edit distance with adjacent transpositions (`stauts` is one edit from `status`)."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            cost = 0 if ca == cb else 1
            best = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                best = min(best, previous2[j - 2] + 1)
            current.append(best)
        previous2, previous = previous, current
    return previous[-1]


def nearest(word: str, names: Iterable[str], max_distance: int = MAX_DISTANCE) -> str | None:
    """The closest of `names` to `word` (case-insensitive), when at most `max_distance` edits
    away and less than half the name's length (so `hi` suggests nothing); ties go to the first."""
    wanted = word.strip().lower()
    best: tuple[int, str] | None = None
    for name in names:
        d = distance(wanted, name.lower())
        if d > max_distance or (d and d * 2 >= max(len(name), 2)):
            continue
        if best is None or d < best[0]:
            best = (d, name)
    return best[1] if best else None


def did_you_mean(word: str, names: Iterable[str]) -> str:
    """`"; did you mean 'anthropic'?"`, or an empty string when nothing is close."""
    found = nearest(word, names)
    return f"; did you mean {found!r}?" if found else ""
