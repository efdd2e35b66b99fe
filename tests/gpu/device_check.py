#!/usr/bin/env python3
"""Helpers of tests/gpu/device-check.sh: the JSON it writes and the comparisons it makes (standard library only, so the
same file runs beside any PyTorch; transformers and tensorboard are imported only by the steps that use them).

    device_check.py record RESULTS NAME STATUS [KEY=VALUE|KEY@=FILE.json ...]   add/replace one step in RESULTS
    device_check.py logprobs A.json B.json                 max |diff| of two `refalign logprobs --json` outputs
    device_check.py checkpoints DIR_A DIR_B                max |diff| per tensor of the safetensors files of two folders
    device_check.py metrics A/metrics.jsonl B/metrics.jsonl  the first step's metrics of two runs, side by side
    device_check.py tensorboard DIR                        read DIR's events.out.tfevents.* with tensorboard's own loader
    device_check.py healthz URL                            the compute check's data of a silo's /healthz
Each comparison prints one JSON object.
"""
import array
import glob
import json
import math
import os
import struct
import sys
import time
import urllib.request


def record(results, name, status, *pairs):
    doc = {"steps": {}}
    if os.path.exists(results):
        with open(results, encoding="utf-8") as f:
            doc = json.load(f)
    step = {"status": status, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    for pair in pairs:
        if pair.split("=", 1)[0].rstrip("@") in step:
            raise SystemExit(f"record: '{pair}' would overwrite the step's own field")
        if "@=" in pair:  # a file of JSON, embedded as it is
            key, path = pair.split("@=", 1)
            try:
                with open(path, encoding="utf-8") as f:
                    step[key] = json.load(f)
            except (OSError, ValueError) as e:
                step[key] = {"unreadable": path, "error": str(e)}
        else:
            key, value = pair.split("=", 1)
            step[key] = value
    doc["steps"][name] = step
    tmp = results + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
    os.replace(tmp, results)


def logprobs(a_path, b_path):
    with open(a_path, encoding="utf-8") as f:
        a = json.load(f)
    with open(b_path, encoding="utf-8") as f:
        b = json.load(f)
    same_ids = a["prompt_ids"] == b["prompt_ids"] and a["completion_ids"] == b["completion_ids"]
    token = max(abs(x - y) for x, y in zip(a["token_logprobs"], b["token_logprobs"]))
    return {"same_ids": same_ids, "tokens": len(a["token_logprobs"]), "max_abs_token_logprob": token,
            "abs_sum_logprob": abs(a["sum_logprob"] - b["sum_logprob"]), "sum_logprob": [a["sum_logprob"], b["sum_logprob"]]}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = data[begin:end]
        dtype = info["dtype"]
        if dtype == "F32":
            values = array.array("f")
            values.frombytes(raw)
        elif dtype == "F16":
            values = [v[0] for v in struct.iter_unpack("<e", raw)]
        elif dtype == "BF16":
            values = [struct.unpack("<f", struct.pack("<I", v[0] << 16))[0] for v in struct.iter_unpack("<H", raw)]
        else:  # integer tensors (none in our checkpoints' weights): compare bytes
            values = list(raw)
        tensors[name] = values
    return tensors


def checkpoints(dir_a, dir_b):
    # rng.safetensors holds each device's own generator state: different by design, and not what a step computes.
    files = sorted(os.path.relpath(p, dir_a) for p in glob.glob(os.path.join(dir_a, "**", "*.safetensors"), recursive=True)
                   if os.path.basename(p) != "rng.safetensors")
    out = {"files": {}, "max_abs": 0.0, "max_abs_tensor": None}
    for rel in files:
        other = os.path.join(dir_b, rel)
        if not os.path.exists(other):
            out["files"][rel] = {"missing_in_b": True}
            continue
        a, b = read_safetensors(os.path.join(dir_a, rel)), read_safetensors(other)
        worst, worst_name, count = 0.0, None, 0
        for name, va in a.items():
            vb = b.get(name)
            if vb is None or len(vb) != len(va):
                out["files"].setdefault(rel, {})["mismatched"] = name
                continue
            d = max((abs(x - y) for x, y in zip(va, vb)), default=0.0)
            count += len(va)
            if d > worst or worst_name is None:
                worst, worst_name = d, name
        out["files"][rel] = {"tensors": len(a), "values": count, "max_abs": worst, "max_abs_tensor": worst_name}
        if worst >= out["max_abs"]:
            out["max_abs"], out["max_abs_tensor"] = worst, f"{rel}:{worst_name}"
    if not files:
        out["error"] = f"no *.safetensors under {dir_a}"
    return out


def first_step(path):
    """The metrics of the first step row of a metrics.jsonl ({"kind": "step", "metrics": {...}})."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row.get("kind") == "step":
                return row.get("metrics", {})
    return {}


def metrics(a_path, b_path):
    a, b = first_step(a_path), first_step(b_path)
    # Times and throughputs differ by design between devices (they are outside "metrics" but for these); the numbers
    # of the step itself must not.
    timing = ("time", "second", "per_s", "tokens_per", "throughput")
    out = {}
    for key in sorted(set(a) & set(b)):
        if any(t in key for t in timing):
            continue
        if isinstance(a[key], (int, float)) and isinstance(b[key], (int, float)) and not isinstance(a[key], bool):
            out[key] = {"a": a[key], "b": b[key], "abs": abs(a[key] - b[key]) if math.isfinite(a[key]) and math.isfinite(b[key]) else None}
    return {"metrics": out, "loss_abs": out.get("loss", {}).get("abs")}


def tensorboard(folder):
    files = sorted(glob.glob(os.path.join(folder, "**", "events.out.tfevents.*"), recursive=True))
    if not files:
        return {"error": f"no events.out.tfevents.* under {folder}"}
    try:
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    except ImportError as e:
        return {"skipped": f"the tensorboard package is not importable here ({e})", "files": files}
    out = {"files": {}}
    for path in files:
        tags, events = {}, 0
        for event in EventFileLoader(path).Load():
            events += 1
            for value in event.summary.value:
                v = value.simple_value if value.HasField("simple_value") else None
                if v is None and value.HasField("tensor") and value.tensor.float_val:
                    v = value.tensor.float_val[0]
                tags.setdefault(value.tag, []).append(v)
        out["files"][os.path.relpath(path, folder)] = {
            "events": events, "tags": len(tags),
            "loss": tags.get("loss") or tags.get("train/loss"), "some_tags": sorted(tags)[:12]}
    return out


def healthz(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    return body["checks"]["compute"]["data"]


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "record":
        record(*args)
        return 0
    result = {"logprobs": logprobs, "checkpoints": checkpoints, "metrics": metrics,
              "tensorboard": tensorboard, "healthz": healthz}[cmd](*args)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
