"""``make docs``: every stage's AsyncAPI document into docs/asyncapi/<stage>.yaml.

The one generator of those documents: tests/unit/test_asyncapi_documents.py
runs this same code and compares. Each stage's app is built with the
settings of the environment (``make docs`` gives a placeholder database and
a fixed broker address, so that no machine's address lands in a document),
its document written as faststream's ``docs gen --yaml`` writes it.
"""

from __future__ import annotations

import sys
from importlib import import_module
from pathlib import Path

from services.pipeline import NAMES


def document(name: str) -> str:
    """One stage's document, its channels, operations, messages and schemas
    in the order of their names (faststream keeps its publishers in the order
    of their hashes, which vary from one process to the next)."""
    spec = import_module(f"services.{name}.app").app().schema.to_specification()
    spec.channels = dict(sorted(spec.channels.items()))
    spec.operations = dict(sorted(spec.operations.items()))
    if spec.components is not None:
        for part in ("messages", "schemas"):
            if getattr(spec.components, part, None):
                setattr(spec.components, part, dict(sorted(getattr(spec.components, part).items())))
    return spec.to_yaml()


def documents(names: tuple[str, ...] = NAMES) -> dict[str, str]:
    return {name: document(name) for name in names}


def main(folder: str) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in documents().items():
        (out / f"{name}.yaml").write_text(text, "utf-8")
        print(f"{out / name}.yaml")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/asyncapi")
