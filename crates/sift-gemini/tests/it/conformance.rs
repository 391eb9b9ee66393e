//! The conformance suite every provider passes (`sift_test_support::conformance`), against
//! the scripted server speaking Gemini's generateContent.

use std::sync::Arc;
use std::time::Duration;

use sift_core::Provider;
use sift_gemini::{Gemini, GeminiConfig};
use sift_test_support::conformance::{Knobs, Subject};
use sift_test_support::{ScriptedServer, Wire};

fn build(server: &ScriptedServer, knobs: Knobs) -> Arc<dyn Provider> {
    let mut config = GeminiConfig::new(server.gemini_base_url())
        .api_key(knobs.key)
        .timeout(knobs.timeout)
        .max_body(knobs.max_body)
        .backoff(Duration::from_millis(5), Duration::from_millis(20));
    if let Some(hook) = knobs.header_hook {
        config = config.header_hook(Arc::new(hook));
    }
    Arc::new(Gemini::new(config).expect("provider"))
}

fn subject() -> Subject {
    Subject {
        wire: Wire::Gemini,
        build,
    }
}

sift_test_support::conformance_suite!(subject);
