"""Methods, attacks and models from other packages, through entry points."""

import sys
from importlib.metadata import EntryPoint

import pytest

from unlearnkit import plugins
from unlearnkit.errors import UnlearnkitError


@pytest.fixture
def isolated(monkeypatch):
    """Registries and the plugin cache restored after the test, so no plugin leaks into others."""
    from unlearnkit import methods, models
    from unlearnkit.evaluate import attacks

    methods.list_methods()
    monkeypatch.setattr(methods, "_REGISTRY", {modality: dict(named) for modality, named in methods._REGISTRY.items()})
    monkeypatch.setattr(models, "_REGISTRY", dict(models._REGISTRY))
    monkeypatch.setattr(attacks, "ATTACKS", dict(attacks.ATTACKS))
    monkeypatch.setattr(plugins, "_loaded", set())
    for name in ("plugin_example", "plugin_clash"):
        monkeypatch.delitem(sys.modules, name, raising=False)

    def install(module: str):
        points = {group: [EntryPoint(name=module, value=module, group=group)] for group in ("unlearnkit.methods", "unlearnkit.attacks", "unlearnkit.models")}
        monkeypatch.setattr(plugins, "entry_points", lambda group: points.get(group, []))

    return install


def test_a_plugin_adds_a_method_an_attack_and_a_model(isolated):
    import unlearnkit
    from unlearnkit.evaluate.attacks import all_attacks
    from unlearnkit.methods import get_method

    isolated("plugin_example")
    assert "plugin-shrink" in unlearnkit.list_methods()
    assert get_method("plugin-shrink").summary == "Scale every parameter down (a plugin's toy method)."
    assert "plugin-confidence" in all_attacks()
    assert "plugin-mlp" in unlearnkit.list_models()
    assert unlearnkit.create_model("plugin-mlp", num_classes=3)[1].out_features == 3


def test_the_cli_lists_plugins(isolated):
    from typer.testing import CliRunner

    from unlearnkit.cli import app

    isolated("plugin_example")
    assert "plugin-shrink" in CliRunner().invoke(app, ["methods"]).stdout
    assert "plugin-mlp" in CliRunner().invoke(app, ["models"]).stdout


def test_a_plugin_that_takes_a_built_in_name_is_refused(isolated):
    import unlearnkit

    isolated("plugin_clash")
    with pytest.raises(UnlearnkitError, match=r"method 'finetune' from plugin_clash clashes with the one from unlearnkit.methods.finetune; give it another name"):
        unlearnkit.list_methods()


def test_a_methods_code_digest_follows_its_code_and_its_helpers_not_their_comments(isolated, tmp_path, monkeypatch):
    """The store keys unlearned models by this digest, so an edited method never reuses the
    models its older code made; a comment or a blank line changes nothing."""
    import importlib

    from unlearnkit import methods

    package = tmp_path / "digested"
    package.mkdir()
    (package / "__init__.py").write_text("")
    helper = package / "helper.py"
    helper.write_text("def scale():\n    return 0.5\n")
    (package / "method.py").write_text(
        "from digested.helper import scale\nfrom unlearnkit.methods import MethodConfig, register_method\n\n\n"
        "@register_method('digested', MethodConfig)\ndef digested(model, task, config):\n    return model\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("digested.method")
    methods.method_digest.cache_clear()
    first = methods.method_digest("digested")
    assert first != methods.method_digest("finetune")

    helper.write_text("# a comment\n\ndef scale():\n    return 0.5  # the same code\n")
    methods.method_digest.cache_clear()
    assert methods.method_digest("digested") == first

    helper.write_text("def scale():\n    return 0.25\n")
    methods.method_digest.cache_clear()
    assert methods.method_digest("digested") != first
    methods.method_digest.cache_clear()
