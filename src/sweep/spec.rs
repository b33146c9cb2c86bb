//! The sweep file: TOML read with serde (unknown keys rejected), every value kept with its
//! position so that an error can say `FILE:LINE:COL`.
//!
//! Any numeric key may be a scalar or an *axis*: a list (`[0.0, 0.9]`), `{ logspace = [a, b],
//! num = k }`, `{ linspace = [a, b], num = k }` or `{ pow2 = [a, b] }` (the powers of two in
//! [a, b]). `hidden` is a list of widths; an axis of architectures is a list of lists.

use std::ops::Range;

use serde::Deserialize;
use toml::{Spanned, Value};

use crate::error::{Error, Result};

/// The most cells a sweep may have, and so the most values an axis may list: a million cells
/// take about a minute to enqueue and 0.8 GB of database.
pub const MAX_AXIS: usize = 1_000_000;

/// A sweep file as written, before interpretation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepFile {
    /// The sweep's name (identifies it in the database and in `reports/<name>/`).
    pub name: Spanned<String>,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// `[data]`.
    #[serde(default)]
    pub data: DataSection,
    /// `[model]`.
    #[serde(default)]
    pub model: ModelSection,
    /// `[train]`.
    pub train: TrainSection,
    /// `[eval]`.
    #[serde(default)]
    pub eval: EvalSection,
    /// `[instruments]`.
    #[serde(default)]
    pub instruments: InstrumentsSection,
}

/// `[instruments]`: measurements that do not change training.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstrumentsSection {
    /// Gradient noise scale every k epochs (0: off).
    pub noise_scale_every: Option<Spanned<u32>>,
    /// off | init | init-and-final.
    pub curvature: Option<Spanned<String>>,
    /// Also B_noise = tr(HΣ)/(GᵀHG) at each noise-scale measurement.
    pub b_noise: Option<Spanned<bool>>,
}

/// `[data]`: which data, how much of it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// teacher | gaussian-mixture | idx | cifar10 (or a list: an axis).
    pub dataset: Option<Spanned<Value>>,
    /// N (axis allowed).
    pub train_size: Option<Spanned<Value>>,
    /// Test examples.
    pub test_size: Option<Spanned<Value>>,
    /// Seed of the data set itself.
    pub data_seed: Option<Spanned<Value>>,
    /// Directory of on-disk data.
    pub data_dir: Option<Spanned<String>>,
    /// Input dimension of synthetic data.
    pub dim: Option<Spanned<Value>>,
    /// Classes of synthetic data.
    pub classes: Option<Spanned<Value>>,
    /// Label-noise fraction of synthetic data.
    pub label_noise: Option<Spanned<Value>>,
    /// Hidden width of the teacher network.
    pub teacher_hidden: Option<Spanned<Value>>,
    /// Cluster separation of the Gaussian mixture.
    pub separation: Option<Spanned<Value>>,
}

/// `[model]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// mlp | cnn.
    pub kind: Option<Spanned<Value>>,
    /// Widths (a list of integers) or an axis of them (a list of lists).
    pub hidden: Option<Spanned<Value>>,
}

/// `[train]`: the optimiser, the budget, the schedule and the seeds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    /// Learning rate axis (or give `noise_scale`).
    pub lr: Option<Spanned<Value>>,
    /// Noise-scale axis g; ε is then derived per cell as g·B(1−m)/N.
    pub noise_scale: Option<Spanned<Value>>,
    /// Batch-size axis.
    pub batch_size: Spanned<Value>,
    /// Momentum axis (default 0).
    pub momentum: Option<Spanned<Value>>,
    /// Nesterov momentum (bool or list of bools).
    pub nesterov: Option<Spanned<Value>>,
    /// Weight-decay axis (default 0).
    pub weight_decay: Option<Spanned<Value>>,
    /// Budget in epochs.
    pub epochs: Option<Spanned<Value>>,
    /// Budget in steps.
    pub steps: Option<Spanned<Value>>,
    /// `K` (seeds 1..=K) or an explicit list of seeds.
    pub seeds: Option<Spanned<Value>>,
    /// `"constant"`, a schedule table, or a list of them.
    pub schedule: Option<Spanned<Value>>,
    /// Divergence threshold (multiple of the initial loss).
    pub divergence_factor: Option<Spanned<Value>>,
    /// Epochs of linear learning-rate warmup (Goyal et al. 2017); 0 = none.
    pub warmup_epochs: Option<Spanned<u32>>,
    /// Drop the cells whose batch size exceeds N instead of rejecting the sweep.
    #[serde(default)]
    pub skip_batch_above_n: bool,
}

/// `[eval]`: how the fits reduce runs to numbers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSection {
    /// test_acc | test_loss | train_loss | train_acc | gap_loss | gap_acc.
    pub metric: Option<Spanned<String>>,
    /// final | best | median-last-5.
    pub select: Option<Spanned<String>>,
}

/// Positions in the sweep file, for error messages.
pub struct Source<'a> {
    /// The file name as the user gave it.
    pub path: &'a str,
    /// The file's text.
    pub text: &'a str,
}

impl Source<'_> {
    /// `FILE:LINE:COL` of a byte offset (lines and columns from 1).
    pub fn locate(&self, offset: usize) -> String {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let col = before.rfind('\n').map_or(offset, |i| offset - i - 1) + 1;
        format!("{}:{line}:{col}", self.path)
    }

    /// An error at a span: `FILE:LINE:COL: message`.
    pub fn error(&self, span: Range<usize>, message: impl std::fmt::Display) -> Error {
        Error::Sweep(format!("{}: {message}", self.locate(span.start)))
    }

    /// Parses the file, mapping TOML and serde errors to `FILE:LINE:COL: message`.
    /// A value of the wrong type is named by its key (`instruments.noise_scale_every: invalid
    /// value: integer `-1`, expected a whole number from 0 to 4294967295`).
    pub fn parse(&self) -> Result<SweepFile> {
        let located = |e: &toml::de::Error, msg: String| match e.span() {
            Some(span) => self.error(span, msg),
            None => Error::Sweep(format!("{}: {msg}", self.path)),
        };
        let de = toml::Deserializer::parse(self.text)
            .map_err(|e| located(&e, e.message().trim().replace('\n', " ")))?;
        serde_path_to_error::deserialize::<_, SweepFile>(de).map_err(|e| {
            let key = keyed_path(&e.path().to_string());
            let inner = e.inner();
            let mut msg = inner.message().trim().replace('\n', " ").replace(
                "expected u32",
                "expected a whole number from 0 to 4294967295",
            );
            // A section given as `[[data]]` (an array of tables) met serde's word for the
            // section's Rust type: "invalid length 1, expected struct DataSection with 10
            // elements".
            if msg.contains("expected struct ") {
                msg = "expected one table (`[section]`), got an array of tables or a list \
                       (`[[section]]`, `key = [...]`)"
                    .to_string();
            }
            // Something missing at the top of the file: serde's path there is ".", which read
            // as "`.`: missing field `name`". The sections are tables, not fields.
            if key.is_empty() {
                if msg == "missing field `name`" {
                    msg = format!("{msg} at the top of the file (before any [section])");
                } else if let Some(section) = msg
                    .strip_prefix("missing field `")
                    .and_then(|m| m.strip_suffix('`'))
                {
                    msg = format!("missing section [{section}]");
                }
            }
            // An unknown key's message already names it.
            if key.is_empty() || msg.starts_with("unknown field") {
                located(inner, msg)
            } else {
                located(inner, format!("`{key}`: {msg}"))
            }
        })
    }

    /// A numeric axis: a scalar, a list, or a logspace / linspace / pow2 table.
    pub fn numbers(&self, key: &str, v: &Spanned<Value>) -> Result<Vec<f64>> {
        let span = v.span();
        let num = |x: &Value| -> Option<f64> {
            match x {
                Value::Integer(i) => Some(*i as f64),
                Value::Float(f) => Some(*f),
                _ => None,
            }
        };
        let values = match v.get_ref() {
            Value::Integer(_) | Value::Float(_) => vec![num(v.get_ref()).unwrap_or(f64::NAN)],
            Value::Array(items) => {
                if items.is_empty() {
                    return Err(self.error(span, format!("`{key}` is an empty axis")));
                }
                items
                    .iter()
                    .enumerate()
                    .map(|(i, x)| {
                        num(x).ok_or_else(|| {
                            self.error(
                                span.clone(),
                                format!(
                                    "`{key}`: element {} is {}, expected a number",
                                    i + 1,
                                    a_type(x.type_str())
                                ),
                            )
                        })
                    })
                    .collect::<Result<Vec<f64>>>()?
            }
            Value::Table(t) => self.range(key, span.clone(), t)?,
            other => {
                return Err(self.error(
                    span,
                    format!(
                        "`{key}` is {}, expected a number, a list, or a logspace / linspace / \
                         pow2 table",
                        a_type(other.type_str())
                    ),
                ));
            }
        };
        if let Some(bad) = values.iter().find(|x| !x.is_finite()) {
            return Err(self.error(span, format!("`{key}`: {bad} is not a finite number")));
        }
        Ok(values)
    }

    fn range(&self, key: &str, span: Range<usize>, t: &toml::Table) -> Result<Vec<f64>> {
        let err = |msg: String| self.error(span.clone(), format!("`{key}`: {msg}"));
        let kinds: Vec<&str> = ["logspace", "linspace", "pow2"]
            .into_iter()
            .filter(|k| t.contains_key(*k))
            .collect();
        let [kind] = kinds[..] else {
            return Err(err(
                "a range table needs exactly one of logspace = [a, b], linspace = [a, b] or \
                 pow2 = [a, b]"
                    .into(),
            ));
        };
        for k in t.keys() {
            if k != kind && k != "num" {
                return Err(err(format!("unknown key `{k}` in a {kind} range")));
            }
        }
        let ends = match t.get(kind) {
            Some(Value::Array(a)) if a.len() == 2 => {
                let f = |x: &Value| match x {
                    Value::Integer(i) => Some(*i as f64),
                    Value::Float(f) => Some(*f),
                    _ => None,
                };
                match (f(&a[0]), f(&a[1])) {
                    (Some(lo), Some(hi)) => (lo, hi),
                    _ => return Err(err(format!("{kind} = [a, b] needs two numbers"))),
                }
            }
            _ => return Err(err(format!("{kind} = [a, b] needs two numbers"))),
        };
        let (lo, hi) = ends;
        if !(lo.is_finite() && hi.is_finite()) {
            return Err(err(format!("{kind} = [{lo}, {hi}] needs finite ends")));
        }
        if kind == "pow2" {
            if t.contains_key("num") {
                return Err(err(
                    "pow2 takes no `num`: it lists every power of two in [a, b]".into(),
                ));
            }
            if !(lo >= 1.0 && hi >= lo) {
                return Err(err(format!("pow2 = [{lo}, {hi}] needs 1 ≤ a ≤ b")));
            }
            let mut out = Vec::new();
            let mut p = 1.0f64;
            while p <= hi {
                if p >= lo {
                    out.push(p);
                }
                p *= 2.0;
            }
            if out.is_empty() {
                return Err(err(format!("no power of two lies in [{lo}, {hi}]")));
            }
            return Ok(out);
        }
        let num = match t.get("num") {
            Some(Value::Integer(n)) if *n as u64 > MAX_AXIS as u64 => {
                return Err(err(format!(
                    "`num` must be at most {MAX_AXIS} (a sweep has at most that many cells), \
                     got {n}"
                )));
            }
            Some(Value::Integer(n)) if *n >= 1 => *n as usize,
            Some(other) => return Err(err(format!("`num` must be an integer ≥ 1, got {other}"))),
            None => {
                return Err(err(format!(
                    "a {kind} range needs `num`, the number of values"
                )));
            }
        };
        if kind == "logspace" && !(lo > 0.0 && hi > 0.0) {
            return Err(err(format!("logspace = [{lo}, {hi}] needs positive ends")));
        }
        if num == 1 {
            return Ok(vec![lo]);
        }
        let out = (0..num)
            .map(|i| {
                let f = i as f64 / (num - 1) as f64;
                let x = if kind == "logspace" {
                    (lo.ln() + f * (hi.ln() - lo.ln())).exp()
                } else {
                    lo + f * (hi - lo)
                };
                round_sig(x)
            })
            .collect();
        Ok(out)
    }

    /// An axis of non-negative integers.
    pub fn integers(&self, key: &str, v: &Spanned<Value>) -> Result<Vec<u64>> {
        self.numbers(key, v)?
            .into_iter()
            .map(|x| {
                if x >= 0.0 && x.fract() == 0.0 && x <= 9.0e15 {
                    Ok(x as u64)
                } else if x < 0.0 {
                    // Which non-negative values a key takes (0 or from 1) its own check says.
                    Err(self.error(v.span(), format!("`{key}`: {x} is negative")))
                } else if x > 9.0e15 {
                    // The numbers of a sweep file are read as doubles: whole numbers are exact
                    // up to 2⁵³ (about 9.007e15), so the bound is stated rather than the value
                    // echoed rounded.
                    Err(self.error(
                        v.span(),
                        format!("`{key}`: {x:e} is too large (at most 9e15)"),
                    ))
                } else {
                    Err(self.error(v.span(), format!("`{key}`: {x} is not a whole number")))
                }
            })
            .collect()
    }

    /// An axis of whole numbers that fit 32 bits (widths, dimensions, class counts).
    pub fn u32s(&self, key: &str, v: &Spanned<Value>) -> Result<Vec<u32>> {
        self.integers(key, v)?
            .into_iter()
            .map(|x| {
                u32::try_from(x).map_err(|_| {
                    self.error(
                        v.span(),
                        format!("`{key}`: {x} is larger than {}", u32::MAX),
                    )
                })
            })
            .collect()
    }

    /// An axis of strings: a string or a list of strings.
    pub fn strings(&self, key: &str, v: &Spanned<Value>) -> Result<Vec<String>> {
        match v.get_ref() {
            Value::String(s) => Ok(vec![s.clone()]),
            Value::Array(items) if !items.is_empty() => items
                .iter()
                .map(|x| match x {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(self.error(
                        v.span(),
                        format!("`{key}`: {} in a list of names", a_type(other.type_str())),
                    )),
                })
                .collect(),
            Value::Array(_) => Err(self.error(v.span(), format!("`{key}` is an empty axis"))),
            other => Err(self.error(
                v.span(),
                format!(
                    "`{key}` is {}, expected a name or a list of names",
                    a_type(other.type_str())
                ),
            )),
        }
    }

    /// An axis of booleans.
    pub fn bools(&self, key: &str, v: &Spanned<Value>) -> Result<Vec<bool>> {
        match v.get_ref() {
            Value::Boolean(b) => Ok(vec![*b]),
            Value::Array(items) if !items.is_empty() => items
                .iter()
                .map(|x| match x {
                    Value::Boolean(b) => Ok(*b),
                    other => Err(self.error(
                        v.span(),
                        format!(
                            "`{key}`: {} in a list of booleans",
                            a_type(other.type_str())
                        ),
                    )),
                })
                .collect(),
            other => Err(self.error(
                v.span(),
                format!(
                    "`{key}` is {}, expected true, false or a list",
                    a_type(other.type_str())
                ),
            )),
        }
    }
}

/// Rounds to 12 significant digits, so generated axis values are the numbers a person would
/// write (0.1, not 0.10000000000000002) and hash the same on every platform.
pub fn round_sig(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    format!("{x:.11e}").parse().unwrap_or(x)
}

/// The dotted key of a serde path, without the segments `toml::Spanned` adds.
fn keyed_path(path: &str) -> String {
    path.split('.')
        .filter(|seg| !seg.is_empty() && !seg.starts_with("$__") && *seg != "?")
        .collect::<Vec<_>>()
        .join(".")
}

/// A TOML type's name with its article: "an array", "a string".
pub(crate) fn a_type(name: &str) -> String {
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(text: &str) -> Source<'_> {
        Source {
            path: "s.toml",
            text,
        }
    }

    fn axis(text: &str) -> Result<Vec<f64>> {
        let full = format!("x = {text}\n");
        let s = src(&full);
        #[derive(Deserialize)]
        struct X {
            x: Spanned<Value>,
        }
        let x: X = toml::from_str(&full).unwrap();
        s.numbers("x", &x.x)
    }

    #[test]
    fn a_value_of_the_wrong_type_is_named_by_its_key() {
        let train = "[train]\nlr = 0.1\nbatch_size = 16\n";
        let cases = [
            (
                format!("name = \"t\"\n{train}[instruments]\nnoise_scale_every = -1\n"),
                "s.toml:6:21: `instruments.noise_scale_every`: invalid value: integer `-1`, \
                 expected a whole number from 0 to 4294967295",
            ),
            (
                format!("name = \"t\"\n{train}[instruments]\ncurvature = 3\n"),
                "s.toml:6:13: `instruments.curvature`: invalid type: integer `3`, expected a string",
            ),
            (
                format!("name = 5\n{train}"),
                "s.toml:1:8: `name`: invalid type: integer `5`, expected a string",
            ),
            (
                format!("name = \"t\"\n{train}skip_batch_above_n = 1\n"),
                "s.toml:5:22: `train.skip_batch_above_n`: invalid type: integer `1`, expected a boolean",
            ),
            (
                format!("name = \"t\"\nseed = 1\n{train}"),
                "s.toml:2:1: unknown field `seed`, expected one of `name`, `description`, `data`, \
                 `model`, `train`, `eval`, `instruments`",
            ),
            (
                "name = \"t\"\nx = [1,\n".to_string(),
                "s.toml:2:8: unclosed array, expected `]`",
            ),
            // Regression: "`.`: missing field `name`".
            (
                train.to_string(),
                "s.toml:1:1: missing field `name` at the top of the file (before any [section])",
            ),
            (
                "name = \"t\"\n[train]\nlr = 0.1\n".to_string(),
                "s.toml:2:1: `train`: missing field `batch_size`",
            ),
            (
                "name = \"t\"\n[model]\nhidden = [8]\n".to_string(),
                "s.toml:1:1: missing section [train]",
            ),
        ];
        for (text, want) in cases {
            let got = match src(&text).parse() {
                Err(Error::Sweep(m)) => m,
                other => panic!("{text}: {other:?}"),
            };
            assert_eq!(got, want, "{text}");
        }
    }

    #[test]
    fn axes_expand() {
        assert_eq!(axis("0.5").unwrap(), vec![0.5]);
        assert_eq!(axis("[1, 2.5]").unwrap(), vec![1.0, 2.5]);
        assert_eq!(
            axis("{ pow2 = [8, 100] }").unwrap(),
            vec![8.0, 16.0, 32.0, 64.0]
        );
        assert_eq!(
            axis("{ logspace = [0.01, 1.0], num = 3 }").unwrap(),
            vec![0.01, 0.1, 1.0]
        );
        assert_eq!(
            axis("{ linspace = [0, 1], num = 5 }").unwrap(),
            vec![0.0, 0.25, 0.5, 0.75, 1.0]
        );
    }

    #[test]
    fn axis_errors_have_a_position() {
        let e = axis("[]").unwrap_err().to_string();
        assert!(
            e.starts_with("s.toml:1:5") && e.contains("empty axis"),
            "{e}"
        );
        let e = axis("{ logspace = [0, 1], num = 3 }")
            .unwrap_err()
            .to_string();
        assert!(e.contains("positive"), "{e}");
        let e = axis("{ logspace = [0.1, 1] }").unwrap_err().to_string();
        assert!(e.contains("num"), "{e}");
        let e = axis("[1, \"a\"]").unwrap_err().to_string();
        assert!(e.contains("element 2 is a string"), "{e}");
        let e = axis("{ pow2 = [3, 3] }").unwrap_err().to_string();
        assert!(e.contains("no power of two"), "{e}");
        // Infinite ends (which once listed powers of two without end) and huge counts.
        for text in [
            "{ pow2 = [1, inf] }",
            "{ logspace = [0.1, inf], num = 3 }",
            "{ linspace = [-inf, 1], num = 3 }",
        ] {
            let e = axis(text).unwrap_err().to_string();
            assert!(
                e.starts_with("s.toml:1:5") && e.contains("finite ends"),
                "{e}"
            );
        }
        let e = axis("{ logspace = [0.001, 0.1], num = 1000000000000 }")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`num` must be at most 1000000"), "{e}");
    }

    #[test]
    fn locate_counts_lines_and_columns_from_one() {
        let s = src("a\nbcd\nef");
        assert_eq!(s.locate(0), "s.toml:1:1");
        assert_eq!(s.locate(4), "s.toml:2:3");
        assert_eq!(s.locate(6), "s.toml:3:1");
    }
}
