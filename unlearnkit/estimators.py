"""Models that are not PyTorch networks: refused by `unlearn`, `audit` and `tune` in one line,
and, for scikit-learn-style estimators (gradient-boosted trees, random forests, …), unlearning
by the one exact means they have: fitting a fresh copy on the retain rows.

Tree ensembles have no gradient to ascend, no logits to distil and no layers to prune, so none
of the methods applies; and refitting them on a table's rows takes seconds, so exact retraining
is the answer, with nothing left for an audit to find.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from unlearnkit.errors import UnlearnkitError

RETRAIN_HINT = "refit it without the rows: unlearnkit.retrain_estimator(model, retain=(x, y)) fits a fresh clone on the retain rows, which is exact unlearning"


def is_estimator(model: Any) -> bool:
    """A scikit-learn-style estimator (scikit-learn's own, XGBoost's, LightGBM's): `fit` and `get_params`."""
    return callable(getattr(model, "fit", None)) and callable(getattr(model, "get_params", None))


def described(model: Any) -> str:
    kind = type(model)
    package = kind.__module__.split(".")[0]
    return kind.__name__ if package == "builtins" else f"{package} {kind.__name__}"


def refuse_non_torch(action: str, **models: Any) -> None:
    """One line for the first of `models` (role → model; None: not given) that is not an
    `nn.Module`: what it is, and what to do instead."""
    for role, model in models.items():
        if model is None or isinstance(model, nn.Module):
            continue
        if is_estimator(model):
            raise UnlearnkitError(f"the {role} is a {described(model)}, not a torch.nn.Module, so unlearnkit cannot {action} it; {RETRAIN_HINT}")
        raise UnlearnkitError(f"the {role} is a {described(model)}, not a torch.nn.Module; unlearnkit can {action} only PyTorch classifiers that return logits")


def retrain_estimator(estimator: Any, *, retain: tuple[Any, Any]) -> Any:
    """A fresh clone of `estimator` (same hyperparameters, random_state included) fitted on the
    `retain` rows `(x, y)` alone: exact unlearning of every row not in `retain`. `estimator` is
    left untouched."""
    if not is_estimator(estimator):
        raise UnlearnkitError(f"retrain_estimator takes a scikit-learn-style estimator (with fit and get_params), not a {described(estimator)}; unlearn a PyTorch model with unlearnkit.unlearn")
    if not (isinstance(retain, (tuple, list)) and len(retain) == 2):
        raise UnlearnkitError(f"retain is a {type(retain).__name__}; give the retain rows and labels as a pair (x, y)")
    from sklearn.base import clone

    x, y = retain
    rows, labels = np.shape(x), np.shape(y)
    if len(rows) != 2 or len(labels) != 1 or rows[0] != labels[0]:
        raise UnlearnkitError(f"retain has rows of shape {rows} and labels of shape {labels}; give x as (N, D) rows and y as N labels")
    if rows[0] == 0:
        raise UnlearnkitError("retain holds no rows; an estimator needs at least one row to fit")
    fresh = clone(estimator)
    try:
        return fresh.fit(x, y)
    except (ValueError, TypeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UnlearnkitError(f"refitting {described(estimator)} on the retain rows failed: {first}") from None
