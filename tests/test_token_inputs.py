"""Token ids and dict inputs through the public API, on a small model whose forward takes
keyword arguments (`input_ids`, `attention_mask`) and returns a dict, as a Hugging Face model
does: every method runs or refuses in one line; steps that only make sense in pixel space refuse
token ids; the returned model is the caller's own class."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import unlearnkit
from unlearnkit.errors import UnlearnkitError

VOCAB, LENGTH, CLASSES = 40, 10, 3


class BagOfTokens(nn.Module):
    """Mean of the unmasked tokens' embeddings → a hidden layer → logits, as {"logits": …}."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.embedding = nn.Embedding(VOCAB, 16)
        self.hidden = nn.Linear(16, 16)
        self.head = nn.Linear(16, CLASSES)

    def forward(self, input_ids, attention_mask):
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (self.embedding(input_ids) * mask).sum(1) / mask.sum(1).clamp(min=1)
        return {"logits": self.head(torch.relu(self.hidden(pooled)))}


def tokens(n: int, seed: int) -> tuple[dict, torch.Tensor]:
    """Rows whose class is the residue of their first token (a rule the model can learn), padded
    after a random length."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (n, LENGTH), generator=g)
    lengths = torch.randint(4, LENGTH + 1, (n,), generator=g)
    mask = (torch.arange(LENGTH)[None] < lengths[:, None]).long()
    return {"input_ids": ids * mask, "attention_mask": mask}, ids[:, 0] % CLASSES


@pytest.fixture(scope="module")
def sets():
    return {"forget": tokens(16, 1), "retain": tokens(96, 2), "val": tokens(32, 3)}


def test_every_method_runs_on_token_ids_or_refuses_in_one_line(sets):
    model = BagOfTokens()
    refused = {}
    for method in unlearnkit.list_methods():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # collapse warnings of defaults tuned for images: not this test's subject
                result = unlearnkit.unlearn(model, forget=sets["forget"], retain=sets["retain"], val=sets["val"], method=method)
        except UnlearnkitError as error:
            assert "\n" not in str(error)
            refused[method] = str(error)
        else:
            assert type(result) is BagOfTokens
    assert set(refused) == {"amun", "boundary-shrink", "cfw", "ct", "msg", "prune-l1", "prune-cosine", "sisa", "synthetic-proxy"}, refused
    assert "cannot work on integer inputs (token ids)" in refused["amun"] and "cannot work on integer inputs (token ids)" in refused["synthetic-proxy"]
    assert "BagOfTokens has none" in refused["cfw"]  # the user's model is named, not the wrapper


def test_a_dict_of_token_ids_reaches_the_model_as_keywords_and_is_unlearned(sets):
    model = BagOfTokens()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = unlearnkit.unlearn(model, forget=sets["forget"], retain=sets["retain"], method="finetune", config={"epochs": 2})
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(not torch.equal(before[k], v) for k, v in result.state_dict().items())
    x, y = sets["val"]
    assert result(**x)["logits"].shape == (32, CLASSES)


def test_labels_inside_the_dict_as_hugging_face_datasets_give_them(sets):
    x, y = sets["forget"]
    model = BagOfTokens()
    as_pair = unlearnkit.audit(model, forget=(x, y), test=sets["val"]).to_dict()["models"]["unlearned"]
    as_dict = unlearnkit.audit(model, forget={**x, "labels": y}, test=sets["val"]).to_dict()["models"]["unlearned"]
    rows = [{"input_ids": x["input_ids"][i], "attention_mask": x["attention_mask"][i], "label": int(y[i])} for i in range(len(y))]
    as_rows = unlearnkit.audit(model, forget=rows, test=sets["val"]).to_dict()["models"]["unlearned"]
    assert as_pair == as_dict == as_rows


class FirstToken(nn.Module):
    """Takes token ids positionally, as one (N, L) tensor."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embedding = nn.Embedding(VOCAB, CLASSES)

    def forward(self, ids):
        return self.embedding(ids[:, 0])


def test_plain_token_id_tensors_are_given_to_the_model_unchanged(sets):
    (x, y), model = sets["retain"], FirstToken()
    result = unlearnkit.unlearn(model, forget=(x["input_ids"][:16], y[:16]), retain=(x["input_ids"][16:], y[16:]), method="finetune", config={"epochs": 1})
    assert type(result) is FirstToken


@pytest.mark.parametrize(("forget", "message"), [
    (lambda x, y: ({"input_ids": x["input_ids"], "attention_mask": x["attention_mask"][:, :5]}, y), r"^forget inputs hold tensors of different shapes \(input_ids \(16, 10\), attention_mask \(16, 5\)\); dict inputs must share one shape"),
    (lambda x, y: ({"input_ids": x["input_ids"], "attention_mask": x["attention_mask"].float()}, y), r"^forget inputs mix dtypes \(input_ids torch.int64, attention_mask torch.float32\)"),
    (lambda x, y: ({"input_ids": x["input_ids"]}, y), r"^the sets give the model different inputs \(forget \['input_ids'\], retain \['input_ids', 'attention_mask'\]\)"),
    (lambda x, y: ({}, y), r"^forget inputs are an empty dict"),
    (lambda x, y: dict(x), r"^the forget data is a dict with keys \['input_ids', 'attention_mask'\] and no 'labels'"),
])
def test_bad_dict_inputs_are_refused_in_one_line(sets, forget, message):
    with pytest.raises(UnlearnkitError, match=message):
        unlearnkit.unlearn(BagOfTokens(), forget=forget(*sets["forget"]), retain=sets["retain"], method="finetune")


def test_a_model_that_rejects_the_inputs_is_refused_in_one_line(sets):
    with pytest.raises(UnlearnkitError, match=r"^the model failed on keyword inputs \['input_ids', 'attention_mask'\]: .*; give the inputs its forward takes$"):
        unlearnkit.unlearn(FirstToken(), forget=sets["forget"], retain=sets["retain"], method="finetune")


def test_a_scikit_learn_estimator_is_not_a_torch_model(sets):
    from sklearn.linear_model import LogisticRegression

    with pytest.raises(UnlearnkitError, match=r"^the model is a sklearn LogisticRegression, not a torch\.nn\.Module, so unlearnkit cannot audit it; refit it without the rows"):
        unlearnkit.audit(LogisticRegression(), forget=sets["forget"], test=sets["val"])
