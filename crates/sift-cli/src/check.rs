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
    refused(&config, &refusals(&config))
}

/// An error listing the extractors whose schema a provider refuses (`sift check` and `sift
/// serve` give the same), one per line with the config's path; `Ok` when there are none.
pub(crate) fn refused(config: &Config, refused: &[String]) -> anyhow::Result<()> {
    if refused.is_empty() {
        return Ok(());
    }
    let path = config
        .path
        .as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    anyhow::bail!("{path}: {}", refused.join(&format!("\n{path}: ")))
}

/// Whether extractor `e` runs on the embedded model: its provider is local, or it names none
/// and `sift serve` would pick the embedded model (no OpenAI variables set).
fn on_local(config: &Config, e: &ExtractorSpec) -> bool {
    match e.provider.as_deref().and_then(|p| config.providers.get(p)) {
        Some(ProviderSpec::Local { .. }) => true,
        Some(_) => false,
        None => crate::providers::default_kind() == crate::providers::ProviderKind::Local,
    }
}

/// The extractors whose schema the embedded model would refuse, with why (the same check
/// `sift serve` makes at start-up).
fn refusals(config: &Config) -> Vec<String> {
    config
        .extractors
        .iter()
        .filter(|e| on_local(config, e))
        .filter_map(|e| {
            local_enforcement(e)
                .err()
                .map(|why| format!("extractor `{}`: {why}", e.name))
        })
        .collect()
}

#[cfg(feature = "local")]
fn local_enforcement(e: &ExtractorSpec) -> Result<&'static str, String> {
    match sift_local::check_schema(e.output.constrained_schema()) {
        Ok(sift_local::Enforcement::Exact) => Ok("the whole schema, as an exact grammar"),
        Ok(_) => Ok(
            "most of the schema, as an approximate grammar (keywords llguidance does not implement, and `oneOf` exclusivity, are left to validation)",
        ),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(not(feature = "local"))]
fn local_enforcement(_: &ExtractorSpec) -> Result<&'static str, String> {
    Ok("nothing: this sift was built without the embedded model")
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
        Some((name, ProviderSpec::OpenAi { dialect, .. })) => {
            let dialect: sift_openai::Dialect = dialect
                .as_deref()
                .and_then(|d| d.parse().ok())
                .unwrap_or_default();
            format!(
                "{name} (openai-compatible, dialect {dialect}: a call forced first with {}, then \
                 in the forms the server honours, learned from its answers)",
                dialect.first_forcing().describe()
            )
        }
        Some((name, ProviderSpec::Anthropic { .. })) => format!(
            "{name} (anthropic: a forced tool call in tools mode, native structured output in \
             json_schema mode)"
        ),
        Some((name, ProviderSpec::Gemini { .. })) => format!(
            "{name} (gemini: a forced function call in tools mode, native JSON output in \
             json_schema and json modes)"
        ),
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
    if !e.fallbacks.is_empty() {
        let _ = writeln!(
            out,
            "  then, when it fails in a way its retries cannot fix: {}",
            e.fallbacks.join(", then ")
        );
    }
    let stream = if e.output.is_array() {
        "elements as they close"
    } else {
        "partial snapshots, then the value"
    };
    let _ = writeln!(out, "  POST /v1/extractors/{}", e.name);
    let _ = writeln!(out, "  POST /v1/extractors/{}/many", e.name);
    let _ = writeln!(out, "  POST /v1/extractors/{}/stream  ({stream})", e.name);
    let local = || match local_enforcement(e) {
        Ok(how) => how.to_owned(),
        Err(why) => format!("refused: {why}"),
    };
    let constraint = match kind {
        Some(ProviderSpec::Local { .. }) => local(),
        Some(ProviderSpec::Anthropic { .. }) => {
            "Anthropic's structured outputs in json_schema mode (types, required fields, enums, \
             closed objects; no numeric or length bounds); a forced tool call in tools mode"
                .to_owned()
        }
        Some(ProviderSpec::Gemini { .. }) => {
            "Gemini's controlled generation in json_schema and tools modes (types, required \
             fields, enums; bounds and patterns as the model takes them); the whole schema \
             validated after"
                .to_owned()
        }
        Some(_) if e.output.is_strict() => {
            "OpenAI strict mode: types, required fields, enums, closed objects".to_owned()
        }
        Some(_) => "none (the schema cannot be strict: sent with strict: false)".to_owned(),
        None if e.output.is_strict() => format!(
            "OpenAI strict mode on an OpenAI-compatible default; on the embedded model, {}",
            local()
        ),
        None => format!(
            "nothing on an OpenAI-compatible default (strict: false); on the embedded model, {}",
            local()
        ),
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
        assert!(text.contains("as an exact grammar"), "{text}");
        assert!(refusals(&config).is_empty());
        let config = Config::parse(
            "[providers.llama]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:8080/v1\"\ndialect = \"llama.cpp\"\n\n[extractors.x]\nschema = { type = \"object\" }\nprovider = \"llama\"\n",
            "t.toml".as_ref(),
        )
        .unwrap();
        let text = report(&config);
        assert!(
            text.contains("dialect llamacpp: a call forced first with tool_choice \"required\""),
            "{text}"
        );
        let bad = Config::parse(
            "[providers.llama]\nkind = \"openai\"\ndialect = \"tgi\"\n",
            "t.toml".as_ref(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            bad.contains("t.toml:3:11: `providers.llama.dialect` is `tgi`"),
            "{bad}"
        );
    }

    #[cfg(feature = "local")]
    #[test]
    fn a_schema_the_embedded_model_cannot_enforce_is_an_error() {
        let config = Config::parse(
            "[providers.box]\nkind = \"local\"\n\n[extractors.code]\nprovider = \"box\"\nschema = { type = \"object\", properties = { c = { type = \"string\", pattern = \"^(?!x)\" } } }\n",
            "t.toml".as_ref(),
        )
        .unwrap();
        let refused = refusals(&config);
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(
            refused[0].contains("extractor `code`: `pattern` at `/properties/c/pattern`"),
            "{}",
            refused[0]
        );
        assert!(report(&config).contains("refused:"));
    }
}
