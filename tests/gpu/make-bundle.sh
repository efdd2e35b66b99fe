#!/usr/bin/env bash
# Builds the GPU bundle: self-contained linux-x64 publishes of the CLI (cli/refalign) and the silo (silo/RefAlign.Silo)
# that carry no libtorch of their own (-p:TorchBackend=external), only TorchSharp's packaged libLibTorchSharp.so, in one
# xz archive small enough to carry to a GPU machine that has no .NET. There they load the machine's PyTorch libtorch with
# --libtorch DIR / Silo:LibTorchPath / REFALIGN_LIBTORCH (docs/gpu.md).
#
#   tests/gpu/make-bundle.sh [--out FILE] [--native-src DIR] [--quick]
#
# --out         the archive (default artifacts/gpu/refalign-gpu-linux-x64.tar.xz; artifacts/ is git-ignored)
# --native-src  TorchSharp's native source to stage beside it (default ../shared/vendor/TorchSharp-0.107.0-native when
#               present), copied to artifacts/gpu/native-src so the device check can rebuild the shim there.
# --quick       xz's fast mode with the same 64 MiB window: about 3 times less CPU for an archive about 13 % larger
#               (the tests use it; a quick archive under a bound puts the default one under it too).
# Prints the archive's path and size. Builds in artifacts/gpu/build (its own obj/bin: the RID-specific restore of a
# publish must not rewrite the obj/ folders of the ordinary build).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="$root/artifacts/gpu/refalign-gpu-linux-x64.tar.xz"
native_src="$root/../shared/vendor/TorchSharp-0.107.0-native"
level="-9"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --native-src) native_src="$2"; shift 2 ;;
    --quick) level="--lzma2=preset=1,dict=64MiB"; shift ;;
    *) echo "usage: $0 [--out FILE] [--native-src DIR] [--quick]" >&2; exit 2 ;;
  esac
done
command -v xz >/dev/null || { echo "make-bundle: xz is not installed" >&2; exit 2; }
build="$root/artifacts/gpu/build"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
bundle="$stage/refalign-gpu"

# No analyzers: the ordinary build runs them on these same sources, and they change nothing in the compiled code.
publish() { # name project
  dotnet publish "$root/$2" -c Release -r linux-x64 --self-contained true -p:TorchBackend=external \
    -p:SatelliteResourceLanguages=en -p:DebugType=none -p:RunAnalyzers=false \
    --artifacts-path "$build" -o "$bundle/$1" -nologo -v quiet -clp:ErrorsOnly >&2
}
publish cli clients/RefAlign.Cli/RefAlign.Cli.csproj
publish silo silo/RefAlign.Silo/RefAlign.Silo.csproj

# No libtorch may travel: the GPU machine's own is the one to load (and a second copy would abort libtorch).
if found="$(find "$bundle" \( -name 'libtorch*.so*' -o -name 'libc10*.so*' -o -name 'libgomp*.so*' \) -print -quit)" && [[ -n "$found" ]]; then
  echo "make-bundle: a libtorch file reached the bundle: $found" >&2; exit 1
fi
for app in cli silo; do
  [[ -f "$bundle/$app/libLibTorchSharp.so" ]] || { echo "make-bundle: $app has no libLibTorchSharp.so" >&2; exit 1; }
done
# The runtime's debugger, crash-dump, LTTng and standalone-GC libraries load only on request (a debugger, a crash,
# DOTNET_GCName); a self-contained app starts without them.
for app in cli silo; do
  rm -f "$bundle/$app"/{libmscordaccore.so,libmscordbi.so,libcoreclrtraceptprovider.so,libclrgc.so,libclrgcexp.so,createdump}
done
find "$bundle" -name '*.pdb' -delete

mkdir -p "$(dirname "$out")"
# The two publishes share most files (the runtime, ASP.NET, the packages): in name order the second copy of each file
# follows the first closely enough for xz's 64 MiB window to store it as a reference (82 MB unordered, about 51 ordered).
(cd "$stage" && find refalign-gpu -type f | awk -F/ '{ print $NF "\t" $0 }' | sort | cut -f2 > "$stage/order")
(cd "$stage" && find refalign-gpu -type d) > "$stage/dirs"
tar -C "$stage" --no-recursion -cf - -T "$stage/dirs" -T "$stage/order" | xz -T1 "$level" > "$out.tmp"
mv "$out.tmp" "$out"
if [[ -d "$native_src/src/Native" ]]; then
  rm -rf "$root/artifacts/gpu/native-src"
  mkdir -p "$root/artifacts/gpu/native-src"
  cp -r "$native_src/." "$root/artifacts/gpu/native-src/"
fi
echo "$out $(stat -c %s "$out") bytes"
