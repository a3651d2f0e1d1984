#!/usr/bin/env bash
# Create .venv and install edgecnn with its test extras. Safe to re-run; used by the README and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# Fashion-MNIST, the offline dataset of the quick start and the tests, comes from Debian's package.
# openssh-server: the SSH tests start their own sshd on 127.0.0.1 as the "device" (no system sshd is enabled).
NEED=""
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || NEED="$NEED dataset-fashion-mnist"
[ -x /usr/sbin/sshd ] || NEED="$NEED openssh-server"
# qemu-user-static + mmdebstrap + arch-test: the emulated aarch64 board of the bench tests (scripts/arm64-device.sh);
# qemu-user (the dynamic build, the only one that loads plugins) and gcc: its instruction counter.
command -v qemu-aarch64-static >/dev/null || NEED="$NEED qemu-user-static"
command -v qemu-aarch64 >/dev/null || NEED="$NEED qemu-user"
command -v gcc >/dev/null || NEED="$NEED gcc libc6-dev"
command -v mmdebstrap >/dev/null || NEED="$NEED mmdebstrap arch-test"
command -v ssh >/dev/null || NEED="$NEED openssh-client"
# tcmalloc: the training commands re-execute under it on CPU (~10 % faster steps; edgecnn/malloc.py).
[ -f "/usr/lib/$(uname -m)-linux-gnu/libtcmalloc_minimal.so.4" ] || NEED="$NEED libtcmalloc-minimal4"
# Headless Chromium: the report test opens the HTML report in a real browser and takes a screenshot.
command -v chromium-headless-shell >/dev/null || command -v chromium >/dev/null || NEED="$NEED chromium-headless-shell"
if [ -n "$NEED" ] && command -v apt-get >/dev/null; then
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends $NEED >/dev/null
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# Pinned here, not in pyproject: on this project's machines pip takes these wheels from local disk; an unpinned
# `torch` could pull a different multi-GB build.
.venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
# The export stack at the versions whose API sequences were checked (docs/export.md).
.venv/bin/python -m pip install -q onnx==1.23.2 onnxscript==0.7.2 onnxruntime==1.31.1 onnxsim==0.8.1 \
    onnxconverter-common==1.16.0 ray==2.60.0 litert-torch==0.10.0 pnnx==20261020 ncnn==1.0.20261020 executorch==1.5.1
.venv/bin/python -m pip install -q -e '.[dev]'
