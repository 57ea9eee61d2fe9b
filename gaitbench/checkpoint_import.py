"""Importing OpenGait checkpoints: the published weights, evaluated with gaitbench.

An OpenGait checkpoint is a dict whose ``model`` entry is the state dict (plus optimizer,
scheduler and iteration). gaitbench's built-in models keep the reference's parameter names, so
the import is a strict, checked copy: every key mapped, every shape equal, or a readable list of
what is missing, unexpected or mismatched. Loading uses ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from .errors import DataError, GaitbenchError


def _load_state(path: Path, method) -> tuple[dict[str, Any], int]:
    import torch

    from .io import load_weights

    payload = load_weights(path, "checkpoint")
    labelled = payload.get("method") if isinstance(payload, dict) else None
    if isinstance(labelled, str) and labelled != method.name:  # a gaitbench checkpoint says what it is
        raise GaitbenchError(f"{path} is a {labelled} checkpoint ({labelled} [{payload.get('variant', '?')}]), "
                             f"but --method asks for {method.name}: pass --method {labelled}")
    state = payload.get("model", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{path}: expected an OpenGait checkpoint (a dict whose 'model' entry is a state dict)")
    # DistributedDataParallel saves keys as module.<name>
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    iteration = payload.get("iteration", 0)
    if isinstance(iteration, torch.Tensor) and iteration.numel() == 1 and not iteration.is_floating_point():
        iteration = int(iteration)
    if not isinstance(iteration, int) or isinstance(iteration, bool) or iteration < 0:
        shown = repr(iteration) if isinstance(iteration, (str, int, float)) else type(iteration).__name__
        raise DataError(f"{path}: its 'iteration' is {shown[:60]}, expected a non-negative integer (a damaged or "
                        "foreign checkpoint)")
    return state, iteration


def infer_class_count(method, variant: str, state: dict[str, Any]) -> int | None:
    """The class count the checkpoint was trained with, found without knowing the architecture:
    the parameters whose shape changes with the class count are located on the meta device."""
    import torch

    if not method.class_count_arg:
        return None
    with torch.device("meta"):
        a = method.create(variant, **{method.class_count_arg: 2}).state_dict()
        b = method.create(variant, **{method.class_count_arg: 3}).state_dict()
    for key in a:
        if a[key].shape != b[key].shape and key in state:
            dim = next(i for i, (x, y) in enumerate(zip(a[key].shape, b[key].shape)) if x != y)
            return int(state[key].shape[dim])
    return None


def import_opengait(path: str | Path, method, variant: str | None, out: str | Path) -> dict[str, Any]:
    """Convert an OpenGait checkpoint of ``method``/``variant`` into a gaitbench checkpoint."""
    from .training.checkpoint import save_checkpoint

    path = Path(path)
    variant = variant or method.default_variant
    method.variant_kwargs(variant)
    state, iteration = _load_state(path, method)
    kwargs: dict[str, Any] = {}
    classes = infer_class_count(method, variant, state)
    if classes is not None:
        kwargs[method.class_count_arg] = classes
    model = method.create(variant, **kwargs)
    expected = model.state_dict()
    missing = sorted(k for k in expected if k not in state)
    unexpected = sorted(k for k in state if k not in expected)
    mismatched = sorted(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                        for k in expected if k in state and state[k].shape != expected[k].shape)
    if missing or unexpected or mismatched:
        lines = [f"{path} does not match {method.name} [{variant}]:"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if items:
                shown = ", ".join(items[:12]) + (f" ... (+{len(items) - 12})" if len(items) > 12 else "")
                lines.append(f"{title} ({len(items)}): {shown}")
        raise GaitbenchError("; ".join(lines))
    model.load_state_dict({k: state[k].to(expected[k].dtype) for k in expected}, strict=True)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    save_checkpoint(out, model, method=method.name, variant=variant, iteration=iteration, recipe={},
                    data_fingerprint=f"imported:opengait:{digest[:16]}", model_kwargs=kwargs,
                    imported_from={"format": "opengait", "file": str(path), "sha256": digest})
    return {"method": method.name, "variant": variant, "keys": len(expected), "iteration": iteration,
            "model_kwargs": kwargs, "sha256": digest, "out": str(out)}
