"""Llama-family and GPT-NeoX decoders written out in torch from config.json and a dict of weights, following
transformers' modeling_llama / modeling_gpt_neox (and so RefAlign's CausalLm): one unpadded sequence at positions
0..T-1, in float32 or bfloat16, with optional LoRA adapters (PEFT's layout: y = W x + b + (alpha/r)·B(A x), computed
in the adapters' float32)."""
import json
import math
import os

import torch
import torch.nn.functional as F

from . import safetensors

LORA_PREFIX = "base_model.model."


class Decoder:
    def __init__(self, folder, dtype, lora=None):
        with open(os.path.join(folder, "config.json")) as f:
            self.config = json.load(f)
        c = self.config
        self.neox = c["architectures"][0] == "GPTNeoXForCausalLM"
        self.dtype = dtype
        self.weights = {k: v.to(dtype) if v.is_floating_point() else v for k, v in safetensors.load_folder(folder).items()}
        self.heads = c["num_attention_heads"]
        self.hidden = c["hidden_size"]
        self.head_dim = c.get("head_dim") or self.hidden // self.heads
        self.kv_heads = self.heads if self.neox else c.get("num_key_value_heads", self.heads)
        self.layers = c["num_hidden_layers"]
        if self.neox:
            self.rotary = int(self.head_dim * c.get("rotary_pct", 0.25))
            theta = c.get("rotary_emb_base", 10000.0)
        else:
            self.rotary = self.head_dim
            theta = c.get("rope_theta", 10000.0)
        # Inverse frequencies in double, rounded once to float32 (what CausalLm does).
        self.inv_freq = torch.tensor([1.0 / theta ** (2.0 * i / self.rotary) for i in range(self.rotary // 2)],
                                     dtype=torch.float64).float()
        self.lora = lora  # {"A": {base: tensor}, "B": {...}, "scale": s} or None
        self.lora_enabled = True

    def to_float64(self):
        """Every weight (and adapter) in float64, for an exact-as-possible value of the same computation."""
        self.dtype = torch.float64
        self.weights = {k: v.double() if v.is_floating_point() else v for k, v in self.weights.items()}
        if self.lora is not None:
            self.lora = dict(self.lora, params={k: v.double() for k, v in self.lora["params"].items()})

    def parameters(self):
        """The trainable tensors by name: the adapters with LoRA, else every weight."""
        if self.lora is not None:
            return self.lora["params"]
        return self.weights

    def proj(self, x, name, bias=True):
        w = self.weights[name + ".weight"]
        b = self.weights.get(name + ".bias") if bias else None
        y = F.linear(x, w, b)
        if self.lora is not None and self.lora_enabled:
            a = self.lora["params"].get(LORA_PREFIX + name + ".lora_A.weight")
            if a is not None:
                bmat = self.lora["params"][LORA_PREFIX + name + ".lora_B.weight"]
                d = F.linear(F.linear(x.to(a.dtype), a), bmat) * self.lora["scale"]
                y = y + d.to(x.dtype)
        return y

    def cos_sin(self, t):
        freqs = torch.arange(t, dtype=torch.float32)[:, None] * self.inv_freq[None, :]
        return torch.cat([freqs.cos(), freqs.cos()], -1).to(self.dtype), torch.cat([freqs.sin(), freqs.sin()], -1).to(self.dtype)

    @staticmethod
    def rotate(x, cos, sin):
        r = cos.shape[-1]
        x1, x2 = x[..., : r // 2], x[..., r // 2: r]
        rotated = x[..., :r] * cos + torch.cat([-x2, x1], -1) * sin
        return torch.cat([rotated, x[..., r:]], -1)

    def attention(self, q, k, v):
        """q [H, T, D], k/v [KV, T, D]: causal softmax attention, query head h reading kv head h // (H / KV)."""
        rep = q.shape[0] // k.shape[0]
        k = k.repeat_interleave(rep, 0)
        v = v.repeat_interleave(rep, 0)
        t = q.shape[1]
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        causal = torch.ones(t, t, dtype=torch.bool).tril()
        scores = scores.masked_fill(~causal, torch.finfo(scores.dtype).min)
        # As transformers' eager attention: the softmax in float32 (or wider), back to the activations' dtype.
        return torch.softmax(scores, -1, dtype=torch.promote_types(scores.dtype, torch.float32)).to(v.dtype) @ v

    def logits(self, ids):
        """Float32 logits [T, V] of one sequence."""
        ids = torch.tensor(ids, dtype=torch.long)
        t = ids.shape[0]
        cos, sin = self.cos_sin(t)
        cos, sin = cos[:, : self.rotary], sin[:, : self.rotary]
        w = self.weights
        if self.neox:
            h = w["gpt_neox.embed_in.weight"][ids]
            for i in range(self.layers):
                p = f"gpt_neox.layers.{i}."
                eps = self.config.get("layer_norm_eps", 1e-5)
                x = F.layer_norm(h, (self.hidden,), w[p + "input_layernorm.weight"], w[p + "input_layernorm.bias"], eps)
                qkv = self.proj(x, p + "attention.query_key_value").view(t, self.heads, 3 * self.head_dim).transpose(0, 1)
                d = self.head_dim
                q, k, v = qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:]
                a = self.attention(self.rotate(q, cos, sin), self.rotate(k, cos, sin), v)
                a = self.proj(a.transpose(0, 1).reshape(t, self.heads * d), p + "attention.dense")

                def mlp(z):
                    g = self.proj(z, p + "mlp.dense_h_to_4h")
                    g = F.gelu(g) if self.config.get("hidden_act", "gelu") == "gelu" else F.gelu(g, approximate="tanh")
                    return self.proj(g, p + "mlp.dense_4h_to_h")

                ln2 = lambda z: F.layer_norm(z, (self.hidden,), w[p + "post_attention_layernorm.weight"], w[p + "post_attention_layernorm.bias"], eps)
                if self.config.get("use_parallel_residual", True):
                    h = mlp(ln2(h)) + a + h
                else:
                    h = a + h
                    h = mlp(ln2(h)) + h
            h = F.layer_norm(h, (self.hidden,), w["gpt_neox.final_layer_norm.weight"], w["gpt_neox.final_layer_norm.bias"],
                             self.config.get("layer_norm_eps", 1e-5))
            head = w["gpt_neox.embed_in.weight"] if self.config.get("tie_word_embeddings", False) else w["embed_out.weight"]
        else:
            h = w["model.embed_tokens.weight"][ids]
            eps = self.config.get("rms_norm_eps", 1e-6)
            for i in range(self.layers):
                p = f"model.layers.{i}."
                x = self.rms_norm(h, w[p + "input_layernorm.weight"], eps)
                d = self.head_dim
                q = self.proj(x, p + "self_attn.q_proj").view(t, self.heads, d).transpose(0, 1)
                k = self.proj(x, p + "self_attn.k_proj").view(t, self.kv_heads, d).transpose(0, 1)
                v = self.proj(x, p + "self_attn.v_proj").view(t, self.kv_heads, d).transpose(0, 1)
                a = self.attention(self.rotate(q, cos, sin), self.rotate(k, cos, sin), v)
                h = h + self.proj(a.transpose(0, 1).reshape(t, self.heads * d), p + "self_attn.o_proj")
                x = self.rms_norm(h, w[p + "post_attention_layernorm.weight"], eps)
                gate = self.proj(x, p + "mlp.gate_proj")
                up = self.proj(x, p + "mlp.up_proj")
                h = h + self.proj(F.silu(gate) * up, p + "mlp.down_proj")
            h = self.rms_norm(h, w["model.norm.weight"], eps)
            head = w["model.embed_tokens.weight"] if self.config.get("tie_word_embeddings", False) else w["lm_head.weight"]
        logits = F.linear(h, head)
        return logits if logits.dtype == torch.float64 else logits.float()

    @staticmethod
    def rms_norm(x, weight, eps):
        h = x if x.dtype == torch.float64 else x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
        return weight * h.to(x.dtype)

    def completion_logprobs(self, prompt, completion):
        """log π(y_t | x, y_<t) for each completion token (float32 [len(y)])."""
        ids = list(prompt) + list(completion)
        logp = self.logits(ids)[:-1].log_softmax(-1)
        targets = torch.tensor(ids[1:], dtype=torch.long)
        per_token = logp.gather(1, targets[:, None]).squeeze(1)
        return per_token[len(prompt) - 1:]
