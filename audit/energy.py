"""Energy and CO2e estimate of a run, with its method stated in the manifest.

Method, in order of preference:
- ``rapl``: the CPU package energy counters (/sys/class/powercap/intel-rapl*), read before and
  after the run: machine-wide, so other load on the machine is counted too;
- ``cpu-time``: CPU seconds of the driver and every process it waited for (LocalCluster nannies
  and workers) times an assumed power per busy core (``energy.cpu_watts_per_core``).
A GPU adds ``energy.gpu_watts`` times the run's wall time when one was used (NVML counters are not
read). CO2e = kWh x ``energy.grid_gco2e_per_kwh`` (default: IEA world average, 475 g/kWh).
Workers of an external cluster are not measured: the method says so.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from pathlib import Path

RAPL_ROOT = Path("/sys/class/powercap")


def _rapl_uj() -> int | None:
    try:
        zones = sorted(RAPL_ROOT.glob("intel-rapl:*/energy_uj"))
        return sum(int(z.read_text()) for z in zones if z.parent.name.count(":") == 1) if zones else None
    except (OSError, ValueError):
        return None


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@dataclass
class EnergyMeter:
    cpu_watts_per_core: float
    grid_gco2e_per_kwh: float
    gpu_watts: float = 0.0

    def __post_init__(self) -> None:
        self._t0 = time.perf_counter()
        self._cpu0 = _cpu_seconds()
        self._rapl0 = _rapl_uj()

    def finish(self, *, used_gpu: bool, external_workers: bool) -> dict[str, object]:
        wall = time.perf_counter() - self._t0
        cpu = _cpu_seconds() - self._cpu0
        rapl1 = _rapl_uj()
        if self._rapl0 is not None and rapl1 is not None and rapl1 >= self._rapl0:
            joules, method = (rapl1 - self._rapl0) / 1e6, "rapl"
        else:
            joules, method = cpu * self.cpu_watts_per_core, f"cpu-time x {self.cpu_watts_per_core} W/core"
        if used_gpu:
            joules += wall * self.gpu_watts
            method += f" + gpu wall-time x {self.gpu_watts} W"
        if external_workers:
            method += "; workers of the external cluster not measured"
        kwh = joules / 3.6e6
        return {
            "method": method,
            "wall_seconds": round(wall, 3),
            "cpu_seconds": round(cpu, 3),
            "energy_kwh": round(kwh, 9),
            "grid_gco2e_per_kwh": self.grid_gco2e_per_kwh,
            "co2e_grams": round(kwh * self.grid_gco2e_per_kwh, 6),
        }
