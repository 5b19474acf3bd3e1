#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ with clang (ASan + UBSan, build-fuzz/, no CUDA) and runs
# each for a bounded time, two at a time, starting from the seeds in fuzz/corpus/<target>/.
#
#   scripts/fuzz.sh [seconds-per-target] [target ...]     default: 600 s, every target
#
# New inputs that reach new code go to build-fuzz/corpus/<target>/ (kept between runs); a crash,
# leak, sanitizer report or timeout stops that target, keeps its input under fuzz/crashes/ and
# fails the script. Turn each kept input into a regression test under tests/ (see
# docs/reliability.md). HASTE_FUZZ_JOBS sets how many targets run at once (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
build_dir=build-fuzz
jobs=${HASTE_FUZZ_JOBS:-2}

# Longest input per target: big enough for every seed (a small checkpoint is ~4 KB), small
# enough that the fuzzer mutates structure rather than filling space.
declare -A max_len=([xc]=4096 [xc_split]=4096 [npy]=2048 [safetensors]=8192 [checkpoint]=8192
                    [config]=4096 [raw_text]=4096 [vocabulary]=4096 [binary_cache]=1024)

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for source in fuzz/*_fuzz.cpp; do
    name=$(basename "$source" .cpp)
    targets+=("${name%_fuzz}")
  done
fi

cmake_bin=$(cd / && python3 -c "import cmake, os; print(os.path.join(cmake.CMAKE_BIN_DIR, 'cmake'))")
launcher=()
command -v ccache > /dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
mkdir -p "$build_dir"
CC=clang CXX=clang++ "$cmake_bin" -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DHASTE_FUZZ=ON -DHASTE_CUDA=OFF -DHASTE_PYTHON=OFF -DHASTE_TESTS=OFF "${launcher[@]}" \
  > "$build_dir/configure.log" || { cat "$build_dir/configure.log"; exit 1; }
"$cmake_bin" --build "$build_dir" -j "$(nproc)" --target "${targets[@]/%/_fuzz}"

mkdir -p "$build_dir/logs" fuzz/crashes
# run_target NAME MAX_LEN: prints "ok NAME" or "FAILED NAME".
run_target() {
  local target=$1 length=$2
  local corpus="$build_dir/corpus/$target" log="$build_dir/logs/$target.log"
  mkdir -p "$corpus" "fuzz/crashes/$target"
  # The targets write each input to a scratch file under $TMPDIR: a tmpfs where there is one.
  local scratch
  scratch=$(mktemp -d /dev/shm/haste-fuzz-XXXXXX 2> /dev/null || mktemp -d)
  # The first corpus folder receives new inputs; the seeds in the repo are only read.
  if TMPDIR=$scratch nice -n 10 "$build_dir/fuzz/${target}_fuzz" "$corpus" "fuzz/corpus/$target" \
    -max_total_time="$seconds" -max_len="$length" -timeout=20 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="fuzz/crashes/$target/" > "$log" 2>&1; then
    echo "ok $target"
  else
    echo "FAILED $target"
  fi
  rm -rf "$scratch"
}
export -f run_target
export build_dir seconds
echo "fuzzing ${#targets[@]} targets for ${seconds}s each, $jobs at a time"
results=$(for target in "${targets[@]}"; do echo "$target ${max_len[$target]:-4096}"; done |
  xargs -P "$jobs" -L 1 bash -c 'run_target "$@"' run_target)

# Summary: runs and speed from libFuzzer's final stats.
status=0
printf '%-14s %8s %12s %9s  %s\n' target seconds runs exec/s result
for target in "${targets[@]}"; do
  log="$build_dir/logs/$target.log"
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  elapsed=$(sed -n 's/.*Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  result=$(grep -E "^(ok|FAILED) $target( |$)" <<< "$results" | cut -d' ' -f1)
  rate=$([ -n "$runs" ] && [ -n "$elapsed" ] && [ "$elapsed" -gt 0 ] && echo $((runs / elapsed)) || echo -)
  printf '%-14s %8s %12s %9s  %s\n' "$target" "${elapsed:--}" "${runs:--}" "$rate" "$result"
  if [ "$result" != ok ]; then
    status=1
    echo "---- $target: last lines of $log" >&2
    grep -E -A25 "^==[0-9]+==ERROR|runtime error|deadly signal|Test unit written" "$log" | head -60 >&2 ||
      tail -30 "$log" >&2
  fi
done
[ "$status" -eq 0 ] || echo "fuzzing found problems: inputs kept under fuzz/crashes/" >&2
exit "$status"
