"""``eddy keys ...``: the signing keyring every model and checkpoint is signed with (``eddy.core.signing``).

- ``init`` makes a keyring file with one key (``--file``, else ``EDDY_SIGNING_KEYS_FILE``, else the state dir's);
- ``show`` lists its keys, which one signs and when each was made, never the secrets;
- ``rotate`` adds a key that signs from then on (the old ones still verify);
- ``remove KEY_ID`` drops an old key: what it signed no longer loads.

A rotation or removal is an operator action: it goes into the model registry's audit log, for every stream,
before the file changes, so a caller the audit log refuses (no operator key, no registry) changes nothing.
Running services re-read the file within a second.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from eddy.cli import models as cli_models
from eddy.cli.common import CliError, resolve_settings
from eddy.contracts.stream import load_contracts
from eddy.core.settings import Settings
from eddy.core.signing import DEFAULT_KEYRING, KEY_REMOVED, KEY_ROTATED, Keyring, KeyringError, describe, write_keyring


def keyring_path(settings: Settings, explicit: str | None) -> Path:
    """``--file``, else ``EDDY_SIGNING_KEYS_FILE``, else ``STATE_DIR/secrets/signing-keys.json``."""
    if settings.signing_keys.strip() and not explicit:
        raise CliError("the keys come from EDDY_SIGNING_KEYS: change them where that variable is set, or pass --file")
    return Path(explicit or settings.signing_keys_file or settings.state_dir / DEFAULT_KEYRING)


def read(path: Path) -> Keyring:
    if not path.exists():
        raise CliError(f"no keyring at {path}: make one with `eddy keys init`")
    try:
        return Keyring.from_json(path.read_text(), str(path))
    except KeyringError as exc:
        raise CliError(str(exc)) from exc


def cmd_init(args: argparse.Namespace) -> int:
    settings = resolve_settings()
    path = keyring_path(settings, args.file)
    keyring = Keyring.generate(args.key_id)
    if not write_keyring(path, keyring, exclusive=True):
        raise CliError(f"{path} exists already: `eddy keys rotate` adds a key to it")
    print(f"made {path} (mode 0600) with key {keyring.active}; every eddy process needs it (EDDY_SIGNING_KEYS_FILE)")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    path = keyring_path(resolve_settings(), args.file)
    rows = describe(read(path))
    if args.json:
        print(json.dumps({"file": str(path), "keys": rows}))
        return 0
    print(f"keyring {path}")
    for row in rows:
        print(f"  {row['key_id']:<20} {'signs' if row['active'] else 'verifies':<9} {row['created_at']}")
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    settings = resolve_settings()
    path = keyring_path(settings, args.file)
    before = read(path)
    try:
        after = before.rotated(args.key_id)
    except KeyringError as exc:
        raise CliError(str(exc)) from exc
    details = {"key_id": after.active, "previous_key_id": before.active, "keys": list(after.keys), "file": str(path)}
    audit(settings, KEY_ROTATED, details, args.url)
    write_keyring(path, after)
    print(f"key {after.active} signs from now on; {', '.join(k for k in after.keys if k != after.active)} still verify")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    settings = resolve_settings()
    path = keyring_path(settings, args.file)
    try:
        after = read(path).without(args.key_id)
    except KeyringError as exc:
        raise CliError(str(exc)) from exc
    audit(settings, KEY_REMOVED, {"key_id": args.key_id, "keys": list(after.keys), "file": str(path)}, args.url)
    write_keyring(path, after)
    print(f"key {args.key_id} removed: what it signed no longer loads")
    return 0


def audit(settings: Settings, action: str, details: dict[str, Any], url: str | None) -> None:
    """Record ``action`` in the audit log of every stream; raises ``CliError`` (nothing changed) if it cannot."""
    streams = sorted(load_contracts(settings.contracts_dir, settings.streams))
    if not streams:
        raise CliError(f"no stream contracts in {settings.contracts_dir}: the audit log is per stream")
    for stream in streams:
        cli_models.record_audit(stream, action, details, url=url)


def add_parsers(sub: Any) -> None:
    """Add ``keys`` (init, show, rotate, remove) to eddy's subcommands."""
    keys = sub.add_parser("keys", help="the signing keyring of models and checkpoints: init, show, rotate, remove")
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--file", help="the keyring file (default: EDDY_SIGNING_KEYS_FILE, else the state dir's)")
    audited = argparse.ArgumentParser(add_help=False)
    audited.add_argument("--url", help="the model registry whose audit log records it (default: as `eddy models`)")

    p = actions.add_parser("init", parents=[where], help="make a keyring file with one key")
    p.add_argument("--key-id", help="the key's id (default: k<date>-<random>)")
    p.set_defaults(func=cmd_init)
    p = actions.add_parser("show", parents=[where], help="the keys, which one signs, when each was made")
    p.add_argument("--json", action="store_true", help="one JSON document")
    p.set_defaults(func=cmd_show)
    p = actions.add_parser("rotate", parents=[where, audited], help="add a key that signs from now on")
    p.add_argument("--key-id", help="the new key's id (default: k<date>-<random>)")
    p.set_defaults(func=cmd_rotate)
    p = actions.add_parser("remove", parents=[where, audited], help="drop an old key: what it signed no longer loads")
    p.add_argument("key_id", metavar="KEY_ID")
    p.set_defaults(func=cmd_remove)
