"""oldphoto: bring old photographs back to life.

A faithful, inference-only port of the "Bringing Old Photos Back to Life" networks
(Wan et al., CVPR 2020). ``from oldphoto import Restorer`` is the Python entry point;
torch is imported only when a restorer is built, so the CLI starts fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from oldphoto.api import Restorer

__all__ = ["Restorer", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Restorer":
        from oldphoto.api import Restorer

        return Restorer
    raise AttributeError(f"module 'oldphoto' has no attribute {name!r}")
