"""Regenerate deploy/mosquitto/acl from the compose stack's configuration.

``uv run python scripts/export_acl.py --config deploy/bmsgate.yaml``: the publisher may then
write the states of that file's banks only. Run it again after changing banks (or the base topic)
there; a test fails while the committed ACL differs from what this renders.
"""

import argparse
import sys
from pathlib import Path

from bmsgate_common.access import render_acl_for
from bmsgate_common.settings import ConfigError, load_settings

ACL = Path(__file__).parents[1] / "deploy" / "mosquitto" / "acl"

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path, help="deploy/bmsgate.yaml")
    parser.add_argument("--out", type=Path, default=ACL, help="default: %(default)s")
    args = parser.parse_args()
    try:
        acl = render_acl_for(load_settings(args.config))
    except ConfigError as err:
        sys.exit(str(err))
    args.out.write_text(acl)
    print(args.out)
