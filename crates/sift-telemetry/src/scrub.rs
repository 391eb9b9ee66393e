//! Scrubbing: sensitive attribute keys and string values are replaced before anything is
//! printed or exported, as Pydantic Logfire does.
//!
//! The default patterns are Logfire's: `password`, `passwd`, `mysql_pwd`, `secret`, `auth`
//! (not `author`), `credential`, `private key`, `api key`, `session`, `cookie`,
//! `social security`, `credit card`, `csrf`, `xsrf`, `jwt` and `ssn`, matched case-insensitively.
//! A key that matches has its whole value replaced; a string value that matches is replaced
//! too, except that a value holding JSON (the request arguments, the model messages) is
//! scrubbed inside, key by key and string by string, so the rest stays readable. The
//! replacement says which text matched: `[Scrubbed due to 'password']`.
//!
//! Secrets that are known exactly (the configured API key) are added with
//! [`Scrubber::with_secret`]: any string containing one is replaced, whatever its key.

use std::borrow::Cow;

use aho_corasick::AhoCorasick;
use regex::{Regex, RegexBuilder};
use serde_json::Value;

/// Logfire's default patterns.
pub const DEFAULT_PATTERNS: &[&str] = &[
    "password",
    "passwd",
    "mysql_pwd",
    "secret",
    "auth",
    "credential",
    r"private[._ -]?key",
    r"api[._ -]?key",
    "session",
    "cookie",
    r"social[._ -]?security",
    r"credit[._ -]?card",
    r"(?:(?-u:\b)|_)csrf(?:(?-u:\b)|_)",
    r"(?:(?-u:\b)|_)xsrf(?:(?-u:\b)|_)",
    r"(?:(?-u:\b)|_)jwt(?:(?-u:\b)|_)",
    r"(?:(?-u:\b)|_)ssn(?:(?-u:\b)|_)",
];

/// Attribute keys that are never scrubbed: sift's own structure, which holds no user data.
const SAFE_KEYS: &[&str] = &[
    "logfire.msg_template",
    "logfire.span_type",
    "logfire.level_num",
    "logfire.json_schema",
    "http.route",
    "http.request.method",
    "url.path",
    "url.scheme",
    "code.function",
    "code.namespace",
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.output.type",
    "error.type",
];

/// What to scrub.
#[derive(Debug, Clone)]
pub struct ScrubOptions {
    /// Scrub at all (default true).
    pub enabled: bool,
    /// Regular expressions added to [`DEFAULT_PATTERNS`].
    pub extra_patterns: Vec<String>,
    /// Attribute keys left as they are, whatever they match.
    pub safe_keys: Vec<String>,
    /// Exact secrets (API keys, tokens) to remove wherever they appear.
    pub secrets: Vec<String>,
}

impl Default for ScrubOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            extra_patterns: Vec::new(),
            safe_keys: Vec::new(),
            secrets: Vec::new(),
        }
    }
}

/// A compiled set of scrubbing rules: one regular expression for the exact secrets
/// (case-sensitive) and the patterns (case-insensitive), so each value is scanned once.
#[derive(Debug, Clone)]
pub struct Scrubber {
    any: Option<Regex>,
    /// Words one of which every match of the default patterns or a secret contains, found
    /// with SIMD; most values have none, and skip the regular expression. `None` when extra
    /// patterns are configured (their words are not known).
    prefilter: Option<AhoCorasick>,
    patterns: Vec<String>,
    safe_keys: Vec<String>,
    secrets: Vec<String>,
}

/// Why a value was scrubbed: the text that matched.
fn replacement(matched: &str) -> String {
    format!("[Scrubbed due to '{matched}']")
}

/// What an exact secret is reported as.
const SECRET: &str = "api key";

/// A word of each default pattern (`private[._ -]?key` always contains `private`).
const WORDS: &[&str] = &[
    "passw",
    "passwd",
    "mysql_pwd",
    "secret",
    "auth",
    "credential",
    "private",
    "api",
    "session",
    "cookie",
    "social",
    "credit",
    "csrf",
    "xsrf",
    "jwt",
    "ssn",
];

fn prefilter(extra_patterns: bool, enabled: bool, secrets: &[String]) -> Option<AhoCorasick> {
    if extra_patterns {
        return None;
    }
    let words: Vec<&str> = if enabled { WORDS.to_vec() } else { Vec::new() }
        .into_iter()
        .chain(secrets.iter().map(String::as_str))
        .collect();
    aho_corasick::AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .build(words)
        .ok()
}

/// What a key means for its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyVerdict {
    /// Never scrubbed (exact secrets aside).
    Safe,
    /// The key itself is sensitive: the value is replaced by this.
    Sensitive(String),
    /// The value is checked.
    Check,
}
fn build(patterns: &[String], secrets: &[String]) -> Result<Option<Regex>, regex::Error> {
    let mut parts: Vec<String> = Vec::new();
    if !secrets.is_empty() {
        let literals: Vec<String> = secrets.iter().map(|s| regex::escape(s)).collect();
        parts.push(format!("(?-i:{})", literals.join("|")));
    }
    parts.extend(patterns.iter().map(|p| format!("(?:{p})")));
    if parts.is_empty() {
        return Ok(None);
    }
    RegexBuilder::new(&parts.join("|"))
        .case_insensitive(true)
        .build()
        .map(Some)
}

impl Scrubber {
    /// Compiles the rules; an invalid extra pattern is an error naming it.
    pub fn new(options: &ScrubOptions) -> Result<Self, regex::Error> {
        for extra in &options.extra_patterns {
            Regex::new(extra)?;
        }
        let patterns: Vec<String> = if options.enabled {
            DEFAULT_PATTERNS
                .iter()
                .map(|p| (*p).to_owned())
                .chain(options.extra_patterns.iter().cloned())
                .collect()
        } else {
            Vec::new()
        };
        let secrets: Vec<String> = options
            .secrets
            .iter()
            .filter(|s| s.len() >= 4)
            .cloned()
            .collect();
        Ok(Self {
            any: build(&patterns, &secrets)?,
            prefilter: prefilter(
                !options.extra_patterns.is_empty(),
                options.enabled,
                &secrets,
            ),
            patterns,
            safe_keys: options.safe_keys.clone(),
            secrets,
        })
    }

    /// Adds an exact secret.
    #[must_use]
    pub fn with_secret(mut self, secret: impl Into<String>) -> Self {
        let secret = secret.into();
        if secret.len() >= 4 {
            self.secrets.push(secret);
            // The parts compiled before, so they compile again.
            self.any = build(&self.patterns, &self.secrets).unwrap_or(None);
            if self.prefilter.is_some() || self.patterns.is_empty() {
                self.prefilter = prefilter(false, !self.patterns.is_empty(), &self.secrets);
            }
        }
        self
    }

    /// Scrubs nothing (for tests and `SIFT_SCRUB=off`), though exact secrets still go.
    pub fn disabled() -> Self {
        Self {
            any: None,
            prefilter: None,
            patterns: Vec::new(),
            safe_keys: Vec::new(),
            secrets: Vec::new(),
        }
    }

    /// The first sensitive text in `s`, if any: the matched text, or `api key` for an exact
    /// secret.
    pub fn find<'a>(&self, s: &'a str) -> Option<&'a str> {
        let any = self.any.as_ref()?;
        if let Some(pre) = &self.prefilter
            && !pre.is_match(s)
        {
            return None;
        }
        any.find_iter(s).map(|m| m.as_str()).find_map(|m| {
            if self.secrets.iter().any(|secret| secret == m) {
                return Some(SECRET);
            }
            // Logfire's `auth(?!ors?\b)`: "author" and "authors" are not secrets. The regex
            // crate has no look-ahead, so the exception is checked here.
            if !m.eq_ignore_ascii_case("auth") {
                return Some(m);
            }
            let end = m.as_ptr() as usize - s.as_ptr() as usize + m.len();
            let rest = &s.as_bytes()[end..];
            let word_ends = |n: usize| {
                rest.get(n)
                    .is_none_or(|b| !b.is_ascii_alphanumeric() && *b != b'_')
            };
            let author = rest.len() >= 2
                && rest[..2].eq_ignore_ascii_case(b"or")
                && (word_ends(2)
                    || (rest.get(2).is_some_and(|b| b.eq_ignore_ascii_case(&b's'))
                        && word_ends(3)));
            (!author).then_some(m)
        })
    }

    fn secret_in(&self, s: &str) -> bool {
        self.secrets
            .iter()
            .any(|secret| s.contains(secret.as_str()))
    }

    /// Whether `key` is left alone.
    pub fn is_safe_key(&self, key: &str) -> bool {
        SAFE_KEYS.contains(&key) || self.safe_keys.iter().any(|k| k == key)
    }

    /// What `key` means for its value (worth caching: keys repeat).
    pub fn key_verdict(&self, key: &str) -> KeyVerdict {
        if self.is_safe_key(key) {
            KeyVerdict::Safe
        } else if let Some(m) = self.find(key).filter(|m| *m != SECRET) {
            KeyVerdict::Sensitive(replacement(m))
        } else {
            KeyVerdict::Check
        }
    }

    /// The scrubbed form of a value under a key with `verdict`, or `None` when it stays.
    pub fn scrub_value(&self, verdict: &KeyVerdict, value: &str) -> Option<String> {
        match verdict {
            KeyVerdict::Safe => self.secret_in(value).then(|| replacement(SECRET)),
            KeyVerdict::Sensitive(r) => Some(r.clone()),
            KeyVerdict::Check => self.scrub_text(value),
        }
    }

    /// The scrubbed form of the string value of attribute `key`, or `None` when it stays.
    pub fn scrub_attribute(&self, key: &str, value: &str) -> Option<String> {
        self.scrub_value(&self.key_verdict(key), value)
    }

    /// The scrubbed form of a value whose key is not sensitive, or `None` when it stays.
    pub fn scrub_text(&self, value: &str) -> Option<String> {
        let why = self.find(value)?;
        let trimmed = value.trim_start();
        if (trimmed.starts_with('{') || trimmed.starts_with('['))
            && let Ok(mut json) = serde_json::from_str::<Value>(value)
        {
            self.scrub_json(&mut json);
            return Some(json.to_string());
        }
        Some(replacement(why))
    }

    /// Scrubs a JSON value in place: sensitive keys lose their values, sensitive strings are
    /// replaced.
    pub fn scrub_json(&self, value: &mut Value) {
        match value {
            Value::String(s) => {
                if let Some(new) = self.scrub_string_leaf(s) {
                    *s = new;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.scrub_json(v)),
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    if let Some(m) = self.find(k) {
                        *v = Value::String(replacement(m));
                    } else {
                        self.scrub_json(v);
                    }
                }
            }
            _ => {}
        }
    }

    fn scrub_string_leaf(&self, s: &str) -> Option<String> {
        self.find(s).map(replacement)
    }

    /// Scrubs free text (a log message) as a whole.
    pub fn scrub_message<'a>(&self, s: &'a str) -> Cow<'a, str> {
        match self.scrub_text(s) {
            Some(new) => Cow::Owned(new),
            None => Cow::Borrowed(s),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn scrubber() -> Scrubber {
        Scrubber::new(&ScrubOptions::default()).unwrap()
    }

    #[test]
    fn keys_and_values_match_logfire_patterns() {
        let s = scrubber();
        for (key, hit) in [
            ("password", "password"),
            ("user.Passwd", "Passwd"),
            ("http.request.header.authorization", "auth"),
            ("my_api_key", "api_key"),
            ("API-Key", "API-Key"),
            ("private key", "private key"),
            ("session_id", "session"),
            ("set-cookie", "cookie"),
            ("credit card", "credit card"),
            ("x_jwt", "_jwt"),
            ("ssn", "ssn"),
            ("csrf_token", "csrf_"),
        ] {
            assert_eq!(
                s.scrub_attribute(key, "v"),
                Some(format!("[Scrubbed due to '{hit}']")),
                "{key}"
            );
        }
        for key in [
            "author",
            "authors",
            "name",
            "gen_ai.usage.input_tokens",
            "lesson",
            "assn",
        ] {
            assert_eq!(s.scrub_attribute(key, "v"), None, "{key}");
        }
        assert_eq!(s.find("the author wrote"), None);
        assert_eq!(s.find("authority"), Some("auth"));
    }

    #[test]
    fn json_values_are_scrubbed_inside() {
        let s = scrubber();
        let got = s
            .scrub_attribute(
                "fastapi.arguments.values",
                r#"{"query":"my password is hunter2","n":1,"api_key":"x"}"#,
            )
            .unwrap();
        assert_eq!(
            got,
            r#"{"query":"[Scrubbed due to 'password']","n":1,"api_key":"[Scrubbed due to 'api_key']"}"#
        );
        assert_eq!(s.scrub_attribute("q", "plain words"), None);
        assert_eq!(
            s.scrub_attribute("q", "my secret plan"),
            Some("[Scrubbed due to 'secret']".into())
        );
    }

    #[test]
    fn exact_secrets_go_everywhere_even_under_safe_keys() {
        let s = Scrubber::disabled().with_secret("sk-test-123456");
        assert_eq!(
            s.scrub_attribute("http.route", "x sk-test-123456 y"),
            Some("[Scrubbed due to 'api key']".into())
        );
        assert_eq!(s.scrub_attribute("password", "v"), None);
    }

    #[test]
    fn extra_patterns_and_safe_keys() {
        let s = Scrubber::new(&ScrubOptions {
            extra_patterns: vec!["hunter\\d".into()],
            safe_keys: vec!["session_id".into()],
            ..ScrubOptions::default()
        })
        .unwrap();
        assert_eq!(s.scrub_attribute("session_id", "abc"), None);
        assert_eq!(
            s.scrub_attribute("q", "it is Hunter2"),
            Some("[Scrubbed due to 'Hunter2']".into())
        );
        let bad = Scrubber::new(&ScrubOptions {
            extra_patterns: vec!["(".into()],
            ..ScrubOptions::default()
        });
        assert!(bad.is_err());
    }
}
