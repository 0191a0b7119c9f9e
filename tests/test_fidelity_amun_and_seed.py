"""Fidelity of amun and ct to their authors' code, and of the seed's methods (dummy-labels, kl,
prune-l1, prune-cosine) and erase-repair to the rules their docstrings define: one update of
ours against an independent transcription in plain torch (see tests/fidelity_kit.py)."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fidelity_kit import CLASSES, FORGET, RECIPE, RETAIN, as_float, assert_same_weights, tiny_model, tiny_task
from unlearnkit.methods import make_config, run_method
from unlearnkit.train import Source

CHANNELS_LAST = torch.channels_last


@pytest.fixture(autouse=True)
def one_thread():
    """These tensors are tiny: one thread runs them fastest, and on a shared CPU far faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def sgd_step(model: nn.Module, loss_of, lr: float, momentum: float = 0.9, weight_decay: float = 5e-4, nesterov: bool = False) -> nn.Module:
    """One step of torch's SGD from a fresh optimizer on `loss_of(model)`, the model in train mode."""
    model = copy.deepcopy(model).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    optimizer.zero_grad()
    loss_of(model).backward()
    optimizer.step()
    return model.eval()


@functools.cache
def _memorizing_model() -> nn.Module:
    model = tiny_model()
    task = tiny_task(model)
    x = torch.cat([as_float(task.retain.x), as_float(task.forget.x)])
    y = torch.cat([task.retain.y, task.forget.y])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(40):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval()


def memorizing_model() -> nn.Module:
    """The tiny model trained until it fits the fixed retain and forget images: a random one
    barely depends on its input, and no attack flips it."""
    return copy.deepcopy(_memorizing_model())


# ---------------------------------------------------------------------------------------------
# amun


def reference_pgdl2(model, images, labels, eps=0.04, steps=50, eps_for_division=1e-10):
    """Transcribes Ali-E/AMUN @ 9e341a9, pgdl2_modified.py lines 35-130 (PGDL2.forward; alpha =
    eps / 10, line 19): returns the adversarial images and the adversarial labels."""
    n = images.size(0)
    eps_all = torch.full((n,), eps)
    adv_images_all = images.clone().detach()
    adv_preds_all = torch.zeros_like(labels) - 1
    indices = torch.arange(n)
    batch_size = n
    eps = torch.full((n,), eps)
    alpha = eps / 10.0
    images, adv_images, labels = images.clone().detach(), images.clone().detach(), labels.clone().detach()
    cont_flag = True
    while indices.numel() > 0:
        for _ in range(steps):
            adv_images.requires_grad_()
            logits = model(adv_images)
            preds = logits.argmax(1)
            still_correct = preds.eq(labels)
            if still_correct.sum() == 0:
                adv_images_all[indices] = adv_images.detach()
                eps_all[indices] = eps
                adv_preds_all[indices] = preds
                cont_flag = False
                break
            adv_preds_all[indices[~still_correct]] = preds[~still_correct]
            loss = nn.CrossEntropyLoss()(logits, labels)
            grad = torch.autograd.grad(loss, adv_images)[0]
            grad_norm = grad.reshape(batch_size, -1).norm(p=2, dim=1) + eps_for_division
            grad = grad / grad_norm.view(-1, 1, 1, 1)
            grad[~still_correct] = 0.0
            adv_images = adv_images.detach() + alpha.view(-1, 1, 1, 1) * grad
            delta = adv_images - images[indices]
            d_norm = torch.norm(delta.reshape(batch_size, -1), p=2, dim=1)
            factor = torch.minimum(eps / d_norm, torch.ones_like(d_norm))
            adv_images = torch.clamp(images[indices] + delta * factor.view(-1, 1, 1, 1), min=0.0, max=1.0).detach()
            adv_images = adv_images[still_correct]
            batch_size = int(still_correct.sum())
            eps, alpha, labels, indices = eps[still_correct], alpha[still_correct], labels[still_correct], indices[still_correct]
            adv_images_all[indices] = adv_images
            eps_all[indices] = eps
        if not cont_flag:
            break
        with torch.no_grad():
            preds = model(adv_images).argmax(1)
        still_correct = preds.eq(labels)
        if still_correct.sum() != 0:
            eps[still_correct] *= 2
            alpha = eps / 10.0
    return adv_images_all, adv_preds_all, eps_all


def test_amun_attack_stops_each_image_at_its_first_flip_as_the_reference():
    # Reference: Ali-E/AMUN @ 9e341a9, pgdl2_modified.py lines 35-130, called as in
    # build_advdataset.py lines 206-234 (original model in eval mode, true labels).
    from unlearnkit.methods.amun import adversarial_examples

    model = memorizing_model()
    x, y = tiny_task(model).forget.x, tiny_task(model).forget.y
    config = make_config("amun", {"pgd_steps": 10})
    ours, our_labels = adversarial_examples(model, Source(x, y), config, "fp32")
    theirs, their_labels, radius = reference_pgdl2(model, as_float(x).contiguous(memory_format=CHANNELS_LAST), y, steps=10)
    assert torch.equal(our_labels, their_labels)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    # the case is not trivial: every image was classified right and flipped, after different
    # numbers of doublings, and some inside the ball they were attacked in (at their first flip,
    # not on the ball's surface)
    assert torch.all(model(as_float(x)).argmax(1) == y) and torch.all(their_labels != y)
    assert len(set(radius.tolist())) > 1
    assert torch.any((theirs - as_float(x)).flatten(1).norm(dim=1) < 0.99 * radius)


def test_amun_one_update_trains_on_retain_forget_and_adversarial_as_the_reference():
    # Reference: Ali-E/AMUN @ 9e341a9, adversarial_unlearn.py lines 286-302 and 364 (`amun`: the
    # training set D_R ∪ D_F with true labels plus the adversarial set, one shuffled loader),
    # 408-453 (mean cross-entropy over the batch, one SGD step) and 970 (SGD, momentum 0.9,
    # weight decay 5e-4, no Nesterov); the adversarial set from pgdl2_modified.py lines 35-130.
    model = memorizing_model()
    batch = RETAIN + 2 * FORGET  # one step takes every retain, forget and adversarial image
    task = tiny_task(model, recipe=RECIPE.model_copy(update={"batch_size": batch}))
    config = make_config("amun", {"epochs": 1, "lr": 0.1, "pgd_steps": 10})
    ours = run_method("amun", model, task, config).model

    x_forget = as_float(task.forget.x).contiguous(memory_format=CHANNELS_LAST)
    x_adv, y_adv, _ = reference_pgdl2(task.original, x_forget, task.forget.y, steps=10)
    x = torch.cat([as_float(task.retain.x), as_float(task.forget.x), x_adv])
    y = torch.cat([task.retain.y, task.forget.y, y_adv])
    theirs = sgd_step(model, lambda m: F.cross_entropy(m(x), y), lr=0.1)
    assert_same_weights(ours, theirs)


def test_amun_adv_only_leaves_out_the_forget_images():
    # Reference: Ali-E/AMUN @ 9e341a9, adversarial_unlearn.py lines 854-858 (`advonly` trains on
    # the retain set D_R, not D_R ∪ D_F) with lines 295-302.
    model = memorizing_model()
    task = tiny_task(model, recipe=RECIPE.model_copy(update={"batch_size": RETAIN + FORGET}))
    ours = run_method("amun", model, task, {"epochs": 1, "lr": 0.1, "pgd_steps": 10, "adv_only": True}).model

    x_adv, y_adv, _ = reference_pgdl2(task.original, as_float(task.forget.x).contiguous(memory_format=CHANNELS_LAST), task.forget.y, steps=10)
    x, y = torch.cat([as_float(task.retain.x), x_adv]), torch.cat([task.retain.y, y_adv])
    assert_same_weights(ours, sgd_step(model, lambda m: F.cross_entropy(m(x), y), lr=0.1))


# ---------------------------------------------------------------------------------------------
# ct


def test_ct_one_update_is_the_references_transpose_then_sgd_on_retain():
    # Reference: xcadet/deepunlearn @ 6830ff6, munl/unlearning/kgltop5.py lines 85-91
    # (rotate_weight: every Conv2d weight swapaxes(2, 3)) and 96-113 (cross-entropy on retain,
    # SGD momentum 0.9, weight decay 5e-4, no Nesterov).
    model = tiny_model()
    task = tiny_task(model)
    ours = run_method("ct", model, task, {"epochs": 1, "lr": 0.1}).model

    theirs = copy.deepcopy(model)
    for module in theirs.modules():
        if isinstance(module, nn.Conv2d):
            module.weight = nn.Parameter(module.weight.swapaxes(2, 3))
    x, y = as_float(task.retain.x), task.retain.y
    theirs = sgd_step(theirs, lambda m: F.cross_entropy(m(x), y), lr=0.1)
    assert_same_weights(ours, theirs)
    # the transpose is not a no-op on this model: the 3x3 kernels are not symmetric
    assert not torch.equal(model.conv1.weight, model.conv1.weight.transpose(2, 3))


# ---------------------------------------------------------------------------------------------
# The seed's methods and erase-repair: no external reference; each test transcribes the rule the
# method's module docstring defines. They train with the kit's SGD (Nesterov momentum).


def test_dummy_labels_one_update_relabels_with_the_strongest_wrong_class():
    # Rule: unlearnkit/methods/dummy_labels.py docstring (each forget image labelled with the
    # original's highest-scoring wrong class; one cross-entropy over retain + relabelled forget).
    model = memorizing_model()
    task = tiny_task(model)
    ours = run_method("dummy-labels", model, task, {"epochs": 1, "lr": 0.1, "forget_batch": FORGET}).model

    with torch.no_grad():
        scores = model(as_float(task.forget.x))
    scores[torch.arange(FORGET), task.forget.y] = -torch.inf
    dummy = scores.argmax(1)
    assert torch.all(dummy != task.forget.y)
    x = torch.cat([as_float(task.retain.x), as_float(task.forget.x)])
    y = torch.cat([task.retain.y, dummy])
    assert_same_weights(ours, sgd_step(model, lambda m: F.cross_entropy(m(x), y), lr=0.1, nesterov=True))


def test_kl_one_update_matches_the_teacher_on_retain_and_uniform_on_forget():
    # Rule: unlearnkit/methods/kl.py docstring (KL(teacher_T ‖ student_T) × T² on retain +
    # forget_weight × KL(uniform ‖ student) on forget, one forward pass of both, each term
    # averaged over its images).
    model = memorizing_model()
    task = tiny_task(model)
    temperature, weight = 2.0, 0.3
    config = {"epochs": 1, "lr": 0.1, "forget_batch": FORGET, "forget_weight": weight, "temperature": temperature}
    ours = run_method("kl", model, task, config).model

    xr, xf = as_float(task.retain.x), as_float(task.forget.x)
    with torch.no_grad():
        teacher = torch.softmax(model.eval()(xr) / temperature, dim=1)

    def loss(student):
        logits = student(torch.cat([xr, xf]))
        log_student = torch.log_softmax(logits[:RETAIN] / temperature, dim=1)
        retain_term = (teacher * (teacher.log() - log_student)).sum(1).mean() * temperature**2
        uniform = torch.full((FORGET, CLASSES), 1 / CLASSES)
        forget_term = (uniform * (uniform.log() - torch.log_softmax(logits[RETAIN:], dim=1))).sum(1).mean()
        return retain_term + weight * forget_term

    assert_same_weights(ours, sgd_step(model, loss, lr=0.1, nesterov=True))


def prunable_pairs(model: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """Each convolution of a ResNet's residual stages with the batch norm right after it."""
    modules = list(model.named_modules())
    return [(conv, bn) for (name, conv), (_, bn) in zip(modules, modules[1:])
            if isinstance(conv, nn.Conv2d) and name.startswith("layer") and isinstance(bn, nn.BatchNorm2d)]


def reference_prune_and_recover(model: nn.Module, x, y, pruned: list[torch.Tensor], lr: float, l1: float) -> nn.Module:
    """Zero the `pruned` filters of each pair (kernel, batch-norm scale and shift), then one SGD
    step of cross-entropy + l1 × Σ|w| over the weight matrices and kernels, the pruned entries
    held at zero."""
    model = copy.deepcopy(model)
    held = []
    with torch.no_grad():
        for (conv, bn), dead in zip(prunable_pairs(model), pruned):
            conv.weight[dead], bn.weight[dead], bn.bias[dead] = 0, 0, 0
            held += [(conv.weight, dead), (bn.weight, dead), (bn.bias, dead)]
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    optimizer.zero_grad()
    (F.cross_entropy(model(x), y) + l1 * sum(p.abs().sum() for p in model.parameters() if p.ndim > 1)).backward()
    for p, dead in held:
        p.grad[dead] = 0
    optimizer.step()
    with torch.no_grad():
        for p, dead in held:
            p[dead] = 0
    return model.eval()


def zeroed_filters(model: nn.Module) -> list[set[int]]:
    return [set(torch.nonzero(conv.weight.flatten(1).abs().sum(1) == 0).flatten().tolist()) for conv, _ in prunable_pairs(model)]


def test_prune_l1_one_update_removes_the_smallest_l1_filters_of_each_layer():
    # Rule: unlearnkit/methods/prune_l1.py docstring (per layer, the int(ratio × filters) filters
    # of smallest L1 norm zeroed with their batch norm's scale and shift and held there; then
    # cross-entropy + l1 × Σ|w| on retain).
    model = tiny_model()
    task = tiny_task(model)
    ours = run_method("prune-l1", model, task, {"epochs": 1, "lr": 0.1, "ratio": 0.5, "l1": 1e-3}).model

    pruned = [torch.argsort(conv.weight.detach().abs().sum((1, 2, 3)))[: int(0.5 * conv.out_channels)] for conv, _ in prunable_pairs(model)]
    assert zeroed_filters(ours) == [set(p.tolist()) for p in pruned]
    theirs = reference_prune_and_recover(model, as_float(task.retain.x), task.retain.y, pruned, lr=0.1, l1=1e-3)
    assert_same_weights(ours, theirs)


def test_prune_cosine_removes_the_filters_least_alike_on_forget_and_retain():
    # Rule: unlearnkit/methods/prune_cosine.py docstring (per filter, the cosine similarity of its
    # class-wise mean output maps, before the batch norm, on forget and on retain images, over the
    # classes the forget set holds; the least similar removed; prune-l1's recovery).
    model = memorizing_model()
    task = tiny_task(model)
    ours = run_method("prune-cosine", model, task, {"epochs": 1, "lr": 0.1, "ratio": 0.5, "l1": 1e-3, "probe": RETAIN}).model

    def class_means(x, y):
        outputs = []
        handles = [conv.register_forward_hook(lambda m, i, o: outputs.append(o)) for conv, _ in prunable_pairs(model)]
        with torch.no_grad():
            model.eval()(as_float(x))
        for handle in handles:
            handle.remove()
        present = torch.unique(task.forget.y)
        return [torch.stack([o[y == c].mean(0) if (y == c).any() else torch.zeros_like(o[0]) for c in present]) for o in outputs]

    on_forget, on_retain = class_means(task.forget.x, task.forget.y), class_means(task.retain.x, task.retain.y)
    pruned = []
    for f, r in zip(on_forget, on_retain):  # [classes, filters, h, w]
        similarity = F.cosine_similarity(f.transpose(0, 1).flatten(1), r.transpose(0, 1).flatten(1), dim=1)
        pruned.append(torch.argsort(similarity)[: int(0.5 * len(similarity))])
    assert zeroed_filters(ours) == [set(p.tolist()) for p in pruned]
    theirs = reference_prune_and_recover(model, as_float(task.retain.x), task.retain.y, pruned, lr=0.1, l1=1e-3)
    assert_same_weights(ours, theirs)


def test_erase_repair_erasure_redraws_masked_entries_and_perturbs_every_weight_tensor():
    # Rule: unlearnkit/methods/erase_repair.py docstring, steps (1)-(2), and `erase`'s: from a
    # generator seeded with seed + 1, per weight tensor (ndim ≥ 2, in parameter order) fresh
    # values N(0, std²) then noise N(0, (noise × std)²), std the tensor's own; masked entries
    # take the fresh values; every entry is multiplied by `shrink`, then the noise is added.
    # Biases and batch-norm parameters are left bit-identical.
    from unlearnkit.methods.erase_repair import erase

    model = tiny_model()
    masks = {name: torch.rand(p.shape, generator=torch.Generator().manual_seed(7)) < 0.1 for name, p in model.named_parameters() if p.ndim > 1}
    ours = copy.deepcopy(model)
    erase(ours, masks, shrink=0.9, noise=0.2, seed=3)

    theirs = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            if p.ndim < 2:
                continue
            fresh = torch.randn(p.shape, generator=generator) * p.std()
            noise = torch.randn(p.shape, generator=generator) * p.std() * 0.2
            p.copy_(torch.where(masks[name], fresh, p) * 0.9 + noise)
    assert_same_weights(ours, theirs)
    for name, p in model.named_parameters():
        if p.ndim < 2:
            assert torch.equal(dict(ours.named_parameters())[name], p), name
