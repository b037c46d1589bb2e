//! The geometry of re-chunking: which source chunks a served chunk overlaps, which bytes of
//! each it needs, and how byte ranges merge into few reads. Pure functions; the reads
//! themselves are in [`crate::read`].

use std::ops::Range;

use crate::manifest::ArrayMeta;

/// A box of an array: `[start, end)` per dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// First element per dimension.
    pub start: Vec<u64>,
    /// One past the last element per dimension.
    pub end: Vec<u64>,
}

impl Region {
    /// The part of the array served chunk `idx` covers (clipped to the shape: the rest of an
    /// edge chunk is padding).
    pub fn served(a: &ArrayMeta, idx: &[u64]) -> Self {
        let start: Vec<u64> = idx
            .iter()
            .zip(&a.served_chunks)
            .map(|(i, c)| i * c)
            .collect();
        let end = start
            .iter()
            .zip(&a.served_chunks)
            .zip(&a.shape)
            .map(|((s, c), n)| (s + c).min(*n))
            .collect();
        Self { start, end }
    }

    fn is_empty(&self) -> bool {
        self.start.iter().zip(&self.end).any(|(s, e)| s >= e)
    }
}

/// Source chunk indices overlapping `region`, in C order.
pub fn overlapping_chunks(a: &ArrayMeta, region: &Region) -> Vec<Vec<u64>> {
    if region.is_empty() {
        return Vec::new();
    }
    let ranges: Vec<Range<u64>> = region
        .start
        .iter()
        .zip(&region.end)
        .enumerate()
        .map(|(d, (s, e))| a.chunks_along(d, *s, *e))
        .collect();
    cartesian(&ranges)
}

fn cartesian(ranges: &[Range<u64>]) -> Vec<Vec<u64>> {
    let mut out = vec![Vec::with_capacity(ranges.len())];
    for r in ranges {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                r.clone().map(move |i| {
                    let mut p = prefix.clone();
                    p.push(i);
                    p
                })
            })
            .collect();
    }
    out
}

/// A contiguous run of bytes to copy from a source chunk's decoded layout to a served chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// Byte offset in the source chunk (C order, full chunk shape).
    pub src: u64,
    /// Byte offset in the served chunk (C order, full served chunk shape).
    pub dst: u64,
    /// Bytes.
    pub len: u64,
}

/// C-order strides, in elements.
fn strides(shape: &[u64]) -> Vec<u64> {
    let mut s = vec![1u64; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// The rows of `region` that lie in the source chunk at `src_origin` (shape `src_shape`),
/// addressed in that chunk and in the served chunk at `dst_origin` (shape `dst_shape`); rows
/// contiguous on both sides are merged.
pub fn rows(
    src_origin: &[u64],
    src_shape: &[u64],
    dst_origin: &[u64],
    dst_shape: &[u64],
    region: &Region,
    item: u64,
) -> Vec<Row> {
    let n = src_shape.len();
    if n == 0 {
        return vec![Row {
            src: 0,
            dst: 0,
            len: item,
        }];
    }
    let lo: Vec<u64> = (0..n).map(|d| region.start[d].max(src_origin[d])).collect();
    let hi: Vec<u64> = (0..n)
        .map(|d| region.end[d].min(src_origin[d] + src_shape[d]))
        .collect();
    if lo.iter().zip(&hi).any(|(l, h)| l >= h) {
        return Vec::new();
    }
    let (ss, ds) = (strides(src_shape), strides(dst_shape));
    let outer: Vec<Range<u64>> = (0..n - 1).map(|d| lo[d]..hi[d]).collect();
    let len = (hi[n - 1] - lo[n - 1]) * item;
    let mut out: Vec<Row> = Vec::new();
    for mut idx in cartesian(&outer) {
        idx.push(lo[n - 1]);
        let src: u64 = (0..n)
            .map(|d| (idx[d] - src_origin[d]) * ss[d])
            .sum::<u64>()
            * item;
        let dst: u64 = (0..n)
            .map(|d| (idx[d] - dst_origin[d]) * ds[d])
            .sum::<u64>()
            * item;
        match out.last_mut() {
            Some(prev) if prev.src + prev.len == src && prev.dst + prev.len == dst => {
                prev.len += len
            }
            _ => out.push(Row { src, dst, len }),
        }
    }
    out
}

/// Merge byte ranges of the same object that touch or overlap (gap 0) into single reads, as
/// long as a merged read stays within `cap` bytes. Input in any order; output sorted.
pub fn coalesce(mut ranges: Vec<(u32, Range<u64>)>, cap: u64) -> Vec<(u32, Range<u64>)> {
    ranges.sort_by_key(|(s, r)| (*s, r.start, r.end));
    let mut out: Vec<(u32, Range<u64>)> = Vec::new();
    for (s, r) in ranges {
        match out.last_mut() {
            Some((ps, pr))
                if *ps == s && r.start <= pr.end && r.end.max(pr.end) - pr.start <= cap =>
            {
                pr.end = pr.end.max(r.end);
            }
            _ => out.push((s, r)),
        }
    }
    out
}

/// Group sorted linear indices into runs of consecutive values (one table read each).
pub fn runs(sorted: &[u64]) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::new();
    for &i in sorted {
        match out.last_mut() {
            Some(r) if r.end == i => r.end += 1,
            Some(r) if r.contains(&i) => {}
            _ => out.push(i..i + 1),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value};

    fn array(shape: Vec<u64>, chunks: Vec<u64>, served: Vec<u64>) -> ArrayMeta {
        ArrayMeta {
            shape,
            dims: vec![],
            dtype: crate::dtype::DataType::F4,
            chunks,
            served_chunks: served,
            fill_value: Value::Null,
            attrs: Map::new(),
            codecs: vec![],
            table: "t".into(),
            records: 0,
            table_records: 0,
            stored_chunks: 0,
            kerchunk_excluded: None,
            unpacked_dtype: None,
            unpack: None,
            irregular: None,
        }
    }

    #[test]
    fn served_chunk_straddling_source_chunks() {
        let a = array(vec![10, 10], vec![4, 4], vec![5, 5]);
        let r = Region::served(&a, &[1, 0]);
        assert_eq!(
            r,
            Region {
                start: vec![5, 0],
                end: vec![10, 5]
            }
        );
        assert_eq!(
            overlapping_chunks(&a, &r),
            vec![vec![1, 0], vec![1, 1], vec![2, 0], vec![2, 1]]
        );
        // Edge served chunk is clipped to the shape.
        let a = array(vec![7], vec![3], vec![5]);
        assert_eq!(
            Region::served(&a, &[1]),
            Region {
                start: vec![5],
                end: vec![7]
            }
        );
    }

    #[test]
    fn rows_address_both_layouts_and_merge() {
        // Source chunk (2, 4) at origin (2, 0); served chunk (4, 4) at origin (0, 0); region whole.
        let region = Region {
            start: vec![0, 0],
            end: vec![4, 4],
        };
        let r = rows(&[2, 0], &[2, 4], &[0, 0], &[4, 4], &region, 4);
        assert_eq!(
            r,
            vec![Row {
                src: 0,
                dst: 32,
                len: 32
            }]
        );
        // Only columns 1..3 of the region: two rows, not mergeable.
        let region = Region {
            start: vec![2, 1],
            end: vec![4, 3],
        };
        let r = rows(&[2, 0], &[2, 4], &[2, 0], &[2, 4], &region, 1);
        assert_eq!(
            r,
            vec![
                Row {
                    src: 1,
                    dst: 1,
                    len: 2
                },
                Row {
                    src: 5,
                    dst: 5,
                    len: 2
                }
            ]
        );
        assert_eq!(
            rows(
                &[],
                &[],
                &[],
                &[],
                &Region {
                    start: vec![],
                    end: vec![]
                },
                8
            )
            .len(),
            1
        );
    }

    #[test]
    fn coalescing_merges_touching_ranges_only_within_the_cap() {
        let merged = coalesce(vec![(0, 10..20), (0, 0..10), (0, 21..30), (1, 30..40)], 100);
        assert_eq!(merged, vec![(0, 0..20), (0, 21..30), (1, 30..40)]);
        let capped = coalesce(vec![(0, 0..10), (0, 10..20), (0, 20..30)], 20);
        assert_eq!(capped, vec![(0, 0..20), (0, 20..30)]);
        assert_eq!(runs(&[1, 2, 3, 7, 9, 10]), vec![1..4, 7..8, 9..11]);
    }
}
