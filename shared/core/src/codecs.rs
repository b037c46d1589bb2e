//! Decoding source chunks (the HDF5 filter pipeline) and encoding served chunks.
//!
//! Natively, zlib streams inflate through libdeflate, gzip through flate2 and zstd through the
//! zstd crate; on wasm32, where C codecs do not build, flate2 inflates both and ruzstd does zstd.
//! The HDF5 shuffle and Fletcher-32 filters are written here by hand: each is a dozen lines,
//! and zarrs' versions are tied to its array and codec-chain types (and its fletcher32 rejects
//! odd-length payloads, zarrs#460), which would be more code to adapt than to write.
//! Specs: HDF5 filters <https://support.hdfgroup.org/documentation/hdf5/latest/_f_i_l_t_e_r.html>,
//! Zarr v3 codecs <https://zarr-specs.readthedocs.io/en/latest/v3/codecs/index.html>.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Fault, Result};
use crate::manifest::{ArrayMeta, Codec};

/// The codec chunks are re-encoded with on the `/zarr` and `/zarr3` routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum ServedCodec {
    /// The source's own bytes and codecs where a served chunk is one source chunk that stock
    /// clients decode ([`passes_through`]), else [`AUTO_REENCODE`].
    Auto,
    /// Uncompressed.
    None,
    /// zlib in Zarr v2 (numcodecs `zlib`), gzip in Zarr v3 (core `gzip`): both deflate.
    Zlib {
        /// Compression level, 0-9.
        level: u32,
    },
    /// Zstandard (numcodecs `zstd` in v2, core `zstd` in v3).
    Zstd {
        /// Compression level: 1-22, or -7 to -1 (zstd's fast levels).
        level: i32,
    },
}

impl Default for ServedCodec {
    /// [`ServedCodec::Auto`].
    fn default() -> Self {
        ServedCodec::Auto
    }
}

/// What [`ServedCodec::Auto`] re-encodes with: zstd's fast level -5, the fastest of the codecs
/// stock zarr-python decodes that the core encodes natively and in wasm32, end to end
/// (`bench_codecs.py` in bench/RESULTS.md: it compresses less than level 1, but the server
/// encodes and clients decode it faster). A Worker's bytes are ruzstd's, not libzstd's: the same values.
pub const AUTO_REENCODE: ServedCodec = ServedCodec::Zstd { level: -5 };

/// Whether the re-encoding routes may serve `a` (as [`crate::unpack::served`] gives it) with
/// its source bytes and codecs: each served chunk is one source chunk, compressed under a
/// chain of shuffle and compressors (which numcodecs decodes in Zarr v2 and v3), holding the values
/// served. Fletcher-32 is left to the core, which checks it (and HDF5's legacy byte order,
/// which numcodecs refuses); uncompressed chunks are served uncompressed, read only where
/// they hold the array (a chunk may reach far past its shape).
pub fn passes_through(a: &ArrayMeta) -> bool {
    !a.codecs.is_empty()
        && a.unpack.is_none()
        && a.irregular.is_none()
        && a.kerchunk_excluded.is_none()
        && a.served_chunks == a.chunks
        && a.dtype.is_numeric()
        && (a.codecs.iter()).all(|c| c.compresses() || matches!(c, Codec::Shuffle { .. }))
}

impl ServedCodec {
    /// Whether chunks of `a` are served as stored: `auto` on an array that
    /// [`passes_through`].
    pub fn passes(&self, a: &ArrayMeta) -> bool {
        *self == ServedCodec::Auto && passes_through(a)
    }

    /// The codec chunks are re-encoded with: [`AUTO_REENCODE`] for `auto`, else this one.
    pub fn reencoding(&self) -> ServedCodec {
        match self {
            ServedCodec::Auto => AUTO_REENCODE,
            c => *c,
        }
    }

    /// The codec chunks of `a` are re-encoded with: for `auto`, none where the source stores
    /// them uncompressed, else [`Self::reencoding`].
    pub fn reencoding_for(&self, a: &ArrayMeta) -> ServedCodec {
        match self {
            ServedCodec::Auto if a.codecs.is_empty() => ServedCodec::None,
            c => c.reencoding(),
        }
    }

    /// Parse `auto`, `none`, `zlib[:LEVEL]` or `zstd[:LEVEL]`.
    ///
    /// # Errors
    /// [`Error::BadRequest`] for an unknown name or level.
    pub fn parse(s: &str) -> Result<Self> {
        let (name, level) = match s.split_once(':') {
            Some((n, l)) => (n, Some(l)),
            None => (s, None),
        };
        let bad = || {
            Error::BadRequest(format!(
                "codec {s:?}: use auto, none, zlib[:0-9] or zstd[:LEVEL] (1 to 22, or -7 to -1 for \
                 zstd's fast levels)"
            ))
        };
        let level_in = |lo: i32, hi: i32, default: i32| -> Result<i32> {
            match level {
                None => Ok(default),
                Some(l) => l
                    .parse()
                    .ok()
                    .filter(|v| (lo..=hi).contains(v))
                    .ok_or_else(bad),
            }
        };
        match name {
            "auto" if level.is_none() => Ok(ServedCodec::Auto),
            "none" if level.is_none() => Ok(ServedCodec::None),
            "zlib" => Ok(ServedCodec::Zlib {
                level: level_in(0, 9, 1)?.unsigned_abs(),
            }),
            // Level 0 would be libzstd's default, which ruzstd (wasm32) has no name for.
            "zstd" => match level_in(-7, 22, 3)? {
                0 => Err(bad()),
                level => Ok(ServedCodec::Zstd { level }),
            },
            _ => Err(bad()),
        }
    }

    /// Compress `data` as the given Zarr format declares.
    ///
    /// # Errors
    /// [`Error::Storage`] when the encoder fails.
    pub fn encode(&self, data: &[u8], v3: bool) -> Result<Vec<u8>> {
        let failed =
            |e: std::io::Error| Error::Storage(Fault::bare(format!("encoding failed: {e}")));
        match self {
            ServedCodec::Auto => AUTO_REENCODE.encode(data, v3),
            ServedCodec::None => Ok(data.to_vec()),
            ServedCodec::Zlib { level } if v3 => {
                let mut e =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(*level));
                e.write_all(data).map_err(failed)?;
                e.finish().map_err(failed)
            }
            ServedCodec::Zlib { level } => {
                let mut e =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(*level));
                e.write_all(data).map_err(failed)?;
                e.finish().map_err(failed)
            }
            ServedCodec::Zstd { level } => zstd_encode(data, *level),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn zstd_encode(data: &[u8], level: i32) -> Result<Vec<u8>> {
    zstd::bulk::compress(data, level)
        .map_err(|e| Error::Storage(Fault::bare(format!("zstd failed: {e}"))))
}

/// ruzstd implements only its fastest level (about zstd's 1), so on wasm32 every level is
/// encoded at it: other bytes than libzstd's, the same values once decoded.
#[cfg(target_arch = "wasm32")]
#[allow(clippy::unnecessary_wraps)]
fn zstd_encode(data: &[u8], _level: i32) -> Result<Vec<u8>> {
    Ok(ruzstd::encoding::compress_to_vec(
        data,
        ruzstd::encoding::CompressionLevel::Fastest,
    ))
}

/// Decode one stored chunk through the source pipeline, in reverse (read) order, skipping the
/// filters `filter_mask` marks as not applied. `decoded_len` is the chunk's size in bytes.
///
/// # Errors
/// [`Error::Corrupt`] naming `what` when a stream does not inflate, a checksum fails, or the
/// result is not `decoded_len` bytes.
pub fn decode_source(
    codecs: &[Codec],
    filter_mask: u32,
    stored: &[u8],
    decoded_len: usize,
    what: &str,
) -> Result<Vec<u8>> {
    let mut data = decode_chain(codecs, filter_mask, stored, decoded_len)
        .map_err(|fault| Error::corrupt_data(format!("{what}: {fault}")))?;
    if data.len() != decoded_len {
        return Err(Error::corrupt_data(format!(
            "{what}: decoded to {} bytes, expected {decoded_len}",
            data.len()
        )));
    }
    data.shrink_to_fit();
    Ok(data)
}

/// [`decode_source`]'s pipeline; the fault in words.
fn decode_chain(
    codecs: &[Codec],
    filter_mask: u32,
    stored: &[u8],
    decoded_len: usize,
) -> std::result::Result<Vec<u8>, String> {
    let mut data: std::borrow::Cow<'_, [u8]> = std::borrow::Cow::Borrowed(stored);
    // Streams may hold checksums on top of the data; anything longer is corrupt.
    let checksums = codecs.iter().filter(|c| **c == Codec::Fletcher32).count();
    let stream_max = decoded_len + 4 * checksums;
    for (i, c) in codecs.iter().enumerate().rev() {
        if i < 32 && filter_mask & (1 << i) != 0 {
            continue;
        }
        data = std::borrow::Cow::Owned(match c {
            Codec::Zlib { .. } => inflate(&data, stream_max)?,
            Codec::Gzip { .. } => gunzip(&data, stream_max)?,
            Codec::Zstd { .. } => zstd_decode(&data, stream_max)?,
            Codec::Shuffle { elementsize } => unshuffle(&data, *elementsize as usize),
            Codec::Fletcher32 => strip_fletcher32(data.into_owned())?,
        });
    }
    Ok(data.into_owned())
}

/// A zlib stream inflated whole into a buffer of `max` bytes by libdeflate, which refuses a
/// stream decoding past it. Inflating is the largest part of a re-encoding server's work, and
/// libdeflate's one-shot inflate takes a fifth less time than zlib-rs's streaming one
/// (`cargo bench -p cloudify-core --bench reencode`, bench/RESULTS.md).
#[cfg(not(target_arch = "wasm32"))]
fn inflate(data: &[u8], max: usize) -> std::result::Result<Vec<u8>, String> {
    let mut out = vec![0; max];
    let len = libdeflater::Decompressor::new()
        .zlib_decompress(data, &mut out)
        .map_err(|e| format!("zlib stream does not inflate: {e}"))?;
    out.truncate(len);
    Ok(out)
}

#[cfg(target_arch = "wasm32")]
fn inflate(data: &[u8], max: usize) -> std::result::Result<Vec<u8>, String> {
    read_at_most(
        flate2::read::ZlibDecoder::new(data),
        max,
        "zlib stream does not inflate",
    )
}

fn gunzip(data: &[u8], max: usize) -> std::result::Result<Vec<u8>, String> {
    read_at_most(
        flate2::read::GzDecoder::new(data),
        max,
        "gzip stream does not inflate",
    )
}

#[cfg(not(target_arch = "wasm32"))]
fn zstd_decode(data: &[u8], max: usize) -> std::result::Result<Vec<u8>, String> {
    let decoder = zstd::stream::read::Decoder::with_buffer(data)
        .map_err(|e| format!("zstd frame does not decode: {e}"))?;
    read_at_most(decoder, max, "zstd frame does not decode")
}

#[cfg(target_arch = "wasm32")]
fn zstd_decode(data: &[u8], max: usize) -> std::result::Result<Vec<u8>, String> {
    let decoder = ruzstd::decoding::StreamingDecoder::new(data)
        .map_err(|e| format!("zstd frame does not decode: {e}"))?;
    read_at_most(decoder, max, "zstd frame does not decode")
}

/// Everything `reader` decodes, or the fault: a stream decoding past `max` bytes (the chunk's
/// size) is corrupt, so reading stops just after it and a hostile stream cannot balloon memory.
fn read_at_most(
    reader: impl Read,
    max: usize,
    fault: &str,
) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(max);
    reader
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("{fault}: {e}"))?;
    Ok(out)
}

/// HDF5 shuffle, inverted: byte `j` of element `i` was stored at `j * n + i`; bytes past the
/// last whole element were left in place.
pub fn unshuffle(data: &[u8], elementsize: usize) -> Vec<u8> {
    match elementsize {
        0 | 1 => data.to_vec(),
        2 => unshuffle_n::<2>(data),
        4 => unshuffle_n::<4>(data),
        8 => unshuffle_n::<8>(data),
        es if data.len() < es => data.to_vec(),
        es => {
            let n = data.len() / es;
            let mut out = vec![0u8; data.len()];
            for j in 0..es {
                let plane = &data[j * n..(j + 1) * n];
                for (o, b) in out[j..].iter_mut().step_by(es).zip(plane) {
                    *o = *b;
                }
            }
            out[n * es..].copy_from_slice(&data[n * es..]);
            out
        }
    }
}

/// [`unshuffle`] for a compile-time element size, which the compiler unrolls.
fn unshuffle_n<const E: usize>(data: &[u8]) -> Vec<u8> {
    let n = data.len() / E;
    let planes: [&[u8]; E] = std::array::from_fn(|j| &data[j * n..(j + 1) * n]);
    let mut out = vec![0u8; data.len()];
    for (i, element) in out.chunks_exact_mut(E).enumerate() {
        for (j, b) in element.iter_mut().enumerate() {
            *b = planes[j][i];
        }
    }
    out[n * E..].copy_from_slice(&data[n * E..]);
    out
}

/// HDF5's Fletcher-32 over 16-bit big-endian words (an odd last byte is the high half).
pub fn fletcher32(data: &[u8]) -> u32 {
    let (mut sum1, mut sum2) = (0u32, 0u32);
    let mut words = data.chunks_exact(2);
    for block in words.by_ref().collect::<Vec<_>>().chunks(360) {
        for w in block {
            sum1 += u32::from(w[0]) << 8 | u32::from(w[1]);
            sum2 += sum1;
        }
        sum1 = (sum1 & 0xffff) + (sum1 >> 16);
        sum2 = (sum2 & 0xffff) + (sum2 >> 16);
    }
    if let [last] = words.remainder() {
        sum1 += u32::from(*last) << 8;
        sum2 += sum1;
        sum1 = (sum1 & 0xffff) + (sum1 >> 16);
        sum2 = (sum2 & 0xffff) + (sum2 >> 16);
    }
    sum1 = (sum1 & 0xffff) + (sum1 >> 16);
    sum2 = (sum2 & 0xffff) + (sum2 >> 16);
    sum2 << 16 | sum1
}

fn strip_fletcher32(mut data: Vec<u8>) -> std::result::Result<Vec<u8>, String> {
    let Some(body_len) = data.len().checked_sub(4) else {
        return Err("too short for its Fletcher-32 checksum".into());
    };
    let stored = u32::from_le_bytes([
        data[body_len],
        data[body_len + 1],
        data[body_len + 2],
        data[body_len + 3],
    ]);
    let sum = fletcher32(&data[..body_len]);
    // HDF5 1.6.0-1.6.2 wrote the checksum with the bytes of each 16-bit half swapped;
    // libhdf5 accepts both.
    let legacy = ((sum & 0x00ff_00ff) << 8) | ((sum >> 8) & 0x00ff_00ff);
    if stored != sum && stored != legacy {
        return Err(format!(
            "Fletcher-32 checksum mismatch (stored {stored:#010x}, computed {sum:#010x})"
        ));
    }
    data.truncate(body_len);
    Ok(data)
}

/// Reverse the bytes of each `item`-byte element in place (big-endian to little-endian).
pub fn swap_bytes(data: &mut [u8], item: usize) {
    if item > 1 {
        for e in data.chunks_exact_mut(item) {
            e.reverse();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn fletcher32_matches_numcodecs() {
        // numcodecs.Fletcher32().encode(...)[-4:]
        assert_eq!(fletcher32(b"abcde").to_le_bytes(), [199, 41, 240, 79]);
        let long: Vec<u8> = (0..3).flat_map(|_| 0..=255u8).collect();
        assert_eq!(fletcher32(&long).to_le_bytes(), [191, 64, 0, 96]);
        let mut framed = b"abcde".to_vec();
        framed.extend_from_slice(&[199, 41, 240, 79]);
        assert_eq!(strip_fletcher32(framed.clone()).unwrap(), b"abcde");
        framed[0] ^= 1;
        assert!(strip_fletcher32(framed).is_err());
    }

    #[test]
    fn unshuffle_inverts_hdf5_shuffle_with_leftover_bytes() {
        // Two 4-byte elements [0,1,2,3] [4,5,6,7] and a leftover byte 8.
        let shuffled = [0, 4, 1, 5, 2, 6, 3, 7, 8];
        assert_eq!(unshuffle(&shuffled, 4), vec![0, 1, 2, 3, 4, 5, 6, 7, 8]);
        // The generic path (3-byte elements) agrees with the unrolled ones' definition.
        let shuffled = [0, 3, 1, 4, 2, 5, 6];
        assert_eq!(unshuffle(&shuffled, 3), vec![0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(
            unshuffle(&[1, 2], 16),
            vec![1, 2],
            "shorter than one element"
        );
        let plain: Vec<u8> = (0..83).collect();
        for es in [2usize, 8] {
            assert_eq!(unshuffle(&shuffle(&plain, es), es), plain, "{es}");
        }
    }

    #[test]
    fn source_pipeline_decodes_in_reverse_and_honours_the_mask() {
        let raw: Vec<u8> = (0..64u8).collect();
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
        e.write_all(&raw).unwrap();
        let z = e.finish().unwrap();
        let chain = [Codec::Zlib { level: 6 }];
        assert_eq!(decode_source(&chain, 0, &z, 64, "t").unwrap(), raw);
        // Deflate skipped for this chunk: the bytes are stored raw.
        assert_eq!(decode_source(&chain, 1, &raw, 64, "t").unwrap(), raw);
        assert!(matches!(
            decode_source(&chain, 0, &z[..10], 64, "t"),
            Err(Error::Corrupt(_))
        ));
        assert!(matches!(
            decode_source(&[], 0, &raw, 65, "t"),
            Err(Error::Corrupt(_))
        ));
    }

    #[test]
    fn store_compressors_decode_and_stop_past_the_chunk() {
        let raw: Vec<u8> = (0..4096u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let zstd = zstd::bulk::compress(&raw, 3).unwrap();
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(1));
        e.write_all(&raw).unwrap();
        let gzip = e.finish().unwrap();
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(1));
        e.write_all(&raw).unwrap();
        let zlib = e.finish().unwrap();
        let shuffled = [Codec::Shuffle { elementsize: 4 }, Codec::Zstd { level: 3 }];
        let zstd_shuffled = zstd::bulk::compress(&shuffle(&raw, 4), 3).unwrap();
        for (chain, stored) in [
            (vec![Codec::Zstd { level: 3 }], &zstd),
            (vec![Codec::Gzip { level: 1 }], &gzip),
            (vec![Codec::Zlib { level: 1 }], &zlib),
            (shuffled.to_vec(), &zstd_shuffled),
        ] {
            assert_eq!(
                decode_source(&chain, 0, stored, raw.len(), "t").unwrap(),
                raw
            );
            // A stream decoding to more than the chunk holds is corrupt, and read no further.
            let short = raw.len() - 4;
            assert!(matches!(
                decode_source(&chain, 0, stored, short, "t"),
                Err(Error::Corrupt(_))
            ));
            assert!(matches!(
                decode_source(&chain, 0, &stored[..stored.len() / 2], raw.len(), "t"),
                Err(Error::Corrupt(_))
            ));
        }
    }

    /// HDF5's shuffle, which [`unshuffle`] inverts: bytes past the last whole element stay.
    fn shuffle(data: &[u8], n: usize) -> Vec<u8> {
        let count = data.len() / n;
        (0..n)
            .flat_map(|j| (0..count).map(move |i| data[i * n + j]))
            .chain(data[count * n..].iter().copied())
            .collect()
    }

    #[test]
    fn served_codecs_round_trip_with_magic_bytes() {
        let data = vec![7u8; 4096];
        let z = ServedCodec::parse("zlib")
            .unwrap()
            .encode(&data, false)
            .unwrap();
        assert_eq!(z[0], 0x78);
        let g = ServedCodec::parse("zlib:9")
            .unwrap()
            .encode(&data, true)
            .unwrap();
        assert_eq!(&g[..2], &[0x1f, 0x8b]);
        let s = ServedCodec::parse("zstd")
            .unwrap()
            .encode(&data, true)
            .unwrap();
        assert_eq!(&s[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
        assert_eq!(
            ServedCodec::parse("none")
                .unwrap()
                .encode(&data, false)
                .unwrap(),
            data
        );
        assert_eq!(ServedCodec::parse("auto").unwrap(), ServedCodec::default());
        assert_eq!(
            ServedCodec::parse("zstd:-3").unwrap(),
            ServedCodec::Zstd { level: -3 }
        );
        for bad in [
            "lz4", "zlib:10", "zstd:0", "zstd:-8", "zstd:23", "none:1", "auto:1",
        ] {
            assert!(ServedCodec::parse(bad).is_err(), "{bad}");
        }
    }
}
