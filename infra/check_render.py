"""infra/check.py's rendering step: each overlay through `kubectl kustomize`, the result
through kubernetes-validate (strict) and checkov, whose findings must each be in
infra/checkov-skips.yaml with a reason."""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
K8S_DIR = ROOT / "infra" / "k8s"
OVERLAYS = ("dev", "prod")
SKIPS = ROOT / "infra" / "checkov-skips.yaml"
# Kinds that kubernetes-validate has no schema for (Gateway API CRDs): check.py checks what
# they route instead.
NO_SCHEMA = {"Gateway", "HTTPRoute"}


def tool(deps: Path, name: str) -> list[str]:
    return [str(deps / "bin" / name)]


def dev_secrets() -> None:
    """The dev overlay reads generated secrets; made as `skaffold dev` makes them."""
    subprocess.run(["sh", str(ROOT / "infra" / "dev-secrets.sh")], check=True,
                   stdout=subprocess.DEVNULL)


def render(deps: Path, overlay: str, yaml, problems) -> list[dict]:
    where = f"infra/k8s/overlays/{overlay}"
    result = subprocess.run(tool(deps, "kubectl") + ["kustomize", str(K8S_DIR / "overlays" /
                                                                     overlay)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        problems.add(where, f"kubectl kustomize failed: {result.stderr.strip()}")
        return []
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def validate(overlay: str, resources: list[dict], versions, problems) -> tuple[int, int]:
    """(resources valid against every version, resources of kinds without a schema)."""
    import kubernetes_validate as kv

    valid = unchecked = 0
    for res in resources:
        what = f"{res.get('kind')}/{(res.get('metadata') or {}).get('name')}"
        if res.get("kind") in NO_SCHEMA:
            unchecked += 1
            continue
        ok = True
        for version in versions:
            try:
                kv.validate(res, version, strict=True)
            except kv.ValidationError as e:
                at = ".".join(str(p) for p in e.path) or "(top)"
                problems.add(f"overlays/{overlay}", f"{what} does not validate against "
                                                    f"Kubernetes {version}: {at}: {e.message}")
                ok = False
            except (kv.SchemaNotFoundError, kv.InvalidSchemaError) as e:
                problems.add(f"overlays/{overlay}", f"{what}: {e.message}")
                ok = False
        valid += ok
    return valid, unchecked


def load_skips(yaml, problems) -> list[dict]:
    if not SKIPS.is_file():
        problems.add("infra/checkov-skips.yaml", "missing")
        return []
    skips = yaml.safe_load(SKIPS.read_text()) or []
    for skip in skips:
        if not str(skip.get("reason", "")).strip() or not skip.get("check"):
            problems.add("infra/checkov-skips.yaml", f"{skip}: every skip needs a check and a "
                                                     "reason")
    return skips


def checkov(deps: Path, rendered: dict[str, list[dict]], yaml, problems) -> dict[str, int]:
    """Runs checkov once over every overlay's rendered output; a failure that no skip covers is
    a problem, and so is a skip that covers nothing. Returns passed/failed/skipped counts."""
    skips = load_skips(yaml, problems)
    used = [False] * len(skips)
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    with tempfile.TemporaryDirectory() as tmp:
        for overlay, resources in rendered.items():
            (Path(tmp) / f"{overlay}.yaml").write_text(yaml.safe_dump_all(resources))
        env = dict(os.environ, PYTHONPATH=str(deps), BC_SKIP_MAPPING="TRUE")
        result = subprocess.run(
            [sys.executable, "-m", "checkov.main", "--framework", "kubernetes", "-d", tmp,
             "--output", "json", "--compact", "--skip-download"],
            capture_output=True, text=True, env=env)
        try:
            reports = json.loads(result.stdout)
        except json.JSONDecodeError:
            problems.add("infra", f"checkov did not report (exit {result.returncode}): "
                                  f"{result.stderr.strip()[-500:]}")
            return counts
    reports = reports if isinstance(reports, list) else [reports]
    for report in reports:
        results = report.get("results") or {}
        counts["passed"] += (report.get("summary") or {}).get("passed", 0)
        for failed in results.get("failed_checks") or []:
            overlay = Path(failed["file_path"]).stem
            covering = [i for i, s in enumerate(skips)
                        if s.get("check") == failed["check_id"]
                        and overlay in s.get("overlays", OVERLAYS)
                        and any(fnmatch.fnmatch(failed["resource"], r)
                                for r in s.get("resources", ["*"]))]
            if covering:
                counts["skipped"] += 1
                for i in covering:
                    used[i] = True
            else:
                counts["failed"] += 1
                problems.add(f"overlays/{overlay}", f"checkov {failed['check_id']} "
                                                    f"({failed['check_name']}) fails for "
                                                    f"{failed['resource']}")
    for skip, was_used in zip(skips, used):
        if not was_used:
            problems.add("infra/checkov-skips.yaml", f"{skip.get('check')} "
                                                     f"{skip.get('resources', ['*'])}: skips "
                                                     "nothing any more; remove it")
    return counts
