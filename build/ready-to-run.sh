#!/usr/bin/env bash
# Precompiles (ReadyToRun) the managed assemblies of built folders in place, so that each process started from them
# (a silo, a CLI call, a test host) loads native code instead of JIT-compiling Orleans, gRPC, OpenTelemetry and our own
# code at every start: a silo's start drops from about 4.8 to about 3 CPU-seconds. An image holds the same IL plus
# native code that the runtime uses instead of the JIT; an assembly that cannot be precompiled keeps its IL.
#   build/ready-to-run.sh FOLDER...
# Compiled images are kept in artifacts/r2r/<runtime version>/ under the SHA-256 of their input, so a rebuild
# recompiles only the assemblies that changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case "$(uname -m)" in x86_64) rid=linux-x64 arch=x64 ;; aarch64) rid=linux-arm64 arch=arm64 ;; *) echo "ready-to-run: $(uname -m) not supported, folders keep their IL" >&2; exit 0 ;; esac
runtime="$(dotnet --list-runtimes | awk '$1 == "Microsoft.NETCore.App" && $2 ~ /^10\./ { v = $2 } END { print v }')"
aspnet="$(dotnet --list-runtimes | awk '$1 == "Microsoft.AspNetCore.App" && $2 ~ /^10\./ { v = $2; d = $3 } END { gsub(/[\[\]]/, "", d); print d "/" v }')"
[[ -n "$runtime" ]] || { echo "ready-to-run: no .NET 10 runtime found, folders keep their IL" >&2; exit 0; }
framework="$(dirname "$(dirname "$aspnet")")/Microsoft.NETCore.App/$runtime"
packages="${NUGET_PACKAGES:-$(dotnet nuget locals global-packages -l | sed 's/^global-packages: //')}"
crossgen="${packages%/}/microsoft.netcore.app.crossgen2.$rid/$runtime/tools/crossgen2"
if [[ ! -x "$crossgen" ]]; then
  dotnet restore "$root/build/crossgen2/Crossgen2.proj" -p:Crossgen2Version="$runtime" -p:Crossgen2Rid="$rid" -nologo -v q >&2 ||
    { echo "ready-to-run: could not fetch Microsoft.NETCore.App.Crossgen2.$rid $runtime; folders keep their IL" >&2; exit 0; }
fi
cache="$root/artifacts/r2r/$runtime"
mkdir -p "$cache"

# The largest assemblies, which the suite's processes do not start with (Kubernetes hosting, Roslyn): KubernetesClient
# alone takes some 40 CPU-seconds to compile.
skip='(KubernetesClient|Microsoft\.CodeAnalysis.*)\.dll$'

compile() { # PATH: replace the assembly at PATH by its compiled image (from the cache when there)
  local path="$1" sum out
  sum="$(sha256sum "$path" | cut -c1-32)"
  # This file is a compiled image already (or cannot be compiled).
  [[ -e "$cache/$sum.done" ]] && { touch "$cache/$sum.done"; return 0; }
  out="$cache/$sum.dll"
  if [[ ! -e "$out" ]]; then
    if "$crossgen" "$path" -o "$out.$$" -r "$framework/*.dll" -r "$aspnet/*.dll" -r "$(dirname "$path")/*.dll" \
        --targetos:linux --targetarch:"$arch" -O >"$out.$$.log" 2>&1; then
      mv "$out.$$" "$out"; rm -f "$out.$$.log"
      touch "$cache/$(sha256sum "$out" | cut -c1-32).done" # the image itself needs no compiling
    else
      rm -f "$out.$$"; touch "$cache/$sum.done"; return 0 # not compilable (already native, a reference assembly, …)
    fi
  fi
  touch "$out"
  cp "$out" "$path.$$.r2r" && mv -f "$path.$$.r2r" "$path" # whole file or none, never half a file
}
export -f compile
export cache crossgen framework aspnet arch

# Images of assemblies no build has produced for two weeks go.
find "$cache" -type f -mtime +14 -delete
for folder in "$@"; do
  [[ -d "$folder" ]] && find "$folder" -maxdepth 1 -name '*.dll' | { grep -Ev "/$skip" || true; }
done | xargs -r -P "$(nproc)" -d '\n' -n 1 bash -c 'compile "$1"' _
