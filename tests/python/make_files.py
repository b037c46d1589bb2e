"""Generate the NetCDF files the end-to-end tests index and serve.

Each file exercises one or more storage cases of NetCDF4/HDF5 (codecs, layouts, byte orders,
fill and packing, partial writes, odd shapes); `mixed.nc` alone has more than 20 variables.
The NetCDF-3 files (classic, 64-bit offset and CDF-5 by netCDF4-python; classic and 64-bit
offset by scipy) have record variables of padded and unpadded sizes, characters and packing.
Run directly to write them into a folder: python make_files.py OUTDIR
"""
import os
import sys

import netCDF4
import numpy as np


def _mixed(path):
    rng = np.random.default_rng(7)
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.title = "every storage case"
        nc.history = "written by tests/python/make_files.py"
        nc.answer = np.int32(42)
        nc.weights = np.array([0.25, 0.5, 0.25])
        for name, size in [("time", None), ("lat", 30), ("lon", 40), ("y", 5), ("x", 6),
                           ("bnds", 2), ("z", 7), ("strlen", 8)]:
            nc.createDimension(name, size)
        t = nc.createVariable("time", "f8", ("time",))
        t.units = "days since 1850-01-01 00:00:00"
        t.calendar = "noleap"
        t.standard_name = "time"
        t[:] = np.arange(10) * 30.0 + 15
        tb = nc.createVariable("time_bnds", "f8", ("time", "bnds"))
        tb[:] = np.stack([np.arange(10) * 30.0, np.arange(10) * 30.0 + 30], axis=1)
        lat = nc.createVariable("lat", "f4", ("lat",))
        lat.units = "degrees_north"
        lat[:] = np.linspace(-87, 87, 30)
        lon = nc.createVariable("lon", "f8", ("lon",))
        lon.units = "degrees_east"
        lon[:] = np.arange(40) * 9.0
        lat2d = nc.createVariable("lat2d", "f4", ("y", "x"))
        lat2d[:] = rng.uniform(-90, 90, (5, 6))
        lon2d = nc.createVariable("lon2d", "f4", ("y", "x"))
        lon2d[:] = rng.uniform(0, 360, (5, 6))
        field = rng.normal(280, 10, (10, 30, 40))

        v = nc.createVariable("zlib_shuffle", "f4", ("time", "lat", "lon"), zlib=True,
                              shuffle=True, complevel=6, chunksizes=(4, 10, 20))
        v.units = "K"
        v.long_name = "deflate and shuffle"
        v[:] = field
        v = nc.createVariable("fletcher_i2", "i2", ("time", "lat", "lon"), fletcher32=True,
                              chunksizes=(5, 15, 20))
        v[:] = (field - 200).astype("i2")
        v = nc.createVariable("fletcher_shuffle_zlib_i2", "i2", ("time", "lat", "lon"),
                              fletcher32=True, zlib=True, shuffle=True, chunksizes=(5, 15, 20))
        v[:] = (field - 250).astype("i2")
        v = nc.createVariable("fletcher_f8", "f8", ("lat", "lon"), fletcher32=True,
                              chunksizes=(10, 10))
        v[:] = field[0]
        v = nc.createVariable("fletcher_shuffle_f8", "f8", ("lat", "lon"), fletcher32=True,
                              shuffle=True, zlib=True, chunksizes=(10, 10))
        v[:] = field[1]
        v = nc.createVariable("uncompressed_chunked", "f4", ("time", "lat", "lon"),
                              chunksizes=(2, 30, 40))
        v[:] = field
        v = nc.createVariable("contiguous", "f8", ("lat", "lon"), contiguous=True)
        v[:] = field[2]
        v = nc.createVariable("big_endian", ">f8", ("lat", "lon"), endian="big", zlib=True,
                              chunksizes=(15, 20))
        v[:] = field[3]
        v = nc.createVariable("big_endian_i4", ">i4", ("lat", "lon"), endian="big",
                              contiguous=True)
        v[:] = np.arange(1200).reshape(30, 40)
        v = nc.createVariable("packed", "i2", ("time", "lat", "lon"), zlib=True,
                              chunksizes=(5, 30, 40), fill_value=np.int16(-32767))
        v.scale_factor = np.float32(0.5)
        v.add_offset = np.float32(100.0)
        v.units = "K"
        data = np.ma.masked_array(field, mask=field > 295)
        v[:] = data
        v = nc.createVariable("partial", "f4", ("time", "lat", "lon"), zlib=True,
                              chunksizes=(5, 10, 10), fill_value=np.float32(np.nan))
        v[0:5, 0:10, 0:20] = field[0:5, 0:10, 0:20]
        v[5:10, 20:30, 30:40] = field[5:10, 20:30, 30:40]
        v = nc.createVariable("never_written", "f4", ("lat", "lon"), chunksizes=(10, 10),
                              fill_value=np.float32(-999.0))
        v.comment = "no chunk of this variable is stored"
        v = nc.createVariable("short", "f4", ("time", "lat"), chunksizes=(2, 30),
                              fill_value=np.float32(-1.0))
        v.comment = "written for 3 of the 10 time steps"
        v[0:3, :] = field[0:3, :, 0]
        v = nc.createVariable("uneven", "f4", ("z", "lat", "lon"), zlib=True,
                              chunksizes=(3, 7, 9))
        v[:] = rng.normal(0, 1, (7, 30, 40))
        v = nc.createVariable("scalar", "f8", ())
        v.units = "1"
        v.assignValue(3.25)
        v = nc.createVariable("scalar_int", "i4", ())
        v.assignValue(7)
        v = nc.createVariable("curvilinear", "f4", ("y", "x"), zlib=True)
        v.coordinates = "lat2d lon2d"
        v[:] = rng.normal(0, 1, (5, 6))
        for dt in ["u1", "i1", "u2", "u4", "i8", "u8"]:
            v = nc.createVariable(f"int_{dt}", dt, ("lat",))
            info = np.iinfo(dt)
            v[:] = np.linspace(info.min // 2, info.max // 2, 30).astype(dt)
        v = nc.createVariable("chars", "S1", ("y", "strlen"))
        v[:] = netCDF4.stringtochar(np.array([f"name{i}" for i in range(5)], dtype="S8"))
        v = nc.createVariable("vlen_strings", str, ("y",))
        v[:] = np.array([f"label {i}" for i in range(5)], dtype=object)


def _many_chunks(path):
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("time", None)
        nc.createDimension("cell", 400)
        t = nc.createVariable("time", "i4", ("time",))
        t.units = "hours since 2000-01-01"
        t[:] = np.arange(120)
        v = nc.createVariable("values", "f4", ("time", "cell"), zlib=True, chunksizes=(2, 20))
        v[:] = np.arange(120 * 400, dtype="f4").reshape(120, 400)


def _two_unlimited(path):
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("a", None)
        nc.createDimension("b", None)
        v = nc.createVariable("grown", "f4", ("a", "b"), chunksizes=(2, 2))
        v[:] = np.arange(36, dtype="f4").reshape(6, 6)
        w = nc.createVariable("plain", "f4", ("a",))
        w[:] = np.arange(6, dtype="f4")


def _curvilinear(path):
    """A curvilinear grid (2-D lat/lon named by `coordinates`) in the 360_day calendar."""
    rng = np.random.default_rng(3)
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.title = "curvilinear grid, 360_day calendar"
        for name, size in [("time", None), ("y", 8), ("x", 10)]:
            nc.createDimension(name, size)
        t = nc.createVariable("time", "f8", ("time",))
        t.units = "days since 2000-01-01"
        t.calendar = "360_day"
        t.axis = "T"
        t[:] = np.arange(14) * 30.0 + 29.5  # ends on day 30 of February: no Gregorian date
        yy, xx = np.meshgrid(np.arange(8), np.arange(10), indexing="ij")
        lat = nc.createVariable("lat", "f8", ("y", "x"))
        lat.standard_name = "latitude"
        lat.units = "degrees_north"
        lat[:] = 40 + 2.5 * yy + 0.3 * xx
        lon = nc.createVariable("lon", "f8", ("y", "x"))
        lon.standard_name = "longitude"
        lon.units = "degrees_east"
        lon[:] = -20 + 3.0 * xx - 0.4 * yy
        v = nc.createVariable("tos", "f4", ("time", "y", "x"), zlib=True)
        v.coordinates = "lat lon"
        v.units = "degC"
        v.long_name = "Sea Surface Temperature"
        v[:] = rng.normal(15, 3, (14, 8, 10))


def _regional_0360(path):
    """A regional grid in 0-360 longitudes crossing 180, hourly standard-calendar time, levels."""
    rng = np.random.default_rng(4)
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        for name, size in [("time", None), ("plev", 3), ("lat", 12), ("lon", 20)]:
            nc.createDimension(name, size)
        t = nc.createVariable("time", "i4", ("time",))
        t.units = "hours since 2010-06-30 18:00:00"
        t.calendar = "standard"
        t[:] = np.arange(0, 48, 6)
        p = nc.createVariable("plev", "f8", ("plev",))
        p.units = "Pa"
        p.positive = "down"
        p.standard_name = "air_pressure"
        p[:] = [100000.0, 85000.0, 50000.0]
        lat = nc.createVariable("lat", "f4", ("lat",))
        lat.units = "degrees_north"
        lat[:] = np.linspace(-30, 25, 12)
        lon = nc.createVariable("lon", "f4", ("lon",))
        lon.units = "degrees_east"
        lon[:] = np.linspace(100, 290, 20)
        v = nc.createVariable("ua", "f4", ("time", "plev", "lat", "lon"), zlib=True)
        v.units = "m s-1"
        v.standard_name = "eastward_wind"
        v[:] = rng.normal(0, 5, (8, 3, 12, 20))


def _netcdf3(fmt):
    def write(path):
        rng = np.random.default_rng(5)
        with netCDF4.Dataset(path, "w", format=fmt) as nc:
            nc.title = f"NetCDF-3 ({fmt})"
            nc.levels = np.array([1.5, 2.5], dtype="f4")
            nc.version = np.int32(3)
            for name, size in [("time", None), ("lat", 5), ("lon", 7), ("station", 3),
                               ("strlen", 6)]:
                nc.createDimension(name, size)
            t = nc.createVariable("time", "f8", ("time",))
            t.units = "days since 2000-01-01"
            t.calendar = "standard"
            t[:] = np.arange(12) * 31.0
            nc.createVariable("lat", "f4", ("lat",))[:] = np.linspace(-60, 60, 5)
            nc.createVariable("lon", "f8", ("lon",))[:] = np.linspace(0, 300, 7)
            v = nc.createVariable("temp", "f4", ("time", "lat", "lon"), fill_value=-999.0)
            v.units = "K"
            field = rng.normal(280, 5, (12, 5, 7)).astype("f4")
            field[3, 2, 2] = -999.0
            v[:] = field
            # 3 shorts (6 bytes) and 1 byte per record: padded in the record, unlike `temp`.
            nc.createVariable("count", "i2", ("time", "station"))[:] = (
                np.arange(36, dtype="i2").reshape(12, 3) - 10)
            nc.createVariable("flag", "i1", ("time",))[:] = np.arange(12, dtype="i1") - 6
            p = nc.createVariable("packed", "i2", ("lat", "lon"))
            p.scale_factor = 0.01
            p.add_offset = 10.0
            p[:] = rng.uniform(5, 15, (5, 7))
            c = nc.createVariable("name", "S1", ("station", "strlen"))
            c[:] = netCDF4.stringtochar(np.array([b"alpha", b"beta", b"gamma"], dtype="S6"))
            crs = nc.createVariable("crs", "i4", ())
            crs.grid_mapping_name = "latitude_longitude"
            crs.assignValue(0)
            if fmt == "NETCDF3_64BIT_DATA":
                nc.createVariable("big_ints", "u8", ("station",))[:] = [1, 2**40, 2**63]
                nc.createVariable("small_uints", "u2", ("time",))[:] = np.arange(12) * 5000
    return write


def _netcdf3_scipy(version):
    def write(path):
        from scipy.io import netcdf_file

        with netcdf_file(path, "w", version=version) as nc:
            nc.history = f"written by scipy.io.netcdf_file, version {version}"
            nc.createDimension("time", None)
            nc.createDimension("x", 4)
            nc.createDimension("strlen", 3)
            t = nc.createVariable("time", "i4", ("time",))
            t.units = "hours since 1999-12-31 00:00:00"
            t[:] = np.arange(6, dtype="i4") * 6
            nc.createVariable("x", "f8", ("x",))[:] = [0.5, 1.5, 2.5, 3.5]
            v = nc.createVariable("wind", "f4", ("time", "x"))
            v.units = "m s-1"
            v[:] = np.arange(24, dtype="f4").reshape(6, 4) / 4
            nc.createVariable("code", "c", ("x", "strlen"))[:] = np.array(
                [list(b"abc"), list(b"de "), list(b"f  "), list(b"ghi")], dtype="S1")
    return write


def model_piece(path, times, units="days since 2000-01-01", chunks=(1, 4, 5), fmt="NETCDF4",
          scale=None, seed=0, with_bounds=True, lat=None, packing=None):
    """One file of a model run split in time: `times` in `units` (noleap), `tas` on a 4x5 grid,
    chunked `chunks` (packed as int16 with `scale`, or with `packing`: the scale_factor,
    add_offset and _FillValue as the types to store them as, one value masked), with bounds;
    for multi-file tests."""
    rng = np.random.default_rng(seed)
    with netCDF4.Dataset(path, "w", format=fmt) as nc:
        nc.title = "a model run in pieces"
        nc.createDimension("time", None)
        nc.createDimension("lat", 4)
        nc.createDimension("lon", 5)
        nc.createDimension("bnds", 2)
        t = nc.createVariable("time", "f8", ("time",))
        t.units = units
        t.calendar = "noleap"
        t.standard_name = "time"
        if with_bounds:
            t.bounds = "time_bnds"
            nc.createVariable("time_bnds", "f8", ("time", "bnds"))[:] = np.stack(
                [times - 0.5, times + 0.5], axis=1)
        t[:] = times
        nc.createVariable("lat", "f4", ("lat",))[:] = lat if lat is not None else [-45, -15, 15, 45]
        nc.createVariable("lon", "f4", ("lon",))[:] = np.arange(5) * 72.0
        kw = {} if fmt.startswith("NETCDF3") else {"zlib": True, "chunksizes": chunks}
        if packing:
            kw["fill_value"] = packing[2]
        v = nc.createVariable("tas", "i2" if scale or packing else "f4", ("time", "lat", "lon"),
                              **kw)
        v.units = "K"
        values = rng.normal(280, 5, (len(times), 4, 5))
        if scale:
            v.scale_factor = scale
            v.add_offset = 250.0
        if packing:
            v.scale_factor, v.add_offset = packing[:2]
            values = np.ma.masked_array(values, mask=np.zeros(values.shape, bool))
            values[0, 1, 2] = np.ma.masked
        v[:] = values
    return path


def mostly_data(path):
    """20 MB of float32 in 50 compressed chunks, small coordinates."""
    rng = np.random.default_rng(0)
    with netCDF4.Dataset(path, "w") as nc:
        nc.title = "mostly data"
        for name, n in [("time", 500), ("lat", 100), ("lon", 100)]:
            nc.createDimension(name, n)
            v = nc.createVariable(name, "f8", (name,))
            v[:] = np.arange(n, dtype="f8")
        nc["time"].units = "days since 2000-01-01"
        v = nc.createVariable("noise", "f4", ("time", "lat", "lon"), zlib=True, complevel=1,
                              chunksizes=(10, 100, 100))
        v[:] = rng.normal(0, 1, (500, 100, 100)).astype("f4")
    return path


def data_chunk_bytes(path, name):
    """Bytes of `name`'s stored chunks, as libhdf5 (h5py) lists them."""
    import h5py

    with h5py.File(path) as f:
        ds = f[name]
        return sum(ds.id.get_chunk_info(i).size for i in range(ds.id.get_num_chunks()))


HDF5 = {"mixed": _mixed, "many_chunks": _many_chunks, "two_unlimited": _two_unlimited,
        "curvilinear": _curvilinear, "regional_0360": _regional_0360}
NETCDF3 = {"nc3_classic": _netcdf3("NETCDF3_CLASSIC"),
           "nc3_64bit_offset": _netcdf3("NETCDF3_64BIT_OFFSET"),
           "nc3_cdf5": _netcdf3("NETCDF3_64BIT_DATA"),
           "nc3_scipy_classic": _netcdf3_scipy(1),
           "nc3_scipy_64bit_offset": _netcdf3_scipy(2)}
GENERATORS = {**HDF5, **NETCDF3}


def write_all(outdir):
    """Write every test file into `outdir`; return {name: path}."""
    os.makedirs(outdir, exist_ok=True)
    paths = {}
    for name, make in GENERATORS.items():
        path = os.path.join(outdir, f"{name}.nc")
        make(path)
        paths[name] = path
    return paths


if __name__ == "__main__":
    print(write_all(sys.argv[1] if len(sys.argv) > 1 else "."))
