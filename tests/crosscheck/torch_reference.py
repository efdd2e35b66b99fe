#!/usr/bin/env python3
"""Plain-PyTorch references for the ordinary test suite (torch and numpy only; no transformers, no network).

    torch_reference.py train-step CASE.json ...   one optimizer step per case, compared with our checkpoint
    torch_reference.py bertscore CASE.json ...    encoder hidden states and bert_score P/R/F per case

Each prints a JSON array with one object of measured differences per case; the xunit tests that write the cases
(tests/RefAlign.Compute.Tests/CrossCheck) hold the tolerances. Exit status 2 when torch is missing."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    import torch  # noqa: F401
except ImportError as e:
    print(f"torch is not importable ({e}); install python3-torch (build/test-packages.txt)", file=sys.stderr)
    sys.exit(2)


def main(argv):
    if len(argv) < 2 or argv[0] not in ("train-step", "bertscore"):
        print(__doc__, file=sys.stderr)
        return 2
    torch.manual_seed(0)
    if argv[0] == "train-step":
        from torchref.train_step import compare
    else:
        from torchref.bertscore import compare
    results = []
    for path in argv[1:]:
        with open(path) as f:
            results.append(compare(json.load(f)))
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
