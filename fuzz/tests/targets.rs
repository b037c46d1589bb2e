//! Every fuzz target, as a test: its corpus replayed, then `PROPTEST_CASES` new inputs (256
//! by default). CI also runs each for 60 s (`cloudify-fuzz`, see scripts/test).
#![allow(clippy::panic)]

use cloudify_fuzz::{Budget, Outcome, run, target};

fn passes(name: &str) {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let t = target(name).unwrap_or_else(|| panic!("no target {name}"));
    if let Outcome::Failed { why, input } = run(t, Budget::Cases(cases)) {
        panic!("{name}: {why}\n  input: {input:?}");
    }
}

#[test]
fn path() {
    passes("path");
}

#[test]
fn diagnostic() {
    passes("diagnostic");
}

#[test]
fn table() {
    passes("table");
}

#[test]
fn manifest() {
    passes("manifest");
}

#[test]
fn kerchunk() {
    passes("kerchunk");
}

#[test]
fn index() {
    passes("index");
}

#[test]
fn the_index_corpus_is_kept() {
    let kept = cloudify_fuzz::corpus(&cloudify_fuzz::corpus_dir("index"));
    assert!(
        kept.len() > 5,
        "fuzz/corpus/index holds the files that once broke the indexer"
    );
}
