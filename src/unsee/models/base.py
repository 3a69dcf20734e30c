"""What a model folder was made from, without loading it (for defaults chosen by model)."""

import json
from pathlib import Path


def base_model(model: str) -> str:
    """The model an `unsee erase` folder was made from (its erase.json's `model`, followed
    through erasures of erasures): "minisd" for minisd erased; `model` itself otherwise.
    Defaults tuned for minisd (attack, erase) follow it there."""
    seen = set()
    while model not in seen:
        seen.add(model)
        record = Path(model).expanduser() / "erase.json"
        try:
            made_from = json.loads(record.read_text())["settings"]["model"]
        except (OSError, ValueError, KeyError, TypeError):
            return model
        if not isinstance(made_from, str):
            return model
        model = made_from
    return model
