//! `gateway`: runs a Parley node, prints a token (`gateway token <user>`) or applies the CQL
//! schema (`gateway migrate`). Everything lives in the library; see `gateway::run`.

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    gateway::run()
}
