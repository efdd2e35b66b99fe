#!/usr/bin/env python3
"""Each test's failures and duration range over the runs of `./refalign test --repeat N` (their .trx files)."""
import collections
import pathlib
import re
import sys
import xml.etree.ElementTree as ET

NS = {"t": "http://microsoft.com/schemas/VisualStudio/TeamTest/2010"}


def seconds(text):
    h, m, s = text.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def main(results):
    runs = sorted(p for p in pathlib.Path(results).iterdir() if p.is_dir())
    tests = collections.defaultdict(lambda: {"outcomes": [], "durations": []})
    for run in runs:
        for trx in run.glob("*.trx"):
            for r in ET.parse(trx).getroot().iterfind(".//t:UnitTestResult", NS):
                t = tests[r.get("testName")]
                t["outcomes"].append(r.get("outcome"))
                if r.get("duration"):
                    t["durations"].append(seconds(r.get("duration")))
    rows = []
    for name, t in tests.items():
        failures = sum(o not in ("Passed", "NotExecuted") for o in t["outcomes"])
        d = t["durations"] or [0.0]
        rows.append((failures, max(d), min(d), len(t["outcomes"]), name))
    rows.sort(key=lambda r: (-r[0], -r[1]))
    out = pathlib.Path(results) / "tests.tsv"
    with out.open("w") as f:
        f.write("failures\truns\tmin_s\tmax_s\ttest\n")
        for failures, hi, lo, n, name in rows:
            f.write(f"{failures}\t{n}\t{lo:.2f}\t{hi:.2f}\t{name}\n")
    flaky = [r for r in rows if r[0] > 0]
    print(f"{len(runs)} runs, {len(rows)} tests, {len(flaky)} with failures (all: {out})")
    for failures, hi, lo, n, name in flaky:
        print(f"  FAILED {failures}/{n}  {lo:7.2f}–{hi:7.2f} s  {name}")
    print("slowest (max over the runs):")
    for failures, hi, lo, n, name in sorted(rows, key=lambda r: -r[1])[:15]:
        print(f"  {lo:7.2f}–{hi:7.2f} s  {name}")


if __name__ == "__main__":
    main(sys.argv[1])
