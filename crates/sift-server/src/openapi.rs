//! The OpenAPI 3.1 document.

use utoipa::OpenApi;

use crate::error::{
    AnswerError, AttemptReport, ExtractionError, ExtractionFailure, HttpValidationError,
    ManyUsersError, ManyUsersFailureDetail, Message, QueryFailure, UsageReport,
};
use crate::handlers::{self, Health, ItemError, StreamDone};
use crate::models::{MultipleUserData, UserData, UserDetail};
use crate::request::{ErrorDetail, LocItem};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sift",
        description = "Typed, validated extraction from free text with language models.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(handlers::user, handlers::many_users, handlers::extract, handlers::healthz, handlers::metrics),
    components(schemas(
        UserData, MultipleUserData, UserDetail, HttpValidationError, ErrorDetail, LocItem,
        ExtractionError, ExtractionFailure, AttemptReport, AnswerError, UsageReport,
        ManyUsersError, ManyUsersFailureDetail, QueryFailure, StreamDone, ItemError, Health, Message
    )),
    tags(
        (name = "extraction", description = "The seed's endpoints"),
        (name = "service", description = "Operations"),
    )
)]
struct ApiDoc;

/// The service's OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc
}
