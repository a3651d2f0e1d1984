#!/usr/bin/env bash
# Build an emulated aarch64 "board" in ROOTFS: Debian bookworm arm64 userland (python3 3.11, as on Raspberry Pi OS
# bookworm) unpacked without emulation, the runner's aarch64 wheels installed from the host, and an ARM-looking
# /proc/cpuinfo. ROOTFS/python3 is then the device's Python: qemu-user running the arm64 interpreter as a
# Cortex-A72 (a Pi 4), so the runtimes pick the kernels a real Pi would use. Reach it over any sshd with a device
# profile whose `python` is that wrapper. Timings under emulation are ~300x slower than native and mean nothing.
#
# Each Raspberry Pi CPU also gets a board of its own, ROOTFS/boards/<cpu>/ (cortex-a53: Pi 3, cortex-a72: Pi 4,
# cortex-a76: Pi 5): the same files (hard links) with that CPU's /proc/cpuinfo, and two wrappers:
#   python3        qemu-aarch64-static as that CPU (what `edgecnn bench` times and scores on)
#   python3-count  qemu-aarch64 (the dynamic build: only it loads plugins) with devices/emulated/icount.c, which
#                  counts the aarch64 instructions between the runner's markers: a deterministic cost per inference
#
#   scripts/arm64-device.sh [ROOTFS]    (default: $EDGECNN_CACHE_DIR or ~/.cache/edgecnn, then arm64-board;
#                                        needs root for mmdebstrap; apt: qemu-user-static qemu-user mmdebstrap
#                                        arch-test gcc)
# Recipe and pitfalls: docs/devices.md, "The emulated board".
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
R=${1:-${EDGECNN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/edgecnn}/arm64-board}
PIP=${PIP:-python3 -m pip}
# The device side of a bundle (requirements.txt), pinned to the versions edgecnn tests on the host.
# ExecuTorch is not on the board: its Python runtime needs torch, whose import alone takes minutes under emulation.
WHEELS=${ARM64_WHEELS:-"numpy==2.4.6 onnxruntime==1.31.1 ai-edge-litert==2.3.0 ncnn==1.0.20261020"}
for tool in mmdebstrap qemu-aarch64-static; do
    command -v "$tool" >/dev/null || { echo "arm64-device: $tool is not installed (apt-get install qemu-user-static mmdebstrap arch-test)" >&2; exit 2; }
done
mkdir -p "$(dirname "$R")"
rm -rf "$R.partial"
# --variant=extract unpacks the .debs without running maintainer scripts, so nothing runs under emulation (5 s).
mmdebstrap --quiet --mode=auto --arch=arm64 --variant=extract --include=python3,libstdc++6 bookworm "$R.partial"
# Host pip installs the aarch64 wheels straight into the rootfs; older pips need every platform tag spelled out.
$PIP install --quiet --disable-pip-version-check --no-cache-dir --target "$R.partial/usr/local/lib/python3.11/dist-packages" \
    --no-warn-conflicts --only-binary=:all: --platform manylinux2014_aarch64 --platform manylinux_2_27_aarch64 \
    --platform manylinux_2_28_aarch64 --python-version 3.11 --implementation cp --abi cp311 $WHEELS

# onnxruntime's cpuinfo library segfaults on the host's x86 /proc/cpuinfo; qemu -L serves the rootfs's instead, so
# each board states its own CPU there (part numbers and features as the real chips report them).
cpuinfo() {  # PART VARIANT REVISION FEATURES MODEL
    local cpu
    for cpu in 0 1; do
        printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: %s\n\n' \
            "$cpu" "$4" "$2" "$1" "$3"
    done
    printf 'Hardware\t: BCM2835\nModel\t\t: %s\n' "$5"
}
A53=(0xd03 0x0 4 "fp asimd evtstrm crc32 cpuid" "emulated Raspberry Pi 3 (qemu-user, cortex-a53)")
A72=(0xd08 0x0 3 "fp asimd evtstrm crc32 cpuid" "emulated Raspberry Pi 4 (qemu-user, cortex-a72)")
A76=(0xd0b 0x4 1 "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp" \
     "emulated Raspberry Pi 5 (qemu-user, cortex-a76)")
mkdir -p "$R.partial/proc"
cpuinfo "${A72[@]}" > "$R.partial/proc/cpuinfo"
mkdir -p -m 1777 "$R.partial/tmp"
ROOT=$(cd "$R.partial/.." && pwd)/$(basename "$R")

# The instruction counter, built for this host (the plugin runs inside qemu, an x86-64 program here).
if command -v gcc >/dev/null; then
    gcc -shared -fPIC -O2 -o "$R.partial/icount.so" "$HERE/devices/emulated/icount.c"
fi
wrapper() {  # PATH CPU BOARD-ROOT [count]
    if [ "${4:-}" = count ]; then
        run="QEMU_CPU=$2 PYTHONHASHSEED=0 exec qemu-aarch64 -plugin \"$ROOT/icount.so\${EDGECNN_ICOUNT_PROFILE:+,profile=\$EDGECNN_ICOUNT_PROFILE}\" -L \"$3\" \"$3/usr/bin/python3\" \"\$@\""
    else
        run="QEMU_CPU=$2 exec qemu-aarch64-static -L \"$3\" \"$3/usr/bin/python3\" \"\$@\""
    fi
    cat > "$1" <<WRAP
#!/bin/sh
# The emulated board's python3 (aarch64, $2). Venvs do not work under qemu -L; packages live in
# /usr/local/lib/python3.11/dist-packages of the rootfs.
$run
WRAP
    chmod 755 "$1"
}
wrapper "$R.partial/python3" cortex-a72 "$ROOT"
for board in cortex-a53:A53 cortex-a72:A72 cortex-a76:A76; do
    cpu=${board%%:*}; var=${board##*:}[@]
    dir="$R.partial/boards/$cpu"
    mkdir -p "$dir/proc"
    for entry in "$R.partial"/*; do  # the same files, hard-linked: no second copy on disk
        case "$(basename "$entry")" in proc|boards|python3|icount.so) ;; *) cp -al "$entry" "$dir/" ;; esac
    done
    cpuinfo "${!var}" > "$dir/proc/cpuinfo"
    wrapper "$dir/python3" "$cpu" "$ROOT/boards/$cpu"
    [ -f "$R.partial/icount.so" ] && command -v qemu-aarch64 >/dev/null && wrapper "$dir/python3-count" "$cpu" "$ROOT/boards/$cpu" count
done
rm -rf "$R" && mv "$R.partial" "$R"
"$R/python3" -c "import platform, numpy, onnxruntime, ai_edge_litert, ncnn; print('arm64 device ready:', platform.machine(), 'onnxruntime', onnxruntime.__version__)"
