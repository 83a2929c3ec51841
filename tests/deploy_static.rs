//! Static checks of the deployment files (no container engine, cluster or systemd
//! needed): `deploy/check.sh` with `SUBMUX_BIN` set to this crate's binary. It runs
//! `submux --check-config` on every TOML under deploy/ and on the Kubernetes ConfigMap's
//! embedded submux.toml, checks deploy/k8s (YAML, kinds, selectors, probes, ports,
//! security context, grace periods), deploy/Dockerfile against the manifests, and
//! deploy/submux.service with `systemd-analyze verify` and `security --offline`.
//!
//! Needs bash, python3 with PyYAML and (on Linux) systemd-analyze; `scripts/test` installs
//! them. Missing tools fail the test with an install hint; they never skip it.

use std::path::Path;
use std::process::Command;

#[test]
fn deploy_files_pass_static_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new("bash")
        .arg(root.join("deploy").join("check.sh"))
        .current_dir(root)
        .env("SUBMUX_BIN", env!("CARGO_BIN_EXE_submux"))
        .status()
        .unwrap_or_else(|e| panic!("cannot run `bash deploy/check.sh`: {e}"));
    assert!(
        status.success(),
        "deploy/check.sh failed ({status}); the FAIL lines above name the file and the check"
    );
}
