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
        wait_for_port(self.port, "redis-server");
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

/// An S3-compatible server of a test's own: `s3s-fs` serving a temp directory, which checks
/// every request's SigV4 signature. `PARLEY_S3_SERVER` names the binary (`scripts/test.sh`
/// builds it). One bucket, [`S3Server::BUCKET`], exists from the start.
pub struct S3Server {
    child: Mutex<Option<Child>>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl S3Server {
    pub const BUCKET: &'static str = "media";
    pub const ACCESS_KEY_ID: &'static str = "PARLEYTESTKEY";
    pub const SECRET_ACCESS_KEY: &'static str = "parley-test-secret-access-key";

    pub fn start() -> Self {
        let s = Self {
            child: Mutex::new(None),
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(s.dir.path().join(Self::BUCKET)).unwrap();
        s.restart();
        s
    }

    /// `http://127.0.0.1:port`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The gateway flags (and the environment it reads the keys from) for this server.
    pub fn gateway_args(&self) -> Vec<String> {
        vec![
            "--media-s3-bucket".into(),
            Self::BUCKET.into(),
            "--media-s3-endpoint".into(),
            self.endpoint(),
            "--media-s3-access-key-id".into(),
            Self::ACCESS_KEY_ID.into(),
            "--media-s3-secret-access-key".into(),
            Self::SECRET_ACCESS_KEY.into(),
        ]
    }

    /// Objects stored, as paths relative to the bucket.
    pub fn objects(&self) -> Vec<String> {
        fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(root, &p, out);
                } else if let Ok(rel) = p.strip_prefix(root) {
                    let rel = rel.to_string_lossy().into_owned();
                    // s3s-fs keeps its own bookkeeping beside the objects.
                    if !rel.starts_with('.') && !rel.contains("/.") {
                        out.push(rel);
                    }
                }
            }
        }
        let root = self.dir.path().join(Self::BUCKET);
        let mut out = Vec::new();
        walk(&root, &root, &mut out);
        out.sort();
        out
    }

    /// Starts it (again) on the same port and directory; waits until it answers.
    pub fn restart(&self) {
        let bin = std::env::var("PARLEY_S3_SERVER").unwrap_or_else(|_| {
            panic!("PARLEY_S3_SERVER is not set: run scripts/test.sh (it builds s3s-fs)")
        });
        let child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", Self::ACCESS_KEY_ID])
            .args(["--secret-key", Self::SECRET_ACCESS_KEY])
            .arg(self.dir.path())
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin} did not start ({e}): scripts/test.sh builds it"));
        *self.child.lock().unwrap() = Some(child);
        wait_for_port(self.port, "s3s-fs");
    }

    /// Kills it (the store goes away under the gateway).
    pub fn stop(&self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A caching reverse proxy in front of an origin, as a CDN would be: Debian's nginx with
/// `proxy_cache`, on a loopback port of its own. Each response carries `X-Cache-Status`
/// (MISS, HIT, …). `PARLEY_NGINX` names the binary (`scripts/test.sh` installs nginx).
pub struct CachingProxy {
    child: Mutex<Option<Child>>,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl CachingProxy {
    /// Listens on `port` (from [`free_port`]: the origin may need the CDN's URL before the
    /// CDN starts) and proxies `/media/` to `origin`, caching what the origin lets it cache.
    pub fn start(port: u16, origin: std::net::SocketAddr) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        // As root, nginx's workers would run as `nobody` and could not write the cache here.
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        let conf = format!(
            "{user}worker_processes 1;
error_log {d}/error.log warn;
pid {d}/nginx.pid;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  proxy_cache_path {d}/cache levels=1:2 keys_zone=media:1m max_size=64m inactive=1h use_temp_path=off;
  server {{
    listen 127.0.0.1:{port};
    location /media/ {{
      proxy_pass http://{origin};
      proxy_http_version 1.1;
      proxy_cache media;
      proxy_cache_key $request_uri;
      add_header X-Cache-Status $upstream_cache_status always;
    }}
  }}
}}
",
            user = if root { "user root;\n" } else { "" },
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let bin = std::env::var("PARLEY_NGINX").unwrap_or_else(|_| "nginx".into());
        let child = Command::new(&bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&path)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{bin} did not start ({e}): scripts/test.sh installs nginx")
            });
        let proxy = Self {
            child: Mutex::new(Some(child)),
            port,
            _dir: dir,
        };
        wait_for_port(port, "nginx");
        proxy
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for CachingProxy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits until something accepts on 127.0.0.1:`port` (10 s at most).
fn wait_for_port(port: u16, what: &str) {
    for _ in 0..400 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{what} did not start on port {port}");
}

/// A Solr collection of a test's own on the test run's SolrCloud (`PARLEY_SOLR`, its root URL,
/// e.g. `http://127.0.0.1:18983/solr`; `scripts/test.sh` starts one with the configset
/// `parley`): created with two shards, deleted when dropped.
pub struct SolrCollection {
    pub name: String,
    root: String,
}

impl SolrCollection {
    pub fn create() -> Self {
        let root = std::env::var("PARLEY_SOLR")
            .unwrap_or_else(|_| {
                panic!(
                    "PARLEY_SOLR is not set: run scripts/test.sh (it starts a SolrCloud, \
                     deploy/dev/solr)"
                )
            })
            .trim_end_matches('/')
            .to_owned();
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let c = Self { name, root };
        c.recreate();
        c
    }

    /// Deletes the collection (Solr losing it, for a test of an index that is away).
    pub fn delete(&self) {
        self.admin(&format!("action=DELETE&name={}", self.name))
            .unwrap_or_else(|e| panic!("delete the Solr collection: {e}"));
    }

    /// Creates the collection (again, empty, after [`SolrCollection::delete`]).
    pub fn recreate(&self) {
        self.admin(&format!(
            "action=CREATE&name={}&numShards=2&replicationFactor=1\
             &collection.configName=parley&waitForFinalState=true",
            self.name
        ))
        .unwrap_or_else(|e| panic!("create the Solr collection: {e}"));
    }

    /// The collection's URL, what `--solr` takes.
    pub fn url(&self) -> String {
        format!("{}/{}", self.root, self.name)
    }

    /// Documents in the collection, as last committed.
    pub fn docs(&self) -> u64 {
        let path = format!("{}/select?q=*:*&rows=0&wt=json", self.name);
        let body = self
            .get(&path)
            .unwrap_or_else(|e| panic!("count the documents: {e}"));
        let at = body
            .find("\"numFound\":")
            .unwrap_or_else(|| panic!("no numFound in {body}"));
        let digits: String = body[at + 11..]
            .chars()
            .skip_while(|c| c.is_whitespace())
            .take_while(char::is_ascii_digit)
            .collect();
        digits
            .parse()
            .unwrap_or_else(|_| panic!("numFound in {body}"))
    }

    /// A GET of the Collections API.
    fn admin(&self, query: &str) -> Result<String, String> {
        self.get(&format!("admin/collections?{query}"))
    }

    /// A GET of `path` under the root (plain HTTP/1.0, never chunked: the test Solr has no TLS); the body of
    /// a 200 answer.
    fn get(&self, path_and_query: &str) -> Result<String, String> {
        use std::io::{Read, Write};
        let rest = self
            .root
            .strip_prefix("http://")
            .ok_or_else(|| format!("PARLEY_SOLR {:?} must be http://", self.root))?;
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let mut s = std::net::TcpStream::connect(host).map_err(|e| format!("{host}: {e}"))?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(120)))
            .map_err(|e| e.to_string())?;
        write!(
            s,
            "GET /{path}/{path_and_query} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| e.to_string())?;
        let mut answer = String::new();
        s.read_to_string(&mut answer).map_err(|e| e.to_string())?;
        match (answer.split(' ').nth(1), answer.split_once("\r\n\r\n")) {
            (Some("200"), Some((_, body))) => Ok(body.to_owned()),
            _ => Err(format!("{path_and_query}: {answer}")),
        }
    }
}

impl Drop for SolrCollection {
    fn drop(&mut self) {
        // Gone already when a test deleted it and failed before recreating it.
        if let Err(e) = self.admin(&format!("action=DELETE&name={}", self.name)) {
            eprintln!("could not delete the Solr collection {}: {e}", self.name);
        }
    }
}
