#!/usr/bin/env python3
"""Validates deploy/: the Dockerfile, the Kubernetes manifests and the Helm chart, offline.

    deploy/validate.py                    everything below; exit 1 on any problem
    deploy/validate.py render TARGET      print TARGET as it renders: an overlay (embedded, postgres)
                                          by kustomize, or the chart (helm-embedded, helm-postgres)
                                          by `helm template` with its ci/ values
    deploy/validate.py pod TARGET DIR     lay out under DIR what TARGET's container sees (its
                                          ConfigMap and Secret files, dummy secret values) and print
                                          {"args", "env", "config"} as JSON, paths moved under DIR

What "everything" checks:
  - hadolint accepts deploy/Dockerfile; its EXPOSE, USER, ENTRYPOINT and CMD agree with the
    Deployment (ports, uid, the config path);
  - kustomize renders the base and each overlay;
  - the Helm chart deploy/helm/osb-gateway: its copies files/rules.yaml and files/osb-gateway.json
    are byte-identical to deploy/prometheus/rules.yaml and deploy/grafana/osb-gateway.json;
    `helm lint --strict` passes with the default values and with each mode's ci/<mode>-values.yaml;
    `helm template` renders each mode (release osb-gateway, namespace osb-gateway);
  - kubernetes-validate --strict accepts every rendered object (kustomize's and helm's), for the
    oldest and the newest Kubernetes version checked (K8S_VERSIONS); the custom resources it has no
    schema for (ServiceMonitor, ClusterServiceBroker, PrometheusRule) are checked against
    deploy/kubernetes/schemas/; an object of any other kind without a schema is a problem;
  - the objects of each overlay and of each chart mode agree with each other and with the gateway's
    configuration: Service selectors and target ports, probes on the admin listener's port, listen
    addresses, every *_file secret mounted and every *_env variable provided, the ServiceMonitor's
    job name and the alert rules', the ClusterServiceBroker's URL (https when the OSB listener has
    TLS) and Secret, the NetworkPolicy's pods and ports, the grace period, the security context, the
    store, replicas, rollout, volume, PodDisruptionBudget and anti-affinity of the mode;
  - the chart does not drift from the kustomize manifests: each mode's gateway.yaml and policy.yaml
    equal (as parsed YAML) the overlay's, and every other object of the overlay is in the chart with
    the same content (spec, data; not metadata), apart from the differences CHART_DIFFERENCES lists;
    the PrometheusRule's spec is deploy/prometheus/rules.yaml and the dashboard ConfigMap (label
    grafana_dashboard: "1") holds deploy/grafana/osb-gateway.json;
  - deploy/README.md names every Secret and key the manifests and the chart expect.

gateway/tests/manifests.rs runs this, then runs `osb-gateway check-config` (and `serve`) on what
`pod` lays out. Tools: deploy/setup-tools installs them (.ci/run calls it).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import jsonschema
    import kubernetes_validate
    import yaml
    from kubernetes_validate.utils import SchemaNotFoundError
except ImportError as e:  # pragma: no cover - a setup problem, said plainly
    sys.exit(f"validate.py: {e}: run deploy/setup-tools (or .ci/run) and use <repo>/.venv/bin/python")

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
K8S = DEPLOY / "kubernetes"
OVERLAYS = ("embedded", "postgres")
# The oldest Kubernetes the manifests are meant for, and the newest kubernetes-validate knows.
K8S_VERSIONS = ("1.29", kubernetes_validate.utils.latest_version())
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json",
    ("servicecatalog.k8s.io/v1beta1", "ClusterServiceBroker"): "clusterservicebroker-servicecatalog-v1beta1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-monitoring-v1.json",
}
CLUSTER_SCOPED = {"Namespace", "ClusterServiceBroker", "ClusterRole", "ClusterRoleBinding"}
APP = "osb-gateway"
# Secret values for `pod`: obviously fake, of the right shape.
DUMMY_VALUES = {("osb-gateway-postgres", "url"): "postgres://osb_gateway:dummy@postgres.invalid:5432/osb_gateway"}

# The Helm chart: each mode is rendered with its ci/ values, as release APP in namespace APP (the
# names the kustomize manifests use, so that the two compare object by object).
CHART = DEPLOY / "helm" / APP
CHART_MODES = {mode: CHART / "ci" / f"{mode}-values.yaml" for mode in OVERLAYS}
CHART_RELEASE = APP
CHART_NAMESPACE = APP
# The chart reads these with .Files.Get; helm does not reliably follow symlinks out of a chart, so
# they are copies, and must stay byte-identical to the originals.
CHART_COPIES = {
    CHART / "files" / "rules.yaml": DEPLOY / "prometheus" / "rules.yaml",
    CHART / "files" / "osb-gateway.json": DEPLOY / "grafana" / "osb-gateway.json",
}
# What may differ between a chart mode and the overlay of the same store (deploy/README.md, "Helm",
# says the same to operators). Everything else of the overlay must be in the chart, the same.
CHART_DIFFERENCES = (
    "metadata: the chart adds Helm's labels (helm.sh/chart, app.kubernetes.io/managed-by, "
    "app.kubernetes.io/version); only spec/data/other top-level fields are compared",
    "no Namespace: Helm installs into the release's namespace (create it, with the "
    "pod-security.kubernetes.io/enforce: restricted label, yourself)",
    "the Deployment's pod template carries a checksum/config annotation (a gateway.yaml change "
    "rolls the pods)",
    "tls.enabled: gateway.yaml gains tls.cert_file/key_file (and client_ca_file with tls.clientCA), "
    "the secrets volume the files listener-tls.crt, listener-tls.key, listener-client-ca.crt, and "
    "the ClusterServiceBroker an https URL with caBundle or insecureSkipTLSVerify",
    "store.postgres.ca.enabled: the secrets volume gains postgres-ca.crt",
    "clusterServiceBroker.enabled is false by default (the ci/ values turn it on, as the kustomize "
    "base always has it)",
    "chart only: the PrometheusRule <fullname> (deploy/prometheus/rules.yaml) and the ConfigMap "
    "<fullname>-dashboard (Grafana sidecar), both on by default",
)


class Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")

    def check(self, ok: object, where: str, message: str) -> bool:
        if not ok:
            self.add(where, message)
        return bool(ok)


# ---------------------------------------------------------------------------------------- tools


def kustomize_command() -> list[str]:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    sys.exit("validate.py: neither kustomize nor kubectl is installed (deploy/setup-tools checks)")


def kustomize_version() -> str:
    cmd = kustomize_command()
    if cmd[0] == "kustomize":
        out = subprocess.run(["kustomize", "version"], capture_output=True, text=True).stdout
    else:
        out = subprocess.run(["kubectl", "version", "--client"], capture_output=True, text=True).stdout
        out = next((line for line in out.splitlines() if "ustomize" in line), out)
    return f"{' '.join(cmd)} ({out.strip()})"


def render(directory: Path) -> list[dict]:
    result = subprocess.run([*kustomize_command(), str(directory)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"kustomize failed on {directory.relative_to(ROOT)}:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def venv_tool(name: str) -> Path | None:
    """A tool installed beside this Python (deploy/setup-tools puts them in .venv/bin), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return beside
    found = shutil.which(name)
    return Path(found) if found else None


def hadolint() -> Path | None:
    return venv_tool("hadolint")


_HELM_HOME: tempfile.TemporaryDirectory | None = None


def helm(*args: str) -> subprocess.CompletedProcess:
    """Runs helm with its cache, config and data under a temp folder (nothing of the user's is read
    or written: no repositories, no plugins, offline)."""
    global _HELM_HOME
    binary = venv_tool("helm")
    if binary is None:
        raise RuntimeError("helm is not installed (deploy/setup-tools installs it from deploy/requirements.txt)")
    if _HELM_HOME is None:
        _HELM_HOME = tempfile.TemporaryDirectory(prefix="validate-helm-")
    home = Path(_HELM_HOME.name)
    env = {**os.environ, **{f"HELM_{d}_HOME": str(home / d.lower()) for d in ("CACHE", "CONFIG", "DATA")}}
    return subprocess.run([str(binary), *args], capture_output=True, text=True, env=env)


def helm_version() -> str:
    return helm("version", "--short").stdout.strip()


def helm_lint(values: Path | None) -> subprocess.CompletedProcess:
    return helm("lint", "--strict", str(CHART), "--namespace", CHART_NAMESPACE, *(["--values", str(values)] if values else []))


def helm_template(mode: str) -> list[dict]:
    result = helm(
        "template", CHART_RELEASE, str(CHART), "--namespace", CHART_NAMESPACE, "--values", str(CHART_MODES[mode])
    )
    if result.returncode != 0:
        raise RuntimeError(f"helm template failed for {CHART_MODES[mode].relative_to(ROOT)}:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def chart_values(mode: str) -> dict:
    """The chart's values.yaml with the mode's ci/ values over it, merged as helm merges them."""

    def merge(base: dict, over: dict) -> dict:
        out = dict(base)
        for key, value in over.items():
            if value is None:
                out.pop(key, None)
            elif isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = value
        return out

    return merge(yaml.safe_load((CHART / "values.yaml").read_text()), yaml.safe_load(CHART_MODES[mode].read_text()) or {})


def render_target(target: str) -> list[dict]:
    """An overlay (kustomize) or a chart mode (helm-<mode>)."""
    if target.startswith("helm-"):
        return helm_template(target.removeprefix("helm-"))
    return render(K8S / "overlays" / target)


TARGETS = (*OVERLAYS, *(f"helm-{mode}" for mode in CHART_MODES))


# ----------------------------------------------------------------------------------- small helpers


def name_of(obj: dict) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def find(objs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [o for o in objs if o.get("kind") == kind and (name is None or o["metadata"].get("name") == name)]


def selects(selector: dict, labels: dict) -> bool:
    """A Service's selector (a map) or a LabelSelector's matchLabels (all the manifests use)."""
    match = selector["matchLabels"] if "matchLabels" in selector else selector
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def port_of(listen: str) -> int:
    return int(listen.rsplit(":", 1)[1])


def host_of(listen: str) -> str:
    return listen.rsplit(":", 1)[0]


def secret_keys(config: dict) -> list[tuple[str, str, str]]:
    """(key path, kind, value) for every *_file / *_env secret in gateway.yaml."""
    found = []

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                p = f"{path}.{k}" if path else k
                if isinstance(v, str) and (k.endswith("_file") or k.endswith("_env")) and k != "policy_file":
                    found.append((p, "file" if k.endswith("_file") else "env", v))
                else:
                    walk(v, p)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")

    walk(config, "")
    return found


def gateway_container(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next((c for c in containers if c["name"] == APP), containers[0])


def mounted_files(pod: dict, container: dict, objs: list[dict]) -> dict[str, tuple[str, str, str | None]]:
    """Absolute path -> (volume type, source name, key) for every file a volume puts in the container."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    files: dict[str, tuple[str, str, str | None]] = {}
    for mount in container.get("volumeMounts", []):
        base = mount["mountPath"].rstrip("/")
        volume = volumes.get(mount["name"], {})
        sources = []
        if "configMap" in volume:
            sources.append(("configMap", volume["configMap"]))
        if "secret" in volume:
            sources.append(("secret", {"name": volume["secret"]["secretName"], **volume["secret"]}))
        for source in volume.get("projected", {}).get("sources", []):
            for kind in ("configMap", "secret"):
                if kind in source:
                    sources.append((kind, source[kind]))
        for kind, source in sources:
            if source.get("items"):
                for item in source["items"]:
                    files[f"{base}/{item['path']}"] = (kind, source["name"], item["key"])
            elif kind == "configMap":
                for cm in find(objs, "ConfigMap", source["name"]):
                    for key in cm.get("data", {}):
                        files[f"{base}/{key}"] = (kind, source["name"], key)
            else:  # a whole Secret: its keys are unknown here
                files[f"{base}/*"] = (kind, source["name"], None)
    return files


def mount_of(container: dict, path: str) -> dict | None:
    best = None
    for mount in container.get("volumeMounts", []):
        root = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(root) and (best is None or len(root) > len(best["mountPath"])):
            best = mount
    return best


def env_map(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


# ---------------------------------------------------------------------------------------- schemas


def validate_schemas(label: str, objs: list[dict], problems: Problems) -> int:
    checked = 0
    for obj in objs:
        where = f"{label}: {name_of(obj)}"
        crd = CRD_SCHEMAS.get((obj.get("apiVersion"), obj.get("kind")))
        if crd:
            schema = json.loads((K8S / "schemas" / crd).read_text())
            validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
            for error in sorted(validator.iter_errors(obj), key=lambda e: list(e.path)):
                path = ".".join(str(p) for p in error.path)
                problems.add(where, f"schemas/{crd}: {path}: {error.message}")
            checked += 1
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                path = ".".join(str(p) for p in error.path)
                problems.add(where, f"Kubernetes {error.version} (strict): {path}: {error.message}")
            except SchemaNotFoundError as error:
                problems.add(where, f"no schema to check it against: {error.message}")
        checked += 1
    return checked


# --------------------------------------------------------------------------------- cross-checks


def check_overlay(overlay: str, objs: list[dict], problems: Problems, label: str | None = None, namespace: str | None = None) -> dict:
    """Cross-checks of one rendered overlay (or chart mode: `overlay` is then the store kind, and
    `namespace` the release's, where the objects must be, with no Namespace object among them);
    returns facts for the Dockerfile and README checks."""
    p = problems
    w = label or f"overlays/{overlay}"
    facts: dict = {"secrets": {}, "config_path": None, "ports": set(), "uid": None}

    namespaces = find(objs, "Namespace")
    if namespace is None:
        if not p.check(len(namespaces) == 1, w, "expected exactly one Namespace"):
            return facts
        ns = namespaces[0]["metadata"]["name"]
    else:
        p.check(not namespaces, w, "a chart must not create its release's Namespace")
        ns = namespace
    for obj in objs:
        if obj["kind"] in CLUSTER_SCOPED:
            p.check("namespace" not in obj["metadata"], f"{w}: {name_of(obj)}", "cluster-scoped, must have no namespace")
        else:
            p.check(obj["metadata"].get("namespace") == ns, f"{w}: {name_of(obj)}", f"not in namespace {ns}")

    deployments = find(objs, "Deployment", APP)
    if not p.check(len(deployments) == 1, w, f"expected one Deployment {APP}"):
        return facts
    deployment = deployments[0]
    dw = f"{w}: Deployment/{APP}"
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"].get("labels", {})
    p.check(selects(spec["selector"], pod_labels), dw, "selector does not match the pod template's labels")
    container = gateway_container(deployment)
    ports = {port["name"]: port["containerPort"] for port in container.get("ports", [])}
    facts["ports"] = set(ports.values())
    p.check({"osb", "admin"} <= set(ports), dw, "container ports must be named osb and admin")

    # Security.
    psc = pod.get("securityContext", {})
    csc = container.get("securityContext", {})
    facts["uid"] = psc.get("runAsUser", csc.get("runAsUser"))
    p.check(psc.get("runAsNonRoot") is True or csc.get("runAsNonRoot") is True, dw, "runAsNonRoot must be true")
    p.check(facts["uid"] not in (None, 0), dw, "runAsUser must be a non-zero uid")
    p.check(csc.get("allowPrivilegeEscalation") is False, dw, "allowPrivilegeEscalation must be false")
    p.check(csc.get("readOnlyRootFilesystem") is True, dw, "readOnlyRootFilesystem must be true")
    p.check(csc.get("privileged") in (None, False), dw, "must not be privileged")
    caps = csc.get("capabilities", {})
    p.check("ALL" in caps.get("drop", []) and not caps.get("add"), dw, "capabilities: drop ALL, add none")
    p.check(
        (psc.get("seccompProfile") or csc.get("seccompProfile") or {}).get("type") == "RuntimeDefault",
        dw,
        "seccompProfile RuntimeDefault",
    )
    resources = container.get("resources", {})
    for key in ("requests.cpu", "requests.memory", "limits.memory"):
        section, name = key.split(".")
        p.check(name in resources.get(section, {}), dw, f"resources.{key} must be set")
    sa = pod.get("serviceAccountName")
    p.check(sa and find(objs, "ServiceAccount", sa), dw, f"serviceAccountName {sa!r} is not in the manifests")

    # Probes: /readyz and /healthz on the admin listener.
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"), ("startupProbe", "/healthz")):
        get = container.get(probe, {}).get("httpGet")
        if probe == "startupProbe" and probe not in container:
            continue
        if p.check(get, dw, f"{probe} must be an httpGet"):
            p.check(get.get("path") == path, dw, f"{probe} must GET {path}, not {get.get('path')}")
            port = get.get("port")
            p.check(port == "admin" or port == ports.get("admin"), dw, f"{probe} must use the admin port")

    # The configuration: args, ConfigMap, listen addresses.
    args = container.get("args", [])
    p.check("serve" in args and "--config" in args, dw, "args must run `serve --config FILE`")
    config_path = args[args.index("--config") + 1] if "--config" in args[:-1] else None
    facts["config_path"] = config_path
    files = mounted_files(pod, container, objs)
    facts["files"] = files
    for kind, source, key in files.values():  # mounted whether gateway.yaml names them or not
        if kind == "secret":
            facts["secrets"].setdefault(source, set()).add(key)
    if not p.check(config_path in files and files[config_path][0] == "configMap", dw, f"{config_path} is not mounted from a ConfigMap"):
        return facts
    _, cm_name, cm_key = files[config_path]
    cm = find(objs, "ConfigMap", cm_name)[0]
    cw = f"{w}: ConfigMap/{cm_name}"
    config = yaml.safe_load(cm["data"][cm_key])
    facts["config"] = config
    listen = config.get("listen", "127.0.0.1:8080")
    admin_listen = config.get("admin", {}).get("listen")
    p.check(host_of(listen) in ("0.0.0.0", "[::]"), cw, f"listen {listen!r} is unreachable from outside the pod")
    p.check(port_of(listen) == ports.get("osb"), cw, f"listen port {port_of(listen)} is not the container port osb")
    if p.check(admin_listen, cw, "admin.listen is needed: the probes and /metrics are on it"):
        p.check(host_of(admin_listen) in ("0.0.0.0", "[::]"), cw, f"admin.listen {admin_listen!r} is unreachable for probes")
        p.check(port_of(admin_listen) == ports.get("admin"), cw, "admin.listen port is not the container port admin")
    policy = config.get("policy_file")
    if policy:
        policy_path = policy if policy.startswith("/") else f"{config_path.rsplit('/', 1)[0]}/{policy}"
        p.check(policy_path in files, cw, f"policy_file {policy_path} is not mounted")
    p.check("store" not in config, cw, "the store is the overlay's (OSB_GATEWAY__STORE__* variables), not the base's")
    grace = config.get("shutdown_grace_secs", 30)
    p.check(
        pod.get("terminationGracePeriodSeconds", 30) > grace,
        dw,
        f"terminationGracePeriodSeconds must exceed shutdown_grace_secs ({grace}): in-flight requests finish on SIGTERM",
    )

    # Secrets: *_file mounted, *_env provided.
    env = env_map(container)
    env_from = [src["secretRef"]["name"] for src in container.get("envFrom", []) if "secretRef" in src]
    for key, kind, value in secret_keys(config):
        if kind == "file":
            if p.check(value in files, cw, f"{key}: {value} is not mounted from a Secret"):
                vkind, source, skey = files[value]
                p.check(vkind == "secret", cw, f"{key}: {value} comes from a {vkind}, not a Secret")
                facts["secrets"].setdefault(source, set()).add(skey)
        elif value in env:
            ref = env[value].get("valueFrom", {}).get("secretKeyRef")
            if p.check(ref, dw, f"{key}: ${value} must come from a Secret (secretKeyRef)"):
                facts["secrets"].setdefault(ref["name"], set()).add(ref["key"])
        elif p.check(env_from, dw, f"{key}: ${value} is neither in env nor in an envFrom Secret"):
            facts["secrets"].setdefault(env_from[0], set()).add(value)
    for var in env.values():
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            facts["secrets"].setdefault(ref["name"], set()).add(ref["key"])

    # Services.
    services = {s["metadata"]["name"]: s for s in find(objs, "Service")}
    for name, port_name in ((APP, "osb"), (f"{APP}-admin", "admin")):
        sw = f"{w}: Service/{name}"
        svc = services.get(name)
        if not p.check(svc, w, f"Service {name} is missing"):
            continue
        p.check(selects(svc["spec"]["selector"], pod_labels), sw, "selector does not select the gateway's pods")
        targets = [sp.get("targetPort") for sp in svc["spec"]["ports"]]
        p.check(targets == [port_name] or targets == [ports.get(port_name)], sw, f"must target only the {port_name} port")

    # ServiceMonitor: the admin Service's /metrics, with the job the alert rules use.
    rules = (DEPLOY / "prometheus" / "rules.yaml").read_text()
    jobs = set(re.findall(r'job="([^"]+)"', rules))
    for sm in find(objs, "ServiceMonitor"):
        mw = f"{w}: ServiceMonitor/{sm['metadata']['name']}"
        picked = [s for s in services.values() if selects(sm["spec"]["selector"], s["metadata"].get("labels", {}))]
        if not p.check([s["metadata"]["name"] for s in picked] == [f"{APP}-admin"], mw, f"must select Service {APP}-admin only, selects {[s['metadata']['name'] for s in picked]}"):
            continue
        admin_svc = picked[0]
        svc_ports = {sp.get("name") for sp in admin_svc["spec"]["ports"]}
        for ep in sm["spec"]["endpoints"]:
            p.check(ep.get("port") in svc_ports, mw, f"endpoint port {ep.get('port')!r} is not a port of the admin Service")
            p.check(ep.get("path", "/metrics") == "/metrics", mw, "endpoint path must be /metrics")
        label = sm["spec"].get("jobLabel")
        job = admin_svc["metadata"].get("labels", {}).get(label) if label else admin_svc["metadata"]["name"]
        p.check(job in jobs, mw, f"Prometheus would name the job {job!r}; deploy/prometheus/rules.yaml expects {sorted(jobs)}")

    # ClusterServiceBroker: the OSB Service's in-cluster URL and the k8s platform's Secret.
    for csb in find(objs, "ClusterServiceBroker"):
        bw = f"{w}: ClusterServiceBroker/{csb['metadata']['name']}"
        svc = services.get(APP)
        if svc:
            port = svc["spec"]["ports"][0]["port"]
            # https exactly when the OSB listener has TLS; then Service Catalog needs the CA.
            scheme = "https" if config.get("tls", {}).get("cert_file") else "http"
            urls = {f"{scheme}://{APP}.{ns}.svc.cluster.local:{port}", f"{scheme}://{APP}.{ns}.svc:{port}"}
            p.check(csb["spec"]["url"] in urls, bw, f"url must be one of {sorted(urls)}")
            if scheme == "https":
                p.check(
                    csb["spec"].get("caBundle") or csb["spec"].get("insecureSkipTLSVerify"),
                    bw,
                    "an https URL needs caBundle (the CA of the gateway's certificate)",
                )
        ref = csb["spec"].get("authInfo", {}).get("basic", {}).get("secretRef", {})
        p.check(ref.get("namespace") == ns, bw, f"secretRef.namespace must be {ns}")
        # The platform whose password comes from that Secret's `password` key.
        platform = None
        for plat in config.get("platforms", []):
            if files.get(plat.get("password_file")) == ("secret", ref.get("name"), "password"):
                platform = plat
        p.check(platform, bw, f"no platform in gateway.yaml reads its password from Secret {ref.get('name')!r} key password")
        if platform:
            p.check(platform.get("username"), bw, f"platform {platform['name']} needs a username (the Secret's `username`)")
            facts["secrets"].setdefault(ref["name"], set()).update({"username", "password"})

    # NetworkPolicy: it selects the gateway's pods and admits the OSB port (and the admin port, if
    # at all) by the container's port names or numbers.
    for netpol in find(objs, "NetworkPolicy"):
        nw = f"{w}: NetworkPolicy/{netpol['metadata']['name']}"
        p.check(selects(netpol["spec"]["podSelector"], pod_labels), nw, "podSelector does not select the gateway's pods")
        admitted = set()
        for rule in netpol["spec"].get("ingress", []):
            if not rule.get("ports"):
                admitted |= {"osb", "admin"}  # a rule without ports admits every port
            for port in rule.get("ports", []):
                name = port.get("port")
                p.check(name in ports or name in ports.values(), nw, f"port {name!r} is not a port of the gateway's container")
                admitted.add(name if name in ports else next((k for k, v in ports.items() if v == name), name))
        p.check("osb" in admitted, nw, "the OSB port must be admitted (the platforms call it)")

    # Volumes: every ConfigMap and PersistentVolumeClaim referenced exists.
    for volume in pod.get("volumes", []):
        if "configMap" in volume:
            p.check(find(objs, "ConfigMap", volume["configMap"]["name"]), dw, f"ConfigMap {volume['configMap']['name']} is missing")
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            p.check(find(objs, "PersistentVolumeClaim", claim), dw, f"PersistentVolumeClaim {claim} is missing")

    image = container.get("image", "")
    p.check(re.search(r":[^/:]+$", image) and not image.endswith(":latest"), dw, f"image {image!r} needs a pinned tag")

    # The overlay's store, replicas and rollout.
    kind = env.get("OSB_GATEWAY__STORE__KIND", {}).get("value")
    replicas = spec.get("replicas", 1)
    strategy = spec.get("strategy", {})
    if overlay == "embedded":
        p.check(kind == "embedded", dw, "OSB_GATEWAY__STORE__KIND must be embedded")
        p.check(replicas == 1, dw, "the embedded store allows one process: replicas 1")
        p.check(strategy.get("type") == "Recreate", dw, "strategy Recreate (two pods must never open the file at once)")
        path = env.get("OSB_GATEWAY__STORE__PATH", {}).get("value", "")
        mount = mount_of(container, path)
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        p.check(
            path.startswith("/") and mount and "persistentVolumeClaim" in volumes.get(mount["name"], {}) and not mount.get("readOnly"),
            dw,
            f"OSB_GATEWAY__STORE__PATH {path!r} must be on a writable PersistentVolumeClaim mount",
        )
        p.check("OSB_GATEWAY__STORE__URL" not in env, dw, "no store URL with the embedded store")
        p.check(not find(objs, "PodDisruptionBudget"), w, "no PodDisruptionBudget for a single replica")
    elif overlay == "postgres":
        p.check(kind == "postgres", dw, "OSB_GATEWAY__STORE__KIND must be postgres")
        ref = env.get("OSB_GATEWAY__STORE__URL", {}).get("valueFrom", {}).get("secretKeyRef")
        p.check(ref, dw, "OSB_GATEWAY__STORE__URL must come from a Secret (secretKeyRef)")
        p.check(replicas >= 2, dw, "several replicas")
        p.check(
            strategy.get("type", "RollingUpdate") == "RollingUpdate" and strategy.get("rollingUpdate", {}).get("maxUnavailable") == 0,
            dw,
            "RollingUpdate with maxUnavailable 0",
        )
        p.check(not any("persistentVolumeClaim" in v for v in pod.get("volumes", [])), dw, "no data volume with postgres")
        pdbs = find(objs, "PodDisruptionBudget")
        if p.check(len(pdbs) == 1, w, "one PodDisruptionBudget"):
            pdb = pdbs[0]["spec"]
            p.check(selects(pdb["selector"], pod_labels), w, "the PodDisruptionBudget does not select the gateway's pods")
            allowed = pdb["maxUnavailable"] if "maxUnavailable" in pdb else replicas - pdb.get("minAvailable", replicas)
            p.check(isinstance(allowed, int) and 1 <= allowed < replicas, w, "the PodDisruptionBudget must allow 1..replicas-1 disruptions")
        anti = pod.get("affinity", {}).get("podAntiAffinity", {})
        terms = [t.get("podAffinityTerm", t) for t in anti.get("preferredDuringSchedulingIgnoredDuringExecution", [])]
        terms += anti.get("requiredDuringSchedulingIgnoredDuringExecution", [])
        p.check(
            any(selects(t.get("labelSelector", {}), pod_labels) and t.get("topologyKey") for t in terms),
            dw,
            "podAntiAffinity must spread the gateway's own pods",
        )
    return facts


# ------------------------------------------------------------------------------------ the chart


def check_chart_copies(problems: Problems) -> None:
    """files/rules.yaml and files/osb-gateway.json are the originals, byte for byte."""
    for chart_copy, original in CHART_COPIES.items():
        where = str(chart_copy.relative_to(ROOT))
        fix = f"cp {original.relative_to(ROOT)} {chart_copy.relative_to(ROOT)}"
        if problems.check(chart_copy.is_file(), where, f"missing: the chart reads it with .Files.Get ({fix})"):
            problems.check(
                chart_copy.read_bytes() == original.read_bytes(),
                where,
                f"differs from {original.relative_to(ROOT)}: the chart's copy must be byte-identical to it; "
                f"change the original and copy it ({fix})",
            )


def sort_named(node: object) -> object:
    """Lists of named items (env, volumes, ports, containers) in name order: their order means nothing."""
    if isinstance(node, dict):
        return {k: sort_named(v) for k, v in node.items()}
    if isinstance(node, list):
        items = [sort_named(v) for v in node]
        if items and all(isinstance(i, dict) and "name" in i for i in items):
            items.sort(key=lambda i: str(i["name"]))
        return items
    return node


def differences(overlay: object, chart: object, path: str = "") -> list[str]:
    """Where two parsed documents differ, one line each."""
    if isinstance(overlay, dict) and isinstance(chart, dict):
        out = []
        for key in sorted(set(overlay) | set(chart), key=str):
            at = f"{path}.{key}" if path else str(key)
            if key not in overlay:
                out.append(f"{at}: only in the chart")
            elif key not in chart:
                out.append(f"{at}: missing from the chart")
            else:
                out += differences(overlay[key], chart[key], at)
        return out
    if isinstance(overlay, list) and isinstance(chart, list) and len(overlay) == len(chart):
        return [d for i, (a, b) in enumerate(zip(overlay, chart)) for d in differences(a, b, f"{path}[{i}]")]
    if overlay == chart:
        return []
    return [f"{path}: {json.dumps(overlay)} in the overlay, {json.dumps(chart)} in the chart"]


def check_chart(mode: str, objs: list[dict], values: dict, overlay_objs: list[dict] | None, facts: dict, problems: Problems) -> None:
    """What only the chart has (the rules, the dashboard, TLS files), and no drift from the overlay."""
    p = problems
    w = f"helm/{mode}"
    tls = values["tls"]
    pg_ca = values["store"]["postgres"]["ca"]
    files = facts.get("files", {})
    secrets_dir = f"/var/run/secrets/{APP}"
    chart_files = set()  # the chart-only files of the secrets volume, with these values
    if tls["enabled"]:
        chart_files |= {"listener-tls.crt", "listener-tls.key"}
        expected = {f"{secrets_dir}/listener-tls.crt": (tls["secretName"], tls["certKey"]), f"{secrets_dir}/listener-tls.key": (tls["secretName"], tls["keyKey"])}
        if tls["clientCA"]["enabled"]:
            chart_files.add("listener-client-ca.crt")
            expected[f"{secrets_dir}/listener-client-ca.crt"] = (tls["clientCA"]["secretName"] or tls["secretName"], tls["clientCA"]["key"])
        for path, (secret, key) in expected.items():
            p.check(files.get(path) == ("secret", secret, key), w, f"tls.enabled: {path} must be key {key} of Secret {secret}, is {files.get(path)}")
    if mode == "postgres" and pg_ca["enabled"]:
        chart_files.add("postgres-ca.crt")
        path = f"{secrets_dir}/postgres-ca.crt"
        p.check(files.get(path) == ("secret", pg_ca["secretName"], pg_ca["key"]), w, f"store.postgres.ca: {path} must be key {pg_ca['key']} of Secret {pg_ca['secretName']}")

    # The PrometheusRule is deploy/prometheus/rules.yaml.
    rules = find(objs, "PrometheusRule")
    if values["prometheusRule"]["enabled"]:
        if p.check(len(rules) == 1, w, "prometheusRule.enabled: expected one PrometheusRule"):
            original = yaml.safe_load((DEPLOY / "prometheus" / "rules.yaml").read_text())
            diffs = differences(original, rules[0]["spec"])
            p.check(not diffs, f"{w}: {name_of(rules[0])}", "spec is not deploy/prometheus/rules.yaml: " + "; ".join(diffs[:5]))
    else:
        p.check(not rules, w, "prometheusRule.enabled is false, yet there is a PrometheusRule")

    # The dashboard ConfigMap holds deploy/grafana/osb-gateway.json, for Grafana's sidecar.
    dashboards = find(objs, "ConfigMap", f"{APP}-dashboard")
    if values["dashboard"]["enabled"]:
        if p.check(len(dashboards) == 1, w, f"dashboard.enabled: expected ConfigMap {APP}-dashboard"):
            cm = dashboards[0]
            dw = f"{w}: {name_of(cm)}"
            p.check(cm["metadata"].get("labels", {}).get("grafana_dashboard") == "1", dw, 'must be labelled grafana_dashboard: "1" (the sidecar looks for it)')
            data = cm.get("data", {})
            if p.check(list(data) == [f"{APP}.json"], dw, f"data must be the one key {APP}.json, is {sorted(data)}"):
                text = (DEPLOY / "grafana" / "osb-gateway.json").read_text()
                uid = values["dashboard"].get("datasourceUid")
                if uid:
                    text = text.replace("${DS_PROMETHEUS}", uid)
                try:
                    rendered = json.loads(data[f"{APP}.json"])
                    p.check(rendered == json.loads(text), dw, "is not deploy/grafana/osb-gateway.json" + (f" with ${{DS_PROMETHEUS}} = {uid}" if uid else ""))
                except json.JSONDecodeError as e:
                    p.add(dw, f"{APP}.json is not JSON: {e}")
    else:
        p.check(not dashboards, w, "dashboard.enabled is false, yet there is a dashboard ConfigMap")

    if overlay_objs is None:
        return
    # No drift from the overlay of the same store: its objects are in the chart, the same, apart
    # from CHART_DIFFERENCES.
    ow = f"overlays/{mode}"
    chart_index = {(o["kind"], o["metadata"]["name"]): o for o in objs}
    overlay_index = {(o["kind"], o["metadata"]["name"]): o for o in overlay_objs}
    chart_only = {("PrometheusRule", APP), ("ConfigMap", f"{APP}-dashboard")}
    for key, kobj in sorted(overlay_index.items()):
        kind, name = key
        if kind == "Namespace":
            continue
        hobj = chart_index.get(key)
        where = f"{w}: {kind}/{name}"
        if not p.check(hobj, w, f"{kind}/{name} of {ow} is not in the chart"):
            continue
        p.check(hobj.get("apiVersion") == kobj.get("apiVersion"), where, f"apiVersion {hobj.get('apiVersion')} but {kobj.get('apiVersion')} in {ow}")
        if key == ("ConfigMap", f"{APP}-config"):
            kdata, hdata = kobj.get("data", {}), hobj.get("data", {})
            p.check(set(kdata) == set(hdata), where, f"keys {sorted(hdata)} but {sorted(kdata)} in {ow}")
            for data_key in sorted(set(kdata) & set(hdata)):
                kparsed, hparsed = yaml.safe_load(kdata[data_key]), yaml.safe_load(hdata[data_key])
                if data_key == "gateway.yaml" and tls["enabled"] and isinstance(hparsed, dict):
                    keys = {"cert_file", "key_file"} | ({"client_ca_file"} if tls["clientCA"]["enabled"] else set())
                    got = hparsed.pop("tls", {})
                    p.check(set(got) == keys, where, f"tls.enabled: gateway.yaml's tls must have {sorted(keys)}, has {sorted(got)}")
                diffs = differences(kparsed, hparsed)
                p.check(not diffs, where, f"{data_key} differs from {ow}'s: " + "; ".join(diffs[:6]))
            continue
        a = sort_named({k: v for k, v in kobj.items() if k != "metadata"})
        b = sort_named(copy.deepcopy({k: v for k, v in hobj.items() if k != "metadata"}))
        if kind == "Deployment":
            template = b["spec"]["template"]
            annotations = template["metadata"].get("annotations", {})
            p.check(annotations.pop("checksum/config", None), where, "the pod template needs the checksum/config annotation")
            if not annotations:
                template["metadata"].pop("annotations", None)
            for volume in template["spec"].get("volumes", []):
                sources = volume.get("projected", {}).get("sources")
                if sources is None:
                    continue
                seen = set()
                for source in sources:
                    items = source.get("secret", {}).get("items", [])
                    seen |= {i["path"] for i in items if i["path"] in chart_files}
                    items[:] = [i for i in items if i["path"] not in chart_files]
                sources[:] = [s for s in sources if "secret" not in s or s["secret"].get("items") != []]
                p.check(seen == chart_files or not seen, where, f"volume {volume['name']}: expected {sorted(chart_files)}, has {sorted(seen)}")
        if kind == "ClusterServiceBroker" and tls["enabled"]:
            spec = b["spec"]
            spec["url"] = re.sub(r"^https://", "http://", spec["url"])
            spec.pop("caBundle", None)
            spec.pop("insecureSkipTLSVerify", None)
        diffs = differences(a, b)
        p.check(not diffs, where, f"differs from {ow} (beyond CHART_DIFFERENCES): " + "; ".join(diffs[:6]))
    for key in sorted(chart_index):
        if key not in overlay_index and key not in chart_only:
            p.add(w, f"{key[0]}/{key[1]} is neither in {ow} nor a chart-only object of CHART_DIFFERENCES")


def check_dockerfile(facts: dict, problems: Problems) -> str:
    """hadolint, then the final stage against the Deployment; returns hadolint's version."""
    where = "deploy/Dockerfile"
    lint = hadolint()
    version = "hadolint not found"
    if problems.check(lint, where, "hadolint is not installed (deploy/setup-tools installs it)"):
        version = subprocess.run([lint, "--version"], capture_output=True, text=True).stdout.strip()
        result = subprocess.run([lint, "--no-color", str(DEPLOY / "Dockerfile")], capture_output=True, text=True)
        problems.check(result.returncode == 0, where, f"hadolint:\n{result.stdout}{result.stderr}")
    text = (DEPLOY / "Dockerfile").read_text()
    lines = re.sub(r"\\\n", " ", text).splitlines()
    instructions = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    final = instructions[max(i for i, line in enumerate(instructions) if line.upper().startswith("FROM ")):]

    def one(name: str) -> str | None:
        values = [line.split(None, 1)[1] for line in final if line.upper().startswith(name + " ")]
        return values[-1] if values else None

    problems.check(not any(line.upper().startswith("HEALTHCHECK") for line in instructions), where, "no HEALTHCHECK: Kubernetes probes")
    exposed = {int(p.split("/")[0]) for line in final if line.upper().startswith("EXPOSE ") for p in line.split()[1:]}
    problems.check(exposed == facts["ports"], where, f"EXPOSE {sorted(exposed)} but the Deployment's ports are {sorted(facts['ports'])}")
    user = one("USER") or ""
    problems.check(user.split(":")[0] == str(facts["uid"]), where, f"USER {user!r} but the pod runs as uid {facts['uid']}")
    problems.check(json.loads(one("ENTRYPOINT") or "null") == ["osb-gateway"], where, 'ENTRYPOINT ["osb-gateway"]')
    cmd = json.loads(one("CMD") or "null")
    problems.check(
        cmd and cmd[:2] == ["serve", "--config"] and cmd[2] == facts["config_path"],
        where,
        f"CMD must serve --config {facts['config_path']} (where the Deployment mounts gateway.yaml)",
    )
    return version


def check_readme(secrets: dict[str, set], problems: Problems) -> None:
    readme = (DEPLOY / "README.md").read_text()
    for secret, keys in sorted(secrets.items()):
        if problems.check(secret in readme, "deploy/README.md", f"does not name the Secret {secret}"):
            for key in sorted(keys):
                problems.check(re.search(rf"\b{re.escape(key)}\b", readme), "deploy/README.md", f"does not name key {key} of Secret {secret}")


def validate_all() -> int:
    problems = Problems()
    print(f"kustomize: {kustomize_version()}")
    print(f"kubernetes-validate {kubernetes_validate.version.__version__}, Kubernetes {', '.join(K8S_VERSIONS)} (strict)")
    secrets: dict[str, set] = {}
    facts = None
    overlay_objs: dict[str, list[dict]] = {}
    for label, directory in [("base", K8S / "base")] + [(f"overlays/{o}", K8S / "overlays" / o) for o in OVERLAYS]:
        try:
            objs = render(directory)
        except RuntimeError as e:
            problems.add(label, str(e))
            continue
        count = validate_schemas(label, objs, problems)
        kinds = sorted({o["kind"] for o in objs})
        print(f"{label}: {count} objects rendered and checked ({', '.join(kinds)})")
        if label.startswith("overlays/"):
            overlay = label.split("/", 1)[1]
            overlay_objs[overlay] = objs
            facts = check_overlay(overlay, objs, problems)
            for secret, keys in facts["secrets"].items():
                secrets.setdefault(secret, set()).update(k for k in keys if k)
    if facts:
        print(f"Dockerfile: {check_dockerfile(facts, problems)}")

    # The Helm chart: its copies, lint, each mode rendered, checked as the overlays are, and
    # compared with the overlay of the same store.
    check_chart_copies(problems)
    try:
        print(f"helm: {helm_version()}")
        linted = []
        for name, values in [("defaults", None)] + [(mode, path) for mode, path in CHART_MODES.items()]:
            result = helm_lint(values)
            if problems.check(result.returncode == 0, f"helm lint --strict ({name})", f"\n{result.stdout}{result.stderr}"):
                linted.append(name)
        print(f"helm lint --strict {CHART.relative_to(ROOT)}: ok with {', '.join(linted)} values")
        for mode in CHART_MODES:
            label = f"helm/{mode}"
            try:
                objs = helm_template(mode)
            except RuntimeError as e:
                problems.add(label, str(e))
                continue
            count = validate_schemas(label, objs, problems)
            kinds = sorted({o["kind"] for o in objs})
            print(f"{label}: {count} objects rendered ({CHART_MODES[mode].relative_to(CHART)}) and checked ({', '.join(kinds)})")
            chart_facts = check_overlay(mode, objs, problems, label=label, namespace=CHART_NAMESPACE)
            check_chart(mode, objs, chart_values(mode), overlay_objs.get(mode), chart_facts, problems)
            for secret, keys in chart_facts["secrets"].items():
                secrets.setdefault(secret, set()).update(k for k in keys if k)
        print(f"helm: each mode compared with its overlay; allowed differences: {len(CHART_DIFFERENCES)} (CHART_DIFFERENCES)")
    except RuntimeError as e:  # helm missing
        problems.add("deploy/helm", str(e))

    check_readme(secrets, problems)
    print("Secrets the manifests and the chart expect: " + "; ".join(f"{s} ({', '.join(sorted(k))})" for s, k in sorted(secrets.items())))
    if problems.items:
        print(f"\n{len(problems.items)} problem(s):")
        for item in problems.items:
            print(f"  - {item}")
        return 1
    print("deploy/: ok")
    return 0


# ------------------------------------------------------------------------------------------ pod


def lay_out_pod(target: str, root: Path) -> dict:
    """The target's container (an overlay's, or a chart mode's: helm-<mode>) as seen from inside,
    under `root`; paths in the config and env moved."""
    objs = render_target(target)
    deployment = find(objs, "Deployment", APP)[0]
    pod = deployment["spec"]["template"]["spec"]
    container = gateway_container(deployment)
    mounts = sorted((m["mountPath"].rstrip("/") for m in container.get("volumeMounts", [])), key=len, reverse=True)
    moved = re.compile(r"(?<![\w./-])(" + "|".join(re.escape(m) for m in mounts) + r")(?=/|$|[\s\"'])") if mounts else None

    def move(text: str) -> str:
        return moved.sub(lambda m: str(root) + m.group(1), text) if moved else text

    args = container.get("args", [])
    config_path = args[args.index("--config") + 1]
    for mount in mounts:
        (root / mount.lstrip("/")).mkdir(parents=True, exist_ok=True)
    config_text = None
    for path, (kind, source, key) in mounted_files(pod, container, objs).items():
        target = root / path.lstrip("/")
        if kind == "configMap":
            text = find(objs, "ConfigMap", source)[0]["data"][key]
            if path == config_path:
                config_text = text
            target.write_text(move(text))
        elif key is not None:
            target.write_text(DUMMY_VALUES.get((source, key), f"dummy-{source}-{key}") + "\n")
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = move(var["value"])
        elif "secretKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = DUMMY_VALUES.get((ref["name"], ref["key"]), f"dummy-{ref['name']}-{ref['key']}")
    env_from = [src["secretRef"]["name"] for src in container.get("envFrom", []) if "secretRef" in src]
    if config_text and env_from:
        # The envFrom Secret's keys are the *_env names gateway.yaml uses (deploy/README.md lists them).
        for _, kind, value in secret_keys(yaml.safe_load(config_text)):
            if kind == "env" and value not in env:
                env[value] = f"dummy-{env_from[0]}-{value}"
    return {"args": [move(a) for a in args], "env": env, "config": move(config_path)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    r = sub.add_parser("render", help="print an overlay as kustomize renders it, or a chart mode (helm-<mode>) as helm does")
    r.add_argument("overlay", choices=TARGETS)
    q = sub.add_parser("pod", help="lay out an overlay's (or chart mode's) container files under DIR; print args, env, config")
    q.add_argument("overlay", choices=TARGETS)
    q.add_argument("dir", type=Path)
    args = parser.parse_args()
    if args.command == "render":
        print(yaml.safe_dump_all(render_target(args.overlay), sort_keys=False), end="")
        return 0
    if args.command == "pod":
        args.dir.mkdir(parents=True, exist_ok=True)
        print(json.dumps(lay_out_pod(args.overlay, args.dir.resolve()), indent=2))
        return 0
    return validate_all()


if __name__ == "__main__":
    sys.exit(main())
