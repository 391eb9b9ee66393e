//! Which sequence a new prompt runs in, so that it reuses the most of a kept prompt.
//!
//! Each sequence of the engine keeps, when its generation ends, the KV state of the prompt it
//! read (its answer's cells are freed). A new prompt goes to the free sequence whose kept
//! prompt shares the longest token prefix with it, and reads only the rest: in extraction
//! traffic that is at least the chat-template-rendered system prompt and instructions of its
//! extractor, and the whole earlier conversation for a re-ask. One prompt is kept per sequence
//! (a fixed number, bounded by the context); with nothing shared, the least recently used
//! sequence is taken. This module only decides; the scheduler applies it to the context.

/// The prompt each sequence keeps.
#[derive(Debug)]
pub(crate) struct Kept<T> {
    kept: Vec<Entry<T>>,
    clock: u64,
}

#[derive(Debug)]
struct Entry<T> {
    tokens: Vec<T>,
    used: u64,
    /// How its cells were computed (the scheduler's two kernel families): a prompt reuses
    /// only cells computed as it would compute them itself.
    family: bool,
}

impl<T: PartialEq + Clone> Kept<T> {
    /// Nothing kept yet, for `sequences` sequences.
    pub(crate) fn new(sequences: usize) -> Self {
        Self {
            kept: (0..sequences)
                .map(|_| Entry {
                    tokens: Vec::new(),
                    used: 0,
                    family: false,
                })
                .collect(),
            clock: 0,
        }
    }

    /// Among the sequences `free` allows, the one to run `tokens` (read in `family`) in, and
    /// how many leading tokens its kept prompt shares with them: the longest shared prefix
    /// among kept prompts of the same family, else (and among equals) the least recently used.
    pub(crate) fn choose(
        &mut self,
        free: impl Fn(usize) -> bool,
        tokens: &[T],
        family: bool,
    ) -> Option<(usize, usize)> {
        self.clock += 1;
        let (seq, shared) = self
            .kept
            .iter()
            .enumerate()
            .filter(|&(i, _)| free(i))
            .map(|(i, e)| {
                let shared = if e.family == family {
                    common(&e.tokens, tokens)
                } else {
                    0
                };
                (i, shared, e.used)
            })
            .max_by_key(|&(i, shared, used)| {
                (shared, std::cmp::Reverse(used), std::cmp::Reverse(i))
            })
            .map(|(i, shared, _)| (i, shared))?;
        self.kept[seq].used = self.clock;
        Some((seq, shared))
    }

    /// Records that sequence `seq` now keeps `tokens` (an empty slice: nothing), computed in
    /// `family`.
    pub(crate) fn keep(&mut self, seq: usize, tokens: &[T], family: bool) {
        if let Some(e) = self.kept.get_mut(seq) {
            e.tokens.clear();
            e.tokens.extend_from_slice(tokens);
            e.family = family;
        }
    }
}

/// How many leading items `a` and `b` share.
pub(crate) fn common<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_sharing_the_longest_prefix_is_chosen() {
        let mut k = Kept::new(3);
        k.keep(0, &[1, 2, 3, 4], false);
        k.keep(1, &[1, 2, 9, 9, 9], false);
        k.keep(2, &[5], false);
        assert_eq!(k.choose(|_| true, &[1, 2, 3, 7], false), Some((0, 3)));
        assert_eq!(k.choose(|_| true, &[1, 2, 9, 9, 0], false), Some((1, 4)));
        assert_eq!(k.choose(|_| true, &[5, 5], false), Some((2, 1)));
        // A busy sequence is not chosen, however much it shares.
        assert_eq!(k.choose(|i| i != 0, &[1, 2, 3, 4], false), Some((1, 2)));
        assert_eq!(k.choose(|_| false, &[1], false), None);
    }

    #[test]
    fn with_nothing_shared_the_least_recently_used_is_taken() {
        let mut k: Kept<u32> = Kept::new(3);
        // All equal: the first.
        assert_eq!(k.choose(|_| true, &[7], false), Some((0, 0)));
        assert_eq!(k.choose(|_| true, &[8], false), Some((1, 0)));
        assert_eq!(k.choose(|_| true, &[9], false), Some((2, 0)));
        // 0 was used longest ago.
        assert_eq!(k.choose(|_| true, &[6], false), Some((0, 0)));
        k.keep(1, &[], false);
        assert_eq!(
            k.choose(|i| i == 1, &[8], false),
            Some((1, 0)),
            "nothing kept"
        );
    }

    #[test]
    fn a_prompt_reuses_only_cells_of_its_own_family() {
        let mut k = Kept::new(2);
        k.keep(0, &[1, 2, 3, 4], true);
        k.keep(1, &[1, 2, 3], false);
        assert_eq!(k.choose(|_| true, &[1, 2, 3, 4, 5], true), Some((0, 4)));
        assert_eq!(k.choose(|_| true, &[1, 2, 3, 4, 5], false), Some((1, 3)));
        assert_eq!(k.choose(|i| i == 0, &[1, 2, 3, 4, 5], false), Some((0, 0)));
    }

    #[test]
    fn a_kept_prompt_is_replaced() {
        let mut k = Kept::new(1);
        k.keep(0, &[1, 2, 3], false);
        assert_eq!(k.choose(|_| true, &[1, 2, 3], false), Some((0, 3)));
        k.keep(0, &[4, 5], false);
        assert_eq!(k.choose(|_| true, &[1, 2, 3], false), Some((0, 0)));
        assert_eq!(common(&[1, 2], &[1, 2, 3]), 2);
    }
}
