-- The schema migrations/ build, in one script: what a new database gets in one
-- transaction (src/db/mod.rs, SCHEMA). Generated from the migrations by
-- `SCALELAB_BLESS_SCHEMA=1 cargo test --lib schema`; do not edit by hand.

CREATE TABLE _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    success BOOLEAN NOT NULL,
    checksum BLOB NOT NULL,
    execution_time BIGINT NOT NULL
);

CREATE TABLE sweeps (
    name             TEXT PRIMARY KEY,
    description      TEXT NOT NULL DEFAULT '',
    path             TEXT,
    spec             TEXT NOT NULL,
    spec_hash        TEXT NOT NULL,
    metric           TEXT NOT NULL DEFAULT 'test_acc',
    select_rule      TEXT NOT NULL DEFAULT 'final',
    cells            INTEGER NOT NULL,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,
    scalelab_version TEXT NOT NULL,
    git_revision     TEXT
);

CREATE TABLE runs (
    id                TEXT PRIMARY KEY,
    config            TEXT NOT NULL,
    dataset           TEXT NOT NULL,
    model             TEXT NOT NULL,
    hidden            TEXT NOT NULL,
    train_size        INTEGER NOT NULL,
    test_size         INTEGER NOT NULL,
    data_seed         INTEGER NOT NULL,
    lr                REAL NOT NULL,
    batch_size        INTEGER NOT NULL,
    momentum          REAL NOT NULL,
    nesterov          INTEGER NOT NULL,
    weight_decay      REAL NOT NULL,
    noise_scale       REAL NOT NULL,
    lr_from_noise     INTEGER NOT NULL,
    schedule          TEXT NOT NULL,
    schedule_label    TEXT NOT NULL,
    budget_kind       TEXT NOT NULL CHECK (budget_kind IN ('epochs', 'steps')),
    budget            INTEGER NOT NULL,
    planned_steps     INTEGER NOT NULL,
    seed              INTEGER NOT NULL,
    state             TEXT NOT NULL DEFAULT 'pending'
                      CHECK (state IN ('pending', 'running', 'completed', 'diverged', 'failed')),
    attempt           INTEGER NOT NULL DEFAULT 0,
    failures          INTEGER NOT NULL DEFAULT 0,
    claimed_by        TEXT,
    worker            TEXT,
    heartbeat_at      REAL,
    started_at        REAL,
    finished_at       REAL,
    error             TEXT,
    diverged_at_epoch INTEGER,
    diverged_reason   TEXT,
    epochs_done       INTEGER,
    steps             INTEGER,
    samples           INTEGER,
    initial_train_loss REAL,
    final_train_loss  REAL,
    final_train_acc   REAL,
    final_test_loss   REAL,
    final_test_acc    REAL,
    best_test_acc     REAL,
    wall_s            REAL,
    eval_s            REAL,
    host              TEXT,
    threads           INTEGER,
    scalelab_version  TEXT,
    git_revision      TEXT,
    created_at        REAL NOT NULL
, instruments_s REAL, init_top_eigenvalue REAL, init_eigen_converged INTEGER, init_hessian_trace REAL, init_hessian_trace_se REAL, final_top_eigenvalue REAL, final_eigen_converged INTEGER, final_hessian_trace REAL, final_hessian_trace_se REAL, orphaned INTEGER NOT NULL DEFAULT 0, began_at REAL, kernels TEXT, cpu TEXT);

CREATE INDEX runs_state ON runs (state);

CREATE INDEX runs_cell ON runs (dataset, model, train_size, momentum, lr, batch_size);

CREATE TABLE sweep_runs (
    sweep    TEXT NOT NULL REFERENCES sweeps (name) ON DELETE CASCADE,
    run_id   TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    PRIMARY KEY (sweep, run_id)
);

CREATE INDEX sweep_runs_run ON sweep_runs (run_id);

CREATE INDEX sweep_runs_position ON sweep_runs (sweep, position);

CREATE TABLE epoch_metrics (
    run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    epoch       INTEGER NOT NULL,
    step        INTEGER NOT NULL,
    samples     INTEGER NOT NULL,
    lr          REAL NOT NULL,
    batch_size  INTEGER NOT NULL,
    train_loss  REAL,
    train_acc   REAL,
    test_loss   REAL,
    test_acc    REAL,
    nonfinite   TEXT,
    wall_s      REAL NOT NULL, grad_sq REAL, trace_sigma REAL, b_simple REAL, grad_h_grad REAL, trace_h_sigma REAL, b_noise REAL,
    PRIMARY KEY (run_id, epoch)
);

CREATE TABLE fits (
    id          INTEGER PRIMARY KEY,
    sweep       TEXT NOT NULL REFERENCES sweeps (name) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    metric      TEXT NOT NULL,
    select_rule TEXT NOT NULL,
    result      TEXT NOT NULL,
    created_at  REAL NOT NULL
);

CREATE INDEX fits_sweep ON fits (sweep, kind, created_at);

CREATE VIEW epoch_summary AS
SELECT m.*,
       m.test_loss - m.train_loss AS gap_loss,
       m.train_acc - m.test_acc AS gap_acc
FROM epoch_metrics m;

CREATE VIEW run_summary AS
SELECT s.sweep,
       r.id AS run_id,
       r.state,
       r.dataset, r.model, r.hidden, r.train_size, r.test_size,
       r.lr, r.batch_size, r.momentum, r.nesterov, r.weight_decay, r.noise_scale,
       r.schedule, r.schedule_label, r.budget_kind, r.budget, r.seed,
       r.epochs_done, r.steps, r.samples,
       r.final_train_loss, r.final_train_acc, r.final_test_loss, r.final_test_acc, r.best_test_acc,
       r.final_test_loss - r.final_train_loss AS final_gap_loss,
       r.final_train_acc - r.final_test_acc AS final_gap_acc,
       r.init_top_eigenvalue, r.init_hessian_trace,
       r.diverged_at_epoch, r.wall_s, r.attempt, r.error
FROM sweep_runs s
JOIN runs r ON r.id = s.run_id;

CREATE INDEX runs_orphans ON runs (state) WHERE orphaned > 0;
