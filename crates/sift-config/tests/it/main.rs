//! sift-config's integration tests: the example config, and a broken one with every problem
//! reported.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use serde_json::json;
use sift_config::Config;
use sift_core::Mode;

fn examples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sift.toml")
}

#[test]
fn the_example_config_loads() {
    let config = Config::load(&examples()).unwrap();
    let names: Vec<&str> = config.extractors.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["invoice", "contact", "events"]);
    let invoice = config.extractor("invoice").unwrap();
    assert_eq!(invoice.mode, Some(Mode::Tools));
    assert!(invoice.output.value()["$defs"]["Line"].is_object());
    assert_eq!(invoice.version.len(), 16);
    let events = config.extractor("events").unwrap();
    assert!(events.output.is_array());
    let messages = events
        .messages(&json!({"text": "Fair on 2 April.", "year": 2027}))
        .unwrap();
    let prompt = messages[0].content.as_deref().unwrap();
    assert!(
        prompt.contains("(the year is 2027 unless it says otherwise)"),
        "{prompt}"
    );
    assert!(prompt.ends_with("Fair on 2 April."), "{prompt}");
    let without_year = events.messages(&json!({"text": "x"})).unwrap();
    assert!(
        !without_year[0]
            .content
            .as_deref()
            .unwrap()
            .contains("year is")
    );
    let contact = config.extractor("contact").unwrap();
    assert_eq!(
        contact.input.value()["required"],
        json!(["text"]),
        "the default input"
    );
    assert!(config.server.adhoc);
}

#[test]
fn every_problem_of_a_broken_config_is_reported_with_its_place() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/broken/sift.toml");
    let errors = Config::load(&path).unwrap_err();
    // Paths relative to the crate, so the golden file does not depend on the checkout.
    let base = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text: String = errors
        .0
        .iter()
        .map(|e| {
            let mut e = e.clone();
            e.file = e.file.strip_prefix(base).unwrap_or(&e.file).to_owned();
            format!("{e}\n")
        })
        .collect();
    insta::assert_snapshot!(text);
}

#[test]
fn versions_change_with_what_shapes_the_answer() {
    let a = Config::parse(
        "[extractors.x]\nschema = { type = \"object\" }\nprompt = \"{{ text }}\"\n",
        "a.toml".as_ref(),
    )
    .unwrap();
    let b = Config::parse(
        "[extractors.x]\nschema = { type = \"object\" }\nprompt = \"Read: {{ text }}\"\n",
        "b.toml".as_ref(),
    )
    .unwrap();
    let again = Config::parse(
        "[extractors.x]\nschema = { type = \"object\" }\nprompt = \"{{ text }}\"\n",
        "c.toml".as_ref(),
    )
    .unwrap();
    assert_ne!(a.extractors[0].version, b.extractors[0].version);
    assert_eq!(a.extractors[0].version, again.extractors[0].version);
}

#[test]
fn a_toml_syntax_error_has_a_line_and_column() {
    let errors = Config::parse("[extractors.x]\nschema = {\n", "s.toml".as_ref()).unwrap_err();
    assert_eq!(errors.0.len(), 1);
    assert_eq!(errors.0[0].line, Some(2), "{errors}");
    assert!(errors.0[0].column.is_some());
}

#[test]
fn eval_rules_are_read_and_checked() {
    let good = Config::parse(
        "[extractors.x]\nschema = { type = \"object\" }\n\n[extractors.x.eval]\n\"total\" = { tolerance = 0.01 }\n\"note\" = { match = \"ignore\" }\n",
        std::path::Path::new("sift.toml"),
    )
    .unwrap();
    let rules = &good.extractor("x").unwrap().eval;
    assert_eq!(rules["total"].matching, sift_config::Matching::Number);
    assert_eq!(rules["total"].tolerance, Some(0.01));
    assert_eq!(rules["note"].matching, sift_config::Matching::Ignore);
    let bad = Config::parse(
        "[extractors.x]\nschema = { type = \"object\" }\n\n[extractors.x.eval]\n\"a\" = { match = \"fuzzy\" }\n\"b\" = { tolerance = -1 }\n\"c\" = { matches = \"text\" }\n",
        std::path::Path::new("sift.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(bad.contains("sift.toml:5:17: `extractors.x.eval.a.match` is `fuzzy`; expected text, exact, number or ignore"), "{bad}");
    assert!(
        bad.contains("`extractors.x.eval.b.tolerance` must be 0 or more"),
        "{bad}"
    );
    assert!(
        bad.contains("unknown key `extractors.x.eval.c.matches`"),
        "{bad}"
    );
}

#[test]
fn service_keys_with_a_blank_entry_are_refused() {
    use sift_config::parse_keys;
    assert_eq!(parse_keys("K", None).unwrap(), Vec::<String>::new());
    assert_eq!(parse_keys("K", Some("")).unwrap(), Vec::<String>::new());
    assert_eq!(parse_keys("K", Some(" a , b ")).unwrap(), ["a", "b"]);
    for (value, entry, count) in [(" , ", 1, 2), ("a,,b", 2, 3), ("a,", 2, 2), ("   ", 1, 1)] {
        let e = parse_keys("K", Some(value)).unwrap_err();
        assert_eq!((e.entry, e.count), (entry, count), "{value:?}");
        assert!(e.to_string().contains("$K holds an empty key"), "{e}");
    }
}

fn extractor_with_prompt(prompt: &str) -> Result<Config, sift_config::ConfigErrors> {
    let text = format!(
        "[extractors.x]\nschema = {{ type = \"object\" }}\ninput = {{ type = \"object\", properties = {{ text = {{ type = \"string\" }}, items = {{ type = \"array\", items = {{ type = \"string\" }} }} }} }}\nprompt = '''{prompt}'''\n"
    );
    Config::parse(&text, "t.toml".as_ref())
}

#[test]
fn a_template_looping_whatever_the_input_is_refused_at_load() {
    let errors = extractor_with_prompt(
        "{% for i in range(100000) %}{% for j in range(100000) %}.{% endfor %}{% endfor %}",
    )
    .unwrap_err();
    let text = errors.to_string();
    assert!(
        text.contains("`extractors.x.prompt` cannot be served"),
        "{text}"
    );
    assert!(text.contains("budget of 2000000 instructions"), "{text}");
    assert_eq!(errors.0[0].line, Some(4), "{text}");
    // Doubling a string: few instructions, a huge prompt.
    let errors = extractor_with_prompt(
        "{% set ns = namespace(s='xxxxxxxx') %}{% for i in range(20) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
    )
    .unwrap_err();
    assert!(
        errors.to_string().contains("larger than 4194304 bytes"),
        "{errors}"
    );
    // A loop over the input is fine.
    extractor_with_prompt("{% for i in items %}- {{ i }}\n{% endfor %}{{ text }}").unwrap();
}

#[test]
fn a_render_is_bounded_in_instructions_and_size_whatever_the_input() {
    let config =
        extractor_with_prompt("{% for a in items %}{% for b in items %}{% for c in items %}{{ a }}{% endfor %}{% endfor %}{% endfor %}")
            .unwrap();
    let spec = &config.extractors[0];
    // 300 items: 27,000,000 iterations, past the budget.
    let items: Vec<String> = (0..300).map(|i| i.to_string()).collect();
    let e = spec
        .messages(&json!({"text": "t", "items": items}))
        .unwrap_err();
    assert!(
        matches!(e, sift_config::RenderError::OutOfFuel { .. }),
        "{e}"
    );
    assert_eq!(e.kind(), "template_fuel");
    // A text repeated into a prompt past the size bound.
    let config = extractor_with_prompt("{{ text * 100 }}").unwrap();
    let e = config.extractors[0]
        .messages(&json!({"text": "x".repeat(100_000), "items": []}))
        .unwrap_err();
    assert!(
        matches!(e, sift_config::RenderError::TooLarge { .. }),
        "{e}"
    );
    // Within both, it renders.
    let out = config.extractors[0]
        .messages(&json!({"text": "ab", "items": []}))
        .unwrap();
    assert_eq!(
        out.last().unwrap().content.as_deref(),
        Some("ab".repeat(100).as_str())
    );
}

#[cfg(unix)]
#[test]
fn a_schema_path_that_is_a_device_is_refused_by_name_without_reading_it() {
    let errors = Config::parse(
        "[extractors.x]\nschema = \"/dev/zero\"\nprompt = \"{{ text }}\"\n",
        "/tmp/t.toml".as_ref(),
    )
    .unwrap_err();
    let text = errors.to_string();
    assert!(
        text.contains("cannot read `/dev/zero` (relative to the config's folder): it is a character device, not a regular file"),
        "{text}"
    );
    assert_eq!(errors.0[0].line, Some(2));
    let e = Config::load("/dev/zero".as_ref()).unwrap_err().to_string();
    assert!(
        e.contains("cannot read the config: it is a character device"),
        "{e}"
    );
}

#[test]
fn a_call_is_priced_by_the_model_that_answered_then_by_the_longest_prefix() {
    let config = Config::parse(
        r#"
[models."gpt-4o-mini"]
input = 0.15
cached_input = 0.075
output = 0.60

[models."gpt-4o"]
input = 2.5
output = 10.0
"#,
        Path::new("sift.toml"),
    )
    .expect("loads");
    let pricing = sift_config::Pricing::new(config.prices.clone());
    let usage = sift_core::Usage {
        input_tokens: 1_000_000,
        output_tokens: 1_000_000,
        cached_input_tokens: 500_000,
    };
    // A dated name is priced as the longest configured name it starts with.
    let dated = pricing.cost("x", "gpt-4o-mini-2024-07-18", &usage, 1.0);
    assert_close(dated, 0.5 * 0.15 + 0.5 * 0.075 + 0.60);
    // The answering model wins over the one asked; the asked one is the fallback.
    assert_close(
        pricing.cost("gpt-4o-mini", "gpt-4o", &usage, 1.0),
        2.5 * 0.5 + 2.5 * 0.5 + 10.0,
    );
    assert_close(
        pricing.cost("gpt-4o", "unknown", &usage, 0.5),
        (2.5 + 10.0) * 0.5,
    );
    assert_eq!(pricing.cost("a", "b", &usage, 1.0), None);
    assert_eq!(
        pricing.cost("a", "b", &sift_core::Usage::default(), 1.0),
        Some(0.0)
    );
}

/// `got` is `Some` and within a rounding error of `want`.
fn assert_close(got: Option<f64>, want: f64) {
    let got = got.expect("priced");
    assert!((got - want).abs() < 1e-9, "{got} != {want}");
}
