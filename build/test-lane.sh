#!/usr/bin/env bash
# One lane of the test command: the given test projects one after another, each writing its .trx into RESULTS.
#   build/test-lane.sh RESULTS FILTER PROJECT...   (FILTER may be empty)
set -uo pipefail
results="$1" filter="$2"; shift 2
code=0
for project in "$@"; do
  args=(test "tests/$project" --no-build --logger trx --results-directory "$results")
  [[ -n "$filter" ]] && args+=(--filter "$filter")
  dotnet "${args[@]}" || code=$?
done
exit "$code"
