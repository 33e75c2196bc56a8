//! The HTTP API of pull jobs (Alibaba IMS's SubmitLiveSnapshotJob, GetLiveSnapshotJob,
//! ListLiveSnapshotJobs, DeleteLiveSnapshotJob, and its usage export): `/v1/jobs` and
//! `/v1/usage`.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use livesnap_core::jobs::{Job, JobScope, JobSpec, JobState};
use media::picture::ImageFormat;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::{AppState, ImageQuery};
use crate::auth::Caller;
use crate::error::AppError;
use crate::openapi::{ErrorBody, TAG_JOBS};

/// Whose jobs the caller sees: the administrator all, an account its own.
fn scope(caller: &Caller) -> JobScope<'_> {
    match caller {
        Caller::Account { name, .. } => JobScope::Account(name),
        _ => JobScope::All,
    }
}

/// The caller's `max_jobs`: its account's own limit, else the server's.
fn max_jobs(st: &AppState, caller: &Caller) -> Option<usize> {
    match caller {
        Caller::Account { name, .. } => st
            .accounts
            .get(name)
            .ok()
            .and_then(|a| a.max_jobs)
            .map(|m| usize::try_from(m).unwrap_or(usize::MAX)),
        _ => None,
    }
}

/// A job as the caller sees it: an account's template by its own name.
fn shown(caller: &Caller, mut job: Job) -> Job {
    if let Caller::Account { name, .. } = caller {
        if let Some(own) = livesnap_core::template::name_for_account(name, &job.template) {
            job.template = own.to_string();
        }
    }
    job
}

/// The longest span one usage query covers, in days.
pub const MAX_USAGE_DAYS: i64 = 366;

/// The routes with their OpenAPI operations, to merge into the main router.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_jobs, create_job))
        .routes(routes!(get_job, delete_job))
        .routes(routes!(stop_job))
        .routes(routes!(start_job))
        .routes(routes!(job_snapshot_jpg))
        .routes(routes!(job_snapshot_png))
        .routes(routes!(usage))
}

/// `POST /v1/jobs`: submits a job, which starts at once.
#[utoipa::path(
    post,
    path = "/v1/jobs",
    tag = TAG_JOBS,
    request_body = JobSpec,
    responses(
        (status = 201, description = "Submitted and starting (`pending`)", body = Job),
        (status = 400, description = "Bad JSON, or a refused field (named in `field`): a URL \
            this server cannot pull, no such template or storage location", body = ErrorBody),
        (status = 409, description = "`MAX_JOBS_KEPT` jobs are kept already", body = ErrorBody),
        (status = 429, description = "`max_jobs` jobs run already", body = ErrorBody),
        (status = 500, description = "The job could not be saved in the index", body = ErrorBody),
    )
)]
async fn create_job(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    b: Bytes,
) -> Result<Response, AppError> {
    let mut spec: JobSpec = serde_json::from_slice(&b)
        .map_err(|e| AppError::BadRequest(format!("invalid JSON body: {e}")))?;
    if let Caller::Account { name, .. } = &caller {
        spec.template = livesnap_core::template::account_template_name(name, &spec.template);
        st.accounts
            .check_outbound(name, "input_url", &spec.input_url)?;
        if let Some(url) = &spec.callback_url {
            st.accounts.check_outbound(name, "callback_url", url)?;
        }
    }
    let limit = max_jobs(&st, &caller);
    let job = st.jobs.create(spec, scope(&caller), limit).await?;
    Ok((StatusCode::CREATED, Json(shown(&caller, job))).into_response())
}

/// The filters of `GET /v1/jobs`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct JobQuery {
    /// Only jobs in this state.
    #[param(pattern = "^(pending|running|retrying|failed|stopped)$")]
    state: Option<String>,
    /// Only jobs with this name.
    name: Option<String>,
    /// Jobs per page (default 50, at most 1000).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// `GET /v1/jobs`.
#[derive(Serialize, ToSchema)]
struct JobList {
    /// The page, newest first.
    jobs: Vec<Job>,
    /// The cursor of the next page, absent on the last.
    next_cursor: Option<String>,
}

/// `GET /v1/jobs`: jobs newest first, by page.
#[utoipa::path(
    get,
    path = "/v1/jobs",
    tag = TAG_JOBS,
    params(JobQuery),
    responses(
        (status = 200, description = "One page of jobs", body = JobList),
        (status = 400, description = "A bad state, limit or cursor", body = ErrorBody),
    )
)]
async fn list_jobs(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<JobQuery>, QueryRejection>,
) -> Result<Json<JobList>, AppError> {
    let Query(q) = q.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let state = match q.state.as_deref() {
        None => None,
        Some(s) => Some(JobState::parse(s).ok_or_else(|| {
            AppError::BadRequest(format!(
                "state must be pending, running, retrying, failed or stopped, got {:?}",
                s.chars().take(40).collect::<String>()
            ))
        })?),
    };
    let limit = q
        .limit
        .as_deref()
        .map(|l| {
            let max = livesnap_core::jobs::MAX_JOB_PAGE as u64;
            crate::api::bounded::<usize>("limit", l, (1, max))
        })
        .transpose()?;
    let (jobs, next_cursor) = st.jobs.list(
        scope(&caller),
        state,
        q.name.as_deref(),
        limit,
        q.cursor.as_deref(),
    )?;
    let jobs = jobs.into_iter().map(|j| shown(&caller, j)).collect();
    Ok(Json(JobList { jobs, next_cursor }))
}

/// `GET /v1/jobs/{id}`: one job.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    tag = TAG_JOBS,
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = Job),
        (status = 404, description = "No such job", body = ErrorBody),
    )
)]
async fn get_job(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Job>, AppError> {
    Ok(Json(shown(&caller, st.jobs.get(&id, scope(&caller))?)))
}

/// `DELETE /v1/jobs/{id}`: stops and deletes a job; its pictures and usage stay.
#[utoipa::path(
    delete,
    path = "/v1/jobs/{id}",
    tag = TAG_JOBS,
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 500, description = "The index failed; the job is stopped but kept",
            body = ErrorBody),
    )
)]
async fn delete_job(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    st.jobs.delete(&id, scope(&caller)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/jobs/{id}/stop`: stops a job; it stays stopped across restarts.
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/stop",
    tag = TAG_JOBS,
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "Stopped (a stopped job is left as it is)", body = Job),
        (status = 404, description = "No such job", body = ErrorBody),
    )
)]
async fn stop_job(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Job>, AppError> {
    Ok(Json(shown(
        &caller,
        st.jobs.stop(&id, scope(&caller)).await?,
    )))
}

/// `POST /v1/jobs/{id}/start`: starts a stopped or failed job again.
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/start",
    tag = TAG_JOBS,
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "Starting (a running job is left as it is)", body = Job),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 429, description = "`max_jobs` jobs run already", body = ErrorBody),
    )
)]
async fn start_job(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Job>, AppError> {
    let limit = max_jobs(&st, &caller);
    let job = st.jobs.start_job(&id, scope(&caller), limit).await?;
    Ok(Json(shown(&caller, job)))
}

/// A picture of a job's source now, through the same path and headers as a pushed stream's.
async fn job_image(
    st: AppState,
    caller: Caller,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    id: String,
    q: Result<Query<ImageQuery>, QueryRejection>,
    format: ImageFormat,
) -> Result<Response, AppError> {
    let peer = peer.map(|Extension(ConnectInfo(a))| a.ip());
    crate::api::pace(&st, &caller, peer).await?;
    let Query(q) = q.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let job = st.jobs.get(&id, scope(&caller))?;
    let key = livesnap_core::jobs::job_stream_key(&job.id)
        .ok_or_else(|| AppError::NotFound(format!("job {id} not found")))?;
    let Some(stream) = st.hub.get(&key) else {
        let why = job
            .error
            .map(|e| format!(": {}", e.message))
            .unwrap_or_default();
        return Err(AppError::Unavailable(format!(
            "job {}'s source is not connected (state {}{why})",
            job.id,
            job.state.as_str()
        )));
    };
    crate::api::stream_image(&st, &stream, q, format).await
}

/// `GET /v1/jobs/{id}/snapshot.jpg`: a JPEG of the job's source now.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/snapshot.jpg",
    tag = TAG_JOBS,
    params(("id" = String, Path, description = "Job id"), ImageQuery),
    responses(
        (status = 200, description = "The picture; the headers say which frame it is (as for \
            `/v1/streams/{app}/{stream}/snapshot.jpg`)", content(("image/jpeg"))),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 429, description = "More picture requests than `picture_requests_per_s` from this client",
            body = ErrorBody, headers(("retry-after" = u32, description = "Seconds to wait"))),
        (status = 503, description = "The job's source is not connected now, or no picture \
            could be made in time", body = ErrorBody),
    )
)]
async fn job_snapshot_jpg(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    Path(id): Path<String>,
    q: Result<Query<ImageQuery>, QueryRejection>,
) -> Response {
    job_image(st, caller, peer, id, q, ImageFormat::Jpeg)
        .await
        .unwrap_or_else(|e| e.into_response())
}

/// `GET /v1/jobs/{id}/snapshot.png`: a PNG of the job's source now.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/snapshot.png",
    tag = TAG_JOBS,
    params(("id" = String, Path, description = "Job id"), ImageQuery),
    responses(
        (status = 200, description = "The picture; the headers say which frame it is",
            content(("image/png"))),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 429, description = "More picture requests than `picture_requests_per_s` from this client",
            body = ErrorBody, headers(("retry-after" = u32, description = "Seconds to wait"))),
        (status = 503, description = "The job's source is not connected now, or no picture \
            could be made in time", body = ErrorBody),
    )
)]
async fn job_snapshot_png(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    Path(id): Path<String>,
    q: Result<Query<ImageQuery>, QueryRejection>,
) -> Response {
    job_image(st, caller, peer, id, q, ImageFormat::Png)
        .await
        .unwrap_or_else(|e| e.into_response())
}

/// The span of `GET /v1/usage`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct UsageQuery {
    /// First UTC day, `YYYY-MM-DD` (default: `to`).
    from: Option<String>,
    /// Last UTC day, `YYYY-MM-DD`, inclusive (default: today).
    to: Option<String>,
    /// `json` (default) or `csv`.
    #[param(pattern = "^(json|csv)$")]
    format: Option<String>,
}

/// One job's running time on one UTC day.
#[derive(Serialize, ToSchema)]
struct UsageDay {
    /// `YYYY-MM-DD` (UTC).
    day: String,
    /// The job's id.
    job: String,
    /// Its name.
    job_name: String,
    /// Seconds it ran that day (to the millisecond).
    running_s: f64,
}

/// `GET /v1/usage`.
#[derive(Serialize, ToSchema)]
struct Usage {
    /// First day.
    from: String,
    /// Last day.
    to: String,
    /// By day, then job.
    usage: Vec<UsageDay>,
    /// Every row's seconds added up.
    total_running_s: f64,
}

/// Days from `from` to `to` (`YYYY-MM-DD`), inclusive: `None` for a malformed day.
fn days_between(from: &str, to: &str) -> Option<i64> {
    let parse = livesnap_core::jobs::day_number;
    Some(parse(to)? - parse(from)? + 1)
}

/// Quotes a CSV field when it must be (RFC 4180), and defuses a leading `=`, `+`, `-`, `@`
/// that a spreadsheet would run as a formula.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// `GET /v1/usage`: jobs' running time per UTC day (IMS's usage query and export).
#[utoipa::path(
    get,
    path = "/v1/usage",
    tag = TAG_JOBS,
    params(UsageQuery),
    responses(
        (status = 200, description = "Running time per day and job; with `format=csv`, a \
            header row `day,job,job_name,running_s` then one row per day and job",
            content((Usage = "application/json"), (String = "text/csv"))),
        (status = 400, description = "A malformed day, `from` after `to`, a span longer \
            than `MAX_USAGE_DAYS`, or an unknown format", body = ErrorBody),
    )
)]
async fn usage(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    let Query(q) = q.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(AppError::BadRequest(format!(
                "format must be json or csv, got {:?}",
                other.chars().take(40).collect::<String>()
            )))
        }
    };
    let to = q.to.unwrap_or_else(|| st.jobs.today());
    let from = q.from.unwrap_or_else(|| to.clone());
    match days_between(&from, &to) {
        None => {
            return Err(AppError::BadRequest(
                "from and to must be days as YYYY-MM-DD".into(),
            ))
        }
        Some(n) if n > MAX_USAGE_DAYS => {
            return Err(AppError::BadRequest(format!(
                "at most {MAX_USAGE_DAYS} days per query (MAX_USAGE_DAYS)"
            )))
        }
        Some(_) => {}
    }
    let rows = st.jobs.usage(&from, &to, scope(&caller)).await?;
    let days: Vec<UsageDay> = rows
        .into_iter()
        .map(|r| UsageDay {
            day: r.day,
            job: r.job,
            job_name: r.job_name,
            running_s: r.running_ms as f64 / 1000.0,
        })
        .collect();
    if csv {
        let mut out = String::from("day,job,job_name,running_s\r\n");
        for d in &days {
            out.push_str(&format!(
                "{},{},{},{:.3}\r\n",
                d.day,
                csv_field(&d.job),
                csv_field(&d.job_name),
                d.running_s
            ));
        }
        let disposition = format!("attachment; filename=\"livesnap-usage-{from}-{to}.csv\"");
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (header::CONTENT_DISPOSITION, disposition),
            ],
            out,
        )
            .into_response());
    }
    let total = days.iter().map(|d| d.running_s).sum::<f64>();
    Ok(Json(Usage {
        from,
        to,
        usage: days,
        total_running_s: (total * 1000.0).round() / 1000.0,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("cam 1"), "cam 1");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("-1,2"), "\"'-1,2\"");
    }

    #[test]
    fn usage_spans_are_counted_in_days() {
        assert_eq!(days_between("2026-12-05", "2026-12-05"), Some(1));
        assert_eq!(days_between("2026-01-01", "2026-12-31"), Some(365));
        assert_eq!(days_between("2026-12-06", "2026-12-05"), Some(0));
        assert_eq!(days_between("2026-13-01", "2026-12-05"), None);
        assert_eq!(days_between("yesterday", "2026-12-05"), None);
    }
}
