#!/usr/bin/env bash
# Fuzzes the DNS serving path (the targets in fuzz/, cargo-fuzz on the
# nightly toolchain with AddressSanitizer) for a bounded time per target.
# Fails on any crash, failed check, hang, leak or memory blow-up, and says
# where the input that caused it is.
#
#   scripts/fuzz.sh [SECONDS]   # per target: $NETLET_FUZZ_SECONDS, else 40
#
# NETLET_FUZZ_TARGETS picks targets (default: wire handle handle_structured).
#
# All it writes goes under target/fuzz/: the build, the corpus each target
# grows (kept, so that the next run starts where this one stopped), the
# seeds, logs and failing inputs.
set -euo pipefail

cd "$(dirname "$0")/.."
seconds=${1:-${NETLET_FUZZ_SECONDS:-40}}
case $seconds in '' | *[!0-9]*)
  echo "usage: scripts/fuzz.sh [SECONDS]" >&2
  exit 2
  ;;
esac
read -ra targets <<<"${NETLET_FUZZ_TARGETS:-wire handle handle_structured}"
work=target/fuzz

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz: needs the nightly toolchain (rustup toolchain install nightly --profile minimal)" >&2
  exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
# libfuzzer-sys compiles libFuzzer's C++ with `c++`, which Debian's clang
# package (what install-deps.sh installs) does not provide; its clang++ will do.
if [ -z "${CXX:-}" ] && ! command -v c++ >/dev/null && command -v clang++ >/dev/null; then
  export CXX=clang++
fi

fuzz() { cargo +nightly fuzz "$1" --target-dir "$work" "${@:2}"; }

fuzz build
rm -rf "$work/seeds"
fuzz/seeds.sh "$work/seeds"

failed=()
for t in "${targets[@]}"; do
  corpus=$work/corpus/$t artifacts=$work/artifacts/$t/ log=$work/logs/$t.log
  mkdir -p "$corpus" "$artifacts" "$work/logs"
  # The first corpus directory is where libFuzzer adds what it finds; the
  # seeds are read only. The structured target reads its own encoding, not
  # DNS messages, so neither seeds nor the dictionary apply to it.
  corpora=("$corpus") options=()
  if [ "$t" != handle_structured ]; then
    corpora+=("$work/seeds")
    options+=(-dict=fuzz/dns.dict)
  fi
  touch "$work/started"
  echo "fuzz: $t for ${seconds}s (log: $log)"
  if fuzz run "$t" "${corpora[@]}" -- "${options[@]}" -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 \
    -artifact_prefix="$artifacts" -print_final_stats=1 >"$log" 2>&1; then
    grep -E '^Done [0-9]+ runs' "$log" | sed "s/^/fuzz: $t: /"
    continue
  fi
  failed+=("$t")
  # What went wrong, without the stack traces (they are in the log).
  { grep -m 1 -A3 "panicked at" "$log"; grep -m 1 "^SUMMARY: " "$log"; } || tail -n 30 "$log"
  found=$(find "$artifacts" -type f -newer "$work/started")
  [ -n "$found" ] || echo "fuzz: $t failed without leaving an input; see $log"
  for input in $found; do
    echo "fuzz: $t: failing input $input ($(wc -c <"$input") bytes):"
    od -An -tx1 -v "$input" | head -n 16
    echo "  reproduce: cargo +nightly fuzz run --target-dir $work $t $input"
    [ "$t" != handle_structured ] || echo "  as a query: cargo +nightly fuzz fmt --target-dir $work $t $input"
  done
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: no failures in ${targets[*]} (${seconds}s each)"
