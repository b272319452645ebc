//! The dependency rules of ARCHITECTURE.md ("Layers"), checked: every `crate::…` path in a
//! module's source must name a module that module may use. Lower layers never reach up; a new
//! edge is a decision to write down here and in ARCHITECTURE.md, not an accident.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module → the crate modules it may use (besides itself).
const RULES: &[(&str, &[&str])] = &[
    // Leaves: no crate module at all.
    ("clock", &[]),
    ("errors", &[]),
    ("event", &[]),
    ("files", &[]),
    ("ratelimit", &[]),
    ("metrics", &[]),
    ("auth", &[]),
    // The HTTP(S) client of the services the node calls.
    ("outbound", &[]),
    // The moderation rules and their state: text in, decisions out.
    ("moderation", &[]),
    // Uploads, renditions, the blob store and signed URLs: bytes in, records out.
    ("media", &["outbound"]),
    // The message index and its feed follower: storage's feed in, hits out.
    ("search", &["outbound"]),
    // Push: the device registry, the providers, the dispatcher following storage's feed.
    ("push", &["clock", "files", "outbound"]),
    ("outbox", &["event"]),
    // The sans-I/O session core: no node, no storage, no config, no I/O.
    ("session", &["auth", "clock", "ratelimit"]),
    // Infrastructure that reports upward through handlers, never by calling up.
    ("bus", &["clock", "event", "metrics"]),
    ("metered", &["metrics"]),
    ("state", &["clock", "errors", "event", "ratelimit"]),
    // The chat operations: state, storage and the bus.
    (
        "chat",
        &[
            "auth",
            "bus",
            "clock",
            "errors",
            "event",
            "media",
            "moderation",
            "push",
            "search",
            "state",
        ],
    ),
    // The composition root of a node.
    (
        "node",
        &[
            "auth", "bus", "chat", "event", "metrics", "outbox", "session", "state",
        ],
    ),
    ("shard", &["metrics", "node", "outbox", "state"]),
    (
        "driver",
        &[
            "chat", "clock", "errors", "node", "outbox", "search", "session", "shard",
        ],
    ),
    (
        "transport",
        &[
            "auth",
            "clock",
            "driver",
            "errors",
            "files",
            "media",
            "metrics",
            "node",
            "outbox",
            "push",
            "ratelimit",
            "search",
            "session",
            "shard",
            "state",
        ],
    ),
    // Wiring: may use anything below; nothing uses it but the command line.
    (
        "config",
        &["auth", "bus", "files", "media", "node", "push", "session"],
    ),
    (
        "server",
        &[
            "auth",
            "bus",
            "chat",
            "clock",
            "config",
            "media",
            "metered",
            "metrics",
            "moderation",
            "node",
            "push",
            "search",
            "session",
            "shard",
            "state",
            "transport",
        ],
    ),
    (
        "cli",
        &[
            "auth",
            "clock",
            "config",
            "push",
            "search",
            "server",
            "transport",
        ],
    ),
];

/// Modules that are test or bench scaffolding and may use anything.
const SCAFFOLDING: &[&str] = &["testkit", "bench", "fuzzing", "layers"];

fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_owned())
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src").flatten() {
        let p = entry.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// `crate::name` references outside comments and outside `#[cfg(test)]` modules.
fn uses(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    let mut found = BTreeSet::new();
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        for (i, _) in line.match_indices("crate::") {
            let name: String = line[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

#[test]
fn no_module_reaches_above_its_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rules: BTreeMap<&str, &[&str]> = RULES.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut broken = Vec::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        if SCAFFOLDING.contains(&module.as_str()) {
            continue;
        }
        let Some(allowed) = rules.get(module.as_str()) else {
            broken.push(format!(
                "{module}: no rule (add it to RULES and ARCHITECTURE.md)"
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read");
        for used in uses(&text) {
            if used != module && !allowed.contains(&used.as_str()) {
                let rel = file.strip_prefix(&src).unwrap_or(file).display();
                broken.push(format!("src/{rel}: {module} uses crate::{used}"));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "layer rules broken:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_check_sees_an_upward_use() {
    let found =
        uses("use crate::node::Node;\n// crate::server in a comment\nfn f() { crate::chat::x() }");
    assert_eq!(
        found,
        BTreeSet::from(["chat".to_owned(), "node".to_owned()])
    );
}
