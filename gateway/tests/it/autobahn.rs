//! WebSocket conformance: the Autobahn fuzzing-client cases (run from Python 3 by kosoku, see
//! `autobahn/README.md`) against `/test/echo`, which uses exactly the transport code of `/ws`.
//! Fails when any case does worse than the recorded `autobahn/baseline.json`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::support::*;

/// Autobahn's verdicts, best first.
fn rank(verdict: &str) -> usize {
    match verdict {
        "OK" => 0,
        "NON-STRICT" => 1,
        "INFORMATIONAL" => 2,
        "UNIMPLEMENTED" => 3,
        _ => 4,
    }
}

#[test]
fn autobahn_cases_do_not_regress_from_the_baseline() {
    // 9.* sends messages up to 16 MiB: raise the limits for this run (both endpoints share them).
    let gw = Gateway::start(&[
        "--test-endpoints",
        "--max-frame-bytes",
        "16777216",
        "--outbox-bytes",
        "33554432",
    ]);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/autobahn");
    let out = tempfile::NamedTempFile::new().unwrap();
    let status = Command::new("python3")
        .arg(dir.join("run.py"))
        .args(["--url", &format!("ws://{}/test/echo", gw.addr)])
        .arg("--out")
        .arg(out.path())
        .status()
        .expect("run python3 (scripts/test.sh provides kosoku in target/test-venv)");
    assert!(status.success(), "run.py failed: is kosoku installed?");
    let results: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(out.path()).unwrap()).unwrap();
    let baseline: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("baseline.json")).unwrap()).unwrap();
    assert!(results.len() >= 300, "only {} cases ran", results.len());
    let mut regressions = Vec::new();
    let mut improvements = Vec::new();
    for (case, want) in &baseline {
        let got = results.get(case).map_or("MISSING", String::as_str);
        if rank(got) > rank(want) {
            regressions.push(format!("{case}: {want} → {got}"));
        } else if rank(got) < rank(want) {
            improvements.push(format!("{case}: {want} → {got}"));
        }
    }
    if !improvements.is_empty() {
        eprintln!("better than the baseline (re-record it): {improvements:?}");
    }
    assert!(
        regressions.is_empty(),
        "Autobahn regressions: {regressions:?}"
    );
}
