"""Fidelity of salun, random-labels, l1-sparse, boundary-shrink and finetune to their authors'
code: each test runs our method on the tiny fixed task and an independent transcription of the
reference, written here in plain torch, and compares the weights in fp32.

Our training loop shuffles each pass; a recording source notes the order in which it served the
images, and the transcription is fed the same batches in the same order, in the memory layout the
loop feeds them in (channels_last): neither is part of the algorithm, and with both the same the
two sides agree to rounding even over several steps of batch-norm training on 8 images."""

from __future__ import annotations

import copy
import dataclasses

import torch
import torch.nn.functional as F

from fidelity_kit import CLASSES, RECIPE, as_float, assert_same_weights, tiny_model, tiny_task
from unlearnkit.methods import run_method
from unlearnkit.train import Source

MOMENTUM, WEIGHT_DECAY = 0.9, 5e-4


class Recording(Source):
    """A resident source that notes the indices of each batch that the training loop takes."""

    def batch(self, indices: torch.Tensor):
        self.taken.append(indices.cpu().clone())
        return super().batch(indices)


def recording(source: Source) -> Recording:
    recorded = Recording(source.x, source.y, source.batch_size)
    recorded.taken = []
    return recorded


def fed(x: torch.Tensor) -> torch.Tensor:
    """uint8 images as floats in [0, 1], in the training loop's memory layout."""
    return as_float(x).contiguous(memory_format=torch.channels_last)


def served(source: Recording) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The batches `source` served, in order, as the reference's loader would yield them."""
    return [(fed(source.x[i]), source.y[i]) for i in source.taken]


def recorded_task(model, recipe=RECIPE, **sources):
    task = tiny_task(model, recipe=recipe)
    return dataclasses.replace(task, retain=recording(task.retain), forget=recording(task.forget), **sources)


# --- SalUn and random labels -------------------------------------------------------------------

# Transcribes OPTML-Group/Unlearn-Saliency @ a6e89fd, Classification/generate_mask.py lines 22-80
# (save_gradient_ratio: summed per-batch gradients of -CE in eval mode, global rank, top fraction).
def reference_saliency_mask(model, batches, fraction):
    gradients = {name: 0 for name, _ in model.named_parameters()}
    model.eval()
    for image, target in batches:
        loss = -F.cross_entropy(model(image), target)
        model.zero_grad()
        loss.backward()
        with torch.no_grad():
            for name, param in model.named_parameters():
                if param.grad is not None:
                    gradients[name] += param.grad.data
    with torch.no_grad():
        for name in gradients:
            gradients[name] = torch.abs_(gradients[name])
    all_elements = -torch.cat([tensor.flatten() for tensor in gradients.values()])
    threshold_index = int(len(all_elements) * fraction)
    positions = torch.argsort(all_elements)
    ranks = torch.argsort(positions)
    hard_dict, start_index = {}, 0
    for key, tensor in gradients.items():
        num_elements = tensor.numel()
        tensor_ranks = ranks[start_index : start_index + num_elements]
        threshold_tensor = torch.zeros_like(tensor_ranks)
        threshold_tensor[tensor_ranks < threshold_index] = 1
        hard_dict[key] = threshold_tensor.reshape(tensor.shape)
        start_index += num_elements
    return hard_dict


# Transcribes Classification/unlearn/RL.py lines 11-35 (mask the gradients, put masked-out weights
# back) and 109-159 (CIFAR-10 branch: forget pass with torch.randint labels over all classes, then
# retain pass), with impl.py lines 68-73 (SGD, momentum, weight decay, no Nesterov).
def reference_rl_epoch(model, forget_batches, retain_batches, lr, seed, mask=None):
    optimizer = torch.optim.SGD(model.parameters(), lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    theta0 = {name: p.detach().clone() for name, p in model.named_parameters() if name in mask} if mask else None

    def step(image, target):
        loss = F.cross_entropy(model(image), target)
        optimizer.zero_grad()
        loss.backward()
        if mask:
            for name, param in model.named_parameters():
                if param.grad is not None:
                    param.grad *= mask[name]
        optimizer.step()
        if mask:
            with torch.no_grad():
                for name, param in model.named_parameters():
                    m = mask[name].to(dtype=param.dtype)
                    param.data.mul_(m).add_(theta0[name] * (1 - m))
                    state = optimizer.state.get(param, None)
                    if state is not None and "momentum_buffer" in state:
                        state["momentum_buffer"].mul_(m)

    model.train()
    torch.manual_seed(seed)  # run_method seeds torch's generator: the first draw is the first batch's labels
    for image, target in forget_batches:
        step(image, torch.randint(0, CLASSES, target.shape))
    for image, target in retain_batches:
        step(image, target)
    return model


def test_salun_mask_is_the_reference_saliency_map():
    # generate_mask.py lines 22-80: the forget batches' mean-CE gradients summed (batches of 3, 3 and 2:
    # not proportional to the mean over all 8), ranked over all parameters, the top fraction kept. The
    # fraction is 0.2: in this tiny model 77% of the gradients are exactly zero, and which of those tied
    # entries a larger fraction takes depends on the sort's tie-breaking, not on the algorithm.
    from unlearnkit.methods.salun import saliency_mask

    model = tiny_model()
    task = tiny_task(model)
    ours = saliency_mask(copy.deepcopy(model), task.forget, 0.2, batch_size=3, precision="fp32")
    batches = [(fed(task.forget.x[i : i + 3]), task.forget.y[i : i + 3]) for i in range(0, len(task.forget), 3)]
    theirs = reference_saliency_mask(copy.deepcopy(model), batches, 0.2)
    assert set(ours) == set(theirs)
    for name in theirs:
        assert torch.equal(ours[name], theirs[name].bool()), name


def test_salun_one_epoch_is_the_reference():
    # RL.py lines 109-159 with the mask of generate_mask.py: one forget step with random labels over
    # all classes, then one retain step, through one SGD optimizer, masked-out weights held (fraction
    # 0.2, below the share of non-zero gradients: see the test above).
    model = tiny_model()
    task = recorded_task(model)
    config = {"epochs": 1, "lr": 0.1, "saliency": 0.2, "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY}
    ours = run_method("salun", model, task, config).model
    assert [len(t) for t in task.forget.taken] == [len(task.forget)] and [len(t) for t in task.retain.taken] == [len(task.retain)]
    mask = reference_saliency_mask(copy.deepcopy(model), [(fed(task.forget.x), task.forget.y)], 0.2)
    theirs = reference_rl_epoch(copy.deepcopy(model), served(task.forget), served(task.retain), 0.1, task.seed, mask)
    assert_same_weights(ours, theirs)
    changed = [name for name, p in ours.named_parameters() if not torch.equal(p, dict(model.named_parameters())[name])]
    assert changed  # the step did something, and only where the mask allows:
    for name, p in ours.named_parameters():
        held = mask[name] == 0
        assert torch.equal(p[held], dict(model.named_parameters())[name][held]), name


def test_random_labels_one_epoch_is_the_reference():
    # RL.py lines 109-159 without a mask: the random-label forget step, then the retain step.
    model = tiny_model()
    task = recorded_task(model)
    config = {"epochs": 1, "lr": 0.1, "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY}
    ours = run_method("random-labels", model, task, config).model
    theirs = reference_rl_epoch(copy.deepcopy(model), served(task.forget), served(task.retain), 0.1, task.seed)
    assert_same_weights(ours, theirs)


# --- l1-sparse -----------------------------------------------------------------------------------

# Transcribes OPTML-Group/Unlearn-Sparse @ 80ba55d, unlearn/FT.py lines 14-18 (L1 of all parameters)
# and 84-109 (CE + alpha * (1 - epoch / epochs) * L1, no_l1_epochs 0), impl.py lines 72-77, 97-100
# (SGD with momentum and weight decay; MultiStepLR at 91, 136: constant here).
def reference_ft_l1(model, epoch_batches, lr, alpha, unlearn_epochs):
    def l1_regularization(model):
        return torch.linalg.norm(torch.cat([param.view(-1) for param in model.parameters()]), ord=1)

    optimizer = torch.optim.SGD(model.parameters(), lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    model.train()
    for epoch, batches in enumerate(epoch_batches):
        for image, target in batches:
            current_alpha = alpha * (1 - epoch / unlearn_epochs)
            loss = F.cross_entropy(model(image), target)
            loss += current_alpha * l1_regularization(model)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model


def test_l1_sparse_two_epochs_are_the_reference():
    # Two epochs of two steps: the penalty's weight is alpha, alpha, alpha/2, alpha/2 (per epoch,
    # not per step) on the L1 norm of every parameter, biases and batch-norm scales included.
    model = tiny_model()
    task = recorded_task(model, recipe=RECIPE.model_copy(update={"batch_size": 8}))
    config = {"epochs": 2, "lr": 0.05, "l1": 1e-2, "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY}
    ours = run_method("l1-sparse", model, task, config).model
    batches = served(task.retain)
    assert len(batches) == 4
    theirs = reference_ft_l1(copy.deepcopy(model), [batches[:2], batches[2:]], 0.05, 1e-2, 2)
    assert_same_weights(ours, theirs)


# --- boundary-shrink -----------------------------------------------------------------------------

# Transcribes OPTML-Group/Unlearn-Saliency @ a6e89fd, Classification/unlearn/boundary_sh.py lines
# 35-52 (FGSM_perturb + discretize), 69 (bound 0.1), 80-109 (label = argmax of the frozen original on
# the attacked image; CE of the model on the clean image to it), 136-141 (test_model = copy of the
# original), with impl.py lines 68-73 (SGD with momentum and weight decay).
def reference_boundary_shrink(model, batches, lr, bound=0.1):
    def fgsm_perturb(x, y, model, bound):
        model.zero_grad()
        x_adv = x.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        loss.backward()
        x_adv = x_adv + x_adv.grad.data.detach().sign() * bound
        return (torch.round(torch.clamp(x_adv, 0.0, 1.0) * 255) / 255).detach()

    test_model = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    model.train()
    labels = []
    for image, target in batches:
        test_model.eval()
        image_adv = fgsm_perturb(image, target, test_model, bound)
        adv_label = torch.argmax(test_model(image_adv), dim=1)
        labels.append(adv_label)
        loss = F.cross_entropy(model(image), adv_label)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model, labels


def test_boundary_shrink_one_step_is_the_reference():
    # The tiny model predicts one class everywhere; its head is centred on the forget images' features
    # and scaled, so that its predictions vary and the attack crosses a boundary on some images. The
    # forget labels are its own predictions: where the attack at ε 0.1 fails (here on 1 image of 8), the
    # label stays the true class (no "strongest wrong class" forcing). One step over all 8 forget
    # images: the order within the batch does not matter, each image's label is its own.
    model = tiny_model()
    x = fed(tiny_task(model).forget.x)
    with torch.no_grad():
        centre = model.features(x).mean(0)
        model.fc.weight.mul_(10)
        model.fc.bias.copy_(-model.fc.weight @ centre)
        predicted = model(x).argmax(1)
    task = tiny_task(model)
    task = dataclasses.replace(task, forget=Source(task.forget.x, predicted), retain=recording(task.retain))
    config = {"epochs": 1, "lr": 0.1, "forget_batch": len(predicted), "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY}
    ours = run_method("boundary-shrink", model, task, config).model
    assert task.retain.taken == []  # the forget set alone
    theirs, (labels,) = reference_boundary_shrink(copy.deepcopy(model), [(x, predicted)], 0.1)
    # our loop shuffles the batch and the scaled head makes the gradients large: rounding reaches 3e-5
    # (a wrong label, ε or retain images move weights by 2 to 8)
    assert_same_weights(ours, theirs, rtol=1e-3, atol=1e-4)
    kept = labels == predicted
    assert kept.any() and not kept.all()  # both cases occur: failed attacks keep the true class


# --- finetune ------------------------------------------------------------------------------------

# Transcribes unlearning-challenge/starting-kit @ 901e784, unlearning-CIFAR10.ipynb lines 329-369
# (`unlearning`: SGD lr, momentum 0.9, weight decay 5e-4; CosineAnnealingLR(T_max=epochs) stepped
# once per epoch; CE on retain batches in train mode).
def reference_finetune(net, epoch_batches, lr):
    epochs = len(epoch_batches)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    net.train()
    for batches in epoch_batches:
        for inputs, targets in batches:
            optimizer.zero_grad()
            loss = F.cross_entropy(net(inputs), targets)
            loss.backward()
            optimizer.step()
        scheduler.step()
    return net


def test_finetune_one_step_is_the_kit():
    model = tiny_model()
    task = recorded_task(model)
    ours = run_method("finetune", model, task, {"epochs": 1, "lr": 0.1}).model
    theirs = reference_finetune(copy.deepcopy(model), [served(task.retain)], 0.1)
    assert_same_weights(ours, theirs)


def test_finetune_cosine_falls_once_per_epoch_as_the_kit():
    # Two epochs of two steps: the kit's rates are lr, lr, lr/2, lr/2 (not the per-step lr, 0.85 lr, ...).
    model = tiny_model()
    task = recorded_task(model, recipe=RECIPE.model_copy(update={"batch_size": 8}))
    ours = run_method("finetune", model, task, {"epochs": 2, "lr": 0.1}).model
    batches = served(task.retain)
    assert len(batches) == 4
    theirs = reference_finetune(copy.deepcopy(model), [batches[:2], batches[2:]], 0.1)
    assert_same_weights(ours, theirs)
