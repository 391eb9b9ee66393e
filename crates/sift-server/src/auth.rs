//! Service keys: with any configured, every endpoint but `/healthz` needs
//! `Authorization: Bearer KEY`.
//!
//! The presented key and each configured key are hashed (SHA-256) and the digests compared in
//! constant time, so neither a key's content nor its length leaks through timing. Keys are
//! never logged: a refusal logs only that a key was missing or wrong.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// The digests of the accepted keys.
#[derive(Clone)]
pub(crate) struct Keys(Arc<Vec<[u8; 32]>>);

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys({} configured)", self.0.len())
    }
}

impl Keys {
    pub(crate) fn new(keys: &[String]) -> Self {
        Self(Arc::new(
            keys.iter().map(|k| digest(k.as_bytes())).collect(),
        ))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn accepts(&self, presented: &[u8]) -> bool {
        let d = digest(presented);
        // Every key is compared, whichever matches.
        self.0
            .iter()
            .fold(subtle::Choice::from(0), |found, k| found | k.ct_eq(&d))
            .into()
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

pub(crate) async fn require_key(State(keys): State<Keys>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    match presented {
        Some(key) if keys.accepts(key.as_bytes()) => next.run(req).await,
        Some(_) => {
            tracing::warn!("refused: wrong service key");
            ApiError::Unauthorized.into_response()
        }
        None => {
            tracing::warn!("refused: no service key");
            ApiError::Unauthorized.into_response()
        }
    }
}
