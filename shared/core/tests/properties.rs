//! Property tests, the fuzz targets of stable Rust: the parsers that take a request's path and
//! the readers of what the bucket holds never panic, whatever bytes they get, and what they
//! accept names nothing outside a dataset. `PROPTEST_CASES` sets how many inputs each tries
//! (CI runs the default; a longer run is recorded in bench/RESULTS.md).
#![allow(clippy::unwrap_used, clippy::panic)]

use cloudify_core::diag::Diagnostic;
use cloudify_core::key::{Route, parse_path};
use cloudify_core::manifest::{self, Manifest, RECORD_LEN};
use cloudify_core::registry::Registry;
use proptest::prelude::*;

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

proptest! {
    #[test]
    fn any_path_parses_or_is_refused(raw in any::<String>()) {
        let _ = parse_path(&raw);
    }

    #[test]
    fn paths_of_segments_name_nothing_outside(segments in prop::collection::vec(segment(), 0..8)) {
        let raw = format!("/{}", segments.join("/"));
        if let Ok(route) = parse_path(&raw) {
            let named = match &route {
                Route::StaticStac(p) | Route::Refs(_, p) => Some(p.clone()),
                _ => None,
            };
            if let Some(p) = named {
                prop_assert!(!p.split('/').any(|s| s == ".." || s == "." || s.is_empty()), "{raw} -> {p}");
                prop_assert!(!p.contains('\\'), "{raw} -> {p}");
            }
        }
    }

    #[test]
    fn any_diagnostic_parses_or_is_refused(
        kind in prop_oneof![Just("reduce"), Just("groupby"), Just("plot")],
        segments in prop::collection::vec(segment(), 0..8),
    ) {
        let refs: Vec<&str> = segments.iter().map(String::as_str).collect();
        let _ = Diagnostic::parse(kind, &refs);
    }

    #[test]
    fn any_table_record_decodes_or_is_refused(index in any::<u64>(), bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = manifest::decode_record(index, &bytes);
        let _ = manifest::check_table_header(&bytes);
    }

    #[test]
    fn a_damaged_record_is_never_read_as_another(
        index in 0u64..1000,
        offset in any::<u64>(),
        length in any::<u64>(),
        flip in 0usize..(RECORD_LEN as usize * 8),
    ) {
        let c = cloudify_core::ChunkRef { source: 0, filter_mask: 0, offset, length };
        let table = manifest::encode_table(&[(index, c)]);
        let range = manifest::record_range(index);
        let mut rec = table[range.start as usize..range.end as usize].to_vec();
        prop_assert_eq!(manifest::decode_record(index, &rec).unwrap(), Some(c));
        rec[flip / 8] ^= 1 << (flip % 8);
        prop_assert!(manifest::decode_record(index, &rec).is_err());
    }

    #[test]
    fn any_manifest_or_registry_parses_or_is_refused(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Manifest::from_json(&bytes);
        let _ = Registry::parse(&bytes);
    }

    #[test]
    fn any_json_manifest_parses_or_is_refused(doc in json_value(3)) {
        let bytes = serde_json::to_vec(&doc).unwrap();
        let _ = Manifest::from_json(&bytes);
        let _ = Registry::parse(&bytes);
    }
}

/// JSON documents, shaped like manifests often enough to get past the first field.
fn json_value(depth: u32) -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
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
            "[a-z_]{1,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(keys, inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}
