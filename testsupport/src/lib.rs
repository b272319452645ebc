//! What Parley's tests start for themselves, in one place for every test crate: a
//! `redis-server` of the test's own (stoppable, restartable with or without its data), free
//! loopback ports, and the CQL server the test run started. A missing service fails the test
//! with a clear message; nothing skips.
#![allow(clippy::unwrap_used)]

pub mod media;

use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The CQL server the test run started (`scripts/test.sh`), as host:port.
pub fn cassandra() -> String {
    std::env::var("PARLEY_CASSANDRA").unwrap_or_else(|_| {
        panic!("PARLEY_CASSANDRA is not set: run scripts/test.sh (it starts Cassandra)")
    })
}

/// A fresh keyspace name for one test.
pub fn keyspace() -> String {
    format!("t_{}", uuid::Uuid::new_v4().simple())
}

/// A redis-server process of a test's own (so a test may stop and restart it), persisting to
/// an append-only file in a temp dir so a restart keeps the streams. `PARLEY_REDIS_SERVER`
/// names the binary (`scripts/test.sh` sets it).
pub struct RedisServer {
    child: Mutex<Option<Child>>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> Self {
        let s = Self {
            child: Mutex::new(None),
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
        };
        s.restart();
        s
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on the same port and directory, with what it had; waits until it
    /// answers.
    pub fn restart(&self) {
        let bin = std::env::var("PARLEY_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(&bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{bin} not found ({e}): scripts/test.sh installs redis-server")
            });
        *self.child.lock().unwrap() = Some(child);
        for _ in 0..400 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Stops it and starts it again with nothing (Redis restarted without persistence).
    pub fn restart_empty(&self) {
        self.stop();
        std::fs::remove_dir_all(self.dir.path()).unwrap();
        std::fs::create_dir_all(self.dir.path()).unwrap();
        self.restart();
    }

    /// SIGTERM (a clean stop: the append-only file is flushed).
    pub fn stop(&self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
