"""BERT, RoBERTa and BART encoders written out in torch from config.json and the weights, following transformers'
BertModel / RobertaModel / BartModel's encoder in eval mode (no dropout): the hidden state after the first L layers
of one unpadded sentence, L = 0 being the embedding output after its LayerNorm."""
import json
import math
import os

import torch
import torch.nn.functional as F

from . import safetensors

ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
               "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh")}


class Encoder:
    def __init__(self, folder):
        with open(os.path.join(folder, "config.json")) as f:
            self.config = c = json.load(f)
        self.type = c["model_type"]
        w = safetensors.load_folder(folder)
        for prefix in ("bert.", "roberta.", "model."):
            if sum(k.startswith(prefix) for k in w) > len(w) // 2:
                w = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in w.items()}
        if "shared.weight" not in w and "encoder.embed_tokens.weight" in w:
            w["shared.weight"] = w["encoder.embed_tokens.weight"]
        self.w = {k: v.float() for k, v in w.items()}
        if self.type == "bart":
            self.hidden, self.heads, self.layers = c["d_model"], c["encoder_attention_heads"], c["encoder_layers"]
            self.eps, self.act = 1e-5, ACTIVATIONS[c.get("activation_function", "gelu")]
        else:
            self.hidden, self.heads, self.layers = c["hidden_size"], c["num_attention_heads"], c["num_hidden_layers"]
            self.eps, self.act = c.get("layer_norm_eps", 1e-12), ACTIVATIONS[c.get("hidden_act", "gelu")]

    def ln(self, x, name):
        return F.layer_norm(x, (self.hidden,), self.w[name + ".weight"], self.w[name + ".bias"], self.eps)

    def lin(self, x, name):
        return F.linear(x, self.w[name + ".weight"], self.w.get(name + ".bias"))

    def attend(self, q, k, v):
        t, d = q.shape[0], self.hidden // self.heads
        split = lambda x: x.view(t, self.heads, d).transpose(0, 1)
        scores = split(q) @ split(k).transpose(-1, -2) / math.sqrt(d)
        return (torch.softmax(scores, -1) @ split(v)).transpose(0, 1).reshape(t, self.hidden)

    def hidden_states(self, ids, layers):
        ids = torch.tensor(ids, dtype=torch.long)
        t, w = ids.shape[0], self.w
        if self.type == "bart":
            e = w["shared.weight"][ids]
            if self.config.get("scale_embedding", False):
                e = e * math.sqrt(self.hidden)
            # BartLearnedPositionalEmbedding: position p reads row p + 2.
            h = self.ln(e + w["encoder.embed_positions.weight"][torch.arange(2, t + 2)], "encoder.layernorm_embedding")
            for i in range(layers):
                p = f"encoder.layers.{i}."
                a = self.attend(self.lin(h, p + "self_attn.q_proj"), self.lin(h, p + "self_attn.k_proj"), self.lin(h, p + "self_attn.v_proj"))
                h = self.ln(h + self.lin(a, p + "self_attn.out_proj"), p + "self_attn_layer_norm")
                h = self.ln(h + self.lin(self.act(self.lin(h, p + "fc1")), p + "fc2"), p + "final_layer_norm")
            return h
        if self.type == "roberta":  # create_position_ids_from_input_ids on a sentence without padding
            pad = self.config.get("pad_token_id", 1)
            positions = torch.arange(pad + 1, pad + 1 + t)
        else:
            positions = torch.arange(t)
        h = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][positions]
        if "embeddings.token_type_embeddings.weight" in w:
            h = h + w["embeddings.token_type_embeddings.weight"][0]
        h = self.ln(h, "embeddings.LayerNorm")
        for i in range(layers):
            p = f"encoder.layer.{i}."
            a = self.attend(self.lin(h, p + "attention.self.query"), self.lin(h, p + "attention.self.key"), self.lin(h, p + "attention.self.value"))
            a = self.ln(self.lin(a, p + "attention.output.dense") + h, p + "attention.output.LayerNorm")
            h = self.ln(self.lin(self.act(self.lin(a, p + "intermediate.dense")), p + "output.dense") + a, p + "output.LayerNorm")
        return h
