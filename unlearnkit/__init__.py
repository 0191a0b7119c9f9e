"""unlearnkit: machine unlearning for classifiers, measured against retraining.

For your own model and data: `unlearn`, `audit`, `tune`, `list_methods` (see `unlearnkit.api`);
for a scikit-learn estimator (gradient-boosted trees), `retrain_estimator`; for a Hugging Face
causal language model and question/answer rows (TOFU's format), `unlearn_lm`, `audit_lm`.
"""

__version__ = "0.2.0"

from unlearnkit.errors import UnlearnkitError  # noqa: E402
from unlearnkit.models import create_model, list_models  # noqa: E402
from unlearnkit.store import load_model, save_model  # noqa: E402
from unlearnkit.api import AuditReport, TuneResult, audit, list_methods, tune, unlearn  # noqa: E402
from unlearnkit.evaluate.relearn import RelearnOptions  # noqa: E402
from unlearnkit.health import UnlearnkitWarning  # noqa: E402
from unlearnkit.text.hf import LMAuditReport, audit_lm, unlearn_lm  # noqa: E402  (imports transformers only when called)
from unlearnkit.estimators import retrain_estimator  # noqa: E402

__all__ = ["AuditReport", "LMAuditReport", "RelearnOptions", "TuneResult", "UnlearnkitError", "UnlearnkitWarning", "audit", "create_model", "list_methods", "list_models", "load_model", "retrain_estimator", "save_model", "tune", "unlearn", "unlearn_lm", "audit_lm", "__version__"]
