"""Regenerate schemas/ from the message models: ``uv run python scripts/export_schemas.py``."""

from pathlib import Path

from bmsgate_common.schemas import write

if __name__ == "__main__":
    for path in write(Path(__file__).parents[1] / "schemas"):
        print(path.name)
