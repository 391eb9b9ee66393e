//! sift's core: turn free text into typed, validated data with a language model.
//!
//! A Rust type (serde + schemars) becomes a JSON Schema; a [`Provider`] is asked for an answer
//! in one of four [`Mode`]s; the answer is parsed, checked against the schema, deserialised and
//! validated; on failure the errors go back to the model and it tries again. Usage is summed
//! over every attempt, and each attempt is recorded.
//!
//! ```no_run
//! use sift_core::{Client, Mode};
//!
//! #[derive(serde::Deserialize, schemars::JsonSchema, Debug)]
//! struct UserDetail {
//!     name: String,
//!     #[schemars(range(max = 150))]
//!     age: u8,
//! }
//!
//! # async fn run(client: Client) -> Result<(), sift_core::ExtractError> {
//! let user = client
//!     .extract::<UserDetail>()
//!     .user("Extract: `Daniel is a 24 year man living in New York City`")
//!     .mode(Mode::Tools)
//!     .send()
//!     .await?;
//! assert_eq!(user.value.name, "Daniel");
//! # Ok(()) }
//! ```

mod attempts;
pub mod batch;
mod chat;
mod example;
mod extract;
mod fallback;
pub mod files;
pub mod grounding;
pub mod json_stream;
mod machine;
mod message;
mod mode;
mod outcome;
mod partial;
mod provider;
mod reader;
pub mod report;
mod schema;
pub mod stream;
pub mod trace;
pub mod traces;
mod turns;
mod validate;

pub use example::Example;
pub use extract::{Client, DEFAULT_MAX_RETRIES, ExtractBuilder};
pub use fallback::{Fallback, falls_back};
pub use message::{
    ChatDelta, ChatRequest, ChatResponse, ChatStream, FILTERED, FinishReason,
    MIN_DERIVED_MAX_TOKENS, Message, OutputFormat, Role, Structured, ToolCall, Usage,
};
pub use mode::Mode;
pub use outcome::{Attempt, AttemptOutcome, Event, ExtractError, Extraction, StreamStats};
pub use partial::{Partial, PartialObject};
pub use provider::{Admission, Capabilities, Provider, ProviderError, Window};
pub use schema::{
    ResponseSchema, Schema, SchemaError, WRAPPER_FIELD, decode_fragment, escape_pointer_token,
};
pub use stream::{EventStream, ExtractStream};
pub use turns::{Turn, Turns};
pub use validate::{
    FieldError, SchemaValidator, Validate, Violation, deserialize, pointer_segments,
    pointer_to_path,
};

pub use async_trait::async_trait;

#[doc(hidden)]
pub mod __private {
    pub use serde;
}

/// Entry points for the fuzz targets (not a stable API).
#[doc(hidden)]
pub mod __fuzz {
    use serde_json::Value;

    use crate::reader::{AnswerReader, Purpose};
    use crate::{ChatDelta, Mode};

    /// Reads `deltas` as a streamed answer in `mode` (list elements as they close when
    /// `elements`, else one growing value) the way the attempt loop does, snapshots
    /// included: the elements, the value, and the first error.
    pub fn read(
        mode: Mode,
        elements: bool,
        deltas: Vec<ChatDelta>,
    ) -> (Vec<Value>, Option<Value>, Option<String>) {
        let purpose = if elements {
            Purpose::Elements
        } else {
            Purpose::Whole
        };
        let mut reader = AnswerReader::new(mode, purpose, "Output", Some(crate::WRAPPER_FIELD));
        let mut out = Vec::new();
        let mut error = None;
        for delta in deltas {
            if let Err(e) = reader.push(delta, &mut out) {
                error.get_or_insert(e.into_message());
            }
            if !elements && reader.progressed {
                let _ = reader.partial();
            }
        }
        if error.is_none()
            && let Err(e) = reader.finish(&mut out)
        {
            error = Some(e.into_message());
        }
        let _ = reader.to_response(Default::default(), None);
        let value = if elements {
            reader.take_unlisted()
        } else {
            reader.take_value()
        };
        (out, value, error)
    }
}
