#!/usr/bin/env python3
"""torch_ddp_bench.py -- PyTorch DDP reference for Strata's data-parallel training speed.

Trains the same GPT-2 as worker/model/gpt2.c (the model class of torch_train_bench.py: pre-LN, causal
attention, tanh GELU, tied wte; AdamW with weight decay on 2-D tensors) with
torch.nn.parallel.DistributedDataParallel over the gloo backend on --world processes on this
machine (init_method file://, so no network set-up is needed), ONE thread per rank
(torch.set_num_threads(1)). --batch is the GLOBAL batch in sequences (each rank trains
batch / world), as `strata train --batch`. Rank 0 prints the tokens/s of the whole job over the
timed steps (after --warmup untimed steps).

Usage (Debian python3-torch; not needed by the build or the tests; launch/ddp_bench.sh runs it):
  /usr/bin/python3 launch/torch_ddp_bench.py --world 2 --layers 6 --heads 6 --dim 384 --ctx 256 \
      --batch 16 --vocab 256 --steps 10 [--warmup 2]
"""
import argparse
import os
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_train_bench import GPT  # noqa: E402  (the same model as the single-rank reference)


def run(rank, a, init_file):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank, world_size=a.world)
    torch.manual_seed(0)
    model = GPT(a.vocab, a.ctx, a.layers, a.heads, a.dim)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    decay = [p for p in ddp.parameters() if p.dim() >= 2]
    nodecay = [p for p in ddp.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": nodecay, "weight_decay": 0.0}],
                            lr=3e-4, betas=(0.9, 0.95), eps=1e-8)
    per_rank = a.batch // a.world
    g = torch.Generator().manual_seed(1 + rank)
    t0 = None
    for step in range(a.warmup + a.steps):
        if step == a.warmup:
            dist.barrier()
            t0 = time.perf_counter()
        idx = torch.randint(0, a.vocab, (per_rank, a.ctx + 1), generator=g)
        loss = ddp(idx[:, :-1], idx[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    dist.barrier()
    dt = time.perf_counter() - t0
    if rank == 0:
        toks = a.steps * a.batch * a.ctx
        nparams = sum(p.numel() for p in model.parameters())
        print(f"torch-ddp {torch.__version__} gloo world={a.world} threads/rank=1 params={nparams} "
              f"L={a.layers} H={a.heads} C={a.dim} T={a.ctx} global_batch={a.batch} steps={a.steps} "
              f"loss={loss.item():.4f} ms/step={1e3 * dt / a.steps:.1f} tokens/s={toks / dt:.0f}",
              flush=True)
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", type=int, default=2)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    a = ap.parse_args()
    if a.batch % a.world:
        sys.exit(f"--batch {a.batch} must divide by --world {a.world}")
    with tempfile.TemporaryDirectory() as d:
        mp.spawn(run, args=(a, os.path.join(d, "init")), nprocs=a.world, join=True)


if __name__ == "__main__":
    main()
