//! Where media bytes live: one trait, engines behind it, one conformance suite. Keys are
//! chosen by [`super::Media`] (content-addressed blobs, records by id) and checked here, so
//! no key can name a path outside the store.

use std::io;
use std::ops::Range;
use std::path::PathBuf;

use async_trait::async_trait;
use bytes::Bytes;

/// A blob store. Writes are atomic (a reader sees the whole value or none) and durable when
/// `put` returns; keys are `[a-z0-9._-]` segments (none starting with a dot) joined by `/`.
#[async_trait]
pub(crate) trait MediaStore: Send + Sync + 'static {
    /// Stores `bytes` under `key`, replacing what was there.
    async fn put(&self, key: &str, bytes: Bytes) -> io::Result<()>;
    /// The bytes of `key` in `range` (clamped to its length); None if there is no such key.
    async fn read(&self, key: &str, range: Range<u64>) -> io::Result<Option<Bytes>>;
    /// Removes `key` (no error if it is absent).
    async fn delete(&self, key: &str) -> io::Result<()>;
    /// Every key under `prefix` (which ends with `/`), with when it was last written (Unix ms).
    async fn list(&self, prefix: &str) -> io::Result<Vec<Listed>>;
}

/// A key and when it was last written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    pub(crate) key: String,
    pub(crate) modified_ms: i64,
}

/// Whether `prefix` is one `list` accepts: a valid key followed by `/`.
pub(crate) fn valid_prefix(prefix: &str) -> bool {
    prefix.strip_suffix('/').is_some_and(valid_key)
}

/// Whether `key` is one a store accepts.
pub(crate) fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 512
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && !seg.starts_with('.')
                && seg
                    .bytes()
                    .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
        })
}

fn bad_key(key: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("invalid media key {key:?}"),
    )
}

/// The embedded engine: one file per key under a directory (the data dir's `media/`). A put
/// writes a temporary file, syncs it and renames it into place.
pub(crate) struct FsStore {
    root: PathBuf,
}

impl FsStore {
    pub(crate) fn open(root: PathBuf) -> io::Result<Self> {
        std::fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    fn path(&self, key: &str) -> io::Result<PathBuf> {
        match valid_key(key) {
            true => Ok(self.root.join(key)),
            false => Err(bad_key(key)),
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("media store task failed: {e}")))?
}

#[async_trait]
impl MediaStore for FsStore {
    async fn put(&self, key: &str, bytes: Bytes) -> io::Result<()> {
        use std::io::Write;
        let path = self.path(key)?;
        blocking(move || {
            let dir = path.parent().ok_or_else(|| bad_key("(root)"))?;
            std::fs::create_dir_all(dir)?;
            let mut tmp = tempfile_in(dir)?;
            tmp.1.write_all(&bytes)?;
            tmp.1.sync_all()?;
            std::fs::rename(&tmp.0, &path)?;
            // The rename is durable once the directory is.
            std::fs::File::open(dir)?.sync_all()
        })
        .await
    }

    async fn read(&self, key: &str, range: Range<u64>) -> io::Result<Option<Bytes>> {
        use std::io::{Read, Seek, SeekFrom};
        let path = self.path(key)?;
        blocking(move || {
            let mut file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            let len = file.metadata()?.len();
            let (start, end) = (range.start.min(len), range.end.min(len));
            let mut buf = vec![0; end.saturating_sub(start) as usize];
            file.seek(SeekFrom::Start(start))?;
            file.read_exact(&mut buf)?;
            Ok(Some(Bytes::from(buf)))
        })
        .await
    }

    async fn delete(&self, key: &str) -> io::Result<()> {
        let path = self.path(key)?;
        blocking(move || match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .await
    }

    async fn list(&self, prefix: &str) -> io::Result<Vec<Listed>> {
        if !valid_prefix(prefix) {
            return Err(bad_key(prefix));
        }
        let (root, dir) = (self.root.clone(), self.root.join(prefix));
        blocking(move || {
            let mut out = Vec::new();
            walk(&root, &dir, &mut out)?;
            Ok(out)
        })
        .await
    }
}

fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<Listed>) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        // Temporary files of unfinished puts are never keys.
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let meta = entry.metadata()?;
        let path = entry.path();
        if meta.is_dir() {
            walk(root, &path, out)?;
            continue;
        }
        let Ok(rel) = path.strip_prefix(root) else {
            continue;
        };
        let key = rel.to_string_lossy().into_owned();
        if !valid_key(&key) {
            continue;
        }
        let modified_ms = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as i64);
        out.push(Listed { key, modified_ms });
    }
    Ok(())
}

/// A new file with a unique name in `dir` (renamed by the caller, or left as a `.tmp-` file
/// a crash may leave behind: never a key, since no key segment starts with a dot).
fn tempfile_in(dir: &std::path::Path) -> io::Result<(PathBuf, std::fs::File)> {
    let mut name = [0u8; 8];
    getrandom::fill(&mut name).map_err(|e| io::Error::other(e.to_string()))?;
    let path = dir.join(format!(".tmp-{:016x}", u64::from_le_bytes(name)));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    Ok((path, file))
}

/// The conformance suite every engine passes.
#[cfg(test)]
pub(crate) mod conformance {
    use super::*;

    pub(crate) async fn run(store: &dyn MediaStore) {
        let data = Bytes::from((0..=255u8).cycle().take(70_000).collect::<Vec<u8>>());
        store.put("blobs/ab/abc", data.clone()).await.expect("put");
        let all = store.read("blobs/ab/abc", 0..u64::MAX).await.expect("read");
        assert_eq!(all.as_deref(), Some(&data[..]));
        let part = store.read("blobs/ab/abc", 100..200).await.expect("range");
        assert_eq!(part.as_deref(), Some(&data[100..200]));
        let tail = store
            .read("blobs/ab/abc", 69_990..80_000)
            .await
            .expect("tail");
        assert_eq!(tail.as_deref(), Some(&data[69_990..]));
        let past = store
            .read("blobs/ab/abc", 90_000..90_010)
            .await
            .expect("past the end");
        assert_eq!(past.as_deref(), Some(&[][..]));
        assert_eq!(store.read("blobs/none", 0..10).await.expect("absent"), None);
        store
            .put("blobs/ab/abc", Bytes::from_static(b"new"))
            .await
            .expect("replace");
        let replaced = store.read("blobs/ab/abc", 0..u64::MAX).await.expect("read");
        assert_eq!(replaced.as_deref(), Some(&b"new"[..]));
        store.delete("blobs/ab/abc").await.expect("delete");
        store.delete("blobs/ab/abc").await.expect("delete twice");
        assert_eq!(store.read("blobs/ab/abc", 0..10).await.expect("gone"), None);
        // Listing: every key under a prefix, none of its neighbours'.
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        for key in ["list/a/1", "list/a/2", "list/b/1", "listx"] {
            store.put(key, Bytes::from_static(b"x")).await.expect("put");
        }
        let mut listed = store.list("list/a/").await.expect("list");
        listed.sort_by(|a, b| a.key.cmp(&b.key));
        let keys: Vec<&str> = listed.iter().map(|l| l.key.as_str()).collect();
        assert_eq!(keys, ["list/a/1", "list/a/2"]);
        // Clocks of a server and of this host may differ a little.
        assert!(listed.iter().all(|l| l.modified_ms > before - 60_000));
        assert_eq!(store.list("list/").await.expect("list").len(), 3);
        assert!(store.list("none/").await.expect("empty").is_empty());
        assert!(store.list("list").await.is_err(), "a prefix ends with /");
        assert!(store.list("../").await.is_err());
        for key in ["list/a/1", "list/a/2", "list/b/1", "listx"] {
            store.delete(key).await.expect("delete");
        }
        assert!(store.list("list/").await.expect("list").is_empty());
        for bad in [
            "", "../x", "a/../b", "/abs", "A", "a//b", "a b", ".tmp-1", "a/./b",
        ] {
            let refused = store.put(bad, Bytes::from_static(b"x")).await;
            assert!(refused.is_err(), "key {bad:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_filesystem_engine_conforms() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsStore::open(dir.path().join("media")).expect("open");
        conformance::run(&store).await;
    }

    #[test]
    fn keys_cannot_leave_the_store() {
        assert!(valid_key("blobs/0a/0abc.jpg"));
        assert!(valid_key("records/0190f0f0-0000-7000-8000-000000000001"));
        for bad in ["..", "a/..", "/etc/passwd", "a\\b", "a\0b", "é", ""] {
            assert!(!valid_key(bad), "{bad:?}");
        }
    }
}
