"""Regenerate deploy/mosquitto/acl: ``uv run python scripts/export_acl.py``."""

from pathlib import Path

from bmsgate_common.access import render_acl

ACL = Path(__file__).parents[1] / "deploy" / "mosquitto" / "acl"

if __name__ == "__main__":
    ACL.write_text(render_acl())
    print(ACL)
