"""Compile targets: a name such as "v5e:2x4" or "h100:8" → the compile-only devices of that topology.

TPU topologies come from libtpu (`jax[tpu]`), which runs its compiler on any machine; JAX then needs
JAX_PLATFORMS=cpu so that it does not look for chips at start-up. GPU targets come from the CUDA plugin
(`jax-cuda12-plugin` and `jax-cuda12-pjrt`, installable with --no-deps: no CUDA libraries are needed to compile) and a
device description, written below from the vendor's published figures. Its compiler gives memory figures but no
cost analysis.

Every target's usable memory per chip is read from its own compiler (`usable_bytes`): a program that needs more than
any chip has is compiled once and the figure is taken from the compiler's refusal, so a fit verdict never rests on a
number typed in here.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType

from lgmrec_jax.errors import Failure, InputError

# Chips per host of each TPU generation: a topology up to this size is one host, as on a single TPU VM.
_HOST_BOUNDS = {"v2": (2, 2, 1), "v3": (2, 2, 1), "v4": (2, 2, 1), "v5p": (2, 2, 1), "v5e": (2, 4, 1),
                "v6e": (2, 4, 1), "tpu7x": (2, 2, 1)}

# NVIDIA H100 SXM5 80 GB (compute capability 9.0), as XLA's GpuTargetConfigProto text.
_H100 = """gpu_device_info {
  cuda_compute_capability { major: 9 minor: 0 }
  threads_per_block_limit: 1024
  threads_per_warp: 32
  shared_memory_per_block: 49152
  shared_memory_per_block_optin: 232448
  shared_memory_per_core: 233472
  threads_per_core_limit: 2048
  core_count: 132
  fpus_per_core: 128
  block_dim_limit_x: 2147483647
  block_dim_limit_y: 65535
  block_dim_limit_z: 65535
  memory_bandwidth: 3352320000000
  l2_cache_size: 52428800
  clock_rate_ghz: 1.98
  device_memory_size: 84978434048
  registers_per_core_limit: 65536
  registers_per_block_limit: 65536
}
platform_name: "CUDA"
dnn_version_info { major: 9 minor: 1 }
device_description_str: "NVIDIA H100 80GB HBM3"
"""
GPU_SPECS = {"h100": (_H100, 84978434048)}
GPU_MEMORY_FRACTION = 0.75  # JAX's default GPU memory pool: 75% of the device, preallocated


class TargetError(InputError):
    """A target name that cannot be parsed (exit 2)."""


@dataclasses.dataclass(frozen=True)
class Target:
    name: str  # as given: "v5e:2x4", "h100:8"
    platform: str  # "tpu" | "cuda"
    kind: str  # "v5e", "h100"
    shape: tuple[int, ...]  # chip grid (TPU) or (count,) (GPU)

    @property
    def chips(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    def devices(self) -> list:
        return list(_devices(self))

    def mesh(self) -> jax.sharding.Mesh:
        """A 1-d mesh over all of the topology's devices, named as the trainer's (parallel.DATA_AXIS). A device is
        a chip, except where libtpu lists each TensorCore of a chip as a device (v4: 2 per chip)."""
        from lgmrec_jax.parallel import DATA_AXIS

        # jax.make_mesh insists on one device per chip (megacore) from v4 on; libtpu's compile-only v4 and v5p
        # topologies list each TensorCore, so the mesh is built over the devices exactly as listed.
        return jax.sharding.Mesh(np.array(self.devices()), (DATA_AXIS,), axis_types=(AxisType.Auto,))

    def usable_bytes(self) -> int:
        return _usable_bytes(self)


def parse(name: str) -> Target:
    """'v5e:2x4' (TPU generation : chip grid), 'v4:2x2x2', 'h100:8' (GPU model : count)."""
    m = re.fullmatch(r"([a-z0-9]+):(\d+(?:x\d+)*)", name.strip().lower())
    if not m:
        raise TargetError(f"--target {name!r}: expected GENERATION:GRID such as v5e:2x4, v6e:1x1, v4:2x2x2, or "
                          f"GPU:COUNT such as h100:8")
    kind, shape = m.group(1), tuple(int(s) for s in m.group(2).split("x"))
    if kind in GPU_SPECS:
        if len(shape) != 1:
            raise TargetError(f"--target {name!r}: a GPU target is MODEL:COUNT, e.g. h100:8")
        return Target(name, "cuda", kind, shape)
    if kind not in _HOST_BOUNDS:
        raise TargetError(f"--target {name!r}: unknown generation {kind!r}; TPU: {', '.join(_HOST_BOUNDS)}; "
                          f"GPU: {', '.join(GPU_SPECS)}")
    if any(s < 1 for s in shape):
        raise TargetError(f"--target {name!r}: every grid size must be at least 1")
    return Target(name, "tpu", kind, shape)


@functools.cache
def _devices(target: Target) -> tuple:
    from jax.experimental import topologies

    if target.platform == "tpu":
        grid = target.shape + (1,) * (3 - len(target.shape))
        bounds = tuple(min(g, b) for g, b in zip(grid, _HOST_BOUNDS[target.kind]))
        topology = "x".join(map(str, target.shape))
        try:
            desc = topologies.get_topology_desc(f"{target.kind}:{topology}", "tpu", chips_per_host_bounds=bounds)
        except Exception as e:  # libtpu missing or the name unknown to it
            raise Failure(f"--target {target.name}: the TPU compiler is not available or rejects this topology "
                          f"({_first_line(e)}); `make aot-venv` installs it, `make aot ARGS=...` runs there") from None
        return tuple(desc.devices)
    spec, _ = GPU_SPECS[target.kind]
    try:
        desc = topologies.get_topology_desc(platform="cuda", target_config=spec,
                                            topology=f"1x1x{target.shape[0]}")
    except Exception as e:
        raise Failure(f"--target {target.name}: the CUDA compiler plugin is not available ({_first_line(e)}); "
                      "`make aot-venv` installs it, `make aot ARGS=...` runs there") from None
    return tuple(desc.devices)


@functools.cache
def _usable_bytes(target: Target) -> int:
    """Bytes per chip the target's compiler lets a program use: read from its refusal of a program that needs
    more than any chip has (TPU: 'exceeds available HBM (15.75G)'). A GPU compiler refuses nothing at compile time;
    there JAX's allocator takes GPU_MEMORY_FRACTION of the device's memory as its pool (XLA_PYTHON_CLIENT_MEM_FRACTION
    changes it), so that share of the described memory is what a program can use."""
    if target.platform != "tpu":
        fraction = float(os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION", GPU_MEMORY_FRACTION))
        return int(GPU_SPECS[target.kind][1] * fraction)
    device = target.devices()[0]
    sharding = jax.sharding.SingleDeviceSharding(device)
    big = jax.ShapeDtypeStruct((1 << 20, 1 << 18), jnp.float32, sharding=sharding)  # 1 TiB in, 1 TiB out
    try:
        jax.jit(lambda x: x * 2.0).lower(big).compile()
    except Exception as e:
        found = re.search(r"available HBM \(([\d.]+)([KMGT])\)", str(e))
        if found:
            return int(float(found.group(1)) * 1024 ** "KMGT".index(found.group(2)) * 1024)
        raise Failure(f"{target.name}: could not read the usable memory from the compiler: {_first_line(e)}") from None
    raise Failure(f"{target.name}: the compiler accepted a 2 TiB program; cannot tell its memory")


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__
