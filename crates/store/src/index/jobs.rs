//! Pull jobs and their usage, in the index (tables `jobs` and `job_usage`, migration 0005).
//! The store keeps each job's row as `livesnap-core` hands it; core decides what the states
//! mean. A job names its template by a foreign key, so a template a job uses cannot be deleted.

use super::{to_i64, Db, Index};
use crate::{Error, Result};

/// A job as the index keeps it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct JobRow {
    /// Unique id (from [`super::new_id`]).
    pub id: String,
    /// The name it was given.
    pub name: String,
    /// The URL it pulls, credentials included.
    pub input_url: String,
    /// The template its pictures follow.
    pub template: String,
    /// The storage location, when not the template's.
    pub storage: Option<String>,
    /// The callback URL, besides the global one.
    pub callback_url: Option<String>,
    /// 1 once stopped through the API (it stays stopped across restarts), else 0.
    pub stopped: i64,
    /// `pending`, `running`, `retrying`, `failed` or `stopped`.
    pub state: String,
    /// The last error.
    pub error: Option<String>,
    /// When it happened (Unix ms).
    pub error_ms: Option<i64>,
    /// When the job was created (Unix ms).
    pub created_ms: i64,
    /// When it last started running (Unix ms).
    pub started_ms: Option<i64>,
    /// Frames received, over all its runs.
    pub frames: i64,
    /// Keyframes received.
    pub keyframes: i64,
    /// Pictures made.
    pub pictures: i64,
    /// Times its source was opened again.
    pub reconnects: i64,
    /// The JSON of its newest picture.
    pub last_snapshot: Option<String>,
    /// The account it belongs to (`None`: the administrator's).
    pub account: Option<String>,
}

/// One job's running time on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UsageRow {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// The job's id.
    pub job: String,
    /// Its name when it last ran that day.
    pub job_name: String,
    /// Milliseconds it ran that day.
    pub running_ms: i64,
    /// The job's account (`None`: the administrator's).
    pub account: Option<String>,
}

const JOB_COLUMNS: &str = "id, name, input_url, template, storage, callback_url, stopped, state, \
     error, error_ms, created_ms, started_ms, frames, keyframes, pictures, reconnects, last_snapshot, account";

/// True for a `YYYY-MM-DD` day.
fn is_day(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

impl Index {
    /// Adds a new job. Fails (a foreign-key violation) when its template does not exist.
    pub async fn insert_job(&self, job: &JobRow) -> Result<()> {
        let sql = format!(
            "INSERT INTO jobs ({JOB_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
        );
        with_db!(&self.db, pool => sqlx::query(&sql)
            .bind(&job.id).bind(&job.name).bind(&job.input_url).bind(&job.template)
            .bind(&job.storage).bind(&job.callback_url).bind(job.stopped).bind(&job.state)
            .bind(&job.error).bind(job.error_ms).bind(job.created_ms).bind(job.started_ms)
            .bind(job.frames).bind(job.keyframes).bind(job.pictures).bind(job.reconnects)
            .bind(&job.last_snapshot).bind(&job.account)
            .execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Saves what changes in a job as it runs (everything but its id, name, URL, template,
    /// storage, callback URL and creation time); `false` when it no longer exists.
    pub async fn update_job(&self, job: &JobRow) -> Result<bool> {
        let sql = "UPDATE jobs SET stopped = $2, state = $3, error = $4, error_ms = $5, \
                   started_ms = $6, frames = $7, keyframes = $8, pictures = $9, reconnects = $10, \
                   last_snapshot = $11 WHERE id = $1";
        let n = with_db!(&self.db, pool => sqlx::query(sql)
            .bind(&job.id).bind(job.stopped).bind(&job.state).bind(&job.error).bind(job.error_ms)
            .bind(job.started_ms).bind(job.frames).bind(job.keyframes).bind(job.pictures)
            .bind(job.reconnects).bind(&job.last_snapshot)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }

    /// The job with this id.
    pub async fn job(&self, id: &str) -> Result<Option<JobRow>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
        let row = with_db!(&self.db, pool =>
            sqlx::query_as::<_, JobRow>(&sql).bind(id).fetch_optional(pool).await)?;
        Ok(row)
    }

    /// Every job, oldest first (the server loads them at start).
    pub async fn all_jobs(&self) -> Result<Vec<JobRow>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs ORDER BY created_ms, id");
        let rows =
            with_db!(&self.db, pool => sqlx::query_as::<_, JobRow>(&sql).fetch_all(pool).await)?;
        Ok(rows)
    }

    /// Deletes a job; `false` if there was none. Its pictures and usage stay.
    pub async fn delete_job(&self, id: &str) -> Result<bool> {
        let n = with_db!(&self.db, pool => sqlx::query("DELETE FROM jobs WHERE id = $1")
            .bind(id).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }

    /// Adds `ms` of running time to a job's usage on `day` (`YYYY-MM-DD`, UTC).
    pub async fn add_usage(
        &self,
        day: &str,
        job: &str,
        job_name: &str,
        account: Option<&str>,
        ms: u64,
    ) -> Result<()> {
        if !is_day(day) {
            return Err(Error::InvalidFilter(format!(
                "{day:?} is not a YYYY-MM-DD day"
            )));
        }
        let ms = to_i64("running_ms", ms)?;
        let sql = "INSERT INTO job_usage (day, job, job_name, running_ms, account) VALUES ($1, $2, $3, $4, $5) \
                   ON CONFLICT (day, job) DO UPDATE SET running_ms = job_usage.running_ms + excluded.running_ms, \
                   job_name = excluded.job_name";
        with_db!(&self.db, pool => sqlx::query(sql)
            .bind(day).bind(job).bind(job_name).bind(ms).bind(account)
            .execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Usage from day `from` to day `to` (both `YYYY-MM-DD`, inclusive), by day then job.
    pub async fn usage(&self, from: &str, to: &str) -> Result<Vec<UsageRow>> {
        for d in [from, to] {
            if !is_day(d) {
                return Err(Error::InvalidFilter(format!(
                    "{:?} is not a YYYY-MM-DD day",
                    d.chars().take(40).collect::<String>()
                )));
            }
        }
        if from > to {
            return Err(Error::InvalidFilter("`from` is after `to`".into()));
        }
        let sql = "SELECT day, job, job_name, running_ms, account FROM job_usage \
                   WHERE day >= $1 AND day <= $2 ORDER BY day, job";
        let rows = with_db!(&self.db, pool =>
            sqlx::query_as::<_, UsageRow>(sql).bind(from).bind(to).fetch_all(pool).await)?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_checked() {
        assert!(is_day("2026-12-05"));
        for bad in ["2026-12-5", "2026/12/05", "", "2026-12-05x", "abcd-ef-gh"] {
            assert!(!is_day(bad), "{bad}");
        }
    }
}
