#!/usr/bin/env bash
# Build an emulated aarch64 "board" in ROOTFS: Debian bookworm arm64 userland (python3 3.11, as on Raspberry Pi OS
# bookworm) unpacked without emulation, the runner's aarch64 wheels installed from the host, and an ARM-looking
# /proc/cpuinfo. ROOTFS/python3 is then the device's Python: qemu-user running the arm64 interpreter as a
# Cortex-A72 (a Pi 4), so the runtimes pick the kernels a real Pi would use. Reach it over any sshd with a device
# profile whose `python` is that wrapper. Timings under emulation are ~300x slower than native and mean nothing.
#
#   scripts/arm64-device.sh ROOTFS      (needs root for mmdebstrap; apt: qemu-user-static mmdebstrap arch-test)
# Recipe and pitfalls: ../shared/arm-ssh-target.md (section 2).
set -euo pipefail
R=${1:?usage: arm64-device.sh ROOTFS}
PIP=${PIP:-python3 -m pip}
# The device side of a bundle (requirements.txt), pinned to the versions edgecnn tests on the host.
WHEELS=${ARM64_WHEELS:-"numpy==2.4.6 onnxruntime==1.31.1 ai-edge-litert==2.3.0"}
for tool in mmdebstrap qemu-aarch64-static; do
    command -v "$tool" >/dev/null || { echo "arm64-device: $tool is not installed (apt-get install qemu-user-static mmdebstrap arch-test)" >&2; exit 2; }
done
rm -rf "$R.partial"
# --variant=extract unpacks the .debs without running maintainer scripts, so nothing runs under emulation (5 s).
mmdebstrap --quiet --mode=auto --arch=arm64 --variant=extract --include=python3,libstdc++6 bookworm "$R.partial"
# Host pip installs the aarch64 wheels straight into the rootfs; older pips need every platform tag spelled out.
$PIP install --quiet --disable-pip-version-check --no-cache-dir --target "$R.partial/usr/local/lib/python3.11/dist-packages" \
    --no-warn-conflicts --only-binary=:all: --platform manylinux2014_aarch64 --platform manylinux_2_27_aarch64 \
    --platform manylinux_2_28_aarch64 --python-version 3.11 --implementation cp --abi cp311 $WHEELS
# onnxruntime's cpuinfo library segfaults on the host's x86 /proc/cpuinfo; qemu -L serves this file instead.
mkdir -p "$R.partial/proc"
for cpu in 0 1; do
    printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n' "$cpu"
done > "$R.partial/proc/cpuinfo"
printf 'Hardware\t: BCM2835\nModel\t\t: emulated Raspberry Pi 4 (qemu-user, cortex-a72)\n' >> "$R.partial/proc/cpuinfo"
mkdir -p -m 1777 "$R.partial/tmp"
ROOT=$(cd "$R.partial/.." && pwd)/$(basename "$R")
cat > "$R.partial/python3" <<WRAP
#!/bin/sh
# The emulated board's python3 (aarch64, Cortex-A72). Venvs do not work under qemu -L; packages live in
# /usr/local/lib/python3.11/dist-packages of the rootfs.
QEMU_CPU=cortex-a72 exec qemu-aarch64-static -L "$ROOT" "$ROOT/usr/bin/python3" "\$@"
WRAP
chmod 755 "$R.partial/python3"
rm -rf "$R" && mv "$R.partial" "$R"
"$R/python3" -c "import platform, numpy, onnxruntime, ai_edge_litert; print('arm64 device ready:', platform.machine(), 'onnxruntime', onnxruntime.__version__)"
