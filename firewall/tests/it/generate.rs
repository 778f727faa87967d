//! Generators shared by the property and differential tests: decoded words
//! and random shell encodings that decode to them.

use proptest::prelude::*;

/// Characters a decoded word may hold: plain ones, blanks, quotes, shell
/// metacharacters (which must end up quoted) and a non-ASCII letter.
const ALPHABET: &[char] = &[
    'a', 'b', 'z', '0', '9', '-', '.', '/', '=', ':', '@', '%', '+', ',', '_', ' ', '\t', '\'',
    '"', '$', ';', '|', '&', '*', '?', '[', '~', '#', '(', ')', '{', '}', '<', '>', '`', '\\', '!',
    '^', 'é',
];

/// A decoded word (possibly empty). Option names stay ASCII (the firewall
/// refuses non-ASCII there), so `é` only appears in other words.
pub fn word() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(ALPHABET), 0..7).prop_map(|cs| {
        let w: String = cs.into_iter().collect();
        if w.starts_with('-') {
            w.replace('é', "e")
        } else {
            w
        }
    })
}

fn plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || "%+,-./:=@_".contains(c)
}

/// Encodes `word` for sh, choosing a quoting style per character from
/// `choices` so the same word comes out spliced in many ways.
pub fn encode(word: &str, choices: &[u8]) -> String {
    if word.is_empty() {
        return if choices.first().is_some_and(|c| c % 2 == 0) {
            "''".into()
        } else {
            "\"\"".into()
        };
    }
    let mut out = String::new();
    for (i, c) in word.chars().enumerate() {
        let pick = choices.get(i % choices.len().max(1)).copied().unwrap_or(0) % 3;
        let dq_ok = !matches!(c, '"' | '$' | '`' | '\\');
        match (pick, c) {
            (0, c) if plain(c) => out.push(c),
            (_, '\'') => out.push_str("\"'\""),
            (1, c) if dq_ok => {
                out.push('"');
                out.push(c);
                out.push('"');
            }
            (_, c) => {
                out.push('\'');
                out.push(c);
                out.push('\'');
            }
        }
    }
    out
}

/// A command name that is nobody's wrapper, encoded with splicing.
pub fn name(names: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::sample::select(names).prop_map(str::to_owned)
}

/// One simple command: (argv, encoded text).
pub fn simple(names: &'static [&'static str]) -> impl Strategy<Value = (Vec<String>, String)> {
    (
        name(names),
        prop::collection::vec(word(), 0..4),
        prop::collection::vec(any::<u8>(), 1..8),
        any::<bool>(),
    )
        .prop_map(|(name, args, choices, dup)| {
            let mut argv = vec![name];
            argv.extend(args);
            let mut text = argv
                .iter()
                .enumerate()
                .map(|(i, w)| encode(w, &choices[i % choices.len()..]))
                .collect::<Vec<_>>()
                .join(" ");
            if dup {
                text.push_str(" 2>&1");
            }
            (argv, text)
        })
}
