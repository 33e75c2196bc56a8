//! Automatic snapshots: templates and bindings, the worker that turns due [`Shot`]s into stored
//! pictures (storage location, index, spool when storage is down), retention, and the events
//! other systems are told about.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use livesnap_store::index::{Index, Mode, NewSnapshot, QueuedDelivery, SnapshotRow};
use livesnap_store::location::Location;
use livesnap_store::spool::{Spool, SpoolEntry};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::auto_rows::{binding_order, binding_row, template_json};
use crate::hub::{Hub, HubObserver, LiveStream, Shot};
use crate::lifecycle::Lifecycle;
use crate::path::PathVars;
use crate::snapshot::{SnapshotRequest, Snapshotter};
use crate::template::{
    resolve, BindingSpec, FieldError, Template, TemplateSpec, MAX_BINDINGS, MAX_TEMPLATES,
};
use crate::work::Priority;

/// How many due pictures may wait for a worker before new ones are dropped (and counted).
pub const SHOT_QUEUE: usize = 1024;
/// How many due pictures may be in the making (decoding, writing) at once. Past it the queue
/// fills, and a full queue drops new pictures on the ingest path instead of piling up tasks.
pub const MAX_SHOTS_IN_FLIGHT: usize = 256;

/// What other systems are told (the server turns these into signed webhooks).
pub trait EventSink: Send + Sync {
    /// The deliveries announcing a stored picture (`callback_url` is the template's own, if
    /// any); they are queued in the index in the transaction that indexes the picture.
    fn stored_deliveries(
        &self,
        row: &SnapshotRow,
        callback_url: Option<&str>,
    ) -> Vec<QueuedDelivery>;
    /// Sends deliveries that are in the index's queue already.
    fn send_queued(&self, deliveries: Vec<QueuedDelivery>);
    /// A stream started.
    fn stream_published(&self, stream: &LiveStream);
    /// A stream ended.
    fn stream_unpublished(&self, stream: &LiveStream);
    /// A pull job's state changed from `previous` to `job.state`; `callback_url` is the job's
    /// own, else its template's.
    fn job_state_changed(
        &self,
        _job: &crate::jobs::Job,
        _previous: crate::jobs::JobState,
        _callback_url: Option<&str>,
    ) {
    }
}

/// An [`EventSink`] that tells nobody.
pub struct NoEvents;

impl EventSink for NoEvents {
    fn stored_deliveries(&self, _: &SnapshotRow, _: Option<&str>) -> Vec<QueuedDelivery> {
        Vec::new()
    }
    fn send_queued(&self, _: Vec<QueuedDelivery>) {}
    fn stream_published(&self, _: &LiveStream) {}
    fn stream_unpublished(&self, _: &LiveStream) {}
}

/// Why a template or binding change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A field is wrong.
    #[error("{0}")]
    Field(FieldError),
    /// No such template or binding.
    #[error("{0} not found")]
    NotFound(String),
    /// The change conflicts with what exists.
    #[error("{0}")]
    Conflict(String),
    /// A create would pass a limit on how many are kept ([`MAX_TEMPLATES`], [`MAX_BINDINGS`]).
    #[error("at most {max} {what} are kept ({limit}); delete one first")]
    TooMany {
        /// `templates` or `bindings`.
        what: &'static str,
        /// The limit.
        max: usize,
        /// The limit's name.
        limit: &'static str,
    },
    /// Saving the change to the index failed; nothing was changed.
    #[error("cannot save automation settings: {0}")]
    Save(String),
    /// The saved templates and bindings could not be loaded (or imported) at start.
    #[error("cannot load automation settings: {0}")]
    Load(String),
}

/// Counters for the API and metrics.
#[derive(Debug, Default, Serialize)]
pub struct AutoCounters {
    /// Pictures stored (directly or from the spool).
    pub stored: AtomicU64,
    /// Pictures that went to the spool because storage failed.
    pub spooled: AtomicU64,
    /// Pictures lost: could not be made, or the spool was full.
    pub failed: AtomicU64,
    /// Due pictures not taken because a newer one of the same stream and template became due
    /// while they waited for a decoder (the newer one is taken instead).
    pub missed: AtomicU64,
    /// Pictures deleted by retention.
    pub retention_deleted: AtomicU64,
    /// Pictures made for templates (each counted once, whatever its modes).
    pub pictures_template: AtomicU64,
    /// Pictures made for WCS automatic snapshots.
    pub pictures_wcs_auto: AtomicU64,
}

/// Writes to one storage location.
#[derive(Debug, Default, Serialize)]
pub struct LocationCounters {
    /// Pictures written (directly; the spool counts its own).
    pub writes: AtomicU64,
    /// Writes that failed (the picture went to the spool).
    pub failures: AtomicU64,
}

/// How many recent pictures [`LagStats`] keeps.
pub const LAG_WINDOW: usize = 4096;

/// Time from a picture's due time to its written (stored, or spooled when storage is down), over
/// the last [`LAG_WINDOW`] pictures: how far behind the automation runs.
#[derive(Debug, Default)]
pub struct LagStats {
    recent: Mutex<std::collections::VecDeque<u32>>,
}

/// Percentiles of [`LagStats`], in milliseconds (`None` before the first picture).
#[derive(Debug, Serialize, PartialEq)]
pub struct LagSummary {
    /// Pictures in the window.
    pub count: usize,
    /// Median.
    pub p50: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
}

impl LagStats {
    /// Records one picture stored `lag_ms` after it was due.
    pub fn record(&self, lag_ms: i64) {
        let mut r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if r.len() == LAG_WINDOW {
            r.pop_front();
        }
        r.push_back(lag_ms.clamp(0, i64::from(u32::MAX)) as u32);
    }

    /// Percentiles over the window (nearest rank).
    pub fn summary(&self) -> LagSummary {
        let mut v: Vec<u32> = self
            .recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        v.sort_unstable();
        let rank = |p: f64| -> Option<f64> {
            if v.is_empty() {
                return None;
            }
            let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
            Some(f64::from(v[i]))
        };
        LagSummary {
            count: v.len(),
            p50: rank(0.50),
            p99: rank(0.99),
            max: v.last().map(|&m| f64::from(m)),
        }
    }
}

/// The metadata a spooled picture carries so it can be indexed once stored.
#[derive(Debug, Serialize, Deserialize)]
struct SpoolMeta {
    row: NewSnapshot,
    callback_url: Option<String>,
    keep_last: Option<u64>,
}

/// Settings of the automation.
pub struct AutoConfig {
    /// The file that kept templates and bindings before the index did (`automation.json`):
    /// imported once, into an index that holds none, then renamed (`None`: nothing to import).
    pub import_path: Option<PathBuf>,
    /// Domain -> SourceID (a domain not listed is its own SourceID).
    pub source_ids: HashMap<String, String>,
    /// A template for streams that no binding matches (the WCS automatic-snapshot shortcut).
    pub fallback: Option<Arc<Template>>,
    /// How often retention sweeps run.
    pub sweep_every: Duration,
}

/// What a pull job's stream is pictured with: a template, and the job's own storage and
/// callback URL instead of the template's when it has them.
#[derive(Debug, Clone)]
pub struct JobBinding {
    /// The template's name.
    pub template: String,
    /// Storage location instead of the template's.
    pub storage: Option<String>,
    /// Callback URL instead of the template's.
    pub callback_url: Option<String>,
    /// The job.
    pub link: Arc<crate::jobs::JobLink>,
}

/// Automatic snapshots for the whole server.
pub struct Automation {
    hub: Arc<Hub>,
    snapshots: Arc<Snapshotter>,
    index: Arc<Index>,
    spool: Arc<Spool>,
    locations: HashMap<String, Arc<Location>>,
    location_counters: HashMap<String, LocationCounters>,
    events: Arc<dyn EventSink>,
    templates: RwLock<HashMap<String, Arc<Template>>>,
    bindings: RwLock<Vec<BindingSpec>>,
    /// Each pull job's template and overrides, by job id (see [`crate::jobs`]).
    jobs: RwLock<HashMap<String, JobBinding>>,
    config: AutoConfig,
    /// Counters.
    pub counters: AutoCounters,
    /// Due-to-stored lag of recent pictures.
    pub lag: LagStats,
    /// Held through each template or binding change, so that the index and memory agree on
    /// what exists when the next change is checked.
    change_lock: tokio::sync::Mutex<()>,
    /// Runs each change to its end (see [`Automation::change`]).
    tracker: TaskTracker,
    /// The picture of each stream and template that waits for a decoder, by generation: a newer
    /// due picture supersedes it, so a stream that falls behind waits with one picture, never a
    /// queue.
    waiting: Mutex<HashMap<(u64, String), (u64, CancellationToken)>>,
    generation: AtomicU64,
    /// Set once what an earlier run left half done is undone; writes wait for it.
    reconciled: tokio::sync::OnceCell<()>,
}

impl Automation {
    /// Builds the automation, loads templates and bindings from the index (importing
    /// [`AutoConfig::import_path`] once, see [`crate::auto_rows`]), hooks into the hub, and starts
    /// the worker, the spool and the retention sweeper on `life`. When its token is cancelled,
    /// the worker takes no new due pictures and the pictures already in the making are finished
    /// (stored, or spooled) before its tasks end; the spool and the sweeper stop at once (a
    /// spooled picture whose upload is cut off stays on disk for the next start).
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        hub: Arc<Hub>,
        snapshots: Arc<Snapshotter>,
        index: Arc<Index>,
        spool: Arc<Spool>,
        locations: HashMap<String, Arc<Location>>,
        events: Arc<dyn EventSink>,
        config: AutoConfig,
        life: &Lifecycle,
    ) -> Result<Arc<Automation>, ConfigError> {
        let saved =
            crate::auto_rows::load(&index, config.import_path.as_deref(), hub.clock().unix_ms())
                .await?;
        let auto = Arc::new(Automation {
            hub: hub.clone(),
            snapshots,
            index,
            spool: spool.clone(),
            location_counters: locations
                .keys()
                .map(|k| (k.clone(), LocationCounters::default()))
                .collect(),
            locations,
            events,
            templates: RwLock::new(saved.templates),
            bindings: RwLock::new(saved.bindings),
            jobs: RwLock::new(HashMap::new()),
            config,
            counters: AutoCounters::default(),
            lag: LagStats::default(),
            change_lock: tokio::sync::Mutex::new(()),
            tracker: life.tracker.clone(),
            waiting: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            reconciled: tokio::sync::OnceCell::new(),
        });
        let (tx, rx) = mpsc::channel(SHOT_QUEUE);
        hub.set_automation(auto.clone(), tx);
        life.spawn(auto.clone().work(rx, life.clone()));
        let a = auto.clone();
        let deliver = move |entry: SpoolEntry| {
            let a = a.clone();
            async move { a.deliver_spooled(entry).await }
        };
        let clock = hub.clock().clone();
        let sleep = move |d| clock.sleep(d);
        life.spawn_until_cancelled(async move { spool.run(deliver, sleep).await });
        life.spawn_until_cancelled(auto.clone().sweep());
        Ok(auto)
    }

    fn waiting(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(u64, String), (u64, CancellationToken)>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read_templates(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Template>>> {
        self.templates.read().unwrap_or_else(|p| p.into_inner())
    }

    fn read_bindings(&self) -> std::sync::RwLockReadGuard<'_, Vec<BindingSpec>> {
        self.bindings.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Every template.
    pub fn templates(&self) -> Vec<TemplateSpec> {
        let mut v: Vec<_> = self
            .read_templates()
            .values()
            .map(|t| t.spec.clone())
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// One template.
    pub fn template(&self, name: &str) -> Option<TemplateSpec> {
        self.read_templates().get(name).map(|t| t.spec.clone())
    }

    /// Every binding.
    pub fn bindings(&self) -> Vec<BindingSpec> {
        self.read_bindings().clone()
    }

    /// The template a stream would take now: a pull job's stream its job's, any other the
    /// most specific binding's, else the fallback.
    pub fn template_for(&self, stream: &LiveStream) -> Option<Arc<Template>> {
        if stream.key.domain == crate::jobs::JOBS_DOMAIN {
            let jobs = self.jobs.read().unwrap_or_else(|p| p.into_inner());
            return jobs
                .get(&stream.key.stream)
                .and_then(|b| self.job_template(b));
        }
        let bindings = self.read_bindings();
        match resolve(bindings.iter(), &stream.key) {
            Some(b) => self.read_templates().get(&b.template).cloned(),
            None => self.config.fallback.clone(),
        }
    }

    /// The template of a job: its named template with the job's overrides and link.
    fn job_template(&self, b: &JobBinding) -> Option<Arc<Template>> {
        let named = self.read_templates().get(&b.template)?.clone();
        let mut t = (*named).clone();
        if let Some(storage) = &b.storage {
            t.spec.storage = storage.clone();
        }
        if let Some(url) = &b.callback_url {
            t.spec.callback_url = Some(url.clone());
        }
        t.job = Some(b.link.clone());
        Some(Arc::new(t))
    }

    /// Pictures job `binding.link.id`'s stream with `binding` (its stream, if live, at once).
    pub fn bind_job(&self, binding: JobBinding) {
        let id = binding.link.id.clone();
        self.jobs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), binding);
        self.retemplate_job(&id);
    }

    /// Forgets job `id` (deleted).
    pub fn unbind_job(&self, id: &str) {
        self.jobs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        self.retemplate_job(id);
    }

    fn retemplate_job(&self, id: &str) {
        if let Some(key) = crate::jobs::job_stream_key(id) {
            if let Some(s) = self.hub.get(&key) {
                s.set_template(self.template_for(&s));
            }
        }
    }

    /// Runs one change to its end on a task of its own: a request dropped halfway (its client
    /// gone) must not leave a change saved in the index but not applied, or the reverse.
    async fn change<T, F>(
        self: &Arc<Self>,
        change: impl FnOnce(Arc<Self>) -> F,
    ) -> Result<T, ConfigError>
    where
        F: Future<Output = Result<T, ConfigError>> + Send + 'static,
        T: Send + 'static,
    {
        self.tracker
            .spawn(change(self.clone()))
            .await
            .map_err(|e| ConfigError::Save(format!("the change did not finish: {e}")))?
    }

    /// Saves a change to the index; its failure is the answer and nothing else changes.
    fn saved<T>(r: livesnap_store::Result<T>) -> Result<T, ConfigError> {
        r.map_err(|e| ConfigError::Save(e.to_string()))
    }

    /// Creates (`create`) or replaces a template: saved in the index first, then live streams
    /// using it switch at once.
    pub async fn put_template(
        self: &Arc<Self>,
        spec: TemplateSpec,
        create: bool,
    ) -> Result<TemplateSpec, ConfigError> {
        let template = Arc::new(spec.check().map_err(ConfigError::Field)?);
        if !self.locations.contains_key(&template.spec.storage) {
            return Err(ConfigError::Field(FieldError {
                field: "storage",
                message: format!("no storage location named {:?}", template.spec.storage),
            }));
        }
        self.change(move |me| async move {
            let _change = me.change_lock.lock().await;
            let name = &template.spec.name;
            let (exists, count) = {
                let t = me.read_templates();
                (t.contains_key(name), t.len())
            };
            if create && exists {
                return Err(ConfigError::Conflict(format!("template {name} exists")));
            }
            // A template's pictures are its name's, a job's its id's: never the same.
            if me
                .jobs
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(name)
            {
                return Err(ConfigError::Conflict(format!(
                    "{name} is a pull job's id; choose another template name"
                )));
            }
            if !create && !exists {
                return Err(ConfigError::NotFound(format!("template {name}")));
            }
            if create && count >= MAX_TEMPLATES {
                return Err(ConfigError::TooMany {
                    what: "templates",
                    max: MAX_TEMPLATES,
                    limit: "MAX_TEMPLATES",
                });
            }
            let json = template_json(&template.spec)?;
            let now = me.hub.clock().unix_ms();
            Self::saved(me.index.upsert_template(name, &json, now).await)?;
            me.templates
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.clone(), template.clone());
            for s in me.hub.list() {
                if s.template().is_some_and(|t| t.spec.name == *name) {
                    s.set_template(me.template_for(&s));
                }
            }
            Ok(template.spec.clone())
        })
        .await
    }

    /// Deletes a template no binding uses: from the index first, then from live streams.
    pub async fn delete_template(self: &Arc<Self>, name: &str) -> Result<(), ConfigError> {
        let name = name.to_string();
        self.change(move |me| async move {
            let _change = me.change_lock.lock().await;
            if let Some(b) = me.read_bindings().iter().find(|b| b.template == name) {
                return Err(ConfigError::Conflict(format!(
                    "template {name} is used by the binding {}/{}/{}",
                    b.domain, b.app, b.stream
                )));
            }
            if let Some(j) = me
                .jobs
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .find(|j| j.template == name)
            {
                return Err(ConfigError::Conflict(format!(
                    "template {name} is used by the job {}",
                    j.link.id
                )));
            }
            if !me.read_templates().contains_key(&name) {
                return Err(ConfigError::NotFound(format!("template {name}")));
            }
            Self::saved(me.index.delete_template(&name).await)?;
            me.templates
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&name);
            for s in me.hub.list() {
                if s.template().is_some_and(|t| t.spec.name == name) {
                    s.set_template(me.template_for(&s));
                }
            }
            Ok(())
        })
        .await
    }

    /// Adds or replaces the binding for (domain, app, stream), saved in the index first. With
    /// `apply_to_live`, live streams take their (new) most specific binding at once; otherwise
    /// at their next publish.
    pub async fn put_binding(
        self: &Arc<Self>,
        spec: BindingSpec,
        apply_to_live: bool,
    ) -> Result<BindingSpec, ConfigError> {
        spec.check().map_err(ConfigError::Field)?;
        self.change(move |me| async move {
            let _change = me.change_lock.lock().await;
            if !me.read_templates().contains_key(&spec.template) {
                return Err(ConfigError::Field(FieldError {
                    field: "template",
                    message: format!("no template named {:?}", spec.template),
                }));
            }
            let (exists, count) = {
                let b = me.read_bindings();
                let same = |x: &&BindingSpec| {
                    x.domain == spec.domain && x.app == spec.app && x.stream == spec.stream
                };
                (b.iter().any(|x| same(&x)), b.len())
            };
            if !exists && count >= MAX_BINDINGS {
                return Err(ConfigError::TooMany {
                    what: "bindings",
                    max: MAX_BINDINGS,
                    limit: "MAX_BINDINGS",
                });
            }
            Self::saved(me.index.upsert_binding(&binding_row(&spec)?).await)?;
            {
                let mut b = me.bindings.write().unwrap_or_else(|p| p.into_inner());
                b.retain(|x| {
                    !(x.domain == spec.domain && x.app == spec.app && x.stream == spec.stream)
                });
                b.push(spec.clone());
                b.sort_by(binding_order);
            }
            if apply_to_live {
                me.apply_to_live();
            }
            Ok(spec)
        })
        .await
    }

    /// Removes the binding for (domain, app, stream), from the index first.
    pub async fn delete_binding(
        self: &Arc<Self>,
        domain: &str,
        app: &str,
        stream: &str,
        apply_to_live: bool,
    ) -> Result<(), ConfigError> {
        let (domain, app, stream) = (domain.to_string(), app.to_string(), stream.to_string());
        self.change(move |me| async move {
            let _change = me.change_lock.lock().await;
            let key = |x: &BindingSpec| x.domain == domain && x.app == app && x.stream == stream;
            if !me.read_bindings().iter().any(key) {
                return Err(ConfigError::NotFound(format!(
                    "binding {domain}/{app}/{stream}"
                )));
            }
            Self::saved(me.index.delete_binding(&domain, &app, &stream).await)?;
            me.bindings
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|x| !key(x));
            if apply_to_live {
                me.apply_to_live();
            }
            Ok(())
        })
        .await
    }

    fn apply_to_live(&self) {
        for s in self.hub.list() {
            s.set_template(self.template_for(&s));
        }
    }

    /// Waits until [`Automation::reconcile`] has run once (the first caller runs it).
    async fn reconciled(&self) {
        self.reconciled.get_or_init(|| self.reconcile()).await;
    }

    /// Undoes what a crash left half done, before any new picture is written: staging files
    /// in local locations, and objects of writes whose intent is still in the index but that
    /// were never indexed (an object whose key has a row, an overwritten picture, stays).
    async fn reconcile(&self) {
        for location in self.locations.values() {
            let loc = location.clone();
            match tokio::task::spawn_blocking(move || loc.remove_temp_files()).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => {
                    info!(
                        storage = location.name(),
                        files = n,
                        "staging files left by an earlier run removed"
                    )
                }
                Ok(Err(e)) => {
                    warn!(storage = location.name(), error = %e, "staging files could not be removed")
                }
                Err(e) => warn!(error = %e, "staging file sweep failed"),
            }
        }
        let intents = match self.index.write_intents().await {
            Ok(i) => i,
            Err(e) => {
                return warn!(error = %e, "write intents could not be read; left for the next start")
            }
        };
        let mut removed = 0u64;
        for intent in &intents {
            match self
                .index
                .has_object(&intent.storage, &intent.object_key)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    if let Some(location) = self.locations.get(&intent.storage) {
                        if let Err(e) = location.delete(&intent.object_key).await {
                            warn!(storage = %intent.storage, key = %intent.object_key, error = %e, "unindexed object of an unfinished write not removed; left for the next start");
                            continue;
                        }
                        removed += 1;
                    }
                }
                Err(e) => {
                    warn!(error = %e, "write intent not reconciled; left for the next start");
                    continue;
                }
            }
            if let Err(e) = self.index.drop_intent(&intent.id).await {
                warn!(error = %e, "write intent not dropped; reconciled again at the next start");
            }
        }
        if !intents.is_empty() {
            info!(
                unfinished = intents.len(),
                objects_removed = removed,
                "unfinished picture writes of an earlier run reconciled (objects without a row removed)"
            );
        }
    }

    async fn work(self: Arc<Self>, mut rx: mpsc::Receiver<Shot>, life: Lifecycle) {
        self.reconciled().await;
        let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_SHOTS_IN_FLIGHT));
        loop {
            let shot = tokio::select! {
                biased;
                _ = life.token.cancelled() => break,
                shot = rx.recv() => match shot {
                    Some(shot) => shot,
                    None => break,
                },
            };
            let permit = tokio::select! {
                biased;
                _ = life.token.cancelled() => break,
                permit = in_flight.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            // Each picture runs on its own task: the snapshot service bounds decoding, and a
            // slow storage write must not hold up other streams' pictures. The tracker keeps
            // shutdown waiting until the picture is stored or spooled.
            let me = self.clone();
            life.spawn(async move {
                let stream = shot.stream.clone();
                match me.store_shot(shot).await {
                    Ok(()) => {}
                    Err(crate::Error::Superseded) => {
                        me.counters.missed.fetch_add(1, Ordering::Relaxed);
                        stream.count_missed();
                        debug!(stream = %stream.key, "automatic snapshot superseded by a newer one while it waited");
                    }
                    Err(e) => {
                        me.counters.failed.fetch_add(1, Ordering::Relaxed);
                        warn!(stream = %stream.key, error = %e, "automatic snapshot failed");
                    }
                }
                drop(permit);
            });
        }
        // Due pictures whose making had not begun are not started once shutdown has begun.
        rx.close();
        let mut dropped = 0u64;
        while rx.try_recv().is_ok() {
            dropped += 1;
        }
        if dropped > 0 {
            self.counters.failed.fetch_add(dropped, Ordering::Relaxed);
            warn!(
                dropped,
                "shutdown: due pictures not yet started were not taken"
            );
        }
    }

    async fn store_shot(&self, shot: Shot) -> crate::Result<()> {
        let t = shot.template.clone();
        let request = SnapshotRequest {
            options: t.options,
            precision: shot.precision,
        };
        // This picture now waits for the stream and template; an older one still waiting gives
        // way to it.
        let slot = (shot.stream.id, t.spec.name.clone());
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        if let Some((_, older)) = self
            .waiting()
            .insert(slot.clone(), (generation, token.clone()))
        {
            older.cancel();
        }
        let made = self
            .snapshots
            .picture(
                &shot.stream,
                shot.view,
                request,
                Priority::Scheduled,
                Some(&token),
            )
            .await;
        {
            let mut waiting = self.waiting();
            if waiting.get(&slot).is_some_and(|(g, _)| *g == generation) {
                waiting.remove(&slot);
            }
        }
        let snap = made?;
        let key = &shot.stream.key;
        // A pull job's pictures are the job's: its id is their `job` and `{JobId}`, and its
        // sequence is its own.
        let job = t
            .job
            .as_ref()
            .map_or(t.spec.name.as_str(), |j| j.id.as_str());
        let time_ms = shot
            .due
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as i64;
        let sequence = match t.sequence {
            Some(_) => Some(
                self.index
                    .next_sequence(&key.domain, &key.app, &key.stream, job)
                    .await?,
            ),
            None => None,
        };
        let source_id = self
            .config
            .source_ids
            .get(&key.domain)
            .map_or(key.domain.as_str(), |s| s.as_str());
        let session = shot.stream.media_session_id();
        let vars = PathVars {
            domain: &key.domain,
            source_id,
            app: &key.app,
            stream: &key.stream,
            time: shot.due,
            sequence: sequence.unwrap_or(0),
            // An account's template shows its own name, not the account's prefix.
            job_id: if t.job.is_some() {
                job
            } else {
                crate::template::display_name(job)
            },
            media_session_id: &session,
            format: t.options.format.extension(),
        };
        let targets = [
            (Mode::Overwrite, t.overwrite.as_ref()),
            (Mode::Sequence, t.sequence.as_ref()),
        ];
        let mut newest = None;
        for (mode, pattern) in targets {
            let Some(pattern) = pattern else { continue };
            let row = NewSnapshot {
                domain: key.domain.clone(),
                app: key.app.clone(),
                stream: key.stream.clone(),
                job: job.to_string(),
                time_ms,
                sequence,
                mode,
                storage: t.spec.storage.clone(),
                key: pattern.render(&vars),
                size: snap.image.len() as u64,
                width: snap.width,
                height: snap.height,
                format: t.options.format.extension().to_string(),
            };
            let last = crate::jobs::LastSnapshot {
                id: None,
                time_ms,
                storage: row.storage.clone(),
                key: row.key.clone(),
            };
            let stored = self
                .write(
                    row,
                    snap.image.clone(),
                    t.spec.callback_url.clone(),
                    t.spec.retention.keep_last,
                )
                .await;
            newest = Some(crate::jobs::LastSnapshot {
                id: stored.map(|r| r.id),
                ..last
            });
        }
        if let (Some(link), Some(last)) = (&t.job, newest) {
            link.picture_made(last);
        }
        let wcs = self
            .config
            .fallback
            .as_ref()
            .is_some_and(|f| Arc::ptr_eq(f, &t));
        let by_trigger = if wcs {
            &self.counters.pictures_wcs_auto
        } else {
            &self.counters.pictures_template
        };
        by_trigger.fetch_add(1, Ordering::Relaxed);
        // Once per picture (a template with both modes writes it twice), on the schedule's clock.
        let lag = shot
            .stream
            .wall_now()
            .duration_since(shot.due)
            .unwrap_or_default();
        self.lag
            .record(i64::try_from(lag.as_millis()).unwrap_or(i64::MAX));
        Ok(())
    }

    /// Writes one picture and indexes it; when either fails, the picture goes to the spool,
    /// which retries both until it is stored and indexed.
    /// Returns the row when the picture was indexed at once (not spooled).
    async fn write(
        &self,
        row: NewSnapshot,
        data: Bytes,
        callback_url: Option<String>,
        keep_last: Option<u64>,
    ) -> Option<SnapshotRow> {
        let Some(location) = self.locations.get(&row.storage) else {
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
            error!(storage = %row.storage, "template names a storage location that does not exist");
            return None;
        };
        // While older pictures for this location wait in the spool, new ones queue behind them,
        // so that pictures are stored in the order they were taken.
        self.reconciled().await;
        let e = if self.spool.has_pending(&row.storage) {
            "older pictures for this location are still spooled".to_string()
        } else {
            match self
                .store_and_index(
                    location,
                    &row,
                    data.clone(),
                    callback_url.as_deref(),
                    keep_last,
                )
                .await
            {
                Ok(stored) => return Some(stored),
                Err(e) => e.to_string(),
            }
        };
        // Said once, after the spool answers: "spooled" only for a picture it kept.
        let meta = SpoolMeta {
            row,
            callback_url,
            keep_last,
        };
        // Metadata that cannot be written would be a picture stored but never indexed.
        let meta_json = match serde_json::to_value(&meta) {
            Ok(v) => v,
            Err(spool_error) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                error!(storage = %meta.row.storage, key = %meta.row.key, "picture lost: its write failed ({e}) and its metadata cannot be serialised for the spool ({spool_error})");
                return None;
            }
        };
        let entry = SpoolEntry {
            location: meta.row.storage.clone(),
            key: meta.row.key.clone(),
            data,
            meta: meta_json,
        };
        let (storage, key) = (entry.location.clone(), entry.key.clone());
        match self.spool.push(entry).await {
            Ok(()) => {
                self.counters.spooled.fetch_add(1, Ordering::Relaxed);
                warn!(%storage, %key, error = %e, "picture not stored and indexed; spooled for retry");
            }
            Err(spool_error) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                error!(%storage, %key, "picture lost: its write failed ({e}) and the spool could not keep it ({spool_error})");
            }
        }
        None
    }

    /// Delivers a spooled picture: stored and indexed, or an error for the spool to retry (or,
    /// when permanent, to move aside). A picture already indexed, delivered before a crash
    /// cut the spool off from removing it, is done.
    async fn deliver_spooled(&self, entry: SpoolEntry) -> livesnap_store::Result<()> {
        self.reconciled().await;
        let meta: SpoolMeta = serde_json::from_value(entry.meta).map_err(|e| {
            livesnap_store::Error::Undeliverable(format!("its metadata is unreadable: {e}"))
        })?;
        let row = &meta.row;
        let location = self.locations.get(&row.storage).ok_or_else(|| {
            livesnap_store::Error::Undeliverable(format!(
                "storage location {:?} is no longer configured",
                row.storage
            ))
        })?;
        if self
            .index
            .has_picture(&row.storage, &row.key, row.time_ms)
            .await?
        {
            return Ok(());
        }
        self.store_and_index(
            location,
            row,
            entry.data,
            meta.callback_url.as_deref(),
            meta.keep_last,
        )
        .await
        .map(|_| ())
    }

    /// Stores one picture and indexes it, in an order a crash cannot break: the write intent
    /// in the index first, then the object, then in one transaction the row, its
    /// `snapshot.stored` deliveries and the intent's end; then sends the deliveries and
    /// applies `keep_last`. A crash between the object and its row leaves the intent, which
    /// the next start reconciles (`reconcile`).
    async fn store_and_index(
        &self,
        location: &Location,
        row: &NewSnapshot,
        data: Bytes,
        callback_url: Option<&str>,
        keep_last: Option<u64>,
    ) -> livesnap_store::Result<SnapshotRow> {
        let intent = self
            .index
            .intend_write(&row.storage, &row.key, row.time_ms)
            .await?;
        let put = location.put(&row.key, data).await;
        if let Some(c) = self.location_counters.get(&row.storage) {
            let counter = if put.is_ok() { &c.writes } else { &c.failures };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        if let Err(e) = put {
            // Nothing was stored: the intent has nothing to reconcile.
            if let Err(de) = self.index.drop_intent(&intent).await {
                debug!(error = %de, "write intent left for the next start");
            }
            return Err(e);
        }
        let events = self.events.clone();
        let announce = move |stored: &SnapshotRow| events.stored_deliveries(stored, callback_url);
        // On failure the intent stays: the caller spools the picture, whose delivery stores
        // and indexes it again; should the process end first, the next start removes the
        // object and the spool then writes it anew.
        let (stored, deliveries) = self
            .index
            .insert_announced(row, Some(&intent), &announce)
            .await?;
        self.counters.stored.fetch_add(1, Ordering::Relaxed);
        debug!(key = %stored.key, id = %stored.id, "snapshot stored");
        self.events.send_queued(deliveries);
        if row.mode == Mode::Sequence && keep_last.is_some() {
            self.enforce(
                &row.domain,
                &row.app,
                &row.stream,
                &row.job,
                keep_last,
                None,
            )
            .await;
        }
        Ok(stored)
    }

    /// Deletes what retention no longer keeps for one stream: objects first, then rows.
    async fn enforce(
        &self,
        domain: &str,
        app: &str,
        stream: &str,
        job: &str,
        keep_last: Option<u64>,
        older_than_ms: Option<i64>,
    ) {
        let victims = match self
            .index
            .retention_victims(domain, app, stream, job, keep_last, older_than_ms, 500)
            .await
        {
            Ok(v) => v,
            Err(e) => return warn!(error = %e, "retention query failed"),
        };
        for row in victims {
            if let Err(e) = self.delete_row(&row).await {
                warn!(id = %row.id, key = %row.key, error = %e, "retention delete failed");
            } else {
                self.counters
                    .retention_deleted
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Deletes a picture: the object, then its row. A missing object is not an error; a row
    /// that is already gone (deleted meanwhile) is [`livesnap_store::Error::RowNotFound`].
    pub async fn delete_row(&self, row: &SnapshotRow) -> Result<(), livesnap_store::Error> {
        if let Some(location) = self.locations.get(&row.storage) {
            location.delete(&row.key).await?;
        }
        match self.index.delete(&row.id).await? {
            Some(_) => Ok(()),
            None => Err(livesnap_store::Error::RowNotFound(row.id.clone())),
        }
    }

    /// Retention by age (and keep-last for rows the per-picture check missed), every
    /// `sweep_every` on the hub's clock.
    async fn sweep(self: Arc<Self>) {
        let clock = self.hub.clock().clone();
        let mut next = clock.now();
        loop {
            clock.sleep_until(next).await;
            // A sweep that overran its period starts the next one a period after it ends.
            // Saturating: a period near Duration::MAX means "never again", not a panic.
            let planned = next.saturating_add(self.config.sweep_every);
            next = if clock.now() > planned {
                clock.now().saturating_add(self.config.sweep_every)
            } else {
                planned
            };
            // Every template's pictures, and every job's (their `job` is the job's id).
            let mut owners: Vec<(String, Arc<Template>)> = self
                .read_templates()
                .values()
                .map(|t| (t.spec.name.clone(), t.clone()))
                .collect();
            owners.extend(
                self.config
                    .fallback
                    .clone()
                    .map(|t| (t.spec.name.clone(), t)),
            );
            let jobs: Vec<JobBinding> = self
                .jobs
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .cloned()
                .collect();
            owners.extend(jobs.iter().filter_map(|b| {
                Some((
                    b.link.id.clone(),
                    self.read_templates().get(&b.template)?.clone(),
                ))
            }));
            for (job, t) in owners {
                let r = t.spec.retention;
                if r.keep_last.is_none() && r.max_age_s.is_none() {
                    continue;
                }
                let cutoff = r.max_age_s.map(|s| retention_cutoff_ms(clock.unix_ms(), s));
                let streams = match self.index.streams_with_sequence_rows(&job).await {
                    Ok(s) => s,
                    Err(e) => {
                        warn!(error = %e, "retention sweep query failed");
                        continue;
                    }
                };
                for (domain, app, stream) in streams {
                    self.enforce(&domain, &app, &stream, &job, r.keep_last, cutoff)
                        .await;
                }
            }
        }
    }

    /// The storage location named `name`.
    pub fn location(&self, name: &str) -> Option<&Arc<Location>> {
        self.locations.get(name)
    }

    /// Every storage location, by name.
    pub fn locations(&self) -> &HashMap<String, Arc<Location>> {
        &self.locations
    }

    /// Writes per storage location.
    pub fn location_counters(&self) -> &HashMap<String, LocationCounters> {
        &self.location_counters
    }

    /// The index.
    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }

    /// The spool.
    pub fn spool(&self) -> &Arc<Spool> {
        &self.spool
    }
}

/// The capture time (Unix ms) before which retention deletes sequence pictures: `now_ms` less
/// `max_age_s`. Saturating, so that no age (templates bound it to
/// [`crate::template::MAX_RETENTION_AGE_S`], but a saved file may hold anything) can wrap into a
/// cutoff in the future that would delete every picture: the cutoff is never after `now_ms`, and
/// a longer age never gives a later cutoff.
pub fn retention_cutoff_ms(now_ms: i64, max_age_s: u64) -> i64 {
    let age_ms = i64::try_from(max_age_s.saturating_mul(1000)).unwrap_or(i64::MAX);
    now_ms.saturating_sub(age_ms)
}

impl HubObserver for Automation {
    fn published(&self, stream: &Arc<LiveStream>) {
        let template = self.template_for(stream);
        if let Some(t) = &template {
            info!(stream = %stream.key, template = %t.spec.name, "automatic snapshots on");
        }
        stream.set_template(template);
        self.events.stream_published(stream);
    }

    fn unpublished(&self, stream: &Arc<LiveStream>) {
        self.events.stream_unpublished(stream);
    }
}

#[cfg(test)]
mod retention_tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_ages_that_once_wrapped_give_a_cutoff_in_the_past() {
        let now = 1_700_000_000_000;
        assert_eq!(retention_cutoff_ms(now, 3), now - 3000);
        // 2^64-1 s and 1e16 s wrapped `(s as i64) * 1000` to a cutoff after now.
        assert_eq!(
            retention_cutoff_ms(now, u64::MAX),
            now.saturating_sub(i64::MAX)
        );
        assert!(retention_cutoff_ms(now, 10_000_000_000_000_000) < 0);
        let ten_years = crate::template::MAX_RETENTION_AGE_S;
        assert_eq!(retention_cutoff_ms(now, ten_years), now - 315_360_000_000);
    }

    proptest! {
        /// For any clock and any age: the cutoff is never after now, is exact when nothing
        /// saturates, and a longer age never moves it later.
        #[test]
        fn cutoff_never_wraps_and_is_monotone(
            now in any::<i64>(),
            a in any::<u64>(),
            b in any::<u64>(),
            accepted in 1..=crate::template::MAX_RETENTION_AGE_S,
        ) {
            for age in [a, b, accepted] {
                prop_assert!(retention_cutoff_ms(now, age) <= now);
            }
            let (short, long) = (a.min(b), a.max(b));
            prop_assert!(retention_cutoff_ms(now, long) <= retention_cutoff_ms(now, short));
            // An accepted age on a clock after 1970 is computed exactly.
            let now = now.rem_euclid(1 << 50);
            prop_assert_eq!(
                retention_cutoff_ms(now, accepted),
                now - i64::try_from(accepted).unwrap() * 1000
            );
        }
    }
}

#[cfg(test)]
mod write_tests {
    use super::*;
    use crate::hub::HubConfig;
    use crate::snapshot::SnapshotConfig;

    /// Log lines, captured.
    #[derive(Clone, Default)]
    struct Logs(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Logs {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl tracing_subscriber::fmt::MakeWriter<'_> for Logs {
        type Writer = Logs;
        fn make_writer(&self) -> Logs {
            self.clone()
        }
    }

    /// Automation with one `local` location, the spool, a SQLite index in `dir` and no events.
    async fn started(
        dir: &std::path::Path,
        location: Arc<Location>,
        spool: Arc<Spool>,
    ) -> (Arc<Automation>, Arc<Index>, Lifecycle) {
        let url = format!("sqlite://{}", dir.join("index.db").display());
        let index = Arc::new(Index::open(&url).await.unwrap());
        let life = Lifecycle::new();
        let auto = Automation::start(
            Hub::new(HubConfig::default()),
            Snapshotter::new(SnapshotConfig::default()),
            index.clone(),
            spool,
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
        (auto, index, life)
    }

    /// Storage fails, and the spool cannot keep the picture either (full: `max_bytes` 0; or its
    /// folder gone): the picture is counted failed, not spooled, and the log says once that it
    /// was lost and both reasons, never "spooled for retry".
    #[tokio::test(flavor = "current_thread")]
    async fn a_picture_neither_storage_nor_the_spool_can_keep_is_lost_and_said_once() {
        for spool_gone in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let logs = Logs::default();
            let subscriber = tracing_subscriber::fmt()
                .with_writer(logs.clone())
                .with_ansi(false)
                .with_max_level(tracing::Level::DEBUG)
                .finish();
            let _guard = tracing::subscriber::set_default(subscriber);
            let root = dir.path().join("pictures");
            let location = Arc::new(Location::local("local", &root).unwrap());
            // A file where the picture's folder should be: every write under it fails.
            std::fs::write(root.join("blocked"), b"not a folder").unwrap();
            let spool_dir = dir.path().join("spool");
            let max_bytes = if spool_gone { 1 << 20 } else { 0 };
            let spool = Spool::open(&spool_dir, max_bytes).unwrap();
            if spool_gone {
                std::fs::remove_dir_all(&spool_dir).unwrap();
                std::fs::write(&spool_dir, b"not a folder either").unwrap();
            }
            let (auto, _, life) = started(dir.path(), location, spool.clone()).await;
            let row = NewSnapshot {
                domain: "_default".into(),
                app: "live".into(),
                stream: "cam".into(),
                job: "t".into(),
                time_ms: 1_700_000_000_000,
                sequence: Some(1),
                mode: Mode::Sequence,
                storage: "local".into(),
                key: "blocked/1.jpg".into(),
                size: 4,
                width: 2,
                height: 2,
                format: "jpg".into(),
            };
            auto.write(row, Bytes::from_static(b"jpeg"), None, None)
                .await;

            let c = &auto.counters;
            let counted = |a: &AtomicU64| a.load(Ordering::Relaxed);
            assert_eq!(
                (counted(&c.failed), counted(&c.spooled), counted(&c.stored)),
                (1, 0, 0),
                "spool gone: {spool_gone}"
            );
            assert_eq!(spool.stats().dropped, 1);
            assert_eq!(spool.stats().queued, 0);
            let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
            let said = |what: &str| text.lines().filter(|l| l.contains(what)).count();
            assert_eq!(said("picture lost"), 1, "{text}");
            assert_eq!(said("spooled for retry"), 0, "{text}");
            let lost = text.lines().find(|l| l.contains("picture lost")).unwrap();
            assert!(lost.contains("ERROR"), "{lost}");
            assert!(
                lost.contains("its write failed (storage location"),
                "{lost}"
            );
            let spool_said = lost
                .split_once("the spool could not keep it (")
                .map_or("", |(_, why)| why);
            let why = if spool_gone {
                "00000000000000000001.spool: not a directory"
            } else {
                "spool is full"
            };
            assert!(spool_said.to_lowercase().contains(why), "{lost}");
            // Only the one line is above debug.
            let loud = text
                .lines()
                .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
                .count();
            assert_eq!(loud, 1, "{text}");
            life.token.cancel();
        }
    }

    /// A spooled picture delivered again (the process ended after its row, before its spool
    /// file was removed) is indexed once: one row, no intent left, one `stored`.
    #[tokio::test(flavor = "current_thread")]
    async fn a_spooled_picture_delivered_twice_is_indexed_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("pictures");
        let location = Arc::new(Location::local("local", &root).unwrap());
        let spool = Spool::open(dir.path().join("spool"), 1 << 20).unwrap();
        let (auto, index, life) = started(dir.path(), location, spool).await;
        let meta = SpoolMeta {
            row: NewSnapshot {
                domain: "_default".into(),
                app: "live".into(),
                stream: "cam".into(),
                job: "t".into(),
                time_ms: 1_700_000_000_000,
                sequence: Some(7),
                mode: Mode::Sequence,
                storage: "local".into(),
                key: "live/cam/7.jpg".into(),
                size: 4,
                width: 2,
                height: 2,
                format: "jpg".into(),
            },
            callback_url: None,
            keep_last: None,
        };
        let entry = SpoolEntry {
            location: "local".into(),
            key: meta.row.key.clone(),
            data: Bytes::from_static(b"jpeg"),
            meta: serde_json::to_value(&meta).unwrap(),
        };
        for _ in 0..2 {
            auto.deliver_spooled(entry.clone()).await.unwrap();
        }
        let (rows, _) = index
            .list(&livesnap_store::index::ListFilter::default())
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].sequence, Some(7));
        assert!(index.write_intents().await.unwrap().is_empty());
        assert_eq!(auto.counters.stored.load(Ordering::Relaxed), 1);
        assert_eq!(std::fs::read(root.join("live/cam/7.jpg")).unwrap(), b"jpeg");

        // Metadata that no retry can read is refused as permanent (the spool moves it aside).
        let bad = SpoolEntry {
            meta: serde_json::json!({"not": "a row"}),
            ..entry
        };
        let e = auto.deliver_spooled(bad).await.unwrap_err();
        assert!(e.is_permanent(), "{e}");
        life.token.cancel();
    }
}

#[cfg(test)]
mod lag_tests {
    use super::*;

    #[test]
    fn lag_percentiles_by_nearest_rank_over_a_bounded_window() {
        let lag = LagStats::default();
        assert_eq!(lag.summary().p50, None);
        for ms in 1..=100 {
            lag.record(ms);
        }
        let s = lag.summary();
        assert_eq!(
            (s.count, s.p50, s.p99, s.max),
            (100, Some(50.0), Some(99.0), Some(100.0))
        );
        lag.record(-5); // a clock step backwards counts as no lag, not as a huge one
        assert_eq!(lag.summary().p50, Some(50.0));
        for _ in 0..LAG_WINDOW {
            lag.record(7);
        }
        let s = lag.summary();
        assert_eq!((s.count, s.max), (LAG_WINDOW, Some(7.0)));
    }
}
