"""Unlearning methods for language models, registered for the "text" modality: one file each,
each one `unlearn(model, task, config) -> model` through the training loop's hooks, like the
image methods. A text task's sources hold token rows (x) and next-token targets (y)."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
