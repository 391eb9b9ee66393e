//! A PDF's text layer, page by page, in reading order: `pdf-extract` (over `lopdf`), chosen
//! by measurement against poppler's `pdftotext` on the ExtractBench PDFs (the share of gold
//! values found in the text was the same as poppler's, 62.2% of strings and 65.5% of numbers
//! against 62.2% and 66.0%, at 2.5 ms a page; `lopdf`'s own text walk was faster and lost
//! whole sections of a two-column paper, `pdf_oxide` was as good, twice as slow and many
//! times the code). The measurement is in the crate's README.
//!
//! Pages are separated by a form feed; runs of spaces become one and runs of blank lines one
//! blank line (tokens the model need not read). An encrypted PDF is opened with the empty
//! password, as viewers do; one that needs a real password is refused. A page that cannot be
//! read is empty and named in the document's warnings; the reader never panics outward.

use pdf_extract::{Document as Pdf, PlainTextOutput, output_doc_page};

use crate::{Document, Kind, ReadError};

/// Reads `bytes` as a PDF of at most `max_pages` pages.
pub(crate) fn read(bytes: &[u8], max_pages: usize) -> Result<Document, ReadError> {
    let malformed = |reason: String| ReadError::Malformed {
        kind: "PDF",
        reason,
    };
    if !bytes.starts_with(b"%PDF-") && crate::Kind::sniff(bytes).is_none() {
        return Err(malformed("it does not start with `%PDF-`".into()));
    }
    let owned = bytes.to_vec();
    let mut pdf = std::panic::catch_unwind(move || Pdf::load_mem(&owned))
        .map_err(|_| malformed("its structure could not be parsed".into()))?
        .map_err(|e| malformed(e.to_string()))?;
    if pdf.is_encrypted() && pdf.decrypt("").is_err() {
        return Err(ReadError::Encrypted);
    }
    let pages: Vec<u32> = pdf.get_pages().keys().copied().collect();
    if pages.is_empty() {
        return Err(malformed("it has no pages".into()));
    }
    if pages.len() > max_pages {
        return Err(ReadError::TooManyPages {
            pages: pages.len(),
            limit: max_pages,
        });
    }
    let mut text = String::new();
    let mut starts = Vec::with_capacity(pages.len());
    let mut chars = 0;
    let mut warnings = Vec::new();
    for (i, number) in pages.iter().enumerate() {
        if i > 0 {
            text.push('\u{c}');
            chars += 1;
        }
        starts.push(chars);
        let page = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut out = String::new();
            output_doc_page(&pdf, &mut PlainTextOutput::new(&mut out), *number).map(|()| out)
        }));
        let page = match page {
            Ok(Ok(page)) => tidy(&page),
            Ok(Err(e)) => {
                warnings.push(format!("page {} could not be read: {e}", i + 1));
                String::new()
            }
            Err(_) => {
                warnings.push(format!("page {} could not be read", i + 1));
                String::new()
            }
        };
        chars += page.chars().count();
        text.push_str(&page);
    }
    Ok(Document {
        kind: Kind::Pdf,
        text,
        pages: starts,
        warnings,
    })
}

/// A page's text with runs of spaces made one, lines' ends trimmed, runs of blank lines made
/// one, and the page's leading and trailing blank lines dropped.
fn tidy(page: &str) -> String {
    let mut out = String::with_capacity(page.len());
    let mut blank = 0;
    for line in page.lines() {
        let mut words = line.split([' ', '\t']).filter(|w| !w.is_empty()).peekable();
        if words.peek().is_none() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        for (i, w) in words.enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(w);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::tidy;

    #[test]
    fn tidying_keeps_words_and_paragraphs() {
        assert_eq!(
            tidy("\n\n  Title   here \n\n\n\nBody  line\nnext\n\n"),
            "Title here\n\nBody line\nnext"
        );
    }
}
