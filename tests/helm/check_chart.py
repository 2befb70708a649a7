"""Checks the Helm chart offline: helm lint, helm template with the default values and every file
in helm/crossrank/ci/, Kubernetes schema validation of every rendered manifest (kubernetes-validate,
strict, at the oldest and newest Kubernetes the chart supports), the rendered config.toml loaded by
`crossrank serve --check-config`, what each values file promises, and values the schema must refuse.

Usage: check_chart.py HELM CROSSRANK_BINARY CHART_DIR
Exits non-zero with every failure listed.
"""

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

HELM, CROSSRANK, CHART = sys.argv[1], sys.argv[2], Path(sys.argv[3])
KUBE_VERSIONS = ["1.27.0", "1.37.0"]
failures: list[str] = []


def check(ok: bool, what: str) -> None:
    if not ok:
        failures.append(what)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True)


def render(values: Path | None, *sets: str) -> subprocess.CompletedProcess:
    args = [HELM, "template", "rel", str(CHART), "--namespace", "ns"]
    if values:
        args += ["-f", str(values)]
    for s in sets:
        args += ["--set", s]
    return run(*args)


def by_kind(manifests: list[dict]) -> dict[str, dict]:
    """Manifests by kind; a second object of a kind is keyed KIND/NAME (e.g. the headless Service)."""
    out: dict[str, dict] = {}
    for m in manifests:
        key = m["kind"] if m["kind"] not in out else f"{m['kind']}/{m['metadata']['name']}"
        out[key] = m
    return out


def validate(name: str, text: str, work: Path) -> list[dict]:
    path = work / f"{name}.yaml"
    path.write_text(text)
    for version in KUBE_VERSIONS:
        r = run("kubernetes-validate", "--strict", "--quiet", "-k", version, str(path))
        check(r.returncode == 0, f"{name}: kubernetes-validate {version}: {r.stdout}{r.stderr}")
    return [m for m in yaml.safe_load_all(text) if m]


def check_config(name: str, kinds: dict[str, dict], work: Path) -> str:
    """`crossrank serve --check-config` with the container's flags, the rendered config.toml and
    a keys file standing in for the mounted one (TLS files are left out: they would be read)."""
    toml = kinds["ConfigMap"]["data"]["config.toml"]
    path = work / f"{name}.toml"
    path.write_text(toml)
    keys = work / "keys"
    keys.write_text("# a stand-in for the mounted Secret\nci-key\n")
    args = []
    for a in kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]:
        if a.startswith("--config="):
            a = f"--config={path}"
        elif a.startswith("--api-keys-file="):
            a = f"--api-keys-file={keys}"
        elif a.startswith("--tls-"):
            continue
        args.append(a)
    r = run(CROSSRANK, "serve", "--check-config", *args)
    check(r.returncode == 0, f"{name}: crossrank refused the rendered flags {args}: {r.stderr}\n{toml}")
    return r.stdout


def check_common(name: str, kinds: dict[str, dict], given: dict) -> None:
    pod = kinds["Deployment"]["spec"]["template"]
    spec = pod["spec"]
    c = spec["containers"][0]
    check("checksum/config" in pod["metadata"]["annotations"], f"{name}: no config checksum")
    tls = given.get("tls", {}).get("enabled", False)
    http = given.get("http", {})
    # With TLS on the gRPC port, probes (which cannot speak TLS) use the plaintext health port.
    port = 8081 if tls else 50051
    grpc_probes = [("startupProbe", ""), ("livenessProbe", "crossrank.liveness")]
    if http.get("readinessProbe"):
        got = c.get("readinessProbe", {}).get("httpGet", {})
        want = {"path": "/health", "port": "http", "scheme": "HTTPS" if tls else "HTTP"}
        check(got == want, f"{name}: readinessProbe is not GET /health on http: {got}")
    else:
        grpc_probes.append(("readinessProbe", ""))
    for probe, service in grpc_probes:
        grpc = c.get(probe, {}).get("grpc", {})
        check(grpc.get("service") == service and grpc.get("port") == port,
              f"{name}: {probe} is not a gRPC probe of {service!r} on {port}: {c.get(probe)}")
    grace = int(next(a.split("=")[1] for a in c["args"] if a.startswith("--grace-period-secs=")))
    check(spec["terminationGracePeriodSeconds"] > grace + 5,
          f"{name}: terminationGracePeriodSeconds must exceed the drain period plus preStop")
    check("preStop" in c["lifecycle"], f"{name}: no preStop")
    sc = c["securityContext"]
    check(sc["readOnlyRootFilesystem"] and sc["capabilities"]["drop"] == ["ALL"]
          and not sc["allowPrivilegeEscalation"], f"{name}: container security context {sc}")
    psc = spec["securityContext"]
    check(psc["runAsNonRoot"] and psc["seccompProfile"]["type"] == "RuntimeDefault",
          f"{name}: pod security context {psc}")
    check(spec["automountServiceAccountToken"] is False, f"{name}: service-account token mounted")
    service = next(m for m in kinds.values() if m["kind"] == "Service"
                   and m["spec"].get("clusterIP") != "None")
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    check(ports["grpc"].get("appProtocol") == "grpc", f"{name}: Service grpc port lacks appProtocol")
    check("metrics" in ports, f"{name}: Service has no metrics port")
    check_http(name, kinds, given, ports)


def check_http(name: str, kinds: dict[str, dict], given: dict, ports: dict) -> None:
    """The REST port (http.*) and the API keys Secret (apiKeys.*), on or off as `given` says."""
    spec = kinds["Deployment"]["spec"]["template"]["spec"]
    c = spec["containers"][0]
    http = given.get("http", {})
    tls = given.get("tls", {}).get("enabled", False)
    container_ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    if http.get("enabled"):
        port = http.get("port", 8080)
        check(f"--http-port={port}" in c["args"], f"{name}: no --http-port={port} in {c['args']}")
        check(container_ports.get("http") == port, f"{name}: container ports {container_ports}")
        check(ports.get("http", {}).get("port") == port
              and ports["http"].get("appProtocol") == ("https" if tls else "http"),
              f"{name}: Service http port {ports.get('http')}")
    else:
        check(not any(a.startswith("--http-port") for a in c["args"]) and "http" not in ports
              and "http" not in container_ports, f"{name}: an HTTP port while http.enabled is off")
    keys = given.get("apiKeys", {})
    secret = keys.get("existingSecret") or (keys.get("key") and "rel-crossrank-api-keys")
    item = keys.get("secretKey", "keys")
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    made = [m for m in kinds.values() if m["kind"] == "Secret"
            and m["metadata"]["name"] == "rel-crossrank-api-keys"]
    if not secret:
        check(not any(a.startswith("--api-keys-file") for a in c["args"])
              and "api-keys" not in volumes and not made, f"{name}: API keys without apiKeys")
        return
    check(f"--api-keys-file=/etc/crossrank/keys/{item}" in c["args"],
          f"{name}: no --api-keys-file in {c['args']}")
    check(volumes.get("api-keys", {}).get("secret", {}).get("secretName") == secret,
          f"{name}: Secret {secret} is not mounted: {volumes.get('api-keys')}")
    check(mounts.get("api-keys", {}).get("mountPath") == "/etc/crossrank/keys"
          and mounts["api-keys"].get("readOnly"), f"{name}: keys mount {mounts.get('api-keys')}")
    check(bool(made) == bool(keys.get("key")), f"{name}: chart-made keys Secret {made}")
    if made:
        import base64
        text = base64.b64decode(made[0]["data"][item]).decode()
        check(text == keys["key"] + "\n", f"{name}: the Secret's keys file is {text!r}")
        env = {e["name"] for e in c["env"]}
        check(not any(keys["key"] in a for a in c["args"]) and "CROSSRANK_API_KEYS" not in env,
              f"{name}: the key is in the container's flags or environment")


def main() -> None:
    r = run(HELM, "lint", "--strict", str(CHART))
    check(r.returncode == 0, f"helm lint: {r.stdout}{r.stderr}")
    work = Path(tempfile.mkdtemp())
    cases = [("default", None)] + [(p.stem, p) for p in sorted((CHART / "ci").glob("*.yaml"))]
    check(len(cases) >= 4, "expected at least three value files in ci/")
    rendered = {}
    for name, values in cases:
        if values:
            r = run(HELM, "lint", "--strict", str(CHART), "-f", str(values))
            check(r.returncode == 0, f"helm lint -f {values}: {r.stdout}{r.stderr}")
        r = render(values)
        check(r.returncode == 0, f"{name}: helm template: {r.stderr}")
        if r.returncode != 0:
            continue
        kinds = by_kind(validate(name, r.stdout, work))
        rendered[name] = kinds
        given = values and yaml.safe_load(values.read_text()) or {}
        check_common(name, kinds, given)
        out = check_config(name, kinds, work)
        for m in (values and yaml.safe_load(values.read_text()) or {}).get("models", []):
            check(f"model {m['name']}:" in out, f"{name}: model {m['name']} missing from {out}")
        want = given.get("limits", {}).get("maxPriority", 9)
        check(re.search(rf"max_priority: {want}\b", out) is not None,
              f"{name}: max_priority is not {want} in {out}")

    if gpu := rendered.get("gpu-two-models"):
        c = gpu["Deployment"]["spec"]["template"]["spec"]["containers"][0]
        check(c["resources"]["limits"].get("nvidia.com/gpu") == 1, "gpu: no nvidia.com/gpu limit")
        headless = [m for m in gpu.values() if m["kind"] == "Service"
                    and m["spec"].get("clusterIP") == "None"]
        check(len(headless) == 1 and headless[0]["metadata"]["name"] == "rel-crossrank-headless",
              "gpu: headlessService.enabled rendered no headless Service")
        env = {e["name"]: e for e in c["env"]}
        check("k8s.pod.name=$(POD_NAME)" in env["OTEL_RESOURCE_ATTRIBUTES"]["value"],
              "gpu: pod name is not a resource attribute")
    if hpa := rendered.get("cpu-hpa"):
        check("replicas" not in hpa["Deployment"]["spec"], "cpu-hpa: replicas set beside an HPA")
        metrics = [m["type"] for m in hpa["HorizontalPodAutoscaler"]["spec"]["metrics"]]
        check(metrics == ["Resource", "Pods"], f"cpu-hpa: HPA metrics {metrics}")
        sm = hpa["ServiceMonitor"]["spec"]
        check(sm["endpoints"][0]["port"] == "metrics", "cpu-hpa: ServiceMonitor port")
        check(sm["selector"]["matchLabels"] == hpa["Deployment"]["spec"]["selector"]["matchLabels"],
              "cpu-hpa: ServiceMonitor selects other pods")
        check("Secret" in hpa, "cpu-hpa: admin token Secret not generated")
    if pvc := rendered.get("pvc-init"):
        spec = pvc["Deployment"]["spec"]["template"]["spec"]
        check(spec["initContainers"][0]["name"] == "fetch-models", "pvc-init: no init container")
        volumes = {v["name"]: v for v in spec["volumes"]}
        check(volumes["models"]["persistentVolumeClaim"]["claimName"] == "crossrank-models",
              "pvc-init: models volume is not the claim")
        check("Secret" not in pvc, "pvc-init: a Secret was generated beside existingSecret")
        init = spec["initContainers"][0]
        check(init["image"] == spec["containers"][0]["image"] and init["command"][1] == "fetch",
              f"pvc-init: the init container is not `crossrank fetch` on the server image: {init}")
        for c in (init, spec["containers"][0]):
            env = {e["name"]: e for e in c["env"]}
            check(env.get("HF_HOME", {}).get("value") == "/models/huggingface",
                  f"pvc-init: {c['name']} has no HF_HOME on the model storage")
            check(env.get("HF_TOKEN", {}).get("valueFrom", {}).get("secretKeyRef", {}).get("name")
                  == "hf-token", f"pvc-init: {c['name']} does not take HF_TOKEN from the Secret")
        server_env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
        check(server_env.get("HF_HUB_OFFLINE") == "1", "pvc-init: the server is not offline")

    if tls := rendered.get("tls-mtls"):
        spec = tls["Deployment"]["spec"]["template"]["spec"]
        args = spec["containers"][0]["args"]
        for flag in ["--tls-cert=/etc/crossrank/tls/tls.crt", "--tls-key=/etc/crossrank/tls/tls.key",
                     "--tls-client-ca=/etc/crossrank/tls/ca.crt", "--health-port=8081",
                     "--model-root=/models"]:
            check(flag in args, f"tls-mtls: {flag} missing from {args}")
        volumes = {v["name"]: v for v in spec["volumes"]}
        check(volumes.get("tls", {}).get("secret", {}).get("secretName") == "crossrank-tls",
              "tls-mtls: the TLS Secret is not mounted")
        ports = {p["name"] for p in tls["Service"]["spec"]["ports"]}
        check("health" in ports, "tls-mtls: the Service has no health port for helm test")

    # A changed model config changes the checksum, so pods roll.
    a = by_kind(yaml.safe_load_all(render(None).stdout))
    b = by_kind(yaml.safe_load_all(render(None, "models[0].name=x", "models[0].path=/m",
                                          "models[0].maxWaitMs=9").stdout))
    key = lambda k: k["Deployment"]["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    check(key(a) != key(b), "the config checksum does not follow the models")

    refused = [
        (["models[0].name=a", "models[0].path=/m", "models[0].dtype=f64"], "dtype"),
        (["replicaCont=2"], "replicaCont"),
        (["server.grpcPort=70000"], "grpcPort"),
        (["modelStorage.type=nfs"], "type"),
        (["gpu.count=-1"], "count"),
        (["models[0].name=a b", "models[0].path=/m"], "name"),
        (["models=null"], "models"),
        (["models[0].name=a", "models[0].path=/m", "models[0].device=cuda"], "gpu.count"),
        (["modelStorage.type=persistentVolumeClaim"], "claimName"),
        (["autoscaling.enabled=true", "autoscaling.targetCPUUtilizationPercentage=0"], "metric"),
        (["tls.enabled=true"], "secretName"),
        (["limits.maxStreamInFlight=0"], "maxStreamInFlight"),
        (["limits.maxPriority=1001"], "maxPriority"),
        (["hub.endpoint=ftp://mirror"], "endpoint"),
        (["http.readinessProbe=true"], "http.enabled"),
        (["http.enabled=true", "http.readinessProbe=true", "tls.enabled=true", "tls.secretName=s",
          "tls.clientCaKey=ca.crt"], "mutual TLS"),
        (["http.enabled=true", "http.port=9464"], "server.metricsPort"),
        (["http.port=0"], "port"),
        (["apiKeys.key=two words"], "key"),
        (["apiKeys.key=" + "k" * 257], "key"),
        (["apiKeys.key=k", "apiKeys.existingSecret=s"], "not both"),
    ]
    for sets, word in refused:
        r = render(None, *sets)
        check(r.returncode != 0 and word in r.stderr,
              f"--set {' '.join(sets)} was not refused with a message naming {word!r}: {r.stderr}")

    if failures:
        print("\n".join(f"FAIL {f}" for f in failures))
        sys.exit(1)
    print(f"chart ok: {len(cases)} value sets rendered and validated, {len(refused)} refused")


if __name__ == "__main__":
    main()
