//! Architectural invariants enforced as tests (see ARCHITECTURE.md). Every check reads whole
//! files with only their test code taken out: items under `#[cfg(test)]` (a `mod x;`
//! line, or a braced item up to its matching brace, string and char literals skipped)
//! and files that are test-only modules.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Every `.rs` file under `dir` (relative to the crate root), with its non-test code.
fn sources(dir: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root().join(dir)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") && !test_only_module(&p) {
                let text = std::fs::read_to_string(&p).unwrap();
                let rel = p.strip_prefix(root()).unwrap().display().to_string();
                out.push((rel, non_test_code(&text)));
            }
        }
    }
    out.sort();
    out
}

/// A file declared as `#[cfg(test)] mod name;` by its parent is test code throughout.
fn test_only_module(path: &Path) -> bool {
    let (Some(stem), Some(dir)) = (path.file_stem(), path.parent()) else {
        return false;
    };
    let name = stem.to_string_lossy();
    let parents = [dir.join("mod.rs"), dir.join("lib.rs"), dir.join("main.rs")];
    parents.iter().filter(|p| p.as_path() != path).any(|p| {
        let Ok(text) = std::fs::read_to_string(p) else {
            return false;
        };
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        lines.windows(2).any(|w| {
            w[0] == "#[cfg(test)]"
                && w[1]
                    .trim_start_matches("pub(crate) ")
                    .trim_start_matches("pub ")
                    == format!("mod {name};")
        })
    })
}

/// `text` without its `#[cfg(test)]` items and without comment lines.
fn non_test_code(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while let Some(at) = text[i..].find("#[cfg(test)]").map(|k| k + i) {
        out.push_str(&text[i..at]);
        i = skip_item(b, at + "#[cfg(test)]".len());
    }
    out.push_str(&text[i..]);
    out.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The end of the item starting at `i`: after its `;` if that comes before any `{`, else
/// after the brace matching its first `{`.
fn skip_item(b: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < b.len() {
        match b[i] {
            b';' if depth == 0 => return i + 1,
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            b'"' => i = skip_string(b, i),
            b'r' if b.get(i + 1).is_some_and(|&c| c == b'#' || c == b'"')
                && !b[i.saturating_sub(1)].is_ascii_alphanumeric() =>
            {
                i = skip_raw_string(b, i)
            }
            b'\'' => i = skip_char(b, i),
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    b.len()
}

fn skip_string(b: &[u8], mut i: usize) -> usize {
    i += 1;
    while i < b.len() && b[i] != b'"' {
        if b[i] == b'\\' {
            i += 1;
        }
        i += 1;
    }
    i
}

fn skip_raw_string(b: &[u8], mut i: usize) -> usize {
    i += 1;
    let mut hashes = 0;
    while b.get(i) == Some(&b'#') {
        hashes += 1;
        i += 1;
    }
    if b.get(i) != Some(&b'"') {
        return i - 1; // an identifier starting with r, e.g. r#type
    }
    i += 1;
    while i < b.len() {
        if b[i] == b'"'
            && b[i + 1..]
                .iter()
                .take(hashes)
                .filter(|&&c| c == b'#')
                .count()
                == hashes
        {
            return i + hashes;
        }
        i += 1;
    }
    i
}

/// A char literal (`'{'`, `'\''`); a lifetime (`'a`) is left alone.
fn skip_char(b: &[u8], i: usize) -> usize {
    match (b.get(i + 1), b.get(i + 2), b.get(i + 3)) {
        (Some(b'\\'), _, _) => {
            let mut j = i + 2;
            while j < b.len() && b[j] != b'\'' {
                j += 1;
            }
            j
        }
        (Some(_), Some(b'\''), _) => i + 2,
        _ => i,
    }
}

/// Dialect modules are pure: no runtime, no web framework, no concurrent maps, no awaiting.
#[test]
fn dialects_do_no_io() {
    let files = sources("src/dialect");
    assert!(files.iter().any(|(p, _)| p.ends_with("dialect/mod.rs")));
    for (path, code) in files {
        for banned in [
            "tokio",
            "axum",
            "hyper",
            "dashmap",
            ".await",
            "async fn",
            "std::net",
            "std::fs",
            "Instant::now",
            "SystemTime",
        ] {
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
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        let code = non_test_code(&text);
        for banned in NOT_SANS_IO {
            assert!(!code.contains(banned), "{file} uses {banned}");
        }
    }
}

/// The route core (every file of `src/hub/core/` but its test module) runs on the time
/// it is given: no runtime, no socket, no clock.
#[test]
fn route_core_is_sans_io() {
    let files = sources("src/hub/core");
    assert!(files.len() >= 2, "route core files not found");
    for (path, code) in files {
        // (the test module, `#[cfg(test)] mod tests;`, is not among the sources)
        for banned in NOT_SANS_IO {
            assert!(!code.contains(banned), "{path} uses {banned}");
        }
    }
}

/// No unwrap() outside tests in the library (input from clients and upstreams must never panic).
#[test]
fn no_unwrap_in_library_code() {
    for (path, code) in sources("src") {
        for line in code.lines() {
            assert!(
                !line.contains(".unwrap()"),
                "{path}: unwrap() in library code: {}",
                line.trim()
            );
        }
    }
}

/// The stripper itself: test items go, whatever braces their strings hold; code after
/// them stays.
#[test]
fn test_code_is_stripped_and_nothing_else() {
    let text = "fn a() {}\n#[cfg(test)]\nmod fuzz;\nfn b() { x.unwrap() }\n#[cfg(test)]\nmod tests {\n    const T: &str = \"{{{\";\n    const R: &str = r#\"}\"#;\n    const C: char = '{';\n    fn t<'a>() { y.unwrap() }\n}\nfn c() {}\n";
    let code = non_test_code(text);
    assert!(code.contains("fn a()") && code.contains("fn b()") && code.contains("fn c()"));
    assert!(
        code.contains("x.unwrap()") && !code.contains("y.unwrap()") && !code.contains("mod fuzz")
    );
}

/// Files stay small enough to read: at most 700 lines of non-test code (blank and comment
/// lines not counted), with no exceptions.
#[test]
fn no_source_file_over_700_lines() {
    const LIMIT: usize = 700;
    let over: Vec<String> = sources("src")
        .into_iter()
        .map(|(path, code)| (path, code.lines().filter(|l| !l.trim().is_empty()).count()))
        .filter(|(_, n)| *n > LIMIT)
        .map(|(path, n)| format!("{path}: {n} lines"))
        .collect();
    assert!(
        over.is_empty(),
        "files over {LIMIT} lines of code:\n{}",
        over.join("\n")
    );
}

/// The top-level modules form layers: no two depend on each other, directly or around a
/// loop (a dependency is a `crate::name` path in non-test code).
#[test]
fn no_module_cycles() {
    use std::collections::{BTreeMap, BTreeSet};
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, code) in sources("src") {
        let rel = path.trim_start_matches("src/");
        let module = rel.split('/').next().unwrap_or(rel).trim_end_matches(".rs");
        let entry = deps.entry(module.to_string()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != module {
                entry.insert(name);
            }
        }
    }
    // Depth-first search for a back edge; report the loop it closes.
    fn visit(
        m: &str,
        deps: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == m) {
            let mut cycle = path[at..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for d in deps.get(m).into_iter().flatten() {
            if let Some(c) = visit(d, deps, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in deps.keys() {
        let cycle = visit(m, &deps, &mut Vec::new(), &mut done);
        assert!(
            cycle.is_none(),
            "module cycle: {}",
            cycle.unwrap_or_default().join(" → ")
        );
    }
}

/// The payments feed's credit extraction, finality and request parsing are pure: no
/// runtime, no socket, no clock (time is passed in).
#[test]
fn payments_extraction_is_sans_io() {
    for file in [
        "src/payments/amount.rs",
        "src/payments/event.rs",
        "src/payments/finality.rs",
        "src/payments/lightning.rs",
        "src/payments/solana.rs",
        "src/payments/xrpl/mod.rs",
        "src/payments/ethereum/mod.rs",
        "src/payments/rpc/mod.rs",
    ] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        let code = non_test_code(&text);
        for banned in NOT_SANS_IO.iter().chain(&["std::fs", "SystemTime"]) {
            assert!(!code.contains(banned), "{file} uses {banned}");
        }
    }
}
