#!/usr/bin/env python3
"""Cross-check `refalign bertscore --json` against BERTScore recomputed with torch + transformers.

Produce ours first (no --baseline: the check is on raw scores):
    refalign bertscore --model DIR -c cands.txt -r refs.txt [-r refs2.txt] [--idf] [--layers L] --json > ours.json
then, on a machine with torch + transformers (no network needed):
    python bertscore_transformers.py --model DIR --candidates cands.txt --references refs.txt [--references refs2.txt] \
        [--idf] [--layers L] --ours ours.json

The recomputation follows the bert_score package (sent_encode, get_idf_dict, greedy_cos_idf):
  * tokens: each stripped sentence with the special tokens, byte-level BPE (RoBERTa/BART) with add_prefix_space,
    truncated to model_max_length; an empty sentence is [CLS, SEP];
  * vectors: hidden_states[L] of the (float32, eager) model, BART's encoder only, each L2-normalised;
  * sim = hyp . ref^T over all tokens (CLS/SEP included); P = sum_i w(h_i) max_j sim_ij / sum_i w(h_i), R likewise over
    the reference, F = 2PR/(P+R); weights 1, or with --idf log((N+1)/(df+1)) over the N references (unseen log(N+1));
    CLS and SEP weigh 0; an empty candidate or reference scores 0; NaN -> 0;
  * several references: the best F with its P and R (ours' default --multi-ref best-f) or --multi-ref elementwise.
Exit status: 0 all within --tol, 1 a mismatch, 2 bad input.
"""
import argparse
import json
import math
import os
import sys
from collections import Counter, defaultdict

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from transformers import AutoConfig, AutoModel, AutoTokenizer  # noqa: E402

BPE_TYPES = {"roberta", "bart", "gpt2", "longformer", "deberta"}


def read_lines(path):
    """As the CLI reads a file: one sentence per line (\\n, \\r\\n or \\r), a trailing newline adds no sentence."""
    with open(path, encoding="utf-8-sig") as f:
        text = f.read().replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()  # File.ReadAllLines
    if lines and lines[-1] == "":
        lines.pop()  # the CLI's own trailing-newline rule
    return lines


def fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="HF encoder folder (config.json, safetensors, tokenizer files)")
    ap.add_argument("--candidates", required=True)
    ap.add_argument("--references", required=True, action="append", help="repeat for several references per candidate")
    ap.add_argument("--idf", action="store_true")
    ap.add_argument("--layers", type=int, help="default: the layers ours.json reports")
    ap.add_argument("--multi-ref", choices=["best-f", "elementwise"], default="best-f")
    ap.add_argument("--ours", required=True, help="JSON written by `refalign bertscore --json`")
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()

    with open(a.ours, encoding="utf-8") as f:
        ours = json.load(f)
    layers = ours["layers"] if a.layers is None else a.layers
    if layers != ours["layers"]:
        fail(f"--layers {layers} but ours.json was scored at layer {ours['layers']}")
    if a.idf != ours["idf"]:
        fail(f"--idf is {a.idf} but ours.json has idf = {ours['idf']}")
    if ours.get("rescaled"):
        fail("ours.json is baseline-rescaled; run `refalign bertscore` without --baseline")
    cands = read_lines(a.candidates)
    refs = [read_lines(p) for p in a.references]
    for p, r in zip(a.references, refs):
        if len(r) != len(cands):
            fail(f"{p} has {len(r)} lines but {a.candidates} has {len(cands)}")
    if len(ours["pairs"]) != len(cands):
        fail(f"ours.json has {len(ours['pairs'])} pairs but {a.candidates} has {len(cands)} lines")

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    bpe = AutoConfig.from_pretrained(a.model, local_files_only=True).model_type in BPE_TYPES
    # bert_score uses the slow tokenizer; add_prefix_space is set on the tokenizer so slow and fast agree.
    tok = AutoTokenizer.from_pretrained(a.model, use_fast=False, local_files_only=True, **({"add_prefix_space": True} if bpe else {}))
    model = AutoModel.from_pretrained(a.model, torch_dtype=torch.float32, attn_implementation="eager", local_files_only=True)
    if hasattr(model, "encoder") and hasattr(model, "decoder"):
        model = model.encoder  # BART: bert_score scores with the encoder alone
    model.to(a.device).eval()

    def sent_encode(sent):
        sent = sent.strip()
        if sent == "":
            return tok.build_inputs_with_special_tokens([])
        return tok.encode(sent, add_special_tokens=True, max_length=tok.model_max_length, truncation=True)

    cache = {}

    def embed(sent):  # one sentence per forward pass: no padding involved
        if sent not in cache:
            ids = sent_encode(sent)
            with torch.no_grad():
                x = torch.tensor([ids], device=a.device)
                out = model(input_ids=x, attention_mask=torch.ones_like(x), output_hidden_states=True)
            h = out.hidden_states[layers][0].double().cpu()
            cache[sent] = (ids, h / h.norm(dim=-1, keepdim=True))
        return cache[sent]

    all_refs = [r for rs in refs for r in rs]  # bert_score flattens the reference groups before get_idf_dict
    if a.idf:
        df = Counter(t for r in all_refs for t in set(sent_encode(r)))
        n = len(all_refs)
        weight = defaultdict(lambda: math.log(n + 1), {t: math.log((n + 1) / (c + 1)) for t, c in df.items()})
    else:
        weight = defaultdict(lambda: 1.0)
    weight[tok.sep_token_id] = 0.0
    weight[tok.cls_token_id] = 0.0

    def score(cand, ref):
        (hi, he), (ri, re) = embed(cand), embed(ref)
        if len(hi) == 2 or len(ri) == 2:  # empty candidate or reference
            return 0.0, 0.0, 0.0
        sim = he @ re.T
        wh = torch.tensor([weight[t] for t in hi], dtype=torch.float64)
        wr = torch.tensor([weight[t] for t in ri], dtype=torch.float64)
        p = ((sim.max(dim=1).values * wh).sum() / wh.sum()).item()
        r = ((sim.max(dim=0).values * wr).sum() / wr.sum()).item()
        f = 2 * p * r / (p + r) if p + r != 0 else math.nan
        return tuple(0.0 if math.isnan(v) else v for v in (p, r, f))

    diffs = {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    theirs = []
    for i, cand in enumerate(cands):
        if ours["pairs"][i]["candidate"] != cand:
            fail(f"pair {i}: ours.json's candidate differs from line {i + 1} of {a.candidates}")
        group = [score(cand, rs[i]) for rs in refs]
        if a.multi_ref == "best-f":
            best = max(group, key=lambda s: s[2])  # first of equal F, as ours
        else:
            best = tuple(max(s[k] for s in group) for k in range(3))
        theirs.append(best)
        for k, name in enumerate(diffs):
            diffs[name] = max(diffs[name], abs(best[k] - ours["pairs"][i][name]))
    for k, name in enumerate(list(diffs)):  # a copy: the loop adds keys
        mean = sum(t[k] for t in theirs) / len(theirs) if theirs else 0.0
        diffs[f"mean {name}"] = abs(mean - ours[name])

    print(f"{len(cands)} candidates x {len(refs)} reference file(s), layer {layers}, idf={a.idf}, "
          f"tokenizer {type(tok).__name__}, model {type(model).__name__}")
    for name, d in diffs.items():
        print(f"  max |diff| {name:>14}: {d:.3e}")
    bad = {k: d for k, d in diffs.items() if not d <= a.tol}
    if bad:
        print(f"MISMATCH (tol {a.tol}): {', '.join(bad)}")
        sys.exit(1)
    print(f"OK (tol {a.tol})")


if __name__ == "__main__":
    main()
