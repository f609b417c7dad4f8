#!/usr/bin/python3
"""PyTorch CPU baselines for token LMs (LSTM / decoder-only Transformer).

The same workloads as `deno task bench models` (bench/model_bench.ts), which runs
this script first when PyTorch imports, so both sides are measured on the same
machine in the same session. Copied from the project machines'
shared/bench/torch_reference.py; added: the thread count follows the cores (at
most 8), and the tf_sample_cache section (KV-cache sampling only).

Usage: python3 bench/torch_reference.py [section ...]
sections: lstm_small lstm_big tf_train lstm_sample lstm_big_sample tf_sample
          tf_sample_cache matmul
Prints one JSON object per measurement.
"""
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(min(os.cpu_count() or 1, 8))
torch.manual_seed(0)
VOCAB = 388


def emit(**kw):
    kw["framework"] = "torch-%s" % torch.__version__
    kw["threads"] = torch.get_num_threads()
    print(json.dumps(kw), flush=True)


def timeit(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return ts


# ---------------------------------------------------------------- models
class LSTMLM(nn.Module):
    def __init__(self, vocab, embed, hidden, layers):
        super().__init__()
        self.emb = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, layers, batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, x, state=None):
        h, state = self.lstm(self.emb(x), state)
        return self.out(h), state


class Block(nn.Module):
    def __init__(self, d, heads, ff):
        super().__init__()
        self.h = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, ff)
        self.fc2 = nn.Linear(ff, d)

    def forward(self, x, mask=None, cache=None):
        B, T, D = x.shape
        hd = D // self.h
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=2)
        q = q.view(B, T, self.h, hd).transpose(1, 2)
        k = k.view(B, T, self.h, hd).transpose(1, 2)
        v = v.view(B, T, self.h, hd).transpose(1, 2)
        if cache is not None:
            if cache[0] is not None:
                k = torch.cat([cache[0], k], dim=2)
                v = torch.cat([cache[1], v], dim=2)
            cache[0], cache[1] = k, v
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
        if mask is not None:
            att = att + mask
        att = att.softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, D)
        x = x + self.proj(y)
        x = x + self.fc2(F.relu(self.fc1(self.ln2(x))))
        return x


class TransformerLM(nn.Module):
    def __init__(self, vocab, d, layers, heads, ff, max_len=1024):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(max_len, d)
        self.blocks = nn.ModuleList([Block(d, heads, ff) for _ in range(layers)])
        self.lnf = nn.LayerNorm(d)
        self.out = nn.Linear(d, vocab)

    def forward(self, x, caches=None, start=0):
        B, T = x.shape
        pos = torch.arange(start, start + T)
        h = self.tok(x) + self.pos(pos)[None]
        mask = None
        if T > 1:
            mask = torch.full((T, T), float("-inf")).triu(1)
        for i, b in enumerate(self.blocks):
            h = b(h, mask, None if caches is None else caches[i])
        return self.out(self.lnf(h))


# ---------------------------------------------------------------- training
def bench_train(name, model, B, T, warmup=1, iters=3):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randint(0, VOCAB, (B, T + 1))
    inp, tgt = x[:, :-1], x[:, 1:]

    def step():
        opt.zero_grad(set_to_none=True)
        out = model(inp)
        logits = out[0] if isinstance(out, tuple) else out
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), tgt.reshape(-1))
        loss.backward()
        opt.step()

    ts = timeit(step, warmup, iters)
    med = statistics.median(ts)
    nparams = sum(p.numel() for p in model.parameters())
    emit(bench=name, kind="train", B=B, T=T, params=nparams, step_s=med,
         steps=[round(t, 4) for t in ts], tok_per_s=B * T / med)


# ---------------------------------------------------------------- sampling
@torch.inference_mode()
def bench_lstm_sample(name, model, B=16, N=512, reps=3):
    def run():
        x = torch.zeros(B, 1, dtype=torch.long)
        state = None
        for _ in range(N):
            logits, state = model(x, state)
            p = logits[:, -1].softmax(-1)
            x = torch.multinomial(p, 1)
    ts = timeit(run, 1, reps)
    med = statistics.median(ts)
    emit(bench=name, kind="sample", B=B, N=N, total_s=med, tok_per_s=B * N / med,
         ms_per_step=1000 * med / N)


@torch.inference_mode()
def bench_tf_sample_cache(name, model, B=16, N=512, reps=3):
    L = len(model.blocks)

    def run():
        caches = [[None, None] for _ in range(L)]
        x = torch.zeros(B, 1, dtype=torch.long)
        for t in range(N):
            logits = model(x, caches, start=t)
            x = torch.multinomial(logits[:, -1].softmax(-1), 1)
    ts = timeit(run, 1, reps)
    med = statistics.median(ts)
    emit(bench=name, kind="sample_kvcache", B=B, N=N, total_s=med,
         tok_per_s=B * N / med, ms_per_step=1000 * med / N)


@torch.inference_mode()
def bench_tf_sample_nocache(name, model, B=16, N=512, real_N=64):
    """No cache: step t re-runs the full prefix of length t.
    (1) real loop for the first real_N tokens; (2) forward time at several
    context lengths, linearly interpolated and summed over t=1..N to estimate
    the full N-token generation time."""
    def real():
        seq = torch.zeros(B, 1, dtype=torch.long)
        for _ in range(real_N):
            logits = model(seq)
            nxt = torch.multinomial(logits[:, -1].softmax(-1), 1)
            seq = torch.cat([seq, nxt], 1)
    ts = timeit(real, 1, 2)
    med = statistics.median(ts)
    emit(bench=name, kind="sample_nocache_real", B=B, N=real_N, total_s=med,
         tok_per_s=B * real_N / med)
    lens = [1, 64, 128, 256, 384, 512]
    fwd = {}
    for Lc in lens:
        x = torch.randint(0, VOCAB, (B, Lc))

        def f():
            logits = model(x)
            torch.multinomial(logits[:, -1].softmax(-1), 1)
        fwd[Lc] = statistics.median(timeit(f, 1, 3))
    total = 0.0
    for t in range(1, N + 1):
        for a, b in zip(lens, lens[1:]):
            if a <= t <= b:
                total += fwd[a] + (fwd[b] - fwd[a]) * (t - a) / (b - a)
                break
    emit(bench=name, kind="sample_nocache_est", B=B, N=N, total_s_est=total,
         tok_per_s=B * N / total, fwd_s={str(k): round(v, 5) for k, v in fwd.items()})


def bench_matmul(n=1024):
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    ts = timeit(lambda: a @ b, 3, 10)
    med = statistics.median(ts)
    emit(bench="matmul", n=n, s=med, gflops=2 * n ** 3 / med / 1e9)


def main():
    secs = sys.argv[1:] or ["matmul", "lstm_small", "lstm_big", "tf_train",
                            "lstm_sample", "lstm_big_sample", "tf_sample"]
    for s in secs:
        torch.manual_seed(0)
        if s == "matmul":
            bench_matmul(512)
            bench_matmul(1024)
        elif s == "lstm_small":
            bench_train("lstm_E256_H512_L2", LSTMLM(VOCAB, 256, 512, 2), 16, 256, 3, 4)
        elif s == "lstm_small_T64":
            bench_train("lstm_E256_H512_L2", LSTMLM(VOCAB, 256, 512, 2), 16, 64, 1, 4)
        elif s == "lstm_big":
            bench_train("lstm_E512_H768_L3", LSTMLM(VOCAB, 512, 768, 3), 8, 512, 2, 3)
        elif s == "tf_train":
            bench_train("tf_d256_L4_H4_ff1024", TransformerLM(VOCAB, 256, 4, 4, 1024), 16, 256, 3, 4)
        elif s == "lstm_sample":
            m = LSTMLM(VOCAB, 256, 512, 2).eval()
            bench_lstm_sample("lstm_E256_H512_L2", m)
        elif s == "lstm_big_sample":
            m = LSTMLM(VOCAB, 512, 768, 3).eval()
            bench_lstm_sample("lstm_E512_H768_L3", m)
        elif s == "tf_sample_cache":
            m = TransformerLM(VOCAB, 256, 4, 4, 1024).eval()
            bench_tf_sample_cache("tf_d256_L4_H4_ff1024", m)
        elif s == "tf_sample":
            m = TransformerLM(VOCAB, 256, 4, 4, 1024).eval()
            # correctness check: cached vs uncached logits agree
            with torch.inference_mode():
                x = torch.randint(0, VOCAB, (2, 10))
                full = m(x)
                caches = [[None, None] for _ in range(4)]
                inc = torch.cat([m(x[:, t:t + 1], caches, start=t) for t in range(10)], 1)
                print("# kv-cache max abs diff", (full - inc).abs().max().item(), flush=True)
            bench_tf_sample_cache("tf_d256_L4_H4_ff1024", m)
            bench_tf_sample_nocache("tf_d256_L4_H4_ff1024", m)


if __name__ == "__main__":
    main()
