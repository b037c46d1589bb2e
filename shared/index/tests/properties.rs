//! Property tests, the fuzz targets of stable Rust: the NetCDF-3 and HDF5 header readers,
//! through the indexer, on arbitrary bytes and on flipped, truncated and inflated real files,
//! end in a dataset or an error, never a panic or an allocation a header sized. The corpus
//! (`tests/data/mutants`, files that once crashed it) is replayed each run. `PROPTEST_CASES`
//! sets how many inputs each property tries.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use cloudify_index::{Kept, ServeOptions, SourceSpec, read_dataset};
use proptest::prelude::*;

/// Index `bytes` as a file; only a panic (or an abort) fails.
fn index(bytes: Vec<u8>) {
    let spec = SourceSpec::in_memory("fuzz.nc".into(), "file:///fuzz.nc".into(), bytes);
    let _ = read_dataset(
        "fuzz",
        &[spec],
        &ServeOptions::default(),
        None,
        &Kept::default(),
    );
}

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(name)
}

/// Real files to mutate: the NetCDF4 sample and the corpus (NetCDF-3 and HDF5).
fn seeds() -> Vec<Vec<u8>> {
    let mut out = vec![std::fs::read(data("sample.nc")).unwrap()];
    let mut corpus: Vec<PathBuf> = std::fs::read_dir(data("mutants"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "nc"))
        .collect();
    corpus.sort();
    out.extend(corpus.iter().map(|p| std::fs::read(p).unwrap()));
    out
}

#[test]
fn the_corpus_indexes_or_fails_cleanly() {
    let seeds = seeds();
    assert!(seeds.len() > 5, "the corpus is in tests/data/mutants");
    for s in seeds {
        index(s);
    }
}

/// Header numbers a corrupt file might claim.
fn claim() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(u64::from(u32::MAX)),
        Just(1 << 31),
        Just(1 << 40),
        Just(u64::MAX),
        Just(u64::MAX / 2),
        Just(50_000_000),
        any::<u64>(),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        index(bytes);
    }

    #[test]
    fn arbitrary_netcdf3_headers(
        version in prop_oneof![Just(1u8), Just(2u8), Just(5u8)],
        rest in prop::collection::vec(any::<u8>(), 0..1024),
    ) {
        let mut bytes = vec![b'C', b'D', b'F', version];
        bytes.extend(rest);
        index(bytes);
    }

    #[test]
    fn flipped_files(
        seed in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
    ) {
        let seeds = seeds();
        let mut bytes = seed.get(&seeds).clone();
        // Most of a file's metadata is near its start: flip there most often.
        let len = bytes.len();
        for (at, value) in flips {
            let i = at.index(len.min(8192));
            bytes[i] ^= value.max(1);
        }
        index(bytes);
    }

    #[test]
    fn truncated_files(seed in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>()) {
        let seeds = seeds();
        let bytes = seed.get(&seeds);
        index(bytes[..cut.index(bytes.len())].to_vec());
    }

    #[test]
    fn inflated_numbers(
        seed in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        value in claim(),
        wide in any::<bool>(),
        big_endian in any::<bool>(),
    ) {
        let seeds = seeds();
        let mut bytes = seed.get(&seeds).clone();
        let width = if wide { 8 } else { 4 };
        let i = at.index(bytes.len().min(8192).saturating_sub(width).max(1));
        let field: Vec<u8> = match (wide, big_endian) {
            (true, true) => value.to_be_bytes().to_vec(),
            (true, false) => value.to_le_bytes().to_vec(),
            (false, true) => (value as u32).to_be_bytes().to_vec(),
            (false, false) => (value as u32).to_le_bytes().to_vec(),
        };
        if let Some(slot) = bytes.get_mut(i..i + width) {
            slot.copy_from_slice(&field);
        }
        index(bytes);
    }
}
