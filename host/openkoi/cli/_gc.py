"""The cyclic garbage collector, paused while the `openkoi` process starts.

Start-up imports a few hundred modules and builds pydantic's model classes: objects that live
until the process ends, so every young collection on the way frees nothing, yet together they
took about a tenth of the time to the first token (measured with `gc.callbacks`). `main()`
pauses the collector for its own process only; the prompt resumes it before its event loop
starts, any other command when it is looked up, and `main()` on every way out. What start-up
allocated is then moved to the permanent generation (`gc.freeze`), so later collections walk
only what the command itself creates. A collector the caller had already turned off stays off.
"""

from __future__ import annotations

import gc

_paused = False


def pause_collector() -> None:
    """Turn the collector off until `resume_collector()`, if it is on."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume_collector() -> None:
    """Freeze what was allocated while paused and turn the collector back on; a no-op unless
    `pause_collector()` turned it off."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()
