-- Instruments (docs/schema.md): the gradient noise scale per epoch, the curvature per run, and the
-- generalisation gap as a view.

ALTER TABLE epoch_metrics ADD COLUMN grad_sq REAL;
ALTER TABLE epoch_metrics ADD COLUMN trace_sigma REAL;
ALTER TABLE epoch_metrics ADD COLUMN b_simple REAL;

ALTER TABLE runs ADD COLUMN instruments_s REAL;
ALTER TABLE runs ADD COLUMN init_top_eigenvalue REAL;
ALTER TABLE runs ADD COLUMN init_eigen_converged INTEGER;
ALTER TABLE runs ADD COLUMN init_hessian_trace REAL;
ALTER TABLE runs ADD COLUMN init_hessian_trace_se REAL;
ALTER TABLE runs ADD COLUMN final_top_eigenvalue REAL;
ALTER TABLE runs ADD COLUMN final_eigen_converged INTEGER;
ALTER TABLE runs ADD COLUMN final_hessian_trace REAL;
ALTER TABLE runs ADD COLUMN final_hessian_trace_se REAL;

-- Every epoch with its generalisation gap: test − train loss, train − test accuracy.
CREATE VIEW epoch_summary AS
SELECT m.*,
       m.test_loss - m.train_loss AS gap_loss,
       m.train_acc - m.test_acc AS gap_acc
FROM epoch_metrics m;

DROP VIEW run_summary;
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
