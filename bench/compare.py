"""Side-by-side throughput of scalelab and PyTorch on this machine: the ratio table of docs/performance.md.

Not part of the test suite. Needs PyTorch (python3 -m venv .venv-torch && .venv-torch/bin/pip install torch numpy)
and a release build of scalelab (cargo build --release).

Usage: .venv-torch/bin/python bench/compare.py [--model mlp|cnn] [--batch-sizes 16,32,...] [--rounds 3]
       [--scalelab target/release/scalelab] [--json-out FILE] [--cap-avx2]

With --cap-avx2, PyTorch runs AVX2 kernels only, and the scalelab binary should be one built without its
avx512 feature (src/train/isa.rs): the comparison a CPU without AVX-512 would give (docs/performance.md,
"Machines without AVX-512").

Each round runs scalelab's bench and then the PyTorch reference, alternating, one thread each, so both see the
same machine state; the best steps/s of each over the rounds is kept (the least disturbed run, as noise on a
shared machine only slows runs down). Prints a markdown table of steps/s, samples/s and the ratio per batch size.
"""
import argparse, json, os, platform, subprocess, sys

here = os.path.dirname(os.path.abspath(__file__))
p = argparse.ArgumentParser()
p.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
p.add_argument("--batch-sizes", default=None)
p.add_argument("--rounds", type=int, default=3)
p.add_argument("--scalelab", default=os.path.join(here, "..", "target", "release", "scalelab"))
p.add_argument("--json-out", default=None)
p.add_argument("--cap-avx2", action="store_true",
               help="run PyTorch with AVX2 kernels only (MKL, ATen and oneDNN capped), as on a CPU "
                    "without AVX-512; pair it with a scalelab built without its avx512 feature")
a = p.parse_args()
torch_env = dict(os.environ)
if a.cap_avx2:
    torch_env.update(MKL_ENABLE_INSTRUCTIONS="AVX2", ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2")
sizes = a.batch_sizes or ("16,32,64,128,256,512,1024" if a.model == "mlp" else "16,32,64,128,256,512")
torch_script = os.path.join(here, "torch_reference.py" if a.model == "mlp" else "torch_cnn_reference.py")


def lines(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return [json.loads(l) for l in out.splitlines() if l.startswith("{")]


best = {"scalelab": {}, "pytorch": {}}
peak = 0.0
kernels = "?"
named_cpu = None  # the processor as scalelab names it (runs.cpu): brand, family, model, stepping
for r in range(a.rounds):
    ours = lines([a.scalelab, "bench", "--model", a.model, "--batch-sizes", sizes, "--threads", "1",
                  "--format", "json"])
    theirs = lines([sys.executable, torch_script, "--threads", "1", "--batch-sizes", sizes], torch_env)
    for engine, rows in (("scalelab", ours), ("pytorch", theirs)):
        for row in rows:
            if "matmul_peak_gflops" in row:
                peak = max(peak, row["matmul_peak_gflops"])
                kernels = row.get("kernels", kernels)
                named_cpu = row.get("cpu") or named_cpu
            elif "batch_size" in row:
                b = row["batch_size"]
                if b not in best[engine] or row["steps_per_s"] > best[engine][b]["steps_per_s"]:
                    best[engine][b] = row
    print(f"round {r + 1}/{a.rounds} done", file=sys.stderr)

import torch  # noqa: E402  (only for its version)

cpu = platform.processor() or platform.machine()
try:
    with open("/proc/cpuinfo") as f:
        cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
except (OSError, StopIteration):
    pass
cpu = named_cpu or cpu
print(f"model {a.model}, one thread, best of {a.rounds} alternating rounds; CPU: {cpu}; torch {torch.__version__}")
torch_isa = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                           capture_output=True, text=True, env=torch_env).stdout.strip() or "?"
print(f"kernels: scalelab {kernels}, PyTorch {torch_isa}" + (" (MKL capped at AVX2)" if a.cap_avx2 else ""))
if peak:
    print(f"scalelab's measured f32 matmul peak (best round): {peak:.1f} GFLOP/s")
print()
print("| B | PyTorch steps/s | scalelab steps/s | scalelab samples/s | ratio | step FLOPs / peak |")
print("|---:|---:|---:|---:|---:|---:|")
for b in sorted(best["scalelab"]):
    s, t = best["scalelab"][b], best["pytorch"].get(b)
    frac = s.get("peak_fraction", float("nan"))  # against the peak measured in the same process
    if t is None:
        continue
    print(f"| {b} | {t['steps_per_s']:.1f} | {s['steps_per_s']:.1f} | {s['samples_per_s']:.0f} | "
          f"{s['steps_per_s'] / t['steps_per_s']:.2f}x | {frac:.0%} |")
if a.json_out:
    with open(a.json_out, "w") as f:
        json.dump({"model": a.model, "cpu": cpu, "torch": torch.__version__, "peak_gflops": peak,
                   "kernels": {"scalelab": kernels, "pytorch": torch_isa, "cap_avx2": a.cap_avx2},
                   "best": {k: list(v.values()) for k, v in best.items()}}, f, indent=1)
