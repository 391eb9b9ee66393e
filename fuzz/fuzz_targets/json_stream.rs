//! Fuzz the streaming JSON parser: any bytes, split anywhere, never panic, and agree with
//! serde_json on what is valid and what it means.
//!
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run json_stream -- -max_total_time=300` (from `fuzz/`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sift_core::json_stream::JsonStreamParser;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size, the rest is the document.
    let Some((&split, doc)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(split % 17) + 1;
    let mut parser = JsonStreamParser::new().detach_elements(split & 0x80 != 0);
    let mut events = Vec::new();
    let mut result = Ok(());
    for piece in doc.chunks(chunk) {
        result = parser.feed(piece, &mut events);
        if result.is_err() {
            break;
        }
        let _ = parser.partial();
    }
    if result.is_ok() {
        result = parser.finish(&mut events);
    }
    let theirs = serde_json::from_slice::<serde_json::Value>(doc);
    match (&result, &theirs) {
        (Ok(()), Ok(v)) if split & 0x80 == 0 => assert_eq!(parser.value(), Some(v)),
        (Ok(()), Ok(_)) => {}
        (Err(e), Err(_)) => assert!(e.offset <= doc.len()),
        _ => panic!("disagree: ours {result:?}, serde_json {theirs:?}"),
    }
});
