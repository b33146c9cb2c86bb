//! Ad-hoc queries: any SELECT's result as a table of dynamically typed values, for `scalelab
//! runs`, `metrics`, `sql` and `export`, and the bulk-read path under them ([`Store::scan`]:
//! rows read in place with rusqlite on a locked sqlx connection).

use rusqlite::types::{Value, ValueRef};

use super::{Store, db_error_text};
use crate::error::{Error, Result};
use crate::query::Param;

/// One value of a result, with SQLite's dynamic type.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// NULL.
    Null,
    /// An INTEGER.
    Int(i64),
    /// A REAL.
    Real(f64),
    /// TEXT.
    Text(String),
    /// A BLOB.
    Blob(Vec<u8>),
}

impl Cell {
    /// The exact textual form (CSV): integers and reals in full precision, NULL as empty.
    /// A real is the shortest text that reads back to the same double; very large and very
    /// small magnitudes (≥ 1e16, or below 1e-5) in exponent form ("1e308", not 309 digits).
    pub fn exact(&self) -> String {
        let mut s = String::new();
        self.write_exact(&mut s);
        s
    }

    /// Appends [`Cell::exact`]'s text to `out`.
    pub fn write_exact(&self, out: &mut String) {
        use std::fmt::Write;
        // Writing into a String cannot fail.
        let _ = match self {
            Cell::Null => Ok(()),
            Cell::Int(i) => write!(out, "{i}"),
            Cell::Real(f) if f.is_finite() && *f != 0.0 && !(1e-4..1e15).contains(&f.abs()) => {
                write!(out, "{f:e}")
            }
            Cell::Real(f) => write!(out, "{f}"),
            Cell::Text(s) => {
                out.push_str(s);
                Ok(())
            }
            Cell::Blob(b) => b.iter().try_for_each(|x| write!(out, "{x:02x}")),
        };
    }

    /// A value as SQLite stored it (text that is not UTF-8 is read lossily).
    pub fn from_value(value: ValueRef<'_>) -> Cell {
        match value {
            ValueRef::Null => Cell::Null,
            ValueRef::Integer(i) => Cell::Int(i),
            ValueRef::Real(f) => Cell::Real(f),
            ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
        }
    }

    /// The JSON form (exact numbers; NULL as null).
    pub fn json(&self) -> serde_json::Value {
        match self {
            Cell::Null => serde_json::Value::Null,
            Cell::Int(i) => (*i).into(),
            Cell::Real(f) => serde_json::Number::from_f64(*f)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            Cell::Text(s) => s.clone().into(),
            Cell::Blob(_) => self.exact().into(),
        }
    }
}

/// The result of a query: column names and rows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResultTable {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Rows of values.
    pub rows: Vec<Vec<Cell>>,
}

impl Store {
    /// Runs one query with bound parameters and returns its rows. The SQL must come from
    /// scalelab's own builders or have passed [`crate::query::check_read_only`] on a read-only
    /// connection.
    pub async fn query_table(&self, sql: &str, params: &[Param]) -> Result<ResultTable> {
        let (columns, rows) = self.scan(sql, params, |row| self.cells(row)).await?;
        Ok(ResultTable { columns, rows })
    }

    /// [`Store::query_table`] that reads at most `max_rows` rows, and says whether the query had
    /// more: it is stopped there (its statement reset, the rest never computed), so a query
    /// without end (a recursive CTE) costs `max_rows` rows, not all memory.
    pub async fn query_table_at_most(
        &self,
        sql: &str,
        params: &[Param],
        max_rows: usize,
    ) -> Result<(ResultTable, bool)> {
        let (columns, rows, more) = self
            .scan_at_most(sql, params, max_rows, |row| self.cells(row))
            .await?;
        Ok((ResultTable { columns, rows }, more))
    }

    /// Runs one read-only query with bound parameters and maps each row with `f`, returning
    /// the column names and the mapped rows.
    ///
    /// The rows are read in place, on this thread, from the SQLite connection of one of the
    /// pool's connections, locked for the duration (rusqlite over sqlx's own handle): sqlx's
    /// usual path copies every value of every row and hands the row to another thread, which
    /// made reading a million epoch rows take about 9 s. SQLite works on the calling thread
    /// meanwhile, so call this from a multi-threaded runtime (as the CLI does) and keep `f`
    /// short or expect the read to stay open while it runs (`scalelab sql … | less` holds its
    /// snapshot until the pager has read everything). A statement SQLite does not call
    /// read-only is refused, and one that leaves a transaction open is rolled back and
    /// refused, so the pooled connection goes back as sqlx left it.
    pub async fn scan<T>(
        &self,
        sql: &str,
        params: &[Param],
        f: impl FnMut(&rusqlite::Row<'_>) -> Result<T>,
    ) -> Result<(Vec<String>, Vec<T>)> {
        let (columns, rows, _) = self.scan_at_most(sql, params, usize::MAX, f).await?;
        Ok((columns, rows))
    }

    /// [`Store::scan`] that maps at most `max_rows` rows and then stops the query (one more row
    /// is stepped to learn whether there are more; the statement is dropped, and with it the
    /// rest of the query). The flag says whether rows were left unread.
    pub async fn scan_at_most<T>(
        &self,
        sql: &str,
        params: &[Param],
        max_rows: usize,
        mut f: impl FnMut(&rusqlite::Row<'_>) -> Result<T>,
    ) -> Result<(Vec<String>, Vec<T>, bool)> {
        let values: Vec<Value> = params
            .iter()
            .map(|p| match p {
                Param::Number(n) => Value::Real(*n),
                Param::Text(s) => Value::Text(s.clone()),
            })
            .collect();
        let mut conn = self.pool().acquire().await.map_err(|e| self.err(e))?;
        let mut handle = conn.lock_handle().await.map_err(|e| self.err(e))?;
        let raw = handle.as_raw_handle();
        let read = || -> Result<(Vec<String>, Vec<T>, bool)> {
            let e = |e| self.sql_err(e);
            // SAFETY: `raw` is the open connection behind `handle`, whose lock keeps sqlx's
            // worker thread off it until `handle` is dropped, after this closure returns.
            // rusqlite does not close a connection it did not open (`from_handle`), and the
            // statement prepared here is finalised when `stmt` drops, inside the closure.
            let db = unsafe { rusqlite::Connection::from_handle(raw.as_ptr()) }.map_err(e)?;
            let mut stmt = db.prepare(sql).map_err(e)?;
            if !stmt.readonly() {
                return Err(Error::Query(format!(
                    "refused: SQLite counts this statement as one that may change the database \
                     (as it does PRAGMAs that set a value, `PRAGMA journal_mode` among them); \
                     `scalelab sql` only reads: {sql}"
                )));
            }
            let columns = stmt.column_names().into_iter().map(String::from).collect();
            let mut out = Vec::new();
            let mut more = false;
            let read = (|| {
                let mut rows = stmt.query(rusqlite::params_from_iter(values)).map_err(e)?;
                while let Some(row) = rows.next().map_err(e)? {
                    if out.len() == max_rows {
                        more = true;
                        break;
                    }
                    out.push(f(row)?);
                }
                Ok(())
            })();
            drop(stmt);
            // BEGIN and SAVEPOINT count as read-only: never hand sqlx a connection inside a
            // transaction it does not know of.
            if !db.is_autocommit() {
                let _ = db.execute_batch("ROLLBACK");
                return Err(Error::Query(format!("refused, opens a transaction: {sql}")));
            }
            read.map(|()| (columns, out, more))
        };
        let result = read();
        drop(handle);
        result
    }

    /// Every value of a row read by [`Store::scan`].
    pub fn cells(&self, row: &rusqlite::Row<'_>) -> Result<Vec<Cell>> {
        (0..row.as_ref().column_count())
            .map(|i| {
                row.get_ref(i)
                    .map(Cell::from_value)
                    .map_err(|e| self.sql_err(e))
            })
            .collect()
    }

    /// A one-line error naming this database, for a failure of [`Store::scan`].
    pub fn sql_err(&self, e: rusqlite::Error) -> Error {
        db_error_text(self.path(), &e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::Cell;

    /// Every double reads back the same from its CSV text, and extreme magnitudes are short.
    #[test]
    fn reals_are_exact_and_short() {
        for (v, text) in [
            (1e308, "1e308"),
            (-1.7976931348623157e308, "-1.7976931348623157e308"),
            (1e-300, "1e-300"),
            (2.5e-7, "2.5e-7"),
            (1e16, "1e16"),
            (9999999999999998.0, "9.999999999999998e15"),
            (999999999999999.9, "999999999999999.9"),
            (0.1, "0.1"),
            (0.0001, "0.0001"),
            (0.00001, "1e-5"),
            (3.0, "3"),
            (-0.0, "-0"),
            (0.0, "0"),
            (123456.789, "123456.789"),
            (f64::NAN, "NaN"),
        ] {
            let got = Cell::Real(v).exact();
            assert_eq!(got, text, "{v:?}");
            let back: f64 = got.parse().unwrap();
            if v.is_nan() {
                assert!(back.is_nan());
            } else {
                assert_eq!(back.to_bits(), v.to_bits(), "{v:?} → {got} → {back:?}");
            }
        }
    }
}
