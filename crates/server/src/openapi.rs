//! The OpenAPI 3.1 document of the HTTP API, served at `GET /openapi.json`.
//!
//! Each handler carries its own `#[utoipa::path]` and is registered with `utoipa_axum::routes!`,
//! which adds the route to the router and its operation to the document in one call, so a route
//! registered that way cannot go undocumented. Bodies are the handlers' own typed request and
//! response structs. This module holds what the handlers share: the one error body, the answers
//! every route can give ([`add_common_responses`]), the schemas of response parts whose types
//! live outside the API ([`external`]), and the handler of the document itself.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::openapi::content::Content;
use utoipa::openapi::path::Operation;
use utoipa::openapi::OpenApi;
use utoipa::ToSchema;

/// Tag of the live streams and their pictures.
pub const TAG_STREAMS: &str = "streams";
/// Tag of the Flashphoner WCS compatible call.
pub const TAG_WCS: &str = "wcs";
/// Tag of templates and bindings.
pub const TAG_AUTOMATION: &str = "automation";
/// Tag of stored snapshots.
pub const TAG_SNAPSHOTS: &str = "snapshots";
/// Tag of accounts and their API keys.
pub const TAG_ACCOUNTS: &str = "accounts";
/// Tag of pull jobs and their usage.
pub const TAG_JOBS: &str = "jobs";
/// Tag of health, readiness, metrics and this document.
pub const TAG_OPERATIONS: &str = "operations";

/// The document's fixed part (info, tags); the routes add their paths and schemas to it.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "livesnap", description = "Live video streams in, still pictures out."),
    tags(
        (name = TAG_STREAMS, description = "Live streams and pictures of them on demand"),
        (name = TAG_WCS, description = "Flashphoner WCS compatible snapshot call"),
        (name = TAG_AUTOMATION, description = "Templates, bindings and the state of automatic snapshots"),
        (name = TAG_SNAPSHOTS, description = "Stored snapshots, the index and callbacks"),
        (name = TAG_ACCOUNTS, description = "Accounts (tenants), their domains and their API keys"),
        (name = TAG_JOBS, description = "Pull jobs (a URL pictured on a template's schedule) and their usage"),
        (name = TAG_OPERATIONS, description = "Health, readiness, metrics and this document"),
    )
)]
pub struct ApiDoc;

// `AppError::into_response` writes this shape; a test below holds the two together.
/// The body of every error answer: `{"error", "status"}`, with `field` when a template or
/// binding field or a numeric parameter was refused and `candidates` when a bare stream name is
/// ambiguous.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
    /// The HTTP status again.
    pub status: u16,
    /// The template or binding field, query parameter or request number that was refused (400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub field: Option<String>,
    /// Every live stream a bare stream name matches, as `domain/app/stream` (409).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub candidates: Option<Vec<String>>,
}

/// Adds the answers every route can give whatever its handler does, each with the one error
/// body: 408 when the request is still unanswered after `request_timeout_s` (or its body did not
/// arrive within `http_body_timeout_s`), 431 for too many or too large headers, and, for a route
/// that reads a body, 413 when the body is over `max_request_bytes`.
pub fn add_common_responses(doc: &mut OpenApi) {
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for op in operations.into_iter().flatten() {
            add_common(op);
        }
    }
}

fn add_common(op: &mut Operation) {
    let error = |description: &str| {
        let body = utoipa::openapi::Ref::from_schema_name("ErrorBody");
        utoipa::openapi::ResponseBuilder::new()
            .description(description)
            .content("application/json", Content::new(Some(body)))
            .build()
            .into()
    };
    let responses = &mut op.responses.responses;
    responses.entry("408".into()).or_insert_with(|| {
        error("The request took longer than `request_timeout_s`, or its body longer than `http_body_timeout_s`")
    });
    responses
        .entry("431".into())
        .or_insert_with(|| error("More than 100 request headers, or over 32 KiB of them"));
    if op.request_body.is_some() {
        responses
            .entry("413".into())
            .or_insert_with(|| error("The body is larger than `max_request_bytes`"));
    }
}

// The router puts the document in an `Extension` when it is built (`api::app`).
/// `GET /openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = TAG_OPERATIONS,
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API", body = Object,
            content_type = "application/json"),
    )
)]
pub(crate) async fn openapi_json(Extension(doc): Extension<Arc<OpenApi>>) -> Response {
    Json(doc.as_ref()).into_response()
}

/// Schemas of response parts whose types live outside the API and have no schema of their own
/// (the picture service's and the automation's counters, the spool, callback deliveries). Each
/// names the fields its type serializes; a test checks them against the real serialization.
pub mod external {
    use utoipa::ToSchema;

    /// What the picture service has done since start.
    #[derive(ToSchema)]
    #[schema(as = SnapshotCounters)]
    pub struct SnapshotCountersSchema {
        /// Requests answered from the cache.
        pub cache_hits: u64,
        /// Requests that had to make their picture.
        pub cache_misses: u64,
        /// On-demand pictures answered (made or from the cache).
        pub on_demand: u64,
        /// Pictures made (decode + encode).
        pub pictures_made: u64,
        /// Decodes that failed.
        pub decode_errors: u64,
        /// Decoders created.
        pub decoders_created: u64,
        /// Idle decoders released.
        pub decoders_released: u64,
        /// `latest` pictures of a GOP past the frame or byte limit (the newest frame within
        /// them is pictured).
        pub latest_limited: u64,
        /// On-demand requests that ran out of time waiting for a decoder or their decode.
        pub timed_out_busy: u64,
    }

    /// Counters of automatic snapshots.
    #[derive(ToSchema)]
    #[schema(as = AutoCounters)]
    pub struct AutoCountersSchema {
        /// Pictures stored (directly or from the spool).
        pub stored: u64,
        /// Pictures that went to the spool because storage failed.
        pub spooled: u64,
        /// Pictures lost: could not be made, or the spool was full.
        pub failed: u64,
        /// Due pictures superseded, while they waited for a decoder, by a newer one of the same
        /// stream and template.
        pub missed: u64,
        /// Pictures deleted by retention.
        pub retention_deleted: u64,
        /// Pictures made for templates.
        pub pictures_template: u64,
        /// Pictures made for WCS automatic snapshots.
        pub pictures_wcs_auto: u64,
    }

    /// Due-to-written lag of the last 4096 automatic pictures, in milliseconds (`null` before
    /// the first one).
    #[derive(ToSchema)]
    #[schema(as = LagSummary)]
    pub struct LagSummarySchema {
        /// Pictures in the window.
        pub count: u64,
        /// Median.
        pub p50: Option<f64>,
        /// 99th percentile.
        pub p99: Option<f64>,
        /// Largest.
        pub max: Option<f64>,
    }

    /// The spool of pictures waiting for their storage.
    #[derive(ToSchema)]
    #[schema(as = SpoolStats)]
    pub struct SpoolStatsSchema {
        /// Entries waiting now.
        pub queued: u64,
        /// Bytes waiting now (headers included).
        pub bytes: u64,
        /// Entries delivered since start.
        pub stored: u64,
        /// Pictures refused since start (spool full or not writable).
        pub dropped: u64,
        /// Failed delivery attempts since start.
        pub retries: u64,
        /// Entry files set aside as unreadable since start.
        pub bad: u64,
    }

    /// Where a callback delivery is.
    #[derive(ToSchema)]
    #[schema(rename_all = "lowercase")]
    pub enum DeliveryState {
        /// Queued or being retried.
        Pending,
        /// Answered with a 2xx.
        Delivered,
        /// Out of tries.
        Failed,
    }

    /// One callback delivery.
    #[derive(ToSchema)]
    #[schema(as = Delivery)]
    pub struct DeliverySchema {
        /// Delivery id, also sent as `X-Livesnap-Delivery`; the same across restarts.
        pub id: String,
        /// Event type (`snapshot.stored`, `stream.published`, `stream.unpublished`).
        pub event: String,
        /// Target URL.
        pub url: String,
        /// Where the delivery is.
        pub state: DeliveryState,
        /// Tries so far.
        pub attempts: u32,
        /// HTTP status of the last try.
        pub last_status: Option<u16>,
        /// Error of the last try.
        pub last_error: Option<String>,
        /// When the event was queued (RFC 3339).
        pub created_at: String,
        /// The event body as sent.
        #[schema(value_type = Object)]
        pub body: serde_json::Value,
    }

    /// Callback deliveries by outcome since start.
    #[derive(ToSchema)]
    #[schema(as = DeliveryCounters)]
    pub struct DeliveryCountersSchema {
        /// Delivered (a 2xx answer).
        pub delivered: u64,
        /// Tries that failed and were retried.
        pub retried: u64,
        /// Gave up after the last try.
        pub failed: u64,
        /// Dropped because the queue was full.
        pub dropped: u64,
        /// Left in the index's queue at shutdown, for the next start.
        pub left_for_next_start: u64,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::http::StatusCode;
    use serde_json::Value;
    use utoipa::PartialSchema;

    use super::external::*;
    use super::*;
    use crate::error::AppError;

    /// The property names of a schema.
    fn properties<T: PartialSchema>() -> BTreeSet<String> {
        let schema = serde_json::to_value(T::schema()).expect("a schema serializes");
        schema["properties"]
            .as_object()
            .expect("an object schema")
            .keys()
            .cloned()
            .collect()
    }

    /// The keys of a value's JSON object.
    fn keys(v: impl Serialize) -> BTreeSet<String> {
        serde_json::to_value(v)
            .expect("serializes")
            .as_object()
            .expect("a JSON object")
            .keys()
            .cloned()
            .collect()
    }

    #[test]
    fn external_schemas_name_the_fields_their_types_serialize() {
        use livesnap_core::auto::{AutoCounters, LagSummary};
        use livesnap_core::snapshot::SnapshotCounters;
        assert_eq!(
            properties::<SnapshotCountersSchema>(),
            keys(SnapshotCounters::default())
        );
        assert_eq!(
            properties::<AutoCountersSchema>(),
            keys(AutoCounters::default())
        );
        let lag = LagSummary {
            count: 0,
            p50: None,
            p99: None,
            max: None,
        };
        assert_eq!(properties::<LagSummarySchema>(), keys(lag));
        assert_eq!(
            properties::<SpoolStatsSchema>(),
            keys(livesnap_store::SpoolStats::default())
        );
        assert_eq!(
            properties::<DeliveryCountersSchema>(),
            keys(crate::callbacks::DeliveryCounters::default())
        );
        let delivery = crate::callbacks::Delivery {
            id: "1".into(),
            event: "snapshot.stored".into(),
            url: "http://127.0.0.1:1/".into(),
            state: "pending",
            attempts: 0,
            last_status: None,
            last_error: None,
            created_at: "2026-01-01T00:00:00Z".into(),
            body: Value::Null,
        };
        assert_eq!(properties::<DeliverySchema>(), keys(&delivery));
    }

    /// Every error answer's body has the documented shape, and nothing else.
    #[tokio::test]
    async fn error_answers_have_the_error_body() {
        use http_body_util::BodyExt;
        let errors = [
            AppError::BadRequest("width must be a positive integer".into()),
            AppError::NotFound("no such endpoint".into()),
            AppError::Core(livesnap_core::Error::Ambiguous {
                name: "cam".into(),
                candidates: vec!["_default/a/cam".into(), "_default/b/cam".into()],
            }),
            AppError::Core(livesnap_core::Error::Timeout("no keyframe".into())),
            AppError::Config(livesnap_core::auto::ConfigError::Field(
                livesnap_core::template::FieldError {
                    field: "interval_s",
                    message: "must be 1..=86400".into(),
                },
            )),
        ];
        for e in errors {
            let response = e.into_response();
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .expect("an in-memory body")
                .to_bytes();
            let parsed: ErrorBody = serde_json::from_slice(&body).unwrap_or_else(|e| {
                panic!("{e}: {}", String::from_utf8_lossy(&body));
            });
            assert_eq!(parsed.status, status.as_u16());
            assert_eq!(
                parsed.candidates.is_some(),
                status == StatusCode::CONFLICT,
                "{parsed:?}"
            );
        }
    }
}
