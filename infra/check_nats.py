"""infra/check.py's NATS step: the users and permissions in infra/k8s/base/nats/auth.conf
against what the code publishes and consumes.

A service publishes the catalog events it builds (outside its listeners) and consumes, on one
durable consumer per `Handler<Event>` impl, the subjects of that event; `common::events` then
needs exactly: publish to its events, the two streams' CREATE/UPDATE and the event stream's
INFO, per consumer CREATE, MSG.NEXT, INFO, its acks and its dead letters, and DELETE of a
consumer it names in its source (retired ones); subscribe to `_INBOX.>` and to the subjects it
taps (`.tap(&[Subject::…])`). Each service with NATS gets exactly that, under its own name; no
other user but `ops` may exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AUTH_CONF = ROOT / "infra" / "k8s" / "base" / "nats" / "auth.conf"
CATALOG = ROOT / "crates" / "common" / "src" / "events" / "catalog.rs"
# People's tools (`ticketing events tail`, `dlq`): every permission, on purpose.
OPS_USER = "ops"
INBOX = "_INBOX.>"


# ---------------------------------------------------------------------------------------------
# The NATS configuration format, as far as auth.conf uses it: maps, arrays, `key: value`,
# `key value` or `key = value`, quoted or bare strings, `$VARIABLE` references, `#` comments.

TOKEN = re.compile(r'\s*(?:#[^\n]*|//[^\n]*|"((?:[^"\\]|\\.)*)"|([{}\[\],:=])|([^\s{}\[\],:=#"]+))')


def tokens(text: str):
    pos = 0
    while pos < len(text):
        match = TOKEN.match(text, pos)
        if not match or match.end() == pos:
            if text[pos:].strip():
                raise ValueError(f"cannot read {text[pos:pos + 20]!r}")
            return
        pos = match.end()
        quoted, punct, bare = match.groups()
        if quoted is not None:
            yield ("str", quoted)
        elif punct:
            yield (punct, punct)
        elif bare:
            yield ("str", bare)


def parse_conf(text: str) -> dict:
    items = list(tokens(text))
    pos = 0

    def value():
        nonlocal pos
        kind, tok = items[pos]
        pos += 1
        if kind == "{":
            return members("}")
        if kind == "[":
            out = []
            while items[pos][0] != "]":
                if items[pos][0] == ",":
                    pos += 1
                    continue
                out.append(value())
            pos += 1
            return out
        return tok

    def members(end):
        nonlocal pos
        out = {}
        while pos < len(items) and items[pos][0] != end:
            if items[pos][0] == ",":
                pos += 1
                continue
            key = items[pos][1]
            pos += 1
            if items[pos][0] in (":", "="):
                pos += 1
            out[key] = value()
        pos += 1
        return out

    return members(None)


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def load_users(problems) -> dict[str, dict]:
    """auth.conf's users: name → {"password", "publish", "subscribe"} (None: no permissions)."""
    try:
        conf = parse_conf(AUTH_CONF.read_text())
    except (OSError, ValueError, IndexError) as e:
        problems.add(AUTH_CONF, f"cannot be read: {e}")
        return {}
    users = {}
    for user in (conf.get("authorization") or {}).get("users") or []:
        perms = user.get("permissions")
        users[user.get("user")] = {
            "password": user.get("password"),
            "publish": None if perms is None else
            as_list((perms.get("publish") or {}).get("allow") or []),
            "subscribe": None if perms is None else
            as_list((perms.get("subscribe") or {}).get("allow") or []),
        }
    return users


# ---------------------------------------------------------------------------------------------
# What the code does on the bus.

def catalog() -> tuple[dict[str, str], dict[str, list[str]]]:
    """Subject variant → NATS token, and payload type → the variants it travels on (a
    listener of it consumes all of them)."""
    text = CATALOG.read_text()
    token_fn = text[text.index("pub fn token(self)"):]
    token_fn = token_fn[:token_fn.index("\n    }\n")]
    tokens_of = dict(re.findall(r'Self::(\w+)\s*=>\s*"([\w.]+)"', token_fn))
    payloads: dict[str, list[str]] = {}
    for name, subject, extra in re.findall(
            r"versioned_event!\(\s*(\w+),\s*(\w+),[^;]*?(?:subjects:\s*\[([^\]]*)\])?\);",
            text, re.S):
        payloads[name] = [s.strip() for s in extra.split(",")] if extra else [subject]
    for name, subject in re.findall(
            r"impl Event for (\w+) \{\s*const SUBJECT: Subject = Subject::(\w+);", text):
        payloads[name] = [subject]
    return tokens_of, payloads


def bus_use(svc, tokens_of, payloads) -> tuple[set[str], dict[str, list[str]], set[str], set[str]]:
    """The tokens `svc` publishes, its consumers (name → tokens), the string literals of its
    source (for retired consumers it removes) and the tokens it taps."""
    from check import strip_test_modules, rust_files

    published, consumers, literals, tapped = set(), {}, set(), set()
    for path in rust_files(svc.dir / "src"):
        text = strip_test_modules(path.read_text())
        literals |= set(re.findall(r'"([\w.-]+)"', text))
        for subjects in re.findall(r"\.tap\(\s*&\[([^\]]*)\]", text):
            tapped |= {tokens_of[s] for s in re.findall(r"Subject::(\w+)", subjects)}
        for payload in re.findall(r"impl Handler<(\w+)> for", text):
            subjects = [tokens_of[s] for s in payloads.get(payload, [])]
            name = f"{svc.name}-" + "-and-".join(t.replace(".", "-") for t in subjects)
            consumers[name] = subjects
        if "listeners" in path.parts:
            continue
        for payload in payloads:
            if re.search(rf"(?<![\w]){payload}\s*(?:\(|\{{)", text):
                published |= {tokens_of[s] for s in payloads[payload]}
    return published, consumers, literals, tapped


def expected_publish(ns: str, published, consumers) -> set[str]:
    events, dlq = f"{ns}_events", f"{ns}_dlq"
    allow = {f"{ns}.events.{t}" for t in published}
    allow |= {f"$JS.API.STREAM.{op}.{s}" for op in ("CREATE", "UPDATE") for s in (events, dlq)}
    allow.add(f"$JS.API.STREAM.INFO.{events}")
    for c in consumers:
        allow |= {f"$JS.API.CONSUMER.{op}.{events}.{c}" for op in ("CREATE", "MSG.NEXT", "INFO")}
        allow |= {f"$JS.ACK.{events}.{c}.>", f"{ns}.dlq.{c}"}
    return allow


def check(services, namespace: str, problems) -> dict[str, dict]:
    """auth.conf against the code; returns its users for the manifests' cross-checks."""
    users = load_users(problems)
    if not users:
        problems.add(AUTH_CONF, "no users")
        return users
    tokens_of, payloads = catalog()
    with_nats = {s.name: s for s in services.values() if "NATS_URL" in s.required}
    for name, svc in sorted(with_nats.items()):
        user = users.get(name)
        if user is None:
            problems.add(AUTH_CONF, f"no user {name}, whose service connects to NATS")
            continue
        if user["password"] != f"${name.upper()}_PASSWORD":
            problems.add(AUTH_CONF, f"user {name}: password must be ${name.upper()}_PASSWORD "
                                    "(from the environment)")
        if user["publish"] is None:
            problems.add(AUTH_CONF, f"user {name} has no permissions: it may do anything")
            continue
        published, consumers, literals, tapped = bus_use(svc, tokens_of, payloads)
        wanted = expected_publish(namespace, published, consumers)
        have = set(user["publish"])
        retired = {s for s in have - wanted
                   if s.startswith(f"$JS.API.CONSUMER.DELETE.{namespace}_events.{name}-")
                   and s.rsplit(".", 1)[1] in literals}
        for subject in sorted(have - wanted - retired):
            problems.add(AUTH_CONF, f"user {name} may publish to {subject}, which "
                                    f"services/{name} does not need (it publishes "
                                    f"{sorted(published)}, consumes {sorted(consumers)})")
        for subject in sorted(wanted - have):
            problems.add(AUTH_CONF, f"user {name} may not publish to {subject}, which "
                                    f"services/{name} needs")
        wanted_subscribe = [INBOX] + sorted(f"{namespace}.events.{t}" for t in tapped)
        if sorted(user["subscribe"]) != sorted(wanted_subscribe):
            problems.add(AUTH_CONF, f"user {name} may subscribe to {user['subscribe']}; "
                                    f"services/{name} needs {wanted_subscribe} (pulled "
                                    f"messages and JetStream's answers arrive on {INBOX}, "
                                    "and the events it taps as they pass)")
    for name, user in users.items():
        if name not in with_nats and name != OPS_USER:
            problems.add(AUTH_CONF, f"user {name} is no service that connects to NATS")
    return users
