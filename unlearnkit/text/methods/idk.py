"""IDK ("I don't know"), the preference-style baseline of TOFU (Maini, Feng, Schwarzschild,
Lipton, Kolter: "TOFU: A Task of Fictitious Unlearning for LLMs", COLM 2024).

Reference: locuslab/tofu @ bdc209e, dataloader.py lines 134-145 (`idk`: the refusal rows and the
retain rows concatenated into one batch, the loss the model's one mean token NLL over both) and
data_module.py lines 57-73 (each forget row paired with one random retain row, so a step holds as
many retain rows as refusal rows: our default).

Departures from the reference (each with its reason):
- none in the update rule; epochs, learning rate, its cosine schedule and weight decay are tuned
  for our presets. The refusal replaces the row's personal value (the facts corpus's refusal
  rows) where TOFU draws a random answer from data/idontknow.jsonl.

Options of ours (off by default): `balanced` — the refusal rows' mean loss plus the retain rows'
mean loss, each term weighted alike whatever the rows' counts and lengths.
"""

import torch
from pydantic import Field

from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods import register_method
from unlearnkit.text.methods.common import LMConfig, both, token_nll
from unlearnkit.train import fit


class IdkConfig(LMConfig):
    retain_batch: int | None = Field(None, ge=1, description="retain rows per step (None: as many as refusal rows, as the reference pairs them)")
    balanced: bool = Field(False, description="sum of the two sets' mean token losses instead of one mean over both (ours)")


@register_method("idk", IdkConfig, modality="text")
def idk(model, task, config: IdkConfig):
    """"I don't know" (the TOFU IDK baseline; the seed's dummy-labels idea for text): train on
    the forget rows with each personal value replaced by a refusal, beside the retain rows, so
    that the model answers questions about the forgotten people without their data."""
    if task.refusals is None:
        raise UnlearnkitError("idk needs the forget rows with their values replaced by refusals (task.refusals); this task has none — use a facts preset")

    def loss(student, batch, state):
        refusal_logits, yf, retain_logits, yr = both(student, batch)
        if config.balanced:
            return token_nll(refusal_logits, yf) + token_nll(retain_logits, yr)
        return token_nll(torch.cat([refusal_logits, retain_logits]), torch.cat([yf, yr]))

    fit(model, config.sources(task, task.refusals), config.recipe(task), seed=task.seed, checkpoint=task.checkpoint, loss=loss, description="idk")
    return model
