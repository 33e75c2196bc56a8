//! The HTTP API of accounts and their API keys: `/v1/accounts`. The administrator's key
//! manages accounts; an account's keys see only their own account (another's is a `404`), and
//! its `admin` keys make and revoke its keys.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use livesnap_core::accounts::{Account, AccountPatch, AccountSpec, KeyInfo, NewKey, Role};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::AppState;
use crate::auth::Caller;
use crate::error::AppError;
use crate::openapi::{ErrorBody, TAG_ACCOUNTS};

/// The routes with their OpenAPI operations.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_accounts, create_account))
        .routes(routes!(get_account, patch_account, delete_account))
        .routes(routes!(list_keys, create_key))
        .routes(routes!(delete_key))
}

fn body<T: serde::de::DeserializeOwned>(b: &Bytes) -> Result<T, AppError> {
    serde_json::from_slice(b).map_err(|e| AppError::BadRequest(format!("invalid JSON body: {e}")))
}

/// Only the administrator's key manages accounts.
fn admin_only(caller: &Caller) -> Result<(), AppError> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(AppError::Forbidden(
            "only the administrator's key manages accounts".into(),
        ))
    }
}

/// The caller's view of account `name`: another account's is not found.
fn visible(caller: &Caller, name: &str) -> Result<(), AppError> {
    if caller.sees_account(name) {
        Ok(())
    } else {
        Err(AppError::Accounts(
            livesnap_core::accounts::AccountError::NotFound(format!(
                "account {}",
                name.chars().take(64).collect::<String>()
            )),
        ))
    }
}

/// `GET /v1/accounts`.
#[derive(Serialize, ToSchema)]
struct AccountList {
    /// The accounts the caller sees: all for the administrator, its own for an account.
    accounts: Vec<Account>,
}

/// `GET /v1/accounts`: every account (an account's key: its own).
#[utoipa::path(
    get,
    path = "/v1/accounts",
    tag = TAG_ACCOUNTS,
    responses((status = 200, description = "The accounts", body = AccountList))
)]
async fn list_accounts(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Json<AccountList> {
    let accounts = st
        .accounts
        .list()
        .into_iter()
        .filter(|a| caller.sees_account(&a.name))
        .collect();
    Json(AccountList { accounts })
}

/// `POST /v1/accounts`: a new account (the administrator's key only).
#[utoipa::path(
    post,
    path = "/v1/accounts",
    tag = TAG_ACCOUNTS,
    request_body = AccountSpec,
    responses(
        (status = 201, description = "Created", body = Account),
        (status = 400, description = "A refused field (named in `field`)", body = ErrorBody),
        (status = 403, description = "Not the administrator's key", body = ErrorBody),
        (status = 409, description = "The name exists, a domain belongs to another account, or \
            `MAX_ACCOUNTS` are kept", body = ErrorBody),
    )
)]
async fn create_account(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    b: Bytes,
) -> Result<Response, AppError> {
    admin_only(&caller)?;
    if st.auth.is_open() {
        return Err(AppError::Accounts(
            livesnap_core::accounts::AccountError::Conflict(
                "accounts need admin_key: without it the API is open to anyone and account keys would scope nothing".into(),
            ),
        ));
    }
    let account = st.accounts.create(body(&b)?).await?;
    Ok((StatusCode::CREATED, Json(account)).into_response())
}

/// `GET /v1/accounts/{name}`: one account.
#[utoipa::path(
    get,
    path = "/v1/accounts/{name}",
    tag = TAG_ACCOUNTS,
    params(("name" = String, Path, description = "Account name")),
    responses(
        (status = 200, description = "The account", body = Account),
        (status = 404, description = "No such account (or another account's)", body = ErrorBody),
    )
)]
async fn get_account(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<Account>, AppError> {
    visible(&caller, &name)?;
    Ok(Json(st.accounts.get(&name)?))
}

/// `PATCH /v1/accounts/{name}`: changes an account (the administrator's key only).
#[utoipa::path(
    patch,
    path = "/v1/accounts/{name}",
    tag = TAG_ACCOUNTS,
    params(("name" = String, Path, description = "Account name")),
    request_body = AccountPatch,
    responses(
        (status = 200, description = "Changed", body = Account),
        (status = 400, description = "A refused field", body = ErrorBody),
        (status = 403, description = "Not the administrator's key", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
        (status = 409, description = "A domain belongs to another account", body = ErrorBody),
    )
)]
async fn patch_account(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    b: Bytes,
) -> Result<Json<Account>, AppError> {
    visible(&caller, &name)?;
    admin_only(&caller)?;
    Ok(Json(st.accounts.update(&name, body(&b)?).await?))
}

/// The query of `DELETE /v1/accounts/{name}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeleteQuery {
    /// Delete it even while its domains have live streams.
    force: Option<bool>,
}

/// `DELETE /v1/accounts/{name}`: deletes an account with its keys (the administrator's key
/// only); refused while its domains have live streams or its jobs run, unless `?force=true`
/// (which stops its jobs).
#[utoipa::path(
    delete,
    path = "/v1/accounts/{name}",
    tag = TAG_ACCOUNTS,
    params(("name" = String, Path, description = "Account name"), DeleteQuery),
    responses(
        (status = 204, description = "Deleted; its keys no longer work"),
        (status = 403, description = "Not the administrator's key", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
        (status = 409, description = "Its domains have live streams", body = ErrorBody),
    )
)]
async fn delete_account(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> Result<StatusCode, AppError> {
    visible(&caller, &name)?;
    admin_only(&caller)?;
    st.accounts.get(&name)?;
    let scope = livesnap_core::jobs::JobScope::Account(&name);
    let force = q.force.unwrap_or(false);
    let jobs = st.jobs.running_ids(scope);
    // Forced: its jobs stop first (and stay, stopped, for the administrator to see or delete).
    if force {
        for id in &jobs {
            st.jobs.stop(id, scope).await?;
        }
    }
    let hub = st.hub.clone();
    st.accounts
        .delete(&name, |domains| {
            let live = hub
                .list()
                .iter()
                .filter(|s| domains.contains(&s.key.domain))
                .count();
            if force || (live == 0 && jobs.is_empty()) {
                return Ok(());
            }
            Err(livesnap_core::accounts::AccountError::Conflict(format!(
                "account {name} has {live} live streams and {} running jobs; stop them first, or delete with ?force=true",
                jobs.len()
            )))
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/accounts/{name}/keys`.
#[derive(Serialize, ToSchema)]
struct KeyList {
    /// The account's keys (never the keys themselves).
    keys: Vec<KeyInfo>,
}

/// `GET /v1/accounts/{name}/keys`: an account's keys: id, role, label, made, last used.
#[utoipa::path(
    get,
    path = "/v1/accounts/{name}/keys",
    tag = TAG_ACCOUNTS,
    params(("name" = String, Path, description = "Account name")),
    responses(
        (status = 200, description = "Its keys", body = KeyList),
        (status = 404, description = "No such account (or another account's)", body = ErrorBody),
    )
)]
async fn list_keys(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<KeyList>, AppError> {
    visible(&caller, &name)?;
    Ok(Json(KeyList {
        keys: st.accounts.keys(&name)?,
    }))
}

/// `POST /v1/accounts/{name}/keys`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct KeyRequest {
    /// `admin` (everything within the account) or `read` (GETs only).
    role: Role,
    /// A label for people.
    #[serde(default)]
    label: Option<String>,
}

/// `POST /v1/accounts/{name}/keys`: makes a key; the answer is the only time it is shown.
#[utoipa::path(
    post,
    path = "/v1/accounts/{name}/keys",
    tag = TAG_ACCOUNTS,
    params(("name" = String, Path, description = "Account name")),
    request_body = KeyRequest,
    responses(
        (status = 201, description = "The key, shown once", body = NewKey),
        (status = 400, description = "Bad JSON or label", body = ErrorBody),
        (status = 404, description = "No such account (or another account's)", body = ErrorBody),
        (status = 409, description = "`MAX_KEYS` keys are kept", body = ErrorBody),
    )
)]
async fn create_key(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    b: Bytes,
) -> Result<Response, AppError> {
    visible(&caller, &name)?;
    let req: KeyRequest = body(&b)?;
    let key = st.accounts.create_key(&name, req.role, req.label).await?;
    Ok((StatusCode::CREATED, Json(key)).into_response())
}

/// `DELETE /v1/accounts/{name}/keys/{id}`: revokes a key at once.
#[utoipa::path(
    delete,
    path = "/v1/accounts/{name}/keys/{id}",
    tag = TAG_ACCOUNTS,
    params(
        ("name" = String, Path, description = "Account name"),
        ("id" = String, Path, description = "Key id"),
    ),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such key (or another account's)", body = ErrorBody),
    )
)]
async fn delete_key(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode, AppError> {
    visible(&caller, &name)?;
    st.accounts.delete_key(&name, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
