#!/usr/bin/env bash
# Runs every Go fuzz target of the module for FUZZTIME each (default 30s),
# one after another, and prints a Markdown table of executions and crashes.
# With KEEP_CORPUS=1 the inputs the fuzzer found interesting are copied
# from the Go cache into each package's testdata/fuzz/<target>/, to commit.
# FUZZ_PKGS limits the packages (default: every package with a Fuzz func),
# FUZZ_TARGETS (an extended regexp) the targets.
set -uo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-30s}
cache="$(go env GOCACHE)/fuzz"
pkgs=${FUZZ_PKGS:-$(grep -l '^func Fuzz' --include='*_test.go' -r . | xargs -n1 dirname | sort -u)}
results=$(mktemp)
failed=0
for dir in $pkgs; do
  import=$(cd "$dir" && go list .)
  for target in $(grep -h -o '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go | sed 's/^func //' | sort -u | grep -E "${FUZZ_TARGETS:-.}"); do
    log=$(mktemp)
    echo "== $target ($import) for $FUZZTIME" >&2
    ${FUZZ_NICE:-} go test -run '^$' -timeout 0 -parallel "${FUZZ_WORKERS:-1}" -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$dir" >"$log" 2>&1
    rc=$?
    execs=$(grep -o 'execs: [0-9]*' "$log" | tail -1 | awk '{print $2}')
    interesting=$(grep -o 'new interesting: [0-9]*' "$log" | tail -1 | awk '{print $3}')
    crashes=0
    if [ $rc -ne 0 ]; then
      crashes=1; failed=1
      tail -40 "$log" >&2
    fi
    if [ "${KEEP_CORPUS:-0}" = 1 ] && [ -d "$cache/$import/$target" ]; then
      mkdir -p "$dir/testdata/fuzz/$target"
      cp -n "$cache/$import/$target"/* "$dir/testdata/fuzz/$target/" 2>/dev/null || true
    fi
    echo "| \`$target\` | \`${dir#./}\` | $FUZZTIME | ${execs:-0} | ${interesting:-0} | $crashes |" >>"$results"
    rm -f "$log"
  done
done
echo "| target | package | time | executions | new interesting | crashes |"
echo "|---|---|---|---|---|---|"
cat "$results"
rm -f "$results"
exit $failed
