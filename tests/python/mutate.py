"""Deterministic mutants of the generated test files, for the indexer's robustness test.

A mutant is a source file with a few edits: bytes flipped, the file cut short, a header number
rewritten to a huge value (the file then *claims* more than it holds), bytes added at either
end, or an address pointed back at its own structure. Random flips mostly hit data, which the
indexer never reads, so the edits aim at the metadata: each file is parsed just far enough to
know where its header fields, object headers, B-tree nodes and heaps are.

HDF5 object headers of version 2 carry a checksum. The indexer does not check them today, but
a mutant meant to reach the code behind the checksum (an inflated dimension) restamps it, so it
keeps testing that code if checking is turned on.
"""
import os
import random
import re
from dataclasses import dataclass, field

import numpy as np

U32, U64 = 2**32 - 1, 2**64 - 1
# Huge values a header field is rewritten to, by field width: at and around the signed and
# unsigned limits, and a plausible-looking count (50 million records of a few bytes each are
# GBs) that no size check rejects for being absurd.
HUGE = {
    1: [0xFF, 0x80],
    2: [0xFFFF, 0x8000],
    4: [2**31 - 1, U32, 50_000_000, 2**31],
    8: [2**40, 2**63, U64, 4_000_000, 50_000_000, 2**63 - 1],
}


# ---------------------------------------------------------------------------------------------
# What a file is made of


@dataclass
class Field:
    """A number in a file's metadata: where it is, its width, byte order and meaning. `name`
    says which one it is, for a person; `category` what it is (the name without the object and
    index), to spread the mutants over categories of field rather than over fields."""
    offset: int
    width: int
    name: str
    value: int
    order: str = "little"
    role: str = "count"     # count (a size or length), address (into the file), index

    @property
    def category(self):
        k = re.sub(r"\[\d+\]", "", self.name)
        k = re.sub(r"^(/\S*|variable \S+) ", "", k)
        k = re.sub(r"^(B-tree|dimension) (node )?\S+ ", r"\1 ", k)
        return re.sub(r"attribute \S+ ", "attribute ", k)


@dataclass
class Region:
    """A metadata structure; `checksum` is the offset of its trailing checksum (v2 headers)."""
    start: int
    end: int
    name: str
    checksum: int | None = None


@dataclass
class Layout:
    fmt: str                                     # "hdf5" or "nc3"
    size: int
    header_end: int                              # end of the superblock or NetCDF-3 header
    fields: list = field(default_factory=list)
    regions: list = field(default_factory=list)
    data: list = field(default_factory=list)     # (start, end) of each stored chunk or block

    def is_data(self, offset):
        return any(s <= offset < e for s, e in self.data)


def layout(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:3] == b"CDF":
        return _nc3_layout(raw)
    return _hdf5_layout(path, raw)


# ---------------------------------------------------------------------------------------------
# NetCDF-3: the whole header is metadata, every field a big-endian number


def _nc3_layout(raw):
    version = raw[3]
    n = 8 if version == 5 else 4             # counts and lengths (NON_NEG)
    off_w = 4 if version == 1 else 8         # variable offsets (OFFSET)
    fields = []
    pos = 4

    def num(width, name, role="count"):
        nonlocal pos
        v = int.from_bytes(raw[pos:pos + width], "big")
        fields.append(Field(pos, width, name, v, "big", role))
        pos += width
        return v

    def name(label):
        nonlocal pos
        length = num(n, f"name length of a {label}")
        text = raw[pos:pos + length].decode("latin-1")
        pos += (length + 3) & ~3
        return text

    def attributes(owner):
        nonlocal pos
        pos += 4                                  # NC_ATTRIBUTE or ABSENT
        for _ in range(num(n, f"{owner} attribute count")):
            a = name("global attribute" if owner == "global" else "variable attribute")
            nc_type = num(4, f"{owner} attribute {a} type", role="index")
            count = num(n, f"{owner} attribute {a} value count")
            size = {1: 1, 2: 1, 3: 2, 4: 4, 5: 4, 6: 8, 7: 1, 8: 2, 9: 4, 10: 8, 11: 8}[nc_type]
            pos += (count * size + 3) & ~3

    num(n, "numrecs")
    pos += 4                                      # NC_DIMENSION or ABSENT
    for _ in range(num(n, "dimension count")):
        d = name("dimension")
        num(n, f"dimension {d} length")
    attributes("global")
    pos += 4                                      # NC_VARIABLE or ABSENT
    begins = []
    for _ in range(num(n, "variable count")):
        v = name("variable")
        for i in range(num(n, f"variable {v} rank")):
            num(n, f"variable {v} dimid[{i}]", role="index")
        attributes(f"variable {v}")
        num(4, f"variable {v} type", role="index")
        num(n, f"variable {v} vsize")
        begins.append(num(off_w, f"variable {v} begin", role="address"))
    data_start = min(begins, default=pos)
    return Layout("nc3", len(raw), pos, fields, [Region(0, pos, "header")],
                  [(data_start, len(raw))])


# ---------------------------------------------------------------------------------------------
# HDF5: object headers (v1 and v2) reached through h5py's object addresses, their continuation
# chunks, the v1 B-trees of chunked datasets and groups, symbol table nodes and heaps.


def _u(raw, pos, width):
    return int.from_bytes(raw[pos:pos + width], "little")


def _hdf5_layout(path, raw):
    import h5py

    lay = Layout("hdf5", len(raw), 0)
    objects = {}                                  # object header address -> name
    chunked = {}                                  # B-tree address -> dataset rank + 1
    with h5py.File(path, "r") as f:
        objects[h5py.h5o.get_info(f.id).addr] = "/"

        def visit(name, obj):
            objects[h5py.h5o.get_info(obj.id).addr] = "/" + name
            if isinstance(obj, h5py.Dataset):
                dsid = obj.id
                if obj.chunks:
                    for i in range(dsid.get_num_chunks()):
                        info = dsid.get_chunk_info(i)
                        lay.data.append((info.byte_offset, info.byte_offset + info.size))
                elif dsid.get_offset() is not None:
                    start = dsid.get_offset()
                    lay.data.append((start, start + dsid.get_storage_size()))
        f.visititems(visit)

    version = raw[8]
    if version in (0, 1):
        lay.header_end = 96 if version == 0 else 100
        lay.fields += [Field(40, 8, "superblock end-of-file address", _u(raw, 40, 8)),
                       Field(64, 8, "superblock root object header address", _u(raw, 64, 8),
                             role="address")]
        lay.regions.append(Region(0, lay.header_end, "superblock"))
    else:
        lay.header_end = 48
        lay.fields += [Field(28, 8, "superblock end-of-file address", _u(raw, 28, 8)),
                       Field(36, 8, "superblock root object header address", _u(raw, 36, 8),
                             role="address")]
        lay.regions.append(Region(0, 48, "superblock", checksum=44))

    for addr, name in sorted(objects.items()):
        _object_header(raw, addr, name, lay, chunked)
    seen = set()
    for addr, rank in chunked.items():
        _btree(raw, addr, rank, lay, seen)
    # Structures reached through heaps and v2 B-trees (dense links and attributes): found by
    # their signatures, extents guessed; flips are all they get.
    known = {r.start for r in lay.regions}
    for sig in (b"TREE", b"SNOD", b"HEAP", b"GCOL", b"FRHP", b"FHDB", b"FHIB", b"BTHD", b"BTLF",
                b"BTIN", b"FSHD", b"FSSE"):
        pos = raw.find(sig)
        while pos >= 0:
            if pos not in known and not lay.is_data(pos):
                lay.regions.append(Region(pos, min(pos + 128, len(raw)), sig.decode()))
                sized = {b"HEAP": (8, 8, "local heap data size"),
                         b"GCOL": (8, 8, "global heap size"),
                         b"SNOD": (6, 2, "symbol node count")}.get(sig)
                if sized:
                    at, width, what = sized
                    lay.fields.append(Field(pos + at, width, what, _u(raw, pos + at, width)))
            pos = raw.find(sig, pos + 1)
    return lay


def _object_header(raw, addr, obj, lay, chunked):
    if raw[addr:addr + 4] == b"OHDR":
        flags = raw[addr + 5]
        pos = addr + 6 + (16 if flags & 0x20 else 0) + (4 if flags & 0x10 else 0)
        width = 1 << (flags & 3)
        size = _u(raw, pos, width)
        start = pos + width
        lay.regions.append(Region(addr, start + size + 4, f"object header of {obj}",
                                  checksum=start + size))
        chunks = [(start, start + size, 2, flags & 0x04)]
    elif raw[addr] == 1:
        size = _u(raw, addr + 8, 4)
        lay.regions.append(Region(addr, addr + 16 + size, f"object header of {obj}"))
        chunks = [(addr + 16, addr + 16 + size, 1, 0)]
    else:
        return
    while chunks:
        start, end, version, creation_order = chunks.pop()
        # Messages: type, size, flags (and creation order) in v2; type, size, flags, 3 reserved
        # bytes in v1.
        hdr = 4 + (2 if creation_order else 0) if version == 2 else 8
        pos = start
        while pos + hdr <= end:
            if version == 2:
                mtype, msize = raw[pos], _u(raw, pos + 1, 2)
            else:
                mtype, msize = _u(raw, pos, 2), _u(raw, pos + 2, 2)
            body = pos + hdr
            lay.fields += _message(raw, mtype, body, msize, obj, chunked)
            if mtype == 0x10:
                cont, length = _u(raw, body, 8), _u(raw, body + 8, 8)
                if version == 2 and raw[cont:cont + 4] == b"OCHK":
                    lay.regions.append(Region(cont, cont + length, f"continuation of {obj}",
                                              checksum=cont + length - 4))
                    chunks.append((cont + 4, cont + length - 4, 2, creation_order))
                elif version == 1:
                    lay.regions.append(Region(cont, cont + length, f"continuation of {obj}"))
                    chunks.append((cont, cont + length, 1, 0))
            pos = body + msize


def _dataspace(raw, pos, what):
    version, rank, flags = raw[pos], raw[pos + 1], raw[pos + 2]
    if version not in (1, 2) or rank > 32:
        return []
    sizes = pos + (8 if version == 1 else 4)
    out = [Field(sizes + 8 * i, 8, f"{what} dataspace size[{i}]", _u(raw, sizes + 8 * i, 8))
           for i in range(rank)]
    if flags & 1:
        maxes = sizes + 8 * rank
        out += [Field(maxes + 8 * i, 8, f"{what} dataspace max size[{i}]",
                      _u(raw, maxes + 8 * i, 8)) for i in range(rank)]
    return out


def _message(raw, mtype, pos, size, obj, chunked):
    """The numbers of one header message that size something the reader allocates or
    follows."""
    if mtype == 0x01:
        return _dataspace(raw, pos, obj)
    if mtype == 0x03:
        return [Field(pos + 4, 4, f"{obj} datatype size", _u(raw, pos + 4, 4))]
    if mtype == 0x08 and raw[pos] == 3:
        cls = raw[pos + 1]
        if cls == 0:
            return [Field(pos + 2, 2, f"{obj} compact data size", _u(raw, pos + 2, 2))]
        if cls == 1:
            return [Field(pos + 2, 8, f"{obj} contiguous address", _u(raw, pos + 2, 8),
                          role="address"),
                    Field(pos + 10, 8, f"{obj} contiguous size", _u(raw, pos + 10, 8))]
        if cls == 2:
            ndims = raw[pos + 2]
            btree = _u(raw, pos + 3, 8)
            if btree != U64:
                chunked[btree] = ndims
            return ([Field(pos + 3, 8, f"{obj} chunk B-tree address", btree, role="address")] +
                    [Field(pos + 11 + 4 * i, 4,
                           f"{obj} chunk " + ("element size" if i == ndims - 1 else f"dim[{i}]"),
                           _u(raw, pos + 11 + 4 * i, 4)) for i in range(ndims)])
    if mtype == 0x0B and raw[pos] in (1, 2):
        out = [Field(pos + 1, 1, f"{obj} filter count", raw[pos + 1])]
        p = pos + (8 if raw[pos] == 1 else 2)
        for i in range(raw[pos + 1]):
            fid = _u(raw, p, 2)
            named = raw[pos] == 1 or fid >= 256
            name_len = _u(raw, p + 2, 2) if named else 0
            q = p + (8 if named else 6)
            out.append(Field(q - 2, 2, f"{obj} filter[{fid}] value count", _u(raw, q - 2, 2)))
            nvalues = _u(raw, q - 2, 2)
            q += ((name_len + 7) & ~7 if raw[pos] == 1 else name_len) + 4 * nvalues
            if raw[pos] == 1 and nvalues % 2:
                q += 4
            p = q
        return out
    if mtype == 0x0C and raw[pos] in (1, 2, 3):
        version = raw[pos]
        name_len, dt_len, ds_len = _u(raw, pos + 2, 2), _u(raw, pos + 4, 2), _u(raw, pos + 6, 2)
        pad = (lambda n: (n + 7) & ~7) if version == 1 else (lambda n: n)
        name_at = pos + (9 if version == 3 else 8)
        name = raw[name_at:name_at + name_len].rstrip(b"\0").decode("latin-1")
        dt = name_at + pad(name_len)
        ds = dt + pad(dt_len)
        what = f"{obj} attribute {name}"
        return ([Field(pos + 2, 2, f"{what} name length", name_len),
                 Field(dt + 4, 4, f"{what} datatype size", _u(raw, dt + 4, 4))] +
                _dataspace(raw, ds, what))
    if mtype == 0x10:
        return [Field(pos, 8, f"{obj} continuation address", _u(raw, pos, 8), role="address"),
                Field(pos + 8, 8, f"{obj} continuation length", _u(raw, pos + 8, 8))]
    if mtype == 0x11:
        return [Field(pos, 8, f"{obj} group B-tree address", _u(raw, pos, 8), role="address"),
                Field(pos + 8, 8, f"{obj} local heap address", _u(raw, pos + 8, 8),
                      role="address")]
    return []


def _btree(raw, addr, rank, lay, seen):
    """A v1 B-tree of chunks: node header, then keys (chunk size, filter mask, rank offsets)
    between child addresses."""
    if addr in seen or raw[addr:addr + 4] != b"TREE":
        return
    seen.add(addr)
    level, entries = raw[addr + 5], _u(raw, addr + 6, 2)
    key = 8 + 8 * rank
    end = addr + 24 + entries * (key + 8) + key
    lay.regions.append(Region(addr, end, f"chunk B-tree node at {addr:#x}"))
    lay.fields += [Field(addr + 5, 1, f"B-tree node {addr:#x} level", level),
                   Field(addr + 6, 2, f"B-tree node {addr:#x} entries", entries)]
    pos = addr + 24
    for i in range(entries):
        lay.fields += [Field(pos, 4, f"B-tree node {addr:#x} key[{i}] chunk size",
                             _u(raw, pos, 4))]
        lay.fields += [Field(pos + 8 + 8 * d, 8, f"B-tree node {addr:#x} key[{i}] offset[{d}]",
                             _u(raw, pos + 8 + 8 * d, 8)) for d in range(rank - 1)]
        child = _u(raw, pos + key, 8)
        lay.fields.append(Field(pos + key, 8, f"B-tree node {addr:#x} child[{i}]", child,
                                role="address"))
        if level > 0:
            _btree(raw, child, rank, lay, seen)
        pos += key + 8


# ---------------------------------------------------------------------------------------------
# HDF5 metadata checksum (Jenkins lookup3 hashlittle), to restamp an edited object header


def _rot(x, k):
    return ((x << k) | (x >> (32 - k))) & U32


def lookup3(data):
    a = b = c = (0xDEADBEEF + len(data)) & U32
    i = 0
    while len(data) - i > 12:
        a = (a + int.from_bytes(data[i:i + 4], "little")) & U32
        b = (b + int.from_bytes(data[i + 4:i + 8], "little")) & U32
        c = (c + int.from_bytes(data[i + 8:i + 12], "little")) & U32
        a = (a - c) & U32; a ^= _rot(c, 4); c = (c + b) & U32       # noqa: E702
        b = (b - a) & U32; b ^= _rot(a, 6); a = (a + c) & U32       # noqa: E702
        c = (c - b) & U32; c ^= _rot(b, 8); b = (b + a) & U32       # noqa: E702
        a = (a - c) & U32; a ^= _rot(c, 16); c = (c + b) & U32      # noqa: E702
        b = (b - a) & U32; b ^= _rot(a, 19); a = (a + c) & U32      # noqa: E702
        c = (c - b) & U32; c ^= _rot(b, 4); b = (b + a) & U32       # noqa: E702
        i += 12
    if len(data) == i:
        return c
    tail = data[i:].ljust(12, b"\0")
    a = (a + int.from_bytes(tail[0:4], "little")) & U32
    b = (b + int.from_bytes(tail[4:8], "little")) & U32
    c = (c + int.from_bytes(tail[8:12], "little")) & U32
    c ^= b; c = (c - _rot(b, 14)) & U32                             # noqa: E702
    a ^= c; a = (a - _rot(c, 11)) & U32                             # noqa: E702
    b ^= a; b = (b - _rot(a, 25)) & U32                             # noqa: E702
    c ^= b; c = (c - _rot(b, 16)) & U32                             # noqa: E702
    a ^= c; a = (a - _rot(c, 4)) & U32                              # noqa: E702
    b ^= a; b = (b - _rot(a, 14)) & U32                             # noqa: E702
    c ^= b; c = (c - _rot(b, 24)) & U32                             # noqa: E702
    return c


# ---------------------------------------------------------------------------------------------
# Mutants


@dataclass
class Mutant:
    source: str                    # name of the generated file
    kind: str                      # flip, truncate, inflate, extend, rewire
    what: str                      # the edit, for a person reading a failure
    # ("xor" or "set", offset, bytes), ("cut", length), ("append" or "prepend", bytes)
    edits: list
    restamp: list = field(default_factory=list)   # (start, checksum offset) to recompute

    def apply(self, data):
        buf = bytearray(data)
        for op, *args in self.edits:
            if op == "xor":
                at, mask = args
                for i, m in enumerate(mask):
                    if at + i < len(buf):
                        buf[at + i] ^= m
            elif op == "set":
                at, value = args
                buf[at:at + len(value)] = value
        for start, at in self.restamp:
            buf[at:at + 4] = lookup3(bytes(buf[start:at])).to_bytes(4, "little")
        for op, *args in self.edits:
            if op == "cut":
                del buf[args[0]:]
            elif op == "append":
                buf += args[0]
            elif op == "prepend":
                buf[:0] = args[0]
        return bytes(buf)


def _checksummed(lay, offset):
    """The checksummed structures holding `offset`, to restamp after editing it."""
    return [(r.start, r.checksum) for r in lay.regions
            if r.checksum is not None and r.start <= offset < r.checksum]


def _metadata_offset(lay, rng):
    """A random offset outside raw data: the gaps between data ranges, by length."""
    gaps, pos = [], 0
    for s, e in sorted(lay.data):
        if s > pos:
            gaps.append((pos, s))
        pos = max(pos, e)
    if pos < lay.size:
        gaps.append((pos, lay.size))
    at = rng.randrange(sum(e - s for s, e in gaps))
    for s, e in gaps:
        if at < e - s:
            return s + at
        at -= e - s


def _flips(name, lay, rng, count):
    """Flips of 1, 4 or 16 consecutive bytes: half in a metadata structure (half of those with
    the structure's checksum restamped, so both a checksum check and what is behind it are
    hit), a quarter anywhere outside raw data, a quarter anywhere at all."""
    out = []
    for i in range(count):
        n = (1, 4, 16)[i % 3]
        pick = i % 4
        if pick < 2:
            region = rng.choice(lay.regions)
            at = rng.randrange(region.start, max(region.start + 1, region.end - n))
            where = region.name
        elif pick == 2:
            at = _metadata_offset(lay, rng)
            where = "metadata"
        else:
            at = rng.randrange(lay.size)
            where = "data" if lay.is_data(at) else "metadata"
        mask = bytes(rng.randrange(1, 256) for _ in range(n))
        restamp = _checksummed(lay, at) if pick == 0 else []
        out.append(Mutant(name, "flip", f"xor {n} byte(s) at {at:#x} ({where})"
                          + (", checksum restamped" if restamp else ""),
                          [("xor", at, mask)], restamp))
    return out


def _truncations(name, lay, rng):
    """Cuts in the superblock or header, in metadata structures after it, in stored data (a
    reader must notice data it points to is gone), and 1 byte short."""
    header = "superblock" if lay.fmt == "hdf5" else "header"
    cuts = [(f"in the {header}", rng.randrange(1, lay.header_end)),
            (f"in the {header}", lay.header_end // 2),
            (f"just after the {header}", lay.header_end + 1)]
    meta = [r for r in lay.regions if r.start >= lay.header_end]
    for r in rng.sample(meta, min(3, len(meta))):
        cuts.append((f"in the {r.name}", rng.randrange(r.start, max(r.start + 1, r.end))))
    for s, e in rng.sample(lay.data, min(2, len(lay.data))):
        if e > s:
            cuts.append(("in data", rng.randrange(s, e)))
    cuts += [("at half the size", lay.size // 2), ("1 byte short", lay.size - 1)]
    return [Mutant(name, "truncate", f"cut to {n} of {lay.size} bytes ({where})", [("cut", n)])
            for where, n in cuts if 0 < n < lay.size]


def _set(name, lay, f, value, kind, note=""):
    raw = value.to_bytes(f.width, f.order)
    return Mutant(name, kind, f"{f.name}: {f.value} -> {value}{note}", [("set", f.offset, raw)],
                  _checksummed(lay, f.offset))


def _spread(rng, edits, count):
    """`count` of the (field, value, note) edits, taken from each category of field in turn, so
    a category with hundreds of fields (B-tree keys) does not crowd out one with a single
    field."""
    by_category = {}
    for e in edits:
        by_category.setdefault(e[0].category, []).append(e)
    categories = sorted(by_category)
    rng.shuffle(categories)
    chosen = []
    while len(chosen) < count and any(by_category.values()):
        for c in categories:
            if by_category[c] and len(chosen) < count:
                chosen.append(by_category[c].pop(rng.randrange(len(by_category[c]))))
    return chosen


# The fields that size an allocation or a read outright.
SIZES = {"numrecs", "dimension length", "vsize", "dataspace size", "chunk dim",
         "B-tree key chunk size", "contiguous size"}


def _inflations(name, lay, rng, count):
    """Counts and sizes rewritten to huge values: every value for numrecs (the one number a
    NetCDF-3 writer updates as it goes), two thirds of the rest on the fields in SIZES."""
    counts = [f for f in lay.fields if f.role == "count"]
    chosen = [(f, v, "") for f in counts if f.category == "numrecs" for v in HUGE[f.width]]
    sizes = [(f, v, "") for f in counts if f.category in SIZES - {"numrecs"}
             for v in HUGE[f.width]]
    chosen += _spread(rng, sizes, (count - len(chosen)) * 2 // 3)
    others = [(f, v, "") for f in counts if f.category not in SIZES for v in HUGE[f.width]]
    chosen += _spread(rng, others, count - len(chosen))
    # Zero is as hostile as huge for a chunk dimension (a division) or an element size.
    zeros = [(f, 0, "") for f in counts if f.category in ("chunk dim", "chunk element size")]
    chosen += _spread(rng, zeros, 2)
    return [_set(name, lay, f, v, "inflate", note) for f, v, note in chosen]


def _extensions(name, lay, rng):
    garbage = bytes(rng.randrange(256) for _ in range(1000))
    return [Mutant(name, "extend", what, [edit]) for what, edit in [
        ("1000 random bytes appended", ("append", garbage)),
        ("64 KiB of zeros appended", ("append", bytes(65536))),
        ("a superblock-like signature appended", ("append", b"\x89HDF\r\n\x1a\n" + garbage[:56])),
        ("512 zero bytes prepended (a user block)", ("prepend", bytes(512))),
        ("3 bytes prepended", ("prepend", b"abc")),
    ]]


def _rewirings(name, lay, rng, count):
    """Addresses pointed at their own structure (a cycle), past the end or at 0, and indexes
    (dimension ids, types) out of range."""
    edits = []
    for f in [f for f in lay.fields if f.role in ("address", "index")]:
        if f.role == "index":
            targets = [(99, "out of range")]
        else:
            owner = next((r.start for r in lay.regions if r.start <= f.offset < r.end), 0)
            targets = [(owner, "its own structure"), (lay.size + 2**30, "past the end"),
                       (0, "offset 0")]
        values = {}
        for v, note in targets:                   # the first note for a value: 0 may be both
            if v < 2**(8 * f.width) and v != f.value:
                values.setdefault(v, note)
        edits += [(f, v, f" ({note})") for v, note in values.items()]
    return [_set(name, lay, f, v, "rewire", note) for f, v, note in _spread(rng, edits, count)]


def mutants(name, path):
    """Every mutant of one file: about 75, the same ones on every run for the same file (a
    seed per file and kind of mutant)."""
    lay = layout(path)

    def rng(kind):
        return random.Random(f"{name}/{kind}")

    return (_flips(name, lay, rng("flip"), 24) +
            _truncations(name, lay, rng("truncate")) +
            _inflations(name, lay, rng("inflate"), 32) +
            _extensions(name, lay, rng("extend")) +
            _rewirings(name, lay, rng("rewire"), 10))


def plain_hdf5(path):
    """A plain HDF5 file as h5py writes it by default (superblock 0, version 1 object headers,
    symbol table groups: none of which netCDF-4 writes) with compact, contiguous and chunked
    datasets and attributes."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["title"] = "plain HDF5: compact, contiguous, chunked"
        x = f.create_dataset("x", data=np.arange(6, dtype="i4"))
        x.make_scale("x")
        t = f.create_dataset("t", data=np.arange(9, dtype="f8"), maxshape=(None,), chunks=(4,))
        t.make_scale("t")
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.COMPACT)
        small = h5py.Dataset(h5py.h5d.create(f.id, b"small", h5py.h5t.NATIVE_FLOAT,
                                             h5py.h5s.create_simple((6,)), dcpl=dcpl))
        small[:] = np.arange(6)
        small.attrs["units"] = "m"
        small.dims[0].attach_scale(x)
        series = f.create_dataset("series", data=np.ones((9, 6), "f4"), chunks=(4, 3),
                                  compression="gzip", shuffle=True, maxshape=(None, 6))
        series.attrs["long_name"] = "chunked, deflated"
        series.dims[0].attach_scale(t)
        series.dims[1].attach_scale(x)
    return path


if __name__ == "__main__":
    import sys

    for p in sys.argv[1:]:
        ms = mutants(os.path.basename(p), p)
        print(p, len(ms), {k: sum(m.kind == k for m in ms) for k in
                           ("flip", "truncate", "inflate", "extend", "rewire")})
        for m in ms:
            print("  ", m.kind, m.what)
