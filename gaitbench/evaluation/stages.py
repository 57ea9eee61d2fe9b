"""Post-processing stages (re-ranking, query expansion) as registered objects.

A stage maps a :class:`StageInput` (probe and gallery embeddings, the protocol's metric, and the
probe x gallery distance when known) to a new one:

- a *feature* stage (query expansion) returns new ``probe``/``gallery`` tensors and
  ``distance=None``: the next stage, or the engine, recomputes the distance from them;
- a *distance* stage (re-ranking) keeps the features and returns a new ``distance``.

Stages run in the order asked for (:func:`run_stages`); no stage runs unless asked. Parameters
are resolved by :func:`resolve_params`: the stage's ``defaults``, then a named ``preset`` (for
stages that have presets), then the user's explicit keys; unknown keys and presets are errors.

How an evaluation runs them (``--stage qe --stage rerank --set stages.rerank.k1=20``)::

    stages = [(get_plugins().stages().get(name), params_of[name]) for name in requested]
    for stage, params in stages:
        resolve_params(stage, params)            # fail early: unknown keys, presets, types
    data = StageInput(probe, gallery, metric, distance=baseline)  # tensors on the device
    distance, records = run_stages(data, stages)  # records go into the report

The built-in stages name their ``apply`` functions as ``"module:function"`` references, imported on
first call, so listing stages never imports torch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Mapping

from ..contracts import Stage
from ..errors import ConfigError, PluginError, did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "Stage",
    "StageInput",
    "resolve_params",
    "run_stages",
]


@dataclass
class StageInput:
    """What a stage receives and returns.

    ``probe`` ``[q, C, P]`` and ``gallery`` ``[g, C, P]`` are float32 tensors on the evaluation
    device; ``metric`` is the protocol's distance ("euc", "cos" or "flat_euc", see
    :mod:`gaitbench.evaluation.distance`); ``distance`` is the ``[q, g]`` float32 distance, or None
    when not computed yet or invalidated by a feature stage.

    ``distance_source`` says what ``distance`` holds: ``"metric"`` (the default) means the plain
    metric distance of ``probe`` x ``gallery``, which a stage may reuse instead of recomputing it;
    a distance stage sets it to its own name, so later stages know the values were transformed.
    """

    probe: torch.Tensor
    gallery: torch.Tensor
    metric: str
    distance: torch.Tensor | None = None
    distance_source: str = "metric"

    @property
    def device(self):
        return self.probe.device

    def distances(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The metric's distance ``[len(x), len(y)]`` (float32, on ``x``'s device), computed in
        blocks by :func:`gaitbench.evaluation.distance.prepared_distance`."""
        from .distance import prepared_distance

        return prepared_distance(_prepare(x, self.metric, "x"), _prepare(y, self.metric, "y"))

    def distance_blocks(self, x: torch.Tensor) -> Callable[[Any, Any], torch.Tensor]:
        """A function ``blocks(rows, cols)`` giving the metric's distance between ``x[rows]`` and
        ``x[cols]`` (slices or index tensors), with ``x`` prepared once for all calls.

        Stages that need many blocks of one all-pairs distance (re-ranking, clustering) use
        this instead of :meth:`distances`, which prepares both sides on every call.
        """
        return _PreparedBlocks(x, self.metric)

    def current_distance(self) -> torch.Tensor:
        """``distance``, computing and caching ``probe`` x ``gallery`` when it is None."""
        if self.distance is None:
            self.distance = self.distances(self.probe, self.gallery)
            self.distance_source = "metric"
        return self.distance


def _prepare(x, metric: str, role: str):
    """``distance.prepare`` for a tensor on any device (prepared where it lies)."""
    import torch

    from .distance import prepare

    device = x.device if isinstance(x, torch.Tensor) else "cpu"
    return prepare(x, metric, role=role, device=device, name=role)


class _PreparedBlocks:
    """``blocks(rows, cols)`` over one embedding set prepared once in both GEMM roles."""

    def __init__(self, x, metric: str):
        import torch

        from .distance import PreparedEmbeddings

        self.y = y = _prepare(x, metric, "y")
        if metric == "cos":  # both roles hold the same normalised vectors
            self.x = PreparedEmbeddings(y.operand, metric, "x", y.num_parts, y.feat_shape, "x")
        else:
            # The "x" operand [-2 v, |v|^2, 1] from the "y" operand [v, 1, |v|^2] (the layout
            # documented by PreparedEmbeddings): bit-identical to preparing it, half the work.
            c = y.operand.shape[2] - 2
            operand = torch.empty_like(y.operand)
            torch.mul(y.operand[:, :, :c], -2.0, out=operand[:, :, :c])
            operand[:, :, c] = y.operand[:, :, c + 1]
            operand[:, :, c + 1] = 1.0
            self.x = PreparedEmbeddings(operand, metric, "x", y.num_parts, y.feat_shape, "x")
        self.n = y.n

    @staticmethod
    def _rows(p, index):
        import torch

        from .distance import PreparedEmbeddings

        if isinstance(index, slice):
            operand = p.operand[index] if p.metric == "cos" else p.operand[:, index]
        else:
            index = torch.as_tensor(index, device=p.device, dtype=torch.long)
            dim = 0 if p.metric == "cos" else 1
            operand = p.operand.index_select(dim, index)
        return PreparedEmbeddings(operand, p.metric, p.role, p.num_parts, p.feat_shape, p.name)

    def __call__(self, rows, cols):
        from .distance import prepared_distance

        return prepared_distance(self._rows(self.x, rows), self._rows(self.y, cols))


def _check_type(stage: Stage, key: str, value: Any, default: Any) -> Any:
    """``value`` converted to the type of ``default`` (int, float, bool or str), or ConfigError."""
    where = f"stage {stage.name!r}: parameter {key!r}"
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, str):
        ok = isinstance(value, str)
    else:
        return value
    if not ok:
        raise ConfigError(f"{where} must be {type(default).__name__}, got {value!r}")
    return value


def resolve_params(stage: Stage, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The parameters ``stage`` runs with: ``defaults``, then the preset's values (for stages with
    presets; ``preset`` picks it, default ``defaults["preset"]``), then the explicit keys of
    ``params``. The result includes ``preset``. Resolving a resolved dict gives it back.

    Raises ConfigError naming the stage and the key for unknown keys (with "did you mean"),
    unknown presets and values of the wrong type.
    """
    params = dict(params or {})
    allowed = set(stage.defaults) | ({"preset"} if stage.presets else set())
    for key in params:
        if key not in allowed:
            raise ConfigError(f"stage {stage.name!r}: " + did_you_mean(key, allowed, "parameter"))
    resolved = {k: v for k, v in stage.defaults.items() if k != "preset"}
    if stage.presets:
        preset = params.pop("preset", stage.defaults.get("preset"))
        if not isinstance(preset, str) or preset not in stage.presets:
            raise ConfigError(f"stage {stage.name!r}: " + did_you_mean(str(preset), stage.presets, "preset"))
        for key, value in stage.presets[preset].items():
            resolved[key] = value
        resolved["preset"] = preset
    for key, value in params.items():
        resolved[key] = _check_type(stage, key, value, stage.defaults.get(key))
    return resolved


def _synchronize(data: StageInput) -> None:
    import torch

    if data.probe.is_cuda:
        torch.cuda.synchronize(data.probe.device)


def run_stages(data: StageInput, stages: list[tuple[Stage, Mapping[str, Any]]]):
    """Apply ``stages`` (``(stage, params)`` pairs) in order to ``data``.

    Returns ``(distance, records)``: the final ``[q, g]`` distance (computed from the features if
    the last stage was a feature stage) and, per stage as run, ``{"name", "params" (resolved,
    including the preset), "transductive", "seconds"}`` for reports.
    """
    records = []
    q, g = len(data.probe), len(data.gallery)
    for stage, params in stages:
        resolved = resolve_params(stage, params)
        call = {k: v for k, v in resolved.items() if k != "preset"}
        _synchronize(data)
        started = time.perf_counter()
        out = stage(data, **call)
        if not isinstance(out, StageInput):
            raise PluginError(f"stage {stage.name!r} returned {type(out).__name__}, expected a StageInput")
        _synchronize(out)
        seconds = time.perf_counter() - started
        if out.distance is not None and tuple(out.distance.shape) != (q, g):
            raise PluginError(f"stage {stage.name!r} returned a distance of shape {tuple(out.distance.shape)}, "
                              f"expected ({q}, {g})")
        records.append({"name": stage.name, "params": resolved, "transductive": bool(stage.transductive),
                        "seconds": round(seconds, 4)})
        data = out
    return data.current_distance(), records


def with_distance(data: StageInput, distance, source: str) -> StageInput:
    """``data`` with a new probe x gallery ``distance`` produced by stage ``source``."""
    return replace(data, distance=distance, distance_source=source)


def with_features(data: StageInput, probe=None, gallery=None) -> StageInput:
    """``data`` with new ``probe``/``gallery`` features; the distance is invalidated."""
    return replace(data, probe=data.probe if probe is None else probe,
                   gallery=data.gallery if gallery is None else gallery, distance=None,
                   distance_source="metric")
