"""Harvested energy per node per control epoch.

Solar: pvlib clear-sky (Ineichen) or TMY3 irradiance at the scenario's place and dates, transposed
to the panel plane, averaged over each epoch at 5-minute resolution, times a seeded clear-sky-index
process (cloud), panel area and efficiency. Wind: a Weibull wind-speed process through a power
curve. Constant. Trace: a piecewise-constant CSV power profile integrated exactly over each epoch.
Epochs are produced one at a time (``step``), so memory does not grow with the horizon.
"""
from __future__ import annotations

import math
import warnings
from importlib import resources

import numpy as np
import pandas as pd
from scipy.special import ndtr

from otmarl.scenarios import schema as S

SUBSTEP_S = 300.0
LINKE_TURBIDITY = 3.0  # a typical rural/suburban value; fixed so that no data file is looked up


def start_time(sc: S.Scenario) -> pd.Timestamp:
    """The scenario's start, tz-aware (a naive start is local time at the scenario's place)."""
    t = pd.Timestamp(sc.start)
    return t.tz_localize(sc.location.timezone) if t.tzinfo is None else t


def start_s_of_day(sc: S.Scenario) -> float:
    """Local clock time at the start, seconds since midnight at the scenario's place."""
    t = start_time(sc).tz_convert(sc.location.timezone)
    return t.hour * 3600.0 + t.minute * 60.0 + t.second + t.microsecond * 1e-6


def epoch_times(sc: S.Scenario) -> pd.DatetimeIndex:
    """Sub-sample instants (mid-points of SUBSTEP_S slices) covering the horizon, tz-aware."""
    dt = sc.control_interval_s
    sub = max(1, int(math.ceil(dt / SUBSTEP_S)))
    offs = (np.arange(sc.n_epochs * sub) + 0.5) * (dt / sub)
    return start_time(sc) + pd.to_timedelta(offs, unit="s"), sub


_POA_CACHE: dict[str, tuple[np.ndarray, np.ndarray]] = {}
_POA_CACHE_SIZE = 16


def solar_poa_wh_per_m2(sc: S.Scenario, h: S.SolarHarvest) -> tuple[np.ndarray, np.ndarray]:
    """(clear-sky POA, irradiance used) per epoch in Wh/m^2; equal unless irradiance='tmy'.

    Deterministic in the place, dates, epochs and panel, so it is computed once per process for
    each (an env resets a world per episode; a sweep runs many seeds): the arrays are shared
    and read-only."""
    key = "|".join((sc.location.model_dump_json(), str(sc.start), repr(sc.control_interval_s),
                    str(sc.n_epochs), h.model_dump_json()))
    hit = _POA_CACHE.get(key)
    if hit is None:
        with warnings.catch_warnings():
            # pvlib calls pandas APIs that newer pandas deprecates; nothing a user can act on
            warnings.simplefilter("ignore", category=DeprecationWarning)
            warnings.simplefilter("ignore", category=FutureWarning)
            hit = _solar_poa(sc, h)
        for a in hit:
            a.setflags(write=False)
        if len(_POA_CACHE) >= _POA_CACHE_SIZE:
            _POA_CACHE.pop(next(iter(_POA_CACHE)))
        _POA_CACHE[key] = hit
    return hit


def _solar_poa(sc: S.Scenario, h: S.SolarHarvest) -> tuple[np.ndarray, np.ndarray]:
    import pvlib

    times, sub = epoch_times(sc)
    loc = sc.location
    site = pvlib.location.Location(loc.latitude_deg, loc.longitude_deg, tz=loc.timezone,
                                   altitude=loc.altitude_m)
    sun = site.get_solarposition(times)
    cs = site.get_clearsky(times, model="ineichen", solar_position=sun,
                           linke_turbidity=LINKE_TURBIDITY)
    poa_cs = _poa(h, sun, cs["dni"], cs["ghi"], cs["dhi"])
    poa = poa_cs
    if h.irradiance == "tmy":
        w = _tmy_at(h.tmy_file, times)
        poa = _poa(h, sun, w["dni"], w["ghi"], w["dhi"])
    to_wh = sc.control_interval_s / 3600.0
    per_epoch = lambda x: np.nan_to_num(np.asarray(x, float)).reshape(-1, sub).mean(1) * to_wh
    return per_epoch(poa_cs), per_epoch(poa)


def _poa(h: S.SolarHarvest, sun: pd.DataFrame, dni, ghi, dhi) -> np.ndarray:
    import pvlib

    tot = pvlib.irradiance.get_total_irradiance(h.tilt_deg, h.azimuth_deg, sun["apparent_zenith"],
                                                sun["azimuth"], dni, ghi, dhi)
    return np.clip(np.asarray(tot["poa_global"], float), 0.0, None)


def _tmy_at(name: str, times: pd.DatetimeIndex) -> pd.DataFrame:
    """TMY3 irradiance at the same month, day and hour as ``times`` (the TMY year is ignored)."""
    import pvlib

    if name.startswith("pvlib:"):
        path = resources.files("pvlib") / "data" / name.split(":", 1)[1]
    else:
        path = name
    data, _ = pvlib.iotools.read_tmy3(str(path), map_variables=True)
    # TMY3 stamps an hour's data at its end: hour index = (day of year, hour of day)
    key = (data.index.dayofyear.values - 1) * 24 + (data.index.hour.values - 1) % 24
    table = np.zeros((366 * 24, 3))
    table[key] = data[["ghi", "dni", "dhi"]].to_numpy(float)
    local = times.tz_localize(None) if times.tz is not None else times
    doy = np.minimum(local.dayofyear.values - 1, 364)
    idx = doy * 24 + local.hour.values
    return pd.DataFrame(table[idx], columns=["ghi", "dni", "dhi"], index=times)


def _ar1(state: np.ndarray, phi: float, rng: np.random.Generator) -> np.ndarray:
    return phi * state + math.sqrt(max(1.0 - phi * phi, 0.0)) * rng.standard_normal(state.shape)


class _Clouds:
    """A solar class's clearness: AR(1) weather shared by the class (one draw) and per node,
    mixed and clipped to [0, 1]. One normal draw of 1 + m values per epoch (the same stream as
    the shared draw then the nodes'), and every constant as an array: at a few dozen nodes
    numpy's per-call cost, and its cost for a Python scalar operand, is most of the work."""

    def __init__(self, c, dt: float, m: int, rng: np.random.Generator):
        phi = math.exp(-dt / (c.correlation_h * 3600.0))
        self.z = np.concatenate([rng.standard_normal(1), rng.standard_normal(m)])  # shared, own
        self.phi = np.full(1 + m, phi)
        self.noise = np.full(1 + m, math.sqrt(max(1.0 - phi * phi, 0.0)))
        self.w_shared, self.w_own = math.sqrt(c.shared), np.full(m, math.sqrt(1 - c.shared))
        self.mean, self.spread = np.full(m, c.mean_clearness), np.full(m, c.variability)
        self.zeros, self.ones = np.zeros(m), np.ones(m)

    def step(self, rng: np.random.Generator) -> np.ndarray:
        z = self.z = self.phi * self.z + self.noise * rng.standard_normal(len(self.z))
        mix = self.w_own * z[1:] + self.w_shared * float(z[0])
        return np.minimum(np.maximum(self.mean + self.spread * mix, self.zeros), self.ones)


class HarvestModel:
    """Per-node harvest, one epoch at a time, from per-class profiles and per-node draws."""

    def __init__(self, sc: S.Scenario, class_idx: np.ndarray, rng: np.random.Generator):
        self.sc, self.n, self.dt = sc, len(class_idx), sc.control_interval_s
        self.rng = rng
        self.k = 0
        self.parts = []  # (kind, node indices, per-node params, class-level data)
        for ci, (name, nc) in enumerate(sc.nodes.items()):
            idx = np.flatnonzero(class_idx == ci)
            self.parts.append(self._make(nc.harvest, idx))

    def _make(self, h, idx: np.ndarray):
        m, rng = len(idx), self.rng
        if isinstance(h, S.SolarHarvest):
            clear, used = solar_poa_wh_per_m2(self.sc, h)
            area_eff = h.panel_area_m2.sample(rng, m) * h.efficiency.sample(rng, m)
            clouds = None if h.irradiance == "tmy" else _Clouds(h.cloud, self.dt, m, rng)
            return ("solar", idx, area_eff, (h, clear, used, clouds))
        if isinstance(h, S.WindHarvest):
            mean = h.mean_speed_m_s.sample(rng, m)
            scale = mean / math.gamma(1.0 + 1.0 / h.weibull_k)
            return ("wind", idx, scale, (h, {"z": rng.standard_normal(m)}))
        if isinstance(h, S.ConstantHarvest):
            return ("constant", idx, h.power_w.sample(rng, m) * self.dt / 3600.0, None)
        if isinstance(h, S.TraceHarvest):
            return ("trace", idx, h.scale.sample(rng, m), _trace_cumulative(h))
        return ("none", idx, None, None)

    def clear_wh(self, k: int) -> np.ndarray:
        """Expected harvest without weather noise in epoch k (a forecast controllers may use)."""
        out = np.zeros(self.n)
        for kind, idx, p, data in self.parts:
            if kind == "solar":
                out[idx] = p * data[1][min(k, len(data[1]) - 1)]
            elif kind == "constant":
                out[idx] = p
            elif kind == "wind":
                h = data[0]
                out[idx] = np.interp(p * math.gamma(1 + 1 / h.weibull_k), h.power_curve_speed_m_s,
                                     h.power_curve_w, left=0, right=0) * self.dt / 3600
            elif kind == "trace":
                out[idx] = p * _trace_energy(data, k * self.dt, (k + 1) * self.dt)
        return out

    def forecast(self, k0: int, h: int) -> np.ndarray:
        """Expected harvest (Wh, epochs k0 .. k0+h-1 within the horizon x nodes): the forecast a
        controller may use. Solar: clear-sky energy times the exact mean of the clipped
        clear-sky index, ``E[clip(mu + s Z, 0, 1)]`` (measured TMY irradiance as it is); wind:
        the mean of the power curve over the Weibull speed distribution; constant and trace
        harvests as they are (they are known)."""
        if not hasattr(self, "_profiles"):
            self._profiles = [self._profile(part) for part in self.parts]
        ks = np.arange(k0, min(k0 + h, self.sc.n_epochs))
        out = np.zeros((len(ks), self.n))
        for (kind, idx, _, _), (profile, factor) in zip(self.parts, self._profiles):
            if profile is not None:
                out[:, idx] = profile[ks][:, None] * factor[None, :]
        return out

    def _profile(self, part) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(per-epoch profile, per-node factor) of one class's expected harvest."""
        kind, idx, p, data = part
        k = np.arange(self.sc.n_epochs)
        if kind == "solar":
            h, clear, used, clouds = data
            if clouds is None:
                return np.asarray(used, float), p
            c = h.cloud
            return np.asarray(clear, float) * clipped_normal_mean(c.mean_clearness, c.variability), p
        if kind == "constant":
            return np.ones(len(k)), p
        if kind == "wind":
            return np.ones(len(k)), _mean_wind_wh(data[0], p, self.dt)
        if kind == "trace":
            return np.array([_trace_energy(data, i * self.dt, (i + 1) * self.dt) for i in k]), p
        return None, None

    def step(self) -> np.ndarray:
        """Harvested Wh per node in the next epoch."""
        k, out = self.k, np.zeros(self.n)
        for kind, idx, p, data in self.parts:
            if kind == "solar":
                _, _, used, clouds = data
                out[idx] = p * used[k] if clouds is None else p * used[k] * clouds.step(self.rng)
            elif kind == "wind":
                h, st = data
                phi = math.exp(-self.dt / (h.correlation_h * 3600.0))
                st["z"] = _ar1(st["z"], phi, self.rng)
                u = np.minimum(np.maximum(ndtr(st["z"]), 1e-12), 1 - 1e-12)
                speed = p * (-np.log1p(-u)) ** (1.0 / h.weibull_k)
                out[idx] = np.interp(speed, h.power_curve_speed_m_s, h.power_curve_w,
                                     left=0.0, right=0.0) * self.dt / 3600.0
            elif kind == "constant":
                out[idx] = p
            elif kind == "trace":
                out[idx] = p * _trace_energy(data, k * self.dt, (k + 1) * self.dt)
        self.k += 1
        return out


def clipped_normal_mean(mu: float, s: float) -> float:
    """``E[clip(mu + s Z, 0, 1)]`` for a standard normal Z, exactly: E[max(X, 0)] - E[max(X - 1, 0)]
    with ``E[max(X - a, 0)] = (mu - a) Phi((mu - a)/s) + s phi((mu - a)/s)``."""
    if s <= 0:
        return min(max(mu, 0.0), 1.0)

    def above(a: float) -> float:
        z = (mu - a) / s
        return (mu - a) * float(ndtr(z)) + s * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return above(0.0) - above(1.0)


def _mean_wind_wh(h: S.WindHarvest, scale: np.ndarray, dt: float) -> np.ndarray:
    """Mean energy per epoch of each turbine: the power curve averaged over 256 equal-probability
    Weibull speeds (the mid-points of their quantile bins)."""
    u = (np.arange(256) + 0.5) / 256
    shape = (-np.log1p(-u)) ** (1.0 / h.weibull_k)
    out = np.empty(len(scale))
    for a in range(0, len(scale), 4096):
        speeds = scale[a:a + 4096, None] * shape[None, :]
        out[a:a + 4096] = np.interp(speeds, h.power_curve_speed_m_s, h.power_curve_w,
                                    left=0.0, right=0.0).mean(1)
    return out * dt / 3600.0


def _trace_cumulative(h: S.TraceHarvest):
    df = pd.read_csv(h.file)
    t = df[h.time_column].to_numpy(float) * 3600.0
    p = df[h.power_column].to_numpy(float)
    order = np.argsort(t, kind="stable")
    t, p = t[order] - t[order][0], p[order]
    step = (t[-1] - t[-2]) if len(t) > 1 else 3600.0
    knots = np.append(t, t[-1] + step)
    cum = np.concatenate([[0.0], np.cumsum(p * np.diff(knots))]) / 3600.0  # Wh
    return knots, cum


def _trace_energy(data, a: float, b: float) -> float:
    knots, cum = data
    period, total = knots[-1], cum[-1]

    def E(t: float) -> float:
        q, r = divmod(t, period)
        return q * total + float(np.interp(r, knots, cum))
    return E(b) - E(a)
