//! `[extractors.NAME]`: an output schema, an input schema, and the prompt that turns an input
//! into the conversation sent to the model.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sift_core::grounding::{Policy, Sources};
use sift_core::{Client, Example, ExtractBuilder, Message, Mode, Schema};
use toml::Spanned;
use toml::de::DeValue;

use crate::toml_walk::{Problems, Section, to_json};
use crate::{ConfigError, ProviderSpec};

/// The input schema when an extractor declares none: `{"text": string}`, required.
pub const TEXT_INPUT: &str = r#"{"type":"object","properties":{"text":{"type":"string"}},"required":["text"],"additionalProperties":false}"#;

/// Names a template may use that are not input fields: minijinja's global functions.
const TEMPLATE_GLOBALS: &[&str] = &["range", "dict", "namespace", "debug", "loop"];

/// One extractor, checked: its schemas compiled, its prompt parsed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ExtractorSpec {
    /// The name in URLs (`/v1/extractors/{name}`).
    pub name: String,
    /// What it extracts, for people.
    pub description: String,
    /// The output schema.
    pub output: Schema,
    /// The input schema (an object).
    pub input: Schema,
    /// The system prompt.
    pub system: Option<String>,
    /// The prompt template's source.
    pub prompt: String,
    /// The provider's name in `[providers]` (`None`: the default provider).
    pub provider: Option<String>,
    /// The providers asked, in order, when `provider` fails in a way its retries cannot fix
    /// (`provider = ["main", "backup"]`; see `sift_core::Fallback`). Empty: none.
    pub fallbacks: Vec<String>,
    /// The model asked.
    pub model: Option<String>,
    /// How structured output is asked for.
    pub mode: Option<Mode>,
    /// Re-asks after an invalid answer.
    pub max_retries: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Limit on generated tokens per attempt.
    pub max_tokens: Option<u32>,
    /// A hash of everything that shapes the answer (schemas, prompts, model, mode).
    pub version: String,
    /// How `sift eval` compares fields, by path (`age`, `lines[].amount`); the others by
    /// the defaults.
    pub eval: BTreeMap<String, FieldRule>,
    /// Grounding policies by path (`seller.name`, `lines[].amount`, `*` for every leaf), from
    /// `[extractors.NAME.grounding]`; they win over the schema's `x-grounding` and the
    /// defaults. Every answer is grounded in the input's strings.
    pub grounding: BTreeMap<String, Policy>,
    /// Worked examples from `[[extractors.NAME.examples]]`, their prompts rendered, shown
    /// to the model before each request.
    pub examples: Vec<Example>,
    /// How documents go through it, from `[extractors.NAME.document]`.
    pub document: crate::DocumentSpec,
    template: Arc<minijinja::Environment<'static>>,
}

/// How `sift eval` compares a field's expected and extracted values.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct FieldRule {
    /// The comparison.
    pub matching: Matching,
    /// For numbers: the largest difference still equal.
    pub tolerance: Option<f64>,
}

impl FieldRule {
    /// A rule comparing by `matching`, numbers within `tolerance`.
    pub fn new(matching: Matching, tolerance: Option<f64>) -> Self {
        Self {
            matching,
            tolerance,
        }
    }
}

/// A comparison of values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Matching {
    /// Strings after Unicode case folding and whitespace and punctuation normalisation;
    /// numbers exactly; the default.
    Text,
    /// Equal as JSON.
    Exact,
    /// Numbers within the tolerance (strings holding numbers are read as numbers).
    Number,
    /// Not scored.
    Ignore,
}

/// Instructions one render of a prompt template may run (minijinja's fuel): enough for
/// loops over thousands of input items, and a template looping past it stops with
/// [`RenderError::OutOfFuel`] instead of running on.
pub const TEMPLATE_FUEL: u64 = 2_000_000;

/// The largest prompt a template may render, in bytes.
pub const MAX_PROMPT_BYTES: usize = 4 * 1024 * 1024;

/// Why an input could not be turned into a prompt.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// The template failed on this input.
    #[error("the prompt template failed: {0}")]
    Template(minijinja::Error),
    /// The template ran its whole instruction budget.
    #[error(
        "the prompt template ran past its budget of {fuel} instructions on this input (a loop \
         too long for it?)"
    )]
    OutOfFuel {
        /// The budget.
        fuel: u64,
    },
    /// The rendered prompt is larger than the bound.
    #[error("the prompt rendered from this input is larger than {limit} bytes")]
    TooLarge {
        /// The bound.
        limit: usize,
    },
}

impl RenderError {
    /// A short name of the kind, for error reports.
    pub fn kind(&self) -> &'static str {
        match self {
            RenderError::Template(_) => "template",
            RenderError::OutOfFuel { .. } => "template_fuel",
            RenderError::TooLarge { .. } => "prompt_too_large",
        }
    }
}

/// A writer that takes at most `limit` bytes, then refuses (and remembers that it did).
struct Bounded {
    out: Vec<u8>,
    limit: usize,
    over: bool,
}

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() + buf.len() > self.limit {
            self.over = true;
            return Err(std::io::Error::other("the prompt is over its size bound"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Renders the prompt of `env` (an [`environment`], whose fuel is [`TEMPLATE_FUEL`]) for
/// `input`, in at most [`MAX_PROMPT_BYTES`].
fn render(env: &minijinja::Environment<'static>, input: &Value) -> Result<String, RenderError> {
    let limit = MAX_PROMPT_BYTES;
    let template = env.get_template(PROMPT).map_err(RenderError::Template)?;
    let mut out = Bounded {
        out: Vec::new(),
        limit,
        over: false,
    };
    let result = template.render_captured_to(
        minijinja::Value::from(minijinja::value::Serde(input)),
        &mut out,
    );
    match result.map(drop) {
        Ok(()) => String::from_utf8(out.out).map_err(|e| {
            RenderError::Template(minijinja::Error::new(
                minijinja::ErrorKind::BadEscape,
                e.to_string(),
            ))
        }),
        Err(_) if out.over => Err(RenderError::TooLarge { limit }),
        Err(e) if e.kind() == minijinja::ErrorKind::OutOfFuel => Err(RenderError::OutOfFuel {
            fuel: TEMPLATE_FUEL,
        }),
        Err(e) => Err(RenderError::Template(e)),
    }
}

impl ExtractorSpec {
    /// An extractor built in code rather than read from a file.
    pub fn new(
        name: &str,
        description: &str,
        output: Schema,
        input: Schema,
        system: Option<String>,
        prompt: &str,
    ) -> Result<Self, String> {
        let template = environment(prompt).map_err(|e| e.to_string())?;
        let mut spec = Self {
            name: name.into(),
            description: description.into(),
            output,
            input,
            system,
            prompt: prompt.into(),
            provider: None,
            fallbacks: Vec::new(),
            model: None,
            mode: None,
            max_retries: None,
            temperature: None,
            max_tokens: None,
            version: String::new(),
            eval: BTreeMap::new(),
            grounding: BTreeMap::new(),
            examples: Vec::new(),
            document: crate::DocumentSpec::default(),
            template: Arc::new(template),
        };
        spec.version = spec.hash();
        Ok(spec)
    }

    /// The conversation for one input: the system prompt, then the rendered prompt.
    ///
    /// The render is bounded: at most [`TEMPLATE_FUEL`] instructions and
    /// [`MAX_PROMPT_BYTES`] of output, so no input makes it run or grow without end.
    pub fn messages(&self, input: &Value) -> Result<Vec<Message>, RenderError> {
        let text = render(&self.template, input)?;
        let mut messages = Vec::with_capacity(2);
        if let Some(system) = &self.system {
            messages.push(Message::system(system.clone()));
        }
        messages.push(Message::user(text));
        Ok(messages)
    }

    /// `client` with this extractor's model, mode and re-asks where it sets them (they win
    /// over the client's).
    pub fn client(&self, client: Client) -> Client {
        let mut client = client;
        if let Some(model) = &self.model {
            client = client.with_model(model);
        }
        if let Some(mode) = self.mode {
            client = client.with_mode(mode);
        }
        if let Some(n) = self.max_retries {
            client = client.with_max_retries(n);
        }
        client
    }

    /// An extraction of this extractor's output for `input` and the conversation `messages`
    /// (from [`messages`](Self::messages)), with its name (for telemetry), temperature, token
    /// limit and grounding in the input's strings: what the service, `sift extract` and
    /// `sift batch` all send. End it with `send`, or `stream` (elements of an array output,
    /// snapshots of any other).
    pub fn request(
        &self,
        client: &Client,
        input: &Value,
        messages: Vec<Message>,
    ) -> ExtractBuilder<Value> {
        self.request_as(client, &self.output, input, messages)
    }

    /// Like [`request`](Self::request), asking for `schema` in place of the output (a list of
    /// outputs, say, for a stream of them: its elements are grounded by the output's paths).
    pub fn request_as(
        &self,
        client: &Client,
        schema: &Schema,
        input: &Value,
        messages: Vec<Message>,
    ) -> ExtractBuilder<Value> {
        // An example answers with one output; a list of outputs asked for shows it as a
        // list of one.
        let listed = !self.examples.is_empty() && schema.is_array() && !self.output.is_array();
        let examples = self.examples.iter().map(|e| {
            let mut e = e.clone();
            if listed {
                e.output = Value::Array(vec![e.output]);
            }
            e
        });
        let mut b = client
            .extract_value(schema)
            .examples(examples)
            .messages(messages)
            .extractor(&self.name)
            .grounding(self.sources(input));
        if let Some(t) = self.temperature {
            b = b.temperature(t);
        }
        if let Some(n) = self.max_tokens {
            b = b.max_tokens(n);
        }
        b
    }

    /// What answers for `input` are grounded in: its strings, with this extractor's policies.
    pub fn sources(&self, input: &Value) -> Sources {
        Sources::of_input(input).with_policies(&self.grounding)
    }

    fn hash(&self) -> String {
        let shape = json!({
            "output": self.output.value(),
            "input": self.input.value(),
            "system": self.system,
            "prompt": self.prompt,
            "provider": self.provider,
            "fallbacks": self.fallbacks,
            "model": self.model,
            "mode": self.mode.map(Mode::as_str),
            "max_retries": self.max_retries,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "grounding": self.grounding,
            "examples": self.examples,
            "document": [&self.document.field, self.document.chunk_tokens, self.document.overlap_tokens],
        });
        let digest = Sha256::digest(shape.to_string().as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

const PROMPT: &str = "prompt";

/// A small input that fits `schema`, for a trial render: a short string, a few items of each
/// list, every property of each object.
fn sample(schema: &Value, depth: usize) -> Value {
    if depth > 4 {
        return Value::Null;
    }
    let kind = match schema.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(types)) => types.iter().find_map(Value::as_str).unwrap_or("string"),
        _ if schema.get("properties").is_some() => "object",
        _ => "string",
    };
    match kind {
        "object" => Value::Object(
            schema
                .get("properties")
                .and_then(Value::as_object)
                .map(|props| {
                    props
                        .iter()
                        .map(|(k, v)| (k.clone(), sample(v, depth + 1)))
                        .collect()
                })
                .unwrap_or_default(),
        ),
        "array" => {
            let item = sample(schema.get("items").unwrap_or(&Value::Null), depth + 1);
            Value::Array(vec![item; 3])
        }
        "integer" | "number" => json!(3),
        "boolean" => json!(true),
        "null" => Value::Null,
        _ => json!("a short sample text"),
    }
}

fn environment(prompt: &str) -> Result<minijinja::Environment<'static>, minijinja::Error> {
    let mut env = minijinja::Environment::new();
    env.set_fuel(Some(TEMPLATE_FUEL));
    // Prompts are plain text: nothing is HTML-escaped.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.add_template_owned(PROMPT, prompt.to_owned())?;
    Ok(env)
}

/// Reads one `[extractors.NAME]` section; `None` when it has problems (all recorded).
pub(crate) fn read(
    name: Spanned<String>,
    mut s: Section<'_, '_>,
    base: &Path,
    providers: &BTreeMap<String, ProviderSpec>,
    problems: &mut Problems,
    external: &mut Vec<ConfigError>,
) -> Option<ExtractorSpec> {
    let before = problems.0.len() + external.len();
    let path = s.path.clone();
    if !valid_name(name.get_ref()) {
        problems.at(
            name.span(),
            format!("`{path}`: extractor names may hold only letters, digits, `-` and `_`"),
        );
    }
    let description = s
        .string("description", problems)
        .map(Spanned::into_inner)
        .unwrap_or_default();
    let output = match s.value("schema") {
        Some(v) => schema_at(
            v,
            &format!("{path}.schema"),
            name.get_ref(),
            base,
            problems,
            external,
        ),
        None => {
            problems.at(
                s.span.clone(),
                format!("`{path}` needs a `schema` (a table, or a path to a .json file)"),
            );
            None
        }
    };
    let input = match s.value("input") {
        Some(v) => schema_at(
            v,
            &format!("{path}.input"),
            "input",
            base,
            problems,
            external,
        ),
        None => serde_json::from_str(TEXT_INPUT)
            .ok()
            .and_then(|v| Schema::compile("input", v).ok()),
    };
    if let (Some(input), Some(v)) = (&input, s.value("input"))
        && input.value().get("type").and_then(Value::as_str) != Some("object")
    {
        problems.at(
            v.span(),
            format!("`{path}.input` must describe an object (`\"type\": \"object\"`)"),
        );
    }
    let system = s.string("system", problems).map(Spanned::into_inner);
    let prompt = s.string("prompt", problems);
    let (provider, fallbacks) = providers_of(&mut s, &path, providers, problems);
    let model = s.string("model", problems).map(Spanned::into_inner);
    let mode = s
        .string("mode", problems)
        .and_then(|m| match m.get_ref().parse::<Mode>() {
            Ok(mode) => Some(mode),
            Err(e) => {
                problems.at(m.span(), format!("`{path}.mode`: {e}"));
                None
            }
        });
    let max_retries = s.count("max_retries", problems);
    let temperature = s.number("temperature", problems);
    if let (Some(t), Some(v)) = (temperature, s.value("temperature"))
        && !(0.0..=2.0).contains(&t)
    {
        problems.at(
            v.span(),
            format!("`{path}.temperature` must be between 0 and 2, got {t}"),
        );
    }
    let max_tokens = s.count("max_tokens", problems);
    let mut eval = BTreeMap::new();
    if let Some(table) = s.table("eval", problems) {
        for (field, mut rule) in table.entries(problems) {
            let matching = rule
                .string("match", problems)
                .and_then(|m| match m.get_ref().as_str() {
                    "text" => Some(Matching::Text),
                    "exact" => Some(Matching::Exact),
                    "number" => Some(Matching::Number),
                    "ignore" => Some(Matching::Ignore),
                    other => {
                        problems.at(
                            m.span(),
                            format!(
                                "`{path}.eval.{}.match` is `{other}`; expected text, exact, number or ignore",
                                field.get_ref()
                            ),
                        );
                        None
                    }
                });
            let tolerance = rule.number("tolerance", problems);
            if let (Some(t), Some(v)) = (tolerance, rule.value("tolerance"))
                && !(t.is_finite() && t >= 0.0)
            {
                problems.at(
                    v.span(),
                    format!(
                        "`{path}.eval.{}.tolerance` must be 0 or more",
                        field.get_ref()
                    ),
                );
            }
            rule.finish(problems);
            eval.insert(
                field.into_inner(),
                FieldRule {
                    matching: matching.unwrap_or(if tolerance.is_some() {
                        Matching::Number
                    } else {
                        Matching::Text
                    }),
                    tolerance,
                },
            );
        }
    }
    let mut grounding = BTreeMap::new();
    if let Some(table) = s.table("grounding", problems) {
        for (field, policy) in table.strings(problems) {
            match policy.get_ref().parse::<Policy>() {
                Ok(p) => {
                    if let Some(out) = &output
                        && !sift_core::grounding::describes(out.value(), &field)
                    {
                        problems.at(
                            policy.span(),
                            format!(
                                "`{path}.grounding.{field}` names no field of the output schema"
                            ),
                        );
                    }
                    grounding.insert(field, p);
                }
                Err(e) => problems.at(policy.span(), format!("`{path}.grounding.{field}`: {e}")),
            }
        }
    }
    let document = crate::document::read(&mut s, &path, input.as_ref(), problems);
    let s_examples = s.value("examples");
    s.finish(problems);

    let input_fields: Option<HashSet<String>> = input.as_ref().map(|i| {
        i.value()
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    });
    let prompt_text = match (&prompt, &input_fields) {
        (Some(p), _) => p.get_ref().clone(),
        (None, Some(fields)) if fields.contains("text") => "{{ text }}".to_owned(),
        (None, _) => {
            problems.at(
                name.span(),
                format!("`{path}` needs a `prompt`: its input has no `text` field to use as one"),
            );
            String::new()
        }
    };
    let template = match environment(&prompt_text) {
        Ok(env) => Some(env),
        Err(e) => {
            let span = prompt.as_ref().map(|p| p.span());
            problems.push(
                span,
                format!("`{path}.prompt` is not a valid template: {e}"),
            );
            None
        }
    };
    // A trial render on a small input made from the input schema: a template that runs out
    // of instructions or size on it would on every request (a loop over a constant range,
    // nested), so it is refused now rather than served.
    if let (Some(env), Some(input)) = (&template, &input)
        && let Err(e @ (RenderError::OutOfFuel { .. } | RenderError::TooLarge { .. })) =
            render(env, &sample(input.value(), 0))
    {
        problems.push(
            prompt.as_ref().map(|p| p.span()),
            format!(
                "`{path}.prompt` cannot be served: on a small sample input, {}",
                e.to_string().trim_start_matches("the ")
            ),
        );
    }
    if let (Some(env), Some(fields)) = (&template, &input_fields)
        && let Ok(t) = env.get_template(PROMPT)
    {
        let mut unknown: Vec<String> = t
            .undeclared_variables(false)
            .into_iter()
            .filter(|v| !fields.contains(v) && !TEMPLATE_GLOBALS.contains(&v.as_str()))
            .collect();
        unknown.sort();
        for field in unknown {
            let mut known: Vec<&String> = fields.iter().collect();
            known.sort();
            problems.push(
                prompt.as_ref().map(|p| p.span()),
                format!(
                    "`{path}.prompt` uses `{field}`, which the input does not have (its fields: {})",
                    known.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ),
            );
        }
    }
    let examples = match (s_examples, &template, &input, &output) {
        (Some(v), Some(env), Some(input), Some(output)) => {
            let render = |i: &Value| render(env, i).map_err(|e| e.to_string());
            let checks = crate::examples::Checks {
                path: &path,
                input,
                output,
                grounding: &grounding,
                render: &render,
            };
            crate::examples::read(v, &checks, problems)
        }
        _ => Vec::new(),
    };
    if problems.0.len() + external.len() > before {
        return None;
    }
    let mut spec = ExtractorSpec {
        name: name.into_inner(),
        description,
        output: output?,
        input: input?,
        system,
        prompt: prompt_text,
        provider,
        fallbacks,
        model,
        mode,
        max_retries,
        temperature: temperature.map(|t| t as f32),
        max_tokens,
        version: String::new(),
        eval,
        grounding,
        examples,
        document,
        template: Arc::new(template?),
    };
    spec.version = spec.hash();
    Some(spec)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A schema given inline (a table) or as a path to a JSON file relative to the config.
fn schema_at(
    v: &Spanned<DeValue<'_>>,
    key: &str,
    name: &str,
    base: &Path,
    problems: &mut Problems,
    external: &mut Vec<ConfigError>,
) -> Option<Schema> {
    match v.get_ref() {
        DeValue::String(written) => {
            let file: PathBuf = base.join(written.as_ref());
            let text = match sift_core::files::read_text(&file, sift_core::files::MAX_CONFIG_FILE) {
                Ok(t) => t,
                Err(e) => {
                    problems.at(v.span(), format!("`{key}`: cannot read `{written}` (relative to the config's folder): {}", e.reason()));
                    return None;
                }
            };
            let value: Value = match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(e) => {
                    external.push(ConfigError {
                        file,
                        line: Some(e.line()),
                        column: Some(e.column()),
                        message: format!("not valid JSON: {e}"),
                    });
                    return None;
                }
            };
            Schema::compile(name, value)
                .map_err(|e| {
                    external.push(ConfigError {
                        file,
                        line: None,
                        column: None,
                        message: e.to_string(),
                    });
                })
                .ok()
        }
        DeValue::Table(_) => {
            let value = match to_json(v.get_ref()) {
                Ok(v) => v,
                Err(e) => {
                    problems.at(v.span(), format!("`{key}`: {e}"));
                    return None;
                }
            };
            Schema::compile(name, value)
                .map_err(|e| problems.at(v.span(), format!("`{key}`: {e}")))
                .ok()
        }
        _ => {
            problems.at(
                v.span(),
                format!("`{key}` must be a table (the schema) or a path to a .json file"),
            );
            None
        }
    }
}

/// `provider`: one name, or a list (the first, then its fallbacks), each in `[providers]`. A
/// chain takes remote providers only: the embedded model is asked differently
/// (a grammar holds it to the schema), so one request cannot go to either.
fn providers_of(
    s: &mut Section<'_, '_>,
    path: &str,
    providers: &BTreeMap<String, ProviderSpec>,
    problems: &mut Problems,
) -> (Option<String>, Vec<String>) {
    let Some(v) = s.value("provider") else {
        return (None, Vec::new());
    };
    let names: Vec<(String, std::ops::Range<usize>)> = match v.get_ref() {
        DeValue::String(name) => vec![(name.to_string(), v.span())],
        DeValue::Array(items) if !items.is_empty() => {
            let mut names = Vec::new();
            for item in items {
                match item.get_ref() {
                    DeValue::String(name) => names.push((name.to_string(), item.span())),
                    _ => problems.at(
                        item.span(),
                        format!("`{path}.provider` lists provider names: strings"),
                    ),
                }
            }
            names
        }
        _ => {
            problems.at(
                v.span(),
                format!(
                    "`{path}.provider` must be a provider's name, or a list of them (the first asked first)"
                ),
            );
            return (None, Vec::new());
        }
    };
    let known: Vec<&str> = providers.keys().map(String::as_str).collect();
    let chain = names.len() > 1;
    let mut seen = std::collections::BTreeSet::new();
    for (name, span) in &names {
        match providers.get(name) {
            None => problems.at(
                span.clone(),
                format!(
                    "`{path}.provider` names `{name}`, which is not in [providers] (declared: {})",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            ),
            Some(ProviderSpec::Local { .. }) if chain => problems.at(
                span.clone(),
                format!(
                    "`{path}.provider`: `{name}` is the embedded model, which cannot be part of a fallback chain (list remote providers only: openai, anthropic or gemini)"
                ),
            ),
            Some(_) => {}
        }
        if !seen.insert(name.as_str()) {
            problems.at(
                span.clone(),
                format!("`{path}.provider` lists `{name}` twice"),
            );
        }
    }
    let mut names = names.into_iter().map(|(n, _)| n);
    (names.next(), names.collect())
}
