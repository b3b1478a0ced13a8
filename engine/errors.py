"""The one exception type the engine raises for invalid specs, configs and data."""

from __future__ import annotations

from collections.abc import Sequence

Loc = tuple[str | int, ...]


def format_loc(loc: Sequence[str | int]) -> str:
    """Render a location tuple as a dotted path, e.g. ``layers[1].activation``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "<root>"


class ConfigError(ValueError):
    """An invalid network spec, training config or dataset.

    Parameters
    ----------
    loc : sequence of str or int
        Where the problem is, e.g. ``("layers", 1, "activation")``.
    reason : str
        What is wrong and what to change.
    """

    def __init__(self, loc: Sequence[str | int], reason: str) -> None:
        self.loc: Loc = tuple(loc)
        self.reason = reason
        super().__init__(f"{format_loc(self.loc)}: {reason}")

    def prefixed(self, *prefix: str | int) -> ConfigError:
        """Return the same error located under ``prefix``."""
        return ConfigError((*prefix, *self.loc), self.reason)
