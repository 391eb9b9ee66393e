//! Splitting a long text into chunks that fit a model, overlapping a little so a sentence cut
//! at one chunk's end is read whole by the next.
//!
//! A chunk ends at the best boundary in the second half of its window: a page break or a
//! blank line, else a line break, else a sentence's end, else a space, else anywhere. The
//! next chunk starts up to `overlap` characters before that end, at the best boundary there
//! (the earliest of them, for the most context). Offsets count characters.

use serde::Serialize;

/// One piece of a text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Chunk {
    /// Its place in the order, from 0.
    pub index: usize,
    /// Where it starts in the text (characters).
    pub start: usize,
    /// Where it ends (exclusive).
    pub end: usize,
    /// Its text.
    #[serde(skip)]
    pub text: String,
}

/// How good a place between `chars[i - 1]` and `chars[i]` is to cut.
fn rank(chars: &[char], i: usize) -> u8 {
    if i == 0 || i >= chars.len() {
        return 5;
    }
    let before = chars[i - 1];
    if before == '\u{c}' || (before == '\n' && i >= 2 && chars[i - 2] == '\n') {
        return 4;
    }
    if before == '\n' {
        return 3;
    }
    if before.is_whitespace() {
        if i >= 2 && matches!(chars[i - 2], '.' | '!' | '?' | ';' | ':') {
            return 2;
        }
        return 1;
    }
    if matches!(before, '。' | '！' | '？') {
        return 2;
    }
    0
}

/// Splits `text` into chunks of at most `max_chars` characters (at least 16), consecutive
/// ones sharing at most `overlap` characters (at most a quarter of `max_chars`). A text that
/// fits is one chunk.
pub fn split(text: &str, max_chars: usize, overlap: usize) -> Vec<Chunk> {
    let chars: Vec<char> = text.chars().collect();
    let max = max_chars.max(16);
    let overlap = overlap.min(max / 4);
    let mut chunks = Vec::new();
    let mut start = 0;
    loop {
        let limit = start + max;
        if limit >= chars.len() {
            chunks.push(make(&chars, chunks.len(), start, chars.len()));
            break;
        }
        // The best cut in the window's second half, the latest of the best.
        let mut end = limit;
        let mut best = 0;
        for i in (start + max / 2..=limit).rev() {
            let r = rank(&chars, i);
            if r > best {
                best = r;
                end = i;
                if r >= 4 {
                    break;
                }
            }
        }
        chunks.push(make(&chars, chunks.len(), start, end));
        // The next start: the best boundary in the overlap, the earliest of the best.
        let mut next = end;
        let mut best = 0;
        for i in end.saturating_sub(overlap)..end {
            let r = rank(&chars, i);
            if r > best {
                best = r;
                next = i;
            }
        }
        if best == 0 && overlap > 0 {
            next = end - overlap;
        }
        // Not on the whitespace of the boundary itself.
        while next < end && chars[next].is_whitespace() {
            next += 1;
        }
        start = next.max(start + 1);
    }
    chunks
}

fn make(chars: &[char], index: usize, start: usize, end: usize) -> Chunk {
    Chunk {
        index,
        start,
        end,
        text: chars[start..end].iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_text_that_fits_is_one_chunk() {
        let chunks = split("short text", 100, 10);
        assert_eq!(chunks.len(), 1);
        assert_eq!((chunks[0].start, chunks[0].end), (0, 10));
        assert_eq!(split("", 100, 10).len(), 1);
    }

    #[test]
    fn cuts_at_paragraphs_then_sentences_and_overlaps_on_a_boundary() {
        let text =
            "First paragraph here.\n\nSecond one is longer. It has two sentences. And three.";
        let chunks = split(text, 40, 10);
        assert_eq!(chunks[0].text, "First paragraph here.\n\n");
        assert!(
            chunks[1].text.starts_with("Second one is longer."),
            "{chunks:?}"
        );
        let last = chunks.last().unwrap();
        assert_eq!(last.end, text.chars().count());
        // A word boundary inside the overlap starts the next chunk.
        let cut = split("aaaa bbbb. cccc dddd eeee ffff gggg hhhh", 24, 8);
        assert_eq!(cut[0].text, "aaaa bbbb. cccc dddd ");
        assert_eq!(cut[1].text, "dddd eeee ffff gggg hhhh");
    }

    #[test]
    fn offsets_count_characters_not_bytes() {
        let text = "é".repeat(50) + " " + &"ü".repeat(50);
        let chunks = split(&text, 60, 0);
        assert_eq!(chunks[0].end, 51);
        assert_eq!(chunks[1].start, 51);
        assert_eq!(chunks[1].text, "ü".repeat(50));
    }

    proptest! {
        #[test]
        fn chunks_cover_the_text_in_bounds(
            text in "[a-c .\n\u{e9}]{0,400}",
            max in 16usize..120,
            overlap in 0usize..40,
        ) {
            let chars: Vec<char> = text.chars().collect();
            let chunks = split(&text, max, overlap);
            prop_assert_eq!(chunks[0].start, 0);
            prop_assert_eq!(chunks.last().unwrap().end, chars.len());
            for (i, c) in chunks.iter().enumerate() {
                prop_assert_eq!(c.index, i);
                prop_assert!(c.end - c.start <= max.max(16));
                prop_assert_eq!(&c.text, &chars[c.start..c.end].iter().collect::<String>());
                if i > 0 {
                    let prev = &chunks[i - 1];
                    prop_assert!(c.start > prev.start);
                    prop_assert!(c.start <= prev.end, "no gap");
                    prop_assert!(prev.end - c.start <= overlap.min(max.max(16) / 4));
                }
            }
        }
    }
}
