-- The processor that trained a run (`provenance::cpu_model`: the x86 brand string with its family,
-- model and stepping, or /proc/cpuinfo's model line elsewhere): provenance of the last claim,
-- beside host, threads and kernels. NULL where the system does not say, and for runs claimed by
-- builds before this column.

ALTER TABLE runs ADD COLUMN cpu TEXT;
