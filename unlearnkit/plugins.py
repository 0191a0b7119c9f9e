"""Third-party methods, attacks and models, found through Python entry points.

A package declares, in its pyproject.toml:

    [project.entry-points."unlearnkit.methods"]
    my-method = "my_package.unlearning"     # a module whose import registers it

(likewise `unlearnkit.attacks` and `unlearnkit.models`). Importing the module runs its
`@register_method` / `@register_attack` / `@register_model` decorators, so the CLI and the API
see the new names. A name that clashes with one already registered is refused in one line.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from unlearnkit.errors import UnlearnkitError

_loaded: set[str] = set()


def load_plugins(group: str) -> None:
    """Import every entry point of `group` once (`unlearnkit.methods`, `.attacks`, `.models`)."""
    if group in _loaded:
        return
    _loaded.add(group)
    for point in entry_points(group=group):
        try:
            point.load()
        except UnlearnkitError:
            raise
        except Exception as error:  # a broken plugin must not hide the built-ins
            raise UnlearnkitError(f"plugin '{point.name}' ({point.value}) of {group} failed to load: {type(error).__name__}: {error}") from None


def refuse_clash(kind: str, name: str, existing_module: str, new_module: str) -> None:
    if existing_module != new_module:
        raise UnlearnkitError(f"{kind} '{name}' from {new_module} clashes with the one from {existing_module}; give it another name")
