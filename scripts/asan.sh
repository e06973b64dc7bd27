#!/usr/bin/env bash
# The native addon under AddressSanitizer and UndefinedBehaviorSanitizer: builds dist/ with
# NATIVE_CFLAGS="-fsanitize=address,undefined ...", then runs vitest (arguments passed on; default the integration
# suite) with the sanitizers' runtimes preloaded into every process it starts (Node is not built with them).
# Every report goes to a file under the report directory (log_path), whichever process, worker or master, found
# it; the run fails if any file appears there, whatever vitest said.
#   npm run test:asan                                   the integration suite
#   FUZZ_RUNS=1000000 npm run test:asan -- test/integration/native-fuzz.test.ts
# ASAN_REPORTS: the report directory (default a new temp dir, kept when it has reports). dist/native/accept.node
# stays the sanitized build afterwards: `npm run build` makes the normal one again (it no longer loads without the
# preload).
set -euo pipefail
cd "$(dirname "$0")/.."

cc="${CC:-cc}"
asan="$("$cc" -print-file-name=libasan.so)"
ubsan="$("$cc" -print-file-name=libubsan.so)"
for lib in "$asan" "$ubsan"; do
  # -print-file-name echoes the bare name when the compiler has no such library.
  case "$lib" in
    /*) [ -e "$lib" ] || { echo "asan.sh: $lib does not exist" >&2; exit 2; } ;;
    *) echo "asan.sh: $cc has no $lib (Debian: apt-get install gcc, which brings libasan and libubsan)" >&2; exit 2 ;;
  esac
done

NATIVE_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -g" npm run build
if ! nm -D dist/native/accept.node | grep __asan_ >/dev/null; then  # not grep -q: under pipefail its early exit can fail nm (SIGPIPE)
  echo "asan.sh: dist/native/accept.node was not built with the sanitizers (see the build output above)" >&2
  exit 2
fi

reports="${ASAN_REPORTS:-$(mktemp -d "${TMPDIR:-/tmp}/node-uwsgi-asan.XXXXXX")}"
mkdir -p "$reports"
[ "$#" -gt 0 ] || set -- test/integration

status=0
# detect_leaks=0: Node does not free everything at exit, by design. halt_on_error: a process with a report stops
# there, so that the test it served fails too.
# Node starts several times slower with the sanitizers' runtime: the harness's waits (TEST_TIME_SCALE) and
# vitest's default timeouts are stretched.
scale="${TEST_TIME_SCALE:-4}"
LD_PRELOAD="$asan:$ubsan${LD_PRELOAD:+:$LD_PRELOAD}" \
  ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:log_path=$reports/asan" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan" \
  TEST_TIME_SCALE="$scale" \
  npx vitest run --testTimeout=$((30000 * scale)) --hookTimeout=$((60000 * scale)) "$@" || status=$?

found=$(find "$reports" -type f | wc -l)
if [ "$found" -gt 0 ]; then
  echo "asan.sh: $found sanitizer report(s) in $reports:" >&2
  for file in "$reports"/*; do
    echo "--- $file" >&2
    head -n 60 "$file" >&2
  done
  exit 1
fi
[ -n "${ASAN_REPORTS:-}" ] || rmdir "$reports"
echo "asan.sh: no sanitizer report (vitest exit status $status)"
exit "$status"
