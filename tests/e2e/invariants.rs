//! Architectural invariants enforced as tests (see ARCHITECTURE.md).

use std::path::Path;

fn sources(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(sources(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push((
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            ));
        }
    }
    out
}

/// Dialect modules are pure: no runtime, no web framework, no concurrent maps, no awaiting.
#[test]
fn dialects_do_no_io() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/dialect");
    for (path, text) in sources(&dir) {
        for banned in [
            "tokio", "axum", "hyper", "dashmap", ".await", "async fn", "std::net", "std::fs",
        ] {
            let code: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .take_while(|l| !l.contains("#[cfg(test)]"))
                .collect::<Vec<_>>()
                .join("\n");
            assert!(
                !code.contains(banned),
                "{path} uses {banned}: dialects must stay sans-IO"
            );
        }
    }
}

const NOT_SANS_IO: [&str; 6] = [
    "tokio",
    ".await",
    "async fn",
    "Instant::now",
    "SystemTime",
    "std::net",
];

/// The topic table and the channel replay buffer are sans-IO too: events in, actions out,
/// time as an argument.
#[test]
fn topic_table_is_sans_io() {
    for file in ["src/hub/table.rs", "src/channel/replay.rs"] {
        let text =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
        let text = text.split("#[cfg(test)]").next().unwrap();
        for banned in NOT_SANS_IO {
            assert!(!text.contains(banned), "{file} uses {banned}");
        }
    }
}

/// The route core (every file of `src/hub/core/` but its test module) runs on the time
/// it is given: no runtime, no socket, no clock.
#[test]
fn route_core_is_sans_io() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/hub/core");
    let files = sources(&dir);
    assert!(files.len() >= 2, "route core files not found");
    for (path, text) in files {
        if path.ends_with("tests.rs") {
            continue; // declared `#[cfg(test)] mod tests;`
        }
        for banned in NOT_SANS_IO {
            assert!(!text.contains(banned), "{path} uses {banned}");
        }
    }
}

/// No unwrap() outside tests in the library (input from clients and upstreams must never panic).
#[test]
fn no_unwrap_in_library_code() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for (path, text) in sources(&dir) {
        if path.ends_with("/tests.rs") {
            continue; // a test module in a file of its own (`#[cfg(test)] mod tests;`)
        }
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (i, line) in code.lines().enumerate() {
            let l = line.trim_start();
            if l.starts_with("//") {
                continue;
            }
            assert!(
                !l.contains(".unwrap()"),
                "{path}:{}: unwrap() in library code",
                i + 1
            );
        }
    }
}
