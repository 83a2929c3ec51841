#!/usr/bin/env python3
"""Static checks of deploy/ that need no container engine or cluster (run by check.sh).

    python3 deploy/check.py SUBMUX_BIN

Parses every YAML under deploy/k8s and checks the manifests against each other, against
the ConfigMap's submux.toml (which must pass `SUBMUX_BIN --check-config`), against
deploy/Dockerfile and deploy/submux.service: kinds and API versions, selectors, probe
paths, ports, non-root/read-only security context, grace periods longer than submux's
shutdown_grace_ms. Prints one line per check; exits 1 on the first failed group.
Needs PyYAML (Debian: python3-yaml; PyPI: pyyaml) and Python >= 3.11 (tomllib).
"""

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import yaml
except ImportError:
    sys.exit("check.py: PyYAML is missing: apt-get install -y python3-yaml (or pip install pyyaml)")
try:
    import tomllib
except ImportError:  # Python < 3.11
    try:
        import tomli as tomllib  # type: ignore[no-redef]
    except ImportError:
        sys.exit("check.py: needs Python >= 3.11 (tomllib) or the tomli package")

DEPLOY = Path(__file__).resolve().parent
K8S = DEPLOY / "k8s"
DEFAULT_SHUTDOWN_GRACE_MS = 5000  # submux's default (deploy/submux.example.toml)
EXPECTED_KINDS = {
    "ConfigMap": "v1",
    "Deployment": "apps/v1",
    "Service": "v1",
    "PodDisruptionBudget": "policy/v1",
    "HorizontalPodAutoscaler": "autoscaling/v2",
    "Kustomization": "kustomize.config.k8s.io/v1beta1",
}

failures = []


def check(cond, what, quiet=False):
    if not cond or not quiet:
        print(f"  {'ok  ' if cond else 'FAIL'} {what}")
    if not cond:
        failures.append(what)
    return cond


def subset(small, big):
    return isinstance(small, dict) and isinstance(big, dict) and all(big.get(k) == v for k, v in small.items())


def check_config(submux, path, label):
    env = {k: v for k, v in os.environ.items() if k != "SUBMUX_LISTEN"}  # it would override listen
    r = subprocess.run([submux, "--check-config", str(path)], capture_output=True, text=True, env=env)
    out = (r.stdout + r.stderr).strip()
    check(r.returncode == 0, f"{label}: submux --check-config → {out}")


def load_k8s():
    docs = {}
    files = sorted(p for p in K8S.rglob("*") if p.suffix in (".yaml", ".yml"))
    check(bool(files), f"YAML files under {K8S.relative_to(DEPLOY.parent)}")
    for f in files:
        rel = f.relative_to(DEPLOY.parent)
        try:
            parsed = [d for d in yaml.safe_load_all(f.read_text()) if d is not None]
        except yaml.YAMLError as e:
            check(False, f"{rel}: parses as YAML ({e})")
            continue
        kinds = [d.get("kind") if isinstance(d, dict) else None for d in parsed]
        check(bool(parsed), f"{rel}: parses as YAML: {', '.join(map(str, kinds)) or 'no documents'}")
        for d in parsed:
            kind = d.get("kind") if isinstance(d, dict) else None
            if not check(kind in EXPECTED_KINDS, f"{rel}: kind {kind!r} is one of {sorted(EXPECTED_KINDS)}", quiet=True):
                continue
            check(
                d.get("apiVersion") == EXPECTED_KINDS[kind],
                f"{rel}: {kind} apiVersion {d.get('apiVersion')!r} (want {EXPECTED_KINDS[kind]!r})",
                quiet=True,
            )
            if kind != "Kustomization":
                check(bool((d.get("metadata") or {}).get("name")), f"{rel}: {kind} has metadata.name", quiet=True)
            check(kind not in docs, f"{rel}: the only {kind}", quiet=True)
            docs[kind] = (rel, d)
    missing = [k for k in EXPECTED_KINDS if k not in docs]
    check(not missing, f"kinds {', '.join(EXPECTED_KINDS)} all present" + (f" (missing: {missing})" if missing else ""))
    return docs, files


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    submux = sys.argv[1]

    print("== deploy/k8s: YAML, kinds, API versions ==")
    docs, files = load_k8s()
    if failures:
        return 1
    cm = docs["ConfigMap"][1]
    dep = docs["Deployment"][1]
    svc = docs["Service"][1]
    pdb = docs["PodDisruptionBudget"][1]
    hpa = docs["HorizontalPodAutoscaler"][1]
    kus = docs["Kustomization"][1]

    print("== deploy/k8s: the ConfigMap's submux.toml ==")
    toml_text = (cm.get("data") or {}).get("submux.toml")
    if not check(isinstance(toml_text, str), "ConfigMap data has key submux.toml"):
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "submux.toml"
        p.write_text(toml_text)
        check_config(submux, p, "ConfigMap submux.toml")
    cfg = tomllib.loads(toml_text)
    server = cfg.get("server", {})
    listen = server.get("listen", "")
    m = re.fullmatch(r"0\.0\.0\.0:(\d+)|\[::\]:(\d+)", listen)
    check(bool(m), f"listen {listen!r} is on all interfaces (probes and the Service reach the pod IP)")
    listen_port = int(next(g for g in m.groups() if g)) if m else None
    grace_ms = server.get("shutdown_grace_ms", DEFAULT_SHUTDOWN_GRACE_MS)

    print("== deploy/k8s: Deployment ==")
    spec = dep["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    check(subset(spec["selector"]["matchLabels"], pod_labels), "Deployment selector matches its pod labels")
    pod = spec["template"]["spec"]
    containers = pod["containers"]
    check(len(containers) == 1, "one container")
    c = containers[0]
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    check(listen_port in ports.values(), f"containerPort {sorted(ports.values())} includes the listen port {listen_port}")

    def port_of(ref):
        return ports.get(ref) if isinstance(ref, str) else ref

    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = (c.get(probe) or {}).get("httpGet") or {}
        check(get.get("path") == path, f"{probe} is GET {path}")
        check(port_of(get.get("port")) == listen_port, f"{probe} port {get.get('port')!r} is the listen port")
    psc, csc = pod.get("securityContext") or {}, c.get("securityContext") or {}
    check(csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, "runAsNonRoot: true")
    run_as = csc.get("runAsUser", psc.get("runAsUser"))
    check(isinstance(run_as, int) and run_as > 0, f"runAsUser {run_as} is not root")
    check(csc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem: true")
    check(csc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation: false")
    check("ALL" in ((csc.get("capabilities") or {}).get("drop") or []), "capabilities drop ALL")
    res = c.get("resources") or {}
    check(bool((res.get("requests") or {}).get("cpu")), "a CPU request (the HPA's utilisation is relative to it)")
    check(bool((res.get("requests") or {}).get("memory")) and bool((res.get("limits") or {}).get("memory")), "memory request and limit")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = [m for m in c.get("volumeMounts", []) if (volumes.get(m["name"]) or {}).get("configMap")]
    check(len(mounts) == 1, "the config is mounted from a ConfigMap volume")
    if mounts:
        vm = mounts[0]
        check(volumes[vm["name"]]["configMap"]["name"] == cm["metadata"]["name"], "the volume names the ConfigMap")
        check(vm["mountPath"] == "/etc/submux", "mounted at /etc/submux")
        check(vm.get("readOnly") is True, "mounted read-only")
        args = c.get("args") or ["--config", "/etc/submux/submux.toml"]
        cfg_arg = args[args.index("--config") + 1] if "--config" in args else None
        check(cfg_arg == f"{vm['mountPath']}/submux.toml", f"--config {cfg_arg} is the mounted submux.toml")
    pre = ((c.get("lifecycle") or {}).get("preStop") or {})
    pre_s = 0
    cmd = (pre.get("exec") or {}).get("command") or []
    if len(cmd) == 2 and cmd[0] == "sleep":
        pre_s = int(cmd[1])
    elif "sleep" in pre:
        pre_s = int(pre["sleep"]["seconds"])
    tgps = pod.get("terminationGracePeriodSeconds", 30)
    check(
        tgps > pre_s + grace_ms / 1000,
        f"terminationGracePeriodSeconds {tgps} > preStop {pre_s} s + shutdown_grace_ms {grace_ms / 1000:g} s",
    )

    print("== deploy/k8s: Service, PodDisruptionBudget, HorizontalPodAutoscaler, Kustomization ==")
    check(subset(svc["spec"]["selector"], pod_labels), "Service selector matches the pods")
    for sp in svc["spec"]["ports"]:
        check(port_of(sp.get("targetPort", sp["port"])) == listen_port, f"Service port {sp['port']} targets the listen port")
    check(svc["spec"].get("sessionAffinity", "None") == "None", "no session affinity (not needed for WebSockets)")
    check(subset(pdb["spec"]["selector"]["matchLabels"], pod_labels), "PDB selector matches the pods")
    check(("minAvailable" in pdb["spec"]) != ("maxUnavailable" in pdb["spec"]), "PDB sets one of minAvailable/maxUnavailable")
    ref = hpa["spec"]["scaleTargetRef"]
    check(
        ref.get("kind") == "Deployment" and ref.get("name") == dep["metadata"]["name"] and ref.get("apiVersion") == "apps/v1",
        "HPA targets the Deployment",
    )
    lo, hi = hpa["spec"].get("minReplicas", 1), hpa["spec"]["maxReplicas"]
    check(2 <= lo <= hi, f"HPA replicas {lo}..{hi} (at least 2, so the PDB allows drains)")
    listed = set(kus.get("resources") or [])
    others = {str(f.relative_to(K8S)) for f in files if f.name != "kustomization.yaml"}
    check(listed == others, f"kustomization resources {sorted(listed)} == the other manifests {sorted(others)}")
    image = c["image"].rsplit(":", 1)[0]
    check(any(i.get("name") == image for i in kus.get("images") or []), f"kustomization images names {image}")

    print("== deploy/Dockerfile ==")
    df = (DEPLOY / "Dockerfile").read_text()
    lines = [l.strip() for l in re.sub(r"\\\n", " ", df).splitlines() if l.strip() and not l.strip().startswith("#")]
    froms = [l.split()[1] for l in lines if l.upper().startswith("FROM ")]
    check(froms[:1] == ["rust:1-slim-bookworm"] and froms[-1:] == ["debian:bookworm-slim"], f"multi-stage FROM {froms}")
    check(any("cargo build --release --locked" in l for l in lines), "cargo build --release --locked")
    users = [l.split()[1] for l in lines if l.upper().startswith("USER ")]
    check(bool(users) and users[-1].split(":")[0] == str(run_as), f"USER {users[-1:]} is the pods' runAsUser {run_as}")
    expose = [int(x.split("/")[0]) for l in lines if l.upper().startswith("EXPOSE ") for x in l.split()[1:]]
    check(listen_port in expose, f"EXPOSE {expose} includes {listen_port}")
    check('ENTRYPOINT ["submux"]' in lines, 'ENTRYPOINT ["submux"]')
    check('CMD ["--config", "/etc/submux/submux.toml"]' in lines, 'CMD ["--config", "/etc/submux/submux.toml"]')
    ignore = DEPLOY.parent / ".dockerignore"
    if check(ignore.is_file(), ".dockerignore exists (keeps target/ out of the build context)"):
        pats = [l.strip().strip("/") for l in ignore.read_text().splitlines() if l.strip() and not l.startswith("#")]
        check("target" in pats, ".dockerignore excludes target/")
        needed = ["src", "benches", "Cargo.toml", "Cargo.lock"]
        check(not any(p in needed or p in ("*", "**") for p in pats), f".dockerignore keeps {needed} (cargo needs them)")
    cargo = tomllib.loads((DEPLOY.parent / "Cargo.toml").read_text())
    for b in cargo.get("bench", []):
        path = b.get("path", f"benches/{b['name']}.rs")
        check((DEPLOY.parent / path).is_file(), f"[[bench]] {b['name']} source {path} exists (cargo reads it even for --bin builds)")

    print("== deploy/submux.service ==")
    unit = (DEPLOY / "submux.service").read_text()
    kv = {}
    for l in unit.splitlines():
        if "=" in l and not l.lstrip().startswith(("#", ";", "[")):
            k, v = l.split("=", 1)
            kv.setdefault(k.strip(), []).append(v.strip())
    stop = (kv.get("TimeoutStopSec") or ["90s"])[-1]
    m = re.fullmatch(r"(\d+)(s|min)?", stop)
    stop_s = int(m.group(1)) * (60 if m and m.group(2) == "min" else 1) if m else 0
    example = tomllib.loads((DEPLOY / "submux.example.toml").read_text())
    unit_grace = example.get("server", {}).get("shutdown_grace_ms", DEFAULT_SHUTDOWN_GRACE_MS)
    check(stop_s > unit_grace / 1000, f"TimeoutStopSec {stop} > shutdown_grace_ms {unit_grace / 1000:g} s")
    check(kv.get("ExecStart") == ["/usr/local/bin/submux --config /etc/submux/submux.toml"], f"ExecStart {kv.get('ExecStart')}")
    check(kv.get("ExecStartPre") == ["/usr/local/bin/submux --check-config /etc/submux/submux.toml"], f"ExecStartPre {kv.get('ExecStartPre')}")
    for key, want in (("KillSignal", "SIGTERM"), ("Restart", "on-failure"), ("LimitNOFILE", "65536"), ("NoNewPrivileges", "yes"), ("ProtectSystem", "strict")):
        check((kv.get(key) or [None])[-1] == want, f"{key}={want}")

    if failures:
        print(f"\n{len(failures)} check(s) failed:", *failures, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
