"""Which accelerator the machine has, as the OS sees it, and whether JAX came up on it.

    python3 lgmrec_jax/hardware.py            # prints the install extra for this machine: cpu | cuda12 | cuda13 | tpu
    python -m lgmrec_jax.hardware --check     # after installing: imports every dependency, reports JAX's devices

The first form is what the Makefile runs (as `ACCEL`) before any environment exists, so this module needs nothing
beyond the standard library at import time. Detection reads sysfs and /dev, not JAX:
  * NVIDIA GPU: a PCI device of vendor 0x10de with a display/3D class (0x03…), or /dev/nvidia0. The CUDA extra
    follows the kernel driver (/proc/driver/nvidia/version): JAX's CUDA 13 wheels need driver ≥ 580, CUDA 12 ≥ 525.
  * TPU: a PCI device of Google's vendor id 0x1ae0 whose class is a processing accelerator or co-processor (0x12…,
    0x0b40; Google's virtual NICs and disks share the vendor id, not the class), or /dev/accel0.
When the OS shows an accelerator but JAX runs on the CPU (a CPU-only jax in the environment, a driver mismatch),
`platform_report` says so loudly: training would otherwise run many times slower without a word.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

NVIDIA_VENDOR = "0x10de"
GOOGLE_VENDOR = "0x1ae0"
CUDA13_MIN_DRIVER = 580
REQUIRED_MODULES = ("jax", "flax", "optax", "orbax.checkpoint", "numpy", "tqdm", "matplotlib")
OPTIONAL_MODULES = {"jraph": "only the jraph interchange and its benchmark row", "pytest": "make test"}


def _pci_devices(pci_root: Path) -> list[tuple[str, str]]:
    out = []
    for dev in sorted(pci_root.glob("*")) if pci_root.is_dir() else []:
        try:
            out.append(((dev / "vendor").read_text().strip().lower(), (dev / "class").read_text().strip().lower()))
        except OSError:
            continue
    return out


def visible_accelerators(pci_root: Path = Path("/sys/bus/pci/devices"), dev_root: Path = Path("/dev")) -> dict:
    """{"nvidia": count, "tpu": count} of accelerators the OS exposes (0 where none)."""
    pci = _pci_devices(pci_root)
    nvidia = sum(v == NVIDIA_VENDOR and c.startswith("0x03") for v, c in pci)
    tpu = sum(v == GOOGLE_VENDOR and (c.startswith("0x12") or c.startswith("0x0b40")) for v, c in pci)
    if not nvidia:
        nvidia = len(list(dev_root.glob("nvidia[0-9]*")))
    if not tpu:
        tpu = len(list(dev_root.glob("accel[0-9]*")))
    return {"nvidia": nvidia, "tpu": tpu}


def nvidia_driver_major(version_file: Path = Path("/proc/driver/nvidia/version")) -> int | None:
    try:
        match = re.search(r"Kernel Module\s+(?:for\s+\S+\s+)?(\d+)\.", version_file.read_text())
    except OSError:
        return None
    return int(match.group(1)) if match else None


def install_extra(accelerators: dict | None = None, driver_major: int | None = None) -> str:
    """The pyproject extra that gives JAX for this machine's accelerator."""
    acc = visible_accelerators() if accelerators is None else accelerators
    if acc["tpu"]:
        return "tpu"
    if acc["nvidia"]:
        driver = nvidia_driver_major() if driver_major is None else driver_major
        return "cuda13" if driver is None or driver >= CUDA13_MIN_DRIVER else "cuda12"
    return "cpu"


def platform_report(accelerators: dict | None = None) -> tuple[str, str | None]:
    """(one line naming JAX's platform and devices, a warning or None). Imports JAX."""
    import jax

    devices = jax.devices()
    line = (f"JAX {jax.__version__} on {jax.default_backend()}: {len(devices)} × {devices[0].device_kind}"
            + (f" ({jax.process_count()} processes)" if jax.process_count() > 1 else ""))
    acc = visible_accelerators() if accelerators is None else accelerators
    seen = [f"{n} NVIDIA GPU(s)" if kind == "nvidia" else f"{n} TPU chip(s)" for kind, n in acc.items() if n]
    if jax.default_backend() != "cpu" or not seen or os.environ.get("JAX_PLATFORMS", "").strip() == "cpu":
        return line, None
    extra = install_extra(acc)
    warning = "\n".join([
        "!" * 100,
        f"WARNING: this machine has {' and '.join(seen)}, but JAX is running on the CPU.",
        f"  The environment's jaxlib has no {extra.upper()} support (or cannot load it). Training will be slow.",
        f"  Fix: `make clean && make train ACCEL={extra}`; without registry access, reuse a system-wide JAX with",
        "  `make clean && make train ACCEL=system`. Set JAX_PLATFORMS=cpu to silence this warning on purpose.",
        "!" * 100])
    return line, warning


def check_environment() -> int:
    """Imports every dependency; prints what is missing and JAX's platform. Exit 1 if a required one is missing."""
    import importlib

    missing = []
    for name in REQUIRED_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as e:
            missing.append(f"{name} ({e})")
    for name, role in OPTIONAL_MODULES.items():
        try:
            importlib.import_module(name)
        except ImportError:
            print(f"note: {name} is not installed; it is needed for {role}")
    if missing:
        print("error: missing required packages: " + "; ".join(missing), file=sys.stderr)
        return 1
    line, warning = platform_report()
    print(line)
    if warning:
        print(warning, file=sys.stderr)
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        sys.exit(check_environment())
    print(install_extra())
