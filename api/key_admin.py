"""``synchuman keys create|revoke|list``: the operator's API-key commands.

    python -m api.key_admin [--json] create --name NAME | revoke KEY_ID | list

These talk to the deployment's Redis directly (``SYNCHUMAN_REDIS__URL``), not
to the HTTP API: minting keys is an operator's act, so it needs access to the
database rather than a key of its own.  They live beside the API, which checks
the keys; the ``synchuman`` CLI (HTTP only) runs this module as a command.  A
created token is printed once; only its SHA-256 digest is stored.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import redis

from shared.auth import KeyStore
from shared.settings import get_settings


def build_parser() -> argparse.ArgumentParser:
    keys = argparse.ArgumentParser(prog="synchuman keys", description="create, revoke or list API keys")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    create = actions.add_parser("create", help="create a key and print its token once")
    create.add_argument("--name", required=True, help="who or what the key is for")
    revoke = actions.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key_id", help="the key's id (the part after shk_ in its token)")
    actions.add_parser("list", help="list keys (never their tokens)")
    keys.add_argument("--json", action="store_true", help="print JSON")
    return keys


def _store() -> KeyStore:
    settings = get_settings()
    return KeyStore(redis.Redis.from_url(settings.redis.url), prefix=settings.redis.key_prefix)


def run_keys_command(args: argparse.Namespace) -> int:
    store = _store()
    as_json = getattr(args, "json", False)
    if args.keys_command == "create":
        new = store.create(args.name)
        if as_json:
            print(json.dumps({"key_id": new.key.key_id, "name": new.key.name, "token": new.token}))
        else:
            print(f"key_id: {new.key.key_id}\nname:   {new.key.name}\ntoken:  {new.token}")
            print("Store the token now: it is not shown again.", file=sys.stderr)
        return 0
    if args.keys_command == "revoke":
        key = store.revoke(args.key_id)
        if key is None:
            print(f"no key with id {args.key_id}", file=sys.stderr)
            return 1
        print(json.dumps({"key_id": key.key_id, "revoked_at": key.revoked_at}) if as_json else f"revoked {key.key_id}")
        return 0
    keys = store.list()
    if as_json:
        print(json.dumps([k.model_dump(exclude={"digest"}) for k in keys]))
    else:
        for k in keys:
            state = "active" if k.is_active else "revoked " + time.strftime("%Y-%m-%d %H:%M", time.gmtime(k.revoked_at))
            print(f"{k.key_id}  {time.strftime('%Y-%m-%d %H:%M', time.gmtime(k.created_at))}  {state:24}  {k.name}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_keys_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
