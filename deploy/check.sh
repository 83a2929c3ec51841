#!/usr/bin/env bash
# Static checks of the deployment files, for CI machines without a container engine, a
# cluster or a running systemd:
#   1. every TOML under deploy/ passes `submux --check-config`;
#   2. deploy/k8s: YAML parses, kinds/API versions, cross-references, and the ConfigMap's
#      embedded submux.toml passes --check-config (deploy/check.py, PyYAML);
#   3. deploy/submux.service passes `systemd-analyze verify` and an offline
#      `systemd-analyze security` review (exposure must stay "OK", <= 2.0).
#
#   SUBMUX_BIN=target/debug/submux deploy/check.sh     (default: target/debug/submux)
#
# Run by tests/deploy_static.rs (cargo test). Missing tools fail with an install hint
# (`scripts/test` installs them: systemd for systemd-analyze, python3-yaml); only on a non-Linux
# machine is the systemd part skipped (systemd does not exist there).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${SUBMUX_BIN:-target/debug/submux}
if [ ! -x "$bin" ]; then
  echo "check.sh: $bin is not an executable submux: run \`cargo build --bin submux\` or set SUBMUX_BIN" >&2
  exit 1
fi
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# SUBMUX_LISTEN would override every config's listen address: check the files as written.
unset SUBMUX_LISTEN

echo "== TOML configurations under deploy/ =="
found=0
while IFS= read -r -d '' f; do
  found=$((found + 1))
  echo "  $("$bin" --check-config "$f")"
done < <(find deploy -name '*.toml' -print0 | sort -z)
[ "$found" -gt 0 ] || { echo "check.sh: no TOML found under deploy/" >&2; exit 1; }

# A python3 with PyYAML: the one on PATH (maybe pyenv's), else Debian's (python3-yaml).
py=
for cand in python3 /usr/bin/python3; do
  if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import yaml' >/dev/null 2>&1; then
    py=$cand
    break
  fi
done
if [ -z "$py" ]; then
  echo "check.sh: no python3 with PyYAML: run .ci/run, or apt-get install -y python3-yaml, or pip install pyyaml" >&2
  exit 1
fi
"$py" deploy/check.py "$bin"

echo "== deploy/submux.service (systemd-analyze) =="
if ! command -v systemd-analyze >/dev/null 2>&1; then
  if [ "$(uname -s)" != Linux ]; then
    echo "  SKIPPED: systemd-analyze does not exist on $(uname -s); the unit is checked on Linux CI"
    exit 0
  fi
  echo "check.sh: systemd-analyze not found: run .ci/run or apt-get install -y systemd" >&2
  exit 1
fi
# `verify` checks that ExecStart's binary exists and is executable, and nothing installs
# /usr/local/bin/submux on a CI machine: verify a copy pointing at the built binary
# instead (the config path is only an argument and is not checked).
unit=$tmp/submux.service
sed "s#/usr/local/bin/submux#$bin#g" deploy/submux.service >"$unit"
grep -q "ExecStart=$bin --config" "$unit" || { echo "check.sh: ExecStart not rewritten in the copy" >&2; exit 1; }
if ! out=$(systemd-analyze verify "$unit" 2>&1) || [ -n "$out" ]; then
  echo "$out"
  echo "check.sh: systemd-analyze verify deploy/submux.service failed (above)" >&2
  exit 1
fi
echo "  ok   systemd-analyze verify (with ExecStart=$bin)"
# Offline security review (systemd >= 250): exposure 0.0 (locked down) .. 10.0 (exposed);
# --threshold is in tenths. Fails if someone loosens the hardening.
if systemd-analyze security --help 2>/dev/null | grep -q -- '--offline'; then
  if ! out=$(systemd-analyze security --offline=true --threshold=20 --no-pager "$unit" 2>&1); then
    echo "$out"
    echo "check.sh: deploy/submux.service exposure above 2.0 (above)" >&2
    exit 1
  fi
  echo "  ok   systemd-analyze security: $(echo "$out" | grep -o 'Overall exposure level.*')"
else
  echo "  note: this systemd-analyze has no --offline security review (needs systemd >= 250)"
fi
echo "deploy/check.sh: all checks passed"
