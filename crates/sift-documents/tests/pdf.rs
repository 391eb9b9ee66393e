//! The PDF reader on PDFs the tests make: two pages with a table, a scanned page, an
//! encrypted file, a malformed one, and the page limit.

use sift_documents::{Kind, Limits, read};
use sift_test_support::pdf::{self, Line, Page};

fn invoice() -> Vec<u8> {
    pdf::document(&[
        Page::Text(vec![
            Line::text(780, "INVOICE 2026-118"),
            Line::text(760, "Seller: Brightwater Tools Ltd"),
            Line::row(700, &[(72, "Item"), (300, "Qty"), (400, "Amount")]),
            Line::row(684, &[(72, "Claw hammer"), (300, "2"), (400, "24.00")]),
            Line::row(668, &[(72, "Tape measure"), (300, "1"), (400, "9.50")]),
        ]),
        Page::Text(vec![
            Line::text(780, "Total due: 126.50"),
            Line::text(760, "Issued 3 November 2026"),
        ]),
    ])
}

#[test]
fn two_pages_with_a_table_read_in_order_with_page_offsets() {
    let doc = read(&invoice(), Kind::Pdf, &Limits::default()).unwrap();
    assert_eq!(doc.kind, Kind::Pdf);
    assert_eq!(doc.page_count(), 2);
    let pages: Vec<&str> = doc.text.split('\u{c}').collect();
    assert_eq!(pages.len(), 2, "{:?}", doc.text);
    // The table's rows stay rows, cells in order.
    assert!(
        pages[0].contains("Seller: Brightwater Tools Ltd"),
        "{:?}",
        pages[0]
    );
    let hammer = pages[0]
        .lines()
        .find(|l| l.contains("Claw hammer"))
        .unwrap();
    assert!(
        hammer.contains('2') && hammer.contains("24.00"),
        "{hammer:?}"
    );
    assert!(pages[0].find("Item").unwrap() < pages[0].find("Claw hammer").unwrap());
    assert!(pages[0].find("Claw hammer").unwrap() < pages[0].find("Tape measure").unwrap());
    assert!(pages[1].contains("Total due: 126.50"));
    // Page offsets count characters and point at each page's first one.
    let second = doc.pages[1];
    let from: String = doc.text.chars().skip(second).take(9).collect();
    assert_eq!(from, "Total due");
    assert_eq!(doc.page_of(second), 2);
    assert_eq!(doc.page_of(second - 1), 1);
    assert!(doc.warnings.is_empty());
}

#[test]
fn a_scanned_pdf_is_named_as_such() {
    let bytes = pdf::document(&[Page::Scanned, Page::Scanned]);
    let err = read(&bytes, Kind::Pdf, &Limits::default()).unwrap_err();
    assert_eq!(err.kind(), "no_text");
    assert!(err.to_string().contains("2 page(s)"), "{err}");
    assert!(err.to_string().contains("OCR"), "{err}");
}

#[test]
fn an_encrypted_pdf_is_refused_by_name() {
    let bytes = pdf::encrypted(&[Page::Text(vec![Line::text(700, "secret text")])]);
    let err = read(&bytes, Kind::Pdf, &Limits::default()).unwrap_err();
    assert_eq!(err.kind(), "encrypted", "{err}");
}

#[test]
fn malformed_and_mislabelled_files_are_refused_not_panicked_on() {
    for bytes in [pdf::malformed(), b"hello, not a pdf".to_vec(), Vec::new()] {
        let err = read(&bytes, Kind::Pdf, &Limits::default()).unwrap_err();
        assert_eq!(err.kind(), "malformed", "{err}");
    }
    // A real PDF cut short.
    let whole = invoice();
    for cut in [whole.len() / 3, whole.len() / 2, whole.len() - 40] {
        let result = read(&whole[..cut], Kind::Pdf, &Limits::default());
        if let Err(e) = result {
            assert!(matches!(e.kind(), "malformed" | "no_text"), "{e}");
        }
    }
}

#[test]
fn pages_past_the_limit_are_refused() {
    let limits = Limits {
        max_bytes: 1 << 20,
        max_pages: 1,
    };
    let err = read(&invoice(), Kind::Pdf, &limits).unwrap_err();
    assert_eq!(err.kind(), "too_many_pages");
    assert!(err.is_too_large());
    assert!(err.to_string().contains("2 pages"), "{err}");
}
