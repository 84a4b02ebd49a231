"""``bmsgate config``: headless provisioning, like the dongle's AT console but validated.

``get KEY``, ``set KEY VALUE``, ``check``, ``export [--show-secrets]`` and ``import FILE`` work on
the YAML file (``--config``, else $BMSGATE_CONFIG, else ./bmsgate.yaml) with the same rules as
the services: a bad key or value is one line naming it and exit code 2, and nothing is written.
Keys are dotted paths; list items by index: ``buses.0.packs.1.name``. The file logic lives in
bmsgate_common.config_file, shared with the setup wizard and the web UI.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

import yaml

from bmsgate_common import config_file as cf
from bmsgate_common.config_view import plain
from bmsgate_common.settings import CONFIG_ENV, ConfigError, load_settings

USER_ERROR = 2


def migrate(path: Path, out: TextIO) -> None:
    """Write the file in the current format, naming each change; a copy of the old one first."""
    from bmsgate_common.config_migrate import migrate_config

    raw = cf.read_stored(path)
    data, changes = migrate_config(raw, stamp=True)
    if data == raw:
        out.write(f"{path}: already in the current format (version {data['version']})\n")
        return
    cf.validate(data, path)  # nothing is written, not even the copy, when it would not load
    old = path.with_name(f"{path.name}.v{raw.get('version', 0)}")
    old.write_bytes(path.read_bytes())
    old.chmod(0o600)
    cf.write_private(path, data)
    for change in changes or [f"'version: {data['version']}' added"]:
        out.write(f"{path}: {change}\n")
    out.write(f"{path}: written in format {data['version']}; the old file is {old}\n")


def set_password(path: Path, out: TextIO) -> int:
    """Set the web password (as the first visit would): twice at a terminal, else one line."""
    from bmsgate_api.auth import PasswordError, password_store, read_new_password

    cfg = load_settings(path if path.exists() else None)
    store = password_store(cfg)
    if store.managed:
        sys.stderr.write(
            "bmsgate config: the web password comes from api.password_hash or "
            "api.password_file: change it there\n"
        )
        return USER_ERROR
    try:
        store.set(read_new_password("New web password: "))
    except PasswordError as err:
        sys.stderr.write(f"bmsgate config: {err}; nothing was changed\n")
        return USER_ERROR
    out.write(f"web password set in {store.path}; every open session has ended\n")
    return 0


def run(args: argparse.Namespace) -> int:
    """Carry out one ``bmsgate config`` action; errors are one line and exit 2."""
    path = cf.config_path(args.config)
    out = sys.stdout
    try:
        if args.action == "check":
            cfg = load_settings(path if path.exists() else None)
            packs = sum(len(b.packs) for b in cfg.buses)
            out.write(f"{path}: valid ({len(cfg.buses)} bus(es), {packs} pack(s))\n")
        elif args.action == "get":
            cfg = load_settings(path if path.exists() else None)
            value = cf.lookup(plain(cfg, secrets=args.show_secrets), args.key)
            text = yaml.safe_dump(value, default_flow_style=False, sort_keys=False)
            out.write(text.removesuffix("...\n").rstrip("\n") + "\n")
        elif args.action == "set":
            cf.save(path, cf.assign(cf.read_raw(path), args.key, yaml.safe_load(args.value)))
            out.write(f"{args.key} set in {path}\n")
        elif args.action == "export":
            cfg = cf.validate(cf.read_raw(path), path)
            data = plain(cfg, secrets=True) if args.show_secrets else cf.effective_view(cfg)
            out.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
        elif args.action == "migrate":
            migrate(path, out)
        elif args.action == "password":
            return set_password(path, out)
        elif args.action == "import":
            cf.save(path, cf.read_raw(Path(args.file), missing_ok=False))
            out.write(f"{args.file} imported into {path}\n")
    except ConfigError as err:
        sys.stderr.write(f"bmsgate config: {err}\n")
        return USER_ERROR
    except (yaml.YAMLError, OSError) as err:
        sys.stderr.write(f"bmsgate config: {type(err).__name__}: {err}".splitlines()[0] + "\n")
        return USER_ERROR
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Subcommands of ``bmsgate config``."""
    parser.add_argument(
        "--config", help=f"YAML file (default: ${CONFIG_ENV} or ./{cf.DEFAULT_FILE})"
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("check", help="validate the file (and BMSGATE_* variables)")
    actions.add_parser("migrate", help="write an older file in the current format")
    get = actions.add_parser("get", help="print one value (secrets masked)")
    get.add_argument("key")
    get.add_argument("--show-secrets", action="store_true")
    put = actions.add_parser("set", help="set one value, validated before it is written")
    put.add_argument("key")
    put.add_argument("value", help="YAML: 5, true, text, [1, 2], {id: a}")
    export = actions.add_parser("export", help="the whole configuration (secrets masked)")
    export.add_argument("--show-secrets", action="store_true")
    actions.add_parser(
        "password", help="set the web password (twice at a terminal, else one line of stdin)"
    )
    imp = actions.add_parser("import", help="replace the file with a validated one")
    imp.add_argument("file")
