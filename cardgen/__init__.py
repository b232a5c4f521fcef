"""cardgen: fine-tune or load a transformers checkpoint, measure it honestly, write a trustworthy model card.

The public API is small and imports nothing heavy at import time, so ``cardgen --help`` answers instantly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cardgen.version import __version__

__all__ = ["__version__", "run", "compare", "render_card", "push", "CardgenCallback"]

if TYPE_CHECKING:  # pragma: no cover
    from cardgen.callback import CardgenCallback
    from cardgen.card.render import render_card
    from cardgen.compare.checkpoints import compare
    from cardgen.hub.push import push
    from cardgen.pipeline import run

_LAZY = {
    "run": "cardgen.pipeline",
    "compare": "cardgen.compare.checkpoints",
    "render_card": "cardgen.card.render",
    "push": "cardgen.hub.push",
    "CardgenCallback": "cardgen.callback",
}


def __getattr__(name: str) -> Any:
    # Heavy modules (torch, transformers) load only when the API is actually used.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cardgen' has no attribute {name!r}")
