"""User-level deletion methods for recommenders, registered for the "recsys" modality: one file
each, each one `unlearn(model, task, config) -> model` through the training loop's hooks. A
recsys task's sources hold (user, item) training pairs — x the user ids, y the item ids — its
forget set is every training interaction of the deleted users, `num_classes` is the catalogue's
size, and `forget_ids` / `retain_ids` are the deleted and the kept users."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
