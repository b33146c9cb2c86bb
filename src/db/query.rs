//! Ad-hoc queries: any SELECT's result as a table of dynamically typed values, for `scalelab
//! runs`, `metrics`, `sql` and `export`.

use sqlx::sqlite::SqliteRow;
use sqlx::{Column, Row, SqlSafeStr, TypeInfo, ValueRef};

use super::Store;
use crate::error::Result;
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
    pub fn exact(&self) -> String {
        match self {
            Cell::Null => String::new(),
            Cell::Int(i) => i.to_string(),
            Cell::Real(f) => f.to_string(),
            Cell::Text(s) => s.clone(),
            Cell::Blob(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
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

fn cell(row: &SqliteRow, i: usize) -> Cell {
    let Ok(raw) = row.try_get_raw(i) else {
        return Cell::Null;
    };
    if raw.is_null() {
        return Cell::Null;
    }
    let kind = raw.type_info().name().to_ascii_uppercase();
    match kind.as_str() {
        "INTEGER" | "INT8" | "BIGINT" | "BOOLEAN" => {
            row.try_get::<i64, _>(i).map_or(Cell::Null, Cell::Int)
        }
        "REAL" | "FLOAT" | "DOUBLE" | "NUMERIC" => {
            row.try_get::<f64, _>(i).map_or(Cell::Null, Cell::Real)
        }
        "BLOB" => row.try_get::<Vec<u8>, _>(i).map_or(Cell::Null, Cell::Blob),
        _ => row.try_get::<String, _>(i).map_or(Cell::Null, Cell::Text),
    }
}

impl Store {
    /// Runs one query with bound parameters and returns its rows. The SQL must come from
    /// scalelab's own builders or have passed [`crate::query::check_read_only`] on a read-only
    /// connection.
    pub async fn query_table(&self, sql: &str, params: &[Param]) -> Result<ResultTable> {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()));
        for p in params {
            q = match p {
                Param::Number(n) => q.bind(*n),
                Param::Text(s) => q.bind(s.clone()),
            };
        }
        let rows = q.fetch_all(self.pool()).await.map_err(|e| self.err(e))?;
        let columns = match rows.first() {
            Some(r) => r.columns().iter().map(|c| c.name().to_string()).collect(),
            // No rows: ask SQLite for the statement's columns, so CSV still has its header.
            None => sqlx::Executor::describe(
                self.pool(),
                sqlx::AssertSqlSafe(sql.to_string()).into_sql_str(),
            )
            .await
            .map(|d| d.columns().iter().map(|c| c.name().to_string()).collect())
            .unwrap_or_default(),
        };
        let rows = rows
            .iter()
            .map(|r| (0..r.columns().len()).map(|i| cell(r, i)).collect())
            .collect();
        Ok(ResultTable { columns, rows })
    }
}
