//! Re-encode throughput per codec, one core: decoding a source chunk (HDF5 shuffle + deflate,
//! as netCDF writes it; and its inflate alone) and encoding it with each served codec.
//! Throughput is in decoded bytes.
//! Run: cargo bench -p cloudify-core --bench reencode
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::io::Write;

use cloudify_core::Codec;
use cloudify_core::codecs::{ServedCodec, decode_source};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// A 30×180×360 float32 chunk (7.8 MB) of a smooth field with noise at 0.01 K resolution.
fn field() -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut out = Vec::with_capacity(30 * 180 * 360 * 4);
    for t in 0..30 {
        for y in 0..180 {
            for x in 0..360 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let noise = (state % 400) as f32 / 100.0 - 2.0;
                let lat = (y as f32 - 89.5).to_radians();
                let v = 280.0 + 20.0 * lat.cos() + (t + x) as f32 * 0.001 + noise;
                out.extend_from_slice(&((v * 100.0).round() / 100.0).to_le_bytes());
            }
        }
    }
    out
}

/// HDF5 shuffle then deflate at netCDF's usual level 4.
fn hdf5_encode(raw: &[u8]) -> Vec<u8> {
    let n = raw.len() / 4;
    let mut shuffled = vec![0u8; raw.len()];
    for i in 0..n {
        for j in 0..4 {
            shuffled[j * n + i] = raw[i * 4 + j];
        }
    }
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(4));
    e.write_all(&shuffled).unwrap();
    e.finish().unwrap()
}

fn reencode(c: &mut Criterion) {
    let raw = field();
    let stored = hdf5_encode(&raw);
    let chain = [Codec::Shuffle { elementsize: 4 }, Codec::Zlib { level: 4 }];
    let mut g = c.benchmark_group("reencode");
    g.throughput(Throughput::Bytes(raw.len() as u64));
    g.sample_size(10);
    g.bench_function("decode source shuffle+zlib", |b| {
        b.iter(|| decode_source(&chain, 0, black_box(&stored), raw.len(), "bench").unwrap())
    });
    g.bench_function("inflate source (zlib alone)", |b| {
        b.iter(|| decode_source(&chain[1..], 0, black_box(&stored), raw.len(), "bench").unwrap())
    });
    for name in [
        "none", "zlib:1", "zlib:5", "zstd:-5", "zstd:-3", "zstd:-1", "zstd:1", "zstd:3",
    ] {
        let codec = ServedCodec::parse(name).unwrap();
        g.bench_function(format!("encode {name}"), |b| {
            b.iter(|| codec.encode(black_box(&raw), false).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, reencode);
criterion_main!(benches);
