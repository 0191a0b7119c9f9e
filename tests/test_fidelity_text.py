"""Fidelity of the language-model methods to their references' code (TOFU, open-unlearning,
Unlearn-Simple): our loss (its value and every parameter's gradient) and one update of ours
against an independent transcription in plain torch, on a tiny GPT and fixed token rows.

How our rows map onto the references' Hugging Face batches: our rows are shifted already
(x = a text's bytes but the last, y = its bytes after the first, -100 after its end), where a
reference batch holds `input_ids` and unshifted `labels` and shifts inside the loss. For losses on
next-token targets the reference side gets input_ids = the whole byte rows and labels = the same
bytes with the first unlabelled (in TOFU the first token is always the prompt's, never a target),
so its shifted targets are exactly our y; for losses on positions (the KL, RMU's activations) it
gets input_ids = our x with labels = x on the text (a pretraining-style row), so its positions are
exactly ours. Each batch is padded to its own longest row, as open-unlearning's collator pads.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.methods import Task, make_config, run_method
from unlearnkit.models import create_model
from unlearnkit.train import Recipe, Source, TrainState, trim_padding

IGNORE = -100
WIDTH, DEPTH, CONTEXT = 16, 3, 16
FORGET_LENGTHS = (16, 9, 13, 6)  # bytes per text; forget texts longer than retain ones, so a
RETAIN_LENGTHS = (11, 5, 8, 10)  # batch trimmed over both sources is longer than the retain rows
LR = 1e-3
CLOSE = dict(rtol=1e-4, atol=1e-6)


def tiny_gpt(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("gpt-tiny", width=WIDTH, depth=DEPTH, heads=2, context=CONTEXT).eval()


def tiny_original() -> nn.Module:
    """Another model with peaked predictions (its final norm scaled up), so that the KL to it and
    NPO's log-ratio against it are far from zero."""
    model = tiny_gpt(1)
    with torch.no_grad():
        model.norm.weight.mul_(10)
    return model


def rows(lengths, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Our (x, y) rows of random texts (bytes 1..255) of these lengths, padded to the context."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.zeros(len(lengths), CONTEXT - 1, dtype=torch.int64)
    y = torch.full((len(lengths), CONTEXT - 1), IGNORE, dtype=torch.int64)
    for i, n in enumerate(lengths):
        text = torch.randint(1, 256, (n,), generator=generator)
        x[i, : n - 1], y[i, : n - 1] = text[:-1], text[1:]
    return x, y


FORGET, RETAIN, REFUSALS, MORE_RETAIN = rows(FORGET_LENGTHS, 1), rows(RETAIN_LENGTHS, 2), rows((12, 7, 15, 4), 3), rows((9, 14, 6, 12), 4)


def task(retain=RETAIN) -> Task:
    """The student is tiny_gpt(0), the original `tiny_original()`."""
    fp32 = Recipe(precision="fp32")
    return Task(retain=Source(*retain), forget=Source(*FORGET), val=Source(*RETAIN), original=tiny_original(), num_classes=256, recipe=fp32,
                seed=0, refusals=Source(*REFUSALS))


# ---------------------------------------------------------------------------------------------
# the references' views of our rows, and their losses in plain torch


def target_view(x, y):
    """(input_ids, labels) of the whole byte rows, padded to the longest row."""
    ids = torch.cat([x[:, :1], torch.where(y != IGNORE, y, 0)], dim=1)
    labels = torch.cat([torch.full_like(y[:, :1], IGNORE), y], dim=1)
    longest = int((labels != IGNORE).any(0).nonzero().max()) + 1
    return ids[:, :longest], labels[:, :longest]


def position_view(x, y):
    """(input_ids, labels) of our x rows (labels = the text's tokens), padded to the longest row."""
    labels = torch.where(y != IGNORE, x, IGNORE)
    longest = int((labels != IGNORE).any(0).nonzero().max()) + 1
    return x[:, :longest], labels[:, :longest]


def hf_loss(model, ids, labels):
    """A Hugging Face causal LM's `outputs.loss`: shift, then the mean cross-entropy over labels."""
    logits = model(ids)
    return F.cross_entropy(logits[..., :-1, :].reshape(-1, logits.shape[-1]), labels[..., 1:].reshape(-1), ignore_index=IGNORE)


def get_batch_loss(output, labels):
    # Unlearn-Simple @ f1a355d TOFU/data_module.py lines 280-288 (= open-unlearning @ d3d7cf9
    # src/trainer/utils.py lines 34-44, compute_batch_nll): each row's summed NLL
    shifted_labels = labels[..., 1:].contiguous()
    output = output[..., :-1, :].contiguous()
    loss_function = nn.CrossEntropyLoss(ignore_index=IGNORE, reduction="none")
    return loss_function(output.transpose(-1, -2), shifted_labels).sum(dim=-1)


def pad_to(ids, labels, length):
    extra = length - ids.shape[1]
    return F.pad(ids, (0, extra), value=0), F.pad(labels, (0, extra), value=IGNORE)


def reference_grad_ascent(model, original, config):
    # locuslab/tofu @ bdc209e dataloader.py lines 93-99 (grad_ascent)
    outputs_loss = hf_loss(model, *target_view(*FORGET))
    return outputs_loss * -1


def reference_grad_diff(model, original, config):
    # locuslab/tofu @ bdc209e dataloader.py lines 101-111 (grad_diff); open-unlearning @ d3d7cf9
    # src/trainer/unlearn/grad_diff.py lines 41-60 (loss = gamma * forget_loss + alpha * retain_loss)
    forget_loss = hf_loss(model, *target_view(*FORGET)) * -1
    retain_loss = hf_loss(model, *target_view(*RETAIN))
    return config.forget_weight * forget_loss + 1.0 * retain_loss


def reference_kl(model, original, config):
    # locuslab/tofu @ bdc209e dataloader.py lines 113-132 (KL); open-unlearning @ d3d7cf9
    # src/trainer/utils.py lines 17-31 (compute_kl_divergence)
    forget_loss = hf_loss(model, *target_view(*FORGET)) * -1
    retain_ids, _ = position_view(*RETAIN)
    with torch.no_grad():
        retain_outputs = original(retain_ids)
    retain_probs = F.log_softmax(retain_outputs, dim=-1).view(-1, retain_outputs.shape[-1])
    current_outputs = model(retain_ids)
    current_probs = F.log_softmax(current_outputs, dim=-1).view(-1, current_outputs.shape[-1])
    retain_loss = nn.functional.kl_div(current_probs, retain_probs, reduction="batchmean", log_target=True)
    return config.forget_weight * forget_loss + retain_loss


def reference_idk(model, original, config, retain=RETAIN):
    # locuslab/tofu @ bdc209e dataloader.py lines 134-145 (idk): one batch of the idk rows and the
    # retain rows concatenated, the model's one mean loss over it (TOFU pads every row to one length)
    idk_ids, idk_labels = target_view(*REFUSALS)
    retain_ids, retain_labels = target_view(*retain)
    length = max(idk_ids.shape[1], retain_ids.shape[1])
    idk_ids, idk_labels = pad_to(idk_ids, idk_labels, length)
    retain_ids, retain_labels = pad_to(retain_ids, retain_labels, length)
    return hf_loss(model, torch.cat((idk_ids, retain_ids), dim=0), torch.cat((idk_labels, retain_labels), dim=0))


def reference_npo(model, original, config):
    # open-unlearning @ d3d7cf9 src/trainer/unlearn/npo.py lines 12-32 and src/trainer/utils.py
    # lines 47-67 (compute_dpo_loss with win_inputs=None)
    beta = config.beta
    lose_ids, lose_labels = target_view(*FORGET)
    lose_loss = get_batch_loss(model(lose_ids), lose_labels)
    with torch.no_grad():
        lose_ref_loss = get_batch_loss(original(lose_ids), lose_labels)
    win_log_ratio, lose_log_ratio = 0.0, -(lose_loss - lose_ref_loss)
    forget_loss = -2 / beta * F.logsigmoid(beta * (win_log_ratio - lose_log_ratio)).mean()
    retain_loss = hf_loss(model, *target_view(*RETAIN))
    return 1.0 * forget_loss + config.retain_weight * retain_loss


def reference_simnpo(model, original, config):
    # OPTML-Group/Unlearn-Simple @ f1a355d TOFU/dataloader.py lines 278-289 (simnpo_grad_diff);
    # config/forget.yaml lines 18-23: npo_coeff 0.1375, grad_diff_coeff 1.0, beta 2.5, gamma 0
    npo_coeff, grad_diff_coeff, beta, gamma = 0.1375, 1.0, config.beta, config.delta
    input_ids, labels = target_view(*FORGET)
    outputs = model(input_ids)
    loss_mask = labels != IGNORE
    forget_loss = get_batch_loss(outputs, labels) / loss_mask.sum(-1) - gamma
    forget_loss = -F.logsigmoid(beta * forget_loss).mean() * 2 / beta
    retain_loss = hf_loss(model, *target_view(*RETAIN))
    return npo_coeff * forget_loss + grad_diff_coeff * retain_loss


def module_output(model, layer, ids):
    # open-unlearning @ d3d7cf9 src/trainer/unlearn/rmu.py lines 83-98 (forward_with_cache)
    cache = []
    handle = model.blocks[layer].register_forward_hook(lambda module, input, output: cache.append(output[0] if isinstance(output, tuple) else output))
    model(ids)
    handle.remove()
    return cache[0]


def compute_activation_loss(activation1, activation2, mask):
    # open-unlearning @ d3d7cf9 src/trainer/unlearn/rmu.py lines 108-117, as written
    squared_diff = torch.nn.functional.mse_loss(activation1, activation2, reduction="none")
    expanded_mask = mask.unsqueeze(-1).expand_as(squared_diff)
    squared_diff_sum = (squared_diff * expanded_mask).mean(dim=2).sum(dim=(1))
    num_tokens = mask.sum(dim=-1, keepdim=True)
    return (squared_diff_sum / num_tokens).mean()


def control_vector(seed, dim, steering_coeff):
    # open-unlearning @ d3d7cf9 src/trainer/unlearn/rmu.py lines 100-106, drawn from our seed
    random_vector = torch.rand(1, 1, dim, generator=torch.Generator().manual_seed(seed))
    return random_vector / torch.norm(random_vector) * steering_coeff


def reference_rmu(model, original, config):
    # open-unlearning @ d3d7cf9 src/trainer/unlearn/rmu.py lines 119-171 (gamma 1, alpha = retain_weight)
    forget_ids, forget_labels = position_view(*FORGET)
    activations = module_output(model, config.layer, forget_ids)
    control_vec = control_vector(0, activations.shape[-1], config.steering).expand_as(activations)
    forget_loss = compute_activation_loss(activations, control_vec, forget_labels != IGNORE)
    retain_ids, retain_labels = position_view(*RETAIN)
    retain_activations = module_output(model, config.layer, retain_ids)
    with torch.no_grad():
        ref_activations = module_output(original, config.layer, retain_ids)
    retain_loss = compute_activation_loss(retain_activations, ref_activations, retain_labels != IGNORE)
    return 1.0 * forget_loss + config.retain_weight * retain_loss


def reference_rmu_parameters(model, layer):
    # wmdp rmu/unlearn.py get_params(layer_ids=[layer-2, layer-1, layer], param_ids=[6]): the MLP
    # down_proj weight of each (open-unlearning @ d3d7cf9 rmu.py lines 10-16, 43-48); ours: fc2
    return [model.blocks[i].fc2.weight for i in range(max(layer - 2, 0), layer + 1)]


def reference_finetune(model, original, config):
    # OPTML-Group/Unlearn-Simple @ f1a355d TOFU/dataloader.py lines 157-162 (fine_tuned)
    return hf_loss(model, *target_view(*RETAIN))


REFERENCES = {
    "gradient-ascent": reference_grad_ascent, "grad-diff": reference_grad_diff, "kl": reference_kl, "idk": reference_idk,
    "npo": reference_npo, "simnpo": reference_simnpo, "rmu": reference_rmu, "finetune": reference_finetune,
}
MODULES = {"gradient-ascent": "gradient_ascent", "grad-diff": "grad_diff", "kl": "kl", "idk": "idk", "npo": "npo", "simnpo": "simnpo", "rmu": "rmu"}


# ---------------------------------------------------------------------------------------------
# ours: the loss the method hands to the training loop, on the batch the loop would give it


def our_loss_hook(monkeypatch, name, config, task_=None):
    """(the model, the `fit` keyword arguments) our method passes to the training loop."""
    captured = {}

    def fake_fit(model, data, recipe, **kwargs):
        captured.update(model=model, data=data, recipe=recipe, **kwargs)

    monkeypatch.setattr(f"unlearnkit.text.methods.{MODULES[name]}.fit", fake_fit)
    run_method(name, tiny_gpt(0), task_ or task(), config, modality="text")
    return captured


def our_batch(name):
    forget = REFUSALS if name == "idk" else FORGET
    return trim_padding({"forget": forget, "retain": RETAIN} if name != "gradient-ascent" else {"forget": forget})


def gradients(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p) for n, p in model.named_parameters()}


def assert_same_loss_and_gradients(monkeypatch, name, values):
    config = make_config(name, values, "text")
    hook = our_loss_hook(monkeypatch, name, config)
    ours = hook["loss"](hook["model"].train(), our_batch(name), TrainState(step=0, total_steps=1, epoch=0, lr=LR))
    theirs_model = tiny_gpt(0).train()
    theirs = REFERENCES[name](theirs_model, tiny_original(), config)
    torch.testing.assert_close(ours, theirs, **CLOSE)
    ours_grads, theirs_grads = gradients(hook["model"], ours), gradients(theirs_model, theirs)
    for parameter, grad in ours_grads.items():
        torch.testing.assert_close(grad, theirs_grads[parameter], **CLOSE, msg=lambda m, p=parameter: f"{name} gradient of {p}: {m}")


def test_gradient_ascent_loss_is_tofus(monkeypatch):
    # locuslab/tofu @ bdc209e dataloader.py lines 93-99
    assert_same_loss_and_gradients(monkeypatch, "gradient-ascent", {})


def test_grad_diff_loss_is_tofus(monkeypatch):
    # locuslab/tofu @ bdc209e dataloader.py lines 101-111; open-unlearning @ d3d7cf9 grad_diff.py lines 41-60
    assert_same_loss_and_gradients(monkeypatch, "grad-diff", {})


def test_kl_is_tofus_batchmean_over_every_padded_position(monkeypatch):
    # locuslab/tofu @ bdc209e dataloader.py lines 113-132; open-unlearning @ d3d7cf9 utils.py lines 17-31
    assert_same_loss_and_gradients(monkeypatch, "kl", {})


def test_idk_is_one_token_mean_over_refusal_and_retain_rows(monkeypatch):
    # locuslab/tofu @ bdc209e dataloader.py lines 134-145
    assert_same_loss_and_gradients(monkeypatch, "idk", {})


def test_idk_pairs_one_retain_row_with_each_refusal_row(monkeypatch):
    # locuslab/tofu @ bdc209e data_module.py lines 57-73: each forget item returns (idk row, one random retain row)
    hook = our_loss_hook(monkeypatch, "idk", make_config("idk", {"forget_batch": 3}, "text"), task(retain=(torch.cat([RETAIN[0], MORE_RETAIN[0]]), torch.cat([RETAIN[1], MORE_RETAIN[1]]))))
    assert hook["data"]["forget"].batch_size == hook["data"]["retain"].batch_size == 3


def test_npo_loss_is_open_unlearnings(monkeypatch):
    # open-unlearning @ d3d7cf9 npo.py lines 12-32, utils.py lines 34-67
    assert_same_loss_and_gradients(monkeypatch, "npo", {"beta": 0.5})


@pytest.mark.parametrize("beta, delta", [(0.1, 0.0), (2.5, 5.4)])
def test_simnpo_loss_is_the_authors(monkeypatch, beta, delta):
    # OPTML-Group/Unlearn-Simple @ f1a355d TOFU/dataloader.py lines 278-289, config/forget.yaml lines 18-23
    # (the tiny model's NLL is about log 256 = 5.5 a token: β·(5.5 − δ) stays small, so the
    # forget term's gradient is not lost in σ's saturation)
    assert_same_loss_and_gradients(monkeypatch, "simnpo", {"beta": beta, "delta": delta})


def test_rmu_loss_is_open_unlearnings(monkeypatch):
    # open-unlearning @ d3d7cf9 rmu.py lines 83-171 (the steered block 2 of 3: blocks 0-2 get gradients)
    assert_same_loss_and_gradients(monkeypatch, "rmu", {"layer": 2})


def test_rmu_trains_the_mlp_output_weights_of_three_blocks(monkeypatch):
    # wmdp get_params(layer_ids 5,6,7; param_ids 6) as open-unlearning @ d3d7cf9 rmu.py lines 10-16, 43-48
    hook = our_loss_hook(monkeypatch, "rmu", make_config("rmu", {"layer": 2}, "text"))
    model = hook["model"]
    trained = {id(p) for p in reference_rmu_parameters(model, 2)}
    frozen = {name for name, p in model.named_parameters() if id(p) not in trained}
    assert set(hook["mask"]) == frozen and not any(m.any() for m in hook["mask"].values())


# ---------------------------------------------------------------------------------------------
# one update of ours (the whole method through the training loop) against one AdamW step


def reference_step(name, config) -> nn.Module:
    """One step of the references' optimizer (AdamW, β 0.9/0.999, ε 1e-8, the Trainer's) on the
    transcribed loss, from a fresh optimizer over the trained parameters. Adam's first step is
    lr·g/(|g| + ε): where a gradient is near ε, fp32 rounding moves it by up to a few 1e-6, hence
    the tolerance of lr/100 (the loss tests above compare the gradients themselves)."""
    model = tiny_gpt(0).train()
    params = reference_rmu_parameters(model, config.layer) if name == "rmu" else list(model.parameters())
    optimizer = torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    optimizer.zero_grad()
    REFERENCES[name](model, tiny_original(), config).backward()
    optimizer.step()
    return model.eval()


ONE_STEP = {"epochs": 1.0, "lr": LR, "forget_batch": len(FORGET_LENGTHS), "retain_batch": len(RETAIN_LENGTHS)}


@pytest.mark.parametrize("name", ["gradient-ascent", "grad-diff", "kl", "idk", "npo", "simnpo", "rmu", "finetune"])
def test_one_update_is_the_references(name):
    # each method's reference as transcribed above (reference_<method>), stepped by AdamW
    values = {**ONE_STEP, **{"rmu": {"layer": 2}, "simnpo": {"delta": 5.4}}.get(name, {})}
    if name == "idk":
        del values["retain_batch"]  # the default: as many retain rows as refusal rows
    config = make_config(name, values, "text")
    ours = run_method(name, tiny_gpt(0), task(), config, modality="text").model
    theirs = reference_step(name, config)
    for (parameter, value), expected in zip(ours.state_dict().items(), theirs.state_dict().values()):
        torch.testing.assert_close(value, expected, rtol=1e-4, atol=LR / 100, msg=lambda m, p=parameter: f"{name} {p}: {m}")
    assert any(not torch.equal(a, b) for a, b in zip(ours.state_dict().values(), tiny_gpt(0).state_dict().values()))
