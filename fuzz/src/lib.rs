//! Fuzz targets for stable Rust: each target is a check on bytes (it panics when a property
//! fails) and a proptest strategy that generates its inputs, from arbitrary bytes to mutants
//! of real files. A run replays the target's corpus (`fuzz/corpus/{target}/`, inputs that once
//! failed, minimised), then tries new inputs for a number of cases (`cargo test`) or for a time
//! (`cloudify-fuzz --seconds 60`, as CI runs it). A failing input (a panic, caught) is shrunk
//! by proptest and saved to the corpus, so the next run replays it. An abort (a failed
//! allocation) or a hang ends the process without saving one: CI runs the targets under a
//! time limit, and the mutation test (tests/python/test_mutation.py) watches the indexer's
//! aborts, hangs and memory from outside.
//!
//! proptest's runner drives the generation and shrinking; what it does not do, a budget in
//! time and a corpus of bytes, is the little written here.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::strategy::{BoxedStrategy, Strategy};
use proptest::test_runner::{Config, TestError, TestRunner};

pub mod targets;

/// A fuzz target.
pub struct Target {
    /// Its name, and its corpus folder's.
    pub name: &'static str,
    /// What it checks.
    pub about: &'static str,
    /// The inputs it tries.
    pub inputs: fn() -> BoxedStrategy<Vec<u8>>,
    /// The check: returns when the input ends in a result or a clean error, panics otherwise.
    pub check: fn(&[u8]),
}

/// How long a run tries new inputs.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    Cases(u64),
    Time(Duration),
}

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    /// Every corpus input and `cases` new ones passed.
    Passed { replayed: usize, cases: u64 },
    /// An input failed: why, and the file that holds it (the corpus file, or where its
    /// minimised bytes were saved); no file when no input was made.
    Failed { why: String, input: Option<PathBuf> },
}

/// The repository's root, where the corpus and the test files are.
pub fn root() -> PathBuf {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR"));
    fuzz.parent().unwrap_or(fuzz).to_path_buf()
}

/// The corpus folder of `target`.
pub fn corpus_dir(target: &str) -> PathBuf {
    root().join("fuzz/corpus").join(target)
}

/// The inputs kept in `dir` (all files but a README), in name order; none when there is no
/// such folder.
///
/// # Panics
/// When a file of the folder cannot be read: the corpus is part of the repository.
#[allow(clippy::expect_used)]
pub fn corpus(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.expect("a corpus entry").path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "README.md"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).expect("a corpus file");
            (p, bytes)
        })
        .collect()
}

/// Replays `target`'s corpus, then tries new inputs within `budget`.
pub fn run(target: &Target, budget: Budget) -> Outcome {
    let dir = corpus_dir(target.name);
    let kept = corpus(&dir);
    let mut runner = TestRunner::new(Config {
        failure_persistence: None,
        max_shrink_time: 60_000,
        ..Config::default()
    });
    for (path, bytes) in &kept {
        if let Err(TestError::Fail(why, _) | TestError::Abort(why)) =
            runner.run_one(proptest::strategy::Just(bytes.clone()), |b| {
                (target.check)(&b);
                Ok(())
            })
        {
            show_panic(target, bytes);
            return Outcome::Failed {
                why: why.to_string(),
                input: Some(path.clone()),
            };
        }
    }
    let strategy = (target.inputs)();
    let start = Instant::now();
    let mut cases = 0u64;
    while match budget {
        Budget::Cases(n) => cases < n,
        Budget::Time(d) => start.elapsed() < d,
    } {
        let tree = match strategy.new_tree(&mut runner) {
            Ok(tree) => tree,
            Err(why) => {
                return Outcome::Failed {
                    why: format!("no input generated: {why}"),
                    input: None,
                };
            }
        };
        match runner.run_one(tree, |b| {
            (target.check)(&b);
            Ok(())
        }) {
            Ok(_) => cases += 1,
            Err(TestError::Fail(why, minimal)) => {
                let input = save(&dir, &minimal);
                show_panic(target, &minimal);
                return Outcome::Failed {
                    why: why.to_string(),
                    input: Some(input),
                };
            }
            Err(TestError::Abort(why)) => {
                return Outcome::Failed {
                    why: why.to_string(),
                    input: None,
                };
            }
        }
    }
    Outcome::Passed {
        replayed: kept.len(),
        cases,
    }
}

/// Runs a failing input once more outside proptest's silenced panic hook, so the panic's
/// message and location are printed.
fn show_panic(target: &Target, input: &[u8]) {
    let _ = std::panic::catch_unwind(|| (target.check)(input));
}

/// Saves a failing input to the corpus as `crash-{crc32}`; where it could not be written, the
/// path names the failure instead.
fn save(dir: &Path, bytes: &[u8]) -> PathBuf {
    let path = dir.join(format!("crash-{:08x}", crc32fast::hash(bytes)));
    match std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, bytes)) {
        Ok(()) => path,
        Err(e) => dir.join(format!("(not saved: {e})")),
    }
}

/// The target named `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    targets::ALL.iter().find(|t| t.name == name)
}
