//! `GET /metrics`: Prometheus text from one registry per server. The figures live where the work
//! is done (atomic counters in the hub, the snapshot service, automation, the spool, callbacks,
//! the RTMP listener); a collector registered once reads them at each scrape, so nothing on the
//! ingest or picture path knows about Prometheus.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ingest::frontend::ConnectionStats;
use livesnap_core::auto::Automation;
use livesnap_core::hub::{Hub, IngestTotals};
use livesnap_core::snapshot::Snapshotter;
use livesnap_core::stats::HistogramSnapshot;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::callbacks::Callbacks;

/// The server's registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
}

/// What the collector reads.
pub struct Sources {
    /// Live streams and ingest totals.
    pub hub: Arc<Hub>,
    /// Pictures, cache, decode and encode times.
    pub snapshots: Arc<Snapshotter>,
    /// Automatic pictures, storage writes, the spool.
    pub auto: Arc<Automation>,
    /// Webhook deliveries.
    pub callbacks: Arc<Callbacks>,
    /// Pull jobs.
    pub jobs: Arc<livesnap_core::jobs::Jobs>,
    /// Each front end's connections, by protocol.
    pub front_ends: Vec<(&'static str, Arc<ConnectionStats>)>,
    /// The HTTP listener's connections (in the connection series only, as `protocol="http"`).
    pub http: Arc<ConnectionStats>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sources")
    }
}

impl Metrics {
    /// A registry with every livesnap metric in it (names prefixed `livesnap_`).
    pub fn new(sources: Sources) -> Metrics {
        let mut registry = Registry::with_prefix("livesnap");
        registry.register_collector(Box::new(sources));
        Metrics { registry }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// One metric with labelled series.
fn family<M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    series: &[(&[(&str, &str)], M)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    if let [(&[], value)] = series {
        return value.encode(m);
    }
    for (labels, value) in series {
        let labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        value.encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(&[(&str, &str)], u64)],
) -> Result<(), std::fmt::Error> {
    let series: Vec<_> = series
        .iter()
        .map(|(l, v)| (*l, ConstCounter::new(*v)))
        .collect();
    family(enc, name, help, MetricType::Counter, &series)
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(&[(&str, &str)], i64)],
) -> Result<(), std::fmt::Error> {
    let series: Vec<_> = series
        .iter()
        .map(|(l, v)| (*l, ConstGauge::new(*v)))
        .collect();
    family(enc, name, help, MetricType::Gauge, &series)
}

fn histogram(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    h: &HistogramSnapshot,
) -> Result<(), std::fmt::Error> {
    let mut buckets = h.buckets.clone();
    // The encoder sums the buckets as it writes them, and writes f64::MAX as `le="+Inf"`.
    let below: u64 = buckets.iter().map(|b| b.1).sum();
    buckets.push((f64::MAX, h.count.saturating_sub(below)));
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(h.sum_s, h.count, &buckets, None)
}

fn as_gauge(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Collector for Sources {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut enc;
        let listeners: Vec<(&str, Arc<ConnectionStats>)> = self
            .front_ends
            .iter()
            .cloned()
            .chain([(crate::http::PROTOCOL, self.http.clone())])
            .collect();
        let fe_labels: Vec<[(&str, &str); 1]> =
            listeners.iter().map(|(p, _)| [("protocol", *p)]).collect();
        let per_fe = |f: fn(&ConnectionStats) -> u64| -> Vec<(&[(&str, &str)], u64)> {
            fe_labels
                .iter()
                .zip(&listeners)
                .map(|(l, (_, s))| (&l[..], f(s)))
                .collect()
        };
        let open: Vec<_> = per_fe(|s| load(&s.open))
            .into_iter()
            .map(|(l, v)| (l, as_gauge(v)))
            .collect();
        gauge(
            e,
            "connections",
            "Connections open now, per front end.",
            &open,
        )?;
        counter(
            e,
            "connections_accepted",
            "Connections accepted since start, per front end.",
            &per_fe(|s| load(&s.accepted)),
        )?;
        counter(
            e,
            "connections_refused",
            "Connections refused at the connection limit, per front end.",
            &per_fe(|s| load(&s.refused)),
        )?;
        // Every front end has a series before its first publish, so a dashboard has a line.
        let mut protocols: Vec<(&str, IngestTotals)> = self.hub.ingest_totals();
        for (p, _) in &self.front_ends {
            if !protocols.iter().any(|(q, _)| q == p) {
                protocols.push((p, IngestTotals::default()));
            }
        }
        protocols.sort_by_key(|(p, _)| *p);
        let labels: Vec<[(&str, &str); 1]> =
            protocols.iter().map(|(p, _)| [("protocol", *p)]).collect();
        let per = |f: fn(&IngestTotals) -> u64| -> Vec<(&[(&str, &str)], u64)> {
            labels
                .iter()
                .zip(&protocols)
                .map(|(l, (_, t))| (&l[..], f(t)))
                .collect()
        };
        let live: Vec<_> = per(|t| t.live)
            .into_iter()
            .map(|(l, v)| (l, as_gauge(v)))
            .collect();
        gauge(e, "streams_live", "Live streams now, per front end.", &live)?;
        counter(
            e,
            "ingest_frames",
            "Video frames received since start, per front end.",
            &per(|t| t.frames),
        )?;
        counter(
            e,
            "ingest_bytes",
            "Video bytes received since start, per front end.",
            &per(|t| t.bytes),
        )?;

        let by_state = self.jobs.by_state();
        let job_labels: Vec<[(&str, &str); 1]> = by_state
            .iter()
            .map(|(s, _)| [("state", s.as_str())])
            .collect();
        let jobs: Vec<(&[(&str, &str)], i64)> = job_labels
            .iter()
            .zip(&by_state)
            .map(|(l, (_, n))| (&l[..], as_gauge(*n as u64)))
            .collect();
        gauge(e, "jobs", "Pull jobs now, per state.", &jobs)?;

        let budget = self.hub.budget();
        gauge(
            e,
            "ingest_memory_bytes",
            "Memory ingest holds now (GOPs and partial messages), charged to ingest_memory_bytes.",
            &[(&[], as_gauge(budget.used()))],
        )?;
        gauge(
            e,
            "ingest_memory_limit_bytes",
            "The ingest memory budget.",
            &[(&[], as_gauge(budget.limit()))],
        )?;
        counter(
            e,
            "ingest_gop_trims",
            "GOPs trimmed to their keyframe to keep within the ingest budget.",
            &[(&[], self.hub.trims())],
        )?;
        counter(
            e,
            "ingest_budget_refused",
            "Frames or partial messages refused because the ingest budget was full even after trimming.",
            &[(&[], budget.refused())],
        )?;

        let snap = &self.snapshots.counters;
        let auto = &self.auto.counters;
        counter(
            e,
            "pictures",
            "Pictures answered or stored, by trigger (on_demand, template, wcs_auto).",
            &[
                (&[("trigger", "on_demand")], load(&snap.on_demand)),
                (&[("trigger", "template")], load(&auto.pictures_template)),
                (&[("trigger", "wcs_auto")], load(&auto.pictures_wcs_auto)),
            ],
        )?;
        counter(
            e,
            "cache_hits",
            "Picture requests answered from the cache (or by a decode another request made).",
            &[(&[], load(&snap.cache_hits))],
        )?;
        counter(
            e,
            "cache_misses",
            "Picture requests that had to decode.",
            &[(&[], load(&snap.cache_misses))],
        )?;
        counter(
            e,
            "decode_errors",
            "Decodes that failed.",
            &[(&[], load(&snap.decode_errors))],
        )?;
        counter(
            e,
            "latest_limited",
            "`latest` pictures of a GOP past the frame or byte limit, which show the newest frame within it.",
            &[(&[], load(&snap.latest_limited))],
        )?;
        counter(
            e,
            "pictures_timed_out_busy",
            "On-demand requests that ran out of time waiting for a decoder or their decode.",
            &[(&[], load(&snap.timed_out_busy))],
        )?;
        let work = self.snapshots.load();
        gauge(
            e,
            "picture_work_running",
            "Pictures being decoded and encoded now.",
            &[(&[], as_gauge(work.running as u64))],
        )?;
        gauge(
            e,
            "picture_work_running_heavy",
            "Heavy pictures among those running (latest over long GOPs, outputs near 8K): at most all workers but one.",
            &[(&[], as_gauge(work.running_heavy as u64))],
        )?;
        gauge(
            e,
            "picture_work_waiting",
            "Pictures waiting for a decoder or memory, by priority (on_demand goes first).",
            &[
                (
                    &[("priority", "on_demand")],
                    as_gauge(work.waiting_on_demand as u64),
                ),
                (
                    &[("priority", "scheduled")],
                    as_gauge(work.waiting_scheduled as u64),
                ),
            ],
        )?;
        gauge(
            e,
            "picture_memory_bytes",
            "Estimated memory of the picture work running now (its budget is picture_memory_bytes).",
            &[(&[], as_gauge(work.bytes))],
        )?;
        histogram(
            e,
            "decode_seconds",
            "Time to decode a picture's frames.",
            &snap.decode_time.snapshot(),
        )?;
        histogram(
            e,
            "encode_seconds",
            "Time to scale and encode a decoded picture.",
            &snap.encode_time.snapshot(),
        )?;

        let mut names: Vec<&String> = self.auto.location_counters().keys().collect();
        names.sort();
        let loc_labels: Vec<[(&str, &str); 1]> =
            names.iter().map(|n| [("location", n.as_str())]).collect();
        let per_loc =
            |f: fn(&livesnap_core::auto::LocationCounters) -> u64| -> Vec<(&[(&str, &str)], u64)> {
                loc_labels
                    .iter()
                    .zip(&names)
                    .map(|(l, n)| (&l[..], self.auto.location_counters().get(*n).map_or(0, f)))
                    .collect()
            };
        counter(
            e,
            "storage_writes",
            "Pictures written to each storage location.",
            &per_loc(|c| load(&c.writes)),
        )?;
        counter(
            e,
            "storage_failures",
            "Writes that failed (the picture went to the spool), per storage location.",
            &per_loc(|c| load(&c.failures)),
        )?;
        counter(
            e,
            "automatic_pictures_missed",
            "Due automatic pictures superseded, while waiting for a decoder, by a newer one of the same stream and template.",
            &[(&[], load(&auto.missed))],
        )?;
        counter(
            e,
            "automatic_pictures_failed",
            "Automatic pictures lost: not made, not started at shutdown, or the spool full.",
            &[(&[], load(&auto.failed))],
        )?;
        let spool = self.auto.spool().stats();
        gauge(
            e,
            "spool_entries",
            "Pictures waiting in the spool.",
            &[(&[], as_gauge(spool.queued))],
        )?;
        gauge(
            e,
            "spool_bytes",
            "Bytes waiting in the spool.",
            &[(&[], as_gauge(spool.bytes))],
        )?;
        counter(
            e,
            "spool_dropped",
            "Pictures dropped because the spool was full.",
            &[(&[], spool.dropped)],
        )?;
        let cb = &self.callbacks.counters;
        counter(
            e,
            "callback_deliveries",
            "Callback deliveries by state (delivered, retried tries, failed, dropped, left for the next start).",
            &[
                (&[("state", "delivered")], load(&cb.delivered)),
                (&[("state", "retried")], load(&cb.retried)),
                (&[("state", "failed")], load(&cb.failed)),
                (&[("state", "dropped")], load(&cb.dropped)),
                (&[("state", "left_for_next_start")], load(&cb.left_for_next_start)),
            ],
        )?;
        Ok(())
    }
}
