//! Markdown's text without its markup: pulldown-cmark (CommonMark with tables) reads it,
//! and this walk writes the words. Blocks on lines of their own (a blank line after
//! paragraphs, headings, lists, tables and code blocks), table cells separated by tabs,
//! code kept as written, a link's address after its words in parentheses when they do not
//! show it, HTML in the Markdown read as HTML.

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

/// The text of `markdown`.
pub(crate) fn text(markdown: &str) -> String {
    let mut out = String::new();
    let mut links: Vec<(String, usize)> = Vec::new();
    let mut cell = 0usize;
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    for event in Parser::new_ext(markdown, options) {
        match event {
            Event::Text(t) | Event::Code(t) | Event::InlineMath(t) | Event::DisplayMath(t) => {
                out.push_str(&t)
            }
            Event::Html(h) | Event::InlineHtml(h) => out.push_str(&crate::html::text(&h)),
            Event::SoftBreak | Event::HardBreak => out.push('\n'),
            Event::Rule => end_block(&mut out, true),
            Event::TaskListMarker(done) => out.push_str(if done { "[x] " } else { "[ ] " }),
            Event::Start(Tag::Link { dest_url, .. }) => {
                links.push((dest_url.to_string(), out.len()))
            }
            Event::Start(Tag::TableCell) => {
                if cell > 0 {
                    out.push('\t');
                }
                cell += 1;
            }
            Event::Start(Tag::TableRow | Tag::TableHead) => cell = 0,
            Event::Start(Tag::Item) => end_block(&mut out, false),
            Event::End(TagEnd::Link) => {
                if let Some((url, from)) = links.pop() {
                    let shown = url.strip_prefix("mailto:").unwrap_or(&url).to_owned();
                    let words = out.get(from..).unwrap_or_default();
                    if !shown.is_empty() && !shown.starts_with('#') && !words.contains(&shown) {
                        out.push_str(&format!(" ({shown})"));
                    }
                }
            }
            Event::End(
                TagEnd::Paragraph
                | TagEnd::Heading(_)
                | TagEnd::CodeBlock
                | TagEnd::List(_)
                | TagEnd::Table
                | TagEnd::BlockQuote(_)
                | TagEnd::HtmlBlock,
            ) => end_block(&mut out, true),
            Event::End(TagEnd::Item | TagEnd::TableRow | TagEnd::TableHead) => {
                end_block(&mut out, false)
            }
            _ => {}
        }
    }
    out.trim_end().to_owned()
}

/// Ends the line (`blank`: leaving a blank one), unless the text already has.
fn end_block(out: &mut String, blank: bool) {
    while out.ends_with([' ', '\t']) {
        out.pop();
    }
    if out.is_empty() {
        return;
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    if blank && !out.ends_with("\n\n") {
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::text;

    #[test]
    fn reads_away_the_markup() {
        let md = "# Invoice 42\n\nFrom **Brightwater** Tools _Ltd_, see [site](https://x.example).\n\n\
                  - one\n- two `code`\n\n| Item | Amount |\n|---|---|\n| Hammer | 12.50 |\n\n\
                  ```\nlet x = 1;\n```\n\nA <b>bold</b> word.";
        assert_eq!(
            text(md),
            "Invoice 42\n\nFrom Brightwater Tools Ltd, see site (https://x.example).\n\none\ntwo code\n\n\
             Item\tAmount\nHammer\t12.50\n\nlet x = 1;\n\nA bold word."
        );
    }

    #[test]
    fn links_showing_their_address_are_not_repeated() {
        assert_eq!(text("<https://x.example>"), "https://x.example");
        assert_eq!(text("[Ann](mailto:ann@x.example)"), "Ann (ann@x.example)");
        assert_eq!(text("[top](#top)"), "top");
    }
}
