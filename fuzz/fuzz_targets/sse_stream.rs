//! Fuzz a streamed answer end to end: any bytes as an upstream's event stream, split
//! anywhere, through the SSE decoder, the completion-chunk reader and the answer reader (in
//! every mode, for list elements or a growing value). Nothing may panic, and the limits hold:
//! no line or event over the decoder's limit, no tool call past the reader's bound.
//!
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run sse_stream -- -max_total_time=300` (from `fuzz/`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sift_core::Mode;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunking, the mode and the purpose; the rest is the stream.
    let Some((&knobs, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(knobs % 13) + 1;
    let mode = match (knobs >> 4) & 3 {
        0 => Mode::Tools,
        1 => Mode::JsonSchema,
        2 => Mode::Json,
        _ => Mode::MdJson,
    };
    let elements = knobs & 0x40 != 0;
    let chunks: Vec<&[u8]> = stream.chunks(chunk).collect();
    let limit = 4096;
    let deltas = sift_openai::read_chunks(&chunks, limit);
    let ok: Vec<_> = deltas.into_iter().map_while(Result::ok).collect();
    for d in &ok {
        if let sift_core::ChatDelta::Content(t) = d {
            assert!(t.len() <= limit, "a delta longer than an event may be");
        }
    }
    let _ = sift_core::__fuzz::read(mode, elements, ok);
});
