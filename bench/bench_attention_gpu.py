"""Time torch's SDPA kernels on the attention shapes that dominate stage 1.

    python -m bench.bench_attention_gpu [--dtype float16]

For each shape (the UNet's joint normal/colour self-attention at the two finest
levels, the row-wise multiview attention and the structure transformer's
self-attention, all with the CFG batch of the 768^2 job) and each SDPA backend,
prints the median time per call and the achieved TFLOP/s (4*B*H*Lq*Lk*D flops).
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

# (name, batch, heads, query length, key length, head width)
SHAPES = [
    ("joint level 0 (96^2 x 2)", 10, 5, 18432, 18432, 64),
    ("joint level 1 (48^2 x 2)", 10, 10, 4608, 4608, 64),
    ("rowwise level 0 (4 x 96)", 192, 5, 384, 384, 64),
    ("text level 0 (77 tokens)", 20, 5, 9216, 77, 64),
    ("structure dit (16^3)", 2, 16, 4096, 4096, 64),
]
BACKENDS = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
}


def time_ms(fn, repeats: int = 20) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=["float16", "bfloat16"], default="float16")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    for (name, b, h, lq, lk, d), layout in [(shape, layout) for shape in SHAPES for layout in ("bhsd", "bshd")]:
        if layout == "bhsd":  # each head's rows contiguous
            q = torch.randn(b, h, lq, d, device="cuda", dtype=dtype)
            k = torch.randn(b, h, lk, d, device="cuda", dtype=dtype)
            v = torch.randn(b, h, lk, d, device="cuda", dtype=dtype)
        else:  # views of [B, L, H*D] projections, as the networks pass them
            q = torch.randn(b, lq, h * d, device="cuda", dtype=dtype).view(b, lq, h, d).transpose(1, 2)
            k = torch.randn(b, lk, h * d, device="cuda", dtype=dtype).view(b, lk, h, d).transpose(1, 2)
            v = torch.randn(b, lk, h * d, device="cuda", dtype=dtype).view(b, lk, h, d).transpose(1, 2)
        reference = F.scaled_dot_product_attention(q[:1].float(), k[:1].float(), v[:1].float())
        row = {"shape": name, "layout": layout}
        for label, backend in BACKENDS.items():
            try:
                with sdpa_kernel([backend]):
                    out = F.scaled_dot_product_attention(q, k, v)
                    ms = time_ms(lambda: F.scaled_dot_product_attention(q, k, v))
            except RuntimeError as error:
                row[label] = f"unavailable: {str(error).splitlines()[0][:80]}"
                continue
            error = float((out[:1].float() - reference).norm() / reference.norm())
            row[label] = {"ms": round(ms, 3), "tflops": round(4 * b * h * lq * lk * d / ms / 1e9, 1), "rel_err": f"{error:.1e}"}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
