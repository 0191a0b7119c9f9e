"""What the recsys methods share: the fine-tuning pass's hyperparameters and its recipe."""

from __future__ import annotations

from pydantic import Field

from unlearnkit.methods import MethodConfig, Task
from unlearnkit.methods.common import searched
from unlearnkit.train import Recipe


class RecsysFitConfig(MethodConfig):
    """A pass of AdamW (the optimizer the recsys presets train with) over the retained users'
    interactions, its learning rate lowered along a cosine."""

    epochs: float = Field(2.0, json_schema_extra=searched(0.5, 5.0), gt=0, description="passes over the retained users' interactions")
    lr: float = Field(0.005, json_schema_extra=searched(0.0005, 0.05, log=True), gt=0, description="peak learning rate (cosine decay)")
    weight_decay: float | None = Field(None, ge=0, description="AdamW's decoupled weight decay (None: the original's, from the task's recipe)")
    forget_batch: int = Field(256, ge=1, description="deleted users' interactions per step, for methods that mix them in")

    def recipe(self, task: Task) -> Recipe:
        weight_decay = task.recipe.weight_decay if self.weight_decay is None else self.weight_decay
        return Recipe(epochs=self.epochs, batch_size=task.recipe.batch_size, lr=self.lr, momentum=0.9, weight_decay=weight_decay,
                      optimizer="adamw", schedule="cosine", warmup=0.0, precision=task.recipe.precision)
