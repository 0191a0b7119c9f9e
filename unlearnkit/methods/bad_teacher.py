"""Bad Teacher (Chundawat, Tarun, Mandal and Kankanhalli, "Can Bad Teaching Induce Forgetting?
Unlearning in Deep Networks using an Incompetent Teacher", AAAI 2023).

Reference: vikram2000b/bad-teaching-unlearning @ f1aa988f71cccf1be6d50e0c6f7b2b905e4c9126,
unlearn.py lines 9-19 (`UnlearnerLoss`: per image, the target is the incompetent teacher's softmax
on forget images and the competent teacher's on retain images, both at temperature T; the loss is
`F.kl_div` of the student's log-softmax at T with the default reduction "mean", an average over
images × classes, without a T² factor); lines 21-37 (`unlearning_step`: teachers without gradient,
one optimizer step per batch); lines 67-88 (`blindspot_unlearner`: forget and retain images in one
shuffled loader, teachers in eval mode); dataset.py lines 64-83 (`UnLearningData`: the forget images
labelled 1, the retain images 0); CIFARSuper20_Rocket_Unlearn.ipynb cell 6 (the retain images are a
random 30% of the retain set) and cell 15 (the incompetent teacher a randomly initialized model of
the same architecture; the student starts from the trained model in train mode; Adam at lr 1e-4;
1 epoch; batch 256; KL_temperature 1).

Departures from the reference (each with its reason):
- each pass drops its last partial batch (fit's passes hold whole batches; the reference's loader
  keeps it): the training loop is shared by every method.
- none in the update rule otherwise; the learning rate and the number of epochs are tuned for our
  presets.
"""

import torch
import torch.nn.functional as F
from pydantic import Field

from unlearnkit.methods import MethodConfig, register_method
from unlearnkit.methods.common import searched
from unlearnkit.models.interface import reinitialized
from unlearnkit.train import Recipe, Source, fit, to_float


class BadTeacherConfig(MethodConfig):
    """Bad Teacher's hyperparameters: the reference's Adam, one pass, temperature 1."""

    epochs: float = Field(1.0, json_schema_extra=searched(0.5, 4.0), gt=0, description="passes over the forget images plus the retain subset")
    lr: float = Field(1e-4, json_schema_extra=searched(1e-5, 1e-2, log=True), gt=0, description="Adam learning rate (constant)")
    retain_fraction: float = Field(0.3, gt=0, le=1, description="share of the retain set drawn once at random into the unlearning set")
    temperature: float = Field(1.0, json_schema_extra=searched(0.5, 8.0, log=True), gt=0, description="softening of the teachers' and the student's outputs")


class Mixture(Source):
    """Chosen rows of several sources as one source: row i is row `rows[i]` of a part, with label
    `labels[i]`. Images come back as floats as the model takes them (uint8 / 255), so parts of
    uint8 images and of float images (noise) mix. Nothing is copied: each batch reads its rows
    from the parts, streamed ones included."""

    def __init__(self, parts: list[tuple[Source, torch.Tensor]], labels: torch.Tensor, batch_size: int | None = None):
        self.parts = [(source, rows.cpu()) for source, rows in parts]
        self.labels, self.batch_size = labels.cpu(), batch_size
        self.starts = torch.tensor([0] + [len(rows) for _, rows in parts]).cumsum(0).tolist()
        assert self.starts[-1] == len(self.labels)

    def __repr__(self) -> str:
        return f"Mixture({len(self)} rows of {len(self.parts)} sources)"

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self.parts[0][0].image_shape

    @property
    def x(self):
        raise AttributeError("a Mixture holds no images of its own; use batch(indices)")

    @property
    def y(self) -> torch.Tensor:
        return self.labels

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        indices = indices.cpu()
        images = None
        for (source, rows), start, end in zip(self.parts, self.starts, self.starts[1:]):
            picked = ((indices >= start) & (indices < end)).nonzero().flatten()
            if len(picked) == 0:
                continue
            x = to_float(source.batch(rows[indices[picked] - start])[0])
            if images is None:
                images = torch.empty((len(indices), *x.shape[1:]), dtype=x.dtype, device=x.device)
            images[picked.to(x.device)] = x
        return images, self.labels[indices].to(images.device)

    def digest(self) -> str:
        raise NotImplementedError("a Mixture is built inside a method, from sources whose digests identify the run")


def labels_of(source: Source) -> torch.Tensor:
    """A source's labels, read batch by batch where the source holds none resident (a stream)."""
    if getattr(source, "y", None) is not None:
        return source.y
    return torch.cat([source.batch(torch.arange(i, min(i + 1024, len(source))))[1].cpu() for i in range(0, len(source), 1024)])


def unlearner_loss(student_logits, is_forget, good_logits, bad_logits, temperature: float) -> torch.Tensor:
    """KL(target ‖ student) at `temperature`, the target being the bad teacher's softmax on
    forget images (`is_forget` 1) and the good teacher's on retain images (0), averaged over
    images × classes (F.kl_div's "mean")."""
    is_forget = is_forget.unsqueeze(1)
    good = F.softmax(good_logits.float() / temperature, dim=1)
    bad = F.softmax(bad_logits.float() / temperature, dim=1)
    target = is_forget * bad + (1 - is_forget) * good
    # the sum over the numel is F.kl_div's "mean" (which torch warns will become "batchmean")
    return F.kl_div(F.log_softmax(student_logits.float() / temperature, dim=1), target, reduction="sum") / target.numel()


@register_method("bad-teacher", BadTeacherConfig)
def bad_teacher(model, task, config: BadTeacherConfig):
    """Distil from a competent teacher (the original) on retain images and from an incompetent
    teacher (the same architecture, randomly initialized) on forget images, in one shuffled set of
    all forget images and a random share of the retain images (Chundawat et al., "Can Bad
    Teaching Induce Forgetting?", AAAI 2023)."""
    good = task.original.eval()
    bad = reinitialized(model, task.seed).eval()
    subset = torch.randperm(len(task.retain), generator=torch.Generator().manual_seed(task.seed))[: int(config.retain_fraction * len(task.retain))]
    forget_rows = torch.arange(len(task.forget))
    flags = torch.cat([torch.ones(len(forget_rows), dtype=torch.long), torch.zeros(len(subset), dtype=torch.long)])
    data = Mixture([(task.forget, forget_rows), (task.retain, subset)], flags)

    def loss(student, batch, state):
        x, is_forget = batch["data"]
        with torch.no_grad():
            good_logits, bad_logits = good(x), bad(x)
        return unlearner_loss(student(x), is_forget, good_logits, bad_logits, config.temperature)

    recipe = Recipe(
        epochs=config.epochs, batch_size=task.recipe.batch_size, lr=config.lr, momentum=0.9, weight_decay=0.0,
        optimizer="adamw", schedule="constant", warmup=0.0, precision=task.recipe.precision,
    )
    adam = torch.optim.Adam(model.parameters(), lr=config.lr)
    fit(model, data, recipe, seed=task.seed, checkpoint=task.checkpoint, loss=loss, optimizer=adam, description="bad-teacher")
    return model
