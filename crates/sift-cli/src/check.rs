//! `sift check`: validates a config without serving, and says what each extractor serves and
//! how its schema is enforced.

use std::fmt::Write as _;

use clap::Args;
use sift_config::{Config, ExtractorSpec, ProviderSpec};

/// Flags of `sift check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Config file [default: $SIFT_CONFIG, else ./sift.toml].
    #[arg(long, env = "SIFT_CONFIG")]
    config: Option<std::path::PathBuf>,
}

/// Prints the report; an error (every problem found) when the config is bad or missing.
pub fn run(args: &CheckArgs) -> anyhow::Result<()> {
    let config = Config::discover(args.config.as_deref())
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .ok_or_else(|| {
            anyhow::anyhow!("no config: pass --config FILE, set SIFT_CONFIG, or add ./sift.toml")
        })?;
    print!("{}", report(&config));
    Ok(())
}

fn report(config: &Config) -> String {
    let mut out = String::new();
    let path = config
        .path
        .as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let _ = writeln!(out, "{path}: ok, {} extractor(s)", config.extractors.len());
    let keys = if config.server.api_keys.is_empty() {
        format!("from ${} when set", config.server.api_keys_env)
    } else {
        format!(
            "{} in the file, plus ${} when set",
            config.server.api_keys.len(),
            config.server.api_keys_env
        )
    };
    let _ = writeln!(
        out,
        "service keys: {keys}; ad-hoc /v1/extract: {}",
        if config.server.adhoc { "on" } else { "off" }
    );
    for e in &config.extractors {
        let _ = writeln!(out);
        extractor(&mut out, config, e);
    }
    out
}

fn extractor(out: &mut String, config: &Config, e: &ExtractorSpec) {
    let provider = match e
        .provider
        .as_deref()
        .and_then(|p| config.providers.get(p).map(|s| (p, s)))
    {
        Some((name, ProviderSpec::Local { .. })) => format!("{name} (local)"),
        Some((name, _)) => format!("{name} (openai-compatible)"),
        None => "default (the provider sift serve picks)".to_owned(),
    };
    let kind = e.provider.as_deref().and_then(|p| config.providers.get(p));
    let mode = e
        .mode
        .map_or("the server's (tools by default)".to_owned(), |m| {
            m.to_string()
        });
    let _ = writeln!(out, "{}  version {}", e.name, e.version);
    if !e.description.is_empty() {
        let _ = writeln!(out, "  {}", e.description);
    }
    let _ = writeln!(out, "  provider: {provider}; mode: {mode}");
    let stream = if e.output.is_array() {
        "elements as they close"
    } else {
        "partial snapshots, then the value"
    };
    let _ = writeln!(out, "  POST /v1/extractors/{}", e.name);
    let _ = writeln!(out, "  POST /v1/extractors/{}/many", e.name);
    let _ = writeln!(out, "  POST /v1/extractors/{}/stream  ({stream})", e.name);
    let constraint = match kind {
        Some(ProviderSpec::Local { .. }) => "the whole schema as a grammar where llguidance compiles it".to_owned(),
        Some(_) if e.output.is_strict() => "OpenAI strict mode: types, required fields, enums, closed objects".to_owned(),
        Some(_) => "none (the schema cannot be strict: sent with strict: false)".to_owned(),
        None if e.output.is_strict() => {
            "OpenAI strict mode on an OpenAI-compatible default; the grammar on the embedded model".to_owned()
        }
        None => "nothing on an OpenAI-compatible default (strict: false); the grammar on the embedded model".to_owned(),
    };
    let _ = writeln!(out, "  enforced by constraint: {constraint}");
    let _ = writeln!(
        out,
        "  enforced by validation: the whole schema, every answer, then re-asked on failure"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_lists_endpoints_and_enforcement() {
        let config = Config::parse(
            "[providers.box]\nkind = \"local\"\n\n[extractors.tags]\nschema = { type = \"array\", items = { type = \"string\" } }\nprovider = \"box\"\n",
            "t.toml".as_ref(),
        )
        .unwrap();
        let text = report(&config);
        assert!(
            text.contains("POST /v1/extractors/tags/stream  (elements as they close)"),
            "{text}"
        );
        assert!(text.contains("provider: box (local)"), "{text}");
        assert!(text.contains("as a grammar"), "{text}");
    }
}
