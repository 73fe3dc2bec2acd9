#!/usr/bin/env python3
"""Validates everything under deploy/: YAML, Kubernetes schemas, the spec's
contract, and the Dockerfile's promises.

1. Every *.yaml/*.yml file parses; every document has apiVersion, kind and
   metadata.name (kustomize files and transformer configs aside).
2. Complete objects are checked against the Kubernetes JSON schemas shipped by
   the kubernetes-validate package (strict: unknown fields are errors), at the
   oldest Kubernetes version upstream supports. Patch files are partial
   objects: they are checked through what they produce (step 3).
3. Every Kustomization is rendered with `kubectl kustomize` (a missing
   upstream release file, serving-core.yaml, is replaced by
   deploy/testdata/serving-core.yaml) and the output is validated the same way.
4. Contract checks (spec activator.md sections 1.2 and 9, queue-proxy.md
   section 13), wherever the objects appear: config-deployment only uses keys
   upstream reads and the render points queue-sidecar-image at our image while
   keeping the other keys; the activator Deployment keeps upstream's labels,
   selector, container name, ports, port names and probes and runs with
   upstream's security context; activator-service keeps its ports and names;
   every resource figure in deploy/components/ carries a comment with the
   measurement behind it.
5. deploy/Dockerfile: empty base, numeric user 65532, entrypoint = the binary
   alone, OCI labels, and the binaries built by deploy/build-static.sh (what
   CI builds and deploy/smoke.py runs).

Usage: deploy/validate.py [--kubectl PATH] [--kubernetes-version 1.34]
Needs PyYAML and kubernetes-validate (pip install kubernetes-validate).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import kubernetes_validate
import yaml

DEPLOY = Path(__file__).resolve().parent
UPSTREAM_RELEASE = "serving-core.yaml"
FIXTURE = DEPLOY / "testdata" / UPSTREAM_RELEASE
OUR_IMAGES = {"queue-proxy": "ghcr.io/knative-rs/queue-proxy", "activator": "ghcr.io/knative-rs/activator"}
KUSTOMIZE_KINDS = {
    ("kustomize.config.k8s.io/v1beta1", "Kustomization"),
    ("kustomize.config.k8s.io/v1alpha1", "Component"),
}
# Keys upstream's config-deployment parser reads (pkg/deployment/config.go),
# current and legacy: anything else is a typo the controller silently ignores.
CONFIG_DEPLOYMENT_KEYS = {
    "queue-sidecar-image", "queueSidecarImage",
    "progress-deadline", "progressDeadline",
    "digest-resolution-timeout", "digestResolutionTimeout",
    "registries-skipping-tag-resolving", "registriesSkippingTagResolving",
    "queue-sidecar-cpu-request", "queueSidecarCPURequest",
    "queue-sidecar-memory-request", "queueSidecarMemoryRequest",
    "queue-sidecar-ephemeral-storage-request", "queueSidecarEphemeralStorageRequest",
    "queue-sidecar-cpu-limit", "queueSidecarCPULimit",
    "queue-sidecar-memory-limit", "queueSidecarMemoryLimit",
    "queue-sidecar-ephemeral-storage-limit", "queueSidecarEphemeralStorageLimit",
    "queue-sidecar-tokens", "concurrency-state-endpoint", "concurrencyStateEndpoint",
    "queue-sidecar-rootca", "queue-sidecar-tls-min-version", "queue-sidecar-tls-max-version",
    "queue-sidecar-tls-cipher-suites", "queue-sidecar-tls-curve-preferences",
    "_example",
}  # fmt: skip
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
# activator.md 1.2 / 9, upstream's config/core/deployments/activator.yaml.
ACTIVATOR_LABELS = {"app": "activator", "role": "activator"}
ACTIVATOR_CONTAINER_PORTS = {"http1": 8012, "h2c": 8013}
ACTIVATOR_OPTIONAL_PORTS = {"metrics": 9090, "profiling": 8008}
ACTIVATOR_SERVICE_PORTS = {
    "http-metrics": (9090, 9090),
    "http-profiling": (8008, 8008),
    "http": (80, 8012),
    "http2": (81, 8013),
}
ACTIVATOR_SERVICE_OPTIONAL = {"https": (443, 8112)}


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []

    def check(self, cond: bool, what: str) -> bool:
        if cond:
            self.passed += 1
        else:
            self.failed.append(what)
            print(f"  FAIL: {what}")
        return cond


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(DEPLOY.parent))
    except ValueError:
        return str(path)


def load_docs(path: Path, r: Report) -> list[dict]:
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as err:
        r.check(False, f"{rel(path)}: YAML does not parse: {err}")
        return []
    for i, d in enumerate(docs):
        r.check(isinstance(d, dict), f"{rel(path)} document {i}: a mapping")
    return [d for d in docs if isinstance(d, dict)]


def name_of(doc: dict) -> str:
    meta = doc.get("metadata") or {}
    return f"{doc.get('kind')}/{meta.get('namespace', '-')}/{meta.get('name')}"


def schema_check(doc: dict, where: str, version: str, r: Report, partial: bool = False) -> None:
    """Full strict validation, or for a patch only that its kind/apiVersion exist."""
    ident = f"{where}: {name_of(doc)}"
    if not r.check(
        isinstance(doc.get("apiVersion"), str) and isinstance(doc.get("kind"), str),
        f"{ident}: has apiVersion and kind",
    ):
        return
    r.check(bool((doc.get("metadata") or {}).get("name")), f"{ident}: has metadata.name")
    if doc["apiVersion"].split("/")[0].endswith(".knative.dev"):
        # Knative's own kinds (e.g. the caching Image): their CRDs are not in
        # the Kubernetes schemas; apiVersion, kind and name are all we check.
        return
    try:
        if partial:
            # The schema file exists for this kind at this apiVersion; the
            # patch's fields are checked in the rendered objects.
            kubernetes_validate.utils.schema_contents(
                "kubernetes-json-schema/v%s.0-local/%s-%s.json"
                % (
                    version,
                    doc["kind"].lower(),
                    re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", doc["apiVersion"]),
                ),
                version,
            )
        else:
            kubernetes_validate.validate(doc, version, strict=True)
        r.check(True, f"{ident}: schema")
    except FileNotFoundError:
        r.check(False, f"{ident}: no kind {doc['kind']} in {doc['apiVersion']} at Kubernetes {version}")
    except kubernetes_validate.SchemaNotFoundError as err:
        r.check(False, f"{ident}: {err.message}")
    except kubernetes_validate.ValidationError as err:
        path = "/".join(str(p) for p in err.path)
        r.check(False, f"{ident}: schema: {path}: {err.message}")


# ---------------------------------------------------------------------------
# Contract checks.


def containers_named(doc: dict, name: str) -> list[dict]:
    spec = ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
    return [c for c in spec.get("containers") or [] if c.get("name") == name]


def check_config_deployment(doc: dict, where: str, r: Report) -> None:
    data = doc.get("data") or {}
    unknown = sorted(set(data) - CONFIG_DEPLOYMENT_KEYS)
    r.check(not unknown, f"{where}: config-deployment keys are ones upstream reads (unknown: {unknown})")
    for key, value in data.items():
        if key.endswith(("-request", "-limit")):
            r.check(bool(QUANTITY.match(str(value))), f"{where}: {key}={value!r} is a quantity")
    r.check(
        isinstance(data.get("queue-sidecar-image"), str) and data["queue-sidecar-image"] != "",
        f"{where}: queue-sidecar-image is set",
    )


def check_activator_deployment(doc: dict, where: str, r: Report, partial: bool) -> None:
    containers = containers_named(doc, "activator")
    if not r.check(len(containers) == 1, f"{where}: one container named activator"):
        return
    c = containers[0]
    resources = c.get("resources") or {}
    for kind in ("requests", "limits"):
        for res, value in (resources.get(kind) or {}).items():
            r.check(bool(QUANTITY.match(str(value))), f"{where}: {kind}.{res}={value!r} is a quantity")
    if partial:
        return
    spec = doc.get("spec") or {}
    template = spec.get("template") or {}
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    r.check(selector == ACTIVATOR_LABELS, f"{where}: selector is app/role: activator ({selector})")
    r.check(
        all(labels.get(k) == v for k, v in ACTIVATOR_LABELS.items()),
        f"{where}: pods labelled app/role: activator (activator-service and the SKS select on them)",
    )
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
    for name, number in ACTIVATOR_CONTAINER_PORTS.items():
        r.check(ports.get(name) == number, f"{where}: container port {name} = {number} ({ports.get(name)})")
    for name, number in ACTIVATOR_OPTIONAL_PORTS.items():
        if name in ports:
            r.check(ports[name] == number, f"{where}: container port {name} = {number} ({ports[name]})")
    for probe in ("readinessProbe", "livenessProbe"):
        get = (c.get(probe) or {}).get("httpGet") or {}
        headers = {h.get("name", "").lower(): h.get("value") for h in get.get("httpHeaders") or []}
        r.check(
            get.get("port") in (8012, "http1") and headers.get("k-kubelet-probe") == "activator",
            f"{where}: {probe} is httpGet :8012 with K-Kubelet-Probe: activator",
        )
    sc = c.get("securityContext") or {}
    r.check(sc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem (our image writes nothing)")
    r.check(sc.get("runAsNonRoot") is True, f"{where}: runAsNonRoot (our image is USER 65532)")
    r.check(sc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation: false")
    grace = (template.get("spec") or {}).get("terminationGracePeriodSeconds")
    r.check(grace is None or grace >= 45, f"{where}: terminationGracePeriodSeconds >= the 45 s drain ({grace})")


def check_activator_service(doc: dict, where: str, r: Report) -> None:
    spec = doc.get("spec") or {}
    r.check(spec.get("selector") == {"app": "activator"}, f"{where}: selector app: activator")
    ports = {p.get("name"): (p.get("port"), p.get("targetPort")) for p in spec.get("ports") or []}
    for name, want in ACTIVATOR_SERVICE_PORTS.items():
        r.check(ports.get(name) == want, f"{where}: port {name} = {want[0]}->{want[1]} ({ports.get(name)})")
    for name, want in ACTIVATOR_SERVICE_OPTIONAL.items():
        if name in ports:
            r.check(ports[name] == want, f"{where}: port {name} = {want[0]}->{want[1]} ({ports[name]})")


def check_contract(doc: dict, where: str, r: Report, partial: bool) -> None:
    kind, name = doc.get("kind"), (doc.get("metadata") or {}).get("name")
    if kind == "ConfigMap" and name == "config-deployment":
        check_config_deployment(doc, where, r)
    elif kind == "Deployment" and name == "activator":
        check_activator_deployment(doc, where, r, partial)
    elif kind == "Service" and name == "activator-service" and not partial:
        check_activator_service(doc, where, r)


def check_render(docs: list[dict], fixture: list[dict], images: dict[str, str], where: str, r: Report) -> None:
    """The swap happened, and only the swap: upstream's other settings survive."""
    by_name = {name_of(d): d for d in docs}
    cm = by_name.get("ConfigMap/knative-serving/config-deployment")
    if r.check(cm is not None, f"{where}: renders config-deployment"):
        data = cm.get("data") or {}
        r.check(
            data.get("queue-sidecar-image") == images["queue-proxy"],
            f"{where}: queue-sidecar-image = {images['queue-proxy']} ({data.get('queue-sidecar-image')})",
        )
        upstream = next(d for d in fixture if name_of(d) == name_of(cm))
        kept = {k: v for k, v in (upstream.get("data") or {}).items() if k != "queue-sidecar-image"}
        r.check(all(data.get(k) == v for k, v in kept.items()), f"{where}: upstream's other config-deployment keys kept")
    dep = by_name.get("Deployment/knative-serving/activator")
    if r.check(dep is not None, f"{where}: renders the activator Deployment"):
        c = containers_named(dep, "activator")[0]
        r.check(
            c.get("image") == images["activator"],
            f"{where}: activator image = {images['activator']} ({c.get('image')})",
        )
        requests = (c.get("resources") or {}).get("requests") or {}
        r.check({"cpu", "memory"} <= set(requests), f"{where}: activator has cpu and memory requests")
        upstream = containers_named(next(d for d in fixture if name_of(d) == name_of(dep)), "activator")[0]
        for field in ("ports", "env", "securityContext", "readinessProbe", "livenessProbe"):
            r.check(c.get(field) == upstream.get(field), f"{where}: activator {field} kept from upstream")


def check_plain_patches(kubectl: str, rendered: list[dict], fixture: list[dict], r: Report) -> None:
    """The plain-YAML route (the `kubectl patch` command each patch file documents)
    gives the same objects as the kustomize route."""
    by_name = {name_of(d): d for d in rendered}
    for path in sorted((DEPLOY / "components").rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        text = path.read_text()
        kind = re.search(r"--type (\w+)", text)
        if not r.check(kind is not None, f"{rel(path)}: documents its `kubectl patch --type`"):
            continue
        patch = load_docs(path, r)[0]
        target = next((d for d in fixture if name_of(d) == name_of(patch)), None)
        if not r.check(target is not None, f"{rel(path)}: patches an object of upstream's release"):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            obj = Path(tmp) / "object.yaml"
            obj.write_text(yaml.safe_dump(target))
            out = subprocess.run(
                [kubectl, "patch", "--local", "-f", str(obj), "--type", kind.group(1),
                 "--patch-file", str(path), "-o", "yaml"],
                capture_output=True, text=True, env={"KUBECONFIG": "/dev/null", "PATH": "/usr/bin:/bin"},
            )  # fmt: skip
        if not r.check(out.returncode == 0, f"{rel(path)}: kubectl patch --local applies ({out.stderr.strip()})"):
            continue
        patched = yaml.safe_load(out.stdout)
        r.check(
            patched == by_name.get(name_of(patch)),
            f"{rel(path)}: kubectl patch gives the same {name_of(patch)} as kustomize",
        )


def check_resource_comments(path: Path, r: Report) -> None:
    """Every resource figure sits under (or beside) a comment that has a number in it."""
    lines = path.read_text().splitlines()
    figure = re.compile(r"^\s*(cpu|memory|ephemeral-storage|queue-sidecar-[a-z-]+-(request|limit)):\s")
    for i, line in enumerate(lines):
        if not figure.match(line):
            continue
        # The comment above may cover a run of sibling figures (cpu, then memory).
        block = [line.partition("#")[2]]
        j = i - 1
        while j >= 0 and (lines[j].strip().startswith("#") or figure.match(lines[j])):
            if lines[j].strip().startswith("#"):
                block.append(lines[j])
            j -= 1
        r.check(
            any(re.search(r"\d", b) for b in block),
            f"{rel(path)}:{i + 1}: `{line.strip()}` has a comment with the figure behind it",
        )


def check_dockerfile(r: Report) -> None:
    path = DEPLOY / "Dockerfile"
    text = re.sub(r"\\\n", " ", path.read_text())
    stages: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if m := re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.I):
            current = m.group(2) or m.group(1)
            stages[current] = [line]
        elif current:
            stages[current].append(line)
    base = stages.get("base", [])
    r.check(any(re.match(r"FROM scratch AS base", x) for x in base), "Dockerfile: images are FROM scratch")
    r.check("USER 65532:65532" in base, "Dockerfile: numeric USER 65532:65532")
    r.check("COPY deploy/rootfs/ /" in base, "Dockerfile: deploy/rootfs/ is the image's file tree")
    passwd = (DEPLOY / "rootfs/etc/passwd").read_text()
    r.check(":65532:65532:" in passwd, "deploy/rootfs/etc/passwd names uid 65532")
    for label in ("source", "licenses", "version", "revision"):
        r.check(any(f"org.opencontainers.image.{label}=" in x for x in base), f"Dockerfile: OCI label {label}")
    build = " ".join(stages.get("build", []))
    r.check("deploy/build-static.sh" in build, "Dockerfile: binaries built by deploy/build-static.sh (as in CI)")
    for name in OUR_IMAGES:
        stage = stages.get(name, [])
        r.check(any(x.startswith("FROM base AS") for x in stage), f"Dockerfile: stage {name} is FROM base")
        r.check(
            f"COPY --from=build --chmod=0555 /out/{name} /{name}" in stage,
            f"Dockerfile: {name} binary copied read-only to /{name}",
        )
        r.check(f'ENTRYPOINT ["/{name}"]' in stage, f"Dockerfile: {name} entrypoint is the binary, no args")
        r.check(not any(x.startswith("CMD") for x in stage), f"Dockerfile: {name} has no CMD")
        for label in ("title", "description"):
            r.check(any(f"org.opencontainers.image.{label}=" in x for x in stage), f"Dockerfile: {name} {label}")
    script = (DEPLOY / "build-static.sh").read_text()
    for part in ("+crt-static", "--profile dist", "--target x86_64-unknown-linux-gnu", "-p queue-proxy -p activator"):
        r.check(part in script, f"build-static.sh: {part}")


# ---------------------------------------------------------------------------
# Self-test: each mutation of a copy of deploy/ must be caught.

MUTATIONS = [
    # (file, old, new, a message the validator must print)
    ("components/queue-proxy/config-deployment.yaml", "queue-sidecar-memory-request:",
     "queue-sidecar-memory-requets:", "keys are ones upstream reads"),
    ("components/activator/activator.yaml", "          image: ", "          imagee: ", "'imagee' was unexpected"),
    ("components/activator/activator.yaml", "--type strategic", "--type json", "kubectl patch"),
    ("testdata/serving-core.yaml", "containerPort: 8013", "containerPort: 8014", "container port h2c = 8013"),
    ("testdata/serving-core.yaml", "port: 81\n", "port: 82\n", "port http2 = 81->8013"),
    ("components/activator/activator.yaml", "              # Upstream's limits, kept: 1 core; 600Mi is ~20k held requests.\n",
     "", "has a comment with the figure"),
    ("overlay/kustomization.yaml", "  - ../components/queue-proxy\n", "", "queue-sidecar-image = ghcr.io"),
    ("Dockerfile", "USER 65532:65532", "USER nonroot", "numeric USER"),
    ("Dockerfile", 'ENTRYPOINT ["/queue-proxy"]', 'ENTRYPOINT ["/queue-proxy", "--x"]', "entrypoint is the binary"),
]  # fmt: skip


def self_test(kubectl: str) -> int:
    failures = 0
    for file, old, new, expect in MUTATIONS:
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "deploy"
            shutil.copytree(DEPLOY, copy, ignore=shutil.ignore_patterns("__pycache__"))
            target = copy / file
            text = target.read_text()
            assert old in text, f"self-test mutation no longer applies: {file}: {old!r}"
            target.write_text(text.replace(old, new, 1))
            out = subprocess.run(
                [sys.executable, str(copy / "validate.py"), "--kubectl", kubectl], capture_output=True, text=True
            )
        caught = out.returncode == 1 and expect in out.stdout
        failures += not caught
        print(f"  {'caught' if caught else 'MISSED'}: {file}: {old.strip()!r} -> {new.strip()!r}")
    print(f"validate self-test: {len(MUTATIONS) - failures} passed, {failures} failed")
    return 1 if failures else 0


def kustomization_images(doc: dict) -> dict[str, str]:
    out = {}
    for name, default in OUR_IMAGES.items():
        entry = next((i for i in doc.get("images") or [] if i.get("name") == default), {})
        out[name] = f"{entry.get('newName', default)}:{entry.get('newTag', 'latest')}"
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kubectl", default=shutil.which("kubectl") or "kubectl")
    parser.add_argument("--kubernetes-version", default="1.34", help="upstream's KUBERNETES_MIN_VERSION")
    parser.add_argument("--self-test", action="store_true", help="check that broken copies of deploy/ fail")
    args = parser.parse_args()
    if args.self_test:
        return self_test(args.kubectl)
    version = args.kubernetes_version
    r = Report()

    files = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    # Upstream's own release file, if an operator downloaded it: not ours to check.
    files = [p for p in files if not (p.name == UPSTREAM_RELEASE and p.parent != FIXTURE.parent)]
    parsed = {p: load_docs(p, r) for p in files}

    # What the kustomizations say about the other files.
    patches: set[Path] = set()
    transformer_configs: set[Path] = set()
    kustomizations: list[tuple[Path, dict]] = []
    for path, docs in parsed.items():
        for doc in docs:
            if (doc.get("apiVersion"), doc.get("kind")) not in KUSTOMIZE_KINDS:
                continue
            base = path.parent
            for entry in doc.get("patches") or []:
                patches.add((base / entry["path"]).resolve())
            for entry in doc.get("patchesStrategicMerge") or []:
                patches.add((base / entry).resolve())
            for entry in doc.get("configurations") or []:
                transformer_configs.add((base / entry).resolve())
            for entry in doc.get("components") or []:
                r.check((base / entry / "kustomization.yaml").is_file(), f"{rel(path)}: component {entry} exists")
            for entry in doc.get("resources") or []:
                target = base / entry
                r.check(
                    target.exists() or entry == UPSTREAM_RELEASE or "://" in entry,
                    f"{rel(path)}: resource {entry} exists",
                )
            if doc["kind"] == "Kustomization":
                kustomizations.append((path, doc))

    print(f"== {len(files)} YAML files under deploy/: parse, schemas (Kubernetes {version}, strict), contract")
    for path, docs in parsed.items():
        where = rel(path)
        is_patch = path.resolve() in patches
        for doc in docs:
            if (doc.get("apiVersion"), doc.get("kind")) in KUSTOMIZE_KINDS:
                continue
            if path.resolve() in transformer_configs:
                r.check(set(doc) <= {"images", "namePrefix", "nameSuffix", "commonLabels"}, f"{where}: transformer config")
                continue
            schema_check(doc, where, version, r, partial=is_patch)
            check_contract(doc, where, r, partial=is_patch)
        if path.is_relative_to(DEPLOY / "components"):
            check_resource_comments(path, r)

    fixture = load_docs(FIXTURE, r)
    for path, doc in kustomizations:
        where = f"kustomize build {rel(path.parent)}"
        print(f"== {where}")
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "deploy"
            shutil.copytree(DEPLOY, copy, ignore=shutil.ignore_patterns("__pycache__"))
            target = copy / path.parent.relative_to(DEPLOY)
            if UPSTREAM_RELEASE in (doc.get("resources") or []):
                shutil.copy(FIXTURE, target / UPSTREAM_RELEASE)
            out = subprocess.run([args.kubectl, "kustomize", str(target)], capture_output=True, text=True)
        if not r.check(out.returncode == 0, f"{where}: builds ({out.stderr.strip()})"):
            continue
        rendered = [d for d in yaml.safe_load_all(out.stdout) if d]
        for d in rendered:
            schema_check(d, where, version, r)
            check_contract(d, where, r, partial=False)
        if UPSTREAM_RELEASE in (doc.get("resources") or []):
            check_render(rendered, fixture, kustomization_images(doc), where, r)
            if path.parent == DEPLOY / "overlay":
                check_plain_patches(args.kubectl, rendered, fixture, r)

    print("== deploy/Dockerfile")
    check_dockerfile(r)

    print(f"validate: {r.passed} passed, {len(r.failed)} failed")
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
