//! `sift extract`: one extraction from the command line, printed as JSON.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use futures::StreamExt;
use serde_json::Value;
use sift_config::{Config, ExtractorSpec};
use sift_core::report::ExtractionFailure;
use sift_core::trace::Recording;
use sift_core::{Attempt, Event, ExtractError, Schema};

use crate::providers::{self, Clients, ProviderArgs};

/// Flags of `sift extract`.
#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// The extractor's name in the config (without `--schema`), then the text (`-` reads
    /// stdin; without it, `--file` or stdin).
    #[arg(num_args = 0..=2, value_name = "NAME | TEXT")]
    positional: Vec<String>,
    #[command(flatten)]
    adhoc: AdhocArgs,
    /// Read this document (PDF, HTML, Markdown or text, by its extension or content): a
    /// long one is split into chunks, extracted and merged. With `--json`, the file holds
    /// the input object instead.
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// The text is the extractor's input as a JSON object (for inputs of several fields).
    #[arg(long)]
    json: bool,
    /// Print as it arrives, as NDJSON: each element of a list as it closes, or snapshots of
    /// an object as its fields fill in, then the whole value.
    #[arg(long)]
    stream: bool,
    /// Print `{"value": ..., "spans": {...}}`: where each grounded value was found in the
    /// input (by JSON pointer into the value; offsets in Unicode scalar values).
    #[arg(long, conflicts_with = "stream")]
    spans: bool,
    /// Show every attempt (outcome, time, tokens, errors) and the model calls on stderr.
    #[arg(short, long)]
    verbose: bool,
    #[command(flatten)]
    providers: ProviderArgs,
}

/// An extractor given on the command line instead of by name (`extract`, `batch`, `eval`).
#[derive(Debug, Args)]
pub struct AdhocArgs {
    /// An output JSON Schema file, instead of a configured extractor.
    #[arg(long, value_name = "FILE")]
    pub(crate) schema: Option<PathBuf>,
    /// With `--schema`: the instructions, a minijinja template over `text`; without
    /// `{{ text }}` in it, the text follows it.
    #[arg(long)]
    pub(crate) prompt: Option<String>,
    /// With `--schema`: a system prompt.
    #[arg(long)]
    pub(crate) system: Option<String>,
}

impl AdhocArgs {
    /// The extractor: the config's `name`, or the one these flags make.
    pub(crate) fn extractor(
        &self,
        file: Option<&Config>,
        name: Option<&str>,
    ) -> anyhow::Result<ExtractorSpec> {
        extractor(
            file,
            name,
            self.schema.as_deref(),
            self.prompt.as_deref(),
            self.system.as_deref(),
        )
    }
}

/// Exit code: the input or the flags are wrong (also a bad config or schema).
pub const EXIT_INPUT: u8 = 2;
/// Exit code: the model could not be reached or answered with an error.
pub const EXIT_PROVIDER: u8 = 3;
/// Exit code: the model answered, but no answer was valid (re-asks spent, cut off).
pub const EXIT_INVALID: u8 = 4;

/// A failure with its exit code.
pub(crate) struct Failed {
    pub(crate) code: u8,
    pub(crate) error: anyhow::Error,
}

impl Failed {
    /// The provider could not be set up.
    pub(crate) fn provider(error: anyhow::Error) -> Self {
        Self {
            code: EXIT_PROVIDER,
            error,
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failed {
    fn from(e: E) -> Self {
        Self {
            code: EXIT_INPUT,
            error: e.into(),
        }
    }
}

/// Runs the extraction; prints the value (or the stream) on stdout.
pub async fn run(args: ExtractArgs) -> ExitCode {
    let telemetry = match providers::tool_telemetry(&args.providers, false) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let result = extract(args, &telemetry).await.map(|()| ExitCode::SUCCESS);
    providers::finish(telemetry, result).await
}

/// The extractor to run: a configured one by name, or one made of `--schema` and `--prompt`.
pub(crate) fn extractor(
    file: Option<&Config>,
    name: Option<&str>,
    schema: Option<&std::path::Path>,
    prompt: Option<&str>,
    system: Option<&str>,
) -> anyhow::Result<ExtractorSpec> {
    match (name, schema) {
        (Some(_), Some(_)) => bail!("give an extractor's name or --schema, not both"),
        (None, None) => bail!("name an extractor from the config, or give --schema FILE"),
        // The built-in extractor, when the config does not name its own `user`.
        (Some("user"), None) if file.is_none_or(|f| f.extractor("user").is_none()) => {
            sift_server::Extractor::user_spec().map_err(|e| anyhow::anyhow!("{e}"))
        }
        (Some(name), None) => {
            let file = file.with_context(|| {
                format!(
                    "no config to find extractor `{name}` in: pass --config FILE, set \
                     SIFT_CONFIG, or add ./sift.toml (or give --schema FILE)"
                )
            })?;
            file.extractor(name).cloned().with_context(|| {
                let names: Vec<&str> = file.extractors.iter().map(|e| e.name.as_str()).collect();
                format!(
                    "no extractor `{name}` in the config; it has: {}",
                    if names.is_empty() {
                        "none".into()
                    } else {
                        names.join(", ")
                    }
                )
            })
        }
        (None, Some(path)) => {
            let text = sift_core::files::read_text(path, sift_core::files::MAX_CONFIG_FILE)
                .with_context(|| format!("could not read the schema {}", path.display()))?;
            let mut value: Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: not valid JSON", path.display()))?;
            // A schema published with its name and description around it (ExtractBench's
            // `{"name", "description", "schema_definition": {...}}`): the schema inside.
            if value.get("type").is_none()
                && value.get("properties").is_none()
                && let Some(inner) = value.get("schema_definition").filter(|v| v.is_object())
            {
                value = inner.clone();
            }
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "Output".into());
            let output = Schema::compile(&name, value)
                .with_context(|| format!("{}: not a usable JSON Schema", path.display()))?;
            let input = Schema::compile(
                "Input",
                serde_json::from_str(sift_config::TEXT_INPUT).context("the text input schema")?,
            )
            .context("the text input schema")?;
            let prompt = match prompt {
                Some(p) if p.contains("{{") => p.to_owned(),
                Some(p) => format!("{p}\n\n{{{{ text }}}}"),
                None => "{{ text }}".into(),
            };
            ExtractorSpec::new(
                "adhoc",
                "given with --schema",
                output,
                input,
                system.map(str::to_owned),
                &prompt,
            )
            .map_err(|e| anyhow::anyhow!("--prompt: {e}"))
        }
    }
}

/// The text: the argument (`-` for stdin), `--file`, or stdin.
fn read_text(arg: Option<&str>, file: Option<&std::path::Path>) -> anyhow::Result<String> {
    match (arg, file) {
        (Some(_), Some(_)) => bail!("give the text as an argument or with --file, not both"),
        (Some(t), None) if t != "-" => Ok(t.to_owned()),
        (None, Some(path)) => sift_core::files::read_text(path, sift_core::files::MAX_DATA_FILE)
            .with_context(|| format!("could not read {}", path.display())),
        _ => {
            let mut text = String::new();
            let limit = sift_core::files::MAX_DATA_FILE;
            std::io::stdin()
                .take(limit + 1)
                .read_to_string(&mut text)
                .context("could not read the text from stdin")?;
            if text.len() as u64 > limit {
                bail!("the text on stdin is larger than {limit} bytes");
            }
            Ok(text)
        }
    }
}

/// The extractor's input for `text`: its one text field, or (`--json`, or an input of
/// several fields) the text read as the input object. Checked against the input schema.
fn input_for(spec: &ExtractorSpec, text: String, json: bool) -> anyhow::Result<Value> {
    let field = sift_batch::text_field(spec.input.value());
    let input = match (json, field) {
        (false, Some(field)) => {
            let mut m = serde_json::Map::new();
            m.insert(field, Value::String(text));
            Value::Object(m)
        }
        _ => serde_json::from_str(&text).with_context(|| {
            format!(
                "extractor `{}` takes {}: give the input as a JSON object",
                spec.name,
                sift_batch::describe_fields(spec.input.value())
            )
        })?,
    };
    let errors = spec.input.errors(&input);
    if !errors.is_empty() {
        let list: Vec<String> = errors
            .iter()
            .map(|e| match e.path.as_str() {
                "" => e.message.clone(),
                p => format!("{p}: {}", e.message),
            })
            .collect();
        bail!(
            "the input does not fit extractor `{}`'s input schema: {}",
            spec.name,
            list.join("; ")
        );
    }
    Ok(input)
}

async fn extract(args: ExtractArgs, telemetry: &providers::Observed) -> Result<(), Failed> {
    let file = args.providers.config_file()?;
    let (name, text_arg) = match (&args.adhoc.schema, args.positional.as_slice()) {
        (Some(_), [text]) => (None, Some(text.as_str())),
        (Some(_), []) => (None, None),
        (Some(_), _) => {
            return Err(
                anyhow::anyhow!("with --schema, give at most one argument: the text").into(),
            );
        }
        (None, [name]) => (Some(name.as_str()), None),
        (None, [name, text]) => (Some(name.as_str()), Some(text.as_str())),
        (None, _) => (None, None),
    };
    let spec = args.adhoc.extractor(file.as_ref(), name)?;
    if args.adhoc.schema.is_none() && (args.adhoc.prompt.is_some() || args.adhoc.system.is_some()) {
        return Err(anyhow::anyhow!(
            "--prompt and --system go with --schema; a configured extractor has its own"
        )
        .into());
    }
    if let (Some(path), false) = (args.file.as_deref(), args.json) {
        if text_arg.is_some() {
            return Err(
                anyhow::anyhow!("give the text as an argument or with --file, not both").into(),
            );
        }
        let document = crate::document::read(path)?;
        let client = Clients::new(&args.providers, telemetry, None)
            .only_for(file.as_ref(), &spec)
            .await
            .map_err(Failed::provider)?;
        let how = crate::document::Printing {
            spans: args.spans,
            stream: args.stream,
            verbose: args.verbose,
        };
        return crate::document::extract(&spec, &client, document, how).await;
    }
    let text = read_text(text_arg, args.file.as_deref())?;
    let input = input_for(&spec, text, args.json)?;
    let messages = spec.messages(&input)?;
    let client = Clients::new(&args.providers, telemetry, None)
        .only_for(file.as_ref(), &spec)
        .await
        .map_err(Failed::provider)?;
    let mut stdout = std::io::stdout().lock();
    let request = spec.request(&client, &input, messages);
    let recording = client.recording().clone();
    let failed = |e| failed(e, &recording);
    if !args.stream {
        let out = request.send().await.map_err(failed)?;
        if args.verbose {
            show_attempts(&out.attempts);
        }
        if args.spans {
            let spans =
                serde_json::to_value(out.spans.unwrap_or_default()).map_err(anyhow::Error::from)?;
            line(
                &mut stdout,
                &serde_json::json!({"value": out.value, "spans": spans}),
            )?;
        } else {
            line(&mut stdout, &out.value)?;
        }
        return Ok(());
    }
    // Elements of an array output as they close; snapshots, then the value, of any other.
    let mut stream = request.stream();
    while let Some(event) = stream.next().await {
        match event.map_err(failed)? {
            Event::Element { value, .. } | Event::Snapshot(value) | Event::Value(value) => {
                line(&mut stdout, &value)?;
            }
            Event::ItemError { index, errors, .. } => {
                let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
                eprintln!("element {index} is invalid, left out: {}", list.join("; "));
            }
            Event::Retry { attempt, errors } => {
                let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
                eprintln!(
                    "attempt {attempt} was invalid, asking again: {}",
                    list.join("; ")
                );
            }
            Event::Done { attempts, .. } if args.verbose => show_attempts(&attempts),
            _ => {}
        }
    }
    Ok(())
}

/// `value` on a line of its own, flushed (a stream's reader sees it at once).
pub(crate) fn line(out: &mut impl Write, value: &Value) -> anyhow::Result<()> {
    writeln!(out, "{value}")
        .and_then(|()| out.flush())
        .context("could not write to stdout")
}

/// A failed extraction: every attempt shown, and the exit code of its kind.
pub(crate) fn failed(e: ExtractError, recording: &Recording) -> Failed {
    show_attempts(e.attempts());
    let code = match &e {
        ExtractError::Schema(_) => EXIT_INPUT,
        ExtractError::Provider { .. } => EXIT_PROVIDER,
        _ => EXIT_INVALID,
    };
    let report = ExtractionFailure::from_error(&e, recording);
    Failed {
        code,
        error: anyhow::anyhow!("{} ({})", report.message, report.kind),
    }
}

pub(crate) fn show_attempts(attempts: &[Attempt]) {
    for a in attempts {
        let by = a
            .model
            .as_deref()
            .map(|m| format!(" by {m}"))
            .unwrap_or_default();
        eprintln!(
            "attempt {}: {}{by} in {} ms, {} tokens in, {} out",
            a.number,
            a.outcome.as_str(),
            a.duration.as_millis(),
            a.usage.input_tokens,
            a.usage.output_tokens
        );
        for e in &a.errors {
            eprintln!("  {e}");
        }
    }
}
