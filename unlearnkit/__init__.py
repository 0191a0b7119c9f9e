"""unlearnkit: machine unlearning for image classifiers, measured against retraining."""

__version__ = "0.1.0"

from unlearnkit.errors import UnlearnkitError  # noqa: E402
from unlearnkit.models import create_model, list_models  # noqa: E402
from unlearnkit.store import load_model, save_model  # noqa: E402

__all__ = ["UnlearnkitError", "create_model", "list_models", "load_model", "save_model", "__version__"]
