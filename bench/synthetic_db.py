"""Fill a scalelab database with a synthetic sweep of many runs, for query benchmarks.

Not part of the test suite. Usage (from the repository root):
    cargo run --release -- run sweeps/quickstart.toml --db big.db --enqueue-only
    python3 bench/synthetic_db.py big.db --runs 20000 --epochs 49     # 1,000,000 epoch rows
    time target/release/scalelab runs --sweep big --db big.db --where "batch_size >= 64" --format csv > /dev/null
    time target/release/scalelab sql "SELECT batch_size, AVG(test_acc) FROM epoch_metrics GROUP BY batch_size" --db big.db

Rows are plausible but made up (they are not training results); the schema is scalelab's own.
"""
import argparse, json, math, random, sqlite3, time

p = argparse.ArgumentParser()
p.add_argument("db")
p.add_argument("--runs", type=int, default=20000)
p.add_argument("--epochs", type=int, default=49, help="epochs per run (rows = runs * (epochs + 1))")
a = p.parse_args()
rng = random.Random(0)
con = sqlite3.connect(a.db)
con.execute("PRAGMA journal_mode=WAL")
now = time.time()
con.execute(
    "INSERT OR REPLACE INTO sweeps (name, description, spec, spec_hash, cells, created_at, updated_at, scalelab_version) "
    "VALUES ('big', 'synthetic rows for query benchmarks', '', 'synthetic', ?, ?, ?, 'bench')",
    (a.runs, now, now),
)
lrs = [0.001 * 2 ** k for k in range(8)]
batches = [2 ** k for k in range(3, 13)]
runs, members, epochs = [], [], []
for i in range(a.runs):
    rid = f"{i:016x}"
    lr, b, seed = lrs[i % 8], batches[(i // 8) % 10], i // 80
    acc = 0.9 - 0.05 * (math.log2(b) - math.log2(lr * 20000)) ** 2 / 10 + rng.gauss(0, 0.01)
    cfg = json.dumps({"lr": lr, "batch_size": b, "seed": seed})
    runs.append((rid, cfg, "teacher", "mlp", "[128]", 1000, 1000, 0, lr, b, 0.9, 0, 0.0, lr * (1000 / b - 1) / 0.1, 0,
                 "constant", "constant", "epochs", a.epochs, a.epochs * math.ceil(1000 / b), seed, "completed", 1, 0,
                 a.epochs, a.epochs * math.ceil(1000 / b), a.epochs * 1000, 2.3, 0.3, 0.95, 0.8, acc, acc + 0.01, 1.0, now))
    members.append(("big", rid, i))
    for e in range(a.epochs + 1):
        f = e / max(a.epochs, 1)
        epochs.append((rid, e, e * math.ceil(1000 / b), e * 1000, lr, b, 2.3 * (1 - f) + 0.3 * f, 0.1 + 0.85 * f,
                       2.3 * (1 - f) + 0.8 * f, 0.1 + (acc - 0.1) * f, None, e * 0.02))
con.executemany(
    "INSERT OR REPLACE INTO runs (id, config, dataset, model, hidden, train_size, test_size, data_seed, lr, batch_size, momentum, "
    "nesterov, weight_decay, noise_scale, lr_from_noise, schedule, schedule_label, budget_kind, budget, planned_steps, seed, state, "
    "attempt, failures, epochs_done, steps, samples, initial_train_loss, final_train_loss, final_train_acc, final_test_loss, "
    "final_test_acc, best_test_acc, wall_s, created_at) VALUES (" + ",".join("?" * 35) + ")", runs)
con.executemany("INSERT OR REPLACE INTO sweep_runs (sweep, run_id, position) VALUES (?, ?, ?)", members)
con.executemany(
    "INSERT OR REPLACE INTO epoch_metrics (run_id, epoch, step, samples, lr, batch_size, train_loss, train_acc, test_loss, "
    "test_acc, nonfinite, wall_s) VALUES (" + ",".join("?" * 12) + ")", epochs)
con.commit()
print(f"{a.db}: {len(runs)} runs, {len(epochs)} epoch rows")
