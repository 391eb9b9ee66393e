//! The conformance suite every provider passes (`sift_test_support::conformance`), against
//! the scripted server speaking Anthropic's Messages API.

use std::sync::Arc;
use std::time::Duration;

use sift_anthropic::{Anthropic, AnthropicConfig};
use sift_core::Provider;
use sift_test_support::conformance::{Knobs, Subject};
use sift_test_support::{ScriptedServer, Wire};

fn build(server: &ScriptedServer, knobs: Knobs) -> Arc<dyn Provider> {
    let mut config = AnthropicConfig::new(server.anthropic_base_url())
        .api_key(knobs.key)
        .timeout(knobs.timeout)
        .max_body(knobs.max_body)
        .backoff(Duration::from_millis(5), Duration::from_millis(20));
    if let Some(hook) = knobs.header_hook {
        config = config.header_hook(Arc::new(hook));
    }
    Arc::new(Anthropic::new(config).expect("provider"))
}

fn subject() -> Subject {
    Subject {
        wire: Wire::Anthropic,
        build,
    }
}

sift_test_support::conformance_suite!(subject);
