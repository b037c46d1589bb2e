//! What a file's header may claim, checked against the file before anything it sizes is
//! allocated: a few corrupt bytes must give a clean error, not gigabytes of tables.

use cloudify_core::manifest::RECORD_LEN;

/// Bytes of chunk table any file may have, however small.
const TABLE_FLOOR: u64 = 16 << 20;
/// Bytes of chunk table per byte of file above the floor: a real file spends far more than a
/// byte on each chunk it stores, so a grid this sparse is a header's claim, not data.
const TABLE_PER_FILE_BYTE: u64 = 16;

/// Why a table (or kerchunk references) of `records` chunks is not made from a file of
/// `file_size` bytes, if it is not: out of all proportion to the file.
pub(crate) fn too_sparse(records: u64, file_size: u64) -> Option<String> {
    let limit = TABLE_FLOOR.max(file_size.saturating_mul(TABLE_PER_FILE_BYTE));
    let table = records.saturating_mul(RECORD_LEN);
    (table > limit).then(|| {
        format!(
            "{records} chunk records ({table} bytes) for a file of {file_size} bytes (at most \
             {limit}): the header claims more than the file holds"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_in_proportion_to_the_file() {
        assert!(too_sparse(500_000, 1000).is_none());
        assert!(too_sparse(10_000_000, 1 << 30).is_none());
        let why = too_sparse(4_000_000, 24_000).unwrap_or_default();
        assert!(why.contains("4000000 chunk records"), "{why}");
        assert!(too_sparse(u64::MAX, 1 << 30).is_some());
    }
}
