//! Documents: PDF, HTML, Markdown and plain text read into one text with page offsets
//! ([`read`]), split into chunks that fit a model ([`chunk::split`]), extracted chunk by
//! chunk and merged by documented rules ([`merge`], [`extract`]).
//!
//! Offsets everywhere count Unicode scalar values (`char`s) of [`Document::text`], end
//! exclusive, as grounding's spans do.

pub mod chunk;
pub mod extract;
mod html;
mod markdown;
pub mod merge;
mod pdf;

use std::path::Path;

use serde::Serialize;

pub use extract::{Answer, ChunkFailure, DocumentExtraction, DocumentInfo, DocumentRun, Plan};
pub use merge::{Conflict, Merged};

/// What kind of document a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A PDF's text layer.
    Pdf,
    /// HTML's visible text.
    Html,
    /// Markdown, its markup read away.
    Markdown,
    /// Plain text, as it is.
    Text,
}

impl Kind {
    /// The kinds, with the media types and file extensions each is known by.
    const TABLE: &[(
        Kind,
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
    )] = &[
        (
            Kind::Pdf,
            "application/pdf",
            &["application/x-pdf"],
            &["pdf"],
        ),
        (
            Kind::Html,
            "text/html",
            &["application/xhtml+xml"],
            &["html", "htm", "xhtml"],
        ),
        (
            Kind::Markdown,
            "text/markdown",
            &["text/x-markdown"],
            &["md", "markdown"],
        ),
        (Kind::Text, "text/plain", &[], &["txt", "text"]),
    ];

    /// The kind a `Content-Type` names (parameters such as `charset` ignored), if any.
    pub fn from_content_type(content_type: &str) -> Option<Kind> {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        Self::TABLE
            .iter()
            .find(|(_, mime, aliases, _)| *mime == essence || aliases.contains(&essence.as_str()))
            .map(|(kind, ..)| *kind)
    }

    /// The kind a file's extension names, if any.
    pub fn from_path(path: &Path) -> Option<Kind> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Self::TABLE
            .iter()
            .find(|(.., exts)| exts.contains(&ext.as_str()))
            .map(|(kind, ..)| *kind)
    }

    /// The kind of `bytes` by their content: a PDF starts with `%PDF-` (within its first
    /// KiB, as readers allow).
    pub fn sniff(bytes: &[u8]) -> Option<Kind> {
        let head = &bytes[..bytes.len().min(1024)];
        head.windows(5).any(|w| w == b"%PDF-").then_some(Kind::Pdf)
    }

    /// The media type.
    pub fn media_type(self) -> &'static str {
        Self::TABLE
            .iter()
            .find(|(kind, ..)| *kind == self)
            .map(|(_, mime, ..)| *mime)
            .unwrap_or("text/plain")
    }

    /// Every media type read, for error messages and the API description.
    pub fn media_types() -> Vec<&'static str> {
        Self::TABLE.iter().map(|(_, mime, ..)| *mime).collect()
    }

    /// Every file extension read.
    pub fn extensions() -> Vec<&'static str> {
        Self::TABLE
            .iter()
            .flat_map(|(.., exts)| exts.iter().copied())
            .collect()
    }
}

/// Bounds on what is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest file, in bytes.
    pub max_bytes: usize,
    /// The most pages a PDF may have.
    pub max_pages: usize,
}

/// 50 MiB.
pub const DEFAULT_MAX_BYTES: usize = 50 * 1024 * 1024;
/// 500 pages.
pub const DEFAULT_MAX_PAGES: usize = 500;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_BYTES,
            max_pages: DEFAULT_MAX_PAGES,
        }
    }
}

/// A document read into text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Document {
    /// What it was read from.
    pub kind: Kind,
    /// Its text: a PDF's pages in order, separated by a form feed (`\u{c}`); HTML's visible
    /// text, blocks on lines of their own; Markdown without its markup; plain text as it is.
    pub text: String,
    /// Where each page starts in `text` (a PDF has one entry per page; other kinds one, 0).
    pub pages: Vec<usize>,
    /// What could not be read (a PDF page that failed, named), for the answer to report.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Document {
    /// A plain-text document.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            kind: Kind::Text,
            text: text.into(),
            pages: vec![0],
            warnings: Vec::new(),
        }
    }

    /// The page (from 1) that the character at `offset` is on.
    pub fn page_of(&self, offset: usize) -> usize {
        self.pages.partition_point(|&start| start <= offset).max(1)
    }

    /// How many pages it has (1 for anything but a PDF).
    pub fn page_count(&self) -> usize {
        self.pages.len().max(1)
    }

    /// Its length in characters.
    pub fn chars(&self) -> usize {
        self.text.chars().count()
    }
}

/// Why a document could not be read. Each is the client's to fix (a `4xx`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// Bigger than [`Limits::max_bytes`].
    #[error("the document is {bytes} bytes; at most {limit} are read")]
    TooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// More pages than [`Limits::max_pages`].
    #[error("the PDF has {pages} pages; at most {limit} are read")]
    TooManyPages {
        /// Its pages.
        pages: usize,
        /// The limit.
        limit: usize,
    },
    /// An encrypted PDF (a password is needed to read its text).
    #[error("the PDF is encrypted; send it decrypted")]
    Encrypted,
    /// A PDF whose pages hold no text (a scan): it would need OCR, which sift does not do.
    #[error(
        "the PDF has no text layer ({pages} page(s), no text on any): it looks scanned; run OCR on it first (for example `ocrmypdf`)"
    )]
    NoText {
        /// Its pages.
        pages: usize,
    },
    /// Not a readable file of its kind.
    #[error("the {kind} could not be read: {reason}")]
    Malformed {
        /// `PDF`, `HTML`, ...
        kind: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// An empty file, or one with no text at all.
    #[error("the document holds no text")]
    Empty,
    /// A media type or extension sift does not read.
    #[error("`{given}` is not a document type sift reads (it reads {known})")]
    Unsupported {
        /// What was given.
        given: String,
        /// What is read.
        known: String,
    },
}

impl ReadError {
    /// A short, stable name for the kind of error (`too_large`, `too_many_pages`,
    /// `encrypted`, `no_text`, `malformed`, `empty`, `unsupported`).
    pub fn kind(&self) -> &'static str {
        match self {
            ReadError::TooLarge { .. } => "too_large",
            ReadError::TooManyPages { .. } => "too_many_pages",
            ReadError::Encrypted => "encrypted",
            ReadError::NoText { .. } => "no_text",
            ReadError::Malformed { .. } => "malformed",
            ReadError::Empty => "empty",
            ReadError::Unsupported { .. } => "unsupported",
        }
    }

    /// An unsupported type, listing the known ones.
    pub fn unsupported(given: impl Into<String>) -> Self {
        ReadError::Unsupported {
            given: given.into(),
            known: Kind::media_types().join(", "),
        }
    }

    /// Whether the limits refused it (a `413`, where the others are `415` or `422`).
    pub fn is_too_large(&self) -> bool {
        matches!(
            self,
            ReadError::TooLarge { .. } | ReadError::TooManyPages { .. }
        )
    }
}

/// Reads `bytes` as a document of `kind`, within `limits`.
pub fn read(bytes: &[u8], kind: Kind, limits: &Limits) -> Result<Document, ReadError> {
    if bytes.len() > limits.max_bytes {
        return Err(ReadError::TooLarge {
            bytes: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    let document = match kind {
        Kind::Pdf => pdf::read(bytes, limits.max_pages)?,
        Kind::Html => Document {
            kind,
            text: html::text(&decode(bytes)),
            pages: vec![0],
            warnings: Vec::new(),
        },
        Kind::Markdown => Document {
            kind,
            text: markdown::text(&decode(bytes)),
            pages: vec![0],
            warnings: Vec::new(),
        },
        Kind::Text => Document {
            kind,
            text: decode(bytes).into_owned(),
            pages: vec![0],
            warnings: Vec::new(),
        },
    };
    if document.text.trim().is_empty() {
        return Err(match kind {
            Kind::Pdf => ReadError::NoText {
                pages: document.page_count(),
            },
            _ => ReadError::Empty,
        });
    }
    Ok(document)
}

/// Reads the file at `path`, its kind from its extension (or its content, for a PDF named
/// otherwise).
pub fn read_path(path: &Path, limits: &Limits) -> Result<Document, ReadFileError> {
    let io = |e: std::io::Error| ReadFileError::Io(format!("{}: {e}", path.display()));
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > limits.max_bytes as u64 {
        return Err(ReadFileError::Read(ReadError::TooLarge {
            bytes: usize::try_from(size).unwrap_or(usize::MAX),
            limit: limits.max_bytes,
        }));
    }
    let bytes = std::fs::read(path).map_err(io)?;
    let kind = Kind::from_path(path)
        .or_else(|| Kind::sniff(&bytes))
        .unwrap_or(Kind::Text);
    read(&bytes, kind, limits).map_err(ReadFileError::Read)
}

/// Why a file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadFileError {
    /// The file system refused.
    #[error("{0}")]
    Io(String),
    /// The file was read but is not a readable document.
    #[error(transparent)]
    Read(#[from] ReadError),
}

impl ReadFileError {
    /// A short, stable name for the kind of error: `io`, or the [`ReadError`]'s kind.
    pub fn kind(&self) -> &'static str {
        match self {
            ReadFileError::Io(_) => "io",
            ReadFileError::Read(e) => e.kind(),
        }
    }
}

/// Text from bytes: UTF-8 (a byte-order mark dropped), else read as Latin-1 (every byte a
/// character), so no byte is lost and nothing fails on a legacy file.
fn decode(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => std::borrow::Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_known_by_type_extension_and_content() {
        assert_eq!(
            Kind::from_content_type("text/html; charset=utf-8"),
            Some(Kind::Html)
        );
        assert_eq!(Kind::from_content_type("APPLICATION/PDF"), Some(Kind::Pdf));
        assert_eq!(Kind::from_content_type("image/png"), None);
        assert_eq!(Kind::from_path(Path::new("a/b.MD")), Some(Kind::Markdown));
        assert_eq!(Kind::from_path(Path::new("a/b")), None);
        assert_eq!(Kind::sniff(b"\n%PDF-1.7 ..."), Some(Kind::Pdf));
        assert_eq!(Kind::sniff(b"hello"), None);
    }

    #[test]
    fn limits_and_empty_files_are_refused_by_name() {
        let small = Limits {
            max_bytes: 4,
            max_pages: 1,
        };
        let err = read(b"hello", Kind::Text, &small).unwrap_err();
        assert_eq!(err.kind(), "too_large");
        assert!(err.is_too_large());
        assert_eq!(
            read(b"  \n", Kind::Text, &Limits::default())
                .unwrap_err()
                .kind(),
            "empty"
        );
    }

    #[test]
    fn legacy_bytes_are_read_not_dropped() {
        let doc = read(b"caf\xe9 \xef\xbb", Kind::Text, &Limits::default()).unwrap();
        assert_eq!(doc.text, "caf\u{e9} \u{ef}\u{bb}");
        let doc = read(b"\xEF\xBB\xBFhi", Kind::Text, &Limits::default()).unwrap();
        assert_eq!(doc.text, "hi");
    }

    #[test]
    fn offsets_map_to_pages() {
        let doc = Document {
            kind: Kind::Pdf,
            text: "one\u{c}two\u{c}three".into(),
            pages: vec![0, 4, 8],
            warnings: Vec::new(),
        };
        assert_eq!(doc.page_of(0), 1);
        assert_eq!(doc.page_of(3), 1);
        assert_eq!(doc.page_of(4), 2);
        assert_eq!(doc.page_of(12), 3);
        assert_eq!(doc.page_count(), 3);
    }
}
