"""`edgecnn devices check`: what a device is and which runtimes it has, over whichever transport reaches it."""

from __future__ import annotations

from .profiles import DeviceProfile

PIP_NAMES = {"onnxruntime": "onnxruntime", "litert": "ai-edge-litert", "ncnn": "ncnn", "executorch": "executorch"}

CHECK_SCRIPT = r"""
import json, platform, importlib, importlib.metadata
found = {}
for module, dist in (("numpy", "numpy"), ("onnxruntime", "onnxruntime"), ("ai_edge_litert", "ai-edge-litert"),
                     ("ncnn", "ncnn")):
    try:
        found[dist] = getattr(importlib.import_module(module), "__version__", "installed")
    except Exception:
        found[dist] = None
try:  # not imported: its runtime loads torch, which takes long on a small board
    found["executorch"] = importlib.metadata.version("executorch") if importlib.util.find_spec("torch") else None
except Exception:
    found["executorch"] = None
print(json.dumps({"arch": platform.machine(), "system": platform.platform(), "python": platform.python_version(),
                  "packages": found}))
"""


def check(profile: DeviceProfile, timeout: float = 120) -> dict:
    """Arch, OS, python and runtime versions of the device, with the pip command for what is missing."""
    from . import open_transport

    transport = open_transport(profile)
    result = transport.run([transport.python, "-c", CHECK_SCRIPT], timeout=timeout)
    report = result.json_result(f"device {profile.name}: {transport.python}")
    wanted = ["numpy"] + [PIP_NAMES[r] for r in profile.runtimes]
    missing = [p for p in wanted if not report["packages"].get(p)]
    report["missing"] = missing
    report["fix"] = fix_command(transport.python, missing)
    return report


def fix_command(python: str, missing: list[str]) -> str | None:
    return f"{python} -m pip install {' '.join(missing)}" if missing else None
