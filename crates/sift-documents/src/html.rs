//! HTML's visible text: html5ever's tokenizer (the well-kept parser of the web's rules:
//! entities, raw-text elements, broken markup) reads the tags, and this walk keeps what a
//! reader sees. Scripts, styles, the head, templates, SVG and `hidden` elements are dropped;
//! blocks go on lines of their own (paragraphs, headings, lists and tables with a blank line
//! after), table cells are separated by tabs, runs of whitespace are one space except in
//! `<pre>`, and a link's address follows its words in parentheses when they do not show it.
//!
//! The tokenizer builds no tree, so deeply nested markup costs no stack, and the walk is one
//! linear pass.

use std::cell::RefCell;

use html5ever::tendril::StrTendril;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{
    BufferQueue, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};

/// The visible text of `html`.
pub(crate) fn text(html: &str) -> String {
    let queue = BufferQueue::default();
    queue.push_back(StrTendril::from_slice(html));
    let tokenizer = Tokenizer::new(Walk::default(), TokenizerOpts::default());
    let _ = tokenizer.feed(&queue);
    tokenizer.end();
    let walk = tokenizer.sink.state.into_inner();
    walk.out.trim_end().to_owned()
}

/// Elements whose content is never shown.
const DROPPED: &[&str] = &[
    "script", "style", "noscript", "template", "head", "title", "svg", "iframe", "object",
    "canvas", "select", "button", "datalist",
];

/// Elements with no content (a `hidden` one hides nothing).
const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr",
];

/// Blocks followed by a blank line.
const PARAGRAPHS: &[&str] = &[
    "p",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "table",
    "ul",
    "ol",
    "dl",
    "blockquote",
    "pre",
    "section",
    "article",
    "header",
    "footer",
    "main",
    "nav",
    "aside",
    "figure",
    "form",
    "fieldset",
    "address",
    "hr",
];

/// Blocks on a line of their own.
const LINES: &[&str] = &[
    "div",
    "li",
    "tr",
    "dt",
    "dd",
    "br",
    "caption",
    "figcaption",
    "details",
    "summary",
    "legend",
    "option",
    "center",
    "thead",
    "tbody",
    "tfoot",
    "body",
    "html",
];

#[derive(Default)]
struct Walk {
    state: RefCell<State>,
}

#[derive(Default)]
struct State {
    out: String,
    /// A space is owed before the next word.
    space: bool,
    /// Inside `<pre>` (depth).
    pre: usize,
    /// Dropping everything up to the end of this element (its name, nesting depth).
    dropping: Option<(String, usize)>,
    /// The open link: its address and where its words start in `out`.
    link: Option<(String, usize)>,
}

impl State {
    fn words(&mut self, s: &str) {
        if self.pre > 0 {
            self.out.push_str(s);
            self.space = false;
            return;
        }
        for (i, word) in s.split(char::is_whitespace).enumerate() {
            if i > 0 {
                self.space = true;
            }
            if word.is_empty() {
                continue;
            }
            if self.space && !self.out.is_empty() && !self.out.ends_with(['\n', '\t', ' ']) {
                self.out.push(' ');
            }
            self.space = false;
            self.out.push_str(word);
        }
    }

    /// Ends the line (`blank`: and leaves a blank one), unless the text already has.
    fn block(&mut self, blank: bool) {
        self.space = false;
        while self.out.ends_with([' ', '\t']) {
            self.out.pop();
        }
        if self.out.is_empty() {
            return;
        }
        let want = if blank { "\n\n" } else { "\n" };
        if !self.out.ends_with(want) {
            if self.out.ends_with('\n') && blank {
                self.out.push('\n');
            } else if !self.out.ends_with('\n') {
                self.out.push_str(want);
            }
        }
    }

    fn start(&mut self, name: &str, attr: impl Fn(&str) -> Option<String>) {
        if let Some((dropped, depth)) = &mut self.dropping {
            if dropped == name {
                *depth += 1;
            }
            return;
        }
        let hidden = attr("hidden").is_some()
            || attr("aria-hidden").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if DROPPED.contains(&name) || (hidden && !VOID.contains(&name)) {
            self.dropping = Some((name.to_owned(), 1));
            return;
        }
        match name {
            "td" | "th" => {
                if !self.out.is_empty() && !self.out.ends_with('\n') {
                    while self.out.ends_with(' ') {
                        self.out.pop();
                    }
                    self.out.push('\t');
                }
                self.space = false;
            }
            "pre" => {
                self.block(false);
                self.pre += 1;
            }
            "a" => {
                if let Some(href) = attr("href") {
                    self.link = Some((href, self.out.len()));
                }
            }
            _ if PARAGRAPHS.contains(&name) => self.block(true),
            _ if LINES.contains(&name) => self.block(false),
            _ => {}
        }
    }

    fn end(&mut self, name: &str) {
        if let Some((dropped, depth)) = &mut self.dropping {
            if dropped == name {
                *depth -= 1;
                if *depth == 0 {
                    self.dropping = None;
                }
            }
            return;
        }
        match name {
            "pre" => {
                self.pre = self.pre.saturating_sub(1);
                self.block(true);
            }
            "a" => self.close_link(),
            _ if PARAGRAPHS.contains(&name) => self.block(true),
            _ if LINES.contains(&name) => self.block(false),
            _ => {}
        }
    }

    /// After a link's words, its address when they do not already show it.
    fn close_link(&mut self) {
        let Some((href, from)) = self.link.take() else {
            return;
        };
        let shown = href
            .strip_prefix("mailto:")
            .or_else(|| href.strip_prefix("tel:"))
            .unwrap_or(&href)
            .trim()
            .to_owned();
        let external = ["http://", "https://", "mailto:", "tel:"]
            .iter()
            .any(|p| href.starts_with(p));
        let words = self.out.get(from..).unwrap_or_default();
        if external && !shown.is_empty() && !words.contains(&shown) {
            self.space = true;
            self.words(&format!("({shown})"));
        }
    }
}

impl TokenSink for Walk {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        let mut state = self.state.borrow_mut();
        match token {
            Token::TagToken(tag) => {
                let name = tag.name.to_ascii_lowercase();
                let name: &str = &name;
                match tag.kind {
                    TagKind::StartTag => {
                        // A `<body>` ends a head whose end tag was left out.
                        if name == "body"
                            && state.dropping.as_ref().is_some_and(|(n, _)| n == "head")
                        {
                            state.dropping = None;
                        }
                        let attr = |key: &str| {
                            tag.attrs
                                .iter()
                                .find(|a| str::eq_ignore_ascii_case(&a.name.local, key))
                                .map(|a| a.value.to_string())
                        };
                        state.start(name, attr);
                        if name == "br" || name == "hr" {
                            state.end(name);
                        }
                        // The tokenizer reads these elements' content as text, not tags.
                        let raw = match name {
                            "script" => Some(RawKind::ScriptData),
                            "style" | "noscript" | "iframe" | "xmp" | "noembed" | "noframes" => {
                                Some(RawKind::Rawtext)
                            }
                            "title" | "textarea" => Some(RawKind::Rcdata),
                            _ => None,
                        };
                        if let (Some(raw), false) = (raw, tag.self_closing) {
                            return TokenSinkResult::RawData(raw);
                        }
                        if name == "plaintext" {
                            return TokenSinkResult::Plaintext;
                        }
                    }
                    TagKind::EndTag => state.end(name),
                }
            }
            Token::CharacterTokens(text) if state.dropping.is_none() => state.words(&text),
            _ => {}
        }
        TokenSinkResult::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::text;

    #[test]
    fn keeps_visible_text_with_blocks_as_lines() {
        let html = r#"<!doctype html><html><head><title>T</title>
            <style>p { color: red }</style><script>var x = "<p>not text</p>";</script></head>
            <body><h1>Invoice   42</h1><div><div><p>From <b>Brightwater</b> Tools&nbsp;Ltd &amp; co.</p></div></div>
            <ul><li>one</li><li>two <a href="https://x.example/a">site</a></li></ul>
            <table><tr><th>Item</th><th>Amount</th></tr><tr><td>Hammer</td><td>12.50</td></tr></table>
            <p hidden>secret</p><div aria-hidden="true">also <span>hidden</span></div>
            <pre>a  b
  c</pre><p>end<br>line</p></body></html>"#;
        assert_eq!(
            text(html),
            "Invoice 42\n\nFrom Brightwater Tools Ltd & co.\n\none\ntwo site (https://x.example/a)\n\nItem\tAmount\nHammer\t12.50\n\na  b\n  c\n\nend\nline"
        );
    }

    #[test]
    fn head_without_end_tag_and_broken_markup_are_read() {
        assert_eq!(
            text("<html><head><title>x</title><body><p>hello<p>world <b>bold"),
            "hello\n\nworld bold"
        );
        assert_eq!(text("<<<>>> & <"), "<<<>>> & <");
        assert_eq!(
            text(r#"<a href="mailto:ann@x.example">Ann</a>"#),
            "Ann (ann@x.example)"
        );
        assert_eq!(
            text(r#"<a href="https://x.example">https://x.example</a>"#),
            "https://x.example"
        );
    }

    #[test]
    fn deep_nesting_costs_no_stack() {
        let html = "<div>".repeat(200_000) + "deep" + &"</div>".repeat(200_000);
        assert_eq!(text(&html), "deep");
    }

    #[test]
    fn nested_dropped_elements_end_at_their_own_end_tag() {
        assert_eq!(text("<template><template>x</template>y</template>z"), "z");
        assert_eq!(text("<svg><svg></svg><text>no</text></svg>yes"), "yes");
    }
}
