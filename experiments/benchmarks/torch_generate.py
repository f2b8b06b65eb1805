"""transformers' bf16 `generate` at the BitNet b1.58 paper's shapes: the peer of `bitnet-jax bench generate`.

    python experiments/benchmarks/torch_generate.py [--shape 3b] [--batch 1] [--prompt-len 32] [--new-tokens 64]
                                                    [--static] [--json FILE]

LlamaForCausalLM (hidden, GLU, heads, layers as `bench decode`'s shapes, vocabulary 32000, SDPA attention), random
weights in bfloat16 on the GPU, greedy decoding. A decode step's time is the slope between generating `new_tokens`
and half as many (median of 3 calls each), which removes the prefill. --static: a static KV cache, with which
`generate` compiles the decode step itself on a GPU (its `compile_config`: `torch.compile`, CUDA graphs),
transformers' fast path. (Wrapping `model.forward` in `torch.compile(mode="reduce-overhead")` by hand failed on the
H200 on 2026-12-03: the CUDA graphs overwrote the cache's outputs between steps.) Prints one JSON line.
"""

import argparse
import json
import statistics
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

SHAPES = {"700m": (1536, 4096, 24, 24), "3b": (3200, 8640, 32, 26), "tiny": (64, 160, 2, 2)}  # hidden, GLU, heads,
# layers; tiny: a smoke test (on a CPU without CUDA)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--shape", default="3b", choices=sorted(SHAPES))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--static", action="store_true")
    p.add_argument("--json")
    a = p.parse_args()
    hidden, glu, heads, layers = SHAPES[a.shape]
    cfg = LlamaConfig(vocab_size=32000, hidden_size=hidden, intermediate_size=glu, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=heads,
                      max_position_embeddings=a.prompt_len + a.new_tokens, attn_implementation="sdpa")
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    with torch.device(device):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
    extra = {}
    if a.static:
        extra = {"cache_implementation": "static"}
    ids = torch.randint(0, 32000, (a.batch, a.prompt_len), device=device)

    def generate(n: int) -> float:
        sync()
        t0 = time.perf_counter()
        with torch.no_grad():
            model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                           do_sample=False, pad_token_id=0, **extra)
        sync()
        return time.perf_counter() - t0

    t0 = time.perf_counter()
    generate(a.new_tokens)
    warm_s = time.perf_counter() - t0
    half = a.new_tokens // 2
    long = statistics.median(generate(a.new_tokens) for _ in range(3))
    short = statistics.median(generate(half) for _ in range(3))
    step_s = (long - short) / (a.new_tokens - half)
    row = {"peer": "transformers LlamaForCausalLM.generate", "torch": torch.__version__, "shape": a.shape,
           "batch": a.batch, "prompt_len": a.prompt_len, "new_tokens": a.new_tokens, "static_cache": a.static,
           "compiled": a.static and device == "cuda",  # generate compiles a static-cache step on CUDA only
           "first_call_s": round(warm_s, 2), "decode_step_s": step_s, "tokens_per_s": a.batch / step_s,
           "device": torch.cuda.get_device_name() if device == "cuda" else "cpu"}
    print(json.dumps(row), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(row, f, indent=1)


if __name__ == "__main__":
    main()
