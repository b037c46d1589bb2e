//! A folder on the local filesystem as a store.

use std::io::{ErrorKind, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use cloudify_core::store::{
    Fetched, GetOptions, Object, ObjectMeta, Precondition, ReadStore, WriteStore, check_range,
};
use cloudify_core::{Error, Result};
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
            return Err(Error::storage(
                key,
                "the key does not name a file below the store's folder",
            ));
        }
        Ok(self.root.join(rel))
    }
}

fn io_error(key: &str, e: std::io::Error) -> Error {
    Error::failed(key, "the file cannot be read or written", e)
}

/// What the store says of a file: its size, its tag (size and modification time, which change
/// on any rewrite: the local stand-in for an ETag) and its modification time.
fn meta_of(meta: &std::fs::Metadata) -> ObjectMeta {
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok());
    let nanos = modified.map_or(0, |d| d.as_nanos());
    ObjectMeta {
        size: meta.len(),
        etag: Some(format!("\"{}-{nanos}\"", meta.len())),
        last_modified: modified.map(|d| d.as_millis() as u64),
    }
}

/// Whether `tag` is one this store makes (`"SIZE-NANOS"`): only those can be compared with a
/// file's; a tag recorded through another store is left to the caller's size check.
fn is_local_tag(tag: &str) -> bool {
    tag.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .and_then(|t| t.split_once('-'))
        .is_some_and(|(a, b)| {
            [a, b]
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
        })
}

#[async_trait]
impl ReadStore for LocalStore {
    async fn get_with(&self, key: &str, options: &GetOptions) -> Result<Fetched> {
        let mut f = match tokio::fs::File::open(self.path(key)?).await {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Fetched::Missing),
            Err(e) => return Err(io_error(key, e)),
        };
        let stat = f.metadata().await.map_err(|e| io_error(key, e))?;
        if !stat.is_file() {
            return Ok(Fetched::Missing);
        }
        let meta = meta_of(&stat);
        if let Some(want) = options.if_match.as_deref().filter(|t| is_local_tag(t))
            && meta.etag.as_deref() != Some(want)
        {
            return Err(Error::changed(key, format!("its tag is no longer {want}")));
        }
        if options.if_none_match.is_some() && options.if_none_match == meta.etag {
            return Ok(Fetched::NotModified);
        }
        let range = options.range.clone().unwrap_or(0..meta.size);
        check_range(key, &range, meta.size)?;
        let want = usize::try_from(range.end - range.start)
            .map_err(|_| Error::storage(key, "the range is too large for memory"))?;
        let mut buf = vec![0u8; want];
        f.seek(SeekFrom::Start(range.start))
            .await
            .map_err(|e| io_error(key, e))?;
        f.read_exact(&mut buf).await.map_err(|e| io_error(key, e))?;
        Ok(Fetched::Object(Object {
            bytes: Bytes::from(buf),
            meta,
        }))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        match tokio::fs::metadata(self.path(key)?).await {
            Ok(m) if m.is_file() => Ok(Some(meta_of(&m))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(key, e)),
        }
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
        .map_err(|e| {
            Error::storage(
                self.root.display().to_string(),
                format!("listing failed: {e}"),
            )
        })?
    }
}

#[async_trait]
impl WriteStore for LocalStore {
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
                        return Err(Error::storage(
                            path.display().to_string(),
                            format!("locked for over {LOCK_WAIT:?}"),
                        ));
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
    use cloudify_core::store::{ReadStoreExt, check_reads, check_writes};

    #[tokio::test]
    async fn the_local_store_passes_the_conformance_suite_and_stays_in_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::new(dir.path());
        let fixture = check_writes(&s, "conformance").await.unwrap();
        check_reads(&s, &fixture).await.unwrap();
        for bad in ["../x", "/etc/passwd", "a/../../x", ""] {
            assert!(matches!(s.get(bad).await, Err(Error::Storage(_))), "{bad}");
        }
    }
}
