//! sift's config file (TOML): the server's settings, model providers, prices, and extractors,
//! each an output JSON Schema with a prompt over its input's fields.
//!
//! The file is checked whole before anything runs: every unknown key, wrong type, invalid
//! schema, remote `$ref` and template naming a field the input does not have is reported at
//! once, each with its file, line and column ([`ConfigErrors`]).
//!
//! ```
//! let config = sift_config::Config::parse(r#"
//! [extractors.contact]
//! description = "A person's contact details"
//! schema = { type = "object", properties = { email = { type = "string" } }, required = ["email"] }
//! prompt = "Find the contact details: {{ text }}"
//! "#, "sift.toml".as_ref())?;
//! let contact = config.extractor("contact").unwrap();
//! let messages = contact.messages(&serde_json::json!({"text": "mail a@b.example"}))?;
//! assert_eq!(messages[0].content.as_deref(), Some("Find the contact details: mail a@b.example"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod document;
mod examples;
mod extractor;
mod toml_walk;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::DeTable;

pub use document::{DocumentSpec, NoDocumentField, REMOTE_CHUNK_TOKENS};
pub use extractor::{ExtractorSpec, FieldRule, Matching, RenderError, TEXT_INPUT};

use crate::toml_walk::{LineIndex, Problems, Section};

/// The whole configuration.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Config {
    /// The file it was read from (`None` when there was none).
    pub path: Option<PathBuf>,
    /// `[server]`.
    pub server: ServerSection,
    /// `[providers.NAME]`, by name.
    pub providers: BTreeMap<String, ProviderSpec>,
    /// `[models."NAME"]` prices, by model name.
    pub prices: BTreeMap<String, Prices>,
    /// `[extractors.NAME]`, in the file's order.
    pub extractors: Vec<ExtractorSpec>,
}

/// `[server]`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerSection {
    /// The environment variable holding comma-separated service keys (`SIFT_API_KEYS`).
    pub api_keys_env: String,
    /// Keys written in the file itself (prefer the environment variable).
    pub api_keys: Vec<String>,
    /// Whether `POST /v1/extract` takes inline schemas (default true).
    pub adhoc: bool,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            api_keys_env: "SIFT_API_KEYS".into(),
            api_keys: Vec::new(),
            adhoc: true,
        }
    }
}

impl ServerSection {
    /// The service keys: the file's and those of the environment variable; an error when
    /// the variable holds a blank key (see [`parse_keys`]).
    pub fn keys(&self) -> Result<Vec<String>, BlankKey> {
        let mut keys = self.api_keys.clone();
        let value = std::env::var(&self.api_keys_env).ok();
        keys.extend(parse_keys(&self.api_keys_env, value.as_deref())?);
        Ok(keys)
    }
}

/// A service-key list with a blank entry (`" , "`, `"a,,b"`, `"a,"`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "${var} holds an empty key (entry {entry} of {count}): remove it, or unset ${var} to run \
     without keys"
)]
pub struct BlankKey {
    /// The variable.
    pub var: String,
    /// Which entry is blank (1 for the first).
    pub entry: usize,
    /// Entries in all.
    pub count: usize,
}

/// The service keys in `value`, the comma-separated list of the variable `var`: none when it
/// is unset or empty, an error when an entry is blank (a list such as `" , "` would otherwise
/// start the service without authentication, or with fewer keys than meant).
pub fn parse_keys(var: &str, value: Option<&str>) -> Result<Vec<String>, BlankKey> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(Vec::new());
    };
    let entries: Vec<&str> = value.split(',').map(str::trim).collect();
    match entries.iter().position(|k| k.is_empty()) {
        Some(i) => Err(BlankKey {
            var: var.to_owned(),
            entry: i + 1,
            count: entries.len(),
        }),
        None => Ok(entries.into_iter().map(str::to_owned).collect()),
    }
}

/// A model backend declared in the file.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ProviderSpec {
    /// Any OpenAI-compatible server.
    OpenAi {
        /// Base URL including `/v1` (default: `OPENAI_BASE_URL`, else OpenAI's).
        base_url: Option<String>,
        /// The environment variable holding the key (default `OPENAI_API_KEY`).
        api_key_env: Option<String>,
        /// The model asked when an extractor names none.
        model: Option<String>,
        /// The kind of server, for what it needs asked differently (`auto`, `openai`,
        /// `llamacpp`, `vllm`, `ollama`; default: the `--dialect` flag's).
        dialect: Option<String>,
    },
    /// The embedded model.
    Local {
        /// A GGUF file (default: the embedded default model).
        model_path: Option<PathBuf>,
    },
    /// Anthropic's Messages API.
    Anthropic {
        /// Base URL without `/v1`, as Anthropic's SDKs take it (default:
        /// `ANTHROPIC_BASE_URL`, else `https://api.anthropic.com`).
        base_url: Option<String>,
        /// The environment variable holding the key (default `ANTHROPIC_API_KEY`).
        api_key_env: Option<String>,
        /// The model asked when an extractor names none.
        model: Option<String>,
        /// The `anthropic-version` header (default `2023-06-01`).
        version: Option<String>,
        /// Structured outputs as the beta asks them (`output_format` and its
        /// `anthropic-beta` header), for deployments without `output_config.format`.
        beta_output_format: bool,
    },
    /// Google's Gemini API (the Generative Language API).
    Gemini {
        /// Base URL without the version, as Google's SDKs take it (default:
        /// `GEMINI_BASE_URL`, else `https://generativelanguage.googleapis.com`).
        base_url: Option<String>,
        /// The environment variable holding the key (default `GEMINI_API_KEY`).
        api_key_env: Option<String>,
        /// The model asked when an extractor names none.
        model: Option<String>,
        /// The API version in the path (default `v1beta`).
        version: Option<String>,
        /// The form schemas are sent in: `json_schema` (`responseJsonSchema`) or `openapi`
        /// (`responseSchema`, the subset models before 2.5 take); default by model.
        schema_dialect: Option<String>,
    },
}

/// Prices of a model, in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub struct Prices {
    /// Prompt tokens.
    pub input: f64,
    /// Prompt tokens served from the provider's cache (default: `input`).
    pub cached_input: f64,
    /// Completion tokens.
    pub output: f64,
}

impl Prices {
    /// Prices in USD per million tokens: prompt, cached prompt, completion.
    pub fn new(input: f64, cached_input: f64, output: f64) -> Self {
        Self {
            input,
            cached_input,
            output,
        }
    }

    /// What `usage` costs, in USD: cached prompt tokens at the cached price, the other prompt
    /// tokens at the input price, completion tokens at the output price.
    pub fn cost(&self, usage: &sift_core::Usage) -> f64 {
        let cached = usage.cached_input_tokens.min(usage.input_tokens);
        let fresh = usage.input_tokens - cached;
        (fresh as f64 * self.input
            + cached as f64 * self.cached_input
            + usage.output_tokens as f64 * self.output)
            / 1_000_000.0
    }
}

/// Prices by model name (the config's `[models."NAME"]`), for what the command line and the
/// service report a call cost. Cheap to clone (one table shared).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pricing(std::sync::Arc<BTreeMap<String, Prices>>);

impl Pricing {
    /// Prices by model name.
    pub fn new(prices: BTreeMap<String, Prices>) -> Self {
        Self(std::sync::Arc::new(prices))
    }

    /// The prices of `model`: its own, or those of the longest name it starts with (a dated
    /// `gpt-4o-mini-2024-07-18` is priced as `gpt-4o-mini`).
    pub fn of(&self, model: &str) -> Option<&Prices> {
        self.0.get(model).or_else(|| {
            self.0
                .iter()
                .filter(|(name, _)| model.starts_with(name.as_str()))
                .max_by_key(|(name, _)| name.len())
                .map(|(_, p)| p)
        })
    }

    /// What `usage` cost at the prices of the model that `answered` (else the one `asked`),
    /// times `factor` (a batch API's discount); `None` when neither has prices. Nothing spent
    /// costs nothing, priced or not.
    pub fn cost(
        &self,
        asked: &str,
        answered: &str,
        usage: &sift_core::Usage,
        factor: f64,
    ) -> Option<f64> {
        if usage.total_tokens() == 0 {
            return Some(0.0);
        }
        self.of(answered)
            .or_else(|| self.of(asked))
            .map(|p| p.cost(usage) * factor)
    }
}

/// One problem in a config, with its place when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (the config, or a schema file it names).
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in a config, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} problem{} in the config:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        let text =
            sift_core::files::read_text(path, sift_core::files::MAX_CONFIG_FILE).map_err(|e| {
                ConfigErrors(vec![ConfigError {
                    file: path.to_owned(),
                    line: None,
                    column: None,
                    message: format!("cannot read the config: {}", e.reason()),
                }])
            })?;
        Self::parse(&text, path)
    }

    /// The config to use: `explicit` (`--config`), else `SIFT_CONFIG`, else `./sift.toml`
    /// when it exists; `Ok(None)` when there is none.
    pub fn discover(explicit: Option<&Path>) -> Result<Option<Self>, ConfigErrors> {
        let env = std::env::var_os("SIFT_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        match explicit.map(Path::to_path_buf).or(env) {
            Some(path) => Self::load(&path).map(Some),
            None if Path::new("sift.toml").is_file() => {
                Self::load(Path::new("sift.toml")).map(Some)
            }
            None => Ok(None),
        }
    }

    /// Checks a config's text; `path` names it in errors and anchors relative schema paths.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigErrors> {
        let mut problems = Problems::default();
        let mut external: Vec<ConfigError> = Vec::new();
        let root = match DeTable::parse(text) {
            Ok(t) => t,
            Err(e) => {
                let span = e.span();
                problems.push(span, e.message().to_owned());
                return Err(into_errors(text, path, problems, external));
            }
        };
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut top = Section::new(root.get_ref(), "", root.span());
        let mut config = Config {
            path: Some(path.to_owned()),
            ..Config::default()
        };
        if let Some(mut s) = top.table("server", &mut problems) {
            if let Some(v) = s.string("api_keys_env", &mut problems) {
                config.server.api_keys_env = v.into_inner();
            }
            if let Some(v) = s.value("api_keys") {
                match toml_walk::to_json(v.get_ref()) {
                    Ok(serde_json::Value::Array(items))
                        if items.iter().all(serde_json::Value::is_string) =>
                    {
                        config.server.api_keys = items
                            .iter()
                            .filter_map(|k| k.as_str().map(str::to_owned))
                            .collect();
                    }
                    _ => problems.at(v.span(), "`server.api_keys` must be a list of strings"),
                }
            }
            if let Some(v) = s.boolean("adhoc", &mut problems) {
                config.server.adhoc = v;
            }
            s.finish(&mut problems);
        }
        if let Some(providers) = top.table("providers", &mut problems) {
            for (name, mut s) in providers.entries(&mut problems) {
                let kind = s.string("kind", &mut problems);
                let spec = match kind.as_ref().map(|k| k.get_ref().as_str()) {
                    Some("openai") => Some(ProviderSpec::OpenAi {
                        base_url: s.string("base_url", &mut problems).map(Spanned::into_inner),
                        api_key_env: s
                            .string("api_key_env", &mut problems)
                            .map(Spanned::into_inner),
                        model: s.string("model", &mut problems).map(Spanned::into_inner),
                        dialect: s.string("dialect", &mut problems).and_then(|d| {
                            let known = ["auto", "openai", "llamacpp", "vllm", "ollama"];
                            let name = d.get_ref().to_ascii_lowercase().replace(['-', '.', '_'], "");
                            if known.contains(&name.as_str()) {
                                Some(name)
                            } else {
                                problems.at(
                                    d.span(),
                                    format!(
                                        "`{}.dialect` is `{}`: expected auto, openai, llamacpp, vllm or ollama",
                                        s.path,
                                        d.get_ref()
                                    ),
                                );
                                None
                            }
                        }),
                    }),
                    Some("anthropic") => Some(ProviderSpec::Anthropic {
                        base_url: s.string("base_url", &mut problems).map(Spanned::into_inner),
                        api_key_env: s
                            .string("api_key_env", &mut problems)
                            .map(Spanned::into_inner),
                        model: s.string("model", &mut problems).map(Spanned::into_inner),
                        version: s.string("version", &mut problems).map(Spanned::into_inner),
                        beta_output_format: s
                            .boolean("beta_output_format", &mut problems)
                            .unwrap_or(false),
                    }),
                    Some("gemini") => Some(ProviderSpec::Gemini {
                        base_url: s.string("base_url", &mut problems).map(Spanned::into_inner),
                        api_key_env: s
                            .string("api_key_env", &mut problems)
                            .map(Spanned::into_inner),
                        model: s.string("model", &mut problems).map(Spanned::into_inner),
                        version: s.string("version", &mut problems).map(Spanned::into_inner),
                        schema_dialect: s.string("schema_dialect", &mut problems).and_then(|d| {
                            if ["json_schema", "openapi"].contains(&d.get_ref().as_str()) {
                                Some(d.into_inner())
                            } else {
                                problems.at(
                                    d.span(),
                                    format!(
                                        "`{}.schema_dialect` is `{}`: expected json_schema or openapi",
                                        s.path,
                                        d.get_ref()
                                    ),
                                );
                                None
                            }
                        }),
                    }),
                    Some("local") => Some(ProviderSpec::Local {
                        model_path: s
                            .string("model_path", &mut problems)
                            .map(|p| base.join(p.into_inner())),
                    }),
                    Some(other) => {
                        if let Some(k) = &kind {
                            problems.at(
                                k.span(),
                                format!(
                                    "`{}.kind` is `{other}`: expected `openai`, `anthropic`, `gemini` or `local`",
                                    s.path
                                ),
                            );
                        }
                        None
                    }
                    None => {
                        problems.at(
                            name.span(),
                            format!(
                                "`{}` needs a `kind` (`openai`, `anthropic`, `gemini` or `local`)",
                                s.path
                            ),
                        );
                        None
                    }
                };
                s.finish(&mut problems);
                if let Some(spec) = spec {
                    config.providers.insert(name.into_inner(), spec);
                }
            }
        }
        if let Some(models) = top.table("models", &mut problems) {
            for (name, mut s) in models.entries(&mut problems) {
                let input = s.number("input", &mut problems).unwrap_or(0.0);
                let cached_input = s.number("cached_input", &mut problems).unwrap_or(input);
                let output = s.number("output", &mut problems).unwrap_or(0.0);
                s.finish(&mut problems);
                config.prices.insert(
                    name.into_inner(),
                    Prices {
                        input,
                        cached_input,
                        output,
                    },
                );
            }
        }
        if let Some(extractors) = top.table("extractors", &mut problems) {
            for (name, section) in extractors.entries(&mut problems) {
                if let Some(spec) = extractor::read(
                    name,
                    section,
                    &base,
                    &config.providers,
                    &mut problems,
                    &mut external,
                ) {
                    config.extractors.push(spec);
                }
            }
        }
        top.finish(&mut problems);
        if problems.0.is_empty() && external.is_empty() {
            Ok(config)
        } else {
            Err(into_errors(text, path, problems, external))
        }
    }

    /// The extractor called `name`.
    pub fn extractor(&self, name: &str) -> Option<&ExtractorSpec> {
        self.extractors.iter().find(|e| e.name == name)
    }
}

fn into_errors(
    text: &str,
    path: &Path,
    problems: Problems,
    external: Vec<ConfigError>,
) -> ConfigErrors {
    let lines = LineIndex::new(text);
    let mut errors: Vec<ConfigError> = problems
        .0
        .into_iter()
        .map(|p| {
            let place = p.span.map(|s| lines.place(s.start));
            ConfigError {
                file: path.to_owned(),
                line: place.map(|p| p.0),
                column: place.map(|p| p.1),
                message: p.message,
            }
        })
        .collect();
    errors.extend(external);
    errors.sort_by(|a, b| {
        (a.file != path, &a.file, a.line, a.column).cmp(&(
            b.file != path,
            &b.file,
            b.line,
            b.column,
        ))
    });
    ConfigErrors(errors)
}
