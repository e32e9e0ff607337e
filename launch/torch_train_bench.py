#!/usr/bin/env python3
"""torch_train_bench.py -- PyTorch reference for Strata's single-rank training speed.

Trains the same GPT-2 as worker/model/gpt2.c (or, with --arch llama, the same Llama as
worker/model/llama.c: RMSNorm, rotary positions in Hugging Face's rotate-half convention, SwiGLU
MLP of --ffn, grouped-query attention with --kv-heads, untied lm_head; no biases) (pre-LN, causal attention scaled 1/sqrt(C/H), tanh GELU,
tied wte, mean cross-entropy; AdamW with weight decay on 2-D tensors) on random tokens, on ONE
thread (torch.set_num_threads(1)), and prints tokens/s over the timed steps (wall clock, and
per second of process CPU time, which a busy machine disturbs less), so it can be
compared with `gpt2_bench` (tests/model/gpt2_bench.c) on the same model, batch and context.

Usage (Debian python3-torch; not needed by the build or the tests; --precision bf16 runs the
forward under bf16 autocast):
  /usr/bin/python3 launch/torch_train_bench.py --layers 6 --heads 6 --dim 384 --ctx 256 \
      --batch 8 --vocab 256 --steps 10 [--warmup 2]
  /usr/bin/python3 launch/torch_train_bench.py --arch llama --layers 6 --heads 6 --kv-heads 2 \
      --dim 384 --ffn 1024 --ctx 256 --batch 8 --vocab 256 --steps 10
"""
import argparse
import math
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, C, H):
        super().__init__()
        self.H = H
        self.ln_1 = nn.LayerNorm(C, eps=1e-5)
        self.c_attn = nn.Linear(C, 3 * C)
        self.c_proj = nn.Linear(C, C)
        self.ln_2 = nn.LayerNorm(C, eps=1e-5)
        self.c_fc = nn.Linear(C, 4 * C)
        self.mlp_proj = nn.Linear(4 * C, C)

    def forward(self, x, mask):
        B, T, C = x.shape
        H = self.H
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q = q.view(B, T, H, C // H).transpose(1, 2)
        k = k.view(B, T, H, C // H).transpose(1, 2)
        v = v.view(B, T, H, C // H).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(C // H))
        att = att.masked_fill(mask[:T, :T] == 0, float("-inf"))
        att = F.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        x = x + self.c_proj(y)
        x = x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))
        return x


class GPT(nn.Module):
    def __init__(self, V, T, L, H, C):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(T, C)
        self.h = nn.ModuleList([Block(C, H) for _ in range(L)])
        self.ln_f = nn.LayerNorm(C, eps=1e-5)
        self.register_buffer("mask", torch.tril(torch.ones(T, T)))
        for n, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * L) if n.endswith("c_proj.weight") or n.endswith("mlp_proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)
            elif "ln" in n and n.endswith("weight"):
                nn.init.ones_(p)
            else:
                nn.init.zeros_(p)

    def forward(self, idx, targets):
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(T))
        for blk in self.h:
            x = blk(x, self.mask)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


class RMSNorm(nn.Module):
    def __init__(self, C, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(C))

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class LlamaBlock(nn.Module):
    def __init__(self, C, H, KVH, Fh, eps):
        super().__init__()
        self.H, self.KVH, self.hs = H, KVH, C // H
        self.input_layernorm = RMSNorm(C, eps)
        self.q_proj = nn.Linear(C, C, bias=False)
        self.k_proj = nn.Linear(C, KVH * self.hs, bias=False)
        self.v_proj = nn.Linear(C, KVH * self.hs, bias=False)
        self.o_proj = nn.Linear(C, C, bias=False)
        self.post_attention_layernorm = RMSNorm(C, eps)
        self.gate_proj = nn.Linear(C, Fh, bias=False)
        self.up_proj = nn.Linear(C, Fh, bias=False)
        self.down_proj = nn.Linear(Fh, C, bias=False)

    def forward(self, x, mask, cos, sin):
        B, T, C = x.shape
        H, KVH, hs = self.H, self.KVH, self.hs
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(B, T, H, hs).transpose(1, 2)
        k = self.k_proj(h).view(B, T, KVH, hs).transpose(1, 2)
        v = self.v_proj(h).view(B, T, KVH, hs).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // KVH, dim=1)  # repeat_kv: query head h reads kv head h // (H / KVH)
        v = v.repeat_interleave(H // KVH, dim=1)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        att = F.softmax(att.masked_fill(mask[:T, :T] == 0, float("-inf")), dim=-1)
        x = x + self.o_proj((att @ v).transpose(1, 2).contiguous().view(B, T, C))
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Llama(nn.Module):
    def __init__(self, V, T, L, H, KVH, C, Fh, eps=1e-5, theta=10000.0):
        super().__init__()
        self.embed_tokens = nn.Embedding(V, C)
        self.layers = nn.ModuleList([LlamaBlock(C, H, KVH, Fh, eps) for _ in range(L)])
        self.norm = RMSNorm(C, eps)
        self.lm_head = nn.Linear(C, V, bias=False)
        self.register_buffer("mask", torch.tril(torch.ones(T, T)))
        hs = C // H
        inv_freq = 1.0 / (theta ** (torch.arange(0, hs, 2, dtype=torch.float32) / hs))
        emb = torch.cat([torch.outer(torch.arange(T, dtype=torch.float32), inv_freq)] * 2, dim=-1)
        self.register_buffer("cos", emb.cos())
        self.register_buffer("sin", emb.sin())
        for n, p in self.named_parameters():  # Hugging Face LlamaPreTrainedModel: N(0, 0.02), norms 1
            if p.dim() == 2:
                nn.init.normal_(p, 0.0, 0.02)

    def forward(self, idx, targets):
        B, T = idx.shape
        x = self.embed_tokens(idx)
        for blk in self.layers:
            x = blk(x, self.mask, self.cos[:T], self.sin[:T])
        logits = self.lm_head(self.norm(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=("gpt", "llama"), default="gpt")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                    help="bf16: the forward under torch.autocast('cpu', torch.bfloat16), fp32 weights and AdamW")
    ap.add_argument("--kv-heads", type=int, default=0, help="llama: key / value heads (default: --heads)")
    ap.add_argument("--ffn", type=int, default=0, help="llama: SwiGLU hidden width (default: 4 x --dim)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.arch == "llama":
        model = Llama(a.vocab, a.ctx, a.layers, a.heads, a.kv_heads or a.heads, a.dim, a.ffn or 4 * a.dim)
    else:
        model = GPT(a.vocab, a.ctx, a.layers, a.heads, a.dim)
    nparams = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    nodecay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": nodecay, "weight_decay": 0.0}],
                            lr=3e-4, betas=(0.9, 0.95), eps=1e-8)
    g = torch.Generator().manual_seed(1)
    t0 = None
    for step in range(a.warmup + a.steps):
        if step == a.warmup:
            t0 = time.perf_counter()
            c0 = time.process_time()
        idx = torch.randint(0, a.vocab, (a.batch, a.ctx + 1), generator=g)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            loss = model(idx[:, :-1], idx[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    dt = time.perf_counter() - t0
    dc = time.process_time() - c0
    toks = a.steps * a.batch * a.ctx
    print(f"torch {torch.__version__} arch={a.arch} precision={a.precision} threads={a.threads} params={nparams} L={a.layers} H={a.heads} "
          f"C={a.dim} T={a.ctx} B={a.batch} V={a.vocab} steps={a.steps} loss={loss.item():.4f} "
          f"ms/step={1e3 * dt / a.steps:.1f} tokens/s={toks / dt:.0f} cpu_tokens/s={toks / dc:.0f} "
          f"peak_rss={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
