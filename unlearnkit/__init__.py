"""unlearnkit: machine unlearning for classifiers, measured against retraining.

For your own model and data: `unlearn`, `audit`, `tune`, `list_methods` (see `unlearnkit.api`).
"""

__version__ = "0.2.0"

from unlearnkit.errors import UnlearnkitError  # noqa: E402
from unlearnkit.models import create_model, list_models  # noqa: E402
from unlearnkit.store import load_model, save_model  # noqa: E402
from unlearnkit.api import AuditReport, TuneResult, audit, list_methods, tune, unlearn  # noqa: E402
from unlearnkit.evaluate.relearn import RelearnOptions  # noqa: E402
from unlearnkit.health import UnlearnkitWarning  # noqa: E402

__all__ = ["AuditReport", "RelearnOptions", "TuneResult", "UnlearnkitError", "UnlearnkitWarning", "audit", "create_model", "list_methods", "list_models", "load_model", "save_model", "tune", "unlearn", "__version__"]
