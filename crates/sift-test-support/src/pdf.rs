//! Small PDFs made for tests (with `lopdf`): pages of text lines placed where given (a table
//! is lines whose cells sit at column positions), a scanned page (an image, no text), an
//! encrypted file and a malformed one.

// Writing a PDF to memory cannot fail on what these functions build; a test that made it
// fail should stop at once.
#![allow(clippy::expect_used)]

use lopdf::content::{Content, Operation};
use lopdf::{Document, Object, Stream, dictionary};

/// One line of text on a page: its cells, each at `(x, text)`, at height `y` (from the
/// bottom of an A4 page, 842 high).
#[derive(Debug, Clone)]
pub struct Line {
    /// Distance from the bottom, in points.
    pub y: i64,
    /// The cells: distance from the left, and the text (Latin-1).
    pub cells: Vec<(i64, String)>,
}

impl Line {
    /// A line of one cell at the left margin.
    pub fn text(y: i64, text: &str) -> Self {
        Self {
            y,
            cells: vec![(72, text.to_owned())],
        }
    }

    /// A table row: cells at the given x positions.
    pub fn row(y: i64, cells: &[(i64, &str)]) -> Self {
        Self {
            y,
            cells: cells.iter().map(|(x, t)| (*x, (*t).to_owned())).collect(),
        }
    }
}

/// What a page holds.
#[derive(Debug, Clone)]
pub enum Page {
    /// Lines of text in Helvetica.
    Text(Vec<Line>),
    /// An image and no text, as a scanner makes.
    Scanned,
}

/// A PDF of `pages`.
pub fn document(pages: &[Page]) -> Vec<u8> {
    let mut doc = build(pages);
    let mut out = Vec::new();
    doc.save_to(&mut out).expect("a PDF is written to memory");
    out
}

/// A PDF of `pages` encrypted with a user password (it cannot be read without it).
pub fn encrypted(pages: &[Page]) -> Vec<u8> {
    let mut doc = build(pages);
    let id = Object::String(b"sift-test-file-id".to_vec(), lopdf::StringFormat::Literal);
    doc.trailer.set("ID", vec![id.clone(), id]);
    let version = lopdf::EncryptionVersion::V2 {
        document: &doc,
        owner_password: "owner",
        user_password: "secret",
        key_length: 40,
        permissions: lopdf::Permissions::all(),
    };
    let state = lopdf::EncryptionState::try_from(version).expect("RC4 encryption is set up");
    doc.encrypt(&state).expect("the document is encrypted");
    let mut out = Vec::new();
    doc.save_to(&mut out).expect("a PDF is written to memory");
    out
}

/// Bytes that start like a PDF and are not one.
pub fn malformed() -> Vec<u8> {
    b"%PDF-1.5\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\nthis is not a PDF\n%%EOF".to_vec()
}

fn build(pages: &[Page]) -> Document {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {
        "Type" => "Font",
        "Subtype" => "Type1",
        "BaseFont" => "Helvetica",
        "Encoding" => "WinAnsiEncoding",
    });
    let image_id = doc.add_object(Stream::new(
        dictionary! {
            "Type" => "XObject",
            "Subtype" => "Image",
            "Width" => 2,
            "Height" => 2,
            "ColorSpace" => "DeviceGray",
            "BitsPerComponent" => 8,
        },
        vec![0, 255, 255, 0],
    ));
    let resources_id = doc.add_object(dictionary! {
        "Font" => dictionary! { "F1" => font_id },
        "XObject" => dictionary! { "Im1" => image_id },
    });
    let mut kids: Vec<Object> = Vec::new();
    for page in pages {
        let operations = match page {
            Page::Text(lines) => {
                let mut ops = Vec::new();
                for line in lines {
                    for (x, text) in &line.cells {
                        ops.push(Operation::new("BT", vec![]));
                        ops.push(Operation::new("Tf", vec!["F1".into(), 11.into()]));
                        ops.push(Operation::new("Td", vec![(*x).into(), line.y.into()]));
                        ops.push(Operation::new(
                            "Tj",
                            vec![Object::string_literal(latin1(text))],
                        ));
                        ops.push(Operation::new("ET", vec![]));
                    }
                }
                ops
            }
            Page::Scanned => vec![
                Operation::new("q", vec![]),
                Operation::new(
                    "cm",
                    vec![
                        500.into(),
                        0.into(),
                        0.into(),
                        700.into(),
                        40.into(),
                        60.into(),
                    ],
                ),
                Operation::new("Do", vec!["Im1".into()]),
                Operation::new("Q", vec![]),
            ],
        };
        let content = Content { operations };
        let content_id = doc.add_object(Stream::new(
            dictionary! {},
            content.encode().expect("content encodes"),
        ));
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page",
            "Parent" => pages_id,
            "Contents" => content_id,
        });
        kids.push(page_id.into());
    }
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => kids,
            "Count" => count,
            "Resources" => resources_id,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        }),
    );
    let catalog_id = doc.add_object(dictionary! {
        "Type" => "Catalog",
        "Pages" => pages_id,
    });
    doc.trailer.set("Root", catalog_id);
    doc
}

/// `text` in Latin-1 (WinAnsi's first 256), others as `?`.
fn latin1(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect()
}
