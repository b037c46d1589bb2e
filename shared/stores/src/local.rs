//! A folder on the local filesystem as a store.

use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use cloudify_core::store::{
    Fetched, GetOptions, Object, ObjectMeta, Precondition, ReadStore, WriteStore, check_range,
};
use cloudify_core::{Error, Result};

/// How long a writer waits for another's lock on an object before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(30);
/// A lock older than this is left over from a crashed writer and is broken.
const LOCK_STALE: Duration = Duration::from_secs(120);

/// A folder as a store. Keys are `/`-separated paths below the root; a key that would leave it
/// (`..`, an absolute path) is refused, whatever the caller.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    /// `root` with its symlinks resolved, once it exists: what every resolved key must be in.
    real_root: std::sync::OnceLock<PathBuf>,
}

impl LocalStore {
    /// A store rooted at `root` (created on first write if absent).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            real_root: std::sync::OnceLock::new(),
        }
    }

    /// The folder this store reads.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file `key` names, through symlinks, when it stays inside the store's folder: a
    /// symlink may point elsewhere in the bucket, never out of it. `None` when it is absent.
    async fn resolved(&self, key: &str) -> Result<Option<PathBuf>> {
        let path = self.path(key)?;
        let real = match tokio::fs::canonicalize(&path).await {
            Ok(p) => p,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(key, e)),
        };
        let root = match self.real_root.get() {
            Some(root) => root,
            None => {
                let root = tokio::fs::canonicalize(&self.root)
                    .await
                    .map_err(|e| io_error(key, e))?;
                self.real_root.get_or_init(|| root)
            }
        };
        if !real.starts_with(root) {
            return Err(Error::storage(
                key,
                "is a symlink to a file outside the store's folder",
            ));
        }
        Ok(Some(real))
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

/// What the store says of a file: its size, its tag and its modification time.
///
/// The tag, the local stand-in for an ETag, is the size, the modification time and the
/// inode's change time, all in nanoseconds: a rewrite changes the change time even when it
/// keeps the size and puts the modification time back, which no one can set.
fn meta_of(meta: &std::fs::Metadata) -> ObjectMeta {
    use std::os::unix::fs::MetadataExt;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok());
    let nanos = modified.map_or(0, |d| d.as_nanos());
    let changed = i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec());
    ObjectMeta {
        size: meta.len(),
        etag: Some(format!("\"{}-{nanos}-{changed}\"", meta.len())),
        last_modified: modified.map(|d| d.as_millis() as u64),
    }
}

/// Whether `tag` is one this store makes (`"SIZE-MTIME-CTIME"`): only those can be compared
/// with a file's; a tag recorded through another store is left to the caller's size check.
fn is_local_tag(tag: &str) -> bool {
    tag.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .is_some_and(|t| {
            let parts: Vec<&str> = t.split('-').collect();
            parts.len() == 3
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
        })
}

/// The file's metadata; an error for a folder or a special file where an object is expected
/// (read as absent, a folder in place of `index.json` would serve an empty catalog; a pipe
/// would hang the read).
fn file_meta(key: &str, meta: std::fs::Metadata) -> Result<ObjectMeta> {
    match meta {
        m if m.is_file() => Ok(meta_of(&m)),
        m if m.is_dir() => Err(Error::storage(key, "is a folder, not an object")),
        _ => Err(Error::storage(key, "is not a regular file")),
    }
}

#[async_trait]
impl ReadStore for LocalStore {
    async fn get_with(&self, key: &str, options: &GetOptions) -> Result<Fetched> {
        let Some(path) = self.resolved(key).await? else {
            return Ok(Fetched::Missing);
        };
        // Checked before opening: opening a pipe would wait for a writer.
        match tokio::fs::metadata(&path).await {
            Ok(m) => file_meta(key, m)?,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Fetched::Missing),
            Err(e) => return Err(io_error(key, e)),
        };
        let f = match tokio::fs::File::open(path).await {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Fetched::Missing),
            Err(e) => return Err(io_error(key, e)),
        };
        // The tag of what was opened, should the file have been replaced since.
        let meta = file_meta(key, f.metadata().await.map_err(|e| io_error(key, e))?)?;
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
        // One positioned read straight into the answer's buffer, on the blocking pool:
        // tokio's file reads go through a buffer of their own, 2 MiB at a time.
        let (file, start) = (f.into_std().await, range.start);
        let mut buf = vec![0u8; want];
        let buf = tokio::task::spawn_blocking(move || {
            std::os::unix::fs::FileExt::read_exact_at(&file, &mut buf, start).map(|()| buf)
        })
        .await
        .map_err(|e| Error::storage(key, format!("the read stopped: {e}")))?
        .map_err(|e| io_error(key, e))?;
        Ok(Fetched::Object(Object {
            bytes: Bytes::from(buf),
            meta,
        }))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let Some(path) = self.resolved(key).await? else {
            return Ok(None);
        };
        match tokio::fs::metadata(path).await {
            Ok(m) => file_meta(key, m).map(Some),
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
        let entry = entry?;
        let path = entry.path();
        // Symlinked folders are not followed: they could loop, or lead out of the store.
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(root, &path, keys)?;
        } else if kind.is_symlink() && path.is_dir() {
            continue;
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
///
/// The lock names its owner (process id and start time on this machine): a lock whose owner
/// has exited (a killed indexer) is broken at once, one whose owner cannot be checked (another
/// machine sharing the folder) when it is older than [`LOCK_STALE`].
struct FileLock(PathBuf);

/// This machine's name for a process: its id and its start time in clock ticks since boot,
/// so a recycled id is not taken for the owner. `None` where `/proc` does not say.
fn process_identity(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces; the fields after it do not.
    let after = stat.rsplit_once(')')?.1;
    let start = after.split_whitespace().nth(19)?;
    Some(format!("{pid} {start}"))
}

/// Whether the lock at `path` belongs to a process of this machine that has exited.
fn owner_exited(path: &Path) -> bool {
    let Ok(owner) = std::fs::read_to_string(path) else {
        return false;
    };
    let Some(pid) = owner.split_whitespace().next().and_then(|p| p.parse().ok()) else {
        return false;
    };
    // Only when this machine can name its own processes can it tell one is gone.
    process_identity(std::process::id()).is_some()
        && process_identity(pid).as_deref() != Some(owner.trim())
}

impl FileLock {
    async fn acquire(target: &Path) -> Result<Self> {
        let mut name = target.file_name().unwrap_or_default().to_os_string();
        name.push(".lock");
        let path = target.with_file_name(name);
        let me = process_identity(std::process::id()).unwrap_or_default();
        let started = SystemTime::now();
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    use std::io::Write;
                    let _ = f.write_all(me.as_bytes());
                    return Ok(Self(path));
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    let age = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok());
                    // A lock just created may not hold its owner yet: give it a moment.
                    let settled = age.is_some_and(|a| a > Duration::from_millis(200));
                    if age.is_some_and(|a| a > LOCK_STALE) || (settled && owner_exited(&path)) {
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
        let dir = TempDir::new();
        let s = LocalStore::new(dir.path());
        let fixture = check_writes(&s, "conformance").await.unwrap();
        check_reads(&s, &fixture).await.unwrap();
        for bad in ["../x", "/etc/passwd", "a/../../x", ""] {
            assert!(matches!(s.get(bad).await, Err(Error::Storage(_))), "{bad}");
        }
    }

    #[tokio::test]
    async fn symlinks_stay_inside_and_folders_are_not_objects() {
        let outside = TempDir::new();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        let dir = TempDir::new();
        let s = LocalStore::new(dir.path());
        s.put("data/a.bin", Bytes::from_static(b"abc"), Precondition::None)
            .await
            .unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("out")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("data/a.bin"), dir.path().join("in")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("outdir")).unwrap();
        for key in ["out", "outdir/secret"] {
            let e = s.get(key).await.unwrap_err().internal();
            assert!(e.contains("outside the store"), "{key}: {e}");
            assert!(s.head(key).await.is_err(), "{key}");
        }
        assert_eq!(s.get("in").await.unwrap().unwrap().bytes, "abc");
        assert_eq!(s.list("").await.unwrap(), ["data/a.bin", "in", "out"]);
        std::fs::create_dir(dir.path().join("index.json")).unwrap();
        let e = s.get("index.json").await.unwrap_err().internal();
        assert!(e.contains("is a folder"), "{e}");
    }

    #[tokio::test]
    async fn a_rewrite_with_the_same_size_and_time_changes_the_tag() {
        let dir = TempDir::new();
        let path = dir.path().join("f");
        std::fs::write(&path, b"one").unwrap();
        let s = LocalStore::new(dir.path());
        let before = s.head("f").await.unwrap().unwrap();
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&path, b"two").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let after = s.head("f").await.unwrap().unwrap();
        assert_eq!(
            (after.size, after.last_modified),
            (before.size, before.last_modified)
        );
        assert_ne!(after.etag, before.etag);
        let stale = GetOptions {
            if_match: before.etag,
            ..GetOptions::default()
        };
        assert!(matches!(
            s.get_with("f", &stale).await,
            Err(Error::Conflict(_))
        ));
    }

    #[tokio::test]
    async fn a_lock_left_by_an_exited_process_is_broken_at_once() {
        let dir = TempDir::new();
        let s = LocalStore::new(dir.path());
        s.put("index.json", Bytes::from_static(b"{}"), Precondition::None)
            .await
            .unwrap();
        // What a killed indexer leaves: a lock naming a process that is gone.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        std::fs::write(dir.path().join("index.json.lock"), format!("{pid} 1")).unwrap();
        std::thread::sleep(Duration::from_millis(250));
        let tag = s.head("index.json").await.unwrap().unwrap().etag.unwrap();
        let started = std::time::Instant::now();
        let written = s
            .put(
                "index.json",
                Bytes::from_static(b"{1}"),
                Precondition::Matches(tag),
            )
            .await
            .unwrap();
        assert!(written);
        // Not a timing assertion on speed: waiting out the lock would take LOCK_WAIT and fail.
        assert!(started.elapsed() < LOCK_WAIT);
        // A lock of a live process (this one) is respected until it is stale.
        let me = process_identity(std::process::id()).unwrap();
        assert!(!owner_exited_text(&me));
    }

    /// A fresh folder, removed with everything in it when dropped. Written here rather than
    /// taken from the tempfile crate, whose rustix would give the test build other features
    /// of shared dependencies than the release build, which `cargo test --release` reuses.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("cloudify-stores-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn owner_exited_text(owner: &str) -> bool {
        let dir = TempDir::new();
        let p = dir.path().join("x.lock");
        std::fs::write(&p, owner).unwrap();
        owner_exited(&p)
    }
}
