#!/usr/bin/env python3
"""Validates deploy/: the Dockerfile and the Kubernetes manifests, offline.

    deploy/validate.py                    everything below; exit 1 on any problem
    deploy/validate.py render OVERLAY     print an overlay as kustomize renders it
    deploy/validate.py pod OVERLAY DIR    lay out under DIR what the overlay's container sees (its
                                          ConfigMap and Secret files, dummy secret values) and print
                                          {"args", "env", "config"} as JSON, paths moved under DIR

What "everything" checks:
  - hadolint accepts deploy/Dockerfile; its EXPOSE, USER, ENTRYPOINT and CMD agree with the
    Deployment (ports, uid, the config path);
  - kustomize renders the base and each overlay;
  - kubernetes-validate --strict accepts every rendered object, for the oldest and the newest
    Kubernetes version checked (K8S_VERSIONS); the two custom resources it has no schema for
    (ServiceMonitor, ClusterServiceBroker) are checked against deploy/kubernetes/schemas/; an object
    of any other kind without a schema is a problem;
  - the objects agree with each other and with the gateway's configuration: Service selectors and
    target ports, probes on the admin listener's port, listen addresses, every *_file secret mounted
    and every *_env variable provided, the ServiceMonitor's job name and the alert rules', the
    ClusterServiceBroker's URL and Secret, the security context, the overlay's store, replicas,
    rollout, volume, PodDisruptionBudget and anti-affinity;
  - deploy/README.md names every Secret and key the manifests expect.

gateway/tests/manifests.rs runs this, then runs `osb-gateway check-config` (and `serve`) on what
`pod` lays out. Tools: deploy/setup-tools installs them (.ci/run calls it).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
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
}
CLUSTER_SCOPED = {"Namespace", "ClusterServiceBroker", "ClusterRole", "ClusterRoleBinding"}
APP = "osb-gateway"
# Secret values for `pod`: obviously fake, of the right shape.
DUMMY_VALUES = {("osb-gateway-postgres", "url"): "postgres://osb_gateway:dummy@postgres.invalid:5432/osb_gateway"}


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


def hadolint() -> Path | None:
    beside = Path(sys.executable).parent / "hadolint"
    if beside.exists():
        return beside
    found = shutil.which("hadolint")
    return Path(found) if found else None


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


def check_overlay(overlay: str, objs: list[dict], problems: Problems) -> dict:
    """Cross-checks of one rendered overlay; returns facts for the Dockerfile and README checks."""
    p = problems
    w = f"overlays/{overlay}"
    facts: dict = {"secrets": {}, "config_path": None, "ports": set(), "uid": None}

    namespaces = find(objs, "Namespace")
    if not p.check(len(namespaces) == 1, w, "expected exactly one Namespace"):
        return facts
    ns = namespaces[0]["metadata"]["name"]
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
            urls = {f"http://{APP}.{ns}.svc.cluster.local:{port}", f"http://{APP}.{ns}.svc:{port}"}
            p.check(csb["spec"]["url"] in urls, bw, f"url must be one of {sorted(urls)}")
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
            facts = check_overlay(overlay, objs, problems)
            for secret, keys in facts["secrets"].items():
                secrets.setdefault(secret, set()).update(k for k in keys if k)
    if facts:
        print(f"Dockerfile: {check_dockerfile(facts, problems)}")
    check_readme(secrets, problems)
    print("Secrets the manifests expect: " + "; ".join(f"{s} ({', '.join(sorted(k))})" for s, k in sorted(secrets.items())))
    if problems.items:
        print(f"\n{len(problems.items)} problem(s):")
        for item in problems.items:
            print(f"  - {item}")
        return 1
    print("deploy/: ok")
    return 0


# ------------------------------------------------------------------------------------------ pod


def lay_out_pod(overlay: str, root: Path) -> dict:
    """The overlay's container as seen from inside, under `root`; paths in the config and env moved."""
    objs = render(K8S / "overlays" / overlay)
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
    r = sub.add_parser("render", help="print an overlay as kustomize renders it")
    r.add_argument("overlay", choices=OVERLAYS)
    q = sub.add_parser("pod", help="lay out an overlay's container files under DIR; print args, env, config")
    q.add_argument("overlay", choices=OVERLAYS)
    q.add_argument("dir", type=Path)
    args = parser.parse_args()
    if args.command == "render":
        print(yaml.safe_dump_all(render(K8S / "overlays" / args.overlay), sort_keys=False), end="")
        return 0
    if args.command == "pod":
        args.dir.mkdir(parents=True, exist_ok=True)
        print(json.dumps(lay_out_pod(args.overlay, args.dir.resolve()), indent=2))
        return 0
    return validate_all()


if __name__ == "__main__":
    sys.exit(main())
