"""One optimizer step of each RefAlign algorithm, written from docs/algorithms.md: the loss of a batch, gradients of
every trainable tensor, torch.nn.utils.clip_grad_norm_, and one torch.optim.AdamW step with the DPO reference code's
warmup (LambdaLR, lr·min(1, (s+1)/(warmup+1))). bfloat16 parameters are stepped through float32 masters."""
import os

import torch
import torch.nn.functional as F

from . import safetensors
from .decoders import Decoder

PREFERENCE = {"dpo", "cdpo", "ipo", "sr_dpo", "sr_ipo"}


def dtype_of(case):
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[case["dtype"]]


def load_policy(case):
    dtype = dtype_of(case)
    lora = None
    if case.get("lora"):
        params = safetensors.load(case["lora"]["initial"])
        lora = {"params": params, "scale": case["lora"]["alpha"] / case["lora"]["rank"]}
    return Decoder(case["policy"], dtype, lora), dtype


def sequence_logprob(model, prompt, completion, reduction):
    lp = model.completion_logprobs(prompt, completion).sum()
    return lp / max(1, len(completion)) if reduction == "mean" else lp


def preference_loss(case, policy, reference):
    beta, reduction, algo = case["beta"], case["reduction"], case["algorithm"]

    def margins(prompt_key, with_grad):
        rows = case["rows"]
        ctx = torch.enable_grad() if with_grad else torch.no_grad()
        with ctx:
            pc = torch.stack([sequence_logprob(policy, r[prompt_key], r["chosen"], reduction) for r in rows])
            pr = torch.stack([sequence_logprob(policy, r[prompt_key], r["rejected"], reduction) for r in rows])
        with torch.no_grad():
            if reference is None:  # LoRA without a reference model: the base, adapters off
                policy.lora_enabled = False
                rc = torch.stack([sequence_logprob(policy, r[prompt_key], r["chosen"], reduction) for r in rows])
                rr = torch.stack([sequence_logprob(policy, r[prompt_key], r["rejected"], reduction) for r in rows])
                policy.lora_enabled = True
            else:
                rc = torch.stack([sequence_logprob(reference, r[prompt_key], r["chosen"], reduction) for r in rows])
                rr = torch.stack([sequence_logprob(reference, r[prompt_key], r["rejected"], reduction) for r in rows])
        return (pc - rc) - (pr - rr)

    h = margins("prompt", True)
    if algo == "dpo":
        per_pair = -F.logsigmoid(beta * h)
    elif algo == "cdpo":
        eps = case["label_smoothing"]
        per_pair = -(1 - eps) * F.logsigmoid(beta * h) - eps * F.logsigmoid(-beta * h)
    elif algo == "ipo":
        per_pair = (h - 1 / (2 * beta)) ** 2
    else:
        delta = (beta * margins("prompted", False)).detach()
        lam = case["lambda"]
        if algo == "sr_dpo":
            per_pair = -F.logsigmoid(beta * h - lam * delta)
        else:
            per_pair = (h - lam * delta - 1 / (2 * beta)) ** 2
    return per_pair.mean()


def sft_loss(case, policy):
    rows = case["rows"]
    total = sum(len(r["completion"]) for r in rows)
    return -sum(policy.completion_logprobs(r["prompt"], r["completion"]).sum() for r in rows) / total


def refalign_loss(case, policy):
    """The loss and the size of its terms (Σ|A·Σℓ| / N): advantages sum to about zero within a group, so the loss itself
    is a small difference of such terms and is compared relative to them."""
    rows = case["rows"]
    total = sum(len(r["completion"]) for r in rows)
    terms = [r["advantage"] * policy.completion_logprobs(r["prompt"], r["completion"]).sum() for r in rows]
    return -sum(terms) / total, float(sum(abs(float(t)) for t in terms) / total)


def loss_of(case, policy, reference):
    algo = case["algorithm"]
    if algo in PREFERENCE:
        loss = preference_loss(case, policy, reference)
    elif algo == "sft":
        loss = sft_loss(case, policy)
    else:
        return refalign_loss(case, policy)
    return loss, abs(float(loss))


def adamw(case, initial, grads):
    """torch.optim.AdamW (with the warmup schedule) from `initial` with the given gradients; returns the stepped copies."""
    o = case["optimizer"]
    params = [t.detach().float().clone().requires_grad_(True) for t in initial]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    opt = torch.optim.AdamW(params, lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"], weight_decay=o["weight_decay"])
    warmup = o["warmup_steps"]
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (warmup + 1)))
    opt.step()
    schedule.step()
    return [p.detach() for p in params]


def step(case):
    """Loss, its scale, the pre-clip gradient norm, and per trainable tensor (by name) its starting value, clipped
    float32 gradient and value after one AdamW step. bfloat16 parameters go through float32 masters."""
    policy, dtype = load_policy(case)
    reference = Decoder(case["reference"], dtype) if case.get("reference") else None
    params = policy.parameters()
    for t in params.values():
        t.requires_grad_(True)
    loss, scale = loss_of(case, policy, reference)
    loss.backward()
    names = sorted(params)
    masters = []
    for n in names:
        m = params[n].detach().float().clone().requires_grad_(True)
        m.grad = params[n].grad.float()
        masters.append(m)
    o = case["optimizer"]
    if o["max_grad_norm"] > 0:
        norm = float(torch.nn.utils.clip_grad_norm_(masters, o["max_grad_norm"]))
    else:
        norm = float(torch.norm(torch.stack([m.grad.norm() for m in masters])))
    initial = [m.detach().clone() for m in masters]
    grads = [m.grad for m in masters]
    updated = adamw(case, initial, grads)
    return float(loss), scale, norm, names, initial, grads, updated


def exact(case):
    """The step's loss, gradients (clipped as the step clips) and pre-clip norm with every weight (as the step starts
    from it, bfloat16 values included) widened to float64: how far each float32 or bfloat16 side is from the value it
    approximates."""
    policy, _ = load_policy(case)
    policy.to_float64()
    reference = Decoder(case["reference"], dtype_of(case)) if case.get("reference") else None
    if reference is not None:
        reference.to_float64()
    params = policy.parameters()
    for t in params.values():
        t.requires_grad_(True)
    loss, _ = loss_of(case, policy, reference)
    loss.backward()
    grads = {n: t.grad for n, t in params.items()}
    norm = float(torch.sqrt(sum((g * g).sum() for g in grads.values())))
    bound = case["optimizer"]["max_grad_norm"]
    coef = min(1.0, bound / (norm + 1e-6)) if bound > 0 else 1.0
    return float(loss), {n: g * coef for n, g in grads.items()}, norm


def ours(case):
    """From our checkpoint: the updated trainable tensors (float32 masters for bfloat16 parameters), our clipped
    gradients (AdamW's first moment after one step is (1 − β1)·g), and the model's own weights when those are rounded."""
    ckpt = case["ours"]["checkpoint"]
    state = safetensors.load(os.path.join(ckpt, "optimizer.safetensors"))
    beta1 = case["optimizer"]["beta1"]
    grads = {n[: -len(".exp_avg")]: t.float() / (1 - beta1) for n, t in state.items() if n.endswith(".exp_avg")}
    if case.get("lora"):
        return safetensors.load(os.path.join(ckpt, "adapter", "adapter_model.safetensors")), grads, None
    weights = safetensors.load_folder(os.path.join(ckpt, "policy"))
    if case["dtype"] == "float32":
        return weights, grads, None
    masters = {n[: -len(".master")]: t for n, t in state.items() if n.endswith(".master")}
    return masters, grads, weights


def compare(case):
    loss, scale, norm, names, initial, grads, updated = step(case)
    our_weights, our_grads, our_rounded = ours(case)
    missing = [n for n in names if n not in our_weights or n not in our_grads]
    if missing:
        raise SystemExit(f"{case['name']}: our checkpoint lacks '{missing[0]}'")
    g_max = max(float(g.abs().max()) for g in grads)
    grad_diff = max(float((our_grads[n] - g).abs().max()) for n, g in zip(names, grads))
    replayed = adamw(case, initial, [our_grads[n] for n in names])
    adamw_diff = max(float((our_weights[n].float() - r).abs().max()) for n, r in zip(names, replayed))
    worst, worst_resolved, worst_name, unresolved, entries, max_update = 0.0, 0.0, "", 0, 0, 0.0
    for n, g, u, i in zip(names, grads, updated, initial):
        d = (our_weights[n].float() - u).abs()
        # AdamW's first step moves each weight by about lr·sign(g): where |g| is within 100× of the two sides' largest
        # gradient difference, rounding decides the sign, so those entries are counted, not compared. (Entries without
        # a gradient on either side, e.g. embedding rows of tokens not in the batch, are compared.)
        resolved = (g.abs() > 100 * float((our_grads[n] - g).abs().max())) | ((g == 0) & (our_grads[n] == 0))
        unresolved += int((~resolved).sum())
        entries += g.numel()
        if float(d.max()) > worst:
            worst = float(d.max())
        if resolved.any() and float(d[resolved].max()) > worst_resolved:
            worst_resolved, worst_name = float(d[resolved].max()), n
        max_update = max(max_update, float((u - i).abs().max()))
    rounded = None
    if our_rounded is not None:  # the model's bfloat16 weights are the masters rounded
        rounded = max(float((our_rounded[n].float() - our_weights[n].to(torch.bfloat16).float()).abs().max()) for n in names)
    o = case["ours"]
    result = {
        "name": case["name"], "loss_torch": loss, "loss_ours": o["loss"], "loss_scale": scale,
        "loss_rel_diff": abs(loss - o["loss"]) / max(scale, 1e-30),
        "grad_norm_torch": norm, "grad_norm_ours": o["grad_norm"], "grad_norm_rel_diff": abs(norm - o["grad_norm"]) / max(norm, 1e-30),
        "grad_rel_diff": grad_diff / max(g_max, 1e-30), "adamw_weight_diff": adamw_diff,
        "max_weight_diff": worst, "max_resolved_weight_diff": worst_resolved, "worst_tensor": worst_name,
        "unresolved_entries": unresolved, "entries": entries, "max_update": max_update, "tensors": len(names),
        "rounded_weight_diff": rounded,
    }
    loss64, grads64, norm64 = exact(case)
    g64_max = max(float(g.abs().max()) for g in grads64.values())
    result["loss_f64"] = loss64
    result["loss_ours_err_f64"] = abs(o["loss"] - loss64) / max(scale, 1e-30)
    result["loss_torch_err_f64"] = abs(loss - loss64) / max(scale, 1e-30)
    result["grad_ours_err_f64"] = max(float((our_grads[n].double() - grads64[n]).abs().max()) for n in names) / g64_max
    result["grad_torch_err_f64"] = max(float((g.double() - grads64[n]).abs().max()) for n, g in zip(names, grads)) / g64_max
    result["grad_norm_ours_err_f64"] = abs(o["grad_norm"] - norm64) / norm64
    result["grad_norm_torch_err_f64"] = abs(norm - norm64) / norm64
    return result

