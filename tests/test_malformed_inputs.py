"""A corpus of malformed inputs, each given to the command line as a user would: every one must
end with exit code 2 and a single line on stderr that names the bad field or value, with no
traceback, and must leave the output folder as it was (here: not created).

Legitimate edge cases, allowed on purpose: forgetting a whole class (or several); a request
file with extra columns; a blank line in a request file. Refused: forgetting every training
image, an empty request, ids outside the training set."""

from __future__ import annotations

import hashlib
import json
import pickle
import sys

import numpy as np
import pytest
import torch

from conftest import CLASSES, synthetic_arrays, write_binary
from unlearnkit import cli
from unlearnkit.models import create_model
from unlearnkit.store import save_model

SENTINEL_NAME = "pickle-payload-ran"


class Payload:
    """Unpickling this runs `touch SENTINEL`: a weights loader that unpickles would create it."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small dataset in the official binary layout, a good model for it, and every bad file."""
    root = tmp_path_factory.mktemp("malformed")
    arrays = synthetic_arrays(n_train=100, n_test=40)
    data = write_binary(root / "data", *arrays)
    torch.manual_seed(0)
    good = save_model(create_model("resnet18", width=4), root / "good.safetensors", role="original")
    files = {"data": data, "good": good}

    def model_file(name, mutate_bytes=None, model=None, mutate_sidecar=None):
        path = save_model(model or create_model("resnet18", width=4), root / f"{name}.safetensors", role="original")
        if mutate_bytes:
            path.write_bytes(mutate_bytes(path.read_bytes()))
            sidecar = path.with_suffix(".json")
            if mutate_sidecar is None:  # keep the sidecar's hash in step, so the reader itself is tested
                import hashlib
                import json

                meta = json.loads(sidecar.read_text())
                meta["weights"]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
                sidecar.write_text(json.dumps(meta))
        if mutate_sidecar:
            sidecar = path.with_suffix(".json")
            sidecar.write_text(mutate_sidecar(sidecar.read_text()))
        return path

    files["truncated"] = model_file("truncated", lambda b: b[: len(b) // 2])
    files["empty"] = model_file("empty", lambda b: b"")
    files["random"] = model_file("random", lambda b: np.random.default_rng(0).bytes(len(b)))
    files["wide"] = model_file("wide", model=create_model("resnet18", width=8), mutate_sidecar=lambda s: s.replace('"width": 8', '"width": 4'))
    files["hundred"] = model_file("hundred", model=create_model("resnet18", width=4, num_classes=100))
    nan_model = create_model("resnet18", width=4)
    with torch.no_grad():
        nan_model.fc.weight[0, 0] = float("nan")
    files["nan"] = model_file("nan", model=nan_model)
    files["tampered"] = model_file("tampered", lambda b: b[:-1] + bytes([b[-1] ^ 1]), mutate_sidecar=lambda s: s)
    files["bad-sidecar"] = model_file("bad-sidecar", mutate_sidecar=lambda s: s[: len(s) // 2])
    files["no-sidecar"] = model_file("no-sidecar")
    files["no-sidecar"].with_suffix(".json").unlink()
    files["pickle"] = root / "evil.pt"
    files["sentinel"] = root / SENTINEL_NAME
    files["pickle"].write_bytes(pickle.dumps(Payload(str(files["sentinel"]))))
    # the sidecar records the pickle's true sha256, so the file reaches the weights reader itself
    digest = hashlib.sha256(files["pickle"].read_bytes()).hexdigest()
    files["pickle"].with_suffix(".json").write_text(json.dumps({"format": "unlearnkit.model/1", "model": {"name": "resnet18", "kwargs": {"width": 4}}, "weights": {"sha256": digest}}))

    def npz(name, **change):
        x_train, y_train, x_test, y_test = arrays
        values = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test, **change}
        path = root / f"{name}.npz"
        np.savez(path, **{k: v for k, v in values.items() if v is not None})
        return path

    x_train = arrays[0]
    nan_pixels = x_train.astype(np.float32) / 255
    nan_pixels[0, 0, 0, 0] = np.nan
    inf_pixels = x_train.astype(np.float32) / 255
    inf_pixels[3, 1, 2, 2] = np.inf
    files.update({
        "npz-shape": npz("shape", x_train=x_train[:, :, :, :30].reshape(100, 3, 30, 32)[:, :, :, :16]),
        "npz-channels": npz("channels", x_train=np.repeat(x_train, 2, axis=1)[:, :5]),
        "npz-dtype": npz("dtype", x_train=x_train.astype(np.int32) * 1000),
        "npz-nan": npz("nan", x_train=nan_pixels),
        "npz-inf": npz("inf", x_train=inf_pixels),
        "npz-negative": npz("negative", y_train=np.where(np.arange(100) == 5, -1, arrays[1])),
        "npz-float-labels": npz("float-labels", y_train=arrays[1].astype(np.float32)),
        "npz-length": npz("length", y_train=arrays[1][:99]),
        "npz-missing": npz("missing", y_test=None),
        "npz-3d": npz("three-d", x_train=x_train[:, 0]),
    })
    big = np.array(arrays[1])
    big[7] = 10
    files["npz-big-label"] = root / "big.npz"
    np.savez(files["npz-big-label"], x_train=x_train, y_train=big, x_test=arrays[2], y_test=arrays[3], classes=np.array(CLASSES))
    files["not-npz"] = root / "broken.npz"
    files["not-npz"].write_bytes(b"PK\x03\x04 not really a zip")
    missing_batch = write_binary(root / "missing-batch", *arrays)
    (missing_batch / "data_batch_3.bin").unlink()
    files["missing-batch"] = missing_batch
    truncated_batch = write_binary(root / "truncated-batch", *arrays)
    batch = truncated_batch / "data_batch_2.bin"
    batch.write_bytes(batch.read_bytes()[:-100])
    files["truncated-batch"] = truncated_batch
    files["unknown-file"] = root / "data.parquet"
    files["unknown-file"].write_bytes(b"PAR1")

    def csv(name, text, encoding="utf-8"):
        path = root / f"{name}.csv"
        path.write_bytes(text.encode(encoding))
        return path

    files.update({
        "req-unknown": csv("req-unknown", "sample_id\n3\n100\n"),
        "req-heldout": csv("req-heldout", "sample_id\n100\n"),  # 100 train images: 100..139 are held out
        "req-far": csv("req-far", "sample_id\n500\n"),
        "req-negative": csv("req-negative", "sample_id\n-1\n"),
        "req-duplicate": csv("req-duplicate", "sample_id\n4\n4\n"),
        "req-empty": csv("req-empty", "sample_id\n"),
        "req-no-column": csv("req-no-column", "image\n4\n"),
        "req-latin1": csv("req-latin1", "sample_id,owner\n4,Zoë\n", encoding="latin-1"),
        "req-text-id": csv("req-text-id", "sample_id\nfour\n"),
        "req-subject": csv("req-subject", "subject_id\nann\n"),
        "req-all": csv("req-all", "sample_id\n" + "\n".join(map(str, range(100))) + "\n"),
        "subjects": csv("subjects", "subject_id,sample_id\nbob,3\n"),
    })
    return files


def run(argv, capsys, monkeypatch):
    monkeypatch.setenv("UNLEARNKIT_QUIET", "1")
    monkeypatch.setattr(sys, "argv", ["unlearnkit", *argv])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.err


def forget(model, requests="req-ok"):
    return ["forget", "--model", f"@{model}", "--requests", f"@{requests}", "--data", "@data", "--method", "finetune"]


def run_spec(spec, *extra):
    return ["run", "--preset", "smoke", "--data", "@data", "--forget", spec, *extra]


CORPUS = [
    # weights files
    ("weights truncated", forget("truncated"), "truncated.safetensors is not a readable safetensors file"),
    ("weights empty", forget("empty"), "empty.safetensors is not a readable safetensors file"),
    ("weights random bytes", forget("random"), "random.safetensors is not a readable safetensors file"),
    ("weights changed after saving", forget("tampered"), "the weights file was changed or damaged"),
    ("weights of another width", forget("wide"), "has shape (8,) but resnet18 expects (4,)"),
    ("weights for 100 classes", forget("hundred"), "predicts 100 classes but the dataset has 10"),
    ("weights holding NaN", forget("nan"), "tensor fc.weight holds NaN or inf"),
    ("sidecar damaged", forget("bad-sidecar"), "bad-sidecar.json is not valid JSON"),
    ("sidecar missing", forget("no-sidecar"), "no-sidecar.json is missing"),
    ("model kwargs not JSON", [*forget("good"), "--model-kwargs", "{width"], "--model-kwargs '{width' is not JSON"),
    ("model kwargs a list", [*forget("good"), "--model-kwargs", "[16]"], "--model-kwargs '[16]' is a JSON list; give an object"),
    ("a pickle as weights", forget("pickle"), "evil.pt is not a readable safetensors file"),
    ("weights path missing", ["forget", "--model", "/no/model.safetensors", "--requests", "@req-ok", "--data", "@data"], "model file /no/model.safetensors does not exist"),
    # images and labels
    ("images of wrong shape", ["data", "info", "--data", "@npz-shape"], "train images have shape (3, 30, 16) but test images (3, 32, 32)"),
    ("images with 5 channels", ["data", "info", "--data", "@npz-channels"], "train images have shape (100, 5, 32, 32); expected (N, C, H, W) with C = 1 or 3"),
    ("images of int32 beyond 255", ["data", "info", "--data", "@npz-dtype"], "train images have dtype int32"),
    ("NaN pixels", ["data", "info", "--data", "@npz-nan"], "train images contain NaN or inf pixels"),
    ("inf pixels", ["data", "info", "--data", "@npz-inf"], "train images contain NaN or inf pixels"),
    ("images without channels", ["data", "info", "--data", "@npz-3d"], "train images have shape (100, 32, 32); expected 4 dimensions"),
    ("negative label", ["data", "info", "--data", "@npz-negative"], "train label -1 is out of range: labels must lie in 0..9"),
    ("label beyond the classes", ["data", "info", "--data", "@npz-big-label"], "train label 10 is out of range"),
    ("float labels", ["data", "info", "--data", "@npz-float-labels"], "labels must be a 1-D integer array"),
    ("labels and images of different lengths", ["data", "info", "--data", "@npz-length"], "train has 100 images but 99 labels"),
    ("an array missing", ["data", "info", "--data", "@npz-missing"], "lacks array 'y_test'"),
    ("not a zip archive", ["data", "info", "--data", "@not-npz"], "is not a readable .npz archive"),
    ("a batch file missing", ["data", "info", "--data", "@missing-batch"], "data_batch_3.bin; the official layout needs it"),
    ("a batch file truncated", ["data", "info", "--data", "@truncated-batch"], "data_batch_2.bin holds 61360 bytes, not a whole number of 3073-byte records"),
    ("a file of unknown kind", ["data", "info", "--data", "@unknown-file"], "data.parquet is a file of an unknown kind"),
    ("data path missing", ["data", "info", "--data", "/no/such/data"], "data path /no/such/data does not exist"),
    # forget sets and deletion requests
    ("request: id past the training set", forget("good", "req-unknown"), "sample_id 100 is a held-out (test) image"),
    ("request: held-out image", forget("good", "req-heldout"), "sample_id 100 is a held-out (test) image"),
    ("request: unknown id", forget("good", "req-far"), "sample_id 500 is unknown"),
    ("request: negative id", forget("good", "req-negative"), "sample_id -1 is unknown"),
    ("request: duplicated id", forget("good", "req-duplicate"), "sample_id 4 is requested more than once"),
    ("request: empty", forget("good", "req-empty"), "lists no request"),
    ("request: no id column", forget("good", "req-no-column"), "it needs a sample_id column"),
    ("request: not UTF-8", forget("good", "req-latin1"), "is not UTF-8 text"),
    ("request: text id", forget("good", "req-text-id"), "sample_id 'four' is not an integer"),
    ("request: subjects without a map", forget("good", "req-subject"), "give --subjects MAP.csv"),
    ("request: subject not in the map", [*forget("good", "req-subject"), "--subjects", "@subjects"], "subject_id 'ann' is not in the subject map"),
    ("request: every training image", forget("good", "req-all"), "the forget set covers the whole training set"),
    ("request file missing", forget("good", "no-such-request"), "does not exist"),
    ("forget spec: unknown class", run_spec("class:unicorn"), "unknown class 'unicorn'"),
    ("forget spec: every class", run_spec("class:" + ",".join(CLASSES)), "covers the whole training set"),
    ("forget spec: fraction above 1", run_spec("random:1.5"), "forget amount 1.5 is invalid"),
    ("forget spec: everything by count", run_spec("random:100"), "selects 100 of 100 training images"),
    ("forget spec: negative", run_spec("random:-3"), "forget amount -3 is invalid"),
    ("forget spec: unknown kind", run_spec("some:thing"), "forget spec 'some:thing' is not understood"),
    ("forget spec: bad weight", run_spec("skewed:cat=heavy:0.1"), "weight 'cat=heavy'"),
    # configs
    ("config: negative learning rate", ["run", "--preset", "smoke", "--data", "@data", "--methods", "finetune", "--set", "finetune.lr=-0.1"], "config field 'lr': Input should be greater than 0"),
    ("config: negative epochs", ["run", "--preset", "smoke", "--data", "@data", "--methods", "finetune", "--set", "finetune.epochs=-1"], "config field 'epochs'"),
    ("config: unknown key", ["run", "--preset", "smoke", "--data", "@data", "--methods", "kl", "--set", "kl.temprature=2"], "config field 'temprature': Extra inputs are not permitted"),
    ("config: wrong type", ["run", "--preset", "smoke", "--data", "@data", "--methods", "prune-l1", "--set", "prune-l1.ratio=half"], "config field 'ratio'"),
    ("config: not METHOD.FIELD=VALUE", ["run", "--preset", "smoke", "--data", "@data", "--set", "lr=0.1"], "--set 'lr=0.1' is not METHOD.FIELD=VALUE"),
    ("unknown method", ["run", "--preset", "smoke", "--data", "@data", "--methods", "magic"], "unknown method 'magic'"),
    ("unknown preset", ["run", "--preset", "huge", "--data", "@data"], "unknown preset 'huge'"),
    ("verify: a folder without manifest", ["verify", "@data"], "has no manifest.json; only folders written by"),
    ("bad seed list", ["run", "--preset", "smoke", "--data", "@data", "--seeds", "0,,1"], "--seeds '0,,1' is not a comma-separated list"),
    # evidence
    ("evidence: one model per side", ["run", "--preset", "smoke", "--data", "@data", "--evidence", "full", "--n", "1"], "--n 1: Input should be greater than or equal to 2"),
    ("evidence: no shadow models", ["run", "--preset", "smoke", "--data", "@data", "--evidence", "full", "--k", "0"], "--k 0: Input should be greater than or equal to 2"),
    ("evidence: zero shadow width", ["run", "--preset", "smoke", "--data", "@data", "--evidence", "full", "--shadow-width", "0"], "--shadow-width 0"),
    ("evidence: too few resamples", ["run", "--preset", "smoke", "--data", "@data", "--resamples", "5"], "--resamples 5"),
    ("evaluate: a folder that does not exist", ["evaluate", "/no/such/run"], "run folder /no/such/run does not exist"),
    ("evaluate: a folder without results", ["evaluate", "@data"], "results.json does not exist; give a folder written by `unlearnkit run`"),
]


@pytest.mark.parametrize("case, argv, message", CORPUS, ids=[case for case, _, _ in CORPUS])
def test_malformed_input_is_refused_in_one_line(world, tmp_path, capsys, monkeypatch, case, argv, message):
    out = tmp_path / "out"
    files = {**world, "req-ok": world["req-duplicate"].with_name("req-ok.csv")}
    files["req-ok"].write_text("sample_id\n3\n")
    argv = [str(files.get(a[1:], tmp_path / a[1:])) if a.startswith("@") else a for a in argv]
    if argv[0] in ("run", "forget"):
        argv += ["--out", str(out)]
    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / "cache"))
    code, err = run(argv, capsys, monkeypatch)
    assert code == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert message in " ".join(err.split()), err
    assert not out.exists()
    assert not world["sentinel"].exists(), "a weights file was unpickled"

