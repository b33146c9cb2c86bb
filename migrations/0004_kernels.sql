-- Which level of scalelab's vector kernels trained a run (`AVX-512`, `AVX2` or `portable`;
-- src/train/isa.rs): provenance of the last claim, beside host and threads. NULL for runs
-- claimed by builds before this column.

ALTER TABLE runs ADD COLUMN kernels TEXT;
