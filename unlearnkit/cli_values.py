"""Parsers of command-line values that the main CLI and the service's CLI share."""

from __future__ import annotations

import json

from unlearnkit.errors import UnlearnkitError


def parse_json_object(text: str, option: str) -> dict:
    """`text` as a JSON object, or one line naming `option` and what to give instead."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise UnlearnkitError(f"{option} '{text}' is not JSON ({error.msg}); give an object such as '{{\"width\": 16}}'") from None
    if not isinstance(value, dict):
        raise UnlearnkitError(f"{option} '{text}' is a JSON {type(value).__name__}; give an object such as '{{\"width\": 16}}'")
    return value
