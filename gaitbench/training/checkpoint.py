"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)`` only."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..errors import DataError

REQUIRED = ("model", "method", "variant", "iteration")


def save_checkpoint(path: str | Path, model: torch.nn.Module, *, method: str, variant: str, iteration: int,
                    recipe: dict[str, Any], data_fingerprint: str, **extra: Any) -> Path:
    """Write to a temporary file, then rename: an interrupted save never leaves a broken file."""
    from .. import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "method": method,
        "variant": variant,
        "iteration": int(iteration),
        "recipe": recipe,
        "data_fingerprint": data_fingerprint,
        "gaitbench_version": __version__,
        **extra,
    }
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's contents; never unpickles arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"{path}: not a loadable gaitbench checkpoint (weights-only load failed: "
                        f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(payload, dict) or any(k not in payload for k in REQUIRED):
        raise DataError(f"{path}: expected a gaitbench checkpoint with keys {list(REQUIRED)}")
    return payload


def load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model``; any missing or unexpected key is an error listing them."""
    result = model.load_state_dict(state, strict=False)
    problems = []
    if result.missing_keys:
        problems.append(f"missing keys {result.missing_keys}")
    if result.unexpected_keys:
        problems.append(f"unexpected keys {result.unexpected_keys}")
    if problems:
        raise DataError(f"{source}: state dict does not match the model: " + "; ".join(problems))
