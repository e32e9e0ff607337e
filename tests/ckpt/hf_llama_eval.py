#!/usr/bin/env python3
"""hf_llama_eval.py -- scores a Strata Llama checkpoint the way a Hugging Face program reads one.

Loads DIR/config.json (LlamaConfig keys) and DIR/model.safetensors -- or, for a pipelined run's
checkpoint, the files DIR/model.safetensors.index.json's weight_map names, as Hugging Face's
sharded loading does -- by tensor name with a plain safetensors reader (8-byte header length,
JSON header, raw little-endian data), checks that the
names and [out, in] shapes are exactly LlamaForCausalLM's, and computes the mean cross-entropy
of the first S sequences of T tokens of a byte file -- sequence i reads bytes [i*T, i*T + T + 1)
-- with the plain-PyTorch Llama of tests/fixtures/make_llama_fixture.py (Hugging Face's math:
RMSNorm, rotate-half RoPE, repeat_kv, SwiGLU, untied lm_head), in float64. Prints the loss.
`strata eval --split train --tokens S*T --seq-len T` scores the same sequences.

With --interleaved-rope it rotates adjacent pairs (2i, 2i+1) instead (GPT-J's and Meta's original
convention), which a checkpoint in Hugging Face's rotate-half convention must not agree with (the
check can fail).

Usage (Debian python3-torch; tests/ckpt.cmake runs it, skipped without torch):
  /usr/bin/python3 tests/ckpt/hf_llama_eval.py DIR DATA T S [--interleaved-rope]
"""
import json
import os
import struct
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
import make_llama_fixture as ref  # noqa: E402  (the plain-PyTorch Llama)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            sys.exit(f"{path}: tensor {name} is {info['dtype']}, expected F32")
        a, b = info["data_offsets"]
        out[name] = torch.frombuffer(bytearray(data[a:b]), dtype=torch.float32).reshape(info["shape"]).double()
    return out


def read_weights(ckpt):
    """Every tensor of the checkpoint: model.safetensors, or the shards its index maps."""
    index = os.path.join(ckpt, "model.safetensors.index.json")
    if not os.path.exists(index):
        return read_safetensors(os.path.join(ckpt, "model.safetensors"))
    with open(index) as f:
        weight_map = json.load(f)["weight_map"]
    out = {}
    for shard in sorted(set(weight_map.values())):
        for name, t in read_safetensors(os.path.join(ckpt, shard)).items():
            if weight_map.get(name) != shard:
                sys.exit(f"{ckpt}/{shard} holds {name}, which the index maps to {weight_map.get(name)}")
            out[name] = t
    return out


def interleaved_rope_tables(T, hs, theta):
    """GPT-J / Meta's original convention: adjacent pairs (2i, 2i+1) rotate by angle i."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, hs, 2, dtype=torch.float64) / hs))
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)
    emb = torch.repeat_interleave(freqs, 2, dim=-1)
    return emb.cos(), emb.sin()


def rotate_every_two(x):
    return torch.stack((-x[..., 1::2], x[..., 0::2]), dim=-1).flatten(-2)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 4:
        sys.exit(__doc__.strip().splitlines()[-1])
    ckpt, data_path, T, S = args[0], args[1], int(args[2]), int(args[3])
    with open(os.path.join(ckpt, "config.json")) as f:
        cfg = json.load(f)
    if cfg.get("model_type") != "llama" or cfg.get("architectures") != ["LlamaForCausalLM"] \
            or cfg.get("tie_word_embeddings") is not False:
        sys.exit(f"{ckpt}/config.json is not an untied LlamaForCausalLM config: {cfg}")
    V, C, L = cfg["vocab_size"], cfg["hidden_size"], cfg["num_hidden_layers"]
    H, KVH, Fh = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["intermediate_size"]
    ps = read_weights(ckpt)
    want = dict(ref.param_shapes(V, L, H, KVH, C, Fh))
    got = {k: tuple(v.shape) for k, v in ps.items()}
    if got != want:
        sys.exit(f"tensor names or shapes differ from LlamaForCausalLM's: missing {sorted(set(want) - set(got))}, "
                 f"extra {sorted(set(got) - set(want))}, "
                 f"shapes {[(k, got[k], want[k]) for k in want if k in got and got[k] != want[k]]}")
    with open(data_path, "rb") as f:
        raw = f.read(S * T + 1)
    tokens = torch.tensor(list(raw), dtype=torch.long)
    idx = torch.stack([tokens[i * T:i * T + T] for i in range(S)])
    tgt = torch.stack([tokens[i * T + 1:i * T + T + 1] for i in range(S)])
    if "--interleaved-rope" in sys.argv:  # the reference's forward looks both up at call time
        ref.rope_tables, ref.rotate_half = interleaved_rope_tables, rotate_every_two
    dims = (V, cfg["max_position_embeddings"], L, H, KVH, C, Fh, S, T, cfg["rms_norm_eps"], cfg["rope_theta"])
    with torch.no_grad():
        _, loss = ref.forward(ps, idx, tgt, dims)
    print(f"{loss.item():.9f}")


if __name__ == "__main__":
    main()
