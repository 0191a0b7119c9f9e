"""scripts/screen_neurips.py: the NeurIPS score of a method's variants through the store."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from unlearnkit.errors import UnlearnkitError

SCRIPT = Path(__file__).parents[1] / "scripts" / "screen_neurips.py"


@pytest.fixture(scope="module")
def module():
    spec = importlib.util.spec_from_file_location("screen_neurips", SCRIPT)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def test_variants_are_scored_and_a_second_screen_trains_nothing(module, tmp_path):
    from conftest import synthetic_arrays, write_binary

    data = write_binary(tmp_path / "cifar-10-batches-bin", *synthetic_arrays())
    screen = lambda: module.screen("finetune", ["", "lr=0.002,epochs=0.5"], n=2, seed=0, preset="smoke", data=data, cache=tmp_path / "cache", forget=None)  # noqa: E731
    rows = screen()
    assert [row["variant"] for row in rows] == ["", "lr=0.002,epochs=0.5"]
    assert rows[1]["config"]["lr"] == 0.002 and rows[1]["config"]["epochs"] == 0.5 and rows[0]["config"]["lr"] != 0.002
    for row in rows:
        assert row["models_made"] == 2 and row["time_ratio"] > 0
        assert 0 <= row["forgetting_quality"] <= 1 and 0 <= row["at_cap_share"] <= 1 and row["spread_ratio_median"] >= 0
        accuracy_ratios = (row["retain_acc"] / row["retrained_retain_acc"]) * (row["test_acc"] / row["retrained_test_acc"])
        assert row["score"] == pytest.approx(row["forgetting_quality"] * accuracy_ratios)
    again = screen()
    assert [row["models_made"] for row in again] == [0, 0]  # every model came from the store
    assert [row["score"] for row in again] == [row["score"] for row in rows]
    table = module.table("finetune", rows)
    assert table.splitlines()[2].startswith(f"| finetune | {rows[0]['score']:.3f} | {rows[0]['forgetting_quality']:.3f} |")


@pytest.mark.slow
def test_a_bad_variant_is_refused_before_any_training(module, tmp_path):
    with pytest.raises(UnlearnkitError, match="'lr0.1' is not FIELD=VALUE"):
        module.parse_variant("lr0.1")
    done = subprocess.run([sys.executable, str(SCRIPT), "finetune", "--variant", "lr=-1", "--preset", "smoke", "--data", str(tmp_path / "nowhere"),
                           "--cache", str(tmp_path / "cache")], capture_output=True, text=True)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "method 'finetune' config field 'lr'" in done.stderr  # the variant, not the missing data, is what it names
    assert not (tmp_path / "cache" / "store").exists()
