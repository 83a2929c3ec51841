//! The README's client compatibility matrix names exactly the library versions the test
//! suites pin (tests/clients/package.json, tests/python/requirements.txt), so the table
//! cannot drift from what `scripts/test` actually ran.

use std::path::Path;

fn read(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The version pinned for `name` in the npm manifest or a pip requirements file.
fn pinned(name: &str) -> Option<String> {
    let npm: serde_json::Value = serde_json::from_str(&read("tests/clients/package.json")).ok()?;
    if let Some(v) = npm["dependencies"][name].as_str() {
        return Some(v.to_string());
    }
    for file in [
        "tests/python/requirements.txt",
        "tests/lnbits/requirements.txt",
    ] {
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
            .unwrap_or_default();
        for line in text.lines() {
            if let Some((n, v)) = line.trim().split_once("==") {
                if n.trim().eq_ignore_ascii_case(name) {
                    return Some(v.trim().to_string());
                }
            }
        }
    }
    None
}

#[test]
fn readme_matrix_matches_pinned_versions() {
    let readme = read("README.md");
    let section = readme
        .split("### Client compatibility matrix")
        .nth(1)
        .expect("README has a client compatibility matrix");
    // The package each row's library is pinned as.
    fn package(lib: &str) -> &str {
        match lib {
            "web3.js" | "web3.py" => "web3",
            "xrpl.js" => "xrpl",
            other => other,
        }
    }
    let mut rows = 0;
    for line in section.lines().skip_while(|l| !l.starts_with('|')) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (lib, version) = (cells[1], cells[2]);
        if lib == "client library" || lib.starts_with("---") {
            continue;
        }
        rows += 1;
        let name = package(lib);
        let pin = if lib == "web3.py" {
            // Same name as web3.js on npm: read the pip pin.
            read("tests/python/requirements.txt")
                .lines()
                .find_map(|l| l.strip_prefix("web3==").map(|v| v.trim().to_string()))
        } else {
            pinned(name)
        };
        assert_eq!(
            pin.as_deref(),
            Some(version),
            "README matrix row {lib} says {version}, the suite pins {pin:?}"
        );
    }
    assert!(rows >= 8, "only {rows} rows in the matrix");
}
