"""The clauses of the method contract, by name (no torch here: the pytest plugin reads them while
collecting tests)."""

from __future__ import annotations

from typing import Iterable, Mapping

from ..errors import did_you_mean

# name -> what a method must do; check_method runs them in this order ("outputs" first: the others
# read the outputs it checks).
CLAUSES: dict[str, str] = {
    "outputs": "forward returns a dict with float 'embeddings' [N, C, P] and, optionally, 'logits' "
               "[N, classes, P], in train and in eval mode",
    "padding": "in eval mode, a sequence in a padded batch with lengths embeds as it does alone",
    "full_lengths": "lengths equal to every sequence's frame count give what no lengths give",
    "gradients": "a loss on the outputs sends finite, non-zero gradients to every parameter",
    "eval_determinism": "eval-mode outputs are reproducible: two forwards agree, and two models built "
                        "from one seed agree",
    "training_step": "one step of gaitbench's trainer with the method's recipe gives a finite loss and "
                     "moves the weights",
}


def known_clause(name: str) -> str:
    """``name`` if it is a clause, else a ValueError that says which clauses exist."""
    if name not in CLAUSES:
        raise ValueError(did_you_mean(name, CLAUSES, "contract clause"))
    return name


def select_clauses(only: str | Iterable[str] | None = None, skip: Mapping[str, str] | None = None) -> list[str]:
    """The clauses to run, in contract order: all of them or those in ``only``, minus ``skip``.

    ``skip`` maps each clause left out to the reason (a non-empty string): leaving a clause out is
    always said, never silent."""
    if skip is None:
        skip = {}
    if not isinstance(skip, Mapping):
        raise TypeError("skip maps each contract clause left out to the reason, e.g. "
                        "{'eval_determinism': 'the eval embedding averages random crops'}; got "
                        f"{type(skip).__name__}")
    for clause, reason in skip.items():
        known_clause(clause)
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"skip[{clause!r}]: say why the clause does not apply (a non-empty string)")
    if only is None:
        chosen = set(CLAUSES)
    else:
        chosen = {known_clause(c) for c in ([only] if isinstance(only, str) else only)}
    return [c for c in CLAUSES if c in chosen and c not in skip]
