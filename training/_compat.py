"""The one place that imports timm, after making torchvision importable against a CPU-only torch.

Why: timm imports torchvision. The torchvision wheel on PyPI is built against the CUDA torch; its C++
extension (``torchvision/_C.so``) fails to load next to the CPU build of torch, and torchvision's
``_meta_registrations`` then registers fake kernels for ``torchvision::nms`` / ``torchvision::qnms``,
which raises ``RuntimeError: operator torchvision::nms does not exist`` at import time. ltag never uses
torchvision's detection ops, so when the extension cannot be loaded we *define* the two op schemas
(without kernels) so that the import succeeds. If the extension loads (matching builds), nothing is
defined and torchvision works normally. Every training module imports timm through :func:`import_timm`.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from types import ModuleType

import torch

log = logging.getLogger(__name__)

_LIB: torch.library.Library | None = None  # kept referenced: dropping it would unregister the schemas
_PREPARED = False


def _prepare_torchvision() -> None:
    global _LIB, _PREPARED
    if _PREPARED:
        return
    _PREPARED = True
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return  # timm will fail with a clear ImportError of its own
    pkg = Path(next(iter(spec.submodule_search_locations)))
    candidates = sorted(pkg.glob("_C*.so")) + sorted(pkg.glob("_C*.pyd"))
    for so in candidates:
        try:
            torch.ops.load_library(str(so))
            return
        except (OSError, RuntimeError) as e:
            log.debug("torchvision extension %s does not load against this torch (%s)", so, e)
    try:
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _LIB = lib
    except RuntimeError as e:  # already defined by someone else: fine
        log.debug("torchvision op schemas already present (%s)", e)


def import_timm() -> ModuleType:
    """Import and return :mod:`timm`, working around a CUDA torchvision next to a CPU torch."""
    _prepare_torchvision()
    import timm

    return timm
