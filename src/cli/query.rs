//! `scalelab runs`, `metrics`, `sql`, `sweeps` and `export`: questioning the database.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::{DbArg, data_table};
use crate::db::Store;
use crate::db::query::{Cell, ResultTable};
use crate::error::Error;
use crate::query::{Param, check_read_only, parse_filter};

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns, numbers rounded for reading.
    Table,
    /// Comma-separated values with a header, exact numbers.
    Csv,
    /// A JSON array of objects, exact numbers.
    Json,
}

/// Columns of `scalelab runs` (and of its `--where` and `--sort`).
pub const RUN_COLUMNS: &[&str] = &[
    "run_id",
    "state",
    "dataset",
    "model",
    "hidden",
    "train_size",
    "test_size",
    "lr",
    "batch_size",
    "momentum",
    "nesterov",
    "weight_decay",
    "noise_scale",
    "schedule",
    "schedule_label",
    "budget_kind",
    "budget",
    "seed",
    "epochs_done",
    "steps",
    "samples",
    "final_train_loss",
    "final_train_acc",
    "final_test_loss",
    "final_test_acc",
    "best_test_acc",
    "diverged_at_epoch",
    "wall_s",
    "attempt",
    "error",
];

/// The columns the table format shows (CSV and JSON have all of them).
const RUN_TABLE_COLUMNS: &[&str] = &[
    "run_id",
    "state",
    "train_size",
    "lr",
    "batch_size",
    "momentum",
    "schedule",
    "seed",
    "steps",
    "final_test_acc",
    "best_test_acc",
    "wall_s",
];

/// The most rows the table format prints: it is for reading, and it holds its rows to size its
/// columns (a query without end once grew to 4.8 GB). The query is stopped there; CSV and JSON
/// (`sql`) or `--limit` (`runs`) give more.
pub const TABLE_MAX_ROWS: usize = 10_000;

/// The note on stderr when the table format stopped at [`TABLE_MAX_ROWS`]; `more` says how to
/// get the rest.
fn table_stopped_note(more: &str) -> String {
    format!("note: stopped at {TABLE_MAX_ROWS} rows (the most the table format prints); {more}")
}

/// Short headers for the table format, so a run listing fits in 120 columns.
fn header(column: &str) -> &str {
    match column {
        "train_size" => "N",
        "batch_size" => "B",
        "momentum" => "m",
        "final_test_acc" => "test_acc",
        "best_test_acc" => "best_acc",
        "final_test_loss" => "test_loss",
        other => other,
    }
}

/// `scalelab runs`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Only the runs of this sweep (name or file).
    #[arg(long)]
    pub sweep: Option<String>,
    /// Only runs in this state (pending, running, completed, diverged, failed).
    #[arg(long)]
    pub state: Option<String>,
    /// A filter such as "batch_size >= 64 and lr < 0.5" or "state = 'diverged'".
    #[arg(long = "where", value_name = "EXPR")]
    pub filter: Option<String>,
    /// Sort by this column; a leading '-' sorts descending (e.g. -final_test_acc).
    #[arg(long, allow_hyphen_values = true)]
    pub sort: Option<String>,
    /// At most this many rows.
    #[arg(long, value_parser = clap::value_parser!(u64).range(..=i64::MAX as u64))]
    pub limit: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    #[command(flatten)]
    pub db: DbArg,
}

/// `scalelab metrics RUN_ID`.
#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// The run id, or a unique prefix of it.
    pub run_id: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    #[command(flatten)]
    pub db: DbArg,
}

/// `scalelab sql "SELECT …"`.
#[derive(Debug, Args)]
pub struct SqlArgs {
    /// One read-only statement (SELECT, WITH … SELECT, VALUES, EXPLAIN, or a PRAGMA that SQLite
    /// counts as read-only, such as table_info(runs)).
    pub query: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    #[command(flatten)]
    pub db: DbArg,
}

/// `scalelab sweeps`.
#[derive(Debug, Args)]
pub struct SweepsArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    #[command(flatten)]
    pub db: DbArg,
}

/// Formats of `export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// CSV with a header (`pandas.read_csv(FILE)`).
    Csv,
    /// A JSON array of records (`pandas.read_json(FILE)`).
    Json,
    /// One JSON object per line (`pandas.read_json(FILE, lines=True)`).
    Jsonl,
}

/// `scalelab export SWEEP`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The sweep's name or file.
    pub sweep: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
    pub format: ExportFormat,
    /// The file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// One row per run and epoch (every epoch metric) instead of one row per run.
    #[arg(long)]
    pub epochs: bool,
    #[command(flatten)]
    pub db: DbArg,
}

/// How the table format writes a result: for reading (`runs`, `metrics`, `sweeps`: short
/// headers, rounded numbers) or as the query asked (`sql`: its own column names, every real in
/// its shortest exact form).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    Reading,
    AsQueried,
}

/// A number for reading: learning-rate-like columns in scientific notation to 3 significant
/// digits (3.42e-2), metrics to 4 decimals, seconds to 2, other reals to 6 significant digits;
/// any magnitude of a million or more in scientific notation (a diverged loss of 1e33 on one
/// line, not 34 digits).
fn display(column: &str, cell: &Cell) -> String {
    match cell {
        Cell::Null => "-".to_string(),
        Cell::Real(v) => {
            let c = column.to_ascii_lowercase();
            if !v.is_finite() {
                format!("{v}")
            } else if c == "lr" || c.contains("noise") || c.contains("weight_decay") {
                sci(*v)
            } else if v.abs() >= 1e6 {
                format!("{v:.4e}")
            } else if c.contains("acc") || c.contains("loss") {
                format!("{v:.4}")
            } else if c.contains("wall") || c.ends_with("_s") {
                format!("{v:.2}")
            } else if c == "momentum" {
                format!("{v}")
            } else {
                crate::analysis::format_sig(*v, 6)
            }
        }
        other => other.exact(),
    }
}

/// A value as the query gave it: integers and text as stored, a real in its shortest form that
/// reads back to the same number (in scientific notation below 1e-4 or from 1e15 on, where the
/// plain form would run to hundreds of digits: [`Cell::exact`], as CSV writes it), NULL as "-".
fn display_exact(cell: &Cell) -> String {
    match cell {
        Cell::Null => "-".to_string(),
        other => other.exact(),
    }
}

/// `3.42e-2` style: three significant digits, a short exponent.
fn sci(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    format!("{v:.2e}")
}

fn print_result(
    t: &ResultTable,
    format: Format,
    show: Option<&[&str]>,
    style: Style,
) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match format {
        Format::Table => {
            let idx: Vec<usize> = match show {
                Some(cols) => cols
                    .iter()
                    .filter_map(|c| t.columns.iter().position(|x| x == c))
                    .collect(),
                None => (0..t.columns.len()).collect(),
            };
            let headers: Vec<&str> = idx
                .iter()
                .map(|&i| match style {
                    Style::Reading => header(&t.columns[i]),
                    Style::AsQueried => t.columns[i].as_str(),
                })
                .collect();
            let rows: Vec<Vec<String>> = t
                .rows
                .iter()
                .map(|r| {
                    idx.iter()
                        .map(|&i| match style {
                            Style::Reading => display(&t.columns[i], &r[i]),
                            Style::AsQueried => display_exact(&r[i]),
                        })
                        .collect()
                })
                .collect();
            if rows.is_empty() {
                writeln!(out, "(no rows)")?;
            } else {
                writeln!(out, "{}", data_table(&headers, &rows))?;
                writeln!(
                    out,
                    "({} row{})",
                    rows.len(),
                    if rows.len() == 1 { "" } else { "s" }
                )?;
            }
        }
        Format::Csv => write_csv(t, &mut out)?,
        Format::Json => {
            serde_json::to_writer(&mut out, &to_json(t))?;
            writeln!(out)?;
        }
    }
    Ok(())
}

/// Runs `sql` and writes its rows to `out` as they are read: CSV with a header, a JSON array of
/// records, or one record per line, byte for byte what [`write_csv`], [`to_json`] and
/// [`record`] give for the whole table, without ever holding it (a million epoch rows of an
/// export are about 1.3 GB as a table). `name` is what `out` is called in an error. Returns
/// the numbers of rows and columns.
async fn stream_rows(
    store: &Store,
    sql: &str,
    params: &[Param],
    format: ExportFormat,
    out: &mut dyn Write,
    name: &Path,
) -> anyhow::Result<(usize, usize)> {
    let io = |e: std::io::Error| Error::io(name, e);
    enum Sink<'a> {
        Csv(Box<csv::Writer<&'a mut dyn Write>>),
        Json(&'a mut dyn Write),
    }
    let mut sink = match format {
        ExportFormat::Csv => Sink::Csv(Box::new(csv::Writer::from_writer(out))),
        ExportFormat::Json | ExportFormat::Jsonl => Sink::Json(out),
    };
    let mut field = String::new();
    let mut columns: Option<Vec<String>> = None;
    let mut keys: Option<Vec<String>> = None;
    let mut rows = 0usize;
    let (all_columns, _) = store
        .scan(sql, params, |row| {
            let cells = store.cells(row)?;
            let first = columns.is_none();
            let cols = columns.get_or_insert_with(|| {
                row.as_ref()
                    .column_names()
                    .into_iter()
                    .map(String::from)
                    .collect()
            });
            match &mut sink {
                Sink::Csv(csv) => {
                    if first {
                        csv.write_record(cols.iter()).map_err(|e| io(e.into()))?;
                    }
                    for c in &cells {
                        field.clear();
                        c.write_exact(&mut field);
                        csv.write_field(&field).map_err(|e| io(e.into()))?;
                    }
                    csv.write_record(None::<&[u8]>).map_err(|e| io(e.into()))?;
                }
                Sink::Json(w) => {
                    let sep: &[u8] = match (format, first) {
                        (ExportFormat::Json, true) => b"[",
                        (ExportFormat::Json, false) => b",",
                        _ => b"",
                    };
                    w.write_all(sep).map_err(io)?;
                    let keys = keys.get_or_insert_with(|| json_keys(cols));
                    serde_json::to_writer(&mut *w, &record(keys, &cells))
                        .map_err(|e| io(e.into()))?;
                    if format == ExportFormat::Jsonl {
                        w.write_all(b"\n").map_err(io)?;
                    }
                }
            }
            rows += 1;
            Ok(())
        })
        .await?;
    match &mut sink {
        Sink::Csv(csv) => {
            if rows == 0 {
                csv.write_record(&all_columns).map_err(|e| io(e.into()))?;
            }
            csv.flush().map_err(io)?;
        }
        Sink::Json(w) => {
            if format == ExportFormat::Json {
                w.write_all(if rows == 0 { b"[]" } else { b"]" })
                    .map_err(io)?;
            }
        }
    }
    Ok((rows, all_columns.len()))
}

fn write_csv(t: &ResultTable, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(&t.columns)?;
    for r in &t.rows {
        w.write_record(r.iter().map(Cell::exact))?;
    }
    w.flush()?;
    Ok(())
}

/// JSON keys for `columns`, in their order: a name met again gets `.1`, `.2`, … (as pandas
/// names repeated CSV columns), so no value is lost to a repeated key.
fn json_keys(columns: &[String]) -> Vec<String> {
    // pandas' own renaming of repeated columns, step for step.
    let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    columns
        .iter()
        .map(|c| {
            let mut key = c.clone();
            let mut n = counts.get(&key).copied().unwrap_or(0);
            while n > 0 {
                counts.insert(key.clone(), n + 1);
                key = format!("{key}.{n}");
                n = counts.get(&key).copied().unwrap_or(0);
            }
            counts.insert(key.clone(), n + 1);
            key
        })
        .collect()
}

/// One row as a JSON object whose keys keep the query's column order (serde_json's own map
/// would sort them); `keys` from [`json_keys`].
struct Record<'a> {
    keys: &'a [String],
    cells: &'a [Cell],
}

impl serde::Serialize for Record<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.keys.len()))?;
        for (k, v) in self.keys.iter().zip(self.cells) {
            map.serialize_entry(k, &v.json())?;
        }
        map.end()
    }
}

fn record<'a>(keys: &'a [String], cells: &'a [Cell]) -> Record<'a> {
    Record { keys, cells }
}

/// A whole table as a JSON array of records.
struct Records<'a>(&'a ResultTable);

impl serde::Serialize for Records<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let keys = json_keys(&self.0.columns);
        s.collect_seq(self.0.rows.iter().map(|r| record(&keys, r)))
    }
}

fn to_json(t: &ResultTable) -> Records<'_> {
    Records(t)
}

/// The SELECT behind `runs` (and `export`): every run column, optionally one sweep's runs.
fn runs_source(with_sweep: bool) -> String {
    let cols: Vec<String> = RUN_COLUMNS
        .iter()
        .map(|c| {
            if *c == "run_id" {
                "r.id AS run_id".to_string()
            } else {
                format!("r.{c}")
            }
        })
        .collect();
    if with_sweep {
        format!(
            "SELECT s.sweep, {} FROM runs r JOIN sweep_runs s ON s.run_id = r.id \
             WHERE s.sweep = ? ORDER BY s.position",
            cols.join(", ")
        )
    } else {
        format!("SELECT {} FROM runs r ORDER BY r.rowid", cols.join(", "))
    }
}

pub(super) async fn runs(args: RunsArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open_read_only(&args.db.db).await?;
    let mut params = Vec::new();
    let sweep = match &args.sweep {
        Some(s) => {
            let name = super::run::sweep_name(s)?;
            super::run::warn_if_file_differs(&store, s, &name).await;
            if store.sweep(&name).await?.is_none() {
                return Err(Error::Query(format!(
                    "no sweep named {name:?} in {}",
                    args.db.db.display()
                ))
                .into());
            }
            params.push(Param::Text(name));
            true
        }
        None => false,
    };
    let mut conditions = Vec::new();
    if let Some(state) = &args.state {
        let st: crate::db::RunStatus = state.parse()?;
        conditions.push("state = ?".to_string());
        params.push(Param::Text(st.as_str().to_string()));
    }
    if let Some(expr) = &args.filter {
        let f = parse_filter(expr, RUN_COLUMNS)?;
        conditions.push(f.sql);
        params.extend(f.params);
    }
    let mut sql = format!("SELECT * FROM ({}) q", runs_source(sweep));
    if !conditions.is_empty() {
        sql.push_str(&format!(" WHERE {}", conditions.join(" AND ")));
    }
    if let Some(sort) = &args.sort {
        let (col, desc) = match sort.strip_prefix('-') {
            Some(c) => (c, true),
            None => (sort.as_str(), false),
        };
        let col = RUN_COLUMNS.iter().find(|c| **c == col).ok_or_else(|| {
            Error::Query(format!(
                "--sort: unknown column {col:?} (columns: {})",
                RUN_COLUMNS.join(", ")
            ))
        })?;
        sql.push_str(&format!(
            " ORDER BY {col} {}",
            if desc { "DESC" } else { "ASC" }
        ));
    }
    if let Some(limit) = args.limit {
        sql.push_str(&format!(" LIMIT {limit}"));
    }
    // A table without --limit stops at TABLE_MAX_ROWS; --limit is the user's own bound.
    let max_rows = match (args.format, args.limit) {
        (Format::Table, None) => TABLE_MAX_ROWS,
        _ => usize::MAX,
    };
    let read = store.query_table_at_most(&sql, &params, max_rows).await;
    store.close().await;
    let (t, more) = read?;
    print_result(&t, args.format, Some(RUN_TABLE_COLUMNS), Style::Reading)?;
    if more {
        eprintln!(
            "{}",
            table_stopped_note("use --limit N or --format csv for more")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn metrics(args: MetricsArgs) -> anyhow::Result<ExitCode> {
    let prefix = args.run_id.trim().to_ascii_lowercase();
    if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::Query(format!(
            "run id {:?} is not a hexadecimal id (or prefix of one)",
            args.run_id
        ))
        .into());
    }
    let store = Store::open_read_only(&args.db.db).await?;
    let ids = store
        .query_table(
            "SELECT id FROM runs WHERE substr(id, 1, length(?1)) = ?1 ORDER BY id LIMIT 6",
            &[Param::Text(prefix.clone())],
        )
        .await?;
    let id = match ids.rows.len() {
        0 => {
            return Err(Error::Query(format!(
                "no run id starts with {prefix:?} in {}",
                args.db.db.display()
            ))
            .into());
        }
        1 => ids.rows[0][0].exact(),
        _ => {
            let some: Vec<String> = ids.rows.iter().map(|r| r[0].exact()).collect();
            return Err(Error::Query(format!(
                "run id prefix {prefix:?} is ambiguous: {}{}",
                some[..some.len().min(5)].join(", "),
                if some.len() > 5 { ", …" } else { "" }
            ))
            .into());
        }
    };
    let max_rows = match args.format {
        Format::Table => TABLE_MAX_ROWS,
        _ => usize::MAX,
    };
    let read = store
        .query_table_at_most(
            "SELECT epoch, step, samples, lr, batch_size, train_loss, train_acc, test_loss, \
             test_acc, nonfinite, wall_s FROM epoch_metrics WHERE run_id = ? ORDER BY epoch",
            &[Param::Text(id.clone())],
            max_rows,
        )
        .await;
    store.close().await;
    let (t, more) = read?;
    if args.format == Format::Table {
        outln!("run {id}")?;
    }
    print_result(&t, args.format, None, Style::Reading)?;
    if more {
        eprintln!("{}", table_stopped_note("use --format csv for every epoch"));
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn sql(args: SqlArgs) -> anyhow::Result<ExitCode> {
    check_read_only(&args.query)?;
    let store = Store::open_read_only(&args.db.db).await?;
    // CSV and JSON go out as they are read; a table needs every row for its widths, so it stops
    // at TABLE_MAX_ROWS (a query without end would otherwise take all memory).
    let streamed = match args.format {
        Format::Table => None,
        Format::Csv => Some(ExportFormat::Csv),
        Format::Json => Some(ExportFormat::Json),
    };
    let result = match streamed {
        Some(format) => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let r = stream_rows(
                &store,
                &args.query,
                &[],
                format,
                &mut out,
                Path::new("<stdout>"),
            )
            .await;
            let r = r.and_then(|_| {
                if format == ExportFormat::Json {
                    writeln!(out)?;
                }
                out.flush()?;
                Ok(())
            });
            store.close().await;
            r
        }
        None => {
            let read = store
                .query_table_at_most(&args.query, &[], TABLE_MAX_ROWS)
                .await;
            store.close().await;
            read.map_err(anyhow::Error::from).and_then(|(t, more)| {
                print_result(&t, args.format, None, Style::AsQueried)?;
                if more {
                    eprintln!(
                        "{}",
                        table_stopped_note("use --format csv (or LIMIT in the query) for more")
                    );
                }
                Ok(())
            })
        }
    };
    result?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn sweeps(args: SweepsArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open_read_only(&args.db.db).await?;
    let t = store
        .query_table(
            "SELECT w.name AS sweep, w.cells, \
             SUM(r.state = 'pending') AS pending, SUM(r.state = 'running') AS running, \
             SUM(r.state = 'completed') AS completed, SUM(r.state = 'diverged') AS diverged, \
             SUM(r.state = 'failed') AS failed, w.metric, w.path, w.description \
             FROM sweeps w LEFT JOIN sweep_runs s ON s.sweep = w.name \
             LEFT JOIN runs r ON r.id = s.run_id GROUP BY w.name ORDER BY w.created_at",
            &[],
        )
        .await?;
    store.close().await;
    let show: &[&str] = &[
        "sweep",
        "cells",
        "pending",
        "running",
        "completed",
        "diverged",
        "failed",
        "metric",
    ];
    print_result(&t, args.format, Some(show), Style::Reading)?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let name = super::run::sweep_name(&args.sweep)?;
    let store = Store::open_read_only(&args.db.db).await?;
    super::run::warn_if_file_differs(&store, &args.sweep, &name).await;
    if store.sweep(&name).await?.is_none() {
        return Err(Error::Query(format!(
            "no sweep named {name:?} in {}",
            args.db.db.display()
        ))
        .into());
    }
    let runs = runs_source(true);
    let sql = if args.epochs {
        format!(
            "SELECT q.*, m.epoch, m.step, m.samples AS epoch_samples, m.lr AS epoch_lr, \
             m.batch_size AS epoch_batch_size, m.train_loss, m.train_acc, m.test_loss, \
             m.test_acc, m.nonfinite, m.wall_s AS epoch_wall_s \
             FROM ({runs}) q JOIN epoch_metrics m ON m.run_id = q.run_id \
             ORDER BY q.run_id, m.epoch"
        )
    } else {
        runs
    };
    let params = [Param::Text(name.clone())];
    let target = match destination(&args.out).and_then(|t| {
        not_a_database(&t, &args.out, &args.db.db)?;
        Ok(t)
    }) {
        Ok(t) => t,
        Err(e) => {
            store.close().await;
            return Err(e);
        }
    };
    // Where the rows may be this process's own standard output (`-`, /dev/stdout, a pipe),
    // the summary goes to stderr.
    let to_stream = !matches!(target, Destination::Replace(_));
    let (rows, columns) = match target {
        Destination::Stdout => {
            let mut w = std::io::BufWriter::new(std::io::stdout().lock());
            let written = write_rows(&store, &sql, &params, args.format, &mut w, &args.out).await;
            store.close().await;
            written?
        }
        // Not a regular file (a FIFO, a device): the rows go straight into it.
        Destination::Through(path) => {
            let opened = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path);
            let written = match opened {
                Ok(f) => {
                    let mut w = std::io::BufWriter::new(f);
                    write_rows(&store, &sql, &params, args.format, &mut w, &args.out).await
                }
                Err(e) => Err(Error::io(&path, e).into()),
            };
            store.close().await;
            written?
        }
        // A regular file (through a symbolic link, the file it names): written to a temporary
        // file beside it as the rows are read, then renamed over it, so it is never half
        // written (a failure removes the temporary file).
        Destination::Replace(path) => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), PathBuf::from);
            let (tmp, written) = match tempfile_in(&dir, &path, &args.out) {
                Ok((tmp, mut file)) => {
                    // Errors name the file asked for; the temporary one is gone by the time
                    // they print.
                    let mut w = std::io::BufWriter::new(&mut file);
                    let written =
                        write_rows(&store, &sql, &params, args.format, &mut w, &args.out).await;
                    (Some(tmp), written)
                }
                Err(e) => (None, Err(e)),
            };
            store.close().await;
            let renamed = written.and_then(|n| match &tmp {
                Some(tmp) => std::fs::rename(tmp, &path)
                    .map(|()| n)
                    .map_err(|e| Error::io(&args.out, e).into()),
                None => Ok(n),
            });
            if renamed.is_err()
                && let Some(tmp) = &tmp
            {
                let _ = std::fs::remove_file(tmp);
            }
            renamed?
        }
    };
    let summary = format!(
        "wrote {rows} rows ({columns} columns) of sweep {name} to {}",
        if args.out.as_os_str() == "-" {
            "standard output".to_string()
        } else {
            args.out.display().to_string()
        }
    );
    if to_stream {
        eprintln!("{summary}");
    } else {
        outln!("{summary}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// [`stream_rows`], then the buffered writer flushed.
async fn write_rows(
    store: &Store,
    sql: &str,
    params: &[Param],
    format: ExportFormat,
    w: &mut dyn Write,
    name: &Path,
) -> anyhow::Result<(usize, usize)> {
    let n = stream_rows(store, sql, params, format, w, name).await?;
    w.flush().map_err(|e| Error::io(name, e))?;
    Ok(n)
}

/// Where `export --out` writes.
enum Destination {
    /// `-`.
    Stdout,
    /// A FIFO, a device or a socket: written into as it is.
    Through(PathBuf),
    /// A new path or a regular file (a symbolic link resolved to the file it names): replaced
    /// whole once written.
    Replace(PathBuf),
}

fn destination(out: &Path) -> anyhow::Result<Destination> {
    if out.as_os_str() == "-" {
        return Ok(Destination::Stdout);
    }
    // Follow symbolic links to where the rows would end up (a relative target is relative to
    // its link's directory), so that a link to a file not made yet is also written whole.
    let mut path = out.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&path).map_err(|e| Error::io(out, e))?;
                path = match path.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            Ok(m) if m.is_dir() => {
                return Err(Error::data(out, "is a directory, not a file").into());
            }
            Ok(m) if m.is_file() => return Ok(Destination::Replace(path)),
            Ok(_) => return Ok(Destination::Through(path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Destination::Replace(path));
            }
            Err(e) => return Err(Error::io(out, e).into()),
        }
    }
    Err(Error::data(out, "too many levels of symbolic links").into())
}

/// Refuses an `--out` that would overwrite a database: the results database itself (or its
/// `-wal`, `-shm` or `-journal` file, by any name or link) or any other SQLite file. Replacing
/// one with rows of text would destroy every run stored in it.
fn not_a_database(target: &Destination, out: &Path, db: &Path) -> anyhow::Result<()> {
    let path = match target {
        Destination::Stdout => return Ok(()),
        Destination::Through(p) | Destination::Replace(p) => p,
    };
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(()); // a new file
    };
    let companions = ["", "-wal", "-shm", "-journal"].map(|suffix| {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    });
    if companions
        .iter()
        .filter_map(|c| std::fs::metadata(c).ok())
        .any(|m| same_file(&m, &meta))
    {
        return Err(Error::data(
            out,
            format!(
                "is the results database ({}) or one of its files: export would overwrite \
                 every run stored there; choose another --out",
                db.display()
            ),
        )
        .into());
    }
    if meta.is_file() {
        let mut head = [0u8; 16];
        let is_sqlite = std::fs::File::open(path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
            .is_ok_and(|()| &head == b"SQLite format 3\0");
        if is_sqlite {
            return Err(Error::data(
                out,
                "is an SQLite database: export writes CSV or JSON and would destroy it; \
                 choose another --out (or remove the file first)",
            )
            .into());
        }
    }
    Ok(())
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    // Without inode numbers: the same size and modification time is the best available guess.
    a.len() == b.len() && a.modified().ok() == b.modified().ok()
}

/// A new file `.<name>.<process id>.tmp` in `dir` (two exports to one target at once do not
/// share a temporary file). Errors name `out`, the path the user gave (`target` may be where a
/// symbolic link leads), and the directory that could not be written; the temporary file's
/// own name would mean nothing to them.
fn tempfile_in(dir: &Path, target: &Path, out: &Path) -> anyhow::Result<(PathBuf, std::fs::File)> {
    let refused = |why: String| anyhow::Error::from(Error::data(out, why));
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(refused(format!("{} is not a directory", dir.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(refused(format!(
                "output directory {} does not exist",
                dir.display()
            )));
        }
        Err(e) => {
            return Err(refused(format!(
                "cannot use output directory {}: {e}",
                dir.display()
            )));
        }
    }
    // At most 200 bytes of the name, so the temporary name stays under the usual 255-byte
    // limit of a file name when the target's own name is near it.
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export".into());
    let mut cut = name.len().min(200);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    let path = dir.join(format!(".{}.{}.tmp", &name[..cut], std::process::id()));
    let file = std::fs::File::create(&path)
        .map_err(|e| refused(format!("cannot create a file in {}: {e}", dir.display())))?;
    Ok((path, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_formatted_for_reading() {
        assert_eq!(display("lr", &Cell::Real(0.0321)), "3.21e-2");
        // Two learning rates 1% apart stay apart.
        assert_eq!(display("lr", &Cell::Real(0.0342)), "3.42e-2");
        assert_eq!(display("lr", &Cell::Real(0.0345)), "3.45e-2");
        assert_eq!(display("noise_scale", &Cell::Real(9.96)), "9.96e0");
        // A diverged loss on one line.
        assert_eq!(
            display("train_loss", &Cell::Real(1.125095728125171e33)),
            "1.1251e33"
        );
        assert_eq!(display("test_loss", &Cell::Real(2.301234)), "2.3012");
        assert_eq!(display("final_test_acc", &Cell::Real(0.723456)), "0.7235");
        assert_eq!(display("wall_s", &Cell::Real(1.23456)), "1.23");
        assert_eq!(display("batch_size", &Cell::Int(64)), "64");
        assert_eq!(display("x", &Cell::Null), "-");
        assert_eq!(Cell::Real(0.1 + 0.2).exact(), "0.30000000000000004");
        // `sql`: as stored, however the column is named.
        assert_eq!(display_exact(&Cell::Real(0.0342)), "0.0342");
        assert_eq!(display_exact(&Cell::Real(1795990012.25)), "1795990012.25");
        assert_eq!(display_exact(&Cell::Real(1e300)), "1e300");
        assert_eq!(display_exact(&Cell::Real(3.5e-7)), "3.5e-7");
        assert_eq!(display_exact(&Cell::Real(0.0)), "0");
        assert_eq!(display_exact(&Cell::Int(7)), "7");
        assert_eq!(display_exact(&Cell::Null), "-");
    }

    /// The streamed CSV, JSON and JSON lines are byte for byte what the whole-table writers
    /// give for the same query: quoting, NULLs, a lone empty field, blobs, exact reals, an
    /// empty result.
    #[tokio::test]
    async fn streamed_rows_equal_the_whole_table_writers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
        let queries = [
            "SELECT * FROM (VALUES (1, 2.5, 'a,\"b\"', NULL, x'00ff'), \
             (NULL, 0.1 + 0.2, '', -3, NULL), (9007199254740993, 1e-300, 'é\nz', 0, x''))",
            "SELECT NULL AS n",
            "SELECT '' AS e UNION ALL SELECT NULL",
            "SELECT 1 AS a, 'x' AS b WHERE 0",
            "SELECT 2 AS b, 1 AS a, 3 AS b, 4 AS \"b.1\"",
        ];
        for sql in queries {
            let t = store.query_table(sql, &[]).await.unwrap();
            let mut csv_whole = Vec::new();
            write_csv(&t, &mut csv_whole).unwrap();
            let json_whole = serde_json::to_vec(&to_json(&t)).unwrap();
            if sql.starts_with("SELECT 2 AS b") {
                // The columns' order, and a repeated name kept apart.
                assert_eq!(
                    String::from_utf8_lossy(&json_whole),
                    r#"[{"b":2,"a":1,"b.1":3,"b.1.1":4}]"#
                );
            }
            let mut jsonl_whole = Vec::new();
            let keys = json_keys(&t.columns);
            for r in &t.rows {
                serde_json::to_writer(&mut jsonl_whole, &record(&keys, r)).unwrap();
                jsonl_whole.push(b'\n');
            }
            for (format, whole) in [
                (ExportFormat::Csv, &csv_whole),
                (ExportFormat::Json, &json_whole),
                (ExportFormat::Jsonl, &jsonl_whole),
            ] {
                let mut streamed = Vec::new();
                let n = stream_rows(&store, sql, &[], format, &mut streamed, Path::new("t"))
                    .await
                    .unwrap();
                assert_eq!(n, (t.rows.len(), t.columns.len()));
                assert_eq!(
                    String::from_utf8_lossy(&streamed),
                    String::from_utf8_lossy(whole),
                    "{format:?} of {sql}"
                );
            }
        }
        // Nothing that writes, or leaves a transaction open, gets through the bulk-read path;
        // the connection is usable after each refusal.
        for sql in ["DELETE FROM runs", "BEGIN", "SAVEPOINT x"] {
            let err = store.query_table(sql, &[]).await.unwrap_err().to_string();
            assert!(err.starts_with("refused"), "{sql}: {err}");
        }
        for _ in 0..8 {
            let t = store
                .query_table("SELECT COUNT(*) FROM runs", &[])
                .await
                .unwrap();
            assert_eq!(t.rows, vec![vec![Cell::Int(0)]]);
        }
        store.close().await;
    }
}
