"""Write tests/data/sample.nc, the NetCDF4 file `cloudify demo` embeds.

Monthly near-surface temperature and precipitation on a 4-degree grid for two years, with
time bounds: zlib+shuffle chunked data, CF time, packed and unpacked variables.
Run: python tests/data/make_sample.py (needs numpy and netCDF4).
"""
import os

import netCDF4
import numpy as np

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample.nc")
rng = np.random.default_rng(42)
nt, ny, nx = 24, 45, 90
with netCDF4.Dataset(out, "w", format="NETCDF4") as nc:
    nc.title = "cloudify demo sample"
    nc.Conventions = "CF-1.8"
    nc.createDimension("time", None)
    nc.createDimension("lat", ny)
    nc.createDimension("lon", nx)
    nc.createDimension("bnds", 2)
    t = nc.createVariable("time", "f8", ("time",))
    t.units = "days since 2000-01-01"
    t.calendar = "standard"
    t.standard_name = "time"
    t.bounds = "time_bnds"
    days = np.cumsum([0] + [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31] * 2)[:-1]
    t[:] = days + 15
    tb = nc.createVariable("time_bnds", "f8", ("time", "bnds"))
    tb[:, 0] = days
    tb[:, 1] = np.append(days[1:], days[-1] + 31)
    lat = nc.createVariable("lat", "f4", ("lat",))
    lat.units = "degrees_north"
    lat.standard_name = "latitude"
    lat[:] = np.linspace(-88, 88, ny)
    lon = nc.createVariable("lon", "f4", ("lon",))
    lon.units = "degrees_east"
    lon.standard_name = "longitude"
    lon[:] = np.arange(nx) * 4.0
    la = np.deg2rad(lat[:])[None, :, None]
    season = np.cos(2 * np.pi * np.arange(nt) / 12)[:, None, None]
    tas = nc.createVariable("tas", "f4", ("time", "lat", "lon"), zlib=True, shuffle=True,
                            chunksizes=(6, 45, 90), fill_value=np.float32(1e20))
    tas.units = "K"
    tas.long_name = "Near-Surface Air Temperature"
    tas.standard_name = "air_temperature"
    tas[:] = (288 - 30 * np.sin(la) ** 2 + 10 * season * np.sin(la)
              + rng.normal(0, 1, (nt, ny, nx))).astype("f4")
    pr = nc.createVariable("pr", "i2", ("time", "lat", "lon"), zlib=True, shuffle=True,
                           chunksizes=(12, 15, 30), fill_value=np.int16(-32767))
    pr.units = "mm day-1"
    pr.long_name = "Precipitation"
    pr.scale_factor = np.float32(0.01)
    pr.add_offset = np.float32(0.0)
    pr[:] = np.clip(rng.gamma(0.8, 3.0, (nt, ny, nx)), 0, 300).astype("f4")
