"""Named, documented recipes for the reference models (original and retrain).

Each preset fixes the model, the recipe, and how much of the training set the experiment
uses. `default` is sized for a 2-core CPU; `paper` is the NeurIPS 2023 kit's recipe for a GPU.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from unlearnkit.errors import UnlearnkitError
from unlearnkit.recsys.data import LogSpec
from unlearnkit.text.facts import FactsSpec
from unlearnkit.train import Recipe


class ModelSpec(BaseModel):
    """A registered model by `name`, or your own network: `factory` ("package.module:function",
    called with `kwargs`), with `name` as its label."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = "resnet18"
    kwargs: dict = Field(default_factory=dict)
    factory: str | None = Field(None, description="package.module:function that builds the network (instead of a registered name)")


class Preset(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    description: str
    model: ModelSpec
    recipe: Recipe
    train_pool: int | None = Field(None, description="use at most this many training images (a seeded, class-balanced sample); None = all")
    forget: float = Field(0.1, description="forget-set size: a fraction of the pool, or a count")
    methods: dict[str, dict] = Field(default_factory=dict, description="method name → config values used instead of the method's defaults (what `unlearnkit tune --write-preset` writes); --set still wins")
    corpus: FactsSpec | None = Field(None, description="a text experiment: the personal-facts corpus to generate (then the model is a language model and the methods are the text methods)")
    data: str | None = Field(None, description="the dataset this preset runs on when --data is not given, e.g. 'sklearn:breast_cancer' (a table bundled with scikit-learn); None = --data, $UNLEARNKIT_DATA, then CIFAR-10 in the cache")

    interactions: LogSpec | None = Field(None, description="a recommender experiment: the synthetic interaction log to generate (then the model is a recommender, `forget` counts users, and the methods are the recsys methods)")

    @property
    def modality(self) -> str:
        return "text" if self.corpus is not None else "recsys" if self.interactions is not None else "image"


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            name="smoke",
            description="seconds: a width-4 ResNet-18 on 512 images for 2 epochs; for tests, not for conclusions",
            model=ModelSpec(kwargs={"width": 4}),
            recipe=Recipe(epochs=2, batch_size=64, lr=0.05, schedule="onecycle"),
            train_pool=512,
        ),
        Preset(
            name="default",
            description=(
                "2-core CPU: a width-16 ResNet-18 on a class-balanced 25,000-image pool, 9 epochs, no "
                "augmentation, so that the original memorizes its training set (docs/history.md: "
                "`unlearnkit run --seeds 0,1,2` measured train 99.8%, retain 99.8%, test 75.9% over three seeds)"
            ),
            model=ModelSpec(kwargs={"width": 16}),
            recipe=Recipe(epochs=9, batch_size=256, lr=0.2, weight_decay=5e-4, schedule="onecycle", warmup=0.2),
            train_pool=25_000,
            # scripts/tune_all.sh: the best of 6 trials on val where it beat the defaults (docs/tune/*-default-seed0*.md), exact values,
            # among the trials within 0.2× the retrained model's time (`unlearnkit tune --max-time-ratio 0.2`, the default), or,
            # where no trial kept to it (kde), a best that also took less time than the defaults. dummy-labels, kl and prune-l1 keep
            # the search of 28 November (their algorithms did not change); the methods that became their authors' algorithms
            # (issue 37) were searched again on 7 December (their earlier studies are in docs/tune/superseded/), synthetic-proxy
            # and amun on 8 December (synthetic-proxy, none of whose trials kept to the budget: its best, at the defaults' compute).
            # finetune, ssd, boundary-shrink, fcs and amun run their references' defaults, which their searches did not beat
            # within the budget.
            methods={
                "dummy-labels": {"lr": 0.03517868514361072},
                "kl": {"lr": 0.06260326907499733, "forget_weight": 0.6994332504138304, "temperature": 2.659312838729078},
                "prune-l1": {"lr": 0.06260326907499733, "ratio": 0.6006325564606937, "l1": 6.431172050131997e-05},
                "neggrad-plus": {"lr": 0.1649745367819876, "alpha": 0.6916824152610063},
                "scrub": {"epochs": 1, "lr": 0.016497453678198756, "alpha": 0.0014135935551752314},
                "bad-teacher": {"lr": 0.0006431172050131992, "temperature": 2.2650340400809217},
                "kde": {"lr": 0.08428303845098713, "val_epochs": 2.830101396363976, "temperature": 4.424804764191636},
                "msg": {"lr": 0.10570046446158274, "reset": 0.3496857506482932},
                "cfw": {"lr": 0.10570046446158274, "noise": 0.5115750615935457},
                "l1-sparse": {"lr": 0.10570046446158274, "l1": 4.311710058685491e-05},
                "ct": {"lr": 0.052453780707370834},
                "rni": {"lr": 0.08428303845098713, "tensors": 10, "noise": 0.0541665433053194},
                "random-labels": {"lr": 0.052453780707370834},
                "salun": {"lr": 0.052453780707370834, "saliency": 0.6167152904533248},
                "gradient-ascent": {"epochs": 2.450168594529694, "lr": 0.013469415096427047},
                "prmq": {"lr": 0.044818326788762804, "prune": 0.891903893850919, "entropy_weight": 0.3860866271460545},
                "synthetic-proxy": {"impair_lr": 0.005245378070737082, "repair_lr": 0.012512806369135352},
            },
        ),
        Preset(
            name="paper",
            description="GPU: standard ResNet-18 (width 64), crop+flip, SGD lr 0.1, momentum 0.9, weight decay 5e-4, 30 epochs (the NeurIPS 2023 kit's recipe)",
            model=ModelSpec(kwargs={"width": 64}),
            recipe=Recipe(epochs=30, batch_size=128, lr=0.1, momentum=0.9, nesterov=False, weight_decay=5e-4, schedule="cosine", warmup=0.0, augment=True),
        ),
        Preset(
            name="tabular-default",
            description=(
                "seconds on a CPU: scikit-learn's bundled Wisconsin breast-cancer table (569 patients × 30 features; a stratified 30% "
                "held out, features standardized on the training rows), an MLP with one hidden layer of 64 units, 200 epochs, so "
                "that the original memorizes its training rows; forget 10% of them at random"
            ),
            model=ModelSpec(name="mlp", kwargs={"width": 64}),
            recipe=Recipe(epochs=200, batch_size=32, lr=0.05, weight_decay=5e-4, schedule="onecycle", warmup=0.2, precision="fp32"),
            data="sklearn:breast_cancer",
        ),
        Preset(
            name="facts-smoke",
            description="seconds: a width-64, 2-block byte-level GPT on 12 fictitious people (9 trained, 2 of them forgotten), for tests, not for conclusions",
            model=ModelSpec(name="gpt-tiny", kwargs={"width": 64, "depth": 2, "heads": 2, "context": 72}),
            recipe=Recipe(epochs=60, batch_size=8, lr=3e-3, momentum=0.9, weight_decay=0.0, optimizer="adamw", schedule="onecycle", warmup=0.05),
            corpus=FactsSpec(people=12, heldout=0.25, paraphrases=1, filler=40),
            forget=2,
        ),
        Preset(
            name="hf-facts-smoke",
            description=(
                "facts-smoke with a Hugging Face model: GPT2LMHeadModel from a random-init config (width 64, 2 blocks, 2 heads, "
                "context 72) over the byte vocabulary, through the same text methods and evidence; needs the hf extra"
            ),
            model=ModelSpec(name="hf-gpt2", kwargs={"width": 64, "depth": 2, "heads": 2, "context": 72}),
            recipe=Recipe(epochs=60, batch_size=8, lr=3e-3, momentum=0.9, weight_decay=0.0, optimizer="adamw", schedule="onecycle", warmup=0.05),
            corpus=FactsSpec(people=12, heldout=0.25, paraphrases=1, filler=40),
            forget=2,
        ),
        Preset(
            name="facts-default",
            description=(
                "2-core CPU: gpt-tiny at width 96 with 4 blocks (0.47M parameters) memorizes 48 fictitious people (38 trained, 4 of "
                "them forgotten; 10 held out) in 40 epochs of AdamW, two paraphrases and a QA pair per fact; original + retrain "
                "within 10 minutes (at width 128, 0.84M parameters, they took 732 s + 584 s)"
            ),
            model=ModelSpec(name="gpt-tiny", kwargs={"width": 96, "depth": 4, "heads": 4, "context": 72}),
            recipe=Recipe(epochs=40, batch_size=16, lr=3e-3, momentum=0.9, weight_decay=0.0, optimizer="adamw", schedule="onecycle", warmup=0.05),
            corpus=FactsSpec(people=48, heldout=0.2, paraphrases=2, filler=144),
            forget=0.1,
            # `unlearnkit tune METHOD --preset facts-default --seed 0 --trials 10` (docs/tune/*-facts-default-seed0.md): each
            # study's best trial within 0.2x the retrained model's time, where it is closer to the retrained model than the
            # method's defaults (trial 0), as for `default`. simnpo, kl, idk and rmu were searched again on 7 December 2026 after
            # they became their references' algorithms (issue 37; their earlier studies are in docs/tune/superseded/).
            # finetune's pick within the budget is its defaults, so it runs them.
            methods={
                "grad-diff": {"epochs": 2.064469832820399, "lr": 0.001904767808428205, "forget_weight": 0.15364092985079622},
                "gradient-ascent": {"epochs": 1.1819655769629316, "lr": 0.0046263628414755864},
                "idk": {"epochs": 9.672964844509263, "lr": 0.0005846326121643416},
                "kl": {"epochs": 2.064469832820399, "lr": 0.001904767808428205, "forget_weight": 0.15364092985079622},
                "npo": {"epochs": 4.812893194050142, "lr": 0.0019578897201213002, "beta": 0.11078412755023989, "retain_weight": 1.4461835703563004},
                "rmu": {"epochs": 6.112401049845391, "lr": 0.007098936257405904, "steering": 2.513819804997154, "retain_weight": 1.4936835544198455},
                "simnpo": {"epochs": 4.812893194050142, "lr": 0.0019578897201213002, "beta": 1.3694847976173483, "retain_weight": 1.4461835703563004},
            },
        ),
        Preset(
            name="recsys-smoke",
            description="seconds: matrix factorization (dim 32) trained by BPR on a synthetic log of 300 users × 300 items (20 interactions each, a fifth held out), 15 users deleted; for tests, not for conclusions",
            model=ModelSpec(name="mf", kwargs={"dim": 32}),
            recipe=Recipe(epochs=30, batch_size=256, lr=0.01, momentum=0.9, weight_decay=0.1, optimizer="adamw", schedule="onecycle", warmup=0.1, precision="fp32"),
            interactions=LogSpec(users=300, items=300, genres=8, per_user=20),
            forget=0.05,
        ),
        Preset(
            name="recsys-default",
            description=(
                "2-core CPU, a few minutes in all: matrix factorization (dim 32) trained by BPR (AdamW, decoupled weight decay 0.1) "
                "for 30 epochs on a synthetic log of 3,000 users × 1,500 items in 8 genres (40 interactions each, a fifth held out), "
                "long enough that the original ranks a user's own training items above their held-out ones; 5% of the users (150) deleted"
            ),
            model=ModelSpec(name="mf", kwargs={"dim": 32}),
            recipe=Recipe(epochs=30, batch_size=512, lr=0.01, momentum=0.9, weight_decay=0.1, optimizer="adamw", schedule="onecycle", warmup=0.1, precision="fp32"),
            interactions=LogSpec(users=3000, items=1500, genres=8, per_user=40),
            forget=0.05,
        ),
    ]
}


def get_preset(name: str | dict) -> Preset:
    """A built-in preset by name, a preset file (`*.toml`), or a saved preset (the dict that
    results.json holds), validated by the same pydantic models."""
    if isinstance(name, dict):
        return validated(name, "saved preset")
    if str(name).endswith(".toml"):
        return read_preset_file(Path(name))
    if name not in PRESETS:
        raise UnlearnkitError(f"unknown preset '{name}'; choose one of {', '.join(PRESETS)} or give a .toml file")
    return PRESETS[name]


def read_preset_file(path: Path) -> Preset:
    """A preset from TOML: `name`, `description`, `train_pool`, `forget`, a `[model]` table
    (`name`, `kwargs`) and a `[recipe]` table (the Recipe's fields). Unknown keys are refused."""
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UnlearnkitError(f"preset file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UnlearnkitError(f"preset file {path} is not valid TOML ({error})") from None
    data.setdefault("name", path.stem)
    data.setdefault("description", f"from {path}")
    return validated(data, f"preset file {path}")


def validated(data: dict, what: str) -> Preset:
    try:
        preset = Preset(**data)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "preset"
        raise UnlearnkitError(f"{what}: field '{field}': {first['msg']} (got {first.get('input')!r})") from None
    if preset.interactions is not None:
        from unlearnkit.recsys.models import check_recommender

        check_recommender(preset.model.name, what)
        return preset
    from unlearnkit.models import list_models

    if preset.model.factory is None and preset.model.name not in list_models():
        raise UnlearnkitError(f"{what}: model '{preset.model.name}' is not registered; choose one of {', '.join(list_models())}, or name your own with factory = 'package.module:function'")
    return preset
