"""The method contract as a check.

:func:`check_method` builds a registered method's model and runs every clause of
:data:`~gaitbench.testing.clauses.CLAUSES` on it; each clause is also a function of its own that a
plugin's tests can run on a model they build (``check_padding(model, input_size=(32, 22))``).
A violation raises :class:`ContractViolation` (an ``AssertionError``) naming the method, the
variant, the clause and what went wrong.

Inputs are tiny (a few sequences of at most 7 frames at the variant's ``input_size``) so that the
whole contract of a small variant takes seconds on a CPU. Everything runs on the CPU. The checks set
``__tracebackhide__``: a failing test shows the violation, not the kit's frames.
"""

from __future__ import annotations

import contextlib
import random
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from .clauses import CLAUSES, select_clauses
from .helpers import random_silhouettes

__all__ = ["CLASSES", "PADDING_LENGTHS", "RELATIVE_TOLERANCE", "ContractViolation", "check_eval_determinism",
           "check_full_lengths", "check_gradients", "check_method", "check_outputs", "check_padding",
           "check_training_step"]

# Sequences of a padded batch (the longest first, so the short ones are padded): 1 and 2 frames are
# the short sequences methods treat specially (GaitGL repeats them), 4 and 7 are not multiples of
# the temporal strides in use (3 for LTA).
PADDING_LENGTHS = (7, 1, 2, 4)
# A sequence embedded in a batch and alone runs through other kernels (batch size, reduction order):
# float32 rounding leaves differences of at most 5e-7 of the largest value in the built-in networks.
# A padded frame that leaks in, or lengths ignored, moves the result by a sizeable fraction of it.
RELATIVE_TOLERANCE = 1e-5
# The class count check_method gives a method with a classifier (Method.class_count_arg), as a run
# gives the number of training subjects; the clauses then check that 'logits' has this many.
CLASSES = 4
_NAMES_SHOWN = 8


class ContractViolation(AssertionError):
    """``where`` (a method and variant, or a model) breaks clauses of the method contract.

    ``failures`` lists ``(clause, what went wrong)``; ``clauses`` the clause names."""

    def __init__(self, where: str, failures: Sequence[tuple[str, str]], note: str = ""):
        self.where = where
        self.failures = list(failures)
        self.clauses = [clause for clause, _ in self.failures]
        if len(self.failures) == 1:
            clause, detail = self.failures[0]
            message = f"{where} breaks the method contract, clause '{clause}' ({CLAUSES[clause]}): {detail}"
        else:
            message = "\n".join([f"{where} breaks {len(self.failures)} clauses of the method contract:"]
                                + [f"- '{clause}' ({CLAUSES[clause]}): {detail}" for clause, detail in self.failures])
        super().__init__(message + (f"\n{note}" if note else ""))


def _fail(where: str, clause: str, detail: str):
    __tracebackhide__ = True
    raise ContractViolation(where, [(clause, detail)])


def _where(model, where: str | None) -> str:
    return where or f"model {type(model).__name__}"


def _names(names: Sequence[str], total: int) -> str:
    shown = ", ".join(names[:_NAMES_SHOWN])
    more = f" and {len(names) - _NAMES_SHOWN} more" if len(names) > _NAMES_SHOWN else ""
    return f"{len(names)} of {total} parameters ({shown}{more})"


def _frames(n: int) -> str:
    return f"{n} frame" + ("" if n == 1 else "s")


def _forward(model, sils, lengths=None):
    """A forward as gaitbench calls it: ``model(sils)`` in training, ``model(sils, lengths=...)``
    when embedding."""
    return model(sils) if lengths is None else model(sils, lengths=lengths)


def _outputs(out, where: str, clause: str, context: str) -> dict[str, torch.Tensor]:
    """The contract's outputs of one forward (``embeddings`` and ``logits`` when present)."""
    if not isinstance(out, Mapping):
        _fail(where, clause, f"{context}: forward returned {type(out).__name__}, not a dict with 'embeddings'")
    if "embeddings" not in out:
        _fail(where, clause, f"{context}: the dict forward returned has no 'embeddings' (keys: {sorted(out)})")
    return {k: out[k] for k in ("embeddings", "logits") if k in out}


def _relative_difference(got: torch.Tensor, ref: torch.Tensor) -> float:
    """max |got - ref| / max |ref| (inf when shapes differ)."""
    if got.shape != ref.shape:
        return float("inf")
    diff = float((got.float() - ref.float()).abs().max()) if ref.numel() else 0.0
    scale = float(ref.float().abs().max()) if ref.numel() else 0.0
    if scale == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / scale


# --------------------------------------------------------------------------- outputs


def _check_output_shapes(out, n: int, classes: int | None, where: str, context: str) -> tuple[int, int]:
    """Types and shapes of one forward's outputs; returns the embeddings' ``(C, P)``."""
    shape_c_p = None
    for key, x in _outputs(out, where, "outputs", context).items():  # embeddings first
        middle = "C" if key == "embeddings" else "classes"
        if not isinstance(x, torch.Tensor):
            _fail(where, "outputs", f"{context}: '{key}' is a {type(x).__name__}, not a tensor")
        if x.dim() != 3 or x.shape[0] != n:
            hint = " (a single vector per sequence is [N, C, 1])" if key == "embeddings" and x.dim() == 2 else ""
            _fail(where, "outputs", f"{context}: '{key}' has shape {list(x.shape)}, not [N={n}, {middle}, P]{hint}")
        if not x.is_floating_point():
            _fail(where, "outputs", f"{context}: '{key}' has dtype {x.dtype}, not a floating-point type")
        if not bool(torch.isfinite(x).all()):
            _fail(where, "outputs", f"{context}: '{key}' holds NaN or infinite values")
        if key == "embeddings":
            shape_c_p = (x.shape[1], x.shape[2])
        else:
            if x.shape[2] != shape_c_p[1]:
                _fail(where, "outputs", f"{context}: 'logits' has {x.shape[2]} parts, 'embeddings' {shape_c_p[1]}: "
                                        "both are [N, ..., P] with the same P")
            if classes is not None and x.shape[1] != classes:
                _fail(where, "outputs", f"{context}: 'logits' has {x.shape[1]} classes; the model was built with "
                                        f"{classes} (Method.class_count_arg)")
    return shape_c_p


def check_outputs(model, *, input_size: tuple[int, int] = (64, 44), classes: int | None = None,
                  where: str | None = None) -> None:
    """Clause ``outputs``: forward returns a dict with float, finite ``embeddings`` ``[N, C, P]``
    and, optionally, ``logits`` ``[N, classes, P]`` (``classes`` when given), in train mode (a
    batch of 4-frame clips) and in eval mode (1, 2 and 5 frames; C and P must not change)."""
    __tracebackhide__ = True
    where = _where(model, where)
    h, w = input_size
    model.train()
    _check_output_shapes(model(random_silhouettes(2, 4, h, w, seed=1)), 2, classes, where,
                         "train mode, 2 sequences of 4 frames")
    model.eval()
    seen = {}
    with torch.inference_mode():
        for n, s in ((1, 1), (3, 2), (2, 5)):
            context = f"eval mode, {n} sequence{'s' if n > 1 else ''} of {_frames(s)}"
            seen[context] = _check_output_shapes(model(random_silhouettes(n, s, h, w, seed=2)), n, classes, where,
                                                 context)
    if len(set(seen.values())) > 1:
        shapes = "; ".join(f"{k}: [N, {c}, {p}]" for k, (c, p) in seen.items())
        _fail(where, "outputs", f"the shape of 'embeddings' depends on the input ({shapes}): an embeddings file "
                                "holds one [C, P] for every sequence")


# --------------------------------------------------------------------------- packed batches


def _packed(lengths: Sequence[int], h: int, w: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    seqs = [random_silhouettes(1, int(n), h, w, seed=10 + i)[0] for i, n in enumerate(lengths)]
    # padding filled with ones, not zeros: a padded frame that leaks into a max or a mean shows
    batch = torch.ones(len(seqs), max(lengths), h, w)
    for i, q in enumerate(seqs):
        batch[i, : len(q)] = q
    return seqs, batch


def check_padding(model, *, input_size: tuple[int, int] = (64, 44), lengths: Sequence[int] = PADDING_LENGTHS,
                  where: str | None = None) -> None:
    """Clause ``padding``: in eval mode, each sequence of a padded batch with ``lengths`` gives the
    ``embeddings`` (and ``logits``) it gives alone, within :data:`RELATIVE_TOLERANCE` of their
    largest value. The padding holds ones, so frames past ``lengths[i]`` must be ignored, whatever
    they hold."""
    __tracebackhide__ = True
    where = _where(model, where)
    h, w = input_size
    lengths = [int(n) for n in lengths]
    seqs, batch = _packed(lengths, h, w)
    model.eval()
    bad = []
    with torch.inference_mode():
        packed = _outputs(_forward(model, batch, torch.tensor(lengths)), where, "padding",
                          f"a padded batch with lengths {lengths}")
        for i, q in enumerate(seqs):
            alone = _outputs(model(q.unsqueeze(0)), where, "padding", f"sequence {i} alone")
            for key, ref in alone.items():
                if key not in packed:
                    _fail(where, "padding", f"'{key}' comes out for a sequence alone but not for a padded batch")
                err = _relative_difference(packed[key][i], ref[0])
                if not err <= RELATIVE_TOLERANCE:
                    bad.append(f"sequence {i} ({_frames(lengths[i])}): '{key}' off by {err:.3g}")
    if bad:
        _fail(where, "padding", f"in a batch with lengths {lengths}, padded to {_frames(max(lengths))} with ones, "
                                f"sequences embed differently from alone ({'; '.join(bad)}; relative to the largest "
                                f"value, allowed {RELATIVE_TOLERANCE:g}): frames past lengths[i] leak in, or "
                                "lengths is ignored")


def check_full_lengths(model, *, input_size: tuple[int, int] = (64, 44), where: str | None = None) -> None:
    """Clause ``full_lengths``: in eval mode, ``lengths`` equal to the frame count of every
    sequence give the outputs of no ``lengths`` (the embedding step always passes lengths)."""
    __tracebackhide__ = True
    where = _where(model, where)
    h, w = input_size
    x = random_silhouettes(3, 5, h, w, seed=3)
    lengths = torch.full((3,), 5, dtype=torch.long)
    model.eval()
    with torch.inference_mode():
        plain = _outputs(model(x), where, "full_lengths", "without lengths")
        full = _outputs(_forward(model, x, lengths), where, "full_lengths", "with lengths [5, 5, 5]")
    for key, ref in plain.items():
        err = _relative_difference(full[key], ref) if key in full else float("inf")
        if not err <= RELATIVE_TOLERANCE:
            _fail(where, "full_lengths", f"3 sequences of 5 frames give other '{key}' with lengths [5, 5, 5] than "
                                         f"without lengths (off by {err:.3g} of the largest value, allowed "
                                         f"{RELATIVE_TOLERANCE:g})")


# --------------------------------------------------------------------------- gradients


def check_gradients(model, *, input_size: tuple[int, int] = (64, 44), where: str | None = None) -> None:
    """Clause ``gradients``: in train mode, a loss on every output (a fixed random weighting of
    ``embeddings`` and ``logits``) sends a finite gradient, non-zero somewhere, to every
    parameter: without ``lengths`` and with ``lengths`` ``[5, 1, 3]``. A parameter with
    ``requires_grad=False`` counts as one the gradient does not reach."""
    __tracebackhide__ = True
    where = _where(model, where)
    h, w = input_size
    x = random_silhouettes(3, 5, h, w, seed=4)
    weights = torch.Generator().manual_seed(0)
    params = list(model.named_parameters())
    frozen = [n for n, p in params if not p.requires_grad]
    problems = []
    if frozen:
        problems.append(f"requires_grad=False (the trainer never updates them) for {_names(frozen, len(params))}")
    model.train()
    for lengths in (None, torch.tensor([5, 1, 3])):
        context = "without lengths" if lengths is None else f"with lengths {lengths.tolist()}"
        model.zero_grad(set_to_none=True)
        out = _outputs(_forward(model, x, lengths), where, "gradients", context)
        loss = sum((y.float() * torch.randn(y.shape, generator=weights)).sum() for y in out.values())
        loss.backward()
        missing = [n for n, p in params if p.requires_grad and p.grad is None]
        nonfinite = [n for n, p in params if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
        zero = [n for n, p in params if p.grad is not None and n not in nonfinite and not bool(p.grad.any())]
        for names, what, why in ((missing, "no gradient reaches", "unused in forward, or detached?"),
                                 (nonfinite, "NaN or infinite gradient for", "a sqrt, log or division at 0?"),
                                 (zero, "the gradient is zero everywhere for", "multiplied by 0, or a dead branch?")):
            if names:
                problems.append(f"{context}: {what} {_names(names, len(params))}: {why}")
    model.zero_grad(set_to_none=True)
    if problems:
        _fail(where, "gradients", "; ".join(problems))


# --------------------------------------------------------------------------- determinism


def check_eval_determinism(model, *, input_size: tuple[int, int] = (64, 44), where: str | None = None,
                           rebuilt: Callable[[], Any] | None = None) -> None:
    """Clause ``eval_determinism``: in eval mode, two forwards of one input agree exactly (with the
    global RNG in another state for each), with and without ``lengths``, and leave the model's
    state (parameters and buffers) as it was. With ``rebuilt`` (a function that seeds and builds
    the model), two models it builds must hold the same weights and buffers: a run's seed must fix
    the model. The global RNG is restored afterwards."""
    __tracebackhide__ = True
    where = _where(model, where)
    h, w = input_size
    x = random_silhouettes(2, 5, h, w, seed=5)
    problems = []
    model.eval()
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with torch.random.fork_rng(devices=[]), torch.inference_mode():
        for lengths in (None, torch.tensor([5, 3])):
            context = "without lengths" if lengths is None else f"with lengths {lengths.tolist()}"
            torch.manual_seed(1)
            a = _outputs(_forward(model, x, lengths), where, "eval_determinism", context)
            torch.manual_seed(2)
            b = _outputs(_forward(model, x, lengths), where, "eval_determinism", context)
            for key, first in a.items():
                second = b.get(key)
                if second is None or second.shape != first.shape:
                    problems.append(f"{context}, '{key}' changes shape or goes missing between two forwards")
                elif not torch.equal(first, second):
                    problems.append(f"{context}, two eval-mode forwards of one input give different '{key}' (max "
                                    f"|difference| {float((first - second).abs().max()):.3g}): a random draw "
                                    "(dropout, masks) in eval mode?")
    changed = [k for k, v in model.state_dict().items() if k not in before or not torch.equal(before[k], v)]
    if changed:
        problems.append(f"an eval-mode forward changed the model's state ({', '.join(changed[:_NAMES_SHOWN])}): "
                        "statistics updated outside training?")
    if rebuilt is not None:
        with torch.random.fork_rng(devices=[]):
            built, again = rebuilt().state_dict(), rebuilt().state_dict()
        differ = [k for k, v in built.items() if k not in again or not torch.equal(again[k], v)]
        if differ:
            problems.append(f"two models built from one seed differ in {', '.join(differ[:_NAMES_SHOWN])}: "
                            "initialisation draws from a source the seed does not set")
    if problems:
        _fail(where, "eval_determinism", "; ".join(problems))


# --------------------------------------------------------------------------- training


def _model_kwargs(method, model_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """``model_kwargs`` plus the class count a run would pass (:data:`CLASSES`) when the method has
    a classifier and none is given."""
    kwargs = dict(model_kwargs or {})
    if method.class_count_arg and kwargs.get(method.class_count_arg) is None:
        kwargs[method.class_count_arg] = CLASSES
    return kwargs


def _input_size(method, variant: str | None, kwargs: Mapping[str, Any]) -> tuple[int, int]:
    """The silhouette size of the variant: ``input_size`` of its keyword arguments (or of
    ``kwargs``), else the method's (64 x 44 unless it declares another)."""
    size = kwargs.get("input_size") or method.variant_kwargs(variant).get("input_size") or method.input_size
    return int(size[0]), int(size[1])


def _build(method, variant: str | None, kwargs: Mapping[str, Any], seed: int):
    """The model as a run builds it: every RNG seeded, then ``Method.create``."""
    from ..training.trainer import seed_everything

    seed_everything(seed)
    return method.create(variant, **kwargs)


def check_training_step(method, variant: str | None = None, *, model_kwargs: Mapping[str, Any] | None = None,
                        recipe: str | None = None, seed: int = 0, where: str | None = None) -> None:
    """Clause ``training_step``: one step of :class:`gaitbench.training.trainer.Trainer` with one of
    the method's recipes (its losses, optimizer and schedule, with the method's ``param_groups``
    and ``regularizer``) on a fixed batch of 2 subjects x 2 clips of 6 frames gives a finite loss,
    moves the weights, keeps them finite, and its optimizer holds every parameter. ``method`` is a
    ``gaitbench.Method``; ``recipe`` a recipe name or file, by default the recipe named after the
    variant when the method has one (``quick`` for ``quick``), else ``quick``. The model is built
    after seeding every RNG with ``seed``; the global RNGs are restored afterwards."""
    __tracebackhide__ = True
    with _isolated(threads=None):
        _training_step(method, variant, model_kwargs, recipe, seed, where)


def _training_step(method, variant, model_kwargs, recipe, seed, where) -> None:
    __tracebackhide__ = True
    from ..bench import FixedBatch
    from ..errors import GaitbenchError
    from ..training.recipe import resolve_recipe
    from ..training.trainer import Trainer, TrainingDiverged

    variant = variant or method.default_variant
    where = where or f"method '{method.name}' [variant '{variant}']"
    if recipe is None:
        recipe = variant if variant in method.recipe_names() else "quick"
    try:
        r = resolve_recipe(method, recipe)
    except GaitbenchError as exc:
        _fail(where, "training_step", f"recipe '{recipe}': {exc}")
    kwargs = {**r.model, **_model_kwargs(method, model_kwargs)}
    model = _build(method, variant, kwargs, seed)
    h, w = _input_size(method, variant, kwargs)
    batch = FixedBatch(2, 2, 6, h, w, torch.Generator().manual_seed(seed))
    trainer = Trainer(model, r, batch, method=method, variant=variant, progress=False)
    params = list(trainer.model.named_parameters())
    before = [p.detach().clone() for _, p in params]
    held = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    outside = [n for n, p in params if id(p) not in held]
    if outside:
        _fail(where, "training_step", f"the optimizer does not hold {_names(outside, len(params))}: they never "
                                      "train (does Method.param_groups leave them out?)")
    try:
        logs = trainer.train_step()
    except TrainingDiverged:
        _fail(where, "training_step", f"one step of recipe '{r.name}' gives a NaN or infinite loss")
    loss = float(logs["loss"])
    if not np.isfinite(loss):
        _fail(where, "training_step", f"one step of recipe '{r.name}' gives the loss {loss}")
    nonfinite = [n for n, p in params if not bool(torch.isfinite(p).all())]
    if nonfinite:
        _fail(where, "training_step", f"after one step of recipe '{r.name}', NaN or infinite weights in "
                                      f"{_names(nonfinite, len(params))}")
    if all(torch.equal(p.detach(), b) for (_, p), b in zip(params, before)):
        _fail(where, "training_step", f"one step of recipe '{r.name}' (loss {loss:.4g}) changes no weight")


# --------------------------------------------------------------------------- the whole contract


@contextlib.contextmanager
def _isolated(threads: int | None = 1):
    """Global state the checks touch, restored afterwards: the RNGs (models are built after seeding
    as a run seeds) and torch's thread count (one: tiny tensors run fastest on one thread, and on a
    shared machine a thread pool waits at every barrier for a core another process holds; None:
    left as it is)."""
    py_state, np_state, before = random.getstate(), np.random.get_state(), torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.set_num_threads(threads or before)
        try:
            yield
        finally:
            torch.set_num_threads(before)
            random.setstate(py_state)
            np.random.set_state(np_state)


def _describe(name: str, variant: str, model_kwargs: Mapping[str, Any] | None) -> str:
    extra = "".join(f", {k}={v!r}" for k, v in (model_kwargs or {}).items())
    return f"method '{name}' [variant '{variant}'{extra}]"


def check_method(name: str, variant: str | None = None, *, only: str | Iterable[str] | None = None,
                 skip: Mapping[str, str] | None = None, model_kwargs: Mapping[str, Any] | None = None,
                 recipe: str | None = None, seed: int = 0, plugins=None) -> list[str]:
    """Run the method contract on the registered method ``name`` (its ``variant``, or its default).

    Each clause gets a model built fresh as a run builds it (every RNG seeded with ``seed``, then
    ``Method.create(variant, **model_kwargs)``; a method with ``class_count_arg`` gets
    :data:`CLASSES` classes unless ``model_kwargs`` sets them), fed silhouettes of the variant's
    ``input_size``. ``only`` picks clauses; ``skip`` maps each clause the method opts out of to the
    reason (required). ``recipe`` is the recipe of the training step (default: the one named after
    the variant if the method has it, else ``quick``). ``plugins`` is a
    :class:`gaitbench.plugins.Plugins` (default: ``get_plugins()``).

    Returns the clauses checked. Raises :class:`ContractViolation` (an ``AssertionError``) naming
    the method, the variant and every violated clause; when ``outputs`` fails, the clauses after it
    are not run. Unknown methods, variants or clause names raise the usual errors (did you mean).
    The global RNGs and torch's thread count are restored afterwards.
    """
    __tracebackhide__ = True
    from ..plugins import get_plugins

    method = (plugins or get_plugins()).method(name)
    variant = variant or method.default_variant
    method.variant_kwargs(variant)  # an unknown variant: a ConfigError with "did you mean"
    clauses = select_clauses(only, skip)
    kwargs = _model_kwargs(method, model_kwargs)
    classes = kwargs.get(method.class_count_arg) if method.class_count_arg else None
    size = _input_size(method, variant, kwargs)
    where = _describe(name, variant, model_kwargs)

    def build():
        return _build(method, variant, kwargs, seed)

    checks: dict[str, Callable[[], None]] = {
        "outputs": lambda: check_outputs(build(), input_size=size, classes=classes, where=where),
        "padding": lambda: check_padding(build(), input_size=size, where=where),
        "full_lengths": lambda: check_full_lengths(build(), input_size=size, where=where),
        "gradients": lambda: check_gradients(build(), input_size=size, where=where),
        "eval_determinism": lambda: check_eval_determinism(build(), input_size=size, where=where, rebuilt=build),
        "training_step": lambda: check_training_step(method, variant, model_kwargs=kwargs, recipe=recipe, seed=seed,
                                                     where=where),
    }
    failures: list[tuple[str, str]] = []
    cause = None
    note = ""
    with _isolated():
        for clause in clauses:
            try:
                checks[clause]()
            except ContractViolation as violation:
                failures += violation.failures
            except Exception as exc:  # the model raised: that breaks the clause too
                failures.append((clause, f"raised {type(exc).__name__}: {exc}"))
                cause = cause or exc
            if failures and clause == "outputs":
                rest = clauses[clauses.index(clause) + 1:]
                if rest:
                    note = f"(not checked, as they read these outputs: {', '.join(rest)})"
                break
    if failures:
        raise ContractViolation(where, failures, note) from cause
    return clauses
