//! The README's client compatibility matrix names exactly the library versions the test
//! suites pin (tests/clients/package.json, tests/python/requirements.txt), and the real
//! nodes' versions (ganache, anvil, Hardhat: tests/clients/package.json), so the table
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

/// The per-node suites of tests/clients and how the README's "node in the test" cell names
/// each node (name, and a qualifier that must appear in the cell).
const ETH_NODES: [(&str, (&str, &str)); 4] = [
    ("eth-ganache.test.mjs", ("ganache", "(text)")),
    ("eth-ganache-binary.test.mjs", ("ganache", "(binary)")),
    ("eth-anvil.test.mjs", ("anvil", "")),
    ("eth-hardhat.test.mjs", ("Hardhat", "")),
];

/// The npm package a real node in the matrix is pinned as.
fn node_package(node: &str) -> &str {
    match node {
        "anvil" => "@foundry-rs/anvil",
        "Hardhat" => "hardhat",
        other => other,
    }
}

/// The real nodes a "node in the test" cell names, as (name, version): items separated by
/// commas, each "name version" with an optional "(qualifier)"; simulators have no version.
fn real_nodes(cell: &str) -> Vec<(String, String)> {
    cell.split(',')
        .filter_map(|item| {
            let item = item.split('(').next().unwrap_or("").trim();
            let (name, version) = item.rsplit_once(' ')?;
            version
                .starts_with(|c: char| c.is_ascii_digit())
                .then(|| (name.trim().to_string(), version.to_string()))
        })
        .collect()
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
        let nodes = real_nodes(cells[4]);
        for (node, version) in &nodes {
            let pin = pinned(node_package(node));
            assert_eq!(
                pin.as_deref(),
                Some(version.as_str()),
                "README matrix row {lib} names {node} {version}, tests/clients pins {pin:?}"
            );
        }
        if cells[3] == "ethereum" && lib != "web3.py" {
            // the JavaScript Ethereum suites run once per node (tests/clients/eth-<node>.test.mjs)
            for (file, label) in ETH_NODES {
                assert!(
                    Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("tests/clients")
                        .join(file)
                        .is_file(),
                    "tests/clients/{file} is missing"
                );
                assert!(
                    nodes.iter().any(|(n, _)| n == label.0)
                        && (label.1.is_empty() || cells[4].contains(label.1)),
                    "README matrix row {lib} does not name {} {} as a node it ran against",
                    label.0,
                    label.1
                );
            }
        }
    }
    assert!(rows >= 8, "only {rows} rows in the matrix");
}
