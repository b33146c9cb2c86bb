"""Reference training throughput of scalelab's CNN in PyTorch, for `scalelab bench --model cnn`.

Not part of the test suite. Needs PyTorch:  python3 -m venv .venv-torch && .venv-torch/bin/pip install torch numpy
Usage: python bench/torch_cnn_reference.py --threads 1 --batch-sizes 16,32,64,128,256 [--channels 8] [--steps 100]

Model (the same as scalelab's `cnn` with hidden = [c, 2c]): conv 5x5 (1 -> c, padding 2) -> ReLU -> max-pool 2
-> conv 5x5 (c -> 2c, padding 2) -> ReLU -> max-pool 2 -> Linear(2c*7*7 -> 10) on 28x28 inputs; mean cross-entropy;
SGD momentum 0.9; random inputs in [0, 1); batches gathered by index. Prints one JSON line per batch size.
"""
import argparse, json, time
import torch

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=1)
p.add_argument("--batch-sizes", default="16,32,64,128,256")
p.add_argument("--channels", type=int, default=8)
p.add_argument("--steps", type=int, default=100)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
n, c = 8192, a.channels
xs = torch.rand(n, 1, 28, 28)
ys = torch.randint(0, 10, (n,))
for bs in [int(b) for b in a.batch_sizes.split(",")]:
    m = torch.nn.Sequential(
        torch.nn.Conv2d(1, c, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(c, 2 * c, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(2 * c * 7 * 7, 10))
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    perm = torch.randperm(n)
    def step(s):
        idx = perm[torch.arange(s * bs, (s + 1) * bs) % n]
        loss = torch.nn.functional.cross_entropy(m(xs[idx]), ys[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    for s in range(10):
        step(s)
    t0 = time.perf_counter()
    for s in range(a.steps):
        step(s)
    el = time.perf_counter() - t0
    print(json.dumps({"engine": "pytorch", "model": "cnn", "threads": a.threads, "hidden": c, "batch_size": bs,
                      "steps_per_s": a.steps / el, "samples_per_s": a.steps * bs / el}))
