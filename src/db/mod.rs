//! The results database: SQLite through sqlx. One constructor opens it (WAL, foreign keys, busy
//! timeout) and applies `migrations/` (a new file gets their whole schema, [`SCHEMA`], in one
//! transaction); users never migrate by hand. This layer knows nothing of
//! candle: it stores configs as JSON and metrics as numbers.
//!
//! Schema: docs/schema.md.

pub mod metrics;
pub mod query;
pub mod runs;
pub mod sweeps;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteSynchronous};

use crate::error::{Error, Result};

/// The schema that `migrations/` build, as one script (SQLite's own text of each table, index
/// and view, `_sqlx_migrations` included, in the order they were created): what a new database
/// gets in one transaction ([`Store::open`]). A test rebuilds it from the migrations and fails
/// if it differs; `SCALELAB_BLESS_SCHEMA=1 cargo test --lib schema` rewrites it after a new
/// migration.
pub const SCHEMA: &str = include_str!("schema.sql");

/// The migrations in `migrations/`, embedded at build time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// How long a statement waits for another process's write lock before giving up, unless the
/// environment variable `SCALELAB_BUSY_TIMEOUT` gives another number of seconds.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Each connection's page cache (`PRAGMA cache_size`, negative: KiB): 32 MiB instead of
/// SQLite's 2 MiB, taken only as pages are read. With 2 MiB, registering a 100,000-cell sweep
/// spilled its transaction's pages to the log and read them back (6.7 s; 3.6 s with this
/// cache); statement journals and sorts stay in memory too (`temp_store = memory`).
const CACHE_SIZE: &str = "-32768";

fn busy_timeout() -> Duration {
    busy_timeout_from(std::env::var("SCALELAB_BUSY_TIMEOUT").ok().as_deref())
}

/// The longest wait SQLite takes (`sqlite3_busy_timeout` counts milliseconds in an `int`):
/// about 24.8 days. A longer `SCALELAB_BUSY_TIMEOUT` means the same, not a crash.
const BUSY_TIMEOUT_MAX_S: f64 = i32::MAX as f64 / 1000.0;

/// [`busy_timeout`] for the variable's text: a number of seconds, at most
/// [`BUSY_TIMEOUT_MAX_S`]; anything else (negative, not a number) means [`BUSY_TIMEOUT`].
fn busy_timeout_from(text: Option<&str>) -> Duration {
    text.and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| !s.is_nan() && *s >= 0.0)
        .map_or(BUSY_TIMEOUT, |s| {
            Duration::from_secs_f64(s.min(BUSY_TIMEOUT_MAX_S))
        })
}

/// A run's state (stored lowercase in `runs.state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RunStatus {
    /// Waiting to be trained.
    Pending,
    /// Claimed by a process that sends heartbeats.
    Running,
    /// Trained to the end of its budget.
    Completed,
    /// Stopped because the loss blew up: a result, never retried.
    Diverged,
    /// An error, retried up to a limit; this state is final once the limit is reached.
    Failed,
}

impl RunStatus {
    /// Every state, in display order.
    pub const ALL: [RunStatus; 5] = [
        RunStatus::Pending,
        RunStatus::Running,
        RunStatus::Completed,
        RunStatus::Diverged,
        RunStatus::Failed,
    ];

    /// The word stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Diverged => "diverged",
            RunStatus::Failed => "failed",
        }
    }

    /// How many runs `counts` (as [`Store::state_counts`] gives them) has in this state.
    pub fn count_in(self, counts: &[(RunStatus, i64)]) -> i64 {
        counts
            .iter()
            .filter(|(s, _)| *s == self)
            .map(|(_, n)| *n)
            .sum()
    }

    /// Whether nothing more will happen to the run.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Diverged | RunStatus::Failed
        )
    }
}

impl FromStr for RunStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        RunStatus::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                Error::config(
                    "state",
                    format!("unknown state {s:?} (pending, running, completed, diverged, failed)"),
                )
            })
    }
}

/// An open results database.
#[derive(Clone, Debug)]
pub struct Store {
    /// Readers' connections, opened as reads need them.
    pool: SqlitePool,
    /// The one connection every write of this process goes through (a pool of one; for a
    /// read-only store, the readers' pool). One connection prepares each write statement once
    /// and reads the schema once; with writes spread over the readers' four connections, a
    /// two-job quickstart opened all four, each reading the schema and preparing the same
    /// claims, releases and epoch inserts again.
    writer: SqlitePool,
    path: PathBuf,
    /// Taken by every write of this process ([`Store::begin_write`], heartbeats, retries, stored
    /// fits, cutting the log), so that its writers queue here, each woken the moment the one
    /// before commits.
    /// Left to SQLite, a writer that finds the lock taken sleeps 1, 2, 5, 10, 15 ms… between
    /// tries (its busy handler): claims waited 3–8 ms behind the writer's bursts, one of them
    /// after the sweep's last run. Other processes' writers still meet that handler.
    gate: Arc<tokio::sync::Mutex<()>>,
}

/// What a database file holds ([`Store::holds`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Holds {
    /// No table: a new database.
    Nothing,
    /// scalelab's tables.
    Scalelab,
}

/// A write transaction of this process (see [`Store::begin_write`]): the connection inside
/// `BEGIN IMMEDIATE`, and this process's write gate until it commits or is dropped (which rolls
/// it back).
pub struct WriteTx {
    // Declared first, so dropped first: the rollback is queued before the gate opens.
    tx: sqlx::Transaction<'static, sqlx::Sqlite>,
    _gate: tokio::sync::OwnedMutexGuard<()>,
}

impl WriteTx {
    /// Commits the transaction, then opens the gate.
    pub async fn commit(self) -> std::result::Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::SqliteConnection;
    fn deref(&self) -> &sqlx::SqliteConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut sqlx::SqliteConnection {
        &mut self.tx
    }
}

/// An error unless `path` is a file: for the commands that read what a sweep stored (and may
/// add to it, as `fit` and `report` do), where a mistyped `--db` must not leave an empty new
/// database behind.
pub fn require_existing(path: &Path) -> Result<()> {
    if path.is_file() {
        Ok(())
    } else if path.is_dir() {
        Err(Error::Db(format!(
            "{} is a directory, not a database file (give --db a file path)",
            path.display()
        )))
    } else {
        Err(Error::Db(format!(
            "no database at {} (run a sweep first: scalelab run SWEEP.toml, or give --db)",
            path.display()
        )))
    }
}

/// Creates an empty file at `path` if nothing is there, and says whether it did (SQLite takes
/// an empty file as a new database).
///
/// `scalelab run` trains cells ahead of their claim (a head start) only on a database it creates
/// this way. A head start writes nothing until its cell is claimed, so a run that kills the
/// process there (the out-of-memory killer, an abort) leaves no trace; were the next `run` to
/// train it ahead again, every launch would die the same way and no death would ever be
/// counted. The file is created before any cell trains, so the next `run` finds it and trains
/// every run under its claim, where a death is seen, the run requeued as an orphan and marked as
/// begun before it trains again, and its deaths counted until it fails for good.
pub fn create_new_file(path: &Path) -> bool {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .is_ok()
}

impl Store {
    /// Opens (creating if needed) the database at `path` for reading and writing, and applies
    /// the migrations.
    pub async fn open(path: &Path) -> Result<Store> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && !parent.is_dir()
        {
            return Err(Error::Db(format!(
                "cannot create database {}: directory {} does not exist",
                path.display(),
                parent.display()
            )));
        }
        if path.is_dir() {
            return Err(Error::Db(format!(
                "{} is a directory, not a database file (give --db a file path)",
                path.display()
            )));
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .pragma("cache_size", CACHE_SIZE)
            .pragma("temp_store", "memory")
            .busy_timeout(busy_timeout());
        let acquire_timeout = busy_timeout() + Duration::from_secs(5);
        // The writer connects now (so that a path that cannot be opened is named here), and
        // migrates; readers connect when first needed, to the migrated schema.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(acquire_timeout)
            .connect_with(opts.clone())
            .await
            .map_err(|e| db_error(path, e))?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(acquire_timeout)
            .connect_lazy_with(opts);
        let store = Store {
            pool,
            writer,
            path: path.to_path_buf(),
            gate: Arc::default(),
        };
        store.holds().await?;
        store.ensure_wal().await?;
        // A new (empty) file gets the whole schema in one transaction; an existing one is
        // upgraded by the migrations it lacks (below, which then find nothing to apply on a new
        // one).
        store
            .create_schema_if_empty()
            .await
            .map_err(|e| db_error(path, e))?;
        // Two processes may create the same new database at once: the loser of the race sees
        // "table already exists" (the winner's migration committed meanwhile) and, on retrying,
        // finds the migration applied.
        let mut tries = 0;
        loop {
            match MIGRATOR.run(&store.writer).await {
                Ok(()) => break,
                // A migration this build does not have: the file is from a newer scalelab.
                Err(sqlx::migrate::MigrateError::VersionMissing(v)) => {
                    let known = MIGRATOR.iter().map(|m| m.version).max();
                    return Err(Error::Db(format!(
                        "{} was written by a newer scalelab (schema version {v}; this one knows \
                         up to {}): use that version, or another --db",
                        path.display(),
                        known.unwrap_or(0)
                    )));
                }
                Err(_) if tries < 5 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100 * tries)).await;
                }
                Err(sqlx::migrate::MigrateError::Execute(e)) => return Err(db_error(path, e)),
                Err(other) => {
                    return Err(Error::Db(format!(
                        "{}: migration failed: {other}",
                        path.display()
                    )));
                }
            }
        }
        Ok(store)
    }

    /// Creates the schema of every migration in `migrations/` at once on a database that holds
    /// nothing yet, recording each migration as applied, with its checksum, in
    /// `_sqlx_migrations` as sqlx does; returns whether it did. Does nothing to a database with
    /// anything in it.
    ///
    /// Applying the migrations one by one on a new file took 14 ms (median) of a two-job
    /// quickstart's main thread, while its first cells trained ahead on both cores, most of it
    /// in the `ALTER TABLE`s (SQLite reparses the whole schema at each); 6 ms this way
    /// (docs/performance.md, "A new database's schema in one step"). The script is
    /// [`SCHEMA`]; a test checks that it builds exactly what the migrations build.
    /// A file found empty is checked again under the write lock (`BEGIN IMMEDIATE`): a second
    /// process creating the same file meanwhile waits, then finds the schema there. Any other
    /// file is left after one read, without the lock.
    async fn create_schema_if_empty(&self) -> std::result::Result<bool, sqlx::Error> {
        const EMPTY: &str = "SELECT NOT EXISTS (SELECT 1 FROM sqlite_master)";
        let started = std::time::Instant::now();
        let mut conn = self.writer.acquire().await?;
        // A file with anything in it (every open but a new file's) is left without taking the
        // write lock, which another process's sweep may hold.
        let empty: bool = sqlx::query_scalar(EMPTY).fetch_one(&mut *conn).await?;
        if !empty {
            return Ok(false);
        }
        sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        let created = async {
            let empty: bool = sqlx::query_scalar(EMPTY).fetch_one(&mut *conn).await?;
            if !empty {
                return Ok(false);
            }
            sqlx::raw_sql(SCHEMA).execute(&mut *conn).await?;
            let took = i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX);
            for m in MIGRATOR.iter() {
                sqlx::query(
                    "INSERT INTO _sqlx_migrations \
                     (version, description, success, checksum, execution_time) \
                     VALUES (?, ?, TRUE, ?, ?)",
                )
                .bind(m.version)
                .bind(&*m.description)
                .bind(&*m.checksum)
                .bind(took)
                .execute(&mut *conn)
                .await?;
            }
            Ok(true)
        }
        .await;
        let end = match created {
            Ok(true) => "COMMIT",
            _ => "ROLLBACK",
        };
        match (sqlx::raw_sql(end).execute(&mut *conn).await, created) {
            (_, Err(e)) | (Err(e), Ok(_)) => Err(e),
            (Ok(_), Ok(created)) => Ok(created),
        }
    }

    /// What the file holds, read before anything is written to it: nothing (a new database,
    /// for [`Store::open`]; nothing to read, for [`Store::open_read_only`]) or scalelab's tables
    /// (`runs`, `sweeps`, `sweep_runs`, and the migration history with scalelab's first
    /// migration in it). Another application's SQLite database is refused in one line.
    ///
    /// Without this, such a file was switched to WAL mode and given a `_sqlx_migrations` table,
    /// and then either failed part-way ("table runs already exists") or, holding no `runs`
    /// table, silently received all of scalelab's tables; the read-only commands failed on
    /// the first table it lacked ("no such table: sweeps").
    async fn holds(&self) -> Result<Holds> {
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
             ORDER BY name",
        )
        .fetch_all(&self.writer)
        .await
        .map_err(|e| db_error(&self.path, e))?;
        if tables.is_empty() {
            return Ok(Holds::Nothing);
        }
        // Scalelab's first migration made these tables and recorded itself; whether its text is
        // the one this build carries is the migrator's to check (it names a mismatch), and
        // reading needs no such check.
        let has = |name: &str| tables.iter().any(|t| t == name);
        let ours = if ["runs", "sweeps", "sweep_runs", "_sqlx_migrations"]
            .iter()
            .all(|t| has(t))
        {
            let first = MIGRATOR.iter().next().map_or(1, |m| m.version);
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM _sqlx_migrations WHERE version = ?")
                .bind(first)
                .fetch_one(&self.writer)
                .await
                .map_err(|e| db_error(&self.path, e))?
                > 0
        } else {
            false
        };
        if ours {
            return Ok(Holds::Scalelab);
        }
        const SHOWN: usize = 5;
        let mut named = tables
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if tables.len() > SHOWN {
            named.push_str(&format!(" and {} more", tables.len() - SHOWN));
        }
        Err(Error::Db(format!(
            "{} is not a scalelab database (it holds another application's tables: {named}); \
             left unchanged: give --db another file",
            self.path.display()
        )))
    }

    /// Puts the database in WAL mode (a permanent setting of the file) unless it already is.
    ///
    /// Not a per-connection pragma: switching the journal mode needs an exclusive lock that
    /// SQLite's busy timeout does not wait for, so a `journal_mode = WAL` on every new connection
    /// failed at once, as "database is locked", when another process opened the same file at the
    /// same moment. Here the mode is read first, and a switch that finds the file busy is
    /// retried within the busy timeout.
    async fn ensure_wal(&self) -> Result<()> {
        let started = std::time::Instant::now();
        loop {
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(&self.writer)
                .await
                .map_err(|e| db_error(&self.path, e))?;
            if mode.eq_ignore_ascii_case("wal") {
                return Ok(());
            }
            let switched = sqlx::query_scalar::<_, String>("PRAGMA journal_mode = WAL")
                .fetch_one(&self.writer)
                .await;
            let busy = match &switched {
                Ok(m) if m.eq_ignore_ascii_case("wal") => return Ok(()),
                Ok(_) => true,
                Err(e) => e.to_string().to_lowercase().contains("locked"),
            };
            if !busy || started.elapsed() >= busy_timeout() {
                return Err(match switched {
                    Err(e) => db_error(&self.path, e),
                    Ok(m) => Error::Db(format!(
                        "database {}: cannot switch to WAL journal mode (still {m})",
                        self.path.display()
                    )),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Opens an existing database read-only (no migrations, no writes possible): for queries
    /// that must not change anything.
    pub async fn open_read_only(path: &Path) -> Result<Store> {
        require_existing(path)?;
        let connect = |immutable: bool| {
            let opts = SqliteConnectOptions::new()
                .filename(path)
                .read_only(true)
                .immutable(immutable)
                .foreign_keys(true)
                .pragma("cache_size", CACHE_SIZE)
                .busy_timeout(busy_timeout());
            SqlitePoolOptions::new()
                .max_connections(2)
                .connect_with(opts)
        };
        let probe = "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'runs'";
        let first = match connect(false).await {
            Ok(pool) => match sqlx::query(probe).fetch_optional(&pool).await {
                Ok(_) => Ok(pool),
                Err(e) => {
                    pool.close().await;
                    Err(e)
                }
            },
            Err(e) => Err(e),
        };
        let pool = match first {
            Ok(pool) => pool,
            // A WAL database in a directory we cannot write to cannot create its shared-memory
            // file (the connection or its first read fails). Nobody can be writing to it then;
            // with no write-ahead log beside it (scalelab leaves none once closed) the file holds
            // everything, and it is safe to read as immutable. A log with content would be
            // skipped by such a read, so that is refused by name instead.
            Err(e) if e.to_string().to_lowercase().contains("readonly") => {
                let mut wal = path.as_os_str().to_owned();
                wal.push("-wal");
                let wal = PathBuf::from(wal);
                if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
                    return Err(Error::Db(format!(
                        "cannot read {}: its write-ahead log {} holds changes, and reading them \
                         needs write access to the directory (or open it once as its owner, \
                         which folds the log in)",
                        path.display(),
                        wal.display()
                    )));
                }
                connect(true).await.map_err(|e| db_error(path, e))?
            }
            Err(e) => return Err(db_error(path, e)),
        };
        let store = Store {
            writer: pool.clone(),
            pool,
            path: path.to_path_buf(),
            gate: Arc::default(),
        };
        // A file that is not a scalelab database (or not SQLite at all) is named now.
        if store.holds().await? == Holds::Nothing {
            return Err(Error::Db(format!(
                "{} is not a scalelab database (no runs table)",
                path.display()
            )));
        }
        Ok(store)
    }

    /// The readers' connection pool, for the query modules. Writes go through
    /// [`Store::begin_write`] or `Store::write_gate` and `Store::write_pool`.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The writer's connection, for a write outside a transaction: taken only while holding
    /// [`Store::write_gate`].
    pub(crate) fn write_pool(&self) -> &SqlitePool {
        &self.writer
    }

    /// Begins a write transaction that takes the write lock at once (`BEGIN IMMEDIATE`), so it
    /// waits for other writers (this process's at its write gate, other processes' up to the
    /// busy timeout) instead of failing when it upgrades a read to a write.
    ///
    /// Holds the gate until the transaction ends: a task holding a [`WriteTx`] must not wait
    /// for another write of this store.
    pub async fn begin_write(&self) -> Result<WriteTx> {
        let gate = self.gate.clone().lock_owned().await;
        let tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| self.err(e))?;
        Ok(WriteTx { tx, _gate: gate })
    }

    /// Waits for this process's write gate (see [`Store::begin_write`]), for a write outside a
    /// transaction.
    pub(crate) async fn write_gate(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.gate.lock().await
    }

    /// Runs `f` inside a write transaction (see [`Store::begin_write`]) and commits it; an
    /// error from `f` rolls it back.
    pub(crate) async fn in_write_tx<T>(
        &self,
        f: impl AsyncFnOnce(&mut sqlx::SqliteConnection) -> Result<T>,
    ) -> Result<T> {
        let mut tx = self.begin_write().await?;
        let out = f(&mut tx).await?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(out)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Maps a sqlx error to a one-line message naming this database.
    pub fn err(&self, e: sqlx::Error) -> Error {
        db_error(&self.path, e)
    }

    /// Copies what the write-ahead log holds into the database file, as far as no reader
    /// prevents it (`PRAGMA wal_checkpoint(PASSIVE)`). Best effort: a failure leaves the log for
    /// SQLite's next checkpoint.
    pub async fn checkpoint(&self) {
        let _ = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&self.pool)
            .await;
    }

    /// Copies the whole write-ahead log into the database file and cuts the log to zero bytes
    /// (`PRAGMA wal_checkpoint(TRUNCATE)`), without waiting for any other connection: where a
    /// reader or writer is in the way it gives up at once. Returns whether the log was cut
    /// (false when something was in the way or failed; nothing is lost either way).
    ///
    /// The scheduler has it called when nothing is left to claim, while the last runs train.
    /// The checkpoint SQLite makes when the last connection closes then has only the last runs'
    /// pages to copy, and deleting the log frees a few kilobytes instead of megabytes: on a
    /// file system mounted with `discard`, freeing a file costs about 2 ms per megabyte.
    pub async fn truncate_log(&self) -> bool {
        // The checkpoint holds the write lock while it copies.
        let _gate = self.write_gate().await;
        let Ok(mut conn) = self.writer.acquire().await else {
            return false;
        };
        let done: std::result::Result<bool, sqlx::Error> = async {
            sqlx::query("PRAGMA busy_timeout = 0")
                .execute(&mut *conn)
                .await?;
            // (busy, frames in the log, frames copied): busy = 1 when it gave up.
            let checkpointed: std::result::Result<(i64, i64, i64), sqlx::Error> =
                sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                    .fetch_one(&mut *conn)
                    .await;
            // Back to the timeout every connection of the pool opens with (a number, not text).
            let waits = busy_timeout().as_millis();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "PRAGMA busy_timeout = {waits}"
            )))
            .execute(&mut *conn)
            .await?;
            Ok(checkpointed?.0 == 0)
        }
        .await;
        match done {
            Ok(cut) => cut,
            Err(_) => {
                // Not back in the pool with a busy timeout of zero: a later write on it would
                // fail at once where another process holds the lock.
                let _ = sqlx::Connection::close(conn.detach()).await;
                false
            }
        }
    }

    /// Closes every connection (checkpointing the WAL where possible).
    pub async fn close(&self) {
        // The writer last: the last connection to close folds the log into the file.
        self.pool.close().await;
        self.writer.close().await;
    }
}

/// Splits `items` for multi-row statements of exactly `size` rows each, the last chunk padded
/// with `None`: rows the statement must skip (bound as NULL keys, which match no row).
///
/// A multi-row statement's text depends on its number of rows, so with one size its text is
/// prepared once on the writer's connection and serves every burst. A chunk of any size was a
/// statement prepared anew at every burst (about 0.3 ms of a core's time each); chunks in
/// falling powers of two (300 rows: 256, 32, 8, 4) were prepared once per size, and a two-job
/// quickstart's bursts still spent 3–6 ms on each size met for the first time.
pub(crate) fn padded_chunks<T>(
    items: &[T],
    size: usize,
) -> impl Iterator<Item = impl Iterator<Item = Option<&T>>> {
    assert!(size > 0, "chunks of 0 rows");
    items.chunks(size).map(move |chunk| {
        let pad = size - chunk.len();
        chunk.iter().map(Some).chain(std::iter::repeat_n(None, pad))
    })
}

/// A one-line message for a database error, with the usual causes spelled out.
pub fn db_error(path: &Path, e: sqlx::Error) -> Error {
    db_error_text(path, &e.to_string())
}

/// Whether `e` is SQLite's "attempt to write a readonly database" (`SQLITE_READONLY` and its
/// extended codes): the file, its directory or the connection does not allow writing.
pub fn is_read_only_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => d
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(|c| c & 0xff == 8),
        _ => false,
    }
}

/// How [`db_error`] begins its message for a database that cannot be written.
pub(crate) fn read_only_message(path: &Path) -> String {
    format!("database {} is read-only", path.display())
}

/// Whether `e` is [`db_error`]'s error for `path` being read-only.
pub(crate) fn is_read_only_at(e: &Error, path: &Path) -> bool {
    matches!(e, Error::Db(m) if m.starts_with(&read_only_message(path)))
}

/// [`db_error`] for an error already turned into text (from rusqlite's bulk reads).
pub(crate) fn db_error_text(path: &Path, text: &str) -> Error {
    let lower = text.to_lowercase();
    let p = path.display();
    let msg = if lower.contains("readonly") || lower.contains("read-only") {
        format!(
            "{} (check the file's and its directory's permissions): {text}",
            read_only_message(path)
        )
    } else if lower.contains("database is locked") || lower.contains("busy") {
        format!(
            "database {p} is locked by another process (waited {:.0} s): {text}",
            busy_timeout().as_secs_f64()
        )
    } else if lower.contains("unable to open") {
        format!("cannot open database {p}: {text}")
    } else if lower.contains("not a database") || lower.contains("malformed") {
        format!("{p} is not a valid SQLite database: {text}")
    } else {
        format!("database {p}: {text}")
    };
    Error::Db(msg.replace('\n', " "))
}

#[cfg(test)]
mod busy_timeout_tests {
    use super::*;

    #[test]
    fn the_busy_timeout_is_seconds_capped_at_what_sqlite_takes() {
        assert_eq!(busy_timeout_from(None), BUSY_TIMEOUT);
        assert_eq!(busy_timeout_from(Some("2.5")), Duration::from_millis(2500));
        assert_eq!(busy_timeout_from(Some("0")), Duration::ZERO);
        for bad in ["-1", "abc", "", "NaN"] {
            assert_eq!(busy_timeout_from(Some(bad)), BUSY_TIMEOUT, "{bad:?}");
        }
        // Beyond SQLite's int of milliseconds (which panicked in sqlx, or in Duration for 1e300):
        // the longest wait it takes.
        for huge in ["1e9", "1e300", "inf"] {
            let t = busy_timeout_from(Some(huge));
            assert_eq!(t.as_millis(), i32::MAX as u128, "{huge}");
        }
    }
}

#[cfg(test)]
mod chunk_tests {
    use super::padded_chunks;

    #[test]
    fn chunks_are_all_one_size_the_last_padded_and_cover_every_item_in_order() {
        let items: Vec<u32> = (0..300).collect();
        let chunks: Vec<Vec<Option<&u32>>> =
            padded_chunks(&items, 128).map(|c| c.collect()).collect();
        assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), [128; 3]);
        // 300 = 128 + 128 + 44: the last chunk's other 84 slots are padding, at its end.
        assert_eq!(chunks[2].iter().filter(|r| r.is_none()).count(), 84);
        assert!(chunks[2][..44].iter().all(Option::is_some));
        let joined: Vec<u32> = chunks.iter().flatten().flatten().map(|&&v| v).collect();
        assert_eq!(joined, items);
        // Exactly full: no padding; one item: one chunk; none: no statement at all.
        assert!(
            padded_chunks(&items[..256], 128)
                .flatten()
                .all(|r| r.is_some())
        );
        assert_eq!(padded_chunks(&items[..1], 4).count(), 1);
        assert_eq!(padded_chunks(&items[..0], 4).count(), 0);
    }
}

#[cfg(test)]
mod schema_tests {
    use super::*;
    use sqlx::{Connection, SqliteConnection};

    /// Every table, index and view (their type, name, table and SQLite's text of them).
    async fn master(conn: &mut SqliteConnection) -> Vec<(String, String, String, Option<String>)> {
        sqlx::query_as("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")
            .fetch_all(conn)
            .await
            .unwrap()
    }

    /// The migrations recorded as applied (version, description, success, checksum).
    async fn applied(conn: &mut SqliteConnection) -> Vec<(i64, String, bool, Vec<u8>)> {
        sqlx::query_as(
            "SELECT version, description, success, checksum FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(conn)
        .await
        .unwrap()
    }

    /// The one-step script of a database's schema: each statement SQLite keeps, in the order
    /// they were created, under a header.
    async fn script(conn: &mut SqliteConnection) -> String {
        let statements: Vec<String> = sqlx::query_scalar(
            "SELECT sql FROM sqlite_master \
             WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid",
        )
        .fetch_all(conn)
        .await
        .unwrap();
        let mut text = String::from(
            "-- The schema migrations/ build, in one script: what a new database gets in one\n\
             -- transaction (src/db/mod.rs, SCHEMA). Generated from the migrations by\n\
             -- `SCALELAB_BLESS_SCHEMA=1 cargo test --lib schema`; do not edit by hand.\n",
        );
        for s in statements {
            text.push('\n');
            text.push_str(&s);
            text.push_str(";\n");
        }
        text
    }

    async fn connect(path: &Path) -> SqliteConnection {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        SqliteConnection::connect_with(&opts).await.unwrap()
    }

    /// A new database gets in one transaction exactly the schema the migrations build one by
    /// one, and the same record of them: the migrations then find nothing to apply, and a later
    /// migration applies to it as to any other. A database with anything in it is left to the
    /// migrations.
    #[tokio::test]
    async fn a_new_database_gets_in_one_step_the_schema_the_migrations_build() {
        let dir = tempfile::tempdir().unwrap();
        let migrated = dir.path().join("migrated.db");
        let mut a = connect(&migrated).await;
        MIGRATOR.run(&mut a).await.unwrap();
        let text = script(&mut a).await;
        if std::env::var("SCALELAB_BLESS_SCHEMA").as_deref() == Ok("1") {
            let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/db/schema.sql");
            std::fs::write(file, &text).unwrap();
            // This build holds the script as it was: the next build checks the new one.
            eprintln!("rewrote src/db/schema.sql: run the test again (without the variable)");
            return;
        } else {
            assert!(
                text == SCHEMA,
                "src/db/schema.sql is not the schema migrations/ build: rewrite it with \
                 `SCALELAB_BLESS_SCHEMA=1 cargo test --lib schema`\n--- built:\n{text}"
            );
        }

        let new = dir.path().join("new.db");
        let store = Store::open(&new).await.unwrap();
        let mut b = connect(&new).await;
        assert_eq!(master(&mut b).await, master(&mut a).await);
        assert_eq!(applied(&mut b).await, applied(&mut a).await);
        assert_eq!(applied(&mut a).await.len(), MIGRATOR.iter().count());
        // In one step: one transaction, so every migration carries the same time (applied one
        // by one, each has its own).
        let times: Vec<i64> = sqlx::query_scalar("SELECT execution_time FROM _sqlx_migrations")
            .fetch_all(&mut b)
            .await
            .unwrap();
        assert!(times.iter().all(|&t| t == times[0] && t > 0), "{times:?}");
        // Not again: the database now holds the schema.
        assert!(!store.create_schema_if_empty().await.unwrap());
        store.close().await;
        drop(Store::open(&new).await.unwrap());
        assert_eq!(master(&mut b).await, master(&mut a).await);

        // A database of an older scalelab (the first migration only) gets the others.
        let old = dir.path().join("old.db");
        let mut c = connect(&old).await;
        MIGRATOR.run_to(1, &mut c).await.unwrap();
        assert_eq!(applied(&mut c).await.len(), 1);
        Store::open(&old).await.unwrap().close().await;
        assert_eq!(master(&mut c).await, master(&mut a).await);
        let versions = |v: Vec<(i64, String, bool, Vec<u8>)>| -> Vec<i64> {
            v.into_iter().map(|r| r.0).collect()
        };
        assert_eq!(
            versions(applied(&mut c).await),
            versions(applied(&mut a).await)
        );
        // A later migration applies to the file made in one step as to the migrated one (sqlx
        // first checks the checksums recorded for the others).
        let mut later: Vec<sqlx::migrate::Migration> = MIGRATOR.iter().cloned().collect();
        later.push(sqlx::migrate::Migration::new(
            9000,
            "later".into(),
            sqlx::migrate::MigrationType::Simple,
            sqlx::SqlSafeStr::into_sql_str("ALTER TABLE runs ADD COLUMN later REAL;"),
            false,
        ));
        let later = sqlx::migrate::Migrator::with_migrations(later);
        for conn in [&mut a, &mut b] {
            later.run(&mut *conn).await.unwrap();
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pragma_table_info('runs') WHERE name = 'later'",
            )
            .fetch_one(&mut *conn)
            .await
            .unwrap();
            assert_eq!(n, 1);
        }
        assert_eq!(master(&mut b).await, master(&mut a).await);
        for conn in [a, b, c] {
            conn.close().await.unwrap();
        }
    }

    /// Processes that create the same new file at the same moment all open it: one creates the
    /// schema, the others wait for its transaction and find the schema there (each opens its own
    /// connections, as another process would).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn openers_racing_on_a_new_file_all_get_the_one_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raced.db");
        for round in 0..5 {
            let path = path.with_extension(format!("{round}.db"));
            let barrier = Arc::new(tokio::sync::Barrier::new(4));
            let openers: Vec<_> = (0..4)
                .map(|_| {
                    let (path, barrier) = (path.clone(), barrier.clone());
                    tokio::spawn(async move {
                        barrier.wait().await;
                        let store = Store::open(&path).await?;
                        store.close().await;
                        Ok::<_, Error>(())
                    })
                })
                .collect();
            for opener in openers {
                opener.await.unwrap().unwrap();
            }
            let mut conn = connect(&path).await;
            let versions: Vec<i64> =
                sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
                    .fetch_all(&mut conn)
                    .await
                    .unwrap();
            let all: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
            assert_eq!(versions, all, "round {round}");
            assert_eq!(script(&mut conn).await, SCHEMA, "round {round}");
            conn.close().await.unwrap();
        }
    }
}
