"""Device profiles: how much RAM and flash a device has, its cores and clock, and where each
figure comes from.

Built in (`devices/data/devices.json`): pi-zero-2, jetson-nano, raspberry-pi-4, stm32f746,
stm32h743, plus `host`, detected when asked for (RAM from /proc/meminfo or sysconf, cores,
clock from cpufreq or /proc/cpuinfo). A user describes another device in a small JSON file:

    {"format": "ttplan-device", "version": 1, "name": "my-pi", "ram_bytes": "1GiB",
     "reserve_bytes": "256MiB", "cores": 4, "clock_hz": "1.2GHz",
     "sources": {"ram_bytes": "what I measured"}}

`name` and `ram_bytes` are required; `flash_bytes`, `cores`, `clock_hz` may be null or left out,
`reserve_bytes` defaults to 0, `runtime` to "pytorch" (what trains there: "pytorch", whose
peak is the pytorch convention's, or "paper", a bare-metal engine as appendix A.4 counts it),
`description` and `sources` are free text. Byte sizes are
integers or text such as "512MiB"; clocks integers (Hz) or text such as "216MHz".

`reserve_bytes` is the RAM a training process cannot have: the operating system at idle.
`runtime_bytes` (optional, PyTorch devices) is the training process before its model: the
interpreter, torch, ttplan's imports and the allocator (devices.process; on `host` it is
measured once per machine, Python and torch and cached (devices.runtime_probe); measure a board
with `python -m ttplan.devices.runtime_probe` on it). The predicted peak resident set of a run (devices.process) is compared with
`ram_bytes - reserve_bytes` (`fits_ram`); device-aware planning budgets the tensors
`ram_bytes - reserve_bytes - runtime_bytes`, and the time model's memory-pressure term starts
there.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from importlib import resources
from pathlib import Path

from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.specs import parse_bytes
from ttplan.planner.jsonio import check_header, load_json

FORMAT = "ttplan-device"
VERSION = 1
HOST = "host"
_FIELDS = ("name", "description", "ram_bytes", "flash_bytes", "cores", "clock_hz",
           "reserve_bytes", "runtime", "runtime_bytes", "sources")
# What trains on the device, hence which peak its RAM must hold: PyTorch (a Linux board; the
# pytorch convention) or a bare-metal training engine as appendix A.4 counts it (paper).
RUNTIMES = ("pytorch", "paper")
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    ram_bytes: int | None  # None only for a device known by name alone (a log's device column)
    description: str = ""
    flash_bytes: int | None = None
    cores: int | None = None
    clock_hz: int | None = None
    reserve_bytes: int = 0
    runtime: str = "pytorch"
    sources: dict = field(default_factory=dict)
    runtime_bytes: int | None = None  # the training process before its model (devices.process)

    @property
    def available_bytes(self) -> int | None:
        """RAM a training run's tensors can use: RAM minus the reserve (the OS) minus the
        runtime baseline (the process before its model), when the profile knows it."""
        if self.ram_bytes is None:
            return None
        return max(0, self.ram_bytes - self.reserve_bytes - (self.runtime_bytes or 0))

    @property
    def process_ram_bytes(self) -> int | None:
        """RAM a training process can have: RAM minus the reserve (the OS)."""
        return None if self.ram_bytes is None else max(0, self.ram_bytes - self.reserve_bytes)

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["runtime_bytes"] is None:  # files written before the field stay as they were
            d.pop("runtime_bytes")
        d["sources"] = dict(sorted(self.sources.items()))
        return {k: d[k] for k in _FIELDS if k in d}


def builtin_profiles() -> dict[str, DeviceProfile]:
    """The shipped profiles by name (without `host`, which is detected on demand)."""
    text = resources.files("ttplan.devices").joinpath("data/devices.json").read_text("utf-8")
    data = json.loads(text)
    check_header(data, "built-in devices", "ttplan-devices", 1, "device list")
    profiles = [profile_from_dict(d, "built-in devices", header=False) for d in data["devices"]]
    return {p.name: p for p in profiles}


def known_names() -> list[str]:
    return sorted([*builtin_profiles(), HOST])


def resolve_device(spec, log_names=()) -> DeviceProfile:
    """A DeviceProfile from a built-in name, `host`, a device JSON file, or a calibration
    JSON file (its device). A name that is none of these but appears in `log_names` (the
    device column of a log being calibrated) gives a profile whose RAM is unknown."""
    if isinstance(spec, DeviceProfile):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise SpecError("a device is a built-in name or a device JSON file")
    spec = spec.strip()
    if spec == HOST:
        return detect_host()
    builtin = builtin_profiles()
    if spec in builtin:
        return builtin[spec]
    if spec.lower().endswith(".json") or Path(spec).is_file():
        return load_device_file(spec)
    if spec in log_names:
        return DeviceProfile(name=spec, ram_bytes=None,
                             description="known only from the log: RAM unknown")
    raise SpecError(f"unknown device {spec!r}: use one of {', '.join(known_names())}, "
                    "or a device JSON file")


def load_device_file(path) -> DeviceProfile:
    """A device JSON file, or the device of a calibration JSON file."""
    data = load_json(path, what="device")
    if isinstance(data, dict) and data.get("format") == "ttplan-calibration":
        device = data.get("device")
        if not isinstance(device, dict):
            raise SpecError(f"{path} is not a valid calibration: 'device' must be an object")
        return profile_from_dict(device, str(path), header=False, ram_optional=True)
    return profile_from_dict(data, str(path), header=True)


def profile_from_dict(d, source: str, header: bool = True,
                      ram_optional: bool = False) -> DeviceProfile:
    """Strictly validated: unknown keys, wrong types and non-positive sizes are one-line errors.
    `ram_optional`: a calibration may be of a device known only by name (RAM null)."""
    def bad(problem: str) -> SpecError:
        return SpecError(f"{source} is not a valid device: {problem}")

    if header:
        check_header(d, source, FORMAT, VERSION, "device")
        d = {k: v for k, v in d.items() if k not in ("format", "version")}
    if not isinstance(d, dict):
        raise bad("a device must be a JSON object")
    extra = sorted(set(d) - set(_FIELDS))
    if extra:
        raise bad(f"unknown key(s) {', '.join(extra)}")
    for key in ("name", "ram_bytes"):
        if key not in d:
            raise bad(f"missing key {key}")
    name = d["name"]
    if not (isinstance(name, str) and _NAME.fullmatch(name)):
        raise bad(f"name must be lower-case letters, digits, '.', '_' or '-', not {name!r}")
    if name == HOST and header:
        # A device file may not claim to be the detected machine; a calibration of `host`
        # (`ttplan calibrate LOG --device host`) records the machine it was fitted on.
        raise bad("the name 'host' is reserved for the detected machine")
    description = d.get("description", "")
    if not isinstance(description, str):
        raise bad("description must be text")
    sources = d.get("sources", {})
    if not (isinstance(sources, dict) and all(isinstance(k, str) and k in _FIELDS and
                                              isinstance(v, str) for k, v in sources.items())):
        raise bad("sources must map field names (ram_bytes, cores, ...) to text")
    ram = _size(d["ram_bytes"], "ram_bytes", bad, required=not ram_optional)
    reserve = _size(d.get("reserve_bytes", 0), "reserve_bytes", bad, zero_ok=True) or 0
    if ram is not None and reserve >= ram:
        raise bad(f"reserve_bytes ({reserve:,}) must be below ram_bytes ({ram:,})")
    runtime = d.get("runtime", "pytorch")
    if runtime not in RUNTIMES:
        raise bad(f"runtime must be pytorch or paper, not {runtime!r}")
    runtime_bytes = _size(d.get("runtime_bytes"), "runtime_bytes", bad, zero_ok=True)
    if ram is not None and reserve + (runtime_bytes or 0) >= ram:
        raise bad(f"reserve_bytes + runtime_bytes ({reserve + (runtime_bytes or 0):,}) must be "
                  f"below ram_bytes ({ram:,})")
    return DeviceProfile(
        name=name, ram_bytes=ram, description=description, runtime=runtime,
        flash_bytes=_size(d.get("flash_bytes"), "flash_bytes", bad),
        cores=_count(d.get("cores"), "cores", bad), clock_hz=_clock(d.get("clock_hz"), bad),
        reserve_bytes=reserve, runtime_bytes=runtime_bytes, sources=dict(sources))


def _size(value, key, bad, required=False, zero_ok=False) -> int | None:
    if value is None and not required:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value > 0 or (zero_ok and value == 0):
            return value
    elif isinstance(value, str):
        try:
            return parse_bytes(value)
        except SpecError:
            pass
    raise bad(f"{key} must be a positive number of bytes (an integer or text such as 512MiB)")


def _count(value, key, bad) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise bad(f"{key} must be a positive integer")


_HZ = {"hz": 1, "khz": 10**3, "mhz": 10**6, "ghz": 10**9}


def _clock(value, bad) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*([kmg]?hz)", value.strip().lower())
        if match and Fraction(match.group(1)) > 0:
            return int(Fraction(match.group(1)) * _HZ[match.group(2)])
    raise bad("clock_hz must be a positive integer (Hz) or text such as 216MHz")


# ------------------------------------------------------------------------------ the host

def detect_host() -> DeviceProfile:
    """This machine, as far as Linux (or POSIX sysconf) tells. Its reserve is what is not
    available now (MemTotal - MemAvailable): the OS, other processes and this one."""
    sources = {}
    meminfo = _meminfo()
    ram = meminfo.get("MemTotal")
    if ram:
        sources["ram_bytes"] = "detected: /proc/meminfo MemTotal"
    else:
        try:
            ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
            sources["ram_bytes"] = "detected: sysconf(SC_PAGE_SIZE) x sysconf(SC_PHYS_PAGES)"
        except (ValueError, OSError, AttributeError):
            raise SpecError("cannot detect this machine's RAM: describe it in a device "
                            "JSON file") from None
    reserve = 0
    if ram and "MemAvailable" in meminfo:
        reserve = max(0, ram - meminfo["MemAvailable"])
        sources["reserve_bytes"] = "detected: /proc/meminfo MemTotal - MemAvailable (in use now)"
    cores = os.cpu_count()
    if cores:
        sources["cores"] = "detected: os.cpu_count()"
    clock = _clock_hz(sources)
    return DeviceProfile(name=HOST, ram_bytes=int(ram), description="this machine (detected)",
                         cores=cores, clock_hz=clock, reserve_bytes=min(reserve, int(ram) - 1),
                         sources=sources)


def _meminfo() -> dict[str, int]:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        match = re.fullmatch(r"(\w+):\s+(\d+)\s*kB", line.strip())
        if match:
            out[match.group(1)] = int(match.group(2)) * 1024
    return out


def _clock_hz(sources: dict) -> int | None:
    try:
        khz = int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text())
        sources["clock_hz"] = "detected: cpufreq cpuinfo_max_freq"
        return khz * 1000
    except (OSError, ValueError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("cpu mhz"):
                # The current clock drifts by a few kHz between reads: rounded to 100 MHz,
                # the same machine lists the same device twice.
                sources["clock_hz"] = ("detected: /proc/cpuinfo cpu MHz (current, not maximum; "
                                       "to 100 MHz)")
                return int(round(float(line.split(":", 1)[1]) / 100) * 100 * 1_000_000)
    except (OSError, ValueError, IndexError):
        pass
    return None
