//! Fused CPU kernels as candle custom ops: each reads and writes its tensors once, in place,
//! instead of chaining several elementwise passes that each allocate a new tensor.
//!
//! They need contiguous `f32` CPU storage (what the trainer always has); anything else is an
//! error, never a silent copy.

use std::cell::RefCell;

use candle_core::{CpuStorage, Device, InplaceOp2, Layout, Tensor};

use super::isa::Isa;
use crate::error::Result;

fn slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> candle_core::Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => candle_core::bail!("{op}: needs a contiguous f32 tensor"),
    }
}

fn slice_mut<'a>(
    s: &'a mut CpuStorage,
    l: &Layout,
    op: &str,
) -> candle_core::Result<&'a mut [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&mut v[a..b]),
        _ => candle_core::bail!("{op}: needs a contiguous f32 tensor"),
    }
}

/// `z ← z + b` row-wise (z row-major with rows of `b.len()` values), then ReLU if `relu`.
pub fn bias_act(z: &mut [f32], b: &[f32], relu: bool) -> Result<()> {
    let n = b.len();
    if n == 0 || !z.len().is_multiple_of(n) {
        return Err(candle_core::Error::Msg(format!(
            "bias-act: {} values do not split into rows of {n}",
            z.len()
        ))
        .into());
    }
    for row in z.chunks_exact_mut(n) {
        if relu {
            for (v, bb) in row.iter_mut().zip(b) {
                *v = (*v + bb).max(0.0);
            }
        } else {
            for (v, bb) in row.iter_mut().zip(b) {
                *v += bb;
            }
        }
    }
    Ok(())
}

/// `z ← ReLU(z + b)` on a transposed layer (`z` holds `b.len()` rows of `rows` values, one row
/// per unit): [`bias_act`]'s arithmetic on the transposed layout, one broadcast bias per row.
pub fn bias_relu_t(z: &mut [f32], b: &[f32], rows: usize) -> Result<()> {
    if z.len() != b.len() * rows {
        return Err(candle_core::Error::Msg(format!(
            "bias-relu: {} values are not {} rows of {rows}",
            z.len(),
            b.len()
        ))
        .into());
    }
    if rows == 0 {
        return Ok(());
    }
    for (row, &bb) in z.chunks_exact_mut(rows).zip(b) {
        for v in row.iter_mut() {
            *v = (*v + bb).max(0.0);
        }
    }
    Ok(())
}

/// `d ← d ⊙ [h > 0]`: back-propagation through a ReLU whose output was h (branch-free, so the
/// loop vectorises).
pub fn relu_backward(d: &mut [f32], h: &[f32]) {
    for (dv, hv) in d.iter_mut().zip(h) {
        *dv = if *hv > 0.0 { *dv } else { 0.0 };
    }
}

/// One momentum-SGD update of one parameter tensor, in PyTorch's form (torch.optim.SGD with
/// dampening 0): g ← g + λw; u ← m·u + g; d = g + m·u (Nesterov) or u; w ← w − ε·d.
/// With m = 0 the buffer is not touched and d = g.
pub struct SgdUpdate<'a> {
    /// Learning rate ε.
    pub lr: f32,
    /// Momentum m.
    pub momentum: f32,
    /// Weight decay λ.
    pub weight_decay: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// The gradient g of this parameter (same length).
    pub grad: &'a [f32],
    /// The momentum buffer u of this parameter (same length).
    pub buf: RefCell<&'a mut [f32]>,
}

impl candle_core::InplaceOp1 for SgdUpdate<'_> {
    fn name(&self) -> &'static str {
        "sgd-update"
    }
    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> candle_core::Result<()> {
        let g = self.grad;
        let w = slice_mut(s, l, "sgd-update")?;
        let mut buf = self.buf.borrow_mut();
        if g.len() != w.len() || buf.len() != w.len() {
            candle_core::bail!(
                "sgd-update: parameter {} / gradient {} / buffer {} lengths differ",
                w.len(),
                g.len(),
                buf.len()
            );
        }
        let (lr, m, wd) = (self.lr, self.momentum, self.weight_decay);
        #[cfg(target_arch = "x86_64")]
        match Isa::detected() {
            // SAFETY: the CPU has AVX-512F (Isa::detected checks it).
            Isa::Avx512 => unsafe { sgd_avx512(w, g, &mut buf, lr, m, wd, self.nesterov) },
            // SAFETY: the CPU has AVX2 (Isa::detected checks it).
            Isa::Avx2 => unsafe { sgd_avx2(w, g, &mut buf, lr, m, wd, self.nesterov) },
            Isa::Portable => sgd_portable(w, g, &mut buf, lr, m, wd, self.nesterov),
        }
        #[cfg(not(target_arch = "x86_64"))]
        sgd_portable(w, g, &mut buf, lr, m, wd, self.nesterov);
        Ok(())
    }
}

/// [`SgdUpdate`]'s arithmetic over one parameter (lengths checked by the caller).
#[inline(always)]
fn sgd_portable(
    w: &mut [f32],
    g: &[f32],
    buf: &mut [f32],
    lr: f32,
    m: f32,
    wd: f32,
    nesterov: bool,
) {
    if m == 0.0 {
        for (wv, gv) in w.iter_mut().zip(g) {
            let gg = gv + wd * *wv;
            *wv -= lr * gg;
        }
    } else if nesterov {
        for ((wv, gv), u) in w.iter_mut().zip(g).zip(buf.iter_mut()) {
            let gg = gv + wd * *wv;
            *u = m * *u + gg;
            *wv -= lr * (gg + m * *u);
        }
    } else {
        for ((wv, gv), u) in w.iter_mut().zip(g).zip(buf.iter_mut()) {
            let gg = gv + wd * *wv;
            *u = m * *u + gg;
            *wv -= lr * *u;
        }
    }
}

/// [`sgd_portable`] compiled for AVX-512: 16 lanes instead of the baseline's 4, the same
/// operations in every lane (no fused multiply-adds), so the same bits. At the quickstart's
/// smallest batches the update was a fifth of the step.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn sgd_avx512(w: &mut [f32], g: &[f32], buf: &mut [f32], lr: f32, m: f32, wd: f32, nesterov: bool) {
    sgd_portable(w, g, buf, lr, m, wd, nesterov);
}

/// [`sgd_portable`] compiled for AVX2: 8 lanes, the same operations, the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn sgd_avx2(w: &mut [f32], g: &[f32], buf: &mut [f32], lr: f32, m: f32, wd: f32, nesterov: bool) {
    sgd_portable(w, g, buf, lr, m, wd, nesterov);
}

/// `dst ← dst + α·src`, elementwise (moves parameters along a direction: finite differences,
/// Hessian-vector products).
pub struct Axpy {
    /// The multiplier α.
    pub alpha: f32,
}

impl InplaceOp2 for Axpy {
    fn name(&self) -> &'static str {
        "axpy"
    }
    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let x = slice(s2, l2, "axpy")?;
        let d = slice_mut(s1, l1, "axpy")?;
        if x.len() != d.len() {
            candle_core::bail!("axpy: {} vs {} values", d.len(), x.len());
        }
        for (dv, xv) in d.iter_mut().zip(x) {
            *dv += self.alpha * xv;
        }
        Ok(())
    }
}

/// `dst ← src` from a host slice (sets parameters to a given point, then back).
pub struct Assign<'a> {
    /// The values, as many as the tensor holds.
    pub src: &'a [f32],
}

impl candle_core::InplaceOp1 for Assign<'_> {
    fn name(&self) -> &'static str {
        "assign"
    }
    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> candle_core::Result<()> {
        let d = slice_mut(s, l, "assign")?;
        if d.len() != self.src.len() {
            candle_core::bail!("assign: {} values into {}", self.src.len(), d.len());
        }
        d.copy_from_slice(self.src);
        Ok(())
    }
}

/// `acc ← Σ_rows t`, t row-major with rows of `acc.len()` values: the bias gradient Σ_rows dZ,
/// adding whole rows in order (a column-wise sum walks memory with a stride, far slower).
pub fn sum_rows_into(t: &[f32], acc: &mut [f32]) {
    acc.fill(0.0);
    for row in t.chunks_exact(acc.len().max(1)) {
        for (a, x) in acc.iter_mut().zip(row) {
            *a += x;
        }
    }
}

/// `dst ← srcᵀ`: `src` is `(rows, cols)` row-major, `dst` becomes `(cols, rows)` row-major.
pub fn transpose_into<T: Copy>(src: &[T], rows: usize, cols: usize, dst: &mut [T]) {
    for (r, row) in src.chunks_exact(cols.max(1)).take(rows).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            dst[c * rows + r] = v;
        }
    }
}

/// Copies the rows `idx` of the `(rows, d)` tensor `src` into `dst` (row-major), reusing its
/// memory; an index past the last row is an error.
pub fn gather_rows(src: &Tensor, idx: &[u32], dst: &mut Vec<f32>) -> Result<()> {
    let (rows, d) = src.dims2()?;
    with_f32(src, |v| {
        dst.clear();
        for &i in idx {
            let i = i as usize;
            if i >= rows {
                return Err(candle_core::Error::Msg(format!(
                    "gather: row {i} of a {rows}-row tensor"
                )));
            }
            dst.extend_from_slice(&v[i * d..(i + 1) * d]);
        }
        Ok(())
    })??;
    Ok(())
}

/// The contiguous `f32` data behind a tensor's storage guard (`Tensor::storage_and_layout`),
/// so several tensors can be read at once without copying.
pub fn f32_data<'a>(s: &'a candle_core::Storage, l: &Layout) -> Result<&'a [f32]> {
    match s {
        candle_core::Storage::Cpu(s) => Ok(slice(s, l, "read")?),
        _ => Err(candle_core::Error::Msg("scalelab trains on the CPU only".into()).into()),
    }
}

/// Runs `f` on the contiguous `f32` CPU data of `t` without copying it.
pub fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(s) => Ok(f(slice(s, layout, "read")?)),
        _ => Err(candle_core::Error::Msg("scalelab trains on the CPU only".into()).into()),
    }
}

/// Sum of the cross-entropy losses over a batch and the number of correct predictions
/// (argmax, first maximum on ties, as torch.argmax).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossSum {
    /// Σᵢ (log Σⱼ exp zᵢⱼ − zᵢ,yᵢ), accumulated in f64.
    pub loss: f64,
    /// Number of rows whose argmax equals the label.
    pub correct: usize,
    /// Number of rows.
    pub count: usize,
}

impl LossSum {
    /// Nothing summed yet over a batch of `count` rows.
    pub fn new(count: usize) -> Self {
        LossSum {
            count,
            ..LossSum::default()
        }
    }

    /// Adds one row's loss and whether it was predicted correctly ([`softmax_xent_row`]).
    pub fn add(&mut self, (loss, correct): (f64, bool)) {
        self.loss += loss;
        self.correct += correct as usize;
    }
}

/// Softmax cross-entropy of `logits` `(rows, k)` against labels `y`; with `grad`, also the
/// gradient of the *mean* loss with respect to the logits, (softmax − onehot)/rows.
pub fn softmax_xent(logits: &Tensor, y: &[u32], grad: bool) -> Result<(LossSum, Option<Tensor>)> {
    let (rows, k) = logits.dims2()?;
    if rows != y.len() {
        return Err(candle_core::Error::Msg(format!(
            "cross-entropy: {rows} logits rows but {} labels",
            y.len()
        ))
        .into());
    }
    let mut dl = if grad {
        vec![0f32; rows * k]
    } else {
        Vec::new()
    };
    let inv = 1.0 / rows as f32;
    let sum = with_f32(logits, |z| {
        let mut s = LossSum::new(rows);
        for (i, (row, &label)) in z.chunks_exact(k).zip(y).enumerate() {
            let out = dl.get_mut(i * k..(i + 1) * k);
            s.add(softmax_xent_row(row, label, inv, out));
        }
        s
    })?;
    let dl = if grad {
        Some(Tensor::from_vec(dl, (rows, k), &Device::Cpu)?)
    } else {
        None
    };
    Ok((sum, dl))
}

/// A read-only view of a matrix inside a slice: element (i, j) is
/// `data[i·row_stride + j·col_stride]`, so a transpose is a view, never a copy.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    /// The values.
    pub data: &'a [f32],
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Distance between rows.
    pub row_stride: usize,
    /// Distance between columns.
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// The row-major `rows × cols` matrix held by `data`.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose, as a view.
    pub fn t(self) -> Self {
        MatRef {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Whether every element the view names lies inside `data`.
    pub(crate) fn in_bounds(&self) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return true;
        }
        // Checked: a wrapped offset would pass the comparison and name memory past the slice.
        let last = (self.rows - 1)
            .checked_mul(self.row_stride)
            .zip((self.cols - 1).checked_mul(self.col_stride))
            .and_then(|(r, c)| r.checked_add(c));
        last.is_some_and(|last| last < self.data.len())
    }
}

/// `dst ← a·b` (or `dst ← dst + a·b` with `accumulate`), `dst` row-major `a.rows × b.cols`, on
/// the calling thread, with the gemm crate's kernels (the ones candle's `matmul` runs) but into
/// a buffer the caller owns: no allocation, and products accumulate in place. Small products
/// with a row-major `b` go to [`thin`](super::thin) (no packing, the same bits), and large
/// weight gradients to the packed kernel of `sgemm`, where the CPU has AVX-512.
///
/// The kernel vectorises along the contiguous dimension of `dst`; shapes whose contiguous
/// dimension is short (a few channels) run several times slower than their transposes.
pub fn matmul_into(dst: &mut [f32], a: MatRef, b: MatRef, accumulate: bool) -> Result<()> {
    if !product_fits(dst, &a, &b, accumulate)? {
        return Ok(());
    }
    if super::thin::try_matmul(dst, a, b, accumulate)
        || super::sgemm::try_matmul(dst, a, b, accumulate)
    {
        return Ok(());
    }
    gemm_crate(dst, &a, &b, accumulate);
    Ok(())
}

/// [`matmul_into`] by the gemm crate alone, never `thin` or `sgemm`: what it computed before
/// those kernels, for the tests and benchmarks that compare them with it.
pub fn matmul_gemm_crate(dst: &mut [f32], a: MatRef, b: MatRef, accumulate: bool) -> Result<()> {
    if product_fits(dst, &a, &b, accumulate)? {
        gemm_crate(dst, &a, &b, accumulate);
    }
    Ok(())
}

/// Checks a product's shapes and views; `Ok(false)` when there is nothing left to compute
/// (an empty result, or an empty inner dimension: `dst` zeroed unless accumulating).
fn product_fits(dst: &mut [f32], a: &MatRef, b: &MatRef, accumulate: bool) -> Result<bool> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k || m.checked_mul(n) != Some(dst.len()) || !a.in_bounds() || !b.in_bounds() {
        return Err(candle_core::Error::Msg(format!(
            "matmul: ({m}×{k})·({}×{n}) into {} values, or a view out of bounds",
            b.rows,
            dst.len()
        ))
        .into());
    }
    if m == 0 || n == 0 {
        return Ok(false);
    }
    if k == 0 {
        if !accumulate {
            dst.fill(0.0);
        }
        return Ok(false);
    }
    Ok(true)
}

/// The gemm crate's product, for views [`product_fits`] accepted.
fn gemm_crate(dst: &mut [f32], a: &MatRef, b: &MatRef, accumulate: bool) {
    // SAFETY: every element gemm reads or writes lies inside the slices (product_fits checked
    // that the largest offset of each view is within its slice and that dst holds m·n row-major
    // values); dst is borrowed mutably, so it cannot alias a or b.
    unsafe {
        gemm::gemm(
            a.rows,
            b.cols,
            a.cols,
            dst.as_mut_ptr(),
            1,
            b.cols as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// The shape of a stride-1 convolution's input and its square kernel: `channels × height ×
/// width` pixels, `kernel × kernel` taps, `pad` zeros on every side (output size = input size
/// when `kernel = 2·pad + 1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Input channels.
    pub channels: usize,
    /// Input height.
    pub height: usize,
    /// Input width.
    pub width: usize,
    /// Kernel side.
    pub kernel: usize,
    /// Zero padding on each side.
    pub pad: usize,
}

impl ConvGeometry {
    /// Output pixels (height · width for a "same" convolution).
    pub fn pixels(&self) -> usize {
        let (oh, ow) = self.out();
        oh * ow
    }

    /// Patch length: channels · kernel².
    pub fn patch(&self) -> usize {
        self.channels * self.kernel * self.kernel
    }

    /// Output rows and columns (stride 1).
    fn out(&self) -> (usize, usize) {
        (
            (self.height + 2 * self.pad + 1).saturating_sub(self.kernel),
            (self.width + 2 * self.pad + 1).saturating_sub(self.kernel),
        )
    }

    /// Values of the zero-padded image, `(height + 2·pad)·(width + 2·pad)·channels`.
    pub fn padded_len(&self) -> usize {
        (self.height + 2 * self.pad) * (self.width + 2 * self.pad) * self.channels
    }

    /// Values of the image, channels · height · width.
    pub fn input_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Values of its patch matrix, pixels · patch.
    pub fn cols_len(&self) -> usize {
        self.pixels() * self.patch()
    }
}

/// An error unless a buffer holds the `want` values an op needs.
fn expect_len(op: &str, what: &str, got: usize, want: usize) -> Result<()> {
    if got == want {
        return Ok(());
    }
    Err(candle_core::Error::Msg(format!("{op}: {what} holds {got} values, needs {want}")).into())
}

/// Copies input row `sy` of `plane` (or zeros, when `sy` is in the padding) into `line` with
/// `pad` zeros on both sides, so every tap reads inside `line`.
fn padded_line(plane: &[f32], g: &ConvGeometry, sy: usize, line: &mut [f32]) {
    let (w, pad) = (g.width, g.pad);
    if sy < g.height {
        line[..pad].fill(0.0);
        line[pad..pad + w].copy_from_slice(&plane[sy * w..(sy + 1) * w]);
        line[pad + w..].fill(0.0);
    } else {
        line.fill(0.0);
    }
}

/// im2col for one image in CHW layout, patches as *columns*: `dst` is `(patch, pixels)`
/// row-major, row `(c, kh, kw)` holding, for every output pixel, the input pixel that tap
/// sees (0 in the padding). A convolution is then `W·dst` with W `(out, c·k·k)` — PyTorch's
/// weight layout — and its output `(out, pixels)` is CHW again. Each row is a shifted copy of
/// an input plane.
pub fn im2col_patch_cols(src: &[f32], g: ConvGeometry, dst: &mut [f32]) -> Result<()> {
    expect_len("im2col", "input", src.len(), g.input_len())?;
    expect_len("im2col", "patches", dst.len(), g.cols_len())?;
    let (oh, ow) = g.out();
    let (h, w, k) = (g.height, g.width, g.kernel);
    let pixels = oh * ow;
    let mut line = vec![0f32; w + 2 * g.pad];
    for (c, plane) in src.chunks_exact(h * w).enumerate() {
        for kh in 0..k {
            for y in 0..oh {
                padded_line(plane, &g, (y + kh).wrapping_sub(g.pad), &mut line);
                for kw in 0..k {
                    let at = ((c * k + kh) * k + kw) * pixels + y * ow;
                    dst[at..at + ow].copy_from_slice(&line[kw..kw + ow]);
                }
            }
        }
    }
    Ok(())
}

/// CHW → HWC with `pad` zeros around: `dst` is `(height + 2·pad, width + 2·pad, channels)`,
/// the input [`im2col_padded_hwc`] reads.
pub fn chw_to_padded_hwc(src: &[f32], g: ConvGeometry, dst: &mut [f32]) -> Result<()> {
    expect_len("pad", "input", src.len(), g.input_len())?;
    expect_len("pad", "output", dst.len(), g.padded_len())?;
    let (h, w, c, pad) = (g.height, g.width, g.channels, g.pad);
    let wp = w + 2 * pad;
    dst.fill(0.0);
    for (ci, plane) in src.chunks_exact(h * w).enumerate() {
        for (y, line) in plane.chunks_exact(w).enumerate() {
            let row = &mut dst[((y + pad) * wp + pad) * c..((y + pad) * wp + pad + w) * c];
            for (px, &v) in row.chunks_exact_mut(c).zip(line) {
                px[ci] = v;
            }
        }
    }
    Ok(())
}

/// The inverse of [`chw_to_padded_hwc`]: the inside of a padded HWC image, as CHW (the
/// padding is dropped).
pub fn padded_hwc_to_chw(src: &[f32], g: ConvGeometry, dst: &mut [f32]) -> Result<()> {
    expect_len("unpad", "input", src.len(), g.padded_len())?;
    expect_len("unpad", "output", dst.len(), g.input_len())?;
    let (h, w, c, pad) = (g.height, g.width, g.channels, g.pad);
    let wp = w + 2 * pad;
    for (ci, plane) in dst.chunks_exact_mut(h * w).enumerate() {
        for (y, line) in plane.chunks_exact_mut(w).enumerate() {
            let row = &src[((y + pad) * wp + pad) * c..((y + pad) * wp + pad + w) * c];
            for (v, px) in line.iter_mut().zip(row.chunks_exact(c)) {
                *v = px[ci];
            }
        }
    }
    Ok(())
}

/// im2col for one zero-padded HWC image ([`chw_to_padded_hwc`]), patches as *rows*: `dst`
/// is `(pixels, k·k·channels)` row-major, row p holding output pixel p's patch in
/// (kh, kw, c) order. A convolution is then `dst·Wᵀ` with W `(out, kh, kw, c)`, output
/// `(pixels, out)` (HWC). For each (pixel, kh) the k·c values are adjacent in the input, one
/// copy: measured 2.5× faster than (c, kh, kw) patches, whose runs are k values long.
pub fn im2col_padded_hwc(src: &[f32], g: ConvGeometry, dst: &mut [f32]) -> Result<()> {
    expect_len("im2col", "input", src.len(), g.padded_len())?;
    expect_len("im2col", "patches", dst.len(), g.cols_len())?;
    let (oh, ow) = g.out();
    let run = g.kernel * g.channels;
    let line = (g.width + 2 * g.pad) * g.channels;
    let mut rows = dst.chunks_exact_mut(g.patch());
    for y in 0..oh {
        for x in 0..ow {
            let Some(row) = rows.next() else {
                return Ok(());
            };
            for (kh, seg) in row.chunks_exact_mut(run).enumerate() {
                let at = (y + kh) * line + x * g.channels;
                seg.copy_from_slice(&src[at..at + run]);
            }
        }
    }
    Ok(())
}

/// col2im, the adjoint of [`im2col_padded_hwc`]: `dst` (padded HWC, overwritten) receives, at
/// every input pixel, the sum of the `cols` entries that copied it — the gradient with respect
/// to the convolution's input, given the gradient `cols` with respect to its patches. Sums run
/// in a fixed order (pixel by pixel), so results are deterministic; the padding collects the
/// gradient of the zeros, which is then dropped.
pub fn col2im_padded_hwc(cols: &[f32], g: ConvGeometry, dst: &mut [f32]) -> Result<()> {
    expect_len("col2im", "patches", cols.len(), g.cols_len())?;
    expect_len("col2im", "output", dst.len(), g.padded_len())?;
    let (oh, ow) = g.out();
    let run = g.kernel * g.channels;
    let line = (g.width + 2 * g.pad) * g.channels;
    dst.fill(0.0);
    let mut rows = cols.chunks_exact(g.patch());
    for y in 0..oh {
        for x in 0..ow {
            let Some(row) = rows.next() else {
                return Ok(());
            };
            for (kh, seg) in row.chunks_exact(run).enumerate() {
                let at = (y + kh) * line + x * g.channels;
                for (d, s) in dst[at..at + run].iter_mut().zip(seg) {
                    *d += s;
                }
            }
        }
    }
    Ok(())
}

/// The layout of a [`max_pool2_bias_relu`] input of `channels × height × width` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolInput {
    /// Channels.
    pub channels: usize,
    /// Height (an odd last row is dropped).
    pub height: usize,
    /// Width (an odd last column is dropped).
    pub width: usize,
    /// HWC (pixels one after another, channels inside) rather than CHW.
    pub channels_last: bool,
}

/// One step of a 2×2 window's running maximum: value `v` at index `at` replaces the maximum so
/// far if larger, or if NaN (PyTorch's CPU rule; the first maximum wins ties). Selects, not
/// branches: which value wins is random, and mispredicted branches made pooling 3× slower.
#[inline(always)]
fn running_max(max: &mut f32, arg: &mut usize, v: f32, at: usize) {
    let take = (v > *max) | v.is_nan();
    *max = if take { v } else { *max };
    *arg = if take { at } else { *arg };
}

/// ReLU that lets a NaN through (as PyTorch's), so a diverging run stays visible.
#[inline(always)]
fn relu(x: f32) -> f32 {
    if x <= 0.0 { 0.0 } else { x }
}

/// 2×2 max pooling (stride 2, odd edges dropped) of `ReLU(z + b)` for one image: writes the
/// pooled values to `out` (CHW, `channels × height/2 × width/2`, whatever `z`'s layout) and,
/// for each, the index into `z` of its window's maximum to `argmax`.
///
/// Ties go to the first maximum in row-major window order, (0,0), (0,1), (1,0), (1,1), as in
/// PyTorch's CPU kernel; a NaN counts as the maximum and passes through the ReLU. The ReLU is
/// applied after the max (they commute: ReLU is monotone), once per output.
pub fn max_pool2_bias_relu(
    z: &[f32],
    shape: PoolInput,
    bias: &[f32],
    out: &mut [f32],
    argmax: &mut [u32],
) -> Result<()> {
    let PoolInput {
        channels,
        height,
        width,
        channels_last,
    } = shape;
    let (h2, w2) = (height / 2, width / 2);
    let n = channels * h2 * w2;
    expect_len("max-pool", "input", z.len(), channels * height * width)?;
    expect_len("max-pool", "bias", bias.len(), channels)?;
    expect_len("max-pool", "output", out.len(), n)?;
    expect_len("max-pool", "argmax", argmax.len(), n)?;
    if n == 0 {
        return Ok(());
    }
    if channels_last {
        let c = channels;
        for y in 0..h2 {
            for x in 0..w2 {
                let p = (2 * y * width + 2 * x) * c;
                let q = p + width * c;
                let (r0, r1) = (&z[p..p + 2 * c], &z[q..q + 2 * c]);
                for (ci, &b) in bias.iter().enumerate() {
                    let (mut max, mut arg) = (r0[ci] + b, p);
                    running_max(&mut max, &mut arg, r0[c + ci] + b, p + c);
                    running_max(&mut max, &mut arg, r1[ci] + b, q);
                    running_max(&mut max, &mut arg, r1[c + ci] + b, q + c);
                    let o = (ci * h2 + y) * w2 + x;
                    out[o] = relu(max);
                    argmax[o] = (arg + ci) as u32;
                }
            }
        }
        return Ok(());
    }
    let mut rows = out.chunks_exact_mut(w2).zip(argmax.chunks_exact_mut(w2));
    for (c, &b) in bias.iter().enumerate() {
        for y in 0..h2 {
            let Some((out_row, arg_row)) = rows.next() else {
                return Ok(());
            };
            let top = c * height * width + 2 * y * width;
            let r0 = z[top..top + 2 * w2].chunks_exact(2);
            let r1 = z[top + width..top + width + 2 * w2].chunks_exact(2);
            let outs = out_row.iter_mut().zip(arg_row.iter_mut());
            for (x, ((o, a), (p0, p1))) in outs.zip(r0.zip(r1)).enumerate() {
                let (mut max, mut arg) = (p0[0] + b, 0);
                running_max(&mut max, &mut arg, p0[1] + b, 1);
                running_max(&mut max, &mut arg, p1[0] + b, width);
                running_max(&mut max, &mut arg, p1[1] + b, width + 1);
                *o = relu(max);
                *a = (top + 2 * x + arg) as u32;
            }
        }
    }
    Ok(())
}

/// Back-propagation through [`max_pool2_bias_relu`]: `dz` (overwritten, the layout of `z`)
/// gets each output's gradient at its window's maximum and 0 elsewhere; outputs that the ReLU
/// clipped (`out` ≤ 0) pass nothing. Adds the bias gradient, the sum per channel of what
/// passed, into `dbias`. `grad` and `out` are CHW, one channel after another.
pub fn max_unpool2_relu(
    grad: &[f32],
    out: &[f32],
    argmax: &[u32],
    dz: &mut [f32],
    dbias: &mut [f32],
) -> Result<()> {
    let channels = dbias.len();
    let n = grad.len();
    if out.len() != n || argmax.len() != n || channels == 0 || !n.is_multiple_of(channels) {
        return Err(candle_core::Error::Msg(format!(
            "max-unpool: {n} gradients, {} outputs, {} indices, {channels} channels",
            out.len(),
            argmax.len()
        ))
        .into());
    }
    dz.fill(0.0);
    let per = n / channels;
    for (c, db) in dbias.iter_mut().enumerate() {
        let r = c * per..(c + 1) * per;
        for ((&g, &v), &i) in grad[r.clone()].iter().zip(&out[r.clone()]).zip(&argmax[r]) {
            if v > 0.0 {
                let slot = dz.get_mut(i as usize).ok_or_else(|| {
                    candle_core::Error::Msg(format!("max-unpool: index {i} out of range"))
                })?;
                *slot += g;
                *db += g;
            }
        }
    }
    Ok(())
}

/// e^x in f32 without the C library, for loops the compiler can vectorise: the argument is split
/// as x = n·ln 2 + r with |r| ≤ ln 2 / 2 (n rounded to nearest by the 1.5·2²³ shift), e^r is
/// the Taylor polynomial of degree 7 (truncation error under 10⁻⁸ relative) by Horner's rule,
/// and 2ⁿ is built in the exponent's bits. Within 1 ulp of e^x rounded to f32: every f32 in
/// [−87.33, 88] was checked once, 99.2% equal and the rest 1 ulp (`exp_f32_is_within_one_ulp`
/// checks 2.9 million of them). Plain multiplications and additions only (no fused
/// multiply-add), so the same bits on every machine whatever its vector width. Arguments under −87.33 give e^−87.33 ≈ 1.2·10⁻³⁸ (the
/// smallest normal number's order) instead of a subnormal or 0, above 88 e^88 (so that 2ⁿ stays
/// a normal number); NaN gives NaN. Softmax calls it on logits minus their maximum, all ≤ 0.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const C: [f32; 6] = [
        1.0 / 5040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
    ];
    // Comparisons, not `clamp`: NaN passes through both.
    let x = if x < -87.33 { -87.33 } else { x };
    let x = if x > 88.0 { 88.0 } else { x };
    let t = x * std::f32::consts::LOG2_E + SHIFT;
    let n = t - SHIFT;
    // n as an integer from t's bits (t = 1.5·2²³ + n exactly): no float-to-integer conversion,
    // whose saturating form would keep the loop from vectorising.
    let ni = (t.to_bits() as i32).wrapping_sub(SHIFT.to_bits() as i32);
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = C[0];
    for c in &C[1..] {
        p = p * r + c;
    }
    let p = (p * r + 1.0) * r + 1.0;
    p * f32::from_bits((ni.wrapping_add(127) as u32) << 23)
}

/// Every value of `z` replaced by [`exp_f32`] of it: 16 at a time with AVX-512, 8 with AVX2,
/// 4 otherwise (the same operations in every lane, so the same bits).
pub fn exp_in_place(z: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    match Isa::detected() {
        // SAFETY: the CPU has AVX-512F (Isa::detected checks it).
        Isa::Avx512 => unsafe { exp_in_place_avx512(z) },
        // SAFETY: the CPU has AVX2 (Isa::detected checks it).
        Isa::Avx2 => unsafe { exp_in_place_avx2(z) },
        Isa::Portable => exp_in_place_portable(z),
    }
    #[cfg(not(target_arch = "x86_64"))]
    exp_in_place_portable(z);
}

#[inline(always)]
fn exp_in_place_portable(z: &mut [f32]) {
    for v in z.iter_mut() {
        *v = exp_f32(*v);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn exp_in_place_avx512(z: &mut [f32]) {
    exp_in_place_portable(z);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn exp_in_place_avx2(z: &mut [f32]) {
    exp_in_place_portable(z);
}

/// The summed cross-entropy of every row of `z` (rows of `classes` logits, one per label in `y`)
/// and how many rows' first maximum is their label: what [`softmax_xent_row`] computes without a
/// gradient, for evaluation passes. `z` is scratch: it is left holding the rows' exponentials.
/// Two differences from the row function, both in the last bits of the loss and neither in
/// training: e^x is [`exp_f32`], one vectorised pass over the batch instead of the C library's
/// `expf` per element, and the rows' normalisers are multiplied together and their logarithm
/// taken once per product (kept under 10²⁰⁰) instead of once per row. Together they were 10% of a
/// quickstart's CPU time.
pub fn xent_rows(z: &mut [f32], classes: usize, y: &[u32]) -> LossSum {
    let mut sum = LossSum::new(y.len());
    if classes == 0 {
        sum.loss = f64::NAN;
        return sum;
    }
    // The linear part, max − z[label], and each row shifted by its maximum.
    let mut linear = 0f64;
    for (row, &label) in z.chunks_exact_mut(classes).zip(y) {
        let (best, max) = first_max(row);
        let label = label as usize;
        linear += max as f64 - row.get(label).copied().unwrap_or(f32::NAN) as f64;
        sum.correct += usize::from(best == label);
        for v in row.iter_mut() {
            *v -= max;
        }
    }
    exp_in_place(z);
    // Each normaliser is in [1, classes]: products stay finite when cut at 10²⁰⁰.
    let mut logs = 0f64;
    let mut product = 1f64;
    for row in z.chunks_exact(classes).take(y.len()) {
        let se: f64 = row.iter().map(|&e| e as f64).sum();
        if product > 1e200 {
            logs += product.ln();
            product = 1.0;
        }
        product *= se;
    }
    sum.loss = linear + logs + product.ln();
    sum
}

/// The index and value of the first maximum of `row` (NaN values never count as larger; an empty
/// or all-NaN row gives index 0 and −∞), as `torch.argmax` breaks ties.
fn first_max(row: &[f32]) -> (usize, f32) {
    let mut best = 0;
    let mut max = f32::NEG_INFINITY;
    for (j, &v) in row.iter().enumerate() {
        if v > max {
            max = v;
            best = j;
        }
    }
    (best, max)
}

/// One row's ∂L/∂logits and its directional derivative for a Hessian-vector product: with
/// p = softmax(`f`) (in f64, in `p`, resized to the row), δ = (p − onehot)·`scale` into `d` and
/// R{δ} = p ⊙ (`rf` − pᵀ`rf`)·`scale` into `rd` — the softmax Jacobian applied to R{f}, the
/// logits' directional derivative. Both networks' R-operators end their forward pass here.
pub fn softmax_xent_r_row(
    f: &[f32],
    rf: &[f32],
    label: u32,
    scale: f64,
    p: &mut Vec<f64>,
    d: &mut [f32],
    rd: &mut [f32],
) {
    let max = f.iter().fold(f32::NEG_INFINITY, |m, &z| m.max(z));
    p.clear();
    p.extend(f.iter().map(|&z| f64::from(z - max).exp()));
    let total: f64 = p.iter().sum();
    p.iter_mut().for_each(|pk| *pk /= total);
    let p_rf: f64 = p.iter().zip(rf).map(|(pk, &r)| pk * f64::from(r)).sum();
    for (k, ((dk, rdk), &rk)) in d.iter_mut().zip(rd.iter_mut()).zip(rf).enumerate() {
        let onehot = if k == label as usize { 1.0 } else { 0.0 };
        *dk = ((p[k] - onehot) * scale) as f32;
        *rdk = (p[k] * (f64::from(rk) - p_rf) * scale) as f32;
    }
}

/// The cross-entropy of one row of logits `z` against `label` (what [`softmax_xent`] computes for
/// every row): returns the loss (f64) and whether the argmax (first maximum) is the label; with
/// `grad`, writes `scale·(softmax − onehot)` into it.
pub fn softmax_xent_row(
    z: &[f32],
    label: u32,
    scale: f32,
    grad: Option<&mut [f32]>,
) -> (f64, bool) {
    let (best, max) = first_max(z);
    let label = label as usize;
    let mut se = 0f64;
    let loss = |se: f64| max as f64 + se.ln() - z.get(label).copied().unwrap_or(f32::NAN) as f64;
    match grad {
        None => {
            for &v in z {
                se += (v - max).exp() as f64;
            }
            (loss(se), best == label)
        }
        Some(out) => {
            // Each exponential once: kept in `out`, then scaled.
            for (o, &v) in out.iter_mut().zip(z) {
                *o = (v - max).exp();
                se += *o as f64;
            }
            let s = (1.0 / se) as f32 * scale;
            for o in out.iter_mut() {
                *o *= s;
            }
            if let Some(o) = out.get_mut(label) {
                *o -= scale;
            }
            (loss(se), best == label)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vector_sgd_updates_give_the_baselines_bits() {
        #[cfg(target_arch = "x86_64")]
        {
            let n = 1000 + 7; // a tail past the last 16 lanes
            let vals = |salt: u32, scale: f32| -> Vec<f32> {
                (0..n as u32)
                    .map(|i| {
                        ((i.wrapping_mul(2_654_435_761) ^ salt) % 10_007) as f32 / 10_007.0 * scale
                            - scale / 2.0
                    })
                    .collect()
            };
            let g = vals(1, 0.3);
            let levels = [Isa::Avx512, Isa::Avx2]
                .into_iter()
                .filter(|i| i.runs_here());
            for isa in levels {
                for (m, wd, nesterov) in [(0.9, 0.0, false), (0.9, 5e-4, true), (0.0, 1e-3, false)]
                {
                    let (mut w1, mut u1) = (vals(2, 2.0), vals(3, 0.1));
                    let (mut w2, mut u2) = (w1.clone(), u1.clone());
                    for _ in 0..3 {
                        sgd_portable(&mut w1, &g, &mut u1, 0.05, m, wd, nesterov);
                        match isa {
                            // SAFETY: the CPU runs the level (filtered above).
                            Isa::Avx512 => unsafe {
                                sgd_avx512(&mut w2, &g, &mut u2, 0.05, m, wd, nesterov)
                            },
                            // SAFETY: as above.
                            _ => unsafe { sgd_avx2(&mut w2, &g, &mut u2, 0.05, m, wd, nesterov) },
                        }
                    }
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    let what = format!("{isa}: m {m}, wd {wd}, nesterov {nesterov}");
                    assert_eq!(bits(&w1), bits(&w2), "{what}");
                    assert_eq!(bits(&u1), bits(&u2), "{what}");
                    assert_ne!(bits(&w1), bits(&vals(2, 2.0)), "{what}: the weights moved");
                }
            }
        }
    }

    /// Sizes whose products wrap around `usize` are rejected, not trusted: a wrapped `m·n` or
    /// view offset would otherwise pass the checks and let a kernel write past `dst`.
    #[test]
    fn matmul_into_rejects_sizes_that_wrap_around() {
        let (m, n) = ((1usize << 56) + 11, 512);
        let k = usize::MAX - (1 << 56) - 8;
        let x = vec![1.0f32; 270];
        let y = vec![1.0f32; 512];
        let a = MatRef {
            data: &x,
            rows: m,
            cols: k,
            row_stride: 1,
            col_stride: 1,
        };
        let b = MatRef {
            data: &y,
            rows: k,
            cols: n,
            row_stride: 0,
            col_stride: 1,
        };
        assert!(!a.in_bounds());
        let mut buf = vec![0.0f32; 8192];
        let (dst, beyond) = buf.split_at_mut(m.wrapping_mul(n)); // 5632 values
        assert!(matmul_into(dst, a, b, false).is_err());
        assert!(beyond.iter().chain(dst.iter()).all(|&v| v == 0.0));
        // The view checks alone also catch an offset that wraps.
        let wide = MatRef {
            data: &y,
            rows: 2,
            cols: 2,
            row_stride: usize::MAX,
            col_stride: 1,
        };
        assert!(!wide.in_bounds());
    }

    #[test]
    fn transpose_into_swaps_rows_and_columns() {
        let src = [1, 2, 3, 4, 5, 6]; // 2×3
        let mut dst = [0; 6];
        transpose_into(&src, 2, 3, &mut dst);
        assert_eq!(dst, [1, 4, 2, 5, 3, 6]); // 3×2
        let mut back = [0; 6];
        transpose_into(&dst, 3, 2, &mut back);
        assert_eq!(back, src);
    }

    /// Hand-computed: w = 1, g = 0.5, u₀ = 0.2, m = 0.9, ε = 0.1, λ = 0.
    /// Heavy-ball: u = 0.9·0.2 + 0.5 = 0.68; w = 1 − 0.1·0.68 = 0.932.
    /// Nesterov:   u = 0.68; d = 0.5 + 0.9·0.68 = 1.112; w = 1 − 0.1112 = 0.8888.
    /// With λ = 0.01: g' = 0.51, u = 0.69, w = 0.931.
    #[test]
    fn momentum_and_nesterov_steps_match_hand_computed_values() {
        for (nesterov, wd, want_w, want_u) in [
            (false, 0.0, 0.932f32, 0.68f32),
            (true, 0.0, 0.8888, 0.68),
            (false, 0.01, 0.931, 0.69),
        ] {
            let w = Tensor::new(&[1f32], &Device::Cpu).unwrap();
            let mut buf = vec![0.2f32];
            w.inplace_op1(&SgdUpdate {
                lr: 0.1,
                momentum: 0.9,
                weight_decay: wd,
                nesterov,
                grad: &[0.5],
                buf: RefCell::new(&mut buf),
            })
            .unwrap();
            let got = w.to_vec1::<f32>().unwrap()[0];
            assert!(
                (got - want_w).abs() < 1e-6,
                "nesterov {nesterov}: w {got} vs {want_w}"
            );
            assert!((buf[0] - want_u).abs() < 1e-6, "u {} vs {want_u}", buf[0]);
        }
    }

    /// Distance in units in the last place between two finite positive f32.
    fn ulps(a: f32, b: f32) -> u32 {
        a.to_bits().abs_diff(b.to_bits())
    }

    #[test]
    fn exp_f32_is_within_one_ulp() {
        // Every 2⁻¹⁴ over the whole range, and every f32 around 0 and ±1 (where the rounding of
        // n and the polynomial's first terms matter most).
        let grid = (0..=(176i64 << 14)).map(|i| -87.3 + i as f64 / 16384.0);
        let near = |c: f32| {
            let b = c.to_bits();
            (b.saturating_sub(4096)..b + 4096).map(f32::from_bits)
        };
        let mut worst = (0, 0.0f32);
        for x in grid
            .map(|x| x as f32)
            .filter(|x| (-87.33..=88.0).contains(x))
            .chain(near(1.0))
            .chain(near(-1.0))
            .chain(near(1e-30))
            .chain([0.0, -0.0, -87.33, 88.0, 0.5 * std::f32::consts::LN_2])
        {
            let got = exp_f32(x);
            let want = (x as f64).exp() as f32;
            let d = ulps(got, want);
            if d > worst.0 {
                worst = (d, x);
            }
        }
        assert!(worst.0 <= 1, "{} ulp at x = {}", worst.0, worst.1);
        // The vector paths compute the same bits as the scalar function, over a slice whose
        // length is not a multiple of any vector width.
        let xs: Vec<f32> = (0..100_003).map(|i| -90.0 + i as f32 * 0.0018).collect();
        let mut v = xs.clone();
        exp_in_place(&mut v);
        for (x, e) in xs.iter().zip(&v) {
            assert_eq!(e.to_bits(), exp_f32(*x).to_bits(), "x = {x}");
        }
        #[cfg(target_arch = "x86_64")]
        for isa in [Isa::Avx512, Isa::Avx2]
            .into_iter()
            .filter(|i| i.runs_here())
        {
            let mut w = xs.clone();
            match isa {
                // SAFETY: the CPU runs the level (filtered above).
                Isa::Avx512 => unsafe { exp_in_place_avx512(&mut w) },
                // SAFETY: as above.
                _ => unsafe { exp_in_place_avx2(&mut w) },
            }
            let same = w.iter().zip(&v).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{isa}: exp_in_place differs from the scalar function");
        }
        assert_eq!(exp_f32(0.0), 1.0);
        assert!(exp_f32(f32::NAN).is_nan());
        // Clamped ends: a small positive number, never 0 or a subnormal, and a finite one.
        let low = exp_f32(-87.33);
        assert!(low.is_normal() && low < 1.3e-38);
        assert_eq!(exp_f32(f32::NEG_INFINITY), low);
        assert_eq!(exp_f32(-1000.0), low);
        assert_eq!(exp_f32(f32::INFINITY), exp_f32(88.0));
        assert!(exp_f32(88.0).is_finite());
    }

    /// The evaluation's batched cross-entropy against the row function: the same count of
    /// correct rows, the loss within what 1 ulp in each exponential can move it; NaN where the
    /// row function gives NaN. Sizes up to 1,000 classes × 700 rows, whose normalisers' product
    /// is cut many times.
    #[test]
    fn batched_cross_entropy_matches_the_row_function() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for (classes, rows, spread) in [
            (1, 5, 1.0),
            (2, 64, 3.0),
            (10, 1000, 5.0),
            (10, 300, 60.0),
            (1000, 700, 4.0),
        ] {
            let z: Vec<f32> = (0..rows * classes)
                .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * spread)
                .collect();
            let y: Vec<u32> = (0..rows)
                .map(|_| rng.random_range(0..classes as u32))
                .collect();
            let mut want = LossSum::new(rows);
            for (row, &label) in z.chunks_exact(classes).zip(&y) {
                want.add(softmax_xent_row(row, label, 1.0, None));
            }
            let got = xent_rows(&mut z.clone(), classes, &y);
            assert_eq!(got.count, rows);
            assert_eq!(got.correct, want.correct, "{classes} classes");
            let tol = 1e-6 * rows as f64;
            assert!(
                (got.loss - want.loss).abs() <= tol,
                "{classes} classes: {} against {}",
                got.loss,
                want.loss
            );
        }
        // A logit of −∞ beside finite ones is a probability of 0, as in the row function.
        let mut z = vec![0.0, f32::NEG_INFINITY, 1.0];
        let want = softmax_xent_row(&z, 2, 1.0, None).0;
        assert!((xent_rows(&mut z, 3, &[2]).loss - want).abs() < 1e-7);
        // NaN logits, a label out of range, no classes: NaN.
        assert!(xent_rows(&mut [0.0, f32::NAN], 2, &[0]).loss.is_nan());
        assert!(xent_rows(&mut [0.0, 1.0], 2, &[2]).loss.is_nan());
        assert!(xent_rows(&mut [], 0, &[0]).loss.is_nan());
        // Infinite logits: NaN, as the row function gives (∞ − ∞).
        assert!(xent_rows(&mut [f32::INFINITY, 0.0], 2, &[0]).loss.is_nan());
        assert!(
            softmax_xent_row(&[f32::INFINITY, 0.0], 0, 1.0, None)
                .0
                .is_nan()
        );
    }

    #[test]
    fn cross_entropy_matches_closed_form() {
        // Logits (0, ln 3): softmax (1/4, 3/4). Label 1 → loss ln(4/3); label 0 → ln 4.
        let z = Tensor::new(&[[0f32, 3f32.ln()], [0.0, 3f32.ln()]], &Device::Cpu).unwrap();
        let (s, g) = softmax_xent(&z, &[1, 0], true).unwrap();
        let want = (4.0f64 / 3.0).ln() + 4f64.ln();
        assert!((s.loss - want).abs() < 1e-6);
        assert_eq!(s.correct, 1);
        let g = g.unwrap().to_vec2::<f32>().unwrap();
        // (softmax − onehot)/2
        assert!((g[0][0] - 0.125).abs() < 1e-6 && (g[0][1] + 0.125).abs() < 1e-6);
        assert!((g[1][0] + 0.375).abs() < 1e-6 && (g[1][1] - 0.375).abs() < 1e-6);
    }
}
