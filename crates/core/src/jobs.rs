//! Pull jobs (Alibaba IMS's live snapshot jobs): a URL that livesnap pulls and pictures on a
//! template's schedule, submitted, read, stopped, started and deleted through the API.
//!
//! A job's source runs under a [`SourceSupervisor`] (reconnects with backoff), published into
//! the hub as `_jobs/job/{id}` (a domain no publisher can name), and [`Automation`] pictures it
//! with the job's template, its `{JobId}` being the job's id. A watcher per job turns the
//! supervisor's states into the job's (`pending`, `running`, `retrying`, `failed`,
//! `stopped`), saves each change in the index, tells the [`EventSink`] (`job.state_changed`)
//! and adds the job's running time to its usage per UTC day. Jobs are kept in the index and
//! resume at the next start; a job stopped through the API stays stopped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use livesnap_store::index::{new_id, Index, JobRow, UsageRow};
use media::stream::{PublishRefused, PublisherInfo, StreamKey, StreamSink, StreamWriter};
use media::{Frame, VideoConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::auto::{Automation, EventSink};
use crate::hub::Hub;
use crate::lifecycle::Lifecycle;
use crate::source::{SourceHandle, SourceOpener, SourceState, SourceStatus, SourceSupervisor};

/// The domain jobs' streams are published under. Publishers cannot name it: a `domain=` must
/// be a host name, and no host name starts with `_`.
pub const JOBS_DOMAIN: &str = "_jobs";
/// The app of jobs' streams (`_jobs/job/{id}`).
pub const JOBS_APP: &str = "job";
/// How many jobs may run at once when the setting `max_jobs` is not given.
pub const DEFAULT_MAX_JOBS: usize = 100;
/// Most jobs kept, running or not: past it a new job is refused until one is deleted.
pub const MAX_JOBS_KEPT: usize = 10_000;
/// Longest job name, in bytes.
pub const MAX_JOB_NAME_LEN: usize = 128;
/// Longest input or callback URL, in bytes.
pub const MAX_URL_LEN: usize = 2048;
/// How often running jobs' usage and counters are written to the index (and at every state
/// change, at a stop and at shutdown).
pub const USAGE_FLUSH: Duration = Duration::from_secs(60);
/// Jobs per page of a list when none is asked for, and most per page.
pub const DEFAULT_JOB_PAGE: usize = 50;
/// The most jobs one page lists.
pub const MAX_JOB_PAGE: usize = 1000;

const DAY_MS: i64 = 86_400_000;

/// What a job's template and pictures know of it: its id, its source (password hidden) and
/// what it has counted. Shared by the job, its stream's template and the sink its frames pass.
#[derive(Debug)]
pub struct JobLink {
    /// The job's id.
    pub id: String,
    /// The input URL, password hidden.
    pub source: String,
    /// Frames received, over all its runs.
    pub frames: AtomicU64,
    /// Keyframes received.
    pub keyframes: AtomicU64,
    /// Pictures made.
    pub pictures: AtomicU64,
    last: Mutex<Option<LastSnapshot>>,
}

impl PartialEq for JobLink {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl JobLink {
    /// Counts a picture made for the job and remembers it as its newest.
    pub fn picture_made(&self, last: LastSnapshot) {
        self.pictures.fetch_add(1, Ordering::Relaxed);
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(last);
    }

    fn last(&self) -> Option<LastSnapshot> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A job's newest picture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LastSnapshot {
    /// Its index id (absent while it waits in the spool).
    pub id: Option<String>,
    /// When it was taken, Unix ms.
    pub time_ms: i64,
    /// Its storage location.
    pub storage: String,
    /// Its object key.
    pub key: String,
}

/// A job as it is submitted.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// A name for people (need not be unique).
    pub name: String,
    /// `rtmp://` or `rtsp://` URL; credentials in the URL (`rtsp://user:pass@host/...`);
    /// `?transport=udp` pulls RTSP over UDP.
    pub input_url: String,
    /// The template its pictures follow.
    pub template: String,
    /// Storage location, when not the template's.
    #[serde(default)]
    pub storage: Option<String>,
    /// URL told of this job's events (besides the global one), instead of the template's.
    #[serde(default)]
    pub callback_url: Option<String>,
}

/// What a job is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Submitted or started, connecting for the first time.
    Pending,
    /// Frames are flowing.
    Running,
    /// The source dropped or could not be reached; the next try is waiting.
    Retrying,
    /// The source cannot work (bad credentials, no such stream, unsupported codec, bad URL);
    /// nothing more is tried until the job is started again.
    Failed,
    /// Stopped through the API.
    Stopped,
}

impl JobState {
    /// Every state.
    pub const ALL: [JobState; 5] = [
        JobState::Pending,
        JobState::Running,
        JobState::Retrying,
        JobState::Failed,
        JobState::Stopped,
    ];

    /// The name the API and the index use.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Retrying => "retrying",
            JobState::Failed => "failed",
            JobState::Stopped => "stopped",
        }
    }

    /// The state named `s`.
    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// A job's last error.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobFailure {
    /// What happened.
    pub message: String,
    /// When (RFC 3339).
    pub time: String,
}

/// What a job has counted, over all its runs.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobCounters {
    /// Frames received.
    pub frames: u64,
    /// Keyframes received.
    pub keyframes: u64,
    /// Pictures made.
    pub pictures: u64,
    /// Times the source was opened again.
    pub reconnects: u64,
}

/// A job's newest picture as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobSnapshot {
    /// Its index id (absent while it waits in the spool).
    pub id: Option<String>,
    /// When it was taken (RFC 3339).
    pub time: String,
    /// Where to fetch it (absent while it waits in the spool).
    pub url: Option<String>,
    /// Its storage location.
    pub storage: String,
    /// Its object key.
    pub key: String,
}

/// A job as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Job {
    /// Its id: `{JobId}` in path patterns, `job` in its pictures' index rows.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The URL it pulls, password hidden.
    pub input_url: String,
    /// Its template.
    pub template: String,
    /// Its storage location, when not the template's.
    pub storage: Option<String>,
    /// Its callback URL.
    pub callback_url: Option<String>,
    /// What it is doing.
    pub state: JobState,
    /// The last error, kept after the job recovers.
    pub error: Option<JobFailure>,
    /// When it was submitted (RFC 3339).
    pub created_at: String,
    /// When it last started running (RFC 3339).
    pub started_at: Option<String>,
    /// What it has counted.
    pub counters: JobCounters,
    /// Its newest picture.
    pub last_snapshot: Option<JobSnapshot>,
    /// Its stream in the hub (`/v1/streams`): `_jobs/job/{id}`.
    pub stream: String,
    /// The account it belongs to (absent: the administrator's).
    pub account: Option<String>,
}

/// Whose jobs a request sees: all (the administrator), or one account's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobScope<'a> {
    /// Every job.
    All,
    /// The jobs of this account only; another's are not found.
    Account(&'a str),
}

impl JobScope<'_> {
    fn sees(&self, account: Option<&str>) -> bool {
        match self {
            JobScope::All => true,
            JobScope::Account(a) => account == Some(*a),
        }
    }

    fn account(&self) -> Option<String> {
        match self {
            JobScope::All => None,
            JobScope::Account(a) => Some(a.to_string()),
        }
    }
}

/// Why a job request was refused.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    /// A field is wrong.
    #[error("{field}: {message}")]
    Field {
        /// The JSON field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// No such job.
    #[error("job {0} not found")]
    NotFound(String),
    /// Starting one more job would pass `max_jobs`.
    #[error("at most {max} jobs run at once (setting max_jobs); stop or delete one first")]
    TooManyRunning {
        /// The limit.
        max: usize,
    },
    /// Keeping one more job would pass [`MAX_JOBS_KEPT`].
    #[error("at most {max} jobs are kept (MAX_JOBS_KEPT); delete one first")]
    TooManyKept {
        /// The limit.
        max: usize,
    },
    /// The index failed; nothing changed.
    #[error("cannot save the job: {0}")]
    Save(String),
}

/// Settings of the jobs.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// Jobs running at once (setting `max_jobs`).
    pub max_jobs: usize,
    /// Base of the URLs of pictures (`{public_url}/v1/snapshots/{id}/image`).
    pub public_url: String,
}

/// One job: its saved row, its link, and its run when it runs.
struct Entry {
    link: Arc<JobLink>,
    row: Mutex<JobRow>,
    usage: Mutex<Usage>,
    /// One index write of this job at a time (its row, its usage), each made from what is
    /// current when it starts: two writes never carry the same interval, nor land out of order.
    io: tokio::sync::Mutex<()>,
    /// Its last save failed: the flush loop saves it again.
    dirty: std::sync::atomic::AtomicBool,
    run: Mutex<Option<Run>>,
}

/// A job's running time not yet in the index.
#[derive(Default)]
struct Usage {
    /// Unix ms from which it has run and not been counted; `Some` while it runs.
    since: Option<i64>,
    /// Counted, not yet written (a write failed): milliseconds by day.
    unsaved: std::collections::BTreeMap<String, u64>,
}

struct Run {
    handle: SourceHandle,
    watcher: tokio::task::JoinHandle<()>,
}

impl Entry {
    fn row(&self) -> std::sync::MutexGuard<'_, JobRow> {
        self.row.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn usage(&self) -> std::sync::MutexGuard<'_, Usage> {
        self.usage.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take_run(&self) -> Option<Run> {
        self.run.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Whether it runs: its source is supervised and has neither failed nor stopped.
    fn is_active(&self) -> bool {
        self.run
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|r| {
                !matches!(
                    r.handle.current().state,
                    SourceState::Failed { .. } | SourceState::Stopped
                )
            })
    }

    /// Whether anything of it waits to be written.
    fn needs_flush(&self) -> bool {
        let u = self.usage();
        u.since.is_some() || !u.unsaved.is_empty() || self.dirty.load(Ordering::Relaxed)
    }

    /// The row with the link's counters in it.
    fn snapshot_row(&self) -> JobRow {
        let mut row = self.row().clone();
        let l = &self.link;
        row.frames = to_i64(l.frames.load(Ordering::Relaxed));
        row.keyframes = to_i64(l.keyframes.load(Ordering::Relaxed));
        row.pictures = to_i64(l.pictures.load(Ordering::Relaxed));
        row.last_snapshot = l
            .last()
            .and_then(|s| serde_json::to_string(&s).ok())
            .or(row.last_snapshot);
        row
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn rfc3339(ms: i64) -> String {
    livesnap_store::time::ms_to_rfc3339(ms)
}

/// `YYYY-MM-DD` (UTC) of the day holding Unix ms `ms`.
pub fn utc_day(ms: i64) -> String {
    let (y, m, d, ..) = crate::path::civil_from_unix(ms.div_euclid(1000));
    format!("{y:04}-{m:02}-{d:02}")
}

/// The number of day `YYYY-MM-DD` (days since 1970-01-01), `None` when it is not a real day.
pub fn day_number(day: &str) -> Option<i64> {
    let b = day.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = day.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&m) || d < 1 || d > month_days[(m - 1) as usize] {
        return None;
    }
    // Days from civil (H. Hinnant's algorithm), March-based years.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// Splits the running time from `from_ms` to `to_ms` (Unix ms) by UTC day: `(day, ms)` pairs.
pub fn split_by_day(from_ms: i64, to_ms: i64) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut t = from_ms;
    while t < to_ms {
        let end = (t - t.rem_euclid(DAY_MS)).saturating_add(DAY_MS).min(to_ms);
        out.push((utc_day(t), to_u64(end - t)));
        t = end;
    }
    out
}

/// Counts a job's frames and keyframes on their way to the hub.
struct CountingSink {
    inner: Arc<dyn StreamSink>,
    link: Arc<JobLink>,
}

struct CountingWriter {
    inner: Box<dyn StreamWriter>,
    link: Arc<JobLink>,
}

impl StreamSink for CountingSink {
    fn publish(
        &self,
        key: StreamKey,
        info: PublisherInfo,
    ) -> Result<Box<dyn StreamWriter>, PublishRefused> {
        let inner = self.inner.publish(key, info)?;
        Ok(Box::new(CountingWriter {
            inner,
            link: self.link.clone(),
        }))
    }
}

impl StreamWriter for CountingWriter {
    fn config(&mut self, config: VideoConfig) {
        self.inner.config(config);
    }
    fn frame(&mut self, frame: Frame) {
        self.link.frames.fetch_add(1, Ordering::Relaxed);
        if frame.keyframe {
            self.link.keyframes.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.frame(frame);
    }
    fn unsupported(&mut self, name: &str) {
        self.inner.unsupported(name);
    }
    fn transport(&mut self, transport: &'static str, packets_lost: u64, frames_dropped: u64) {
        self.inner
            .transport(transport, packets_lost, frames_dropped);
    }
}

/// The pull jobs of the server.
pub struct Jobs {
    index: Arc<Index>,
    auto: Arc<Automation>,
    hub: Arc<Hub>,
    opener: Arc<dyn SourceOpener>,
    events: Arc<dyn EventSink>,
    sink: Arc<dyn StreamSink>,
    config: JobsConfig,
    life: Lifecycle,
    entries: Mutex<HashMap<String, Arc<Entry>>>,
    /// Held through each create, start, stop and delete, so that `max_jobs` is checked against
    /// what runs.
    change: tokio::sync::Mutex<()>,
}

/// The stream key of job `id`.
pub fn job_stream_key(id: &str) -> Option<StreamKey> {
    StreamKey::new(JOBS_DOMAIN, JOBS_APP, id).ok()
}

fn field(field: &'static str, message: impl Into<String>) -> JobsError {
    JobsError::Field {
        field,
        message: message.into(),
    }
}

fn saved<T>(r: livesnap_store::Result<T>) -> Result<T, JobsError> {
    r.map_err(|e| JobsError::Save(e.to_string()))
}

impl Jobs {
    /// Loads the saved jobs and starts those that were neither stopped nor failed (the oldest
    /// first, up to `max_jobs`; the others are stopped, and say why); their pictures go
    /// through `auto`, their streams into `sink` (the hub's), their sources through `opener`.
    /// Runs and watchers live on `life`, as does the task that writes usage every
    /// [`USAGE_FLUSH`].
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        index: Arc<Index>,
        auto: Arc<Automation>,
        hub: Arc<Hub>,
        sink: Arc<dyn StreamSink>,
        opener: Arc<dyn SourceOpener>,
        events: Arc<dyn EventSink>,
        config: JobsConfig,
        life: &Lifecycle,
    ) -> Result<Arc<Jobs>, livesnap_store::Error> {
        let rows = index.all_jobs().await?;
        let jobs = Arc::new(Jobs {
            index,
            auto,
            hub,
            opener,
            events,
            sink,
            config,
            life: life.clone(),
            entries: Mutex::new(HashMap::new()),
            change: tokio::sync::Mutex::new(()),
        });
        let mut resumed = 0usize;
        for row in rows {
            let failed = row.state == JobState::Failed.as_str();
            let stopped = row.stopped != 0;
            let entry = jobs.add_entry(row);
            if failed {
                continue;
            }
            if stopped {
                // A crash between its stop and its state's save leaves the stored state behind.
                jobs.set_state(&entry, JobState::Stopped, None).await;
                continue;
            }
            if resumed >= jobs.config.max_jobs {
                warn!(job = %entry.link.id, max_jobs = jobs.config.max_jobs, "job not resumed: max_jobs jobs run already; stopped");
                entry.row().stopped = 1;
                let why = format!(
                    "not resumed at start: {} jobs ran already (setting max_jobs)",
                    jobs.config.max_jobs
                );
                jobs.set_state(&entry, JobState::Stopped, Some(why)).await;
                continue;
            }
            resumed += 1;
            jobs.run(&entry).await;
        }
        if resumed > 0 {
            info!(jobs = resumed, "pull jobs resumed");
        }
        let me = jobs.clone();
        let token = life.token.clone();
        let clock = jobs.hub.clock().clone();
        // Not cancelled halfway: a flush under way finishes (its interval is claimed already).
        life.spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    _ = token.cancelled() => break,
                    () = clock.sleep(USAGE_FLUSH) => {}
                }
                me.flush_all().await;
            }
        });
        Ok(jobs)
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Entry>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn entry(&self, id: &str) -> Result<Arc<Entry>, JobsError> {
        self.entries()
            .get(id)
            .cloned()
            .ok_or_else(|| JobsError::NotFound(id.chars().take(64).collect()))
    }

    /// Job `id` if `scope` sees it; another account's job is not found.
    fn entry_in(&self, id: &str, scope: JobScope<'_>) -> Result<Arc<Entry>, JobsError> {
        let entry = self.entry(id)?;
        let account = entry.row().account.clone();
        if scope.sees(account.as_deref()) {
            Ok(entry)
        } else {
            Err(JobsError::NotFound(id.chars().take(64).collect()))
        }
    }

    /// How many jobs of `account` (`None`: the administrator's) run.
    fn running_of(&self, account: Option<&str>) -> usize {
        self.entries()
            .values()
            .filter(|e| e.row().account.as_deref() == account && e.is_active())
            .count()
    }

    /// Makes the entry of a saved job and tells the automation which template it takes.
    fn add_entry(&self, row: JobRow) -> Arc<Entry> {
        let last = row
            .last_snapshot
            .as_deref()
            .and_then(|s| serde_json::from_str::<LastSnapshot>(s).ok());
        let link = Arc::new(JobLink {
            id: row.id.clone(),
            source: self.opener.redact(&row.input_url),
            frames: AtomicU64::new(to_u64(row.frames)),
            keyframes: AtomicU64::new(to_u64(row.keyframes)),
            pictures: AtomicU64::new(to_u64(row.pictures)),
            last: Mutex::new(last),
        });
        self.auto.bind_job(crate::auto::JobBinding {
            template: row.template.clone(),
            storage: row.storage.clone(),
            callback_url: row.callback_url.clone(),
            link: link.clone(),
        });
        let entry = Arc::new(Entry {
            link,
            row: Mutex::new(row.clone()),
            usage: Mutex::new(Usage::default()),
            io: tokio::sync::Mutex::new(()),
            dirty: std::sync::atomic::AtomicBool::new(false),
            run: Mutex::new(None),
        });
        self.entries().insert(row.id, entry.clone());
        entry
    }

    /// Runs `change` to its end on a task of its own: a request dropped halfway (its client
    /// gone, its time up) must not leave a source running that no job tracks, or a stop
    /// unsaved.
    async fn change<T, F>(
        self: &Arc<Self>,
        change: impl FnOnce(Arc<Self>) -> F,
    ) -> Result<T, JobsError>
    where
        F: std::future::Future<Output = Result<T, JobsError>> + Send + 'static,
        T: Send + 'static,
    {
        self.life
            .spawn(change(self.clone()))
            .await
            .map_err(|e| JobsError::Save(format!("the change did not finish: {e}")))?
    }

    /// How many jobs run (are neither stopped nor failed).
    pub fn running(&self) -> usize {
        self.entries().values().filter(|e| e.is_active()).count()
    }

    /// How many jobs are in each state, every state listed.
    pub fn by_state(&self) -> Vec<(JobState, usize)> {
        let states: Vec<String> = self
            .entries()
            .values()
            .map(|e| e.row().state.clone())
            .collect();
        JobState::ALL
            .into_iter()
            .map(|st| (st, states.iter().filter(|s| *s == st.as_str()).count()))
            .collect()
    }

    /// How many jobs are kept.
    pub fn count(&self) -> usize {
        self.entries().len()
    }

    /// Checks a submitted job.
    fn check(&self, spec: &JobSpec) -> Result<(), JobsError> {
        let name = spec.name.trim();
        if name.is_empty() || spec.name.len() > MAX_JOB_NAME_LEN {
            return Err(field(
                "name",
                format!("must be 1 to {MAX_JOB_NAME_LEN} bytes"),
            ));
        }
        if spec.name.chars().any(is_hostile_char) {
            return Err(field(
                "name",
                "must not contain control or bidirectional-override characters",
            ));
        }
        if spec.input_url.len() > MAX_URL_LEN || spec.input_url.chars().any(is_hostile_char) {
            return Err(field(
                "input_url",
                format!("must be a URL of at most {MAX_URL_LEN} bytes, without control characters"),
            ));
        }
        self.opener
            .check(&spec.input_url)
            .map_err(|e| field("input_url", e.to_string()))?;
        let template = self
            .auto
            .template(&spec.template)
            .ok_or_else(|| field("template", format!("no template named {:?}", spec.template)))?;
        let storage = spec.storage.as_deref().unwrap_or(&template.storage);
        if self.auto.location(storage).is_none() {
            return Err(field(
                "storage",
                format!("no storage location named {storage:?}"),
            ));
        }
        if let Some(url) = &spec.callback_url {
            let http = url.starts_with("http://") || url.starts_with("https://");
            if !http || url.len() > MAX_URL_LEN || url.chars().any(is_hostile_char) {
                return Err(field("callback_url", "must be an http:// or https:// URL"));
            }
        }
        Ok(())
    }

    /// Submits a job of `scope`'s account: checked, saved, started. Refused with
    /// [`JobsError::TooManyRunning`] when `max_jobs` jobs of that account run already (the
    /// account's own limit, else the server's).
    pub async fn create(
        self: &Arc<Self>,
        spec: JobSpec,
        scope: JobScope<'_>,
        max_jobs: Option<usize>,
    ) -> Result<Job, JobsError> {
        self.check(&spec)?;
        let account = scope.account();
        let max = max_jobs.unwrap_or(self.config.max_jobs);
        self.change(move |me| async move {
            let _change = me.change.lock().await;
            if me.running_of(account.as_deref()) >= max {
                return Err(JobsError::TooManyRunning { max });
            }
            if me.count() >= MAX_JOBS_KEPT {
                return Err(JobsError::TooManyKept { max: MAX_JOBS_KEPT });
            }
            let now = me.hub.clock().unix_ms();
            // Its id is its pictures' `job`: never a template's name too.
            let mut id = new_id(now);
            while me.auto.template(&id).is_some() {
                id = new_id(now);
            }
            let row = JobRow {
                id,
                name: spec.name.trim().to_string(),
                input_url: spec.input_url,
                template: spec.template,
                storage: spec.storage,
                callback_url: spec.callback_url,
                stopped: 0,
                state: JobState::Pending.as_str().into(),
                error: None,
                error_ms: None,
                created_ms: now,
                started_ms: None,
                frames: 0,
                keyframes: 0,
                pictures: 0,
                reconnects: 0,
                last_snapshot: None,
                account,
            };
            saved(me.index.insert_job(&row).await).map_err(|e| match e {
                // The template was deleted since it was checked.
                JobsError::Save(m) if m.contains("FOREIGN KEY") || m.contains("foreign key") => {
                    field("template", format!("no template named {:?}", row.template))
                }
                other => other,
            })?;
            let entry = me.add_entry(row);
            info!(job = %entry.link.id, source = %entry.link.source, "pull job submitted");
            me.run(&entry).await;
            Ok(me.view(&entry))
        })
        .await
    }

    /// Starts the job's source under a supervisor, and its watcher. The run is recorded before
    /// anything can see it fail.
    async fn run(self: &Arc<Self>, entry: &Arc<Entry>) {
        self.set_state(entry, JobState::Pending, None).await;
        let Some(key) = job_stream_key(&entry.link.id) else {
            // Ids are made by new_id (digits); a row edited by hand may hold anything.
            let message = format!("job id {:?} cannot name a stream", entry.link.id);
            return self.set_state(entry, JobState::Failed, Some(message)).await;
        };
        let (url, reconnects_base) = {
            let row = entry.row();
            (row.input_url.clone(), to_u64(row.reconnects))
        };
        let sink = Arc::new(CountingSink {
            inner: self.sink.clone(),
            link: entry.link.clone(),
        });
        let handle = SourceSupervisor::new(
            self.opener.clone(),
            url,
            sink,
            key,
            self.hub.clock().clone(),
        )
        .spawn(&self.life);
        let status = handle.status();
        let mut run = entry.run.lock().unwrap_or_else(|p| p.into_inner());
        let watcher = self
            .life
            .spawn(self.clone().watch(entry.clone(), status, reconnects_base));
        *run = Some(Run { handle, watcher });
    }

    /// Stops the job's run, if it has one, and waits for its watcher to have said its last.
    async fn end_run(&self, entry: &Entry) {
        if let Some(run) = entry.take_run() {
            run.handle.stop().await;
            let _ = run.watcher.await;
        }
    }

    /// Follows one run's supervisor until it fails or stops.
    async fn watch(
        self: Arc<Self>,
        entry: Arc<Entry>,
        mut status: watch::Receiver<SourceStatus>,
        reconnects_base: u64,
    ) {
        loop {
            let s = status.borrow_and_update().clone();
            entry.row().reconnects = to_i64(reconnects_base.saturating_add(s.reconnects));
            let done = matches!(s.state, SourceState::Failed { .. } | SourceState::Stopped);
            match s.state {
                SourceState::Connecting if s.reconnects == 0 => {
                    self.set_state(&entry, JobState::Pending, None).await
                }
                SourceState::Connecting => {}
                SourceState::Running { since_unix_ms, .. } => {
                    entry.row().started_ms = Some(since_unix_ms);
                    self.set_state(&entry, JobState::Running, None).await
                }
                SourceState::Retrying { error, .. } => {
                    self.set_state(&entry, JobState::Retrying, Some(error.to_string()))
                        .await
                }
                // The run stays recorded until a stop or a start takes it; it no longer
                // counts as running.
                SourceState::Failed { error } => {
                    self.set_state(&entry, JobState::Failed, Some(error.to_string()))
                        .await
                }
                SourceState::Stopped => {
                    // Stopped through the API (the stop saves that), or the server is
                    // shutting down: the job keeps its state and resumes at the next start.
                    let now = self.hub.clock().unix_ms();
                    self.flush_usage(&entry, now, false).await;
                    self.save(&entry).await;
                }
            }
            if done || status.changed().await.is_err() {
                break;
            }
        }
    }

    /// Moves a job to `state` (with `error`, if any): accounts its running time, saves it, and
    /// tells the event sink when the state changed.
    async fn set_state(&self, entry: &Entry, state: JobState, error: Option<String>) {
        let now = self.hub.clock().unix_ms();
        let (previous, started) = {
            let mut row = entry.row();
            let previous = JobState::parse(&row.state).unwrap_or(JobState::Pending);
            row.state = state.as_str().into();
            if let Some(e) = error {
                row.error = Some(e);
                row.error_ms = Some(now);
            }
            (previous, row.started_ms)
        };
        if previous == JobState::Running && state != JobState::Running {
            self.flush_usage(entry, now, false).await;
        }
        if state == JobState::Running {
            let mut usage = entry.usage();
            if usage.since.is_none() {
                // From when frames began to flow, as the supervisor saw it.
                usage.since = Some(started.map_or(now, |s| s.min(now)));
            }
        }
        self.save(entry).await;
        if previous != state {
            let job = self.view(entry);
            match &job.error {
                Some(e) if matches!(state, JobState::Retrying | JobState::Failed) => {
                    warn!(job = %job.id, from = previous.as_str(), to = state.as_str(), error = %e.message, "pull job state changed")
                }
                _ => {
                    info!(job = %job.id, from = previous.as_str(), to = state.as_str(), "pull job state changed")
                }
            }
            let url = job.callback_url.clone().or_else(|| {
                self.auto
                    .template(&job.template)
                    .and_then(|t| t.callback_url)
            });
            self.events
                .job_state_changed(&job, previous, url.as_deref());
        }
    }

    /// Writes the job's row (with its counters, as they are when the write starts) to the
    /// index; a failure is logged, and the flush loop writes it again.
    async fn save(&self, entry: &Entry) -> bool {
        let _io = entry.io.lock().await;
        let row = entry.snapshot_row();
        match self.index.update_job(&row).await {
            Ok(_) => {
                entry.dirty.store(false, Ordering::Relaxed);
                true
            }
            Err(e) => {
                entry.dirty.store(true, Ordering::Relaxed);
                warn!(job = %row.id, error = %e, "job not saved to the index; saved again at the next flush");
                false
            }
        }
    }

    /// Counts the job's running time up to `now` (it runs on when `running` is true) and
    /// writes what is counted and not yet written to its usage. The interval is claimed before
    /// any write, so two flushes never count it twice; a write that fails is kept for the next.
    async fn flush_usage(&self, entry: &Entry, now: i64, running: bool) {
        let _io = entry.io.lock().await;
        let unsaved: Vec<(String, u64)> = {
            let mut u = entry.usage();
            if let Some(since) = u.since {
                for (day, ms) in split_by_day(since, now) {
                    *u.unsaved.entry(day).or_default() += ms;
                }
                u.since = running.then_some(now.max(since));
            }
            u.unsaved.iter().map(|(d, ms)| (d.clone(), *ms)).collect()
        };
        let (id, name, account) = {
            let row = entry.row();
            (row.id.clone(), row.name.clone(), row.account.clone())
        };
        for (day, ms) in unsaved {
            if let Err(e) = self
                .index
                .add_usage(&day, &id, &name, account.as_deref(), ms)
                .await
            {
                warn!(job = %id, error = %e, "job usage not saved; written at the next flush");
                return;
            }
            let mut u = entry.usage();
            if let Some(left) = u.unsaved.get_mut(&day) {
                *left = left.saturating_sub(ms);
                if *left == 0 {
                    u.unsaved.remove(&day);
                }
            }
        }
    }

    /// Writes every running job's usage and counters, and what earlier writes left.
    async fn flush_all(&self) {
        let now = self.hub.clock().unix_ms();
        let entries: Vec<Arc<Entry>> = self.entries().values().cloned().collect();
        for e in entries {
            if e.needs_flush() {
                let running = e.usage().since.is_some();
                self.flush_usage(&e, now, running).await;
                self.save(&e).await;
            }
        }
    }

    /// Stops a job (it stays stopped across restarts). Stopping a stopped job does nothing.
    pub async fn stop(self: &Arc<Self>, id: &str, scope: JobScope<'_>) -> Result<Job, JobsError> {
        self.entry_in(id, scope)?;
        let id = id.to_string();
        self.change(move |me| async move {
            let _change = me.change.lock().await;
            let entry = me.entry(&id)?;
            entry.row().stopped = 1;
            me.end_run(&entry).await;
            me.set_state(&entry, JobState::Stopped, None).await;
            if entry.dirty.load(Ordering::Relaxed) {
                return Err(JobsError::Save(
                    "the job is stopped, but the index did not take it; it is saved again at the next flush".into(),
                ));
            }
            info!(job = %id, "pull job stopped");
            Ok(me.view(&entry))
        })
        .await
    }

    /// Starts a stopped or failed job again; a running one is left as it is. Refused with
    /// [`JobsError::TooManyRunning`] when `max_jobs` jobs run already.
    pub async fn start_job(
        self: &Arc<Self>,
        id: &str,
        scope: JobScope<'_>,
        max_jobs: Option<usize>,
    ) -> Result<Job, JobsError> {
        self.entry_in(id, scope)?;
        let id = id.to_string();
        let max = max_jobs.unwrap_or(self.config.max_jobs);
        self.change(move |me| async move {
            let _change = me.change.lock().await;
            let entry = me.entry(&id)?;
            if entry.is_active() {
                return Ok(me.view(&entry));
            }
            let account = entry.row().account.clone();
            if me.running_of(account.as_deref()) >= max {
                return Err(JobsError::TooManyRunning { max });
            }
            // A failed run is over; its watcher has said so or is saying it.
            me.end_run(&entry).await;
            entry.row().stopped = 0;
            me.run(&entry).await;
            info!(job = %id, "pull job started");
            Ok(me.view(&entry))
        })
        .await
    }

    /// Deletes a job: stopped (and saved so), then removed from the index. Its pictures and
    /// usage stay.
    pub async fn delete(self: &Arc<Self>, id: &str, scope: JobScope<'_>) -> Result<(), JobsError> {
        self.entry_in(id, scope)?;
        let id = id.to_string();
        self.change(move |me| async move {
            let _change = me.change.lock().await;
            let entry = me.entry(&id)?;
            entry.row().stopped = 1;
            me.end_run(&entry).await;
            me.set_state(&entry, JobState::Stopped, None).await;
            saved(me.index.delete_job(&id).await)?;
            me.entries().remove(&id);
            me.auto.unbind_job(&id);
            info!(job = %id, "pull job deleted");
            Ok(())
        })
        .await
    }

    /// The ids of the running jobs (neither stopped nor failed) `scope` sees.
    pub fn running_ids(&self, scope: JobScope<'_>) -> Vec<String> {
        self.entries()
            .values()
            .filter(|e| scope.sees(e.row().account.as_deref()) && e.is_active())
            .map(|e| e.link.id.clone())
            .collect()
    }

    /// The ids of the jobs `scope` sees.
    pub fn ids(&self, scope: JobScope<'_>) -> Vec<String> {
        self.entries()
            .values()
            .filter(|e| scope.sees(e.row().account.as_deref()))
            .map(|e| e.link.id.clone())
            .collect()
    }

    /// The job `id`, if `scope` sees it.
    pub fn get(&self, id: &str, scope: JobScope<'_>) -> Result<Job, JobsError> {
        let entry = self.entry_in(id, scope)?;
        Ok(self.view(&entry))
    }

    /// Jobs newest first, narrowed by `state` and `name`, one page at a time: `limit` jobs
    /// after `cursor` (the previous page's `next_cursor`), and the next page's cursor.
    pub fn list(
        &self,
        scope: JobScope<'_>,
        state: Option<JobState>,
        name: Option<&str>,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<(Vec<Job>, Option<String>), JobsError> {
        let limit = limit.unwrap_or(DEFAULT_JOB_PAGE);
        if limit == 0 || limit > MAX_JOB_PAGE {
            return Err(field("limit", format!("must be 1..={MAX_JOB_PAGE}")));
        }
        let after = match cursor {
            None => None,
            Some(c) => Some(
                livesnap_store::index::decode_cursor(c)
                    .ok()
                    .ok_or_else(|| field("cursor", "not a cursor this server handed out"))?,
            ),
        };
        let mut entries: Vec<Arc<Entry>> = self.entries().values().cloned().collect();
        entries.retain(|e| {
            let row = e.row();
            scope.sees(row.account.as_deref())
                && state.is_none_or(|s| row.state == s.as_str())
                && name.is_none_or(|n| row.name == n)
                && after
                    .as_ref()
                    .is_none_or(|(t, id)| (row.created_ms, &row.id) < (*t, id))
        });
        entries.sort_by_key(|e| {
            let row = e.row();
            std::cmp::Reverse((row.created_ms, row.id.clone()))
        });
        let next = (entries.len() > limit).then(|| {
            let row = entries[limit - 1].row();
            format!("{}.{}", row.created_ms, row.id)
        });
        let jobs = entries.iter().take(limit).map(|e| self.view(e)).collect();
        Ok((jobs, next))
    }

    /// Usage per UTC day and job from day `from` to day `to` (`YYYY-MM-DD`, inclusive),
    /// running time up to now included.
    pub async fn usage(
        &self,
        from: &str,
        to: &str,
        scope: JobScope<'_>,
    ) -> Result<Vec<UsageRow>, livesnap_store::Error> {
        self.flush_all().await;
        let mut rows = self.index.usage(from, to).await?;
        rows.retain(|r| scope.sees(r.account.as_deref()));
        Ok(rows)
    }

    /// Today (UTC) on the server's clock, `YYYY-MM-DD`.
    pub fn today(&self) -> String {
        utc_day(self.hub.clock().unix_ms())
    }

    /// The job whose stream is `key`, if it is a job's.
    pub fn job_of_stream(&self, key: &StreamKey) -> Option<String> {
        (key.domain == JOBS_DOMAIN
            && key.app == JOBS_APP
            && self.entries().contains_key(&key.stream))
        .then(|| key.stream.clone())
    }

    fn view(&self, entry: &Entry) -> Job {
        let row = entry.snapshot_row();
        let last = entry.link.last().or_else(|| {
            row.last_snapshot
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok())
        });
        let base = self.config.public_url.trim_end_matches('/');
        Job {
            account: row.account.clone(),
            stream: format!("{JOBS_DOMAIN}/{JOBS_APP}/{}", row.id),
            id: row.id,
            name: row.name,
            input_url: entry.link.source.clone(),
            template: row.template,
            storage: row.storage,
            callback_url: row.callback_url,
            state: JobState::parse(&row.state).unwrap_or(JobState::Pending),
            error: row.error.map(|message| JobFailure {
                message,
                time: rfc3339(row.error_ms.unwrap_or(0)),
            }),
            created_at: rfc3339(row.created_ms),
            started_at: row.started_ms.map(rfc3339),
            counters: JobCounters {
                frames: to_u64(row.frames),
                keyframes: to_u64(row.keyframes),
                pictures: to_u64(row.pictures),
                reconnects: to_u64(row.reconnects),
            },
            last_snapshot: last.map(|s: LastSnapshot| JobSnapshot {
                url: s
                    .id
                    .as_ref()
                    .map(|id| format!("{base}/v1/snapshots/{id}/image")),
                id: s.id,
                time: rfc3339(s.time_ms),
                storage: s.storage,
                key: s.key,
            }),
        }
    }
}

/// A character a name or URL must not hold: control characters, and the bidirectional
/// overrides and isolates that make text display other than it reads.
fn is_hostile_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
}

#[cfg(test)]
mod manager_tests {
    //! The whole job cycle in-process: a fake opener the test drives, a manual clock, a real
    //! SQLite index and automation.
    use super::*;
    use crate::auto::{AutoConfig, NoEvents};
    use crate::clock::ManualClock;
    use crate::hub::{HubConfig, HubSink};
    use crate::snapshot::{SnapshotConfig, Snapshotter};
    use crate::source::{Connected, SourceError, SourceFuture, SourceRequest};
    use livesnap_store::location::Location;
    use livesnap_store::spool::Spool;
    use tokio::sync::{mpsc, oneshot};

    struct Attempt {
        url: String,
        connected: Connected,
        finish: oneshot::Sender<Result<(), SourceError>>,
    }

    struct FakeOpener(mpsc::UnboundedSender<Attempt>);

    impl SourceOpener for FakeOpener {
        fn open(&self, request: SourceRequest) -> SourceFuture<'_> {
            let (finish, outcome) = oneshot::channel();
            let _ = self.0.send(Attempt {
                url: request.url,
                connected: request.connected,
                finish,
            });
            Box::pin(async move { outcome.await.unwrap_or(Ok(())) })
        }
        fn check(&self, url: &str) -> Result<(), SourceError> {
            if url.starts_with("rtsp://") {
                Ok(())
            } else {
                Err(SourceError::Unsupported(format!("cannot pull {url}")))
            }
        }
        fn redact(&self, url: &str) -> String {
            url.replace("secret", "***")
        }
    }

    /// Every `job.state_changed`, as (job, from, to).
    #[derive(Default)]
    struct Changes(Mutex<Vec<(String, JobState, JobState)>>);

    impl EventSink for Changes {
        fn stored_deliveries(
            &self,
            _: &livesnap_store::index::SnapshotRow,
            _: Option<&str>,
        ) -> Vec<livesnap_store::index::QueuedDelivery> {
            Vec::new()
        }
        fn send_queued(&self, _: Vec<livesnap_store::index::QueuedDelivery>) {}
        fn stream_published(&self, _: &crate::hub::LiveStream) {}
        fn stream_unpublished(&self, _: &crate::hub::LiveStream) {}
        fn job_state_changed(&self, job: &Job, previous: JobState, _: Option<&str>) {
            self.0
                .lock()
                .unwrap()
                .push((job.id.clone(), previous, job.state));
        }
    }

    struct Setup {
        clock: Arc<ManualClock>,
        jobs: Arc<Jobs>,
        life: Lifecycle,
        attempts: mpsc::UnboundedReceiver<Attempt>,
        changes: Arc<Changes>,
        index: Arc<Index>,
    }

    async fn setup(dir: &std::path::Path, clock: Arc<ManualClock>, max_jobs: usize) -> Setup {
        let url = format!("sqlite://{}", dir.join("index.db").display());
        let index = Arc::new(Index::open(&url).await.unwrap());
        let life = Lifecycle::new();
        let hub = Hub::with_clock(HubConfig::default(), clock.clone());
        let location = Arc::new(Location::local("local", &dir.join("pictures")).unwrap());
        let auto = Automation::start(
            hub.clone(),
            Snapshotter::new(SnapshotConfig::default()),
            index.clone(),
            Spool::open(dir.join("spool"), 1 << 20).unwrap(),
            HashMap::from([("local".to_string(), location)]),
            Arc::new(NoEvents),
            AutoConfig {
                import_path: None,
                source_ids: HashMap::new(),
                fallback: None,
                sweep_every: Duration::from_secs(3600),
            },
            &life,
        )
        .await
        .unwrap();
        if auto.template("t").is_none() {
            let spec = serde_json::from_str(r#"{"name":"t","interval_s":5}"#).unwrap();
            auto.put_template(spec, true).await.unwrap();
        }
        let (tx, attempts) = mpsc::unbounded_channel();
        let changes = Arc::new(Changes::default());
        let jobs = Jobs::start(
            index.clone(),
            auto,
            hub.clone(),
            Arc::new(HubSink(hub)),
            Arc::new(FakeOpener(tx)),
            changes.clone(),
            JobsConfig {
                max_jobs,
                public_url: "http://snap.example".into(),
            },
            &life,
        )
        .await
        .unwrap();
        Setup {
            clock,
            jobs,
            life,
            attempts,
            changes,
            index,
        }
    }

    fn spec(name: &str, url: &str) -> JobSpec {
        JobSpec {
            name: name.into(),
            input_url: url.into(),
            template: "t".into(),
            storage: None,
            callback_url: None,
        }
    }

    impl Setup {
        async fn state(&self, id: &str, want: JobState) -> Job {
            for _ in 0..500 {
                let job = self.jobs.get(id, JobScope::All).unwrap();
                if job.state == want {
                    return job;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!(
                "job {id} never became {want:?}: {:?}",
                self.jobs.get(id, JobScope::All)
            );
        }

        async fn attempt(&mut self) -> Attempt {
            tokio::time::timeout(Duration::from_secs(5), self.attempts.recv())
                .await
                .expect("an attempt in time")
                .expect("an attempt")
        }

        /// Advances the clock until the supervisor's wait for its next try is over.
        async fn next_attempt(&mut self) -> Attempt {
            for _ in 0..100 {
                if let Ok(a) = self.attempts.try_recv() {
                    return a;
                }
                self.clock.advance(Duration::from_millis(500));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!("no next attempt");
        }

        fn changes(&self) -> Vec<(JobState, JobState)> {
            self.changes
                .0
                .lock()
                .unwrap()
                .iter()
                .map(|c| (c.1, c.2))
                .collect()
        }
    }

    #[tokio::test]
    async fn a_job_runs_retries_stops_counts_its_usage_and_resumes_after_a_restart() {
        use JobState::*;
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::default());
        let mut t = setup(dir.path(), clock.clone(), 2).await;

        // Refused fields name themselves; nothing is kept.
        let refused = |r: Result<Job, JobsError>| match r {
            Err(JobsError::Field { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            refused(
                t.jobs
                    .create(spec("a", "http://x/y"), JobScope::All, None)
                    .await
            ),
            "input_url"
        );
        let mut bad = spec("a", "rtsp://cam/1");
        bad.template = "none".into();
        assert_eq!(
            refused(t.jobs.create(bad, JobScope::All, None).await),
            "template"
        );
        bad = spec("a", "rtsp://cam/1");
        bad.storage = Some("nowhere".into());
        assert_eq!(
            refused(t.jobs.create(bad, JobScope::All, None).await),
            "storage"
        );
        assert_eq!(
            refused(
                t.jobs
                    .create(spec(" ", "rtsp://cam/1"), JobScope::All, None)
                    .await
            ),
            "name"
        );
        assert_eq!(t.jobs.count(), 0);

        let job = t
            .jobs
            .create(
                spec("cam 1", "rtsp://admin:secret@cam/1"),
                JobScope::All,
                None,
            )
            .await
            .unwrap();
        assert_eq!(job.state, Pending);
        assert_eq!(job.input_url, "rtsp://admin:***@cam/1");
        assert_eq!(job.stream, format!("_jobs/job/{}", job.id));
        let id = job.id.clone();
        let mut a = t.attempt().await;
        assert_eq!(a.url, "rtsp://admin:secret@cam/1");
        a.connected.report();
        t.state(&id, Running).await;

        // The source drops: retrying with the error, then running again.
        a.finish
            .send(Err(SourceError::Io("connection reset".into())))
            .unwrap();
        let job = t.state(&id, Retrying).await;
        assert_eq!(job.error.unwrap().message, "connection reset");
        let mut b = t.next_attempt().await;
        b.connected.report();
        let job = t.state(&id, Running).await;
        assert_eq!(job.counters.reconnects, 1);
        assert!(job.error.is_some(), "the last error is kept after recovery");

        // max_jobs 2: a second runs, a third is refused with the limit named.
        let second = t
            .jobs
            .create(spec("cam 2", "rtsp://cam/2"), JobScope::All, None)
            .await
            .unwrap();
        let _second_attempt = t.attempt().await;
        match t
            .jobs
            .create(spec("cam 3", "rtsp://cam/3"), JobScope::All, None)
            .await
        {
            Err(e @ JobsError::TooManyRunning { max: 2 }) => {
                assert!(e.to_string().contains("max_jobs"), "{e}")
            }
            other => panic!("{other:?}"),
        }

        // Ten seconds of running, then a stop: the usage has them, the stop frees a slot.
        t.clock.advance(Duration::from_secs(10));
        let stopped = t.jobs.stop(&second.id, JobScope::All).await.unwrap();
        assert_eq!(stopped.state, Stopped);
        let today = t.jobs.today();
        let usage = t.jobs.usage(&today, &today, JobScope::All).await.unwrap();
        let ran = usage.iter().find(|u| u.job == id).map(|u| u.running_ms);
        assert!(ran.is_some_and(|ms| ms >= 10_000), "usage {usage:?}");
        // A stopped job that never ran has no usage.
        assert!(usage.iter().all(|u| u.job != second.id), "{usage:?}");
        let third = t
            .jobs
            .create(spec("cam 3", "rtsp://cam/3"), JobScope::All, None)
            .await
            .unwrap();
        let _third_attempt = t.attempt().await;

        assert_eq!(
            t.changes(),
            vec![
                (Pending, Running),
                (Running, Retrying),
                (Retrying, Running),
                (Pending, Stopped),
            ]
        );
        let (page, next) = t
            .jobs
            .list(JobScope::All, None, None, Some(2), None)
            .unwrap();
        assert_eq!(
            page.iter().map(|j| j.name.as_str()).collect::<Vec<_>>(),
            ["cam 3", "cam 2"]
        );
        let (rest, none) = t
            .jobs
            .list(JobScope::All, None, None, Some(2), next.as_deref())
            .unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].id, id);
        assert!(none.is_none());
        let (stopped_only, _) = t
            .jobs
            .list(JobScope::All, Some(Stopped), None, None, None)
            .unwrap();
        assert_eq!(stopped_only.len(), 1);

        // A restart: the running jobs resume by themselves, the stopped one stays stopped.
        t.life.stop().await;
        t.index.close().await;
        drop(t);
        let mut t = setup(dir.path(), clock.clone(), 2).await;
        let mut urls = vec![t.attempt().await.url, t.attempt().await.url];
        urls.sort();
        assert_eq!(urls, ["rtsp://admin:secret@cam/1", "rtsp://cam/3"]);
        assert_eq!(
            t.jobs.get(&second.id, JobScope::All).unwrap().state,
            Stopped
        );
        assert_eq!(t.jobs.get(&third.id, JobScope::All).unwrap().state, Pending);
        assert_eq!(
            t.jobs.get(&id, JobScope::All).unwrap().counters.reconnects,
            1
        );
        // Starting the stopped one passes max_jobs now.
        assert!(matches!(
            t.jobs.start_job(&second.id, JobScope::All, None).await,
            Err(JobsError::TooManyRunning { .. })
        ));
        t.jobs.delete(&third.id, JobScope::All).await.unwrap();
        assert!(matches!(
            t.jobs.get(&third.id, JobScope::All),
            Err(JobsError::NotFound(_))
        ));
        let started = t
            .jobs
            .start_job(&second.id, JobScope::All, None)
            .await
            .unwrap();
        assert_eq!(started.state, Pending);
        t.life.stop().await;
    }

    #[tokio::test]
    async fn usage_is_counted_once_however_many_ask_at_once_and_a_stop_survives_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::default());
        let mut t = setup(dir.path(), clock.clone(), 5).await;
        let job = t
            .jobs
            .create(spec("cam", "rtsp://cam/1"), JobScope::All, None)
            .await
            .unwrap();
        let mut a = t.attempt().await;
        a.connected.report();
        t.state(&job.id, JobState::Running).await;
        t.clock.advance(Duration::from_secs(10));
        let today = t.jobs.today();
        let ran = |rows: Vec<UsageRow>| -> i64 {
            rows.iter()
                .filter(|u| u.job == job.id)
                .map(|u| u.running_ms)
                .sum()
        };
        let (x, y, z) = tokio::join!(
            t.jobs.usage(&today, &today, JobScope::All),
            t.jobs.usage(&today, &today, JobScope::All),
            t.jobs.usage(&today, &today, JobScope::All)
        );
        for rows in [x, y, z] {
            assert!(ran(rows.unwrap()) <= 10_000);
        }
        assert_eq!(
            ran(t.jobs.usage(&today, &today, JobScope::All).await.unwrap()),
            10_000
        );
        t.clock.advance(Duration::from_secs(5));
        t.jobs.stop(&job.id, JobScope::All).await.unwrap();
        t.clock.advance(Duration::from_secs(5));
        assert_eq!(
            ran(t.jobs.usage(&today, &today, JobScope::All).await.unwrap()),
            15_000
        );

        // What a crash between a stop and its state's save leaves: stopped, state running. It
        // loads stopped, and is not started.
        let mut row = t.index.job(&job.id).await.unwrap().unwrap();
        row.state = "running".into();
        t.index.update_job(&row).await.unwrap();
        t.life.stop().await;
        t.index.close().await;
        drop(t);
        let mut t = setup(dir.path(), clock, 5).await;
        assert_eq!(
            t.jobs.get(&job.id, JobScope::All).unwrap().state,
            JobState::Stopped
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(t.attempts.try_recv().is_err(), "a stopped job was started");
        t.life.stop().await;
    }

    #[tokio::test]
    async fn a_source_that_is_not_found_five_times_or_refuses_credentials_fails() {
        use JobState::*;
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::default());
        let mut t = setup(dir.path(), clock, 10).await;
        let job = t
            .jobs
            .create(spec("gone", "rtsp://cam/none"), JobScope::All, None)
            .await
            .unwrap();
        for n in 1..=crate::source::NOT_FOUND_TRIES {
            let a = if n == 1 {
                t.attempt().await
            } else {
                t.next_attempt().await
            };
            a.finish
                .send(Err(SourceError::NotFound("404 Not Found".into())))
                .unwrap();
        }
        let failed = t.state(&job.id, Failed).await;
        assert_eq!(failed.error.unwrap().message, "404 Not Found");
        // A failed job no longer counts as running; starting it tries again.
        assert_eq!(t.jobs.running(), 0);
        t.jobs
            .start_job(&job.id, JobScope::All, None)
            .await
            .unwrap();
        t.attempt()
            .await
            .finish
            .send(Err(SourceError::Unauthorized("401 Unauthorized".into())))
            .unwrap();
        let failed = t.state(&job.id, Failed).await;
        assert_eq!(failed.error.unwrap().message, "401 Unauthorized");
        t.life.stop().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_time_is_split_at_utc_midnight() {
        // 2026-12-05T23:59:50Z to 2026-12-06T00:00:20Z.
        let midnight = 1_796_515_200_000;
        assert_eq!(utc_day(midnight), "2026-12-06");
        assert_eq!(utc_day(midnight - 1), "2026-12-05");
        assert_eq!(
            split_by_day(midnight - 10_000, midnight + 20_000),
            vec![
                ("2026-12-05".to_string(), 10_000),
                ("2026-12-06".to_string(), 20_000)
            ]
        );
        assert_eq!(
            split_by_day(midnight + 5, midnight + 7),
            vec![("2026-12-06".to_string(), 2)]
        );
        assert!(split_by_day(midnight, midnight).is_empty());
        assert!(split_by_day(midnight, midnight - 5).is_empty());
        // Three days and a bit: four rows, adding up.
        let rows = split_by_day(midnight - 1, midnight + 2 * DAY_MS + 1);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows.iter().map(|r| r.1).sum::<u64>(), 2 * DAY_MS as u64 + 2);
    }

    #[test]
    fn days_are_numbered_and_checked() {
        assert_eq!(day_number("1970-01-01"), Some(0));
        assert_eq!(day_number("2026-12-06"), Some(1_796_515_200_000 / DAY_MS));
        assert_eq!(day_number("2024-02-29"), Some(19_782));
        for bad in [
            "2026-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-1-01",
            "+026-01-01",
            "x",
        ] {
            assert_eq!(day_number(bad), None, "{bad}");
        }
        // Every day of four years round-trips through utc_day.
        for n in 19_000..20_461 {
            assert_eq!(day_number(&utc_day(n * DAY_MS)), Some(n));
        }
    }

    #[test]
    fn states_round_trip() {
        for s in ["pending", "running", "retrying", "failed", "stopped"] {
            assert_eq!(JobState::parse(s).unwrap().as_str(), s);
        }
        assert_eq!(JobState::parse("RUNNING"), None);
        let cursor = |c: &str| livesnap_store::index::decode_cursor(c).ok();
        assert_eq!(cursor("17.0001"), Some((17, "0001".into())));
        assert_eq!(cursor("17.a'b"), None);
        assert_eq!(cursor("x.1"), None);
    }
}
