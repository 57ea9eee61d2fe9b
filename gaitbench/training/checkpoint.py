"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)`` only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import DataError, WriteError
from ..io import atomic_write, load_weights, package_version

REQUIRED = ("model", "method", "variant", "iteration")


def save_checkpoint(path: str | Path, model: torch.nn.Module, *, method: str, variant: str, iteration: int,
                    recipe: dict[str, Any], data_fingerprint: str, **extra: Any) -> Path:
    """Write to a temporary file, then rename: an interrupted save never leaves a broken file."""
    path = Path(path)
    payload = {
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "method": method,
        "variant": variant,
        "iteration": int(iteration),
        "recipe": recipe,
        "data_fingerprint": data_fingerprint,
        "gaitbench_version": package_version(),
        **extra,
    }
    try:
        return atomic_write(path, lambda fh: torch.save(payload, fh))
    except WriteError as exc:
        # the run goes on from the newest whole checkpoint once the disk takes writes again
        others = sorted((p for p in path.parent.glob("*.pt") if p != path), key=lambda p: p.stat().st_mtime)
        last = (f"The last good checkpoint is {others[-1]}: continue from it with --resume once the disk takes "
                "writes again" if others else "No earlier checkpoint of this run exists")
        err = WriteError(f"{exc}. {last}")
        err.path, err.errno, err.needed = exc.path, exc.errno, exc.needed
        raise err from None


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's contents; never unpickles arbitrary objects."""
    path = Path(path)
    payload = load_weights(path, "gaitbench checkpoint")
    if not isinstance(payload, dict) or any(k not in payload for k in REQUIRED):
        raise DataError(f"{path}: expected a gaitbench checkpoint with keys {list(REQUIRED)}")
    for key, types, what in (("method", str, "a method name"), ("variant", str, "a variant name"),
                             ("iteration", int, "an iteration count"), ("model", dict, "a state dict"),
                             ("model_kwargs", (dict, type(None)), "a table of model arguments")):
        value = payload.get(key)
        if not isinstance(value, types) or isinstance(value, bool) or (key == "iteration" and value < 0):
            raise DataError(f"{path}: its {key!r} is {_shown(value)}, expected {what} (a damaged or foreign checkpoint)")
    return payload


def _shown(value) -> str:
    text = repr(value) if isinstance(value, (str, int, float, type(None))) else type(value).__name__
    return text if len(text) <= 60 else text[:60] + "..."


def load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model``; any missing or unexpected key, or a tensor of another shape,
    is an error listing them (torch's own would be a RuntimeError)."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{source}: its 'model' entry is not a state dict (names -> tensors)")
    own = model.state_dict()
    mismatched = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                  for k, v in state.items() if k in own and v.shape != own[k].shape]
    problems = [f"shape mismatch {mismatched}"] if mismatched else []
    result = model.load_state_dict({k: v for k, v in state.items() if k not in own or v.shape == own[k].shape},
                                   strict=False)
    missing = [k for k in result.missing_keys if not any(m.startswith(f"{k}:") for m in mismatched)]
    if missing:
        problems.append(f"missing keys {missing}")
    if result.unexpected_keys:
        problems.append(f"unexpected keys {result.unexpected_keys}")
    if problems:
        raise DataError(f"{source}: state dict does not match the model: " + "; ".join(problems))


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file, read in chunks (checkpoints of large models are hundreds of MB)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_pretrained(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str, *,
                    classes: tuple[int, int] | None = None) -> dict[str, Any]:
    """Initialise ``model`` from the weights of a model of the same architecture trained elsewhere
    (pre-training on another dataset, then fine-tuning).

    Every tensor of ``state`` is loaded into the parameter or buffer of the same name and shape. The
    one mismatch allowed is the classifier's: with ``classes = (classes of state, classes of
    model)`` differing, a tensor whose shape differs from the model's in exactly one dimension, of
    size ``classes[0]`` there against ``classes[1]``, keeps the model's fresh initialisation.
    Anything else (missing or unexpected keys, other shape differences) is refused with the keys
    named, and nothing is loaded.

    Returns ``{"loaded": number of tensors, "reinitialised": [keys kept fresh]}``.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    reinit, wrong = [], []
    for key in own:
        if key not in state or tuple(state[key].shape) == tuple(own[key].shape):
            continue
        a, b = tuple(state[key].shape), tuple(own[key].shape)
        diff = [i for i, (x, y) in enumerate(zip(a, b)) if x != y] if len(a) == len(b) else None
        if classes is not None and classes[0] != classes[1] and diff is not None and len(diff) == 1 \
                and (a[diff[0]], b[diff[0]]) == tuple(classes):
            reinit.append(key)
        else:
            wrong.append(f"{key} {list(a)} vs {list(b)}")
    problems = []
    if missing:
        problems.append(f"keys the model has and the checkpoint lacks: {missing}")
    if unexpected:
        problems.append(f"keys the model does not have: {unexpected}")
    if wrong:
        problems.append(f"shapes that differ (checkpoint vs model): {wrong}")
    if problems:
        raise DataError(f"{source}: cannot initialise this model from it (not the same architecture): "
                        + "; ".join(problems))
    keep = {k: v for k, v in state.items() if k not in reinit}
    model.load_state_dict({**own, **keep}, strict=True)
    return {"loaded": len(keep), "reinitialised": reinit}
