-- Runs whose process died (docs/schema.md): how often a run was requeued because its claimer
-- died or fell silent, and, for a run trained after that, when it began (written before its
-- training starts), so that the next death of its process is counted against it.

ALTER TABLE runs ADD COLUMN orphaned INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN began_at REAL;

-- `scalelab run` looks for orphans before it opens the database for writing: a small index.
CREATE INDEX runs_orphans ON runs (state) WHERE orphaned > 0;
