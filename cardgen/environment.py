"""Framework versions, device, hardware and git commit: what goes next to every number."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from cardgen.record import EnvironmentRecord

PACKAGES = (
    "cardgen",
    "torch",
    "transformers",
    "datasets",
    "tokenizers",
    "accelerate",
    "huggingface_hub",
    "safetensors",
    "peft",
    "bitsandbytes",
    "scikit-learn",
    "numpy",
)


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` (those not installed are left out)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def cpu_name() -> str:
    """The CPU model as the OS names it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16, AMX or Arm bf16); elsewhere torch emulates it, slower
    than fp32."""
    import torch

    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(torch.cpu, probe, None)
        if fn is not None and fn():
            return True
    if platform.machine().lower() in ("arm64", "aarch64"):
        try:
            return " bf16" in Path("/proc/cpuinfo").read_text()
        except OSError:
            return platform.system() == "Darwin"
    return False


def git_commit(path: Path | None = None) -> str | None:
    """The commit of the git repository around ``path`` (the working directory by default), if any."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=path or Path.cwd(),
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=path or Path.cwd(),
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    ).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def collect_environment(device: str | None = None) -> EnvironmentRecord:
    """Versions and hardware of this process. Imports torch."""
    import torch

    if device is None:
        device = "cuda:0" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        index = int(device.split(":")[1]) if ":" in device else 0
        device_name = torch.cuda.get_device_name(index)
        num_devices = torch.cuda.device_count()
        memory = torch.cuda.get_device_properties(index).total_memory / 2**30
    else:
        device_name = cpu_name()
        num_devices = 1
        try:
            memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        except (ValueError, OSError, AttributeError):
            memory = None
    return EnvironmentRecord(
        python=platform.python_version(),
        platform=platform.platform(),
        packages=package_versions(),
        cuda=torch.version.cuda,
        device=device,
        device_name=device_name,
        num_devices=num_devices,
        cpu_count=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1),
        torch_threads=torch.get_num_threads(),
        memory_gb=round(memory, 1) if memory else None,
        git_commit=git_commit(),
    )
