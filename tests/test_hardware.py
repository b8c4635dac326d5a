"""Accelerator detection from sysfs / /dev (what the Makefile's ACCEL uses) and the CPU-fallback warning."""

import subprocess
import sys
from pathlib import Path

import pytest

from lgmrec_jax import hardware

ROOT = Path(__file__).resolve().parent.parent


def fake_pci(root: Path, devices: list[tuple[str, str]]) -> Path:
    for i, (vendor, cls) in enumerate(devices):
        d = root / "pci" / f"0000:00:{i:02x}.0"
        d.mkdir(parents=True)
        (d / "vendor").write_text(vendor + "\n")
        (d / "class").write_text(cls + "\n")
    (root / "pci").mkdir(exist_ok=True)
    (root / "dev").mkdir(exist_ok=True)
    return root


@pytest.mark.parametrize("devices, dev_files, expected", [
    ([("0x8086", "0x060000"), ("0x1af4", "0x020000")], [], {"nvidia": 0, "tpu": 0}),  # host bridge, virtio NIC
    ([("0x10de", "0x030200"), ("0x10de", "0x030200"), ("0x10de", "0x068000")], [], {"nvidia": 2, "tpu": 0}),
    ([("0x1ae0", "0x020000"), ("0x1ae0", "0x010802")], [], {"nvidia": 0, "tpu": 0}),  # gVNIC and Google NVMe
    ([("0x1ae0", "0x120000")] * 4, [], {"nvidia": 0, "tpu": 4}),
    ([], ["accel0", "accel1"], {"nvidia": 0, "tpu": 2}),
    ([], ["nvidia0", "nvidiactl", "nvidia-uvm"], {"nvidia": 1, "tpu": 0}),
])
def test_visible_accelerators(tmp_path, devices, dev_files, expected):
    root = fake_pci(tmp_path, devices)
    for name in dev_files:
        (root / "dev" / name).write_text("")
    assert hardware.visible_accelerators(root / "pci", root / "dev") == expected


@pytest.mark.parametrize("text, major", [
    ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.65.06  Sun Jul 27 07:09:31 UTC 2025\n", 580),
    ("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.127.05  Release Build\n", 550),
    ("garbage\n", None),
])
def test_driver_version(tmp_path, text, major):
    (tmp_path / "version").write_text(text)
    assert hardware.nvidia_driver_major(tmp_path / "version") == major


def test_install_extra_follows_the_hardware_and_driver():
    assert hardware.install_extra({"nvidia": 0, "tpu": 0}) == "cpu"
    assert hardware.install_extra({"nvidia": 0, "tpu": 4}) == "tpu"
    assert hardware.install_extra({"nvidia": 1, "tpu": 0}, driver_major=580) == "cuda13"
    assert hardware.install_extra({"nvidia": 8, "tpu": 0}, driver_major=535) == "cuda12"


def test_warns_when_an_accelerator_is_visible_but_jax_is_on_cpu(monkeypatch):
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    line, warning = hardware.platform_report({"nvidia": 2, "tpu": 0})
    assert "on cpu" in line
    assert "2 NVIDIA GPU(s)" in warning and "JAX is running on the CPU" in warning and "ACCEL=" in warning
    assert hardware.platform_report({"nvidia": 0, "tpu": 0})[1] is None
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")  # CPU on purpose: no warning
    assert hardware.platform_report({"nvidia": 2, "tpu": 0})[1] is None


def test_makefile_detection_runs_without_dependencies():
    """The Makefile runs the file with a bare interpreter before any environment exists: stdlib only."""
    out = subprocess.run([sys.executable, "-S", "-I", str(ROOT / "lgmrec_jax" / "hardware.py")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() in ("cpu", "cuda12", "cuda13", "tpu")
