-- B_noise = tr(HΣ)/(GᵀHG) (McCandlish et al. 2018), measured with the gradient noise scale when a
-- run's instruments ask for it (`b_noise = true`): the means of the epoch's GᵀHG and tr(HΣ)
-- estimates, and their ratio. NULL when not measured (and in rows written before this column).

ALTER TABLE epoch_metrics ADD COLUMN grad_h_grad REAL;
ALTER TABLE epoch_metrics ADD COLUMN trace_h_sigma REAL;
ALTER TABLE epoch_metrics ADD COLUMN b_noise REAL;
