#!/usr/bin/env bash
# The test command (`./refalign test`): installs what the suite needs, builds once, runs the suite and ends with
# "N passed, N failed[, N skipped]".
#   --fast          the fast tier only (compute, client, CLI, in-process cluster): no silo processes, Redis or Chromium
#   --filter EXPR   a dotnet test filter (ANDed with --fast), e.g. "FullyQualifiedName~FreezeTests"
#   --repeat N      run N times and print each test's failures and duration range (flake hunting)
#   --no-install    do not install missing packages (fail instead)
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

fast=0 repeat=1 filter="" install=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --fast) fast=1 ;;
    --filter) filter="$2"; shift ;;
    --repeat) repeat="$2"; shift ;;
    --no-install) install=0 ;;
    -h|--help) sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "refalign test: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ "$repeat" =~ ^[1-9][0-9]*$ ]] || { echo "refalign test: --repeat takes a positive number, not '$repeat'" >&2; exit 2; }

fail_setup() { echo "$1" >&2; echo "0 passed, 1 failed"; exit 1; }

# ---- set-up: the Debian packages of build/test-packages.txt that are missing ----
missing=()
while read -r pkg marker _; do
  [[ -z "$pkg" || "$pkg" == \#* ]] && continue
  [[ -e "$marker" ]] || missing+=("$pkg")
done < build/test-packages.txt
if [[ ${#missing[@]} -gt 0 ]]; then
  [[ $install -eq 1 ]] || fail_setup "missing packages: ${missing[*]} (run without --no-install to install them)"
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo -n"
  echo "installing ${missing[*]} (apt-get)…"
  log="$(mktemp)"
  if ! $sudo apt-get update -qq >"$log" 2>&1; then
    fail_setup "could not install ${missing[*]}: apt-get update failed: $(tail -n 3 "$log" | tr '\n' ' ')"
  fi
  for pkg in "${missing[@]}"; do
    if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$pkg" >"$log" 2>&1; then
      fail_setup "could not install $pkg: $(grep -E '^E:' "$log" | head -n 2 | tr '\n' ' ')"
    fi
  done
  rm -f "$log"
fi

# ---- build once ----
echo "building (Debug)…"
if ! dotnet build -nologo -v q -clp:ErrorsOnly; then echo "0 passed, 1 failed"; exit 1; fi
# The suite starts some sixty silos, two hundred CLI calls and five test hosts: precompiled once, they do not each
# JIT-compile the same Orleans, gRPC and TorchSharp code again.
echo "precompiling (ReadyToRun)…"
build/ready-to-run.sh silo/RefAlign.Silo/bin/Debug/net10.0 clients/RefAlign.Cli/bin/Debug/net10.0 tests/*/bin/Debug/net10.0 ||
  echo "ReadyToRun precompilation failed; the suite runs on IL (slower, same results)"

filters=()
[[ $fast -eq 1 ]] && filters+=("Tier!=Process")
[[ -n "$filter" ]] && filters+=("$filter")
filter_expr="$(IFS='&'; echo "${filters[*]}")"

# Many processes share few cores here (test hosts, silo processes, CLI runs). One tensor thread each keeps libtorch's
# spinning worker threads from fighting over the cores, and tiered compilation makes each of the suite's silo starts
# cheaper; every process of a run gets the same settings, so the twins a test compares stay bitwise equal.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" DOTNET_TieredCompilation="${DOTNET_TieredCompilation:-1}"

# Two lanes, each a chain of test projects: the process-cluster tests (mostly waiting on silos, failovers and freezes)
# beside the CPU-bound ones, so the longest chain starts first and the waits are not idle cores.
# In the fast tier the compute tests are the longest chain.
if [[ $fast -eq 1 ]]; then
  first="RefAlign.Compute.Tests RefAlign.Silo.Tests RefAlign.Client.Tests" second="RefAlign.Cli.Tests RefAlign.Cluster.Tests"
else
  first="RefAlign.Cluster.Tests" second="RefAlign.Cli.Tests RefAlign.Compute.Tests RefAlign.Silo.Tests RefAlign.Client.Tests"
fi
lanes="build/test-lane.sh \"\$1\" \"\$2\" $first & a=\$!
build/test-lane.sh \"\$1\" \"\$2\" $second & b=\$!
wait \$a; x=\$?; wait \$b; y=\$?; [[ \$x -eq 0 ]] && exit \$y; exit \$x"

# The suite runs in its own process group: Ctrl-C ends it and every silo, Redis and Chromium it started.
pgid=""
stop() {
  if [[ -n "$pgid" ]]; then
    kill -TERM -- "-$pgid" 2>/dev/null
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 -- "-$pgid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pgid" 2>/dev/null
  fi
  echo "interrupted"; exit 130
}
trap stop INT TERM

results="$root/TestResults/run-$(date -u +%Y%m%dT%H%M%SZ)"
status=0 passed=0 failed=0 skipped=0
started=$SECONDS
for ((i = 1; i <= repeat; i++)); do
  dir="$results/$i"; mkdir -p "$dir"
  [[ $repeat -gt 1 ]] && echo "==== run $i of $repeat"
  setsid bash -c "$lanes" lanes "$dir" "$filter_expr" > >(tee "$dir/console.log") 2>&1 &
  pgid=$!
  wait "$pgid"; code=$?
  pgid=""
  [[ $code -ne 0 ]] && status=$code
  # One "Passed!/Failed!  - Failed: F, Passed: P, Skipped: S, Total: T" line per test assembly.
  read -r p f s < <(grep -E '(Passed|Failed)!\s+-\s+Failed:' "$dir/console.log" | sed -E 's/.*Failed:\s*([0-9]+), Passed:\s*([0-9]+), Skipped:\s*([0-9]+).*/\2 \1 \3/' |
    awk '{p+=$1; f+=$2; s+=$3} END {print p+0, f+0, s+0}')
  if [[ $code -ne 0 && $f -eq 0 ]]; then f=1; echo "dotnet test exited with $code (a crashed test host?)"; fi
  if ! grep -qE '(Passed|Failed)!\s+-\s+Failed:' "$dir/console.log"; then echo "no test assembly reported results"; status=1; fi
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
done
trap - INT TERM
echo "wall time: $((SECONDS - started)) s; results: ${results#"$root/"}"
if [[ $repeat -gt 1 ]]; then python3 build/test-report.py "$results"; fi
if [[ $skipped -gt 0 ]]; then echo "$passed passed, $failed failed, $skipped skipped"; else echo "$passed passed, $failed failed"; fi
[[ $failed -eq 0 && $status -eq 0 ]]
