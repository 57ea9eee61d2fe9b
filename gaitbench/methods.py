"""The method contract: what a method plugin registers through ``register_methods``.

Kept free of torch imports so that listing methods stays fast; ``build_model`` imports torch lazily
inside the plugin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from .errors import ConfigError, did_you_mean


@dataclass(frozen=True)
class Method:
    """A gait recognition method.

    - ``build_model(**kwargs)`` returns a ``torch.nn.Module`` whose ``forward(sils, lengths=None)``
      maps ``[N, T, H, W]`` silhouettes in [0, 1] to ``{"embeddings": [N, C, P]}`` (plus
      ``"logits": [N, classes, P]`` for methods with a classifier head).
    - ``variants`` maps a variant name to the keyword arguments ``build_model`` receives for it;
      ``default_variant`` is used when none is asked for.
    - ``recipes`` is a folder of recipe files (``<name>.toml``): one per protocol with the paper's
      hyper-parameters, and ``quick.toml`` for CPU runs on synthetic data.
    - ``input_size`` is the silhouette (height, width) the model expects.
    """

    name: str
    description: str
    paper: str
    build_model: Callable[..., Any]
    variants: Mapping[str, Mapping[str, Any]]
    default_variant: str
    recipes: Path
    input_size: tuple[int, int] = (64, 44)
    # Optional training customisation, all called by the one trainer:
    # param_groups(model, recipe) -> list of optimizer parameter groups (default: all parameters);
    # regularizer(trainer, outputs) -> an extra scalar loss added to the recipe's losses.
    param_groups: Callable[..., Any] | None = None
    # Name of the build_model argument that sets the classifier's class count (e.g. "num_classes"):
    # a run passes the number of training subjects unless the recipe's [model] section sets it.
    class_count_arg: str | None = None
    regularizer: Callable[..., Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"method name {self.name!r} must be a non-empty identifier")
        if self.default_variant not in self.variants:
            raise ConfigError(
                f"method {self.name!r}: default_variant {self.default_variant!r} is not one of "
                f"its variants {sorted(self.variants)}"
            )

    def variant_kwargs(self, variant: str | None) -> dict[str, Any]:
        variant = variant or self.default_variant
        if variant not in self.variants:
            raise ConfigError(did_you_mean(variant, self.variants, f"variant of method {self.name!r}"))
        return dict(self.variants[variant])

    def create(self, variant: str | None = None, **overrides):
        """Build the model of ``variant``; overrides left as None never replace variant defaults."""
        kwargs = self.variant_kwargs(variant)
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        return self.build_model(**kwargs)

    def recipe_names(self) -> list[str]:
        return sorted(p.stem for p in Path(self.recipes).glob("*.toml"))

    def recipe_path(self, name: str) -> Path:
        path = Path(self.recipes) / f"{name}.toml"
        if not path.is_file():
            raise ConfigError(did_you_mean(name, self.recipe_names(), f"recipe of method {self.name!r}"))
        return path
