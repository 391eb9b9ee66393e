//! sift-core's integration tests.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod json_stream;
mod machine;
