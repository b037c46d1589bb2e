//! A folder on the local filesystem as a store.

use std::io::{ErrorKind, SeekFrom};
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use cloudify_core::store::{ObjectMeta, Precondition, slice_range};
use cloudify_core::{Error, Result, Store};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// How long a writer waits for another's lock on an object before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(30);
/// A lock older than this is left over from a crashed writer and is broken.
const LOCK_STALE: Duration = Duration::from_secs(120);

/// A folder as a store. Keys are `/`-separated paths below the root; a key that would leave it
/// (`..`, an absolute path) is refused, whatever the caller.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// A store rooted at `root` (created on first write if absent).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The folder this store reads.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        let rel = Path::new(key);
        let clean = !key.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !clean {
            return Err(Error::Storage(format!(
                "key {key:?} does not name a file below the store's folder"
            )));
        }
        Ok(self.root.join(rel))
    }
}

fn io_error(key: &str, e: std::io::Error) -> Error {
    Error::Storage(format!("{key}: {e}"))
}

/// The local stand-in for an ETag: size and modification time, which change on any rewrite.
fn tag(meta: &std::fs::Metadata) -> String {
    let nanos = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("\"{}-{nanos}\"", meta.len())
}

#[async_trait]
impl Store for LocalStore {
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        match tokio::fs::read(self.path(key)?).await {
            Ok(b) => Ok(Some(Bytes::from(b))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(key, e)),
        }
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Option<Bytes>> {
        let mut f = match tokio::fs::File::open(self.path(key)?).await {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(key, e)),
        };
        let len = f.metadata().await.map_err(|e| io_error(key, e))?.len();
        if range.start > range.end || range.end > len {
            // Reuse the core's wording for an unsatisfiable range.
            return slice_range(key, &Bytes::new(), range).map(Some);
        }
        let want = usize::try_from(range.end - range.start)
            .map_err(|_| Error::Storage(format!("range of {key} too large for memory")))?;
        let mut buf = vec![0u8; want];
        f.seek(SeekFrom::Start(range.start))
            .await
            .map_err(|e| io_error(key, e))?;
        f.read_exact(&mut buf).await.map_err(|e| io_error(key, e))?;
        Ok(Some(Bytes::from(buf)))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        match tokio::fs::metadata(self.path(key)?).await {
            Ok(m) if m.is_file() => Ok(Some(ObjectMeta {
                size: m.len(),
                etag: Some(tag(&m)),
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(key, e)),
        }
    }

    async fn put(&self, key: &str, bytes: Bytes, precondition: Precondition) -> Result<bool> {
        let path = self.path(key)?;
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| io_error(key, e))?;
        }
        let _lock = match precondition {
            Precondition::None => None,
            _ => Some(FileLock::acquire(&path).await?),
        };
        let current = self.head(key).await?;
        let ok = match (&precondition, &current) {
            (Precondition::None, _) | (Precondition::Absent, None) => true,
            (Precondition::Matches(want), Some(m)) => m.etag.as_deref() == Some(want.as_str()),
            _ => false,
        };
        if !ok {
            return Ok(false);
        }
        // Write beside the target and rename, so readers see the old object or the new one; the
        // temporary name is unique per process and write.
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let n = WRITES.fetch_add(1, Ordering::Relaxed);
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(format!(".tmp-{}-{n}", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        tokio::fs::write(&tmp, &bytes)
            .await
            .map_err(|e| io_error(key, e))?;
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|e| io_error(key, e))?;
        Ok(true)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut keys = Vec::new();
            walk(&root, &root, &mut keys).map_err(|e| io_error(&prefix, e))?;
            keys.retain(|k| k.starts_with(&prefix));
            keys.sort();
            Ok(keys)
        })
        .await
        .map_err(|e| Error::Storage(format!("listing failed: {e}")))?
    }

    /// Remove the file, then the folders it leaves empty (up to the root).
    async fn delete(&self, key: &str) -> Result<bool> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_error(key, e)),
        }
        let mut dir = path.parent();
        while let Some(d) = dir.filter(|d| *d != self.root.as_path()) {
            if tokio::fs::remove_dir(d).await.is_err() {
                break; // not empty, or gone already
            }
            dir = d.parent();
        }
        Ok(true)
    }
}

fn walk(root: &Path, dir: &Path, keys: &mut Vec<String>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            walk(root, &path, keys)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            let key: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            keys.push(key.join("/"));
        }
    }
    Ok(())
}

/// An exclusive lock file beside an object, held while a conditional write compares and swaps,
/// so two processes writing one bucket folder never interleave.
struct FileLock(PathBuf);

impl FileLock {
    async fn acquire(target: &Path) -> Result<Self> {
        let mut name = target.file_name().unwrap_or_default().to_os_string();
        name.push(".lock");
        let path = target.with_file_name(name);
        let started = SystemTime::now();
        loop {
            match tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .await
            {
                Ok(_) => return Ok(Self(path)),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    let age = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok());
                    if age.is_some_and(|a| a > LOCK_STALE) {
                        // Break it by renaming first, so of two writers breaking it at once
                        // only one succeeds, and never removes the other's fresh lock.
                        let broken = path.with_extension(format!("broken-{}", std::process::id()));
                        if std::fs::rename(&path, &broken).is_ok() {
                            let _ = std::fs::remove_file(&broken);
                        }
                        continue;
                    }
                    if started.elapsed().unwrap_or_default() > LOCK_WAIT {
                        return Err(Error::Storage(format!(
                            "{} has been locked for over {LOCK_WAIT:?}",
                            path.display()
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(io_error(&path.display().to_string(), e)),
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn local_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::new(dir.path());
        assert_eq!(s.get("a/b.bin").await.unwrap(), None);
        assert!(
            s.put(
                "a/b.bin",
                Bytes::from_static(b"0123456789"),
                Precondition::Absent
            )
            .await
            .unwrap()
        );
        assert!(
            !s.put("a/b.bin", Bytes::from_static(b"x"), Precondition::Absent)
                .await
                .unwrap()
        );
        assert_eq!(
            s.get_range("a/b.bin", 2..5).await.unwrap().unwrap(),
            Bytes::from_static(b"234")
        );
        assert!(matches!(
            s.get_range("a/b.bin", 8..12).await,
            Err(Error::RangeNotSatisfiable(_))
        ));
        let tag = s.head("a/b.bin").await.unwrap().unwrap().etag.unwrap();
        assert!(
            s.put(
                "a/b.bin",
                Bytes::from_static(b"new"),
                Precondition::Matches(tag.clone())
            )
            .await
            .unwrap()
        );
        assert!(
            !s.put(
                "a/b.bin",
                Bytes::from_static(b"stale"),
                Precondition::Matches(tag)
            )
            .await
            .unwrap()
        );
        assert_eq!(s.list("a/").await.unwrap(), vec!["a/b.bin".to_owned()]);
        for bad in ["../x", "/etc/passwd", "a/../../x", ""] {
            assert!(matches!(s.get(bad).await, Err(Error::Storage(_))), "{bad}");
        }
    }
}
