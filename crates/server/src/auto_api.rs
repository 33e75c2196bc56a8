//! The HTTP API of automatic snapshots: templates, bindings, stored snapshots, callbacks.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use livesnap_core::template::{BindingSpec, TemplateSpec};
use livesnap_store::index::{ListFilter, Mode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use crate::api::AppState;
use crate::error::AppError;

/// Most ids in one batch delete (as ApsaraVideo allows).
pub const MAX_BATCH_DELETE: usize = 200;

/// The routes, to merge into the main router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/templates", get(list_templates).post(create_template))
        .route(
            "/v1/templates/{name}",
            get(get_template).put(put_template).delete(delete_template),
        )
        .route(
            "/v1/bindings",
            get(list_bindings)
                .post(create_binding)
                .delete(delete_binding),
        )
        .route("/v1/snapshots", get(list_snapshots))
        .route("/v1/snapshots/batch-delete", post(batch_delete))
        .route(
            "/v1/snapshots/{id}",
            get(get_snapshot).delete(delete_snapshot),
        )
        .route("/v1/snapshots/{id}/image", get(snapshot_image))
        .route("/v1/callbacks/deliveries", get(deliveries))
        .route("/v1/automation", get(automation_status))
}

/// Parses a JSON body, turning serde's message into a 400.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, AppError> {
    serde_json::from_slice(bytes)
        .map_err(|e| AppError::BadRequest(format!("invalid JSON body: {e}")))
}

async fn list_templates(State(st): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({ "templates": st.auto.templates() }))
}

async fn create_template(State(st): State<AppState>, b: Bytes) -> Result<Response, AppError> {
    let spec: TemplateSpec = body(&b)?;
    let saved = st.auto.put_template(spec, true).await?;
    Ok((StatusCode::CREATED, Json(saved)).into_response())
}

async fn get_template(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<TemplateSpec>, AppError> {
    st.auto
        .template(&name)
        .map(Json)
        .ok_or_else(|| AppError::NotFound(format!("template {name} not found")))
}

async fn put_template(
    State(st): State<AppState>,
    Path(name): Path<String>,
    b: Bytes,
) -> Result<Json<TemplateSpec>, AppError> {
    let mut value: serde_json::Value = body(&b)?;
    // The name comes from the path; a body that names another template is a mistake.
    match value.get("name") {
        Some(n) if n != &json!(name) => {
            return Err(AppError::BadRequest(format!(
                "body names template {n} but the path names {name:?}"
            )))
        }
        _ => value["name"] = json!(name),
    }
    let spec: TemplateSpec = serde_json::from_value(value)
        .map_err(|e| AppError::BadRequest(format!("invalid JSON body: {e}")))?;
    Ok(Json(st.auto.put_template(spec, false).await?))
}

async fn delete_template(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, AppError> {
    st.auto.delete_template(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_bindings(State(st): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({ "bindings": st.auto.bindings() }))
}

/// A binding with the `apply_to_live` option of the request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BindingRequest {
    #[serde(default = "livesnap_core::template::default_domain")]
    domain: String,
    #[serde(default = "livesnap_core::template::star")]
    app: String,
    #[serde(default = "livesnap_core::template::star")]
    stream: String,
    template: Option<String>,
    #[serde(default)]
    apply_to_live: bool,
}

async fn create_binding(State(st): State<AppState>, b: Bytes) -> Result<Response, AppError> {
    let r: BindingRequest = body(&b)?;
    let template = r
        .template
        .ok_or_else(|| AppError::BadRequest("template: missing".into()))?;
    let spec = BindingSpec {
        domain: r.domain,
        app: r.app,
        stream: r.stream,
        template,
    };
    let saved = st.auto.put_binding(spec, r.apply_to_live).await?;
    Ok((StatusCode::CREATED, Json(saved)).into_response())
}

/// `DELETE /v1/bindings` takes the binding's domain/app/stream in the query or a JSON body.
async fn delete_binding(
    State(st): State<AppState>,
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
    st.auto
        .delete_binding(&r.domain, &r.app, &r.stream, r.apply_to_live)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotQuery {
    domain: Option<String>,
    app: Option<String>,
    stream: Option<String>,
    job: Option<String>,
    mode: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<u32>,
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

async fn list_snapshots(
    State(st): State<AppState>,
    q: Result<Query<SnapshotQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, AppError> {
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
    let filter = ListFilter {
        domain: q.domain,
        app: q.app,
        stream: q.stream,
        job: q.job,
        mode,
        from_ms: time_param("from", q.from)?,
        to_ms: time_param("to", q.to)?,
        limit: q.limit,
        cursor: q.cursor,
    };
    let (items, next) = st.auto.index().list(&filter).await?;
    Ok(Json(json!({ "items": items, "next_cursor": next })))
}

async fn find(st: &AppState, id: &str) -> Result<livesnap_store::index::SnapshotRow, AppError> {
    st.auto
        .index()
        .get(id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("snapshot {id} not found")))
}

async fn get_snapshot(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, AppError> {
    let row = find(&st, &id).await?;
    Ok(Json(crate::callbacks::snapshot_json(&row, &st.public_url)))
}

async fn snapshot_image(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let row = find(&st, &id).await?;
    let location = st.auto.location(&row.storage).ok_or_else(|| {
        AppError::NotFound(format!("storage location {} no longer exists", row.storage))
    })?;
    let bytes = location.get(&row.key).await?;
    let mime = media::picture::ImageFormat::parse(&row.format)
        .map_or("application/octet-stream", |f| f.mime());
    Ok(([(header::CONTENT_TYPE, mime)], bytes).into_response())
}

async fn delete_snapshot(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    let row = find(&st, &id).await?;
    st.auto.delete_row(&row).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchDelete {
    ids: Vec<String>,
}

async fn batch_delete(
    State(st): State<AppState>,
    b: Bytes,
) -> Result<Json<serde_json::Value>, AppError> {
    let req: BatchDelete = body(&b)?;
    if req.ids.is_empty() || req.ids.len() > MAX_BATCH_DELETE {
        return Err(AppError::BadRequest(format!(
            "ids: give 1..={MAX_BATCH_DELETE} ids, got {}",
            req.ids.len()
        )));
    }
    let mut results = Vec::with_capacity(req.ids.len());
    for id in req.ids {
        let result = match st.auto.index().get(&id).await {
            Ok(Some(row)) => match st.auto.delete_row(&row).await {
                Ok(()) => json!({ "id": id, "deleted": true }),
                Err(e) => json!({ "id": id, "deleted": false, "error": e.to_string() }),
            },
            Ok(None) => json!({ "id": id, "deleted": false, "error": "not found" }),
            Err(e) => json!({ "id": id, "deleted": false, "error": e.to_string() }),
        };
        results.push(result);
    }
    Ok(Json(json!({ "results": results })))
}

async fn deliveries(State(st): State<AppState>) -> Json<serde_json::Value> {
    Json(
        json!({ "deliveries": st.callbacks.deliveries(), "dropped": st.callbacks.counters.dropped.load(std::sync::atomic::Ordering::Relaxed), "counters": st.callbacks.counters }),
    )
}

async fn automation_status(State(st): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "counters": st.auto.counters,
        "lag_ms": st.auto.lag.summary(),
        "spool": st.auto.spool().stats(),
        "index": st.auto.index().backend(),
    }))
}
