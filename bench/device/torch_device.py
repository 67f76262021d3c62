"""PyTorch peers for bench/device/run.sh, on the same sizes as bench_cuda_device, one JSON line each
  {"bench", "impl": "torch", "shape", "median_ms", "value", "unit"}:
  gemm_bf16     torch.matmul on bf16 square matrices (cuBLAS), TFLOP/s
  adamw_step    torch.optim.AdamW(fused=True) step over one flat fp32 parameter of n elements,
                GB/s counted as 28·n bytes (the same count as ours)
  copy_d2d      tensor.copy_ of 4·n bytes, GB/s counting bytes read + written
Random (never zero) inputs; CUDA events after warm-up; median of --repeats.
--device cpu runs the same code at toy sizes without a GPU (a syntax and logic check only)."""
import argparse
import json
import sys


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1024,2048,4096,8192", help="comma-separated square GEMM sizes")
    p.add_argument("--adamw-n", type=int, default=1 << 28, help="AdamW parameter count (fp32)")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    a = p.parse_args(argv)
    a.sizes = [int(s) for s in a.sizes.split(",") if s]
    if not a.sizes or min(a.sizes) < 1 or a.adamw_n < 1 or a.repeats < 1:
        p.error("need positive --sizes, --adamw-n and --repeats")
    return a


def median_ms(torch, fn, device, repeats, warmup=3):
    import time
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    n = len(times)
    return times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])


def emit(bench, shape, ms, value, unit):
    print(json.dumps({"bench": bench, "impl": "torch", "shape": shape, "median_ms": ms, "value": value, "unit": unit}),
          flush=True)


def main(argv):
    a = parse(argv)
    import torch
    dev = a.device
    if dev == "cuda" and not torch.cuda.is_available():
        print("torch_device.py: no CUDA device visible to PyTorch", file=sys.stderr)
        return 1
    print(json.dumps({"meta": True, "impl": "torch", "version": torch.__version__,
                      "device": torch.cuda.get_device_name(0) if dev == "cuda" else "cpu"}), flush=True)
    for n in a.sizes:
        x = torch.rand(n, n, device=dev, dtype=torch.float32).mul_(2).sub_(1).to(torch.bfloat16)
        y = torch.rand(n, n, device=dev, dtype=torch.float32).mul_(2).sub_(1).to(torch.bfloat16)
        out = torch.empty(n, n, device=dev, dtype=torch.bfloat16)
        ms = median_ms(torch, lambda: torch.matmul(x, y, out=out), dev, a.repeats)
        emit("gemm_bf16", f"{n}x{n}x{n}", ms, 2.0 * n ** 3 / (ms * 1e-3) / 1e12, "TFLOP/s")
        del x, y, out
    n = a.adamw_n
    p = torch.nn.Parameter(torch.rand(n, device=dev).mul_(2).sub_(1))
    p.grad = torch.rand(n, device=dev).sub_(0.5).mul_(2e-2)
    opt = torch.optim.AdamW([p], lr=1e-4, weight_decay=0.01, fused=(dev == "cuda"))
    opt.step()  # creates the moments
    ms = median_ms(torch, opt.step, dev, a.repeats)
    emit("adamw_step", f"n={n}", ms, 28.0 * n / (ms * 1e-3) / 1e9, "GB/s")
    dst = torch.empty_like(p.data)
    ms = median_ms(torch, lambda: dst.copy_(p.data), dev, a.repeats)
    emit("copy_d2d", f"bytes={4 * n}", ms, 2.0 * 4.0 * n / (ms * 1e-3) / 1e9, "GB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
