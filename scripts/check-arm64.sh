#!/usr/bin/env bash
# Type-checks the whole workspace for 64-bit ARM (edge and IoT nodes):
#
#   scripts/check-arm64.sh [extra cargo check arguments]
#
# It needs the aarch64 standard library (`rustup target add
# aarch64-unknown-linux-gnu`). Without it the check is skipped, with a
# message, and the script exits 0: rustup downloads the standard library
# from the Rust project's servers, which not every build machine reaches.
# Crates with C parts (ring) compile them for the target even in `cargo
# check`: with Debian's gcc-aarch64-linux-gnu that compiler is used,
# otherwise clang with --target.
set -euo pipefail

cd "$(dirname "$0")/.."
target=aarch64-unknown-linux-gnu

if ! command -v rustup >/dev/null; then
  echo "check-arm64: skipped: rustup is not installed, so the $target standard library cannot be looked for"
  exit 0
fi
if ! rustup target list --installed | grep -qx "$target"; then
  echo "check-arm64: skipped: the $target standard library is not installed"
  echo "  (rustup target add $target installs it; it needs to reach the Rust project's servers)"
  exit 0
fi

cc_var=CC_${target//-/_}
cflags_var=CFLAGS_${target//-/_}
if [[ -z ${!cc_var:-} ]] && ! command -v aarch64-linux-gnu-gcc >/dev/null; then
  if command -v clang >/dev/null; then
    export "$cc_var=clang"
    export "$cflags_var=--target=aarch64-linux-gnu ${!cflags_var:-}"
    echo "check-arm64: no aarch64-linux-gnu-gcc (Debian: gcc-aarch64-linux-gnu); C parts are compiled with clang --target=aarch64-linux-gnu"
  else
    echo "check-arm64: warning: no C compiler for $target (Debian: gcc-aarch64-linux-gnu); crates with C parts may fail" >&2
  fi
fi

echo "check-arm64: cargo check --workspace --target $target $*"
exec cargo check --workspace --target "$target" "$@"
