"""The datastore of a StackStorm test host, behind its `st2 key ...` shim.

    datastore.py ROOT key list|get|set|delete|load ARGS   what `st2 key` takes
    datastore.py ROOT seed FILE                            store the keys of a new host
    datastore.py ROOT migrate 1.5|2.1                      what the datastore migrations do

Items live in <root>/var/lib/st2-hostkit/datastore.json the way st2 stores them: a secret holds
its ciphertext, upper-case hex like st2's. The cipher is not st2's AES but a keyed stream with a
MAC, keyed by <root>/etc/st2/keys/datastore_key.json, so a secret decrypts only on a host with
the same key file, as in st2. The output follows the installed st2: before 1.5 no scope, secret
or encrypted; before 2.1 the scope is "system"; before 2.6 `key load` takes names and values only.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hostcli as cli
from hostcli import Host

Item = dict[str, Any]
USER = "st2admin"  # who the CLI is logged in as
FULL_SCOPE = {"system": "st2kv.system", "user": "st2kv.user"}
KEY_FILE = "etc/st2/keys/datastore_key.json"


class Store:
    def __init__(self, host: Host) -> None:
        self.host = host
        self.path = host.state / "datastore.json"
        self.items: list[Item] = json.loads(self.path.read_text())
        self.cipher = cli.Cipher(host.root / KEY_FILE)

    def save(self) -> None:
        self.path.write_text(json.dumps(self.items, indent=2) + "\n")

    def find(self, name: str, scope: str, user: str | None) -> Item | None:
        return next((i for i in self.items if i["name"] == name and self.has(i, scope, user)), None)

    def put(self, item: Item) -> None:
        old = self.find(item["name"], item.get("scope", "system"), item.get("user"))
        if old is not None:
            self.items.remove(old)
        self.items.append(item)

    def has(self, item: Item, scope: str, user: str | None) -> bool:
        if self.host.version < (1, 5) or scope == "all":
            return True
        wanted = FULL_SCOPE.get(scope, scope)
        if FULL_SCOPE.get(item.get("scope", "system"), item.get("scope")) != wanted:
            return False
        return wanted != "st2kv.user" or item.get("user") == (user or USER)

    def scope(self, scope: str) -> str:
        """A scope as this version stores it: "st2kv.system" from 2.1 on, "system" before."""
        full = FULL_SCOPE.get(scope, scope)
        if self.host.version >= (2, 1):
            return full
        return {value: key for key, value in FULL_SCOPE.items()}.get(full, full)

    # -- what the API returns -----------------------------------------------------------------

    def view(self, item: Item, decrypt: bool) -> Item:
        if self.host.version < (1, 5):
            return {k: item[k] for k in ("name", "value", "expire_timestamp") if k in item}
        secret = bool(item.get("secret", False))
        doc = {
            "name": item["name"],
            "value": item["value"],
            "secret": secret,
            "encrypted": secret,
            "scope": self.scope(item.get("scope", "system")),
        }
        doc.update({k: item[k] for k in ("user", "expire_timestamp") if k in item})
        if secret and decrypt:
            doc["value"], doc["encrypted"] = self.cipher.decrypt(item["value"]), False
        return doc


def display(host: Host) -> list[str]:
    if host.version < (1, 5):
        return ["name", "value", "expire_timestamp"]
    return ["name", "value", "secret", "encrypted", "scope", "user", "expire_timestamp"]


def print_docs(host: Host, docs: list[Item], attributes: list[str], as_json: bool) -> None:
    if as_json:
        print(host.dumps([{k: d[k] for k in attributes if d.get(k) is not None} for d in docs]))
    else:
        print(cli.table(attributes, [[d.get(k) for k in attributes] for d in docs]))


def key_list(store: Store, args: argparse.Namespace) -> int:
    chosen = sorted(
        (i for i in store.items if store.has(i, args.scope, args.user)), key=lambda i: i["name"]
    )
    chosen = [i for i in chosen if i["name"].startswith(args.prefix or "")]
    shown = chosen[: args.last] if args.last > 0 else chosen
    try:
        docs = [store.view(item, args.decrypt) for item in shown]
    except cli.DecryptError:
        return cli.server_error("/v1/keys/?decrypt=true")
    print_docs(store.host, docs, args.attr or display(store.host), args.json)
    if not args.json and args.last > 0 and len(chosen) > args.last:
        note = (
            f"Note: Only first {args.last} key value pairs are displayed. "
            "Use -n/--last flag for more results."
        )
        print(cli.note_box(note))
    return 0


def key_get(store: Store, args: argparse.Namespace) -> int:
    item = store.find(args.name, args.scope, None)
    if item is None:
        print(f'Key Value Pair "{args.name}" is not found.\n')
        return 2
    try:
        doc = store.view(item, args.decrypt)
    except cli.DecryptError:
        return cli.server_error(f"/v1/keys/{args.name}?decrypt=true")
    if args.json:
        print(store.host.dumps(doc))
    else:
        print(cli.property_table({k: doc.get(k) for k in display(store.host) if k != "user"}))
    return 0


def key_set(store: Store, args: argparse.Namespace) -> int:
    item: Item = {"name": args.name, "value": args.value}
    if store.host.version >= (1, 5):
        scope = store.scope(args.scope)
        item.update(secret=args.secret, scope=scope)
        if args.secret:
            item["value"] = store.cipher.encrypt(args.value)
        if scope.endswith("user"):
            item["user"] = args.user or USER
    if args.ttl:
        expires = datetime.now(UTC) + timedelta(seconds=args.ttl)
        item["expire_timestamp"] = expires.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    store.put(item)
    store.save()
    store.host.journal(f"st2 key set {args.name}")
    print(cli.property_table({k: item.get(k) for k in ("name", "value", "expire_timestamp")}))
    return 0


def key_delete(store: Store, args: argparse.Namespace) -> int:
    item = store.find(args.name, args.scope, args.user)
    if item is None:
        print(f'Key Value Pair "{args.name}" is not found.\n')
        return 2
    store.items.remove(item)
    store.save()
    store.host.journal(f"st2 key delete {args.name}")
    print(f'Resource with id "{args.name}" has been successfully deleted.')
    return 0


def key_load(store: Store, args: argparse.Namespace) -> int:
    path, host = cli.cwd_path(args.file), store.host
    if not path.exists():
        return cli.error(f'File "{path}" doesn\'t exist')
    if host.version < (2, 6):  # before 2.6 the CLI sent names and values only
        loaded = [{"name": i["name"], "value": i["value"]} for i in json.loads(path.read_text())]
        for item in loaded:
            store.put(
                {
                    **item,
                    **(
                        {"secret": False, "scope": store.scope("system")}
                        if host.version >= (1, 5)
                        else {}
                    ),
                }
            )
        store.save()
        host.journal(f"st2 key load {args.file} ({len(loaded)} items)")
        print(
            cli.table(["id", "name", "value"], [[i["name"], i["name"], i["value"]] for i in loaded])
        )
        return 0
    if path.suffix in (".yaml", ".yml"):
        import yaml  # only YAML files need it, as in st2

        data = yaml.safe_load(path.read_text())
    elif path.suffix == ".json":
        data = json.loads(path.read_text())
    else:
        return cli.error(f"Unsupported meta type {path.suffix}, file {path}. Allowed: .json, .yaml")
    rows: list[Item] = []
    for entry in [data] if isinstance(data, dict) else data or []:
        name, value = entry["name"], entry["value"]
        if not isinstance(value, str):
            if not args.convert:
                return cli.error(
                    f"Item '{name}' has a value that is not a string. Either pass in "
                    "the -c/--convert option to convert non-string types to JSON "
                    "strings automatically, or convert the data to a string in the file"
                )
            value = json.dumps(value)
        scope, secret = store.scope(entry.get("scope", "st2kv.system")), bool(entry.get("secret"))
        item: Item = {"name": name, "value": value, "secret": secret, "scope": scope}
        if secret and not entry.get("encrypted"):  # encrypted and secret: stored as it is
            item["value"] = store.cipher.encrypt(value)
        if scope.endswith("user"):
            item["user"] = entry.get("user") or USER
        store.put(item)
        shown = {
            "secret": True if secret else None,
            "user": item.get("user"),
            "ttl": entry.get("ttl"),
        }
        rows.append({"name": name, "value": value, "scope": scope, **shown})
    store.save()
    host.journal(f"st2 key load {args.file} ({len(rows)} items)")
    print_docs(host, rows, ["name", "value", "secret", "scope", "user", "ttl"], args.json)
    return 0


def parse_key_command(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="st2 key")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list")
    listing.add_argument("-n", "--last", type=int, default=50)
    listing.add_argument("--prefix")
    listing.add_argument("--decrypt", action="store_true")
    listing.add_argument("-u", "--user")
    listing.add_argument("-a", "--attr", nargs="+")
    getting = commands.add_parser("get")
    getting.add_argument("name")
    getting.add_argument("-d", "--decrypt", action="store_true")
    setting = commands.add_parser("set")
    setting.add_argument("name")
    setting.add_argument("value")
    setting.add_argument("-e", "--encrypt", dest="secret", action="store_true")
    setting.add_argument("-l", "--ttl", type=int)
    setting.add_argument("-u", "--user")
    deleting = commands.add_parser("delete")
    deleting.add_argument("name")
    deleting.add_argument("-u", "--user")
    loading = commands.add_parser("load")
    loading.add_argument("-c", "--convert", action="store_true")
    loading.add_argument("file")
    for command in (listing, getting, setting, deleting, loading):
        command.add_argument("-j", "--json", action="store_true")
        if command is not loading:
            command.add_argument("-s", "--scope", default="system")
    return parser.parse_args(argv)


def seed(store: Store, entries: list[Item]) -> None:
    """Store a new host's keys as its version would have them."""
    for entry in entries:
        item: Item = {"name": entry["name"], "value": entry["value"]}
        if store.host.version >= (1, 5):
            scope = store.scope(entry.get("scope", "system"))
            item.update(secret=bool(entry.get("secret")), scope=scope)
            if item["secret"]:
                item["value"] = store.cipher.encrypt(entry["value"])
            if scope.endswith("user"):
                item["user"] = entry.get("user", USER)
        store.items.append(item)
    store.save()


def migrate(store: Store, since: str) -> None:
    for item in store.items:
        if since == "1.5":
            item.setdefault("secret", False)
            item.setdefault("scope", "system")
        elif since == "2.1":
            item["scope"] = FULL_SCOPE.get(item.get("scope", "system"), item.get("scope"))
    store.save()


def main(argv: list[str]) -> int:
    store = Store(Host(Path(argv[0])))
    if argv[1] == "seed":
        seed(store, json.loads(Path(argv[2]).read_text()))
        return 0
    if argv[1] == "migrate":
        migrate(store, argv[2])
        return 0
    args = parse_key_command(argv[2:])
    commands = {"list": key_list, "get": key_get, "set": key_set, "delete": key_delete}
    return commands.get(args.command, key_load)(store, args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
