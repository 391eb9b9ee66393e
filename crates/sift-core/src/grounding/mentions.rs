//! The numbers and dates a text mentions, read in one scan: each with what it can mean
//! (`1.250,00`, `1,340.50`, `thirty-three`, `3 November 2026`, `Nov 3rd, 2026`, `03/11/2026`).

/// A number or date written in a text, with what it can mean.
#[derive(Debug)]
pub(super) struct Mention {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) numbers: Vec<f64>,
    pub(super) date: Option<(i32, u32, u32)>,
    /// A day and month written without a year (`14 January`, `January 14th`): month, day.
    pub(super) day_month: Option<(u32, u32)>,
}

/// A number as a map key: its bits, with `-0` as `0`.
pub(super) fn key(x: f64) -> u64 {
    (x + 0.0).to_bits()
}

/// `2026-11-03` (or the date part of a date-time).
pub(super) fn parse_iso_date(s: &str) -> Option<(i32, u32, u32)> {
    let s = s.trim();
    let date = s.get(..10)?;
    let mut parts = date.split('-');
    let y = parts.next()?.parse().ok()?;
    let m = parts.next()?.parse().ok()?;
    let d = parts.next()?.parse().ok()?;
    ((1..=12).contains(&m) && (1..=31).contains(&d)).then_some((y, m, d))
}

const MONTHS: &[&str] = &[
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

const UNITS: &[&str] = &[
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];

const TENS: &[&str] = &[
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

/// Month names in German, French, Spanish, Italian, Dutch and Portuguese, whole (their
/// abbreviations are left out: short ones such as `ago` or `set` are everyday words), with
/// the spellings without accents too.
const FOREIGN_MONTHS: &[(&str, u32)] = &[
    ("januar", 1),
    ("janvier", 1),
    ("enero", 1),
    ("gennaio", 1),
    ("januari", 1),
    ("janeiro", 1),
    ("februar", 2),
    ("février", 2),
    ("fevrier", 2),
    ("febrero", 2),
    ("febbraio", 2),
    ("februari", 2),
    ("fevereiro", 2),
    ("märz", 3),
    ("maerz", 3),
    ("mars", 3),
    ("marzo", 3),
    ("maart", 3),
    ("março", 3),
    ("marco", 3),
    ("avril", 4),
    ("abril", 4),
    ("aprile", 4),
    ("mai", 5),
    ("mayo", 5),
    ("maggio", 5),
    ("mei", 5),
    ("maio", 5),
    ("juni", 6),
    ("juin", 6),
    ("junio", 6),
    ("giugno", 6),
    ("junho", 6),
    ("juli", 7),
    ("juillet", 7),
    ("julio", 7),
    ("luglio", 7),
    ("julho", 7),
    ("august", 8),
    ("août", 8),
    ("aout", 8),
    ("agosto", 8),
    ("augustus", 8),
    ("september", 9),
    ("septembre", 9),
    ("septiembre", 9),
    ("settembre", 9),
    ("setembro", 9),
    ("oktober", 10),
    ("octobre", 10),
    ("octubre", 10),
    ("ottobre", 10),
    ("outubro", 10),
    ("november", 11),
    ("novembre", 11),
    ("noviembre", 11),
    ("novembro", 11),
    ("dezember", 12),
    ("décembre", 12),
    ("decembre", 12),
    ("diciembre", 12),
    ("dicembre", 12),
    ("december", 12),
    ("dezembro", 12),
];

/// The month `word` names (a whole name or an English abbreviation of at least three letters,
/// in any case), if it names one. Runs on every word of a text, so most words are turned away
/// by their length or first letter before anything is compared, and ASCII words are compared
/// without being lower-cased into a new string.
fn month(word: &str) -> Option<u32> {
    let w = word.trim_end_matches('.');
    // The longest name is `septiembre` (10 bytes); a non-ASCII upper-case letter may take a
    // byte more than its lower case, so longer words are checked after lower-casing.
    if w.len() < 3 || w.len() > 16 {
        return None;
    }
    let first = w.as_bytes()[0].to_ascii_lowercase();
    if !matches!(
        first,
        b'j' | b'f' | b'm' | b'a' | b's' | b'o' | b'n' | b'd' | b'e' | b'g' | b'l'
    ) && first.is_ascii()
    {
        return None;
    }
    if w.is_ascii() {
        return MONTHS
            .iter()
            .position(|m| {
                m.len() >= w.len() && m.as_bytes()[..w.len()].eq_ignore_ascii_case(w.as_bytes())
            })
            .map(|i| i as u32 + 1)
            .or_else(|| {
                FOREIGN_MONTHS
                    .iter()
                    .find(|(m, _)| m.eq_ignore_ascii_case(w))
                    .map(|&(_, n)| n)
            });
    }
    let w = w.to_lowercase();
    if w.len() < 3 {
        return None;
    }
    MONTHS
        .iter()
        .position(|m| m.starts_with(&w))
        .map(|i| i as u32 + 1)
        .or_else(|| {
            FOREIGN_MONTHS
                .iter()
                .find(|(m, _)| *m == w)
                .map(|&(_, n)| n)
        })
}

/// Words that join a day, its month and its year in Spanish and Portuguese (`3 de marzo de
/// 2027`), skipped when reading a date.
fn joiner(word: &(usize, usize, &str)) -> bool {
    word.2.eq_ignore_ascii_case("de") || word.2.eq_ignore_ascii_case("del")
}

/// A word of a text: where it starts and ends (characters, end exclusive), and the word.
type Word<'t> = (usize, usize, &'t str);

/// Where a range of days that started before word `k` ends (`to 7 May 2027`, `–7 May`,
/// `au 7 mai`): its month, the end of the month's word, and the word after (the year, if it
/// is one).
fn range_end<'t>(words: &'t [Word<'t>], k: usize) -> Option<(u32, usize, Option<&'t Word<'t>>)> {
    let between = words.get(k)?.2;
    let last = if [
        "to", "and", "until", "till", "through", "bis", "au", "al", "a", "tot", "e",
    ]
    .iter()
    .any(|w| between.eq_ignore_ascii_case(w))
    {
        k + 1
    } else {
        k
    };
    let (_, _, day) = words.get(last)?;
    day_of(day.trim_end_matches(|c: char| c.is_alphabetic() || c == '.'))?;
    let at = past_joiner(words, last + 1);
    let (_, end, name) = words.get(at)?;
    let m = month(name.trim_end_matches([',', '.']))?;
    Some((m, *end, words.get(past_joiner(words, at + 1))))
}

/// The word at `k`, or the one after it when it is a [`joiner`]: its index.
fn past_joiner(words: &[(usize, usize, &str)], k: usize) -> usize {
    if words.get(k).is_some_and(joiner) {
        k + 1
    } else {
        k
    }
}

/// `thirty-three`, `seven`, `ninety`: the number a word (or hyphenated pair) spells.
fn number_word(word: &str) -> Option<f64> {
    // Every number word is ASCII, at most `seventy-seven` long, and starts with one of these.
    if !word.is_ascii()
        || word.len() < 3
        || word.len() > 13
        || !matches!(
            word.as_bytes()[0].to_ascii_lowercase(),
            b'z' | b'o' | b't' | b'f' | b's' | b'e' | b'n'
        )
    {
        return None;
    }
    let is = |a: &str, b: &str| !b.is_empty() && a.eq_ignore_ascii_case(b);
    if let Some(i) = UNITS.iter().position(|u| is(word, u)) {
        return Some(i as f64);
    }
    if let Some(i) = TENS.iter().position(|t| is(word, t)) {
        return Some((i * 10) as f64);
    }
    let (tens, unit) = word.split_once('-')?;
    let t = TENS.iter().position(|x| is(tens, x))?;
    let u = UNITS
        .iter()
        .position(|x| is(unit, x))
        .filter(|&u| (1..10).contains(&u))?;
    Some((t * 10 + u) as f64)
}

/// The numbers a run of digits and separators can mean: `1.250,00` and `1,250.00` are
/// 1250; `126.50` is 126.5; `3` is 3.
fn readings(token: &str) -> Vec<f64> {
    let mut out = Vec::new();
    let plain: String = token
        .chars()
        .filter(|c| !matches!(c, '\'' | '_' | ' '))
        .collect();
    let mut push = |s: String| {
        if let Ok(x) = s.parse::<f64>()
            && !out.contains(&x)
        {
            out.push(x);
        }
    };
    // `,` thousands, `.` decimals.
    push(plain.replace(',', ""));
    // `.` thousands, `,` decimals.
    push(plain.replace('.', "").replace(',', "."));
    out
}

/// A word of `text` from byte `from` to `to`, starting at character `start`, its trailing
/// punctuation dropped: its range in characters and its text.
fn word(text: &str, start: usize, from: usize, to: usize) -> (usize, usize, &str) {
    let word = text[from..to].trim_end_matches(['.', ',', '-', '/', '\'']);
    (start, start + word.chars().count(), word)
}

/// Every number and date mention in `text`, in one pass over its words.
pub(super) fn mentions(text: &str) -> Vec<Mention> {
    // Words with their character ranges, as slices of the text.
    let mut words: Vec<(usize, usize, &str)> = Vec::new();
    // The current word's first character and first byte.
    let mut current: Option<(usize, usize)> = None;
    for (i, (at, c)) in text.char_indices().enumerate() {
        let part =
            c.is_alphanumeric() || (matches!(c, '.' | ',' | '-' | '/' | '\'') && current.is_some());
        match (part, current) {
            (true, None) => current = Some((i, at)),
            (false, Some((start, from))) => {
                words.push(word(text, start, from, at));
                current = None;
            }
            _ => {}
        }
    }
    if let Some((start, from)) = current {
        words.push(word(text, start, from, text.len()));
    }
    let mut out = Vec::new();
    for (k, (s, _, raw)) in words.iter().enumerate() {
        // Trailing punctuation is not part of the word.
        let word = raw.trim_end_matches(['.', ',', '-', '/', '\'']);
        // 2026-11-03, 03/11/2026, 11/03/2026
        if let Some(date) = parse_iso_date(word) {
            out.push(Mention {
                start: *s,
                end: s + word.chars().count(),
                numbers: Vec::new(),
                date: Some(date),
                day_month: None,
            });
            continue;
        }
        if let Some((a, b, c)) = slashed(word) {
            for (d, m) in [(a, b), (b, a)] {
                if (1..=12).contains(&m) && (1..=31).contains(&d) {
                    out.push(Mention {
                        start: *s,
                        end: s + word.chars().count(),
                        numbers: Vec::new(),
                        date: Some((c, m, d)),
                        day_month: None,
                    });
                }
            }
            continue;
        }
        let digits = word.chars().next().is_some_and(|c| c.is_ascii_digit());
        if digits {
            // `90th`, `3rd`: the number before the suffix.
            let number_part: String = word
                .chars()
                .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | ',' | '\''))
                .collect();
            let numbers = readings(&number_part);
            // `3 November 2026`, `14 January`
            // `3 de marzo de 2027`
            let at = past_joiner(&words, k + 1);
            if let (Some(d), Some((_, e1, w1))) = (day_of(&number_part), words.get(at))
                && let Some(m) = month(w1.trim_end_matches([',', '.']))
            {
                let year = words.get(past_joiner(&words, at + 1));
                out.push(dated(*s, *e1, (m, d), year, numbers.clone()));
            } else if let Some(d) = day_of(&number_part)
                && let Some((m, end, year)) = range_end(&words, k + 1)
            {
                // The first day of a range (`5 to 7 May 2027`, `5–7 May`): its month and
                // year are the last day's.
                out.push(dated(*s, end, (m, d), year, numbers.clone()));
            }
            out.push(Mention {
                start: *s,
                end: s + number_part.chars().count(),
                numbers,
                date: None,
                day_month: None,
            });
            continue;
        }
        // `November 3, 2026`, `January 14th`
        if let Some(m) = month(word)
            && let Some((_, e1, w1)) = words.get(k + 1)
            && let Some(d) = day_of(
                w1.trim_end_matches([',', '.'])
                    .trim_end_matches(|c: char| c.is_alphabetic()),
            )
        {
            out.push(dated(*s, *e1, (m, d), words.get(k + 2), Vec::new()));
            continue;
        }
        if let Some(x) = number_word(word) {
            out.push(Mention {
                start: *s,
                end: s + word.chars().count(),
                numbers: vec![x],
                date: None,
                day_month: None,
            });
        }
    }
    out
}

/// `word` as the day of a month (1 to 31).
fn day_of(word: &str) -> Option<u32> {
    word.parse().ok().filter(|d| (1..=31).contains(d))
}

/// The mention of a day and month read from `start` to `end`: with its year (and then
/// `numbers`, what its first word can mean) when the word after, `next`, is one, ending
/// there; else the day and month alone.
fn dated(
    start: usize,
    end: usize,
    (month, day): (u32, u32),
    next: Option<&(usize, usize, &str)>,
    numbers: Vec<f64>,
) -> Mention {
    let year = next.and_then(|(_, e, w)| {
        w.trim_end_matches(['.', ','])
            .parse::<i32>()
            .ok()
            .map(|y| (*e, y))
    });
    match year {
        Some((end, y)) => Mention {
            start,
            end,
            numbers,
            date: Some((y, month, day)),
            day_month: None,
        },
        None => Mention {
            start,
            end,
            numbers: Vec::new(),
            date: None,
            day_month: Some((month, day)),
        },
    }
}

/// `03/11/2026`: its three numbers, the year last.
fn slashed(word: &str) -> Option<(u32, u32, i32)> {
    let mut parts = word.split(['/', '.']);
    let a = parts.next()?.parse().ok()?;
    let b = parts.next()?.parse().ok()?;
    let c_text = parts.next()?;
    if parts.next().is_some() || c_text.len() != 4 {
        return None;
    }
    Some((a, b, c_text.parse().ok()?))
}
