"""Cross-check of the pure-Rust HDF5 reader against libhdf5: for every chunked variable of
every test file, the chunk table in the bucket holds exactly what h5py's `get_chunk_info`
reports (count, offsets, lengths, filter masks); contiguous variables are one chunk at
libhdf5's offset."""
import json
import os
import struct
import zlib

import h5py
import numpy as np
import pytest

from servers import sample_files, sample_id
import make_files

IDS = list(make_files.HDF5) + [sample_id(p) for p in sample_files()]
# Table format 2: source, filter mask, offset, length, and a CRC-32 of the record's position
# and those fields.
RECORD = struct.Struct("<IIQQ")
CHECK = struct.Struct("<I")
ABSENT = 0xFFFFFFFF


def read_table(bucket, ds_id, version, table):
    with open(os.path.join(bucket, "datasets", ds_id, version, table), "rb") as f:
        data = f.read()
    assert data[:8] == b"CLDYTBL\0"
    fmt, size = struct.unpack("<II", data[8:16])
    assert (fmt, size) == (2, RECORD.size + CHECK.size)
    records = []
    for i in range((len(data) - 16) // size):
        body = data[16 + i * size:16 + i * size + RECORD.size]
        (check,) = CHECK.unpack_from(data, 16 + i * size + RECORD.size)
        assert check == zlib.crc32(struct.pack("<Q", i) + body), (table, i)
        records.append(RECORD.unpack(body))
    return records


def linear(index, grid):
    return int(np.ravel_multi_index(index, grid)) if grid else 0


@pytest.mark.parametrize("ds_id", IDS)
def test_chunk_tables_match_libhdf5(datasets, ds_id):
    bucket, sources = datasets
    with open(os.path.join(bucket, "index.json")) as f:
        version = json.load(f)["datasets"][ds_id]["version"]
    with open(os.path.join(bucket, "datasets", ds_id, version, "manifest.json")) as f:
        manifest = json.load(f)
    checked = 0
    with h5py.File(sources[ds_id], "r") as h5:
        for name, meta in manifest["arrays"].items():
            ds = h5[name]
            records = read_table(bucket, ds_id, version, meta["table"])
            grid = [-(-s // c) for s, c in zip(meta["shape"], meta["chunks"])]
            # The table stops at the last stored chunk; those after it are absent.
            assert len(records) == meta["table_records"] <= int(np.prod(grid)), name
            stored = {i: r for i, r in enumerate(records) if r[0] != ABSENT}
            if ds.chunks is None:
                offset = ds.id.get_offset()
                if offset is None:
                    assert stored == {}, name
                else:
                    assert stored == {0: (0, 0, offset, ds.id.get_storage_size())}, name
                continue
            expected = {}
            for k in range(ds.id.get_num_chunks()):
                info = ds.id.get_chunk_info(k)
                index = [o // c for o, c in zip(info.chunk_offset, ds.chunks)]
                expected[linear(index, grid)] = (0, info.filter_mask, info.byte_offset, info.size)
            assert stored == expected, name
            assert meta["stored_chunks"] == len(expected), name
            checked += 1
    if ds_id == "mixed":
        assert checked >= 15
