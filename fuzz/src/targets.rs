//! The targets: what a request's path, the bucket's objects and a source file's header can
//! hold, each read by the code that reads it in production.
// A check reports a failed property by panicking, as a test does.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use cloudify_core::ChunkRef;
use cloudify_core::diag::Diagnostic;
use cloudify_core::key::{Route, parse_path};
use cloudify_core::manifest::{self, Manifest, RECORD_LEN};
use cloudify_core::registry::Registry;
use cloudify_core::zarr_v2;
use cloudify_index::{Kept, ServeOptions, SourceSpec, read_dataset};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Value, json};

use crate::{Target, corpus, corpus_dir, root};

pub const ALL: &[Target] = &[
    Target {
        name: "path",
        about: "the request path parser: any path parses or is refused, and what it accepts \
                names nothing outside a dataset",
        inputs: path_inputs,
        check: path,
    },
    Target {
        name: "diagnostic",
        about: "the diagnostics' selection parser (reduce, groupby, plot and their segments)",
        inputs: diagnostic_inputs,
        check: diagnostic,
    },
    Target {
        name: "table",
        about: "the chunk table reader: any record decodes or is refused, and a record with \
                one bit flipped is never read as another",
        inputs: table_inputs,
        check: table,
    },
    Target {
        name: "manifest",
        about: "the manifest and registry readers (index.json, manifest.json) on any bytes",
        inputs: manifest_inputs,
        check: manifest_or_registry,
    },
    Target {
        name: "kerchunk",
        about: "the kerchunk JSON reader that points stored references at the function",
        inputs: kerchunk_inputs,
        check: kerchunk,
    },
    Target {
        name: "index",
        about: "the NetCDF-3 and HDF5 header readers through the indexer: arbitrary bytes and \
                flipped, truncated and inflated real files end in a dataset whose chunks lie \
                in the file, or an error",
        inputs: index_inputs,
        check: index,
    },
];

/// Path segments a client might send, valid and hostile, to combine.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("datasets".to_owned()),
        Just("zarr".to_owned()),
        Just("zarr3".to_owned()),
        Just("kerchunk".to_owned()),
        Just("stac".to_owned()),
        Just("reduce".to_owned()),
        Just("plot".to_owned()),
        Just("..".to_owned()),
        Just("%2e%2e".to_owned()),
        Just("%2F".to_owned()),
        Just(".zarray".to_owned()),
        Just("c".to_owned()),
        "[a-z0-9._@,:-]{0,12}",
        "\\PC{0,6}",
        any::<String>(),
    ]
}

fn path_inputs() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        any::<String>(),
        vec(segment(), 0..8).prop_map(|s| format!("/{}", s.join("/"))),
    ]
    .prop_map(String::into_bytes)
    .boxed()
}

fn path(bytes: &[u8]) {
    let raw = String::from_utf8_lossy(bytes);
    if let Ok(Route::StaticStac(p) | Route::Refs(_, p)) = parse_path(&raw) {
        assert!(
            !p.split('/').any(|s| s == ".." || s == "." || s.is_empty()),
            "{raw} -> {p}"
        );
        assert!(!p.contains('\\'), "{raw} -> {p}");
    }
}

/// `kind/segment/…`: a diagnostic's name and its path segments.
fn diagnostic_inputs() -> BoxedStrategy<Vec<u8>> {
    (
        prop_oneof![Just("reduce"), Just("groupby"), Just("plot")],
        vec(segment(), 0..8),
    )
        .prop_map(|(kind, segments)| format!("{kind}/{}", segments.join("/")).into_bytes())
        .boxed()
}

fn diagnostic(bytes: &[u8]) {
    let raw = String::from_utf8_lossy(bytes);
    let mut parts = raw.split('/');
    let kind = parts.next().unwrap_or_default();
    let segments: Vec<&str> = parts.collect();
    let _ = Diagnostic::parse(kind, &segments);
}

/// Bytes 0..8: a record's index; 8..24: its offset and length; 24..26: the bit to flip.
fn table_inputs() -> BoxedStrategy<Vec<u8>> {
    vec(any::<u8>(), 0..64).boxed()
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    for (i, v) in b.iter_mut().enumerate() {
        *v = bytes.get(at + i).copied().unwrap_or(0);
    }
    u64::from_le_bytes(b)
}

fn table(bytes: &[u8]) {
    let _ = manifest::check_table_header(bytes);
    let _ = manifest::decode_record(u64_at(bytes, 0), bytes.get(8..).unwrap_or_default());

    let index = u64_at(bytes, 0) % 1000;
    let c = ChunkRef {
        source: 0,
        filter_mask: 0,
        offset: u64_at(bytes, 8),
        length: u64_at(bytes, 16),
    };
    let table = manifest::encode_table(&[(index, c)]);
    let range = manifest::record_range(index);
    let mut rec = table[range.start as usize..range.end as usize].to_vec();
    assert_eq!(manifest::decode_record(index, &rec).unwrap(), Some(c));
    let flip = (u64_at(bytes, 24) & 0xffff) as usize % (RECORD_LEN as usize * 8);
    rec[flip / 8] ^= 1 << (flip % 8);
    assert!(
        manifest::decode_record(index, &rec).is_err(),
        "bit {flip} flipped in the record of {index} read as data"
    );
}

fn manifest_inputs() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..512),
        json_value(3).prop_map(|doc| serde_json::to_vec(&doc).unwrap()),
    ]
    .boxed()
}

fn manifest_or_registry(bytes: &[u8]) {
    let _ = Manifest::from_json(bytes);
    let _ = Registry::parse(bytes);
}

/// JSON documents, shaped like manifests often enough to get past the first field.
fn json_value(depth: u32) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        "[a-z<>|0-9]{0,8}".prop_map(Value::String),
        Just(json!(2)),
        Just(json!("<f4")),
    ];
    leaf.prop_recursive(depth, 64, 8, |inner| {
        let keys = prop_oneof![
            Just("format_version".to_owned()),
            Just("id".to_owned()),
            Just("arrays".to_owned()),
            Just("shape".to_owned()),
            Just("chunks".to_owned()),
            Just("dtype".to_owned()),
            Just("datasets".to_owned()),
            Just("refs".to_owned()),
            "[a-z_]{1,8}",
        ];
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(keys, inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// What a chunk's reference may be in a stored reference set.
fn reference() -> impl Strategy<Value = Value> {
    prop_oneof![
        ("[a-z0-9:/._?=&-]{0,24}", any::<u64>(), any::<u64>())
            .prop_map(|(url, offset, length)| json!([url, offset, length])),
        "[a-z0-9:/._?=&-]{0,24}".prop_map(|url| json!([url])),
        "\\PC{0,16}".prop_map(Value::String),
        json_value(2),
    ]
}

fn kerchunk_inputs() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..256),
        json_value(3).prop_map(|doc| serde_json::to_vec(&doc).unwrap()),
        proptest::collection::btree_map("\\PC{0,12}", reference(), 0..8).prop_map(|refs| {
            serde_json::to_vec(&json!({ "version": 1, "refs": refs })).unwrap()
        }),
    ]
    .boxed()
}

const FUNCTION: &str = "http://function/datasets/d@v/kerchunk";

fn kerchunk(bytes: &[u8]) {
    let Ok(out) = zarr_v2::refs_through(bytes, FUNCTION) else {
        return;
    };
    let before: Value = serde_json::from_slice(bytes).unwrap();
    let after: Value = serde_json::from_slice(&out).expect("the rewritten references are JSON");
    let (Some(Value::Object(old)), Some(Value::Object(new))) =
        (before.get("refs"), after.get("refs"))
    else {
        assert_eq!(
            before, after,
            "a document without references is served as stored"
        );
        return;
    };
    assert_eq!(old.len(), new.len());
    for (key, was) in old {
        let now = &new[key];
        match was.as_array().and_then(|a| a.first()) {
            Some(Value::String(_)) => assert_eq!(now, &json!([format!("{FUNCTION}/{key}")])),
            _ => assert_eq!(now, was, "{key}: only chunk references are rewritten"),
        }
    }
}

/// Real files to mutate: the NetCDF4 sample and the indexer's corpus (NetCDF-3 and HDF5).
fn seeds() -> Vec<Vec<u8>> {
    let sample = std::fs::read(root().join("tests/data/sample.nc")).expect("tests/data/sample.nc");
    let mut out = vec![sample];
    out.extend(corpus(&corpus_dir("index")).into_iter().map(|(_, b)| b));
    // The mutations pick positions within a seed: an empty one has none.
    out.retain(|b| !b.is_empty());
    out
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

fn index_inputs() -> BoxedStrategy<Vec<u8>> {
    let seeds = Arc::new(seeds());
    let (s1, s2, s3) = (seeds.clone(), seeds.clone(), seeds);
    let netcdf3 = (
        prop_oneof![Just(1u8), Just(2u8), Just(5u8)],
        vec(any::<u8>(), 0..1024),
    )
        .prop_map(|(version, rest)| {
            let mut bytes = vec![b'C', b'D', b'F', version];
            bytes.extend(rest);
            bytes
        });
    // Most of a file's metadata is near its start: flip and inflate there most often.
    let flipped = (any::<Index>(), vec((any::<Index>(), any::<u8>()), 1..16)).prop_map(
        move |(seed, flips)| {
            let mut bytes = seed.get(&s1).clone();
            let len = bytes.len();
            for (at, value) in flips {
                bytes[at.index(len.min(8192))] ^= value.max(1);
            }
            bytes
        },
    );
    let truncated = (any::<Index>(), any::<Index>()).prop_map(move |(seed, cut)| {
        let bytes = seed.get(&s2);
        bytes[..cut.index(bytes.len())].to_vec()
    });
    let inflated = (
        any::<Index>(),
        any::<Index>(),
        claim(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(move |(seed, at, value, wide, big_endian)| {
            let mut bytes = seed.get(&s3).clone();
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
            bytes
        });
    prop_oneof![
        vec(any::<u8>(), 0..2048),
        netcdf3,
        flipped,
        truncated,
        inflated,
    ]
    .boxed()
}

/// Index `bytes` as a file: a dataset whose chunks all lie within the file, or an error.
fn index(bytes: &[u8]) {
    let len = bytes.len() as u64;
    let spec = SourceSpec::in_memory("fuzz.nc".into(), "file:///fuzz.nc".into(), bytes.to_vec());
    let Ok(indexed) = read_dataset(
        "fuzz",
        &[spec],
        &ServeOptions::default(),
        None,
        &Kept::default(),
    ) else {
        return;
    };
    for ((name, _), table) in indexed.manifest.arrays.iter().zip(&indexed.tables) {
        for (linear, c) in &table.stored {
            assert!(
                c.source != 0 || c.offset.saturating_add(c.length) <= len,
                "{name}: chunk {linear} at {}+{} past the end of a {len}-byte file",
                c.offset,
                c.length
            );
        }
    }
}
