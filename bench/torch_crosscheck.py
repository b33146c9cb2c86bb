"""Trains a few small networks with PyTorch and writes what it computed as the fixture of
tests/torch_crosscheck.rs, which replays the same training with scalelab (no PyTorch needed there).

Needs PyTorch and numpy:  python3 -m venv .venv-torch && .venv-torch/bin/pip install torch numpy
Usage (from the repository root):  .venv-torch/bin/python bench/torch_crosscheck.py [--out PATH]

Every input is drawn with numpy from a fixed seed per case, so the fixture does not depend on
PyTorch's random streams: the initial weights (PyTorch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in))
bound, in PyTorch's layout), a data set (inputs on a 1/16 grid, exact in float32; labels from a
random linear teacher, so the loss falls), one permutation of the examples per epoch and the batch
size in force in it, and the learning rate of every step (changed at an epoch boundary, as
scalelab's schedules do). PyTorch then trains in float32 on one thread: nn.Linear / nn.Conv2d,
F.cross_entropy (mean), torch.optim.SGD (dampening 0), batches cut from each epoch's permutation by
torch.utils.data.BatchSampler(drop_last=False), so the last batch of an epoch may be partial.

Written per case: the hyper-parameters, the data, the batches, the learning rates, the initial
parameters, the gradient of every parameter at step 0, the loss of every step, the final
parameters, and the mean loss and accuracy over the whole training set before and after training.
Floats are written as the shortest decimal that reads back (through float64) as the same float32.
"""
import argparse
import json
import os

import numpy as np
import torch
import torch.nn.functional as F

# (name, seed, model, hyper-parameters, [(epochs, batch size, lr), ...]): each phase a schedule
# step. Sizes are small so that the fixture stays small; every case has a partial last batch.
CASES = [
    dict(name="mlp_momentum", seed=1, kind="mlp", input_shape=[12], hidden=[16, 8], classes=3, n=40,
         momentum=0.9, nesterov=False, weight_decay=0.0,
         # decay-lr: ε ÷ 5 from epoch 4.
         phases=[(3, 16, 0.3), (2, 16, 0.06)]),
    dict(name="mlp_nesterov_weight_decay", seed=2, kind="mlp", input_shape=[12], hidden=[16, 8],
         classes=3, n=40, momentum=0.9, nesterov=True, weight_decay=0.05,
         phases=[(3, 16, 0.1), (2, 16, 0.02)]),
    dict(name="mlp_plain_sgd", seed=3, kind="mlp", input_shape=[12], hidden=[16, 8], classes=3, n=40,
         momentum=0.0, nesterov=False, weight_decay=0.0,
         # increase-batch: B × 2 from epoch 3 (12, 12, 12, 4, then 24, 16), and ε ÷ 2 from epoch 5.
         phases=[(2, 12, 0.5), (2, 24, 0.5), (1, 24, 0.25)]),
    dict(name="cnn_momentum", seed=4, kind="cnn", input_shape=[1, 12, 12], hidden=[4, 8], classes=3,
         n=20, momentum=0.9, nesterov=False, weight_decay=0.0,
         phases=[(2, 8, 0.05), (2, 8, 0.01)]),
    # Odd sizes: 10×10 pools to 5×5, which the second pool floors to 2×2; two input channels.
    dict(name="cnn_nesterov_weight_decay_odd", seed=5, kind="cnn", input_shape=[2, 10, 10],
         hidden=[3, 4], classes=4, n=14, momentum=0.9, nesterov=True, weight_decay=0.05,
         phases=[(2, 6, 0.05), (1, 6, 0.01)]),
]


def build(case):
    """The PyTorch network of a case (scalelab's `mlp` or `cnn`, docs/trainer.md)."""
    k = case["classes"]
    if case["kind"] == "mlp":
        widths = [int(np.prod(case["input_shape"]))] + case["hidden"] + [k]
        layers = []
        for i, (a, b) in enumerate(zip(widths, widths[1:])):
            layers.append(torch.nn.Linear(a, b))
            if i + 2 < len(widths):
                layers.append(torch.nn.ReLU())
        return torch.nn.Sequential(*layers)
    c, h, w = case["input_shape"]
    c1, c2 = case["hidden"]
    return torch.nn.Sequential(
        torch.nn.Conv2d(c, c1, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(c1, c2, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(c2 * (h // 4) * (w // 4), k))


def f32_list(a):
    """float32 values as floats whose shortest repr reads back (via float64) as the same float32."""
    a = np.asarray(a, dtype=np.float32).ravel()
    out = [float(str(v)) for v in a]
    back = np.array(out, dtype=np.float64).astype(np.float32)
    assert np.array_equal(back.view(np.uint32), a.view(np.uint32)), "a float32 did not round-trip"
    return out


def params_of(model, grads=False):
    out = []
    for name, p in model.named_parameters():
        t = p.grad if grads else p
        out.append(dict(name=name, shape=list(p.shape), values=f32_list(t.detach().numpy())))
    return out


def evaluate(model, x, y):
    with torch.no_grad():
        logits = model(x)
        loss = F.cross_entropy(logits, y).item()
        acc = (logits.argmax(dim=1) == y).double().mean().item()
    return dict(loss=loss, acc=acc)


def run(case):
    rng = np.random.default_rng(case["seed"])
    model = build(case)
    # Initial weights from numpy in PyTorch's layout and bound (layer by layer: weight, bias).
    with torch.no_grad():
        layers = [m for m in model if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
        for m in layers:
            fan_in = int(np.prod(m.weight.shape[1:]))
            bound = 1.0 / np.sqrt(fan_in)
            for p in (m.weight, m.bias):
                v = rng.uniform(-bound, bound, size=tuple(p.shape)).astype(np.float32)
                p.copy_(torch.from_numpy(v))
    init = params_of(model)

    n, shape, k = case["n"], case["input_shape"], case["classes"]
    d = int(np.prod(shape))
    x = (np.round(rng.standard_normal((n, d)) * 16) / 16).astype(np.float32)
    teacher = rng.standard_normal((d, k))
    y = np.argmax(x.astype(np.float64) @ teacher, axis=1).astype(np.int64)
    xt = torch.from_numpy(x).reshape([n] + shape)
    yt = torch.from_numpy(y)

    epochs, batches, lrs = [], [], []
    for count, batch_size, lr in case["phases"]:
        for _ in range(count):
            perm = rng.permutation(n).tolist()
            epochs.append(dict(batch_size=batch_size, perm=perm))
            for b in torch.utils.data.BatchSampler(perm, batch_size, drop_last=False):
                batches.append(list(b))
                lrs.append(lr)

    opt = torch.optim.SGD(model.parameters(), lr=lrs[0], momentum=case["momentum"], dampening=0,
                          nesterov=case["nesterov"], weight_decay=case["weight_decay"])
    eval_init = evaluate(model, xt, yt)
    losses, grad0 = [], None
    for step, (idx, lr) in enumerate(zip(batches, lrs)):
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.tensor(idx)
        loss = F.cross_entropy(model(xt[idx]), yt[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if step == 0:
            grad0 = params_of(model, grads=True)
        opt.step()
        losses.append(f32_list([loss.item()])[0])

    out = {key: case[key] for key in ("name", "kind", "input_shape", "hidden", "classes", "momentum",
                                      "nesterov", "weight_decay")}
    out.update(train_x=f32_list(x), train_y=y.tolist(), epochs=epochs, batches=batches, lrs=lrs,
               init=init, grad0=[g["values"] for g in grad0], losses=losses,
               final=[p["values"] for p in params_of(model)], eval_init=eval_init,
               eval_final=evaluate(model, xt, yt))
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data",
                                                 "torch_crosscheck.json"))
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    # As scalelab's training thread (docs/trainer.md, "Floating point").
    torch.set_flush_denormal(True)
    cases = [run(c) for c in CASES]
    # One key per line, so that a regenerated fixture diffs by field.
    lines = ["{", f' "generator": "bench/torch_crosscheck.py, torch {torch.__version__.split("+")[0]}'
                  f', numpy {np.__version__}",', ' "cases": [']
    for i, c in enumerate(cases):
        fields = [f'  "{key}": {json.dumps(v, separators=(",", ":"))}' for key, v in c.items()]
        lines.append("  {\n" + ",\n".join(fields) + "\n  }" + ("," if i + 1 < len(cases) else ""))
    lines += [" ]", "}"]
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    for c in cases:
        print(f'{c["name"]}: {len(c["losses"])} steps, loss {c["losses"][0]:.4f} -> '
              f'{c["losses"][-1]:.4f}, train loss {c["eval_init"]["loss"]:.4f} -> '
              f'{c["eval_final"]["loss"]:.4f}, acc {c["eval_final"]["acc"]:.3f}')
    print(f"wrote {os.path.normpath(a.out)} ({os.path.getsize(a.out)} bytes)")


if __name__ == "__main__":
    main()
