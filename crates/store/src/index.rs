//! The index of stored pictures (one row per stored object) and the persisted sequence
//! counters, on SQLite or PostgreSQL with one migration set (`crates/store/migrations`).
//!
//! Queries are plain portable SQL with `$N` placeholders, which both backends accept, run
//! through the runtime query API; [`with_db!`] expands one body for each backend's pool.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::{Error, Result};

/// The embedded migrations, applied by [`Index::open`].
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Rows per page when a list asks for no limit.
pub const DEFAULT_LIST_LIMIT: u32 = 50;
/// Most rows one list call returns.
pub const MAX_LIST_LIMIT: u32 = 1000;
/// Connections in the pool (SQLite serializes writers anyway; readers run beside them in WAL).
pub const MAX_CONNECTIONS: u32 = 8;
/// How long a SQLite writer waits for another writer before failing with "database is locked".
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for a free connection from the pool.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts at inserting a row when a freshly made id collides (another node, same ms).
const ID_ATTEMPTS: usize = 4;

const COLUMNS: &str =
    "id, domain, app, stream, job, time_ms, sequence, mode, storage, object_key, size, width, height, format";

/// How a picture is kept.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One object per stream (and template), replaced by each new picture.
    Overwrite,
    /// A new object per picture, numbered.
    Sequence,
}

impl Mode {
    /// The name stored in the index and used in the API: `overwrite` or `sequence`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Overwrite => "overwrite",
            Mode::Sequence => "sequence",
        }
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "overwrite" => Ok(Mode::Overwrite),
            "sequence" => Ok(Mode::Sequence),
            other => Err(format!(
                "unknown mode {other:?} (expected overwrite or sequence)"
            )),
        }
    }
}

/// A picture that was just stored, to be indexed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NewSnapshot {
    /// Virtual host.
    pub domain: String,
    /// Application name.
    pub app: String,
    /// Stream name.
    pub stream: String,
    /// The template name (automatic snapshots) or job id (pull jobs).
    pub job: String,
    /// Capture time, Unix milliseconds.
    pub time_ms: i64,
    /// Sequence number (sequence mode).
    pub sequence: Option<u64>,
    /// Overwrite or sequence.
    pub mode: Mode,
    /// Storage location name.
    pub storage: String,
    /// Object key inside the location.
    pub key: String,
    /// Bytes.
    pub size: u64,
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// `jpg` or `png`.
    pub format: String,
}

/// An indexed picture. Serializes with the API's field names, `time` (RFC 3339) beside
/// `time_ms`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRow {
    /// Time-ordered unique id.
    pub id: String,
    /// Virtual host.
    pub domain: String,
    /// Application name.
    pub app: String,
    /// Stream name.
    pub stream: String,
    /// Template name or job id.
    pub job: String,
    /// Capture time, Unix milliseconds.
    pub time_ms: i64,
    /// Sequence number (sequence mode).
    pub sequence: Option<u64>,
    /// Overwrite or sequence.
    pub mode: Mode,
    /// Storage location name.
    pub storage: String,
    /// Object key inside the location.
    pub key: String,
    /// Bytes.
    pub size: u64,
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// `jpg` or `png`.
    pub format: String,
}

impl SnapshotRow {
    /// The capture time as RFC 3339 text.
    pub fn time(&self) -> String {
        crate::time::ms_to_rfc3339(self.time_ms)
    }
}

impl Serialize for SnapshotRow {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        RowJson::from(self).serialize(s)
    }
}

// Both `SnapshotRow`'s `Serialize` and its OpenAPI schema come from this one struct, so the
// documented shape is the real one.
/// A stored picture as the index keeps it, with its capture time both as RFC 3339 (`time`) and
/// as Unix milliseconds (`time_ms`).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = SnapshotRow)]
struct RowJson<'a> {
    /// Time-ordered unique id.
    id: &'a str,
    /// Virtual host.
    domain: &'a str,
    /// Application name.
    app: &'a str,
    /// Stream name.
    stream: &'a str,
    /// Template name or job id.
    job: &'a str,
    /// Capture time, RFC 3339 (UTC, milliseconds).
    time: String,
    /// Capture time, Unix milliseconds.
    time_ms: i64,
    /// Sequence number (sequence mode).
    sequence: Option<u64>,
    /// Overwrite or sequence.
    mode: Mode,
    /// Storage location name.
    storage: &'a str,
    /// Object key inside the location.
    key: &'a str,
    /// Bytes.
    size: u64,
    /// Pixels.
    width: u32,
    /// Pixels.
    height: u32,
    /// `jpg` or `png`.
    format: &'a str,
}

impl<'a> From<&'a SnapshotRow> for RowJson<'a> {
    fn from(r: &'a SnapshotRow) -> Self {
        RowJson {
            id: &r.id,
            domain: &r.domain,
            app: &r.app,
            stream: &r.stream,
            job: &r.job,
            time: r.time(),
            time_ms: r.time_ms,
            sequence: r.sequence,
            mode: r.mode,
            storage: &r.storage,
            key: &r.key,
            size: r.size,
            width: r.width,
            height: r.height,
            format: &r.format,
        }
    }
}

impl utoipa::PartialSchema for SnapshotRow {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <RowJson<'_> as utoipa::PartialSchema>::schema()
    }
}

impl utoipa::ToSchema for SnapshotRow {
    fn name() -> std::borrow::Cow<'static, str> {
        <RowJson<'_> as utoipa::ToSchema>::name()
    }

    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <RowJson<'_> as utoipa::ToSchema>::schemas(schemas)
    }
}

/// What [`Index::list`] returns. Every field narrows the result; `None` means any.
#[derive(Deserialize, Clone, Debug, Default)]
pub struct ListFilter {
    /// Virtual host.
    pub domain: Option<String>,
    /// Application name.
    pub app: Option<String>,
    /// Stream name.
    pub stream: Option<String>,
    /// Template name or job id.
    pub job: Option<String>,
    /// Overwrite or sequence.
    pub mode: Option<Mode>,
    /// Earliest capture time, inclusive (Unix ms).
    pub from_ms: Option<i64>,
    /// Latest capture time, inclusive (Unix ms).
    pub to_ms: Option<i64>,
    /// Rows per page: [`DEFAULT_LIST_LIMIT`] when absent, at most [`MAX_LIST_LIMIT`].
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only the rows one account may see (never from a request's query).
    #[serde(skip)]
    pub visible: Option<Visible>,
}

/// The rows one account may see: those in its domains, and those of `streams` in `in_domain`
/// (its pull jobs' streams, in the jobs' domain).
#[derive(Clone, Debug, Default)]
pub struct Visible {
    /// Its domains.
    pub domains: Vec<String>,
    /// A domain it shares, and its streams there.
    pub in_domain: Option<(String, Vec<String>)>,
}

/// The index: a pool on SQLite or PostgreSQL.
#[derive(Clone, Debug)]
pub struct Index {
    db: Db,
}

#[derive(Clone, Debug)]
enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to whichever backend's pool the index has; the body is
/// compiled once per backend, so it may use backend-generic sqlx calls only.
macro_rules! with_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            Db::Sqlite($pool) => $body,
            Db::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` (a `Result`, using `$tx`, a transaction) in a transaction on a connection of
/// its own and commits it; the commit's failure is the result's. On any error the connection is
/// closed rather than given back to the pool: once SQLite has rolled a transaction back by
/// itself (a full disk makes COMMIT fail), sqlx 0.8 still counts it open on that connection
/// (its ROLLBACK then fails too), runs the next transaction there as a savepoint inside it, and
/// the work of "rolled back" transactions comes back at a later commit.
macro_rules! in_transaction {
    ($db:expr, $tx:ident => $body:expr) => {
        with_db!($db, pool => async {
            let mut conn = pool.acquire().await.map_err($crate::Error::from)?;
            let done = async {
                let mut $tx = sqlx::Connection::begin(&mut *conn).await?;
                let value = $body?;
                $tx.commit().await?;
                Ok::<_, $crate::Error>(value)
            }
            .await;
            if done.is_err() {
                conn.close_on_drop();
            }
            done
        }.await)
    };
}

/// The upsert of an overwrite-mode row: the one row of its (storage, key) keeps its id.
fn upsert_overwrite_sql() -> String {
    format!(
        "INSERT INTO snapshots ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
         ON CONFLICT (storage, object_key) WHERE mode = 'overwrite' DO UPDATE SET \
         domain = excluded.domain, app = excluded.app, stream = excluded.stream, job = excluded.job, \
         time_ms = excluded.time_ms, sequence = excluded.sequence, size = excluded.size, \
         width = excluded.width, height = excluded.height, format = excluded.format \
         RETURNING {COLUMNS}"
    )
}

/// The bind parameters of a new row, with a fresh id, in [`COLUMNS`] order.
fn row_args(row: &NewSnapshot) -> Result<Vec<Arg>> {
    let sequence = row.sequence.map(|s| to_i64("sequence", s)).transpose()?;
    let size = to_i64("size", row.size)?;
    Ok(vec![
        Arg::Text(new_id(row.time_ms)),
        Arg::Text(row.domain.clone()),
        Arg::Text(row.app.clone()),
        Arg::Text(row.stream.clone()),
        Arg::Text(row.job.clone()),
        Arg::Int(row.time_ms),
        Arg::OptInt(sequence),
        Arg::Text(row.mode.as_str().into()),
        Arg::Text(row.storage.clone()),
        Arg::Text(row.key.clone()),
        Arg::Int(size),
        Arg::Int(i64::from(row.width)),
        Arg::Int(i64::from(row.height)),
        Arg::Text(row.format.clone()),
    ])
}

// After `with_db!`, which it uses.
mod automation;
pub use automation::{BindingRow, TemplateRow};
mod jobs;
pub use jobs::{JobRow, UsageRow};
mod accounts;
pub use accounts::{AccountRow, KeyRow};

/// One bind parameter, so queries built at run time can be bound on either backend.
#[derive(Clone, Debug)]
enum Arg {
    Text(String),
    Int(i64),
    OptInt(Option<i64>),
}

/// Binds `$args` (a `Vec<Arg>`) to the query `$q`, in order.
macro_rules! bind_args {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for arg in $args {
            q = match arg {
                Arg::Text(s) => q.bind(s),
                Arg::Int(i) => q.bind(i),
                Arg::OptInt(i) => q.bind(i),
            };
        }
        q
    }};
}

/// A row as stored; converted to [`SnapshotRow`] with checks.
#[derive(sqlx::FromRow, Debug)]
struct RawRow {
    id: String,
    domain: String,
    app: String,
    stream: String,
    job: String,
    time_ms: i64,
    sequence: Option<i64>,
    mode: String,
    storage: String,
    object_key: String,
    size: i64,
    width: i64,
    height: i64,
    format: String,
}

impl TryFrom<RawRow> for SnapshotRow {
    type Error = Error;
    fn try_from(r: RawRow) -> Result<SnapshotRow> {
        let corrupt = |reason: String| Error::CorruptRow {
            id: r.id.clone(),
            reason,
        };
        let mode = r.mode.parse::<Mode>().map_err(corrupt)?;
        let sequence = match r.sequence {
            None => None,
            Some(s) => Some(u64::try_from(s).map_err(|_| corrupt(format!("sequence {s}")))?),
        };
        let size = u64::try_from(r.size).map_err(|_| corrupt(format!("size {}", r.size)))?;
        let width = u32::try_from(r.width).map_err(|_| corrupt(format!("width {}", r.width)))?;
        let height =
            u32::try_from(r.height).map_err(|_| corrupt(format!("height {}", r.height)))?;
        Ok(SnapshotRow {
            id: r.id,
            domain: r.domain,
            app: r.app,
            stream: r.stream,
            job: r.job,
            time_ms: r.time_ms,
            sequence,
            mode,
            storage: r.storage,
            key: r.object_key,
            size,
            width,
            height,
            format: r.format,
        })
    }
}

fn to_i64(field: &'static str, value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| Error::OutOfRange { field, value })
}

/// Ids are `{unix_ms:013}{counter:06}`: they sort by capture time (then by creation order
/// within a millisecond) and stay unique across nodes thanks to a random start for the counter
/// plus a retry on the rare collision.
pub fn new_id(time_ms: i64) -> String {
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // A per-process start for the counter, so two nodes are unlikely to walk in step.
    let seed = *SEED.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::from(d.subsec_nanos()))
            .unwrap_or(0);
        nanos ^ u64::from(std::process::id()).rotate_left(20)
    });
    let n = seed.wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed));
    let ms = time_ms.clamp(0, 9_999_999_999_999);
    format!("{ms:013}{:06}", n % 1_000_000)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Cursors are `{time_ms}.{id}` of the last row of a page; the next page starts below it.
fn encode_cursor(row: &SnapshotRow) -> String {
    format!("{}.{}", row.time_ms, row.id)
}

/// Reads a `{time_ms}.{id}` cursor (the snapshots' and the jobs' lists share the form).
pub fn decode_cursor(cursor: &str) -> Result<(i64, String)> {
    let bad = || Error::InvalidCursor(cursor.chars().take(64).collect());
    let (t, id) = cursor.split_once('.').ok_or_else(bad)?;
    let t = t.parse::<i64>().map_err(|_| bad())?;
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(bad());
    }
    Ok((t, id.to_string()))
}

/// Hides the password of a database URL for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl Index {
    /// Opens (creating if missing) the index at `url` and applies the migrations:
    /// `sqlite://path/to/index.db` (WAL journal) or `postgres://user@host:port/db`.
    pub async fn open(url: &str) -> Result<Index> {
        let invalid = |reason: String| Error::InvalidIndexUrl {
            url: redact(url),
            reason,
        };
        let db = if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(|e| invalid(e.to_string()))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // NORMAL is durable across application crashes in WAL mode; only a power loss
                // can lose the last transactions, which costs an index row, not a picture.
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(SQLITE_BUSY_TIMEOUT);
            if let Some(dir) = opts.get_filename().parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| invalid(format!("cannot create {}: {e}", dir.display())))?;
                }
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(MAX_CONNECTIONS)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(opts)
                .await?;
            Db::Sqlite(pool)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let opts = PgConnectOptions::from_str(url).map_err(|e| invalid(e.to_string()))?;
            let pool = PgPoolOptions::new()
                .max_connections(MAX_CONNECTIONS)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(opts)
                .await?;
            Db::Postgres(pool)
        } else {
            return Err(invalid("expected sqlite://... or postgres://...".into()));
        };
        with_db!(&db, pool => MIGRATOR.run(pool).await)?;
        Ok(Index { db })
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self.db {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// Closes the pool, waiting for queries in flight.
    pub async fn close(&self) {
        with_db!(&self.db, pool => pool.close().await)
    }

    async fn fetch_all(&self, sql: &str, args: Vec<Arg>) -> Result<Vec<SnapshotRow>> {
        let raw: Vec<RawRow> = with_db!(&self.db, pool =>
            bind_args!(sqlx::query_as::<_, RawRow>(sql), args).fetch_all(pool).await)?;
        raw.into_iter().map(SnapshotRow::try_from).collect()
    }

    async fn fetch_optional(&self, sql: &str, args: Vec<Arg>) -> Result<Option<SnapshotRow>> {
        let raw: Option<RawRow> = with_db!(&self.db, pool =>
            bind_args!(sqlx::query_as::<_, RawRow>(sql), args).fetch_optional(pool).await)?;
        raw.map(SnapshotRow::try_from).transpose()
    }

    /// [`Index::fetch_optional`] for a write (`... RETURNING`), in a transaction of its own:
    /// SQLite can hand back the returned row and then fail to commit (a full disk), and sqlx
    /// does not report that failure when the row is read with `fetch_optional` or `fetch_one`
    /// on the pool (sqlx issues #2099, #3430); an explicit commit does.
    async fn write_returning(&self, sql: &str, args: Vec<Arg>) -> Result<Option<SnapshotRow>> {
        let raw: Option<RawRow> = in_transaction!(&self.db, tx =>
            bind_args!(sqlx::query_as::<_, RawRow>(sql), args).fetch_optional(&mut *tx).await)?;
        raw.map(SnapshotRow::try_from).transpose()
    }

    /// Indexes a new picture. An overwrite-mode row goes through [`Index::upsert_overwrite`],
    /// since there is one row per overwritten object.
    pub async fn insert(&self, row: &NewSnapshot) -> Result<SnapshotRow> {
        if row.mode == Mode::Overwrite {
            return self.upsert_overwrite(row).await;
        }
        let sql = format!(
            "INSERT INTO snapshots ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING {COLUMNS}"
        );
        self.insert_with_fresh_id(&sql, row).await
    }

    /// Indexes an overwrite-mode picture: the one row for its (storage, key) is updated in
    /// place (time, size, dimensions...) and keeps its id; a first picture creates it.
    pub async fn upsert_overwrite(&self, row: &NewSnapshot) -> Result<SnapshotRow> {
        let mut row = row.clone();
        row.mode = Mode::Overwrite;
        self.insert_with_fresh_id(&upsert_overwrite_sql(), &row)
            .await
    }

    async fn insert_with_fresh_id(&self, sql: &str, row: &NewSnapshot) -> Result<SnapshotRow> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let args = row_args(row)?;
            match self.write_returning(sql, args).await {
                Ok(Some(r)) => return Ok(r),
                Ok(None) => {
                    return Err(Error::Database(sqlx::Error::Protocol(
                        "INSERT returned no row".into(),
                    )))
                }
                // The only other unique constraint an upsert can hit is the id's.
                Err(Error::Database(e)) if is_unique_violation(&e) && attempt < ID_ATTEMPTS => {
                    continue
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The row with this id.
    pub async fn get(&self, id: &str) -> Result<Option<SnapshotRow>> {
        let sql = format!("SELECT {COLUMNS} FROM snapshots WHERE id = $1");
        self.fetch_optional(&sql, vec![Arg::Text(id.into())]).await
    }

    /// Rows matching `filter`, newest first (by capture time, then id), one page at a time;
    /// the second value is the cursor for the next page, `None` on the last one.
    pub async fn list(&self, filter: &ListFilter) -> Result<(Vec<SnapshotRow>, Option<String>)> {
        let limit = filter.limit.unwrap_or(DEFAULT_LIST_LIMIT);
        if limit == 0 || limit > MAX_LIST_LIMIT {
            return Err(Error::InvalidFilter(format!(
                "limit must be 1..={MAX_LIST_LIMIT}, not {limit}"
            )));
        }
        if let (Some(from), Some(to)) = (filter.from_ms, filter.to_ms) {
            if from > to {
                return Err(Error::InvalidFilter("`from` is after `to`".into()));
            }
        }
        let mut conds: Vec<String> = Vec::new();
        let mut args: Vec<Arg> = Vec::new();
        // Adds a bind parameter and returns its placeholder.
        let mut param = |arg: Arg| {
            args.push(arg);
            format!("${}", args.len())
        };
        let text_filters = [
            ("domain", &filter.domain),
            ("app", &filter.app),
            ("stream", &filter.stream),
            ("job", &filter.job),
        ];
        for (column, value) in text_filters {
            if let Some(v) = value {
                conds.push(format!("{column} = {}", param(Arg::Text(v.clone()))));
            }
        }
        if let Some(mode) = filter.mode {
            conds.push(format!("mode = {}", param(Arg::Text(mode.as_str().into()))));
        }
        if let Some(v) = &filter.visible {
            let mut any: Vec<String> = Vec::new();
            if !v.domains.is_empty() {
                let list: Vec<String> = v
                    .domains
                    .iter()
                    .map(|d| param(Arg::Text(d.clone())))
                    .collect();
                any.push(format!("domain IN ({})", list.join(", ")));
            }
            if let Some((domain, streams)) = &v.in_domain {
                if !streams.is_empty() {
                    let d = param(Arg::Text(domain.clone()));
                    let list: Vec<String> = streams
                        .iter()
                        .map(|s| param(Arg::Text(s.clone())))
                        .collect();
                    any.push(format!(
                        "(domain = {d} AND stream IN ({}))",
                        list.join(", ")
                    ));
                }
            }
            if any.is_empty() {
                conds.push("1 = 0".into());
            } else {
                conds.push(format!("({})", any.join(" OR ")));
            }
        }
        if let Some(from) = filter.from_ms {
            conds.push(format!("time_ms >= {}", param(Arg::Int(from))));
        }
        if let Some(to) = filter.to_ms {
            conds.push(format!("time_ms <= {}", param(Arg::Int(to))));
        }
        if let Some(cursor) = &filter.cursor {
            // Strictly after the previous page's last row in (time_ms DESC, id DESC) order.
            let (t, id) = decode_cursor(cursor)?;
            let (t1, t2, id) = (param(Arg::Int(t)), param(Arg::Int(t)), param(Arg::Text(id)));
            conds.push(format!(
                "(time_ms < {t1} OR (time_ms = {t2} AND id < {id}))"
            ));
        }
        let where_clause = if conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conds.join(" AND "))
        };
        // One row more than asked tells whether there is a next page.
        let sql = format!(
            "SELECT {COLUMNS} FROM snapshots {where_clause} ORDER BY time_ms DESC, id DESC LIMIT {}",
            limit + 1
        );
        let mut rows = self.fetch_all(&sql, args).await?;
        let next = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(encode_cursor)
        } else {
            None
        };
        Ok((rows, next))
    }

    /// Deletes the row with this id and returns it (`None` if there was none). The caller
    /// deletes the object.
    pub async fn delete(&self, id: &str) -> Result<Option<SnapshotRow>> {
        let sql = format!("DELETE FROM snapshots WHERE id = $1 RETURNING {COLUMNS}");
        self.write_returning(&sql, vec![Arg::Text(id.into())]).await
    }

    /// The next sequence number for (domain, app, stream, job): 1 the first time, then one
    /// more each call, persisted, and atomic under concurrent callers (a single UPSERT).
    pub async fn next_sequence(
        &self,
        domain: &str,
        app: &str,
        stream: &str,
        job: &str,
    ) -> Result<u64> {
        let sql = "INSERT INTO sequence_counters (domain, app, stream, job, value) VALUES ($1, $2, $3, $4, 1) \
                   ON CONFLICT (domain, app, stream, job) DO UPDATE SET value = sequence_counters.value + 1 \
                   RETURNING value";
        // In a transaction: see `write_returning`.
        let value: i64 = in_transaction!(&self.db, tx => sqlx::query_scalar::<_, i64>(sql)
            .bind(domain).bind(app).bind(stream).bind(job)
            .fetch_one(&mut *tx)
            .await)?;
        u64::try_from(value).map_err(|_| Error::CorruptRow {
            id: format!("sequence_counters {domain}/{app}/{stream}/{job}"),
            reason: format!("value {value}"),
        })
    }

    /// Sequence-mode rows of one stream and job that retention should remove, oldest first, at
    /// most `limit`: those beyond the newest `keep_last`, and those captured before
    /// `older_than_ms` (Unix ms). Neither rule given: none.
    #[allow(clippy::too_many_arguments)]
    pub async fn retention_victims(
        &self,
        domain: &str,
        app: &str,
        stream: &str,
        job: &str,
        keep_last: Option<u64>,
        older_than_ms: Option<i64>,
        limit: u32,
    ) -> Result<Vec<SnapshotRow>> {
        if limit == 0 || (keep_last.is_none() && older_than_ms.is_none()) {
            return Ok(Vec::new());
        }
        let base = "mode = 'sequence' AND job = $1 AND domain = $2 AND app = $3 AND stream = $4";
        let base_args = || {
            vec![
                Arg::Text(job.into()),
                Arg::Text(domain.into()),
                Arg::Text(app.into()),
                Arg::Text(stream.into()),
            ]
        };
        let mut rules: Vec<String> = Vec::new();
        let mut args = base_args();
        if let Some(keep) = keep_last {
            // The oldest row still kept; everything ordered below it goes.
            let boundary = match keep.checked_sub(1) {
                None => None, // keep_last = 0: nothing is kept
                Some(offset) => {
                    let sql = format!(
                        "SELECT {COLUMNS} FROM snapshots WHERE {base} ORDER BY time_ms DESC, id DESC LIMIT 1 OFFSET {}",
                        to_i64("keep_last", offset)?
                    );
                    match self.fetch_optional(&sql, base_args()).await? {
                        // Fewer rows than keep_last: nothing beyond it.
                        None => Some(None),
                        Some(r) => Some(Some((r.time_ms, r.id))),
                    }
                }
            };
            match boundary {
                None => rules.push("1 = 1".into()),
                Some(None) => {}
                Some(Some((t, id))) => {
                    let n = args.len();
                    rules.push(format!(
                        "(time_ms < ${} OR (time_ms = ${} AND id < ${}))",
                        n + 1,
                        n + 2,
                        n + 3
                    ));
                    args.extend([Arg::Int(t), Arg::Int(t), Arg::Text(id)]);
                }
            }
        }
        if let Some(cutoff) = older_than_ms {
            args.push(Arg::Int(cutoff));
            rules.push(format!("time_ms < ${}", args.len()));
        }
        if rules.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM snapshots WHERE {base} AND ({}) ORDER BY time_ms ASC, id ASC LIMIT {limit}",
            rules.join(" OR ")
        );
        self.fetch_all(&sql, args).await
    }

    /// The (domain, app, stream) triples that have sequence-mode rows for this job, for the
    /// retention sweeper to visit.
    pub async fn streams_with_sequence_rows(
        &self,
        job: &str,
    ) -> Result<Vec<(String, String, String)>> {
        let sql = "SELECT DISTINCT domain, app, stream FROM snapshots \
                   WHERE job = $1 AND mode = 'sequence' ORDER BY domain, app, stream";
        let rows: Vec<(String, String, String)> = with_db!(&self.db, pool => sqlx::query_as::<_, (String, String, String)>(sql).bind(job).fetch_all(pool).await)?;
        Ok(rows)
    }
}

/// A webhook delivery waiting in the index ([`Index::queue_delivery`]).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct QueuedDelivery {
    /// Delivery id (from [`new_id`]), stable across restarts.
    pub id: String,
    /// Event type.
    pub event: String,
    /// Target URL.
    pub url: String,
    /// The JSON body, exactly as it is sent.
    pub body: String,
    /// When it was queued (Unix ms).
    pub created_ms: i64,
}

/// A picture write begun and not yet indexed ([`Index::intend_write`]).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WriteIntent {
    /// Its id.
    pub id: String,
    /// Storage location.
    pub storage: String,
    /// Object key.
    pub object_key: String,
    /// When the write began (Unix ms).
    pub created_ms: i64,
}

/// Builds the deliveries that announce a stored picture, from its row (with its id).
pub type Announce<'a> = &'a (dyn Fn(&SnapshotRow) -> Vec<QueuedDelivery> + Send + Sync);

const QUEUE_DELIVERY_SQL: &str = "INSERT INTO callback_queue (id, event, url, body, created_ms) \
                                  VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING";

impl Index {
    /// Records that the object `key` of `storage` is about to be written; the row goes in the
    /// transaction that indexes it ([`Index::insert_announced`]), or at the next start
    /// ([`Index::write_intents`]).
    pub async fn intend_write(&self, storage: &str, key: &str, now_ms: i64) -> Result<String> {
        let id = new_id(now_ms);
        with_db!(&self.db, pool => sqlx::query(
            "INSERT INTO write_intents (id, storage, object_key, created_ms) VALUES ($1, $2, $3, $4)")
            .bind(&id).bind(storage).bind(key).bind(now_ms)
            .execute(pool).await.map(|_| ()))?;
        Ok(id)
    }

    /// Forgets a write intent (its write failed and nothing was stored, or it was reconciled).
    pub async fn drop_intent(&self, id: &str) -> Result<()> {
        with_db!(&self.db, pool => sqlx::query("DELETE FROM write_intents WHERE id = $1")
            .bind(id).execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Every write intent left, oldest first: after a crash, writes that may have stored an
    /// object without its row.
    pub async fn write_intents(&self) -> Result<Vec<WriteIntent>> {
        let sql =
            "SELECT id, storage, object_key, created_ms FROM write_intents ORDER BY created_ms, id";
        let rows: Vec<WriteIntent> = with_db!(&self.db, pool =>
            sqlx::query_as::<_, WriteIntent>(sql).fetch_all(pool).await)?;
        Ok(rows)
    }

    /// Whether a row names the object `key` of `storage`.
    pub async fn has_object(&self, storage: &str, key: &str) -> Result<bool> {
        let sql = "SELECT COUNT(*) FROM snapshots WHERE storage = $1 AND object_key = $2";
        let n: i64 = with_db!(&self.db, pool =>
            sqlx::query_scalar::<_, i64>(sql).bind(storage).bind(key).fetch_one(pool).await)?;
        Ok(n > 0)
    }

    /// Whether the picture taken at `time_ms` is indexed as the object `key` of `storage`:
    /// a spooled picture delivered again after a crash is then already done.
    pub async fn has_picture(&self, storage: &str, key: &str, time_ms: i64) -> Result<bool> {
        let sql = "SELECT COUNT(*) FROM snapshots WHERE storage = $1 AND object_key = $2 AND time_ms = $3";
        let n: i64 = with_db!(&self.db, pool =>
            sqlx::query_scalar::<_, i64>(sql).bind(storage).bind(key).bind(time_ms)
                .fetch_one(pool).await)?;
        Ok(n > 0)
    }

    /// Indexes a stored picture, queues the deliveries `announce` makes of its row and ends its
    /// write intent, in one transaction: the row and its `snapshot.stored` deliveries are in
    /// the index together or not at all, and a failed commit is an error, never a row that
    /// silently is not there. Returns the row and the deliveries queued.
    pub async fn insert_announced(
        &self,
        row: &NewSnapshot,
        intent: Option<&str>,
        announce: Announce<'_>,
    ) -> Result<(SnapshotRow, Vec<QueuedDelivery>)> {
        let sql = if row.mode == Mode::Overwrite {
            upsert_overwrite_sql()
        } else {
            format!(
                "INSERT INTO snapshots ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING {COLUMNS}"
            )
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let args = row_args(row)?;
            let done = in_transaction!(&self.db, tx => async {
                let raw: Option<RawRow> = bind_args!(sqlx::query_as::<_, RawRow>(&sql), args)
                    .fetch_optional(&mut *tx)
                    .await?;
                let raw = raw.ok_or_else(|| {
                    Error::Database(sqlx::Error::Protocol("INSERT returned no row".into()))
                })?;
                let stored = SnapshotRow::try_from(raw)?;
                let deliveries = announce(&stored);
                for d in &deliveries {
                    sqlx::query(QUEUE_DELIVERY_SQL)
                        .bind(&d.id).bind(&d.event).bind(&d.url).bind(&d.body).bind(d.created_ms)
                        .execute(&mut *tx)
                        .await?;
                }
                if let Some(id) = intent {
                    sqlx::query("DELETE FROM write_intents WHERE id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                Ok::<_, Error>((stored, deliveries))
            }.await);
            match done {
                // The only other unique constraint an upsert can hit is the id's.
                Err(Error::Database(e)) if is_unique_violation(&e) && attempt < ID_ATTEMPTS => {
                    continue
                }
                other => return other,
            }
        }
    }

    /// Records a delivery as queued; recording the same id again changes nothing.
    pub async fn queue_delivery(&self, d: &QueuedDelivery) -> Result<()> {
        with_db!(&self.db, pool => sqlx::query(QUEUE_DELIVERY_SQL)
            .bind(&d.id).bind(&d.event).bind(&d.url).bind(&d.body).bind(d.created_ms)
            .execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Removes a delivery from the queue (delivered, or out of tries).
    pub async fn delivery_done(&self, id: &str) -> Result<()> {
        with_db!(&self.db, pool => sqlx::query("DELETE FROM callback_queue WHERE id = $1")
            .bind(id).execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// The oldest `limit` queued deliveries, in the order they were queued.
    pub async fn queued_deliveries(&self, limit: u32) -> Result<Vec<QueuedDelivery>> {
        let sql = "SELECT id, event, url, body, created_ms FROM callback_queue \
                   ORDER BY created_ms, id LIMIT $1";
        let rows: Vec<QueuedDelivery> = with_db!(&self.db, pool =>
            sqlx::query_as::<_, QueuedDelivery>(sql).bind(i64::from(limit)).fetch_all(pool).await)?;
        Ok(rows)
    }

    /// How many deliveries are queued.
    pub async fn queued_delivery_count(&self) -> Result<u64> {
        let n: i64 = with_db!(&self.db, pool =>
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM callback_queue").fetch_one(pool).await)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Answers when the database does (for readiness checks).
    pub async fn ping(&self) -> Result<()> {
        with_db!(&self.db, pool => sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(pool).await)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_are_unique() {
        let a = new_id(1_700_000_000_000);
        let b = new_id(1_700_000_000_001);
        let c = new_id(1_700_000_000_001);
        assert_eq!(a.len(), 19);
        assert!(a < b && b != c);
        assert!(new_id(-5).starts_with("0000000000000"));
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        assert_eq!(decode_cursor("17.0001").unwrap(), (17, "0001".to_string()));
        for bad in ["", "17", "x.1", "17.", "17.a'b", "17.a b"] {
            assert!(
                matches!(decode_cursor(bad), Err(Error::InvalidCursor(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rows_serialize_with_api_names() {
        let row = SnapshotRow {
            id: "17000000000000000001".into(),
            domain: "_default".into(),
            app: "live".into(),
            stream: "cam1".into(),
            job: "t1".into(),
            time_ms: 1_795_250_400_250,
            sequence: Some(7),
            mode: Mode::Sequence,
            storage: "local".into(),
            key: "a/b.jpg".into(),
            size: 10,
            width: 640,
            height: 360,
            format: "jpg".into(),
        };
        let v = serde_json::to_value(&row).unwrap();
        assert_eq!(v["time"], "2026-11-21T08:40:00.250Z");
        assert_eq!(v["time_ms"], 1_795_250_400_250_i64);
        assert_eq!(v["mode"], "sequence");
        assert_eq!(v["key"], "a/b.jpg");
        assert_eq!(v.as_object().unwrap().len(), 15);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    }
}
