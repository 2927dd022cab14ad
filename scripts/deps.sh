#!/usr/bin/env bash
# Installs what ptkit's build and tests need on Debian 12, only what is
# missing. When everything is present it only asks dpkg, once, and returns.
set -euo pipefail

packages=(
  cmake ninja-build     # build
  g++ clang             # both compilers the tests run with
  libgtest-dev libgmock-dev
  libclang-rt-14-dev    # clang's sanitizer and builtins runtime
  libunicorn-dev        # Unicorn: QEMU's MMU in-process, the AArch64 walker's oracle
  libcli11-dev libtomlplusplus-dev nlohmann-json3-dev libfmt-dev libelf-dev  # the ptkit tool
  libbenchmark-dev      # bench/: Google Benchmark
  qemu-system-x86 binutils  # boot/: x86-64 test kernels (ctest label qemu)
  grub-pc-bin grub-common xorriso mtools  # boot/: the x86-64 kernel booted by GRUB from an ISO
  qemu-system-arm gcc-aarch64-linux-gnu g++-aarch64-linux-gnu      # boot/: AArch64 test kernels
  qemu-system-misc gcc-riscv64-linux-gnu g++-riscv64-linux-gnu     # boot/: RISC-V test kernels
  xen-hypervisor-4.17-amd64  # boot/: the Xen PV guest, booted as dom0 of a real Xen under QEMU
)

# One dpkg-query for all packages; those not installed (or unknown) are missing.
mapfile -t installed < <(dpkg-query -W -f='${db:Status-Status} ${Package}\n' "${packages[@]}" \
  2>/dev/null | awk '$1 == "installed" { print $2 }')
missing=()
for p in "${packages[@]}"; do
  [[ " ${installed[*]-} " == *" $p "* ]] || missing+=("$p")
done
# dpkg can say "installed" while a tool is gone (e.g. removed by hand): check
# the commands the build runs, too.
for tool in cmake:cmake ninja:ninja-build g++:g++ clang++:clang; do
  command -v "${tool%%:*}" >/dev/null || [[ " ${missing[*]-} " == *" ${tool#*:} "* ]] ||
    missing+=("${tool#*:}")
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "deps: installing ${missing[*]}"
sudo=()
if (($(id -u) != 0)); then
  sudo=(sudo)
fi
"${sudo[@]}" apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
