//! The HTTP API of automatic snapshots: templates, bindings, stored snapshots, callbacks.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use livesnap_core::auto::{AutoCounters, LagSummary};
use livesnap_core::template::{BindingSpec, TemplateSpec};
use livesnap_store::index::{ListFilter, Mode, SnapshotRow, MAX_LIST_LIMIT};
use livesnap_store::SpoolStats;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::AppState;
use crate::auth::Caller;
use crate::callbacks::{Delivery, DeliveryCounters};
use crate::error::AppError;
use crate::openapi::external::{
    AutoCountersSchema, DeliveryCountersSchema, DeliverySchema, LagSummarySchema, SpoolStatsSchema,
};
use crate::openapi::{ErrorBody, TAG_AUTOMATION, TAG_SNAPSHOTS};
use axum::Extension;

/// Most ids in one batch delete (as ApsaraVideo allows).
pub const MAX_BATCH_DELETE: usize = 200;

/// The routes with their OpenAPI operations, to merge into the main router.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_templates, create_template))
        .routes(routes!(get_template, put_template, delete_template))
        .routes(routes!(list_bindings, create_binding, delete_binding))
        .routes(routes!(list_snapshots))
        .routes(routes!(batch_delete))
        .routes(routes!(get_snapshot, delete_snapshot))
        .routes(routes!(snapshot_image))
        .routes(routes!(deliveries))
        .routes(routes!(automation_status))
}

/// The name a template the caller names is kept under: an account's own are `{account}:{name}`.
fn kept_name(caller: &Caller, name: &str) -> String {
    match caller {
        Caller::Account { name: account, .. } => {
            livesnap_core::template::account_template_name(account, name)
        }
        _ => name.to_string(),
    }
}

/// A kept template as the caller sees it: an account its own ones, by their own names.
fn shown_spec(caller: &Caller, mut spec: TemplateSpec) -> Option<TemplateSpec> {
    if let Caller::Account { name: account, .. } = caller {
        spec.name = livesnap_core::template::name_for_account(account, &spec.name)?.to_string();
    }
    Some(spec)
}

/// An account's template calls back only hosts its `allowed_hosts` admit.
fn check_callback(st: &AppState, caller: &Caller, spec: &TemplateSpec) -> Result<(), AppError> {
    if let (Caller::Account { name, .. }, Some(url)) = (caller, &spec.callback_url) {
        st.accounts.check_outbound(name, "callback_url", url)?;
    }
    Ok(())
}

/// Another account's template, or one that does not exist: not found either way.
fn no_template(name: &str) -> AppError {
    AppError::NotFound(format!(
        "template {} not found",
        name.chars().take(64).collect::<String>()
    ))
}

/// Parses a JSON body, turning serde's message into a 400.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, AppError> {
    serde_json::from_slice(bytes)
        .map_err(|e| AppError::BadRequest(format!("invalid JSON body: {e}")))
}

/// A template from its JSON: its numbers first, so that one out of its range or of the wrong
/// shape (1e16, 2^64-1, -1, 1.5, "5") is a 400 naming the field, as every other refused field
/// is, rather than serde's message about the body.
fn template_body(value: serde_json::Value) -> Result<TemplateSpec, AppError> {
    livesnap_core::template::check_json_numbers(&value)
        .map_err(|e| AppError::Config(livesnap_core::auto::ConfigError::Field(e)))?;
    serde_json::from_value(value)
        .map_err(|e| AppError::BadRequest(format!("invalid JSON body: {e}")))
}

/// `GET /v1/templates`.
#[derive(Serialize, ToSchema)]
struct TemplateList {
    /// Every template, by name.
    templates: Vec<TemplateSpec>,
}

/// `GET /v1/templates`: every template.
#[utoipa::path(
    get,
    path = "/v1/templates",
    tag = TAG_AUTOMATION,
    responses((status = 200, description = "Every template", body = TemplateList))
)]
async fn list_templates(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Json<TemplateList> {
    Json(TemplateList {
        templates: st
            .auto
            .templates()
            .into_iter()
            .filter_map(|t| shown_spec(&caller, t))
            .collect(),
    })
}

/// `POST /v1/templates`: a new template.
#[utoipa::path(
    post,
    path = "/v1/templates",
    tag = TAG_AUTOMATION,
    request_body = TemplateSpec,
    responses(
        (status = 201, description = "Created; the template with its defaults filled in",
            body = TemplateSpec),
        (status = 400, description = "Bad JSON, or a refused field (named in `field`)",
            body = ErrorBody),
        (status = 409, description = "A template of that name exists, or `MAX_TEMPLATES` \
            are kept already", body = ErrorBody),
        (status = 500, description = "The template could not be saved in the index; nothing \
            changed", body = ErrorBody),
    )
)]
async fn create_template(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    b: Bytes,
) -> Result<Response, AppError> {
    let mut spec = template_body(body(&b)?)?;
    check_callback(&st, &caller, &spec)?;
    spec.name = kept_name(&caller, &spec.name);
    let saved = st.auto.put_template(spec, true).await?;
    let shown = shown_spec(&caller, saved.clone()).unwrap_or(saved);
    Ok((StatusCode::CREATED, Json(shown)).into_response())
}

/// `GET /v1/templates/{name}`: one template.
#[utoipa::path(
    get,
    path = "/v1/templates/{name}",
    tag = TAG_AUTOMATION,
    params(("name" = String, Path, description = "Template name")),
    responses(
        (status = 200, description = "The template", body = TemplateSpec),
        (status = 404, description = "No such template", body = ErrorBody),
    )
)]
async fn get_template(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<TemplateSpec>, AppError> {
    st.auto
        .template(&kept_name(&caller, &name))
        .and_then(|t| shown_spec(&caller, t))
        .map(Json)
        .ok_or_else(|| no_template(&name))
}

/// `PUT /v1/templates/{name}`: replaces a template whole (missing fields take their defaults).
#[utoipa::path(
    put,
    path = "/v1/templates/{name}",
    tag = TAG_AUTOMATION,
    params(("name" = String, Path, description = "Template name")),
    request_body(content = TemplateSpec,
        description = "The whole template; `name` may be left out (the path names it)"),
    responses(
        (status = 200, description = "Replaced; live streams using it switch at once",
            body = TemplateSpec),
        (status = 400, description = "Bad JSON, a body naming another template, or a refused \
            field (named in `field`)", body = ErrorBody),
        (status = 404, description = "No such template", body = ErrorBody),
        (status = 500, description = "The change could not be saved in the index; nothing \
            changed", body = ErrorBody),
    )
)]
async fn put_template(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    b: Bytes,
) -> Result<Json<TemplateSpec>, AppError> {
    let mut value: serde_json::Value = body(&b)?;
    let Some(object) = value.as_object_mut() else {
        return Err(AppError::BadRequest(
            "invalid JSON body: a template is a JSON object".into(),
        ));
    };
    // The name comes from the path; a body that names another template is a mistake.
    match object.get("name") {
        Some(n) if n != &json!(name) => {
            return Err(AppError::BadRequest(format!(
                "body names template {n} but the path names {name:?}"
            )))
        }
        _ => {
            object.insert("name".into(), json!(name));
        }
    }
    let mut spec = template_body(value)?;
    check_callback(&st, &caller, &spec)?;
    spec.name = kept_name(&caller, &spec.name);
    let saved = st
        .auto
        .put_template(spec, false)
        .await
        .map_err(|e| match e {
            livesnap_core::auto::ConfigError::NotFound(_) => no_template(&name),
            other => AppError::Config(other),
        })?;
    Ok(Json(shown_spec(&caller, saved.clone()).unwrap_or(saved)))
}

/// `DELETE /v1/templates/{name}`: deletes a template no binding uses.
#[utoipa::path(
    delete,
    path = "/v1/templates/{name}",
    tag = TAG_AUTOMATION,
    params(("name" = String, Path, description = "Template name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such template", body = ErrorBody),
        (status = 409, description = "A binding uses the template", body = ErrorBody),
        (status = 500, description = "The change could not be saved in the index; nothing \
            changed", body = ErrorBody),
    )
)]
async fn delete_template(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<StatusCode, AppError> {
    st.auto
        .delete_template(&kept_name(&caller, &name))
        .await
        .map_err(|e| match e {
            livesnap_core::auto::ConfigError::NotFound(_) => no_template(&name),
            other => AppError::Config(other),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/bindings`.
#[derive(Serialize, ToSchema)]
struct BindingList {
    /// Every binding.
    bindings: Vec<BindingSpec>,
}

/// `GET /v1/bindings`: every binding.
#[utoipa::path(
    get,
    path = "/v1/bindings",
    tag = TAG_AUTOMATION,
    responses((status = 200, description = "Every binding", body = BindingList))
)]
async fn list_bindings(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Json<BindingList> {
    let bindings = st
        .auto
        .bindings()
        .into_iter()
        .filter(|b| caller.sees_domain(&st.accounts, &b.domain))
        .filter_map(|mut b| match &caller {
            Caller::Account { name: account, .. } => {
                b.template =
                    livesnap_core::template::name_for_account(account, &b.template)?.to_string();
                Some(b)
            }
            _ => Some(b),
        })
        .collect();
    Json(BindingList { bindings })
}

/// An account binds only in its own domains: another's is not found.
fn own_domain(st: &AppState, caller: &Caller, domain: &str) -> Result<(), AppError> {
    if caller.sees_domain(&st.accounts, domain) {
        Ok(())
    } else {
        Err(AppError::NotFound(format!(
            "no domain {}",
            domain.chars().take(64).collect::<String>()
        )))
    }
}

/// A binding with the `apply_to_live` option of the request.
#[derive(Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct BindingRequest {
    /// Domain (default `_default`).
    #[serde(default = "livesnap_core::template::default_domain")]
    domain: String,
    /// App name, or `*` (the default) for the whole domain.
    #[serde(default = "livesnap_core::template::star")]
    app: String,
    /// Stream name, or `*` (the default) for the whole app.
    #[serde(default = "livesnap_core::template::star")]
    stream: String,
    /// Template name: needed to create a binding; a delete ignores it.
    #[param(ignore)]
    template: Option<String>,
    /// Apply the change to live streams at once (else at their next publish).
    #[serde(default)]
    apply_to_live: bool,
}

/// `POST /v1/bindings`: adds or replaces the binding for (domain, app, stream).
#[utoipa::path(
    post,
    path = "/v1/bindings",
    tag = TAG_AUTOMATION,
    request_body = BindingRequest,
    responses(
        (status = 201, description = "Created or replaced", body = BindingSpec),
        (status = 400, description = "Bad JSON, no template, or a refused field (named in \
            `field`)", body = ErrorBody),
        (status = 409, description = "A new binding, and `MAX_BINDINGS` are kept already",
            body = ErrorBody),
        (status = 500, description = "The binding could not be saved in the index; nothing \
            changed", body = ErrorBody),
    )
)]
async fn create_binding(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    b: Bytes,
) -> Result<Response, AppError> {
    let r: BindingRequest = body(&b)?;
    let template = r
        .template
        .ok_or_else(|| AppError::BadRequest("template: missing".into()))?;
    own_domain(&st, &caller, &r.domain)?;
    let spec = BindingSpec {
        domain: r.domain,
        app: r.app,
        stream: r.stream,
        template: kept_name(&caller, &template),
    };
    let mut saved = st.auto.put_binding(spec, r.apply_to_live).await?;
    saved.template = template;
    Ok((StatusCode::CREATED, Json(saved)).into_response())
}

/// `DELETE /v1/bindings` takes the binding's domain/app/stream in the query or a JSON body.
#[utoipa::path(
    delete,
    path = "/v1/bindings",
    tag = TAG_AUTOMATION,
    params(BindingRequest),
    request_body(content = Option<BindingRequest>,
        description = "The binding to delete, instead of the query"),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "A bad query or body", body = ErrorBody),
        (status = 404, description = "No such binding", body = ErrorBody),
        (status = 500, description = "The change could not be saved in the index; nothing \
            changed", body = ErrorBody),
    )
)]
async fn delete_binding(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    b: Bytes,
) -> Result<StatusCode, AppError> {
    let r: BindingRequest = if b.is_empty() {
        let v = serde_json::to_value(&q).unwrap_or_default();
        let mut v = v;
        if let Some(a) = q.get("apply_to_live") {
            v["apply_to_live"] = json!(a == "true" || a == "1");
        }
        serde_json::from_value(v)
            .map_err(|e| AppError::BadRequest(format!("invalid query: {e}")))?
    } else {
        body(&b)?
    };
    own_domain(&st, &caller, &r.domain)?;
    st.auto
        .delete_binding(&r.domain, &r.app, &r.stream, r.apply_to_live)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Filters and paging of `GET /v1/snapshots`; every filter narrows the list.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct SnapshotQuery {
    /// Domain (virtual host).
    domain: Option<String>,
    /// App name.
    app: Option<String>,
    /// Stream name.
    stream: Option<String>,
    /// Template name (job).
    job: Option<String>,
    /// `overwrite` or `sequence`.
    #[param(value_type = Option<Mode>)]
    mode: Option<String>,
    /// Taken at or after this time (RFC 3339).
    #[param(format = DateTime)]
    from: Option<String>,
    /// Taken at or before this time (RFC 3339).
    #[param(format = DateTime)]
    to: Option<String>,
    // Text, read by `crate::api::bounded`, so that a bad one is a 400 naming it.
    /// Rows per page (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

fn time_param(name: &str, v: Option<String>) -> Result<Option<i64>, AppError> {
    v.map(|s| {
        livesnap_store::time::rfc3339_to_ms(&s).ok_or_else(|| {
            AppError::BadRequest(format!("{name} must be an RFC 3339 time, got {s:?}"))
        })
    })
    .transpose()
}

/// One page of `GET /v1/snapshots`, newest first.
#[derive(Serialize, ToSchema)]
struct SnapshotPage {
    /// The stored snapshots.
    items: Vec<SnapshotRow>,
    /// Gives the next page as `cursor`; `null` on the last page.
    next_cursor: Option<String>,
}

/// What stored snapshots an account's key sees: those of its domains and of its pull jobs.
fn visible_rows(st: &AppState, caller: &Caller) -> Option<livesnap_store::index::Visible> {
    let Caller::Account { name, .. } = caller else {
        return None;
    };
    Some(livesnap_store::index::Visible {
        domains: st.accounts.domains_of(name),
        in_domain: Some((
            livesnap_core::jobs::JOBS_DOMAIN.to_string(),
            st.jobs.ids(livesnap_core::jobs::JobScope::Account(name)),
        )),
    })
}

/// Whether the caller may see `row`.
fn sees_row(st: &AppState, caller: &Caller, row: &SnapshotRow) -> bool {
    match visible_rows(st, caller) {
        None => true,
        Some(v) => {
            v.domains.contains(&row.domain)
                || v.in_domain
                    .is_some_and(|(d, streams)| d == row.domain && streams.contains(&row.stream))
        }
    }
}

/// A row as the caller sees it: an account's template by its own name.
fn shown_row(caller: &Caller, mut row: SnapshotRow) -> SnapshotRow {
    if let Caller::Account { name, .. } = caller {
        if let Some(own) = livesnap_core::template::name_for_account(name, &row.job) {
            row.job = own.to_string();
        }
    }
    row
}

/// `GET /v1/snapshots`: stored snapshots, newest first.
#[utoipa::path(
    get,
    path = "/v1/snapshots",
    tag = TAG_SNAPSHOTS,
    params(SnapshotQuery),
    responses(
        (status = 200, description = "One page, newest first", body = SnapshotPage),
        (status = 400, description = "An unknown or bad parameter, or a bad cursor",
            body = ErrorBody),
        (status = 503, description = "The index cannot be reached", body = ErrorBody,
            headers(("retry-after" = u32, description = "Seconds to wait"))),
        (status = 500, description = "The index failed", body = ErrorBody),
    )
)]
async fn list_snapshots(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<SnapshotQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SnapshotPage>, AppError> {
    let Query(q) = q.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let mode = match q.mode.as_deref() {
        None => None,
        Some("overwrite") => Some(Mode::Overwrite),
        Some("sequence") => Some(Mode::Sequence),
        Some(m) => {
            return Err(AppError::BadRequest(format!(
                "mode must be overwrite or sequence, got {m:?}"
            )))
        }
    };
    // An account names its templates by their own names; its job ids are its own already.
    let job = q.job.map(|j| match &caller {
        Caller::Account { name, .. }
            if st
                .jobs
                .get(&j, livesnap_core::jobs::JobScope::Account(name))
                .is_err() =>
        {
            livesnap_core::template::account_template_name(name, &j)
        }
        _ => j,
    });
    let filter = ListFilter {
        domain: q.domain,
        app: q.app,
        stream: q.stream,
        job,
        mode,
        from_ms: time_param("from", q.from)?,
        to_ms: time_param("to", q.to)?,
        limit: q
            .limit
            .as_deref()
            .map(|l| crate::api::bounded("limit", l, (1, u64::from(MAX_LIST_LIMIT))))
            .transpose()?,
        cursor: q.cursor,
        visible: visible_rows(&st, &caller),
    };
    let (items, next_cursor) = st.auto.index().list(&filter).await?;
    let items = items.into_iter().map(|r| shown_row(&caller, r)).collect();
    Ok(Json(SnapshotPage { items, next_cursor }))
}

/// The row `id`, if the caller may see it: another account's is not found.
async fn find(st: &AppState, caller: &Caller, id: &str) -> Result<SnapshotRow, AppError> {
    st.auto
        .index()
        .get(id)
        .await?
        .filter(|row| sees_row(st, caller, row))
        .ok_or_else(|| {
            AppError::NotFound(format!(
                "snapshot {} not found",
                id.chars().take(64).collect::<String>()
            ))
        })
}

/// One stored snapshot with a link to its picture.
#[derive(Serialize, ToSchema)]
struct StoredSnapshot {
    /// The index row.
    #[serde(flatten)]
    row: SnapshotRow,
    /// Where to fetch the picture: `{public_url}/v1/snapshots/{id}/image`.
    url: String,
}

/// `GET /v1/snapshots/{id}`: one stored snapshot.
#[utoipa::path(
    get,
    path = "/v1/snapshots/{id}",
    tag = TAG_SNAPSHOTS,
    params(("id" = String, Path, description = "Snapshot id")),
    responses(
        (status = 200, description = "The snapshot, with a `url` to its picture",
            body = StoredSnapshot),
        (status = 404, description = "No such snapshot", body = ErrorBody),
        (status = 503, description = "The index cannot be reached", body = ErrorBody,
            headers(("retry-after" = u32, description = "Seconds to wait"))),
        (status = 500, description = "The index failed", body = ErrorBody),
    )
)]
async fn get_snapshot(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<StoredSnapshot>, AppError> {
    let row = shown_row(&caller, find(&st, &caller, &id).await?);
    let url = crate::callbacks::snapshot_url(&st.public_url, &row.id);
    Ok(Json(StoredSnapshot { row, url }))
}

/// `GET /v1/snapshots/{id}/image`: the stored picture's bytes.
#[utoipa::path(
    get,
    path = "/v1/snapshots/{id}/image",
    tag = TAG_SNAPSHOTS,
    params(("id" = String, Path, description = "Snapshot id")),
    responses(
        (status = 200, description = "The picture as stored, typed by the snapshot's format",
            content(("image/jpeg"), ("image/png"))),
        (status = 404, description = "No such snapshot, storage location or object",
            body = ErrorBody),
        (status = 503, description = "The index or the storage cannot be reached",
            body = ErrorBody,
            headers(("retry-after" = u32, description = "Seconds to wait"))),
        (status = 500, description = "The index or the storage failed", body = ErrorBody),
    )
)]
async fn snapshot_image(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let row = find(&st, &caller, &id).await?;
    let location = st.auto.location(&row.storage).ok_or_else(|| {
        AppError::NotFound(format!("storage location {} no longer exists", row.storage))
    })?;
    let bytes = location.get(&row.key).await?;
    let mime = media::picture::ImageFormat::parse(&row.format)
        .map_or("application/octet-stream", |f| f.mime());
    Ok(([(header::CONTENT_TYPE, mime)], bytes).into_response())
}

/// `DELETE /v1/snapshots/{id}`: removes the object, then the row.
#[utoipa::path(
    delete,
    path = "/v1/snapshots/{id}",
    tag = TAG_SNAPSHOTS,
    params(("id" = String, Path, description = "Snapshot id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such snapshot", body = ErrorBody),
        (status = 503, description = "The index or the storage cannot be reached",
            body = ErrorBody,
            headers(("retry-after" = u32, description = "Seconds to wait"))),
        (status = 500, description = "The index or the storage failed", body = ErrorBody),
    )
)]
async fn delete_snapshot(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    let row = find(&st, &caller, &id).await?;
    st.auto.delete_row(&row).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The body of `POST /v1/snapshots/batch-delete`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BatchDelete {
    /// The snapshots to delete, 1 to 200.
    #[schema(min_items = 1, max_items = 200)]
    ids: Vec<String>,
}

/// The answer of a batch delete: one result per id, in order.
#[derive(Serialize, ToSchema)]
struct BatchDeleteResults {
    /// One per id asked for.
    results: Vec<DeleteResult>,
}

/// What became of one id of a batch delete.
#[derive(Serialize, ToSchema)]
struct DeleteResult {
    /// The id asked for.
    id: String,
    /// Whether the object and its row are gone.
    deleted: bool,
    /// Why not (`not found`, or the failure).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    error: Option<String>,
}

/// `POST /v1/snapshots/batch-delete`: deletes up to 200 snapshots, each on its own.
#[utoipa::path(
    post,
    path = "/v1/snapshots/batch-delete",
    tag = TAG_SNAPSHOTS,
    request_body = BatchDelete,
    responses(
        (status = 200, description = "One result per id", body = BatchDeleteResults),
        (status = 400, description = "Bad JSON, or not 1..=200 ids", body = ErrorBody),
    )
)]
async fn batch_delete(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    b: Bytes,
) -> Result<Json<BatchDeleteResults>, AppError> {
    let req: BatchDelete = body(&b)?;
    if req.ids.is_empty() || req.ids.len() > MAX_BATCH_DELETE {
        return Err(AppError::BadRequest(format!(
            "ids: give 1..={MAX_BATCH_DELETE} ids, got {}",
            req.ids.len()
        )));
    }
    let mut results = Vec::with_capacity(req.ids.len());
    for id in req.ids {
        let error = match st.auto.index().get(&id).await {
            Ok(Some(row)) if sees_row(&st, &caller, &row) => {
                st.auto.delete_row(&row).await.err().map(|e| e.to_string())
            }
            Ok(_) => Some("not found".to_string()),
            Err(e) => Some(e.to_string()),
        };
        results.push(DeleteResult {
            id,
            deleted: error.is_none(),
            error,
        });
    }
    Ok(Json(BatchDeleteResults { results }))
}

/// `GET /v1/callbacks/deliveries`.
#[derive(Serialize, ToSchema)]
struct Deliveries<'a> {
    /// The last deliveries, newest first.
    #[schema(value_type = Vec<DeliverySchema>)]
    deliveries: Vec<Delivery>,
    /// Deliveries dropped because the queue was full.
    dropped: u64,
    /// Deliveries by outcome.
    #[schema(value_type = DeliveryCountersSchema)]
    counters: &'a DeliveryCounters,
}

/// `GET /v1/callbacks/deliveries`: the last 1000 callback deliveries and their state.
#[utoipa::path(
    get,
    path = "/v1/callbacks/deliveries",
    tag = TAG_SNAPSHOTS,
    responses((status = 200, description = "The last deliveries, newest first",
        body = Deliveries))
)]
async fn deliveries(State(st): State<AppState>) -> Response {
    let counters = &st.callbacks.counters;
    Json(Deliveries {
        deliveries: st.callbacks.deliveries(),
        dropped: counters.dropped.load(std::sync::atomic::Ordering::Relaxed),
        counters,
    })
    .into_response()
}

/// `GET /v1/automation`.
#[derive(Serialize, ToSchema)]
struct AutomationStatus<'a> {
    /// Pictures stored, spooled, failed, deleted by retention.
    #[schema(value_type = AutoCountersSchema)]
    counters: &'a AutoCounters,
    /// How long after its due time each recent picture was written.
    #[schema(value_type = LagSummarySchema)]
    lag_ms: LagSummary,
    /// The spool of pictures waiting for their storage.
    #[schema(value_type = SpoolStatsSchema)]
    spool: SpoolStats,
    /// The index's backend: `sqlite` or `postgres`.
    index: &'static str,
}

/// `GET /v1/automation`: the counters of automatic snapshots, their lag and the spool.
#[utoipa::path(
    get,
    path = "/v1/automation",
    tag = TAG_AUTOMATION,
    responses((status = 200, description = "Counters, lag and spool", body = AutomationStatus))
)]
async fn automation_status(State(st): State<AppState>) -> Response {
    Json(AutomationStatus {
        counters: &st.auto.counters,
        lag_ms: st.auto.lag.summary(),
        spool: st.auto.spool().stats(),
        index: st.auto.index().backend(),
    })
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// `from` and `to` of any text: a time or a 400, never a panic.
        #[test]
        fn any_time_parameter_is_a_time_or_a_400(text in any::<String>()) {
            match time_param("from", Some(text.clone())) {
                Ok(ms) => prop_assert_eq!(ms, livesnap_store::time::rfc3339_to_ms(&text)),
                Err(e) => prop_assert_eq!(e.status(), StatusCode::BAD_REQUEST),
            }
        }
    }

    #[test]
    fn time_parameters_at_the_edges() {
        assert_eq!(
            time_param("to", Some("9999-12-31T23:59:59.999Z".into())).unwrap(),
            Some(253_402_300_799_999)
        );
        for bad in [
            "1e16",
            "-1",
            "18446744073709551615",
            "10000-01-01T00:00:00Z",
        ] {
            assert!(time_param("to", Some(bad.into())).is_err(), "{bad}");
        }
    }
}
