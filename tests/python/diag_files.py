"""Sources for the diagnostics tests: a daily-ish record in each CF calendar, with missing
values, a packed variable and sub-daily steps, and long records for the memory test."""
import netCDF4
import numpy as np

CALENDARS = ("standard", "noleap", "360_day", "julian")
# Steps of 18 hours: every hour of the day seen is 0, 6, 12 or 18, and days of the year vary.
STEP_DAYS = 0.75


def record(path, calendar, steps=1460, lat=6, lon=8, seed=0, chunks=(40, 3, 8)):
    """`tas` (float32, zlib, NaN holes) and `pr` (int16 packed, _FillValue holes) on a regular
    lat/lon grid, `steps` steps of STEP_DAYS from 1999-12-01 in `calendar`."""
    rng = np.random.default_rng(seed)
    with netCDF4.Dataset(path, "w") as nc:
        nc.title = f"diagnostics test record, {calendar} calendar"
        nc.createDimension("time", None)
        nc.createDimension("lat", lat)
        nc.createDimension("lon", lon)
        t = nc.createVariable("time", "f8", ("time",))
        t.units = "days since 1999-12-01 00:00:00"
        t.calendar = calendar
        t.standard_name = "time"
        t[:] = np.arange(steps) * STEP_DAYS
        y = nc.createVariable("lat", "f4", ("lat",))
        y.units = "degrees_north"
        y.standard_name = "latitude"
        y[:] = np.linspace(-75, 75, lat)
        x = nc.createVariable("lon", "f4", ("lon",))
        x.units = "degrees_east"
        x[:] = np.arange(lon) * (360.0 / lon)
        tas = nc.createVariable("tas", "f4", ("time", "lat", "lon"), zlib=True,
                                chunksizes=chunks, fill_value=np.float32(1e20))
        tas.units = "K"
        tas.long_name = "Near-Surface Air Temperature"
        tas.cell_methods = "time: mean"
        season = 10 * np.sin(2 * np.pi * np.arange(steps) * STEP_DAYS / 365.0)
        field = 280 + season[:, None, None] + rng.normal(0, 3, (steps, lat, lon))
        field[rng.random(field.shape) < 0.05] = np.nan
        # One cell missing throughout: every statistic of nothing.
        field[:, 0, 0] = np.nan
        tas[:] = np.ma.masked_invalid(field)
        pr = nc.createVariable("pr", "i2", ("time", "lat", "lon"), zlib=True, shuffle=True,
                               chunksizes=chunks, fill_value=np.int16(-32767))
        pr.scale_factor = 1e-6
        pr.add_offset = 2e-5
        pr.units = "kg m-2 s-1"
        values = np.clip(rng.gamma(1.0, 2e-5, (steps, lat, lon)), 0, 5e-5)
        values[rng.random(values.shape) < 0.03] = np.nan
        pr[:] = np.ma.array(np.nan_to_num(values, nan=0.0), mask=np.isnan(values))
    return path


def long_record(path, steps, seed=0):
    """A plain float32 field for the memory test: 36x72, 30-step zlib chunks."""
    return record(path, "standard", steps=steps, lat=36, lon=72, seed=seed, chunks=(30, 36, 72))
