//! The index on SQLite (a temp file) and on PostgreSQL (`LIVESNAP_TEST_POSTGRES_URL`, see
//! `scripts/postgres-test-server`): every test runs on both, each on its own database.

mod common;

use std::collections::{BTreeSet, HashSet};

use livesnap_store::{Error, Index, ListFilter, Mode, NewSnapshot, SnapshotRow};

/// A database for one test; the temp folder lives as long as it does.
struct Db {
    url: String,
    _tmp: Option<tempfile::TempDir>,
}

impl Db {
    async fn sqlite() -> Db {
        let tmp = tempfile::tempdir().unwrap();
        // A folder that does not exist yet: open creates it and the file.
        let url = format!("sqlite://{}", tmp.path().join("data/index.db").display());
        Db {
            url,
            _tmp: Some(tmp),
        }
    }
    async fn postgres(tag: &str) -> Db {
        Db {
            url: common::fresh_postgres_db(tag).await,
            _tmp: None,
        }
    }
    async fn open(&self) -> Index {
        Index::open(&self.url)
            .await
            .unwrap_or_else(|e| panic!("open {}: {e}", self.url))
    }
}

/// Runs `async fn $name(db: Db)` once on SQLite and once on PostgreSQL.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Db::sqlite().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::Db::postgres(stringify!($name)).await).await
            }
        }
    )*};
}

on_both!(
    insert_get_and_every_filter,
    pagination_covers_every_row_once_newest_first,
    delete_returns_the_row,
    next_sequence_is_persisted_across_reopen,
    next_sequence_is_atomic_under_concurrency,
    retention_victims_keep_last_and_max_age,
    upsert_overwrite_keeps_one_row,
    bad_filters_and_cursors_are_refused,
    streams_with_sequence_rows_lists_each_stream_once,
    migrations_are_idempotent,
    callback_queue_survives_reopen_in_order,
    a_row_its_deliveries_and_its_intent_commit_together,
    templates_and_bindings_upsert_load_delete_and_survive_reopen,
    a_binding_cannot_outlive_its_template,
    automation_import_is_all_or_nothing_and_only_into_an_empty_index,
    jobs_and_their_usage_survive_reopen,
    accounts_domains_and_keys_survive_reopen,
    an_accounts_view_holds_its_domains_and_its_streams_in_a_shared_domain,
);

/// The write path's transaction: the row, the deliveries made from it (with its id) and the
/// end of its write intent; an intent without a row is what a crash leaves, found at start.
async fn a_row_its_deliveries_and_its_intent_commit_together(db: Db) {
    use livesnap_store::index::{new_id, QueuedDelivery};
    let index = db.open().await;
    let mut row = snap(
        "_default",
        "live",
        "cam",
        "t",
        1_700_000_000_000,
        Mode::Sequence,
    );
    row.key = "cam/1.jpg".into();
    let done = index.intend_write("local", "cam/1.jpg", 1).await.unwrap();
    let crashed = index.intend_write("local", "cam/2.jpg", 2).await.unwrap();
    let announce = |stored: &SnapshotRow| {
        ["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"]
            .iter()
            .enumerate()
            .map(|(i, url)| QueuedDelivery {
                id: new_id(1_700_000_000_000 + i as i64),
                event: "snapshot.stored".into(),
                url: url.to_string(),
                body: format!(r#"{{"id":"{}"}}"#, stored.id),
                created_ms: 1_700_000_000_000 + i as i64,
            })
            .collect()
    };
    let (stored, deliveries) = index
        .insert_announced(&row, Some(&done), &announce)
        .await
        .unwrap();
    assert_eq!(deliveries.len(), 2);
    assert_eq!(index.queued_deliveries(10).await.unwrap(), deliveries);
    assert!(deliveries[0].body.contains(&stored.id));
    assert_eq!(index.get(&stored.id).await.unwrap().unwrap(), stored);
    // Only the write that never reached its row is left.
    let left = index.write_intents().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(
        (
            left[0].id.as_str(),
            left[0].storage.as_str(),
            left[0].object_key.as_str()
        ),
        (crashed.as_str(), "local", "cam/2.jpg")
    );
    assert!(index.has_object("local", "cam/1.jpg").await.unwrap());
    assert!(!index.has_object("local", "cam/2.jpg").await.unwrap());
    index.drop_intent(&crashed).await.unwrap();
    assert!(index.write_intents().await.unwrap().is_empty());
    // An overwrite row through the same path keeps one row per key.
    let mut over = row.clone();
    over.mode = Mode::Overwrite;
    over.key = "cam/latest.jpg".into();
    let (a, _) = index
        .insert_announced(&over, None, &announce)
        .await
        .unwrap();
    over.time_ms += 1000;
    let (b, _) = index
        .insert_announced(&over, None, &announce)
        .await
        .unwrap();
    assert_eq!(a.id, b.id);
    assert_eq!(index.queued_delivery_count().await.unwrap(), 6);
}

fn template_row(name: &str, ms: i64) -> livesnap_store::index::TemplateRow {
    livesnap_store::index::TemplateRow {
        name: name.into(),
        spec: format!(r#"{{"name":"{name}","interval_s":{ms}}}"#),
        created_ms: ms,
        updated_ms: ms,
    }
}

fn binding_row(app: &str, stream: &str, template: &str) -> livesnap_store::index::BindingRow {
    livesnap_store::index::BindingRow {
        domain: "_default".into(),
        app: app.into(),
        stream: stream.into(),
        template: template.into(),
        spec: format!(r#"{{"app":"{app}","stream":"{stream}","template":"{template}"}}"#),
    }
}

async fn templates_and_bindings_upsert_load_delete_and_survive_reopen(db: Db) {
    let index = db.open().await;
    assert!(index.load_templates().await.unwrap().is_empty());
    assert!(index.load_bindings().await.unwrap().is_empty());
    let (b, a) = (template_row("b", 5), template_row("a", 7));
    for t in [&b, &a] {
        index
            .upsert_template(&t.name, &t.spec, t.created_ms)
            .await
            .unwrap();
    }
    // Replacing keeps the creation time and the one row.
    let b2 = livesnap_store::index::TemplateRow {
        spec: r#"{"name":"b","interval_s":9}"#.into(),
        updated_ms: 11,
        ..b.clone()
    };
    index.upsert_template("b", &b2.spec, 11).await.unwrap();
    let x = binding_row("live", "*", "a");
    let y = binding_row("live", "cam", "b");
    index.upsert_binding(&y).await.unwrap();
    index.upsert_binding(&x).await.unwrap();
    // The same key again replaces, template and spec both.
    let x2 = binding_row("live", "*", "b");
    index.upsert_binding(&x2).await.unwrap();
    index.close().await;

    let index = db.open().await;
    assert_eq!(index.load_templates().await.unwrap(), vec![a.clone(), b2]);
    assert_eq!(
        index.load_bindings().await.unwrap(),
        vec![x2.clone(), y.clone()],
        "by (domain, app, stream)"
    );
    assert!(index
        .delete_binding("_default", "live", "cam")
        .await
        .unwrap());
    assert!(!index
        .delete_binding("_default", "live", "cam")
        .await
        .unwrap());
    assert!(index.delete_template("a").await.unwrap());
    assert!(!index.delete_template("a").await.unwrap());
    index.close().await;

    let index = db.open().await;
    assert_eq!(index.load_bindings().await.unwrap(), vec![x2]);
    let names: Vec<String> = index
        .load_templates()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["b"]);
}

async fn a_binding_cannot_outlive_its_template(db: Db) {
    let index = db.open().await;
    let t = template_row("t", 1);
    index.upsert_template("t", &t.spec, 1).await.unwrap();
    // No binding to a template that does not exist...
    let e = index
        .upsert_binding(&binding_row("live", "*", "nope"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Database(_)), "{e}");
    // ...and no deleting a template a binding uses.
    index
        .upsert_binding(&binding_row("live", "*", "t"))
        .await
        .unwrap();
    let e = index.delete_template("t").await.unwrap_err();
    assert!(matches!(e, Error::Database(_)), "{e}");
    assert_eq!(index.load_templates().await.unwrap(), vec![t]);
    assert!(index.delete_binding("_default", "live", "*").await.unwrap());
    assert!(index.delete_template("t").await.unwrap());
}

async fn automation_import_is_all_or_nothing_and_only_into_an_empty_index(db: Db) {
    let index = db.open().await;
    let templates = vec![template_row("a", 1), template_row("b", 2)];
    // A binding to a template that is not imported fails the whole import: nothing is written.
    let broken = vec![binding_row("live", "*", "a"), binding_row("x", "*", "gone")];
    assert!(index.import_automation(&templates, &broken).await.is_err());
    assert!(index.load_templates().await.unwrap().is_empty());
    assert!(index.load_bindings().await.unwrap().is_empty());

    let bindings = vec![binding_row("live", "*", "a")];
    assert!(index
        .import_automation(&templates, &bindings)
        .await
        .unwrap());
    assert_eq!(index.load_templates().await.unwrap(), templates);
    assert_eq!(index.load_bindings().await.unwrap(), bindings);
    // Once anything is held, an import writes nothing.
    assert!(!index
        .import_automation(&[template_row("c", 3)], &[])
        .await
        .unwrap());
    assert_eq!(index.load_templates().await.unwrap().len(), 2);
    index.delete_binding("_default", "live", "*").await.unwrap();
    index.delete_template("a").await.unwrap();
    index.delete_template("b").await.unwrap();
    // Empty again (everything deleted): an import may run, but the server only tries one when
    // its file is still there, and renames the file once it is imported.
    assert!(index
        .import_automation(&[template_row("c", 3)], &[])
        .await
        .unwrap());
}

async fn callback_queue_survives_reopen_in_order(db: Db) {
    use livesnap_store::index::{new_id, QueuedDelivery};
    let index = db.open().await;
    let d = |n: i64| QueuedDelivery {
        id: new_id(1_700_000_000_000 + n),
        event: "snapshot.stored".into(),
        url: format!("http://127.0.0.1:9/hook{n}"),
        body: format!(r#"{{"n":{n}}}"#),
        created_ms: 1_700_000_000_000 + n,
    };
    let (a, b, c) = (d(3), d(1), d(2));
    for x in [&a, &b, &c] {
        index.queue_delivery(x).await.unwrap();
    }
    // The same id again (a delivery re-queued after a restart) is not a second delivery.
    index.queue_delivery(&a).await.unwrap();
    assert_eq!(index.queued_delivery_count().await.unwrap(), 3);
    index.delivery_done(&c.id).await.unwrap();
    index.delivery_done("no-such-id").await.unwrap();
    index.close().await;

    let index = db.open().await;
    assert_eq!(
        index.queued_deliveries(10).await.unwrap(),
        vec![b.clone(), a.clone()],
        "oldest first, bodies byte for byte"
    );
    assert_eq!(index.queued_deliveries(1).await.unwrap(), vec![b]);
    index.ping().await.unwrap();
}

fn snap(domain: &str, app: &str, stream: &str, job: &str, time_ms: i64, mode: Mode) -> NewSnapshot {
    NewSnapshot {
        domain: domain.into(),
        app: app.into(),
        stream: stream.into(),
        job: job.into(),
        time_ms,
        sequence: (mode == Mode::Sequence).then_some(time_ms as u64),
        mode,
        storage: "local".into(),
        key: format!("{domain}/{app}/{stream}/{job}/{time_ms}.jpg"),
        size: 1000 + time_ms as u64,
        width: 640,
        height: 360,
        format: "jpg".into(),
    }
}

fn ids(rows: &[SnapshotRow]) -> Vec<String> {
    rows.iter().map(|r| r.id.clone()).collect()
}

async fn list_all(index: &Index, filter: ListFilter) -> Vec<SnapshotRow> {
    let (rows, next) = index
        .list(&ListFilter {
            limit: Some(1000),
            ..filter
        })
        .await
        .unwrap();
    assert!(next.is_none());
    rows
}

async fn insert_get_and_every_filter(db: Db) {
    let index = db.open().await;
    let mut inserted = Vec::new();
    for (i, (domain, app, stream, job, mode)) in [
        ("_default", "live", "cam1", "t1", Mode::Sequence),
        ("_default", "live", "cam2", "t1", Mode::Sequence),
        ("_default", "other", "cam1", "t2", Mode::Overwrite),
        ("example.com", "live", "cam1", "t1", Mode::Sequence),
        ("example.com", "live", "cam1", "job-9", Mode::Overwrite),
    ]
    .into_iter()
    .enumerate()
    {
        let new = snap(domain, app, stream, job, 1_000 * (i as i64 + 1), mode);
        let row = index.insert(&new).await.unwrap();
        // Every field comes back as given.
        assert_eq!(
            (
                &row.domain,
                &row.app,
                &row.stream,
                &row.job,
                row.time_ms,
                row.sequence,
                row.mode
            ),
            (
                &new.domain,
                &new.app,
                &new.stream,
                &new.job,
                new.time_ms,
                new.sequence,
                new.mode
            )
        );
        assert_eq!(
            (
                &row.storage,
                &row.key,
                row.size,
                row.width,
                row.height,
                &row.format
            ),
            (
                &new.storage,
                &new.key,
                new.size,
                new.width,
                new.height,
                &new.format
            )
        );
        assert_eq!(index.get(&row.id).await.unwrap().as_ref(), Some(&row));
        inserted.push(row);
    }
    assert_eq!(index.get("no-such-id").await.unwrap(), None);
    let id_set: HashSet<_> = inserted.iter().map(|r| &r.id).collect();
    assert_eq!(id_set.len(), inserted.len(), "ids are unique");

    // Newest first without a filter.
    let all = list_all(&index, ListFilter::default()).await;
    assert_eq!(
        ids(&all),
        ids(&inserted.iter().rev().cloned().collect::<Vec<_>>())
    );

    let count = |f: ListFilter| {
        let index = index.clone();
        async move {
            list_all(&index, f)
                .await
                .iter()
                .map(|r| r.time_ms)
                .collect::<Vec<_>>()
        }
    };
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        count(ListFilter {
            domain: s("example.com"),
            ..Default::default()
        })
        .await,
        [5000, 4000]
    );
    assert_eq!(
        count(ListFilter {
            app: s("other"),
            ..Default::default()
        })
        .await,
        [3000]
    );
    assert_eq!(
        count(ListFilter {
            stream: s("cam1"),
            ..Default::default()
        })
        .await,
        [5000, 4000, 3000, 1000]
    );
    assert_eq!(
        count(ListFilter {
            job: s("t1"),
            ..Default::default()
        })
        .await,
        [4000, 2000, 1000]
    );
    assert_eq!(
        count(ListFilter {
            mode: Some(Mode::Overwrite),
            ..Default::default()
        })
        .await,
        [5000, 3000]
    );
    assert_eq!(
        count(ListFilter {
            mode: Some(Mode::Sequence),
            ..Default::default()
        })
        .await,
        [4000, 2000, 1000]
    );
    // The time range is inclusive at both ends.
    assert_eq!(
        count(ListFilter {
            from_ms: Some(2000),
            to_ms: Some(4000),
            ..Default::default()
        })
        .await,
        [4000, 3000, 2000]
    );
    assert_eq!(
        count(ListFilter {
            from_ms: Some(4000),
            ..Default::default()
        })
        .await,
        [5000, 4000]
    );
    assert_eq!(
        count(ListFilter {
            to_ms: Some(1000),
            ..Default::default()
        })
        .await,
        [1000]
    );
    // Filters combine.
    assert_eq!(
        count(ListFilter {
            domain: s("_default"),
            app: s("live"),
            stream: s("cam1"),
            job: s("t1"),
            mode: Some(Mode::Sequence),
            from_ms: Some(1000),
            to_ms: Some(1000),
            ..Default::default()
        })
        .await,
        [1000]
    );
    assert!(count(ListFilter {
        domain: s("nowhere"),
        ..Default::default()
    })
    .await
    .is_empty());
    // Hostile filter values are data, not SQL.
    assert!(count(ListFilter {
        stream: s("x' OR '1'='1"),
        ..Default::default()
    })
    .await
    .is_empty());

    // Default limit is 50.
    for i in 0..60 {
        index
            .insert(&snap("d", "a", "s", "j", 10_000 + i, Mode::Sequence))
            .await
            .unwrap();
    }
    let (page, next) = index.list(&ListFilter::default()).await.unwrap();
    assert_eq!(page.len(), 50);
    assert!(next.is_some());
}

async fn pagination_covers_every_row_once_newest_first(db: Db) {
    let index = db.open().await;
    let mut expected = Vec::new();
    for i in 0..138i64 {
        // Many rows share a time (the newest two as well), so the order within a time must
        // come from the id.
        let t = 1_000_000 + (i / 4) * 1000;
        let stream = if i % 3 == 0 { "cam1" } else { "cam2" };
        expected.push(
            index
                .insert(&snap("_default", "live", stream, "t1", t, Mode::Sequence))
                .await
                .unwrap(),
        );
    }
    expected.sort_by(|a, b| (b.time_ms, &b.id).cmp(&(a.time_ms, &a.id)));

    for (limit, stream) in [
        (10u32, None),
        (1, None),
        (7, Some("cam1")),
        (138, None),
        (500, None),
    ] {
        let want: Vec<_> = expected
            .iter()
            .filter(|r| stream.is_none_or(|s| r.stream == s))
            .cloned()
            .collect();
        let mut got = Vec::new();
        let mut cursor = None;
        let mut pages = 0;
        loop {
            let filter = ListFilter {
                limit: Some(limit),
                cursor,
                stream: stream.map(str::to_string),
                ..Default::default()
            };
            let (rows, next) = index.list(&filter).await.unwrap();
            assert!(rows.len() <= limit as usize);
            pages += 1;
            got.extend(rows);
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
            assert!(pages <= 200, "pagination does not end");
        }
        assert_eq!(ids(&got), ids(&want), "limit {limit}, stream {stream:?}");
        assert_eq!(pages, want.len().div_ceil(limit as usize).max(1));
    }

    // A page cut inside a run of equal times goes on where it stopped.
    let (first, next) = index
        .list(&ListFilter {
            limit: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(first[0].time_ms, first[1].time_ms);
    let (second, _) = index
        .list(&ListFilter {
            limit: Some(2),
            cursor: next,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&second), ids(&expected[2..4]));
}

async fn delete_returns_the_row(db: Db) {
    let index = db.open().await;
    let a = index
        .insert(&snap("_default", "live", "cam1", "t1", 1, Mode::Sequence))
        .await
        .unwrap();
    let b = index
        .insert(&snap("_default", "live", "cam1", "t1", 2, Mode::Sequence))
        .await
        .unwrap();
    assert_eq!(index.delete(&a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(index.get(&a.id).await.unwrap(), None);
    assert_eq!(
        index.delete(&a.id).await.unwrap(),
        None,
        "deleting twice finds nothing"
    );
    assert_eq!(index.delete("unknown").await.unwrap(), None);
    assert_eq!(
        ids(&list_all(&index, ListFilter::default()).await),
        vec![b.id]
    );
}

async fn next_sequence_is_persisted_across_reopen(db: Db) {
    let index = db.open().await;
    for want in 1..=3 {
        assert_eq!(
            index
                .next_sequence("_default", "live", "cam1", "t1")
                .await
                .unwrap(),
            want
        );
    }
    // Counters are per (domain, app, stream, job).
    assert_eq!(
        index
            .next_sequence("_default", "live", "cam2", "t1")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        index
            .next_sequence("_default", "live", "cam1", "t2")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        index
            .next_sequence("other", "live", "cam1", "t1")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        index
            .next_sequence("_default", "app2", "cam1", "t1")
            .await
            .unwrap(),
        1
    );
    index.close().await;
    drop(index);

    let index = db.open().await;
    assert_eq!(
        index
            .next_sequence("_default", "live", "cam1", "t1")
            .await
            .unwrap(),
        4
    );
    assert_eq!(
        index
            .next_sequence("_default", "live", "cam2", "t1")
            .await
            .unwrap(),
        2
    );
}

async fn next_sequence_is_atomic_under_concurrency(db: Db) {
    let index = db.open().await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let index = index.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..5 {
                got.push(
                    index
                        .next_sequence("_default", "live", "cam1", "t1")
                        .await
                        .unwrap(),
                );
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(
        unique.len(),
        all.len(),
        "duplicate sequence numbers: {all:?}"
    );
    assert_eq!(unique, (1..=100).collect::<BTreeSet<u64>>());
    assert_eq!(
        index
            .next_sequence("_default", "live", "cam1", "t1")
            .await
            .unwrap(),
        101
    );
}

async fn retention_victims_keep_last_and_max_age(db: Db) {
    let index = db.open().await;
    // cam1/t1: ten sequence pictures at 1000..=10000, two of them sharing t=5000.
    let mut rows = Vec::new();
    for t in [1000, 2000, 3000, 4000, 5000, 5000, 7000, 8000, 9000, 10000] {
        rows.push(
            index
                .insert(&snap("_default", "live", "cam1", "t1", t, Mode::Sequence))
                .await
                .unwrap(),
        );
    }
    rows.sort_by(|a, b| (a.time_ms, &a.id).cmp(&(b.time_ms, &b.id))); // oldest first
                                                                      // Rows retention must never touch for cam1/t1.
    index
        .insert(&snap("_default", "live", "cam1", "t1", 1, Mode::Overwrite))
        .await
        .unwrap();
    index
        .insert(&snap("_default", "live", "cam1", "t2", 1, Mode::Sequence))
        .await
        .unwrap();
    index
        .insert(&snap("_default", "live", "cam2", "t1", 1, Mode::Sequence))
        .await
        .unwrap();
    index
        .insert(&snap("other", "live", "cam1", "t1", 1, Mode::Sequence))
        .await
        .unwrap();
    index
        .insert(&snap("_default", "app2", "cam1", "t1", 1, Mode::Sequence))
        .await
        .unwrap();

    let victims = |keep: Option<u64>, older: Option<i64>, limit: u32| {
        let index = index.clone();
        async move {
            ids(&index
                .retention_victims("_default", "live", "cam1", "t1", keep, older, limit)
                .await
                .unwrap())
        }
    };
    // Keep the newest 3: the 7 oldest go, oldest first.
    assert_eq!(victims(Some(3), None, 100).await, ids(&rows[..7]));
    // Keep 5: the boundary falls between the two rows at t=5000; only the older one goes.
    assert_eq!(victims(Some(5), None, 100).await, ids(&rows[..5]));
    assert_eq!(victims(Some(10), None, 100).await, Vec::<String>::new());
    assert_eq!(victims(Some(50), None, 100).await, Vec::<String>::new());
    assert_eq!(victims(Some(0), None, 100).await, ids(&rows));
    // Older than the cutoff (strictly).
    assert_eq!(victims(None, Some(4000), 100).await, ids(&rows[..3]));
    assert_eq!(victims(None, Some(5001), 100).await, ids(&rows[..6]));
    assert_eq!(victims(None, Some(0), 100).await, Vec::<String>::new());
    // Both rules: either one makes a victim.
    assert_eq!(victims(Some(8), Some(4000), 100).await, ids(&rows[..3]));
    assert_eq!(victims(Some(3), Some(2000), 100).await, ids(&rows[..7]));
    // The limit takes the oldest.
    assert_eq!(victims(Some(3), None, 2).await, ids(&rows[..2]));
    // No rule: nothing.
    assert_eq!(victims(None, None, 100).await, Vec::<String>::new());

    // Applying the victims and asking again finds none.
    for id in victims(Some(3), None, 100).await {
        index.delete(&id).await.unwrap();
    }
    assert_eq!(victims(Some(3), None, 100).await, Vec::<String>::new());
    assert_eq!(list_all(&index, ListFilter::default()).await.len(), 3 + 5);
}

async fn upsert_overwrite_keeps_one_row(db: Db) {
    let index = db.open().await;
    let mut new = snap("_default", "live", "cam1", "t1", 1000, Mode::Overwrite);
    new.key = "snapshot/live/cam1.jpg".into();
    let first = index.upsert_overwrite(&new).await.unwrap();
    let mut later = new.clone();
    later.time_ms = 2000;
    later.size = 4242;
    later.width = 1280;
    later.height = 720;
    later.format = "png".into();
    let second = index.upsert_overwrite(&later).await.unwrap();
    assert_eq!(second.id, first.id, "the row keeps its id");
    assert_eq!(
        (
            second.time_ms,
            second.size,
            second.width,
            second.height,
            second.format.as_str()
        ),
        (2000, 4242, 1280, 720, "png")
    );
    assert_eq!(index.get(&first.id).await.unwrap(), Some(second.clone()));
    // insert() of an overwrite picture is an upsert too.
    later.time_ms = 3000;
    let third = index.insert(&later).await.unwrap();
    assert_eq!(third.id, first.id);
    assert_eq!(third.time_ms, 3000);
    let overwrite = ListFilter {
        mode: Some(Mode::Overwrite),
        ..Default::default()
    };
    assert_eq!(list_all(&index, overwrite.clone()).await.len(), 1);

    // Another key, or the same key in another location, is another row.
    let mut other = later.clone();
    other.key = "snapshot/live/cam2.jpg".into();
    assert_ne!(index.upsert_overwrite(&other).await.unwrap().id, first.id);
    other.key = later.key.clone();
    other.storage = "s3".into();
    assert_ne!(index.upsert_overwrite(&other).await.unwrap().id, first.id);
    assert_eq!(list_all(&index, overwrite).await.len(), 3);

    // Sequence rows with the same key are not merged into the overwrite row.
    let mut seq = later.clone();
    seq.mode = Mode::Sequence;
    index.insert(&seq).await.unwrap();
    index.insert(&seq).await.unwrap();
    assert_eq!(
        list_all(
            &index,
            ListFilter {
                mode: Some(Mode::Sequence),
                ..Default::default()
            }
        )
        .await
        .len(),
        2
    );

    // Concurrent overwrites of one key still leave one row.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (index, mut row) = (index.clone(), new.clone());
        row.key = "snapshot/live/busy.jpg".into();
        row.time_ms = 5000 + i;
        tasks.push(tokio::spawn(async move {
            index.upsert_overwrite(&row).await.unwrap().id
        }));
    }
    let mut ids_seen = HashSet::new();
    for t in tasks {
        ids_seen.insert(t.await.unwrap());
    }
    assert_eq!(ids_seen.len(), 1);
}

async fn bad_filters_and_cursors_are_refused(db: Db) {
    let index = db.open().await;
    for limit in [0, 1001] {
        let e = index
            .list(&ListFilter {
                limit: Some(limit),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidFilter(_)), "{e}");
    }
    let e = index
        .list(&ListFilter {
            from_ms: Some(2),
            to_ms: Some(1),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidFilter(_)), "{e}");
    for cursor in ["", "garbage", "12.'; DROP TABLE snapshots; --"] {
        let e = index
            .list(&ListFilter {
                cursor: Some(cursor.into()),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidCursor(_)), "{e}");
    }
    let mut huge = snap("_default", "live", "cam1", "t1", 1, Mode::Sequence);
    huge.size = u64::MAX;
    assert!(matches!(
        index.insert(&huge).await,
        Err(Error::OutOfRange { field: "size", .. })
    ));
    assert!(matches!(
        Index::open("mysql://x").await,
        Err(Error::InvalidIndexUrl { .. })
    ));
}

async fn streams_with_sequence_rows_lists_each_stream_once(db: Db) {
    let index = db.open().await;
    for (d, a, s, j, m) in [
        ("_default", "live", "cam2", "t1", Mode::Sequence),
        ("_default", "live", "cam1", "t1", Mode::Sequence),
        ("_default", "live", "cam1", "t1", Mode::Sequence),
        ("b.com", "live", "cam1", "t1", Mode::Sequence),
        ("_default", "live", "cam3", "t1", Mode::Overwrite),
        ("_default", "live", "cam4", "t2", Mode::Sequence),
    ] {
        index.insert(&snap(d, a, s, j, 1, m)).await.unwrap();
    }
    let t = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(
        index.streams_with_sequence_rows("t1").await.unwrap(),
        vec![
            t("_default", "live", "cam1"),
            t("_default", "live", "cam2"),
            t("b.com", "live", "cam1")
        ]
    );
    assert_eq!(
        index.streams_with_sequence_rows("t2").await.unwrap(),
        vec![t("_default", "live", "cam4")]
    );
    assert!(index
        .streams_with_sequence_rows("none")
        .await
        .unwrap()
        .is_empty());
}

async fn migrations_are_idempotent(db: Db) {
    let index = db.open().await;
    let row = index
        .insert(&snap("_default", "live", "cam1", "t1", 1, Mode::Sequence))
        .await
        .unwrap();
    index.close().await;
    // Opening again (another node, a restart) applies nothing twice and keeps the data.
    let (a, b) = tokio::join!(db.open(), db.open());
    assert_eq!(a.get(&row.id).await.unwrap(), Some(row.clone()));
    assert_eq!(b.get(&row.id).await.unwrap(), Some(row));
}

/// Jobs: inserted, updated as they run, read back after a reopen, deleted; a job's template
/// cannot be deleted under it; usage adds up per day and job and outlives the job.
async fn jobs_and_their_usage_survive_reopen(db: Db) {
    use livesnap_store::index::JobRow;
    let index = db.open().await;
    let t = template_row("t", 1);
    index.upsert_template("t", &t.spec, 1).await.unwrap();
    let job = |id: &str, created_ms| JobRow {
        id: id.into(),
        name: format!("cam {id}"),
        input_url: "rtsp://u:secret@cam/1".into(),
        template: "t".into(),
        storage: None,
        callback_url: Some("http://127.0.0.1:9/hook".into()),
        stopped: 0,
        state: "pending".into(),
        error: None,
        error_ms: None,
        created_ms,
        started_ms: None,
        frames: 0,
        keyframes: 0,
        pictures: 0,
        reconnects: 0,
        last_snapshot: None,
        account: None,
    };
    let mut a = job("1", 10);
    a.account = Some("acme".into());
    index.insert_job(&a).await.unwrap();
    index.insert_job(&job("2", 20)).await.unwrap();
    // The same id twice, or a template that does not exist: refused.
    assert!(index.insert_job(&a).await.is_err());
    let mut orphan = job("3", 30);
    orphan.template = "gone".into();
    assert!(matches!(
        index.insert_job(&orphan).await.unwrap_err(),
        Error::Database(_)
    ));
    a.state = "running".into();
    a.started_ms = Some(15);
    a.frames = 250;
    a.keyframes = 10;
    a.pictures = 2;
    a.reconnects = 1;
    a.error = Some("connection reset".into());
    a.error_ms = Some(12);
    a.last_snapshot = Some(r#"{"id":"x"}"#.into());
    // What does not change as a job runs stays as it was.
    let mut edited = a.clone();
    edited.name = "renamed".into();
    assert!(index.update_job(&edited).await.unwrap());
    assert!(!index.update_job(&job("9", 1)).await.unwrap());
    assert!(matches!(
        index.delete_template("t").await.unwrap_err(),
        Error::Database(_)
    ));

    index
        .add_usage("2026-12-05", "1", "cam 1", Some("acme"), 1500)
        .await
        .unwrap();
    index
        .add_usage("2026-12-05", "1", "cam 1", Some("acme"), 2500)
        .await
        .unwrap();
    index
        .add_usage("2026-12-06", "1", "cam 1", Some("acme"), 7)
        .await
        .unwrap();
    index
        .add_usage("2026-12-05", "2", "cam 2", Some("acme"), 1)
        .await
        .unwrap();
    assert!(index
        .add_usage("2026-12-5", "1", "x", None, 1)
        .await
        .is_err());
    index.close().await;

    let index = db.open().await;
    assert_eq!(index.job("1").await.unwrap(), Some(a.clone()));
    assert_eq!(index.job("nope").await.unwrap(), None);
    let all = index.all_jobs().await.unwrap();
    assert_eq!(
        all.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        ["1", "2"]
    );
    assert!(index.delete_job("1").await.unwrap());
    assert!(!index.delete_job("1").await.unwrap());
    let usage = index.usage("2026-12-05", "2026-12-06").await.unwrap();
    let rows: Vec<(&str, &str, i64)> = usage
        .iter()
        .map(|u| (u.day.as_str(), u.job.as_str(), u.running_ms))
        .collect();
    assert_eq!(
        rows,
        [
            ("2026-12-05", "1", 4000),
            ("2026-12-05", "2", 1),
            ("2026-12-06", "1", 7)
        ]
    );
    assert_eq!(usage[0].job_name, "cam 1");
    assert_eq!(usage[0].account.as_deref(), Some("acme"));
    assert_eq!(
        index.usage("2026-12-06", "2026-12-06").await.unwrap().len(),
        1
    );
    assert!(index.usage("2026-12-07", "2026-12-05").await.is_err());
    assert!(index.usage("x", "2026-12-05").await.is_err());
    // Once no job uses it, the template can go.
    assert!(index.delete_job("2").await.unwrap());
    assert!(index.delete_template("t").await.unwrap());
}

/// Accounts: a domain is one account's; keys are kept by digest; deleting an account takes its
/// domains and keys.
async fn accounts_domains_and_keys_survive_reopen(db: Db) {
    use livesnap_store::index::{AccountRow, KeyRow};
    let index = db.open().await;
    let account = |name: &str| AccountRow {
        name: name.into(),
        spec: "{}".into(),
        created_ms: 1,
        updated_ms: 1,
    };
    let doms = |d: &[&str]| d.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    index
        .put_account(&account("a"), &doms(&["a.example", "a2.example"]), true)
        .await
        .unwrap();
    index
        .put_account(&account("b"), &doms(&["b.example"]), true)
        .await
        .unwrap();
    // A name twice, or another's domain: refused whole (the account is not half made).
    assert!(index.put_account(&account("a"), &[], true).await.is_err());
    assert!(index
        .put_account(&account("c"), &doms(&["c.example", "a.example"]), true)
        .await
        .is_err());
    assert_eq!(index.accounts().await.unwrap().len(), 2);
    // Replaced: its domains are exactly the new ones.
    let mut a = account("a");
    a.spec = r#"{"max_jobs":3}"#.into();
    a.updated_ms = 2;
    index
        .put_account(&a, &doms(&["a3.example"]), false)
        .await
        .unwrap();
    let key = |id: &str, account: &str, hash: &str| KeyRow {
        id: id.into(),
        account: account.into(),
        role: "admin".into(),
        label: Some("ops".into()),
        key_hash: hash.into(),
        created_ms: 5,
        last_used_ms: None,
    };
    index.insert_key(&key("k1", "a", "h1")).await.unwrap();
    index.insert_key(&key("k2", "b", "h2")).await.unwrap();
    assert!(
        index.insert_key(&key("k3", "a", "h1")).await.is_err(),
        "a digest twice"
    );
    let mut bad_role = key("k4", "a", "h4");
    bad_role.role = "root".into();
    assert!(index.insert_key(&bad_role).await.is_err());
    index.key_used("k1", 99).await.unwrap();
    index.close().await;

    let index = db.open().await;
    let accounts = index.accounts().await.unwrap();
    assert_eq!(accounts[0], a);
    assert_eq!(
        index.account_domains().await.unwrap(),
        [
            ("a3.example".to_string(), "a".to_string()),
            ("b.example".to_string(), "b".to_string())
        ]
    );
    let keys = index.keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].last_used_ms, Some(99));
    assert!(
        !index.delete_key("b", "k1").await.unwrap(),
        "another account's key"
    );
    assert!(index.delete_account("a").await.unwrap());
    assert!(!index.delete_account("a").await.unwrap());
    assert_eq!(index.keys().await.unwrap().len(), 1);
    assert_eq!(index.account_domains().await.unwrap().len(), 1);
    // Its domain is free again.
    index
        .put_account(&account("c"), &doms(&["a3.example"]), true)
        .await
        .unwrap();
}

/// `visible`: the rows of an account's domains, and of its streams in a shared domain (its pull
/// jobs'), whatever the other filters; nothing when it owns nothing.
async fn an_accounts_view_holds_its_domains_and_its_streams_in_a_shared_domain(db: Db) {
    use livesnap_store::index::Visible;
    let index = db.open().await;
    for (i, (domain, stream)) in [
        ("a.example", "cam"),
        ("b.example", "cam"),
        ("_jobs", "job-a"),
        ("_jobs", "job-b"),
        ("a2.example", "x"),
    ]
    .into_iter()
    .enumerate()
    {
        index
            .insert(&snap(
                domain,
                "live",
                stream,
                "t",
                1_000 * (i as i64 + 1),
                Mode::Sequence,
            ))
            .await
            .unwrap();
    }
    let seen = |visible: Visible, stream: Option<&str>| {
        let index = &index;
        let stream = stream.map(str::to_string);
        async move {
            let (rows, _) = index
                .list(&ListFilter {
                    stream,
                    visible: Some(visible),
                    ..Default::default()
                })
                .await
                .unwrap();
            let mut v: Vec<String> = rows
                .iter()
                .map(|r| format!("{}/{}", r.domain, r.stream))
                .collect();
            v.sort();
            v
        }
    };
    let a = Visible {
        domains: vec!["a.example".into(), "a2.example".into()],
        in_domain: Some(("_jobs".into(), vec!["job-a".into()])),
    };
    assert_eq!(
        seen(a.clone(), None).await,
        ["_jobs/job-a", "a.example/cam", "a2.example/x"]
    );
    assert_eq!(seen(a, Some("cam")).await, ["a.example/cam"]);
    assert!(seen(Visible::default(), None).await.is_empty());
    let jobs_only = Visible {
        domains: vec![],
        in_domain: Some(("_jobs".into(), vec!["job-b".into()])),
    };
    assert_eq!(seen(jobs_only, None).await, ["_jobs/job-b"]);
}
