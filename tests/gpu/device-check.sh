#!/usr/bin/env bash
# The GPU device check, in one call on a lent GPU machine (no .NET, no network; PyTorch with CUDA, CMake, ninja, g++,
# nvcc), from the repository root, with the bundle of tests/gpu/make-bundle.sh carried in artifacts/gpu/:
#
#   tests/gpu/device-check.sh                                   # on the GPU machine: results in $OUT
#   tests/gpu/device-check.sh --dry-run --libtorch DIR          # here: every step on the CPU, DIR a CPU libtorch lib folder
#
# Steps (each recorded in $OUT/results.json as it ends, with its log under $OUT/logs, so a cut-off run still reports):
#   env        PyTorch's lib/ and include/, versions, the GPU
#   shim       the bundle's packaged libLibTorchSharp.so against that libtorch; if it does not bind, a shim carried from
#              an earlier call (artifacts/gpu/libLibTorchSharp.so), else one built from artifacts/gpu/native-src with
#              CMake/ninja against PyTorch (returned as $OUT/libLibTorchSharp.so for the next call to carry)
#   logprobs   tiny and small Llama, Qwen2 and GPT-NeoX presets: CPU vs the device, and vs transformers on the device
#   train      one step of DPO, Sr-DPO (LoRA) and RefAlign: losses and updated weights, CPU vs the device
#   cluster    a learner silo on the device and a generator silo on the CPU, a few RefAlign steps through the gRPC client,
#              /healthz device memory before and after
#   tensorboard  the cluster run's event file read by the tensorboard package
#   bench      bench generation / bench learner on the device and on the CPU (--json), last: the longest step
# Options: --dry-run (device cpu), --libtorch DIR (else PyTorch's lib/), --out DIR (else $OUT, else artifacts/gpu/dry-run),
# --budget SECONDS (later steps are skipped, and say so, once it is spent; default 420), --bundle FILE.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$root/tests/gpu"
dry=0; libtorch=""; budget=420; bundle="$root/artifacts/gpu/refalign-gpu-linux-x64.tar.xz"; out="${OUT:-}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) dry=1; shift ;;
    --libtorch) libtorch="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --budget) budget="$2"; shift 2 ;;
    --bundle) bundle="$2"; shift 2 ;;
    *) echo "usage: $0 [--dry-run] [--libtorch DIR] [--out DIR] [--budget SECONDS] [--bundle FILE]" >&2; exit 2 ;;
  esac
done
[[ -n "$out" ]] || out="$root/artifacts/gpu/dry-run"
mkdir -p "$out/logs"; out="$(cd "$out" && pwd)"
results="$out/results.json"; rm -f "$results"
PY="${PYTHON:-python3}"
helper() { "$PY" "$here/device_check.py" "$@"; }
record() { helper record "$results" "$@"; }
started=$SECONDS
spent() { (( SECONDS - started >= budget )); }
log() { echo "[$(date -u +%H:%M:%S) +$((SECONDS - started))s] $*" | tee -a "$out/logs/device-check.log" >&2; }
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
device="cuda:0"; (( dry )) && device="cpu"
# Each comparison has a "cpu" side and a "device" side (in a dry run both on the CPU, written apart all the same).
on() { [[ $1 == cpu ]] && echo cpu || echo "$device"; }
record mode ok dry_run="$dry" device="$device" budget_s="$budget"

# ---- env: the libtorch to load, what it is, and the machine -------------------------------------------------------
torch_dir=""
if "$PY" -c "import torch" 2>/dev/null; then
  torch_dir="$("$PY" -c 'import os, torch; print(os.path.dirname(torch.__file__))')"
  "$PY" - > "$out/env.json" 2>"$out/logs/env.log" <<'EOF'
import json, os, platform, torch
info = {"python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(), "torch_dir": os.path.dirname(torch.__file__)}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(gpu=p.name, gpu_memory_bytes=p.total_memory, capability=f"{p.major}.{p.minor}")
try:
    import transformers; info["transformers"] = transformers.__version__
except ImportError: info["transformers"] = None
try:
    import tensorboard; info["tensorboard"] = tensorboard.__version__
except ImportError: info["tensorboard"] = None
print(json.dumps(info))
EOF
fi
[[ -n "$libtorch" ]] || libtorch="$torch_dir/lib"
libtorch="$(cd "$libtorch" 2>/dev/null && pwd)" || { record env failed error="no libtorch folder (give --libtorch DIR, or run where python3 imports torch)"; exit 1; }
# PyTorch wheels find their CUDA libraries through their own RUNPATH; older layouts need them on the search path.
nv="$(ls -d "$torch_dir"/../nvidia/*/lib "$torch_dir"/../nvidia/*/*/lib 2>/dev/null | tr '\n' ':')"
export LD_LIBRARY_PATH="$libtorch:${nv}${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv > "$out/logs/nvidia-smi.csv" 2>&1 || true
record env ok libtorch="$libtorch" torch_dir="$torch_dir" nproc="$(nproc)" info@="$out/env.json"
log "libtorch: $libtorch; device: $device"

# ---- the bundle ---------------------------------------------------------------------------------------------------
[[ -f "$bundle" ]] || { record bundle failed error="no bundle at $bundle (run tests/gpu/make-bundle.sh and carry it)"; exit 1; }
tar -C "$work" -xJf "$bundle" || { record bundle failed error="cannot unpack $bundle"; exit 1; }
cli="$work/refalign-gpu/cli/refalign"; silo="$work/refalign-gpu/silo/RefAlign.Silo"
record bundle ok archive="$bundle" bytes="$(stat -c %s "$bundle")"
export REFALIGN_LIBTORCH="$libtorch"
ra() { "$cli" "$@"; }

# ---- shim: the packaged one, else a carried one, else one built here ----------------------------------------------
probe() { # the cheapest call that binds the shim and runs a forward pass
  rm -rf "$work/probe"
  ra model init --preset tiny --out "$work/probe" --seed 1 --json > "$out/logs/shim-$1.log" 2>&1 &&
    ra logprobs --model "$work/probe" --prompt "Hello" --completion " world" --device "$device" --json >> "$out/logs/shim-$1.log" 2>&1
}
use_shim() { cp "$1" "$work/refalign-gpu/cli/libLibTorchSharp.so" && cp "$1" "$work/refalign-gpu/silo/libLibTorchSharp.so"; }
build_shim() {
  local src="$root/artifacts/gpu/native-src/src/Native" b="$work/native" std=17
  [[ -d "$src" ]] || { echo "no TorchSharp native source in artifacts/gpu/native-src (make-bundle.sh stages it)"; return 1; }
  [[ -d "$torch_dir/include" && -d "$torch_dir/share/cmake/Torch" ]] || { echo "PyTorch's include/ or share/cmake/Torch is missing"; return 1; }
  cp -r "$src" "$b"
  # Newer libtorch headers warn where 2.10's did not; a warning must not stop this build.
  sed -i 's/add_definitions(-Werror)/# -Werror dropped for a libtorch newer than the source/' "$b/CMakeLists.txt"
  printf '#include <torch/torch.h>\nint main() { return 0; }\n' > "$work/probe.cpp"
  if ! g++ -std=c++17 -fsyntax-only -I"$torch_dir/include" -I"$torch_dir/include/torch/csrc/api/include" "$work/probe.cpp" 2>"$out/logs/shim-std17.log" &&
     grep -qiE 'c\+\+20|202002' "$out/logs/shim-std17.log"; then
    std=20  # libtorch headers that ask for C++20
    sed -i 's/CXX_STANDARD 17/CXX_STANDARD 20/; s/-std=c++17/-std=c++20/' "$b/LibTorchSharp/CMakeLists.txt"
  fi
  echo "C++$std"
  cmake -S "$b" -B "$b/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLIBTORCH_PATH="$torch_dir/share/cmake/Torch" \
    -DCMAKE_PREFIX_PATH="$torch_dir/share/cmake" && ninja -C "$b/build" -j "$(nproc)" LibTorchSharp &&
    cp "$b/build/LibTorchSharp/libLibTorchSharp.so" "$out/libLibTorchSharp.so"
}
shim=""
if probe packaged; then shim=packaged
else
  log "packaged shim: $(grep -m1 'error:' "$out/logs/shim-packaged.log")"
  if [[ -f "$root/artifacts/gpu/libLibTorchSharp.so" ]]; then
    use_shim "$root/artifacts/gpu/libLibTorchSharp.so" && probe carried && shim=carried
  fi
  if [[ -z "$shim" ]]; then
    log "building libLibTorchSharp.so against $torch_dir"
    if build_shim > "$out/logs/shim-build.log" 2>&1; then
      use_shim "$out/libLibTorchSharp.so" && probe rebuilt && shim=rebuilt
    fi
  fi
fi
if [[ -z "$shim" ]]; then
  record shim failed packaged_error="$(grep -m1 'error:' "$out/logs/shim-packaged.log")" \
    build_tail="$(tail -5 "$out/logs/shim-build.log" 2>/dev/null | tr '\n' ' ')"
  log "no shim binds this libtorch; see $out/logs"; exit 1
fi
record shim ok used="$shim" packaged_error="$(grep -m1 'error:' "$out/logs/shim-packaged.log")"
log "shim: $shim"

# ---- models and data --------------------------------------------------------------------------------------------
cd "$work"
for a in llama qwen2 gpt-neox; do for p in tiny small; do
  ra model init --preset $p --arch $a --out "m-$p-$a" --seed 3 --json > /dev/null 2>> "$out/logs/models.log" || log "model init $p $a failed"
done; done
ra model init --preset tiny-roberta --out encoder --seed 2 --json > /dev/null 2>> "$out/logs/models.log"
ra data demo --out data > /dev/null 2>> "$out/logs/models.log"
cp -r m-tiny-llama policy

# ---- logprobs: CPU vs the device, and vs transformers --------------------------------------------------------------
prompt="The capital of France is"; completion=" Paris, a city on the Seine."
has_transformers=0; "$PY" -c "import transformers" 2>/dev/null && has_transformers=1
for a in llama qwen2 gpt-neox; do for p in tiny small; do
  spent && { record "logprobs-$p-$a" skipped reason="time budget of ${budget}s spent"; continue; }
  m="m-$p-$a"; ok=1
  for side in cpu device; do
    ra logprobs --model "$m" --prompt "$prompt" --completion "$completion" --device "$(on $side)" --json > "lp-$m-$side.json" 2>> "$out/logs/logprobs.log" || ok=0
  done
  (( ok )) || { record "logprobs-$p-$a" failed log="logs/logprobs.log"; continue; }
  helper logprobs "lp-$m-cpu.json" "lp-$m-device.json" > "cmp-$m.json"
  record "logprobs-$p-$a" ok cpu_vs_device@="cmp-$m.json"
  if (( has_transformers )); then  # in the background: python and transformers take seconds to start
    ( "$PY" "$root/tests/crosscheck/compare_transformers.py" --model "$m" --ours "lp-$m-device.json" --device "${device%%:*}" \
        > "$out/logs/transformers-$m.log" 2>&1; echo $? > "rc-transformers-$m" ) &
  fi
done; done
wait  # the comparisons above (no other background job runs yet)
for a in llama qwen2 gpt-neox; do for p in tiny small; do
  m="m-$p-$a"
  [[ -f "lp-$m-device.json" ]] || continue
  if (( ! has_transformers )); then record "transformers-$p-$a" skipped reason="transformers is not importable here"; continue; fi
  # compare_transformers.py: 0 within --tol (1e-4), 1 a mismatch, 2 bad input
  record "transformers-$p-$a" "$([[ $(cat "rc-transformers-$m") == 0 ]] && echo ok || echo failed)" \
    exit_code="$(cat "rc-transformers-$m")" output="$(tail -6 "$out/logs/transformers-$m.log" | tr '\n' ' ')" log="logs/transformers-$m.log"
done; done

# ---- one training step of DPO, Sr-DPO (LoRA) and RefAlign, CPU vs the device -------------------------------------
cat > dpo.json <<'EOF'
{ "name": "dpo-check", "algorithm": "dpo", "seed": 3, "policy": { "model": "policy" },
  "data": { "path": "data/preferences.jsonl", "max_length": 96, "max_prompt_length": 48, "limit": 16 },
  "optimizer": { "kind": "adamw", "learning_rate": 0.002, "warmup_steps": 0 }, "preference": { "beta": 0.1 },
  "batch_size": 4, "micro_batch_size": 4, "max_steps": 1, "eval_every": 0, "checkpoint_every": 1, "output_dir": "runs/dpo" }
EOF
cat > srdpo.json <<'EOF'
{ "name": "srdpo-check", "algorithm": "sr-dpo", "seed": 3, "policy": { "model": "policy", "lora": { "rank": 4, "alpha": 8 } },
  "data": { "path": "data/preferences.jsonl", "max_length": 96, "max_prompt_length": 48, "limit": 16 },
  "optimizer": { "kind": "adamw", "learning_rate": 0.002, "warmup_steps": 0 }, "preference": { "beta": 0.1, "lambda": 0.5 },
  "batch_size": 4, "micro_batch_size": 4, "max_steps": 1, "eval_every": 0, "checkpoint_every": 1, "output_dir": "runs/srdpo" }
EOF
cat > refalign.json <<'EOF'
{ "name": "refalign-check", "algorithm": "refalign", "seed": 3, "policy": { "model": "policy" },
  "data": { "path": "data/references.jsonl", "max_prompt_length": 32, "limit": 16 },
  "optimizer": { "kind": "adamw", "learning_rate": 0.01, "warmup_steps": 0 },
  "refalign": { "reward_model": "encoder", "num_samples": 2, "max_new_tokens": 6 },
  "batch_size": 4, "micro_batch_size": 8, "max_steps": 1, "eval_every": 0, "checkpoint_every": 1, "output_dir": "runs/refalign" }
EOF
for alg in dpo srdpo refalign; do
  spent && { record "train-$alg" skipped reason="time budget of ${budget}s spent"; continue; }
  ok=1
  for side in cpu device; do
    ra train --config $alg.json --device "$(on $side)" --output-dir "runs/$alg-$side" --json > "$out/logs/train-$alg-$side.log" 2>&1 || ok=0
  done
  (( ok )) || { record "train-$alg" failed log="logs/train-$alg-*.log"; continue; }
  a="runs/$alg-cpu"; b="runs/$alg-device"
  helper metrics "$a/metrics.jsonl" "$b/metrics.jsonl" > "cmp-train-$alg.json" 2>> "$out/logs/train-compare.log"
  ca="$(ls -d "$a"/checkpoints/step-* | head -1)"; cb="$(ls -d "$b"/checkpoints/step-* | head -1)"
  helper checkpoints "$ca" "$cb" > "cmp-weights-$alg.json" 2>> "$out/logs/train-compare.log"
  record "train-$alg" ok metrics@="cmp-train-$alg.json" weights@="cmp-weights-$alg.json"
done

# ---- cluster: a learner silo on the device, a generator silo on the CPU ------------------------------------------
free_ports() { "$PY" -c 'import socket
s=[socket.socket() for _ in range(8)]
[x.bind(("127.0.0.1",0)) for x in s]; print(" ".join(str(x.getsockname()[1]) for x in s)); [x.close() for x in s]'; }
health_ok() { "$PY" -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('$1',timeout=2).status==200 else 1)" 2>/dev/null; }
wait_healthy() { # url pid seconds
  local until=$((SECONDS + $3))
  while (( SECONDS < until )); do
    kill -0 "$2" 2>/dev/null || return 1
    health_ok "$1" && return 0
    sleep 1
  done
  return 1
}
if spent; then record cluster skipped reason="time budget of ${budget}s spent"
else
  read -r g1 h1 s1 w1 g2 h2 s2 w2 <<< "$(free_ports)"
  mkdir -p cluster/out; cp -r policy encoder data refalign.json cluster/
  sed -i 's/"max_steps": 1/"max_steps": 3/; s/"checkpoint_every": 1/"checkpoint_every": 3/; s#"output_dir": "runs/refalign"#"output_dir": "runs/cluster"#' cluster/refalign.json
  threads=$(( $(nproc) / 2 )); (( threads > 0 )) || threads=1
  common=(--Silo:DataRoots="$work/cluster" --Silo:OutputRoot="$work/cluster" --Silo:TorchThreads=$threads --Silo:LibTorchPath="$libtorch"
          --Logging:LogLevel:Default=Warning --Silo:ShutdownGracePeriod=00:00:05)
  accel=false; (( dry )) || accel=true
  (cd cluster && exec "$silo" "${common[@]}" --Silo:SiloName=learner --Silo:Roles=learner --Silo:Device="$device" \
      --Silo:LearnerRequiresAccelerator=$accel --Silo:GrpcPort=$g1 --Silo:HttpPort=$h1 --Silo:SiloPort=$s1 --Silo:GatewayPort=$w1) \
      > "$out/logs/silo-learner.log" 2>&1 & pids+=($!); lp=$!
  if wait_healthy "http://127.0.0.1:$h1/healthz" $lp 120; then
    helper healthz "http://127.0.0.1:$h1/healthz" > health-before.json
    (cd cluster && exec "$silo" "${common[@]}" --Silo:SiloName=generator --Silo:Roles=generator,scorer,reference --Silo:Device=cpu \
        --Silo:LearnerRequiresAccelerator=$accel --Cluster:PrimarySiloEndpoint=127.0.0.1:$s1 \
        --Silo:GrpcPort=$g2 --Silo:HttpPort=$h2 --Silo:SiloPort=$s2 --Silo:GatewayPort=$w2) \
        > "$out/logs/silo-generator.log" 2>&1 & pids+=($!); gp=$!
    if wait_healthy "http://127.0.0.1:$h2/healthz" $gp 120; then
      silo_url="http://127.0.0.1:$g1"
      ra cluster status --silo "$silo_url" --json > cluster-status.json 2>> "$out/logs/cluster.log"
      run_id="$("$PY" -c 'import json,sys; print(json.load(sys.stdin)["run_id"])' < <(ra run start --silo "$silo_url" --config cluster/refalign.json --json 2>> "$out/logs/cluster.log"))"
      if [[ -n "$run_id" ]]; then
        timeout 240 "$cli" run watch "$run_id" --silo "$silo_url" --json > run-events.jsonl 2>> "$out/logs/cluster.log"; watch_rc=$?
        helper healthz "http://127.0.0.1:$h1/healthz" > health-after.json
        ra run status "$run_id" --silo "$silo_url" --json > run-status.json 2>> "$out/logs/cluster.log"
        cp run-events.jsonl "$out/logs/cluster-run-events.jsonl"
        record cluster "$([[ $watch_rc == 0 ]] && echo ok || echo failed)" run_id="$run_id" watch_rc="$watch_rc" \
          run_status@=run-status.json learner_health_before@=health-before.json learner_health_after@=health-after.json \
          cluster_status@=cluster-status.json
        if spent; then record tensorboard skipped reason="time budget of ${budget}s spent"
        else
          helper tensorboard cluster/runs/cluster > tensorboard.json 2> "$out/logs/tensorboard.log"
          record tensorboard "$("$PY" -c 'import json,sys; d=json.load(sys.stdin); print("skipped" if "skipped" in d else "failed" if "error" in d else "ok")' < tensorboard.json)" result@=tensorboard.json
        fi
      else record cluster failed error="run start gave no run id" log="logs/cluster.log"
      fi
    else record cluster failed error="the generator silo did not become healthy" log="logs/silo-generator.log"
    fi
  else record cluster failed error="the learner silo did not become healthy" log="logs/silo-learner.log"
  fi
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done; pids=()
fi
# ---- bench: the device beside the CPU (last: the longest step, and the one the other checks do not depend on) -------
bench_cap=150; (( dry )) && bench_cap=600  # this 2-core machine is shared; a GPU machine has 16 cores
for suite in generation learner; do
  for side in device cpu; do
    name="bench-$suite-$side"
    spent && { record "$name" skipped reason="time budget of ${budget}s spent"; continue; }
    bench_timeout=$(( budget - (SECONDS - started) )); (( bench_timeout > bench_cap )) && bench_timeout=$bench_cap
    extra=(); [[ $suite == learner ]] && extra=(--cluster-steps 0)  # its two-silo part (CPU silos) would not measure the device
    (( dry )) && extra+=(--preset tiny)  # a dry run checks the plumbing; the small preset's figures are the GPU call's
    timeout "$bench_timeout" "$cli" bench --device "$(on $side)" $suite "${extra[@]}" --json > "$name.json" 2> "$out/logs/$name.log"; rc=$?
    if (( rc == 0 )); then record "$name" ok result@="$name.json" note="${extra[*]}"
    elif (( rc == 124 )); then record "$name" failed error="timed out after ${bench_timeout}s" log="logs/$name.log"
    else record "$name" failed exit_code="$rc" log="logs/$name.log"
    fi
  done
done

log "done in $((SECONDS - started)) s; results in $results"
