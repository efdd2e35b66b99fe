"""bert_score's P/R/F (Zhang et al.; the bert_score package's greedy matching) on hidden states from encoders.py,
compared with the hidden states and scores RefAlign computed for the same token ids."""
import math
from collections import Counter

import torch

from . import safetensors
from .encoders import Encoder


def idf_weights(references, cls, sep):
    """bert_score's get_idf_dict: log((N+1)/(df+1)) with df counted once per reference, unseen log(N+1), CLS/SEP 0."""
    n = len(references)
    df = Counter(t for ids in references for t in set(ids))

    def weight(t):
        if t in (cls, sep):
            return 0.0
        return math.log((n + 1) / (df[t] + 1)) if t in df else math.log(n + 1)
    return weight


def score(h_hyp, h_ref, hyp, ref, weight):
    """bert_score's greedy_cos_idf for one pair; an empty side ([CLS, SEP] only) scores 0."""
    if len(hyp) <= 2 or len(ref) <= 2:
        return 0.0, 0.0, 0.0
    a = h_hyp / h_hyp.norm(dim=-1, keepdim=True)
    b = h_ref / h_ref.norm(dim=-1, keepdim=True)
    sim = a @ b.T
    wh = torch.tensor([weight(t) for t in hyp], dtype=torch.float64)
    wr = torch.tensor([weight(t) for t in ref], dtype=torch.float64)
    p = float((sim.max(1).values.double() * wh).sum() / wh.sum())
    r = float((sim.max(0).values.double() * wr).sum() / wr.sum())
    p, r = (0.0 if math.isnan(p) else p), (0.0 if math.isnan(r) else r)
    f = 2 * p * r / (p + r) if p + r != 0 else 0.0
    return p, r, (0.0 if math.isnan(f) else f)


def compare(case):
    enc = Encoder(case["model"])
    sentences, pairs = case["sentences"], case["pairs"]
    ours_hidden = safetensors.load(case["ours"]["hidden"])
    references = [sentences[j] for j in case["idf_references"]]
    weights = {"plain": lambda t: 0.0 if t in (case["cls"], case["sep"]) else 1.0,
               "idf": idf_weights(references, case["cls"], case["sep"])}
    hidden_diff, hidden_max, score_diff, worst = 0.0, 0.0, {"plain": 0.0, "idf": 0.0}, ""
    for layer in case["layers"]:
        with torch.no_grad():
            h = [enc.hidden_states(ids, layer) for ids in sentences]
        for i, hs in enumerate(h):
            d = float((ours_hidden[f"L{layer}.S{i}"] - hs).abs().max())
            hidden_max = max(hidden_max, float(hs.abs().max()))
            if d > hidden_diff:
                hidden_diff, worst = d, f"layer {layer}, sentence {i}"
        for kind in ("plain", "idf"):
            ours = case["ours"]["scores"][kind][str(layer)]
            for (c, r), (op, orr, of) in zip(pairs, ours):
                tp, tr, tf = score(h[c], h[r], sentences[c], sentences[r], weights[kind])
                score_diff[kind] = max(score_diff[kind], abs(op - tp), abs(orr - tr), abs(of - tf))
    return {"name": case["name"], "max_hidden_diff": hidden_diff, "max_hidden_abs": hidden_max, "worst_hidden": worst,
            "max_prf_diff_plain": score_diff["plain"], "max_prf_diff_idf": score_diff["idf"],
            "layers": len(case["layers"]), "pairs": len(pairs), "sentences": len(sentences)}

