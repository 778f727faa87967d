//! Reading one argv against the table, as the program's parser would (but
//! more suspicious; see the module docs).

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::{Regex, RegexBuilder};

use super::{Context, ExecHit, Program, ROWS, Row, Scope, Style, Trigger, sed};

/// Every regex of the table, compiled once, case-insensitive. A pattern that
/// failed to compile matches everything (fail closed); a unit test keeps
/// them all valid.
static REGEXES: LazyLock<HashMap<&'static str, Option<Regex>>> = LazyLock::new(|| {
    ROWS.iter()
        .filter_map(|r| match r.trigger {
            Trigger::ShortValue(_, p)
            | Trigger::LongValue(_, p)
            | Trigger::Positional(p)
            | Trigger::AwkProgram(p) => Some(p),
            _ => None,
        })
        .map(|p| (p, RegexBuilder::new(p).case_insensitive(true).build().ok()))
        .collect()
});

pub(super) fn pattern_matches(pattern: &str, text: &str) -> bool {
    match REGEXES.get(pattern) {
        Some(Some(re)) => re.is_match(text),
        _ => true,
    }
}

struct State<'a> {
    prog: &'static Program,
    rows: Vec<&'static Row>,
    positionals: Vec<&'a str>,
    /// Option names as seen (`--no-pager`, `-P`), for [`Trigger::Unless`].
    seen: Vec<String>,
    /// `(option, value)` pairs, for scripts given by option.
    values: Vec<(String, &'a str)>,
    /// How many of the next words are option values.
    pending: usize,
}

pub(super) fn scan(prog: &'static Program, args: &[String], ctx: Context) -> Option<ExecHit> {
    let rows: Vec<&'static Row> = ROWS
        .iter()
        .filter(|r| r.program == prog.name && (ctx.terminal || !r.terminal_only))
        .collect();
    if rows.is_empty() {
        return None;
    }
    let mut st = State {
        prog,
        rows,
        positionals: Vec::new(),
        seen: Vec::new(),
        values: Vec::new(),
        pending: 0,
    };
    let mut start = 0;
    if let Some(first) = args.first()
        && prog.style == Style::OldStyleFirst
        && !first.is_empty()
        && !first.starts_with('-')
    {
        if let Some(hit) = st.old_style(first) {
            return Some(hit);
        }
        start = 1;
    }
    for (i, word) in args.iter().enumerate().skip(start) {
        let is_value = st.pending > 0;
        st.pending = st.pending.saturating_sub(1);
        if let Some(hit) = st.word(word, args.get(i + 1), is_value) {
            return Some(hit);
        }
    }
    st.finish(args)
}

fn hit(row: &'static Row, word: &str) -> Option<ExecHit> {
    Some(ExecHit {
        row,
        word: word.to_owned(),
    })
}

impl<'a> State<'a> {
    fn in_scope(&self, row: &Row) -> bool {
        match row.scope {
            Scope::Any => true,
            Scope::Global => self.positionals.is_empty(),
            Scope::Sub(chain) => {
                self.positionals.len() >= chain.len()
                    && self.positionals.iter().zip(chain).all(|(a, b)| a == b)
            }
        }
    }

    /// The first in-scope row for which `fires` holds.
    fn find(&self, fires: impl Fn(&Trigger) -> bool) -> Option<&'static Row> {
        self.rows
            .iter()
            .copied()
            .find(|r| self.in_scope(r) && fires(&r.trigger))
    }

    /// Whether the long option written `name` may be read as `target`:
    /// equal, or an abbreviation that is not itself a real option.
    fn resolves(&self, name: &str, target: &str) -> bool {
        name == target
            || (name.len() >= 3
                && target.starts_with(name)
                && !self.prog.exact_long.contains(&name)
                && !self.prog.value_long.contains(&name))
    }

    /// `tar xIf archive prog`: every letter is an option, values come from
    /// the following words.
    fn old_style(&mut self, first: &'a str) -> Option<ExecHit> {
        for c in first.chars() {
            if let Some(row) =
                self.find(|t| matches!(*t, Trigger::Short(x) | Trigger::ShortValue(x, _) if x == c))
            {
                return hit(row, first);
            }
            if self.prog.value_short.contains(c) {
                self.pending += 1;
            }
        }
        None
    }

    fn word(&mut self, a: &'a str, next: Option<&'a String>, is_value: bool) -> Option<ExecHit> {
        if self.prog.style == Style::Words {
            return self.whole_word(a, is_value);
        }
        if a.len() > 1 && a.starts_with('-') {
            // A value that looks like an option is checked as one too, but
            // does not count as given (`journalctl -g --no-pager`).
            let seen = self.seen.len();
            let found = if a.len() > 2 && a.starts_with("--") {
                self.long(a, next)
            } else {
                self.cluster(a, next)
            };
            if is_value {
                self.seen.truncate(seen);
            }
            return found;
        }
        if is_value {
            return None;
        }
        if let Some(row) = self.find(|t| matches!(*t, Trigger::Starts(s) if a.starts_with(s))) {
            return hit(row, a);
        }
        self.positional(a)
    }

    fn whole_word(&mut self, a: &'a str, is_value: bool) -> Option<ExecHit> {
        let fires = |t: &Trigger| match *t {
            Trigger::Word(w, min) => a == w || (min > 0 && a.len() >= min && w.starts_with(a)),
            Trigger::Starts(s) => a.starts_with(s),
            _ => false,
        };
        if let Some(row) = self.find(fires) {
            return hit(row, a);
        }
        if is_value || a.starts_with('-') {
            return None;
        }
        self.positional(a)
    }

    fn long(&mut self, a: &'a str, next: Option<&'a String>) -> Option<ExecHit> {
        let (name, attached) = match a.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (a, None),
        };
        self.seen.push(name.to_owned());
        let takes_value = self.prog.value_long.contains(&name)
            || self
                .rows
                .iter()
                .any(|r| matches!(r.trigger, Trigger::LongValue(n, _) if self.resolves(name, n)));
        let value = match attached {
            Some(v) => Some(v),
            None if takes_value => {
                self.pending += 1;
                next.map(String::as_str)
            }
            None => None,
        };
        if let Some(v) = value {
            self.values.push((name.to_owned(), v));
        }
        let fires = |t: &Trigger| match *t {
            Trigger::Long(n) => self.resolves(name, n),
            Trigger::LongValue(n, p) => {
                self.resolves(name, n) && value.is_some_and(|v| pattern_matches(p, v))
            }
            _ => false,
        };
        self.find(fires).and_then(|row| hit(row, a))
    }

    fn cluster(&mut self, a: &'a str, next: Option<&'a String>) -> Option<ExecHit> {
        let body = &a[1..];
        for (i, c) in body.char_indices() {
            self.seen.push(format!("-{c}"));
            if let Some(row) = self.find(|t| matches!(*t, Trigger::Short(x) if x == c)) {
                return hit(row, a);
            }
            let valued = self
                .rows
                .iter()
                .any(|r| matches!(r.trigger, Trigger::ShortValue(x, _) if x == c));
            let rest = &body[i + c.len_utf8()..];
            if self.prog.optional_short.contains(c) {
                // `sed -i.bak`, `git grep -Oless`: only an attached value.
                if !rest.is_empty() {
                    self.values.push((format!("-{c}"), rest));
                }
                break;
            }
            let global = self.positionals.is_empty() && self.prog.global_value_short.contains(c);
            if !valued && !global && !self.prog.value_short.contains(c) {
                continue;
            }
            let value = if rest.is_empty() {
                self.pending += 1;
                next.map(String::as_str)
            } else {
                Some(rest)
            };
            if let Some(v) = value {
                self.values.push((format!("-{c}"), v));
                let fires = |t: &Trigger| matches!(*t, Trigger::ShortValue(x, p) if x == c && pattern_matches(p, v));
                if let Some(row) = self.find(fires) {
                    return hit(row, a);
                }
            }
            break;
        }
        None
    }

    fn positional(&mut self, a: &'a str) -> Option<ExecHit> {
        let fires = |t: &Trigger| matches!(*t, Trigger::Positional(p) if pattern_matches(p, a));
        if let Some(row) = self.find(fires) {
            return hit(row, a);
        }
        self.positionals.push(a);
        let done = |r: &&'static Row| {
            matches!(r.scope, Scope::Sub(chain) if chain.len() == self.positionals.len())
                && r.trigger == Trigger::Subcommand
                && self.in_scope(r)
        };
        self.rows
            .iter()
            .copied()
            .find(done)
            .and_then(|row| hit(row, a))
    }

    /// Rows that judge the whole invocation.
    fn finish(&self, args: &[String]) -> Option<ExecHit> {
        let whole = args.join(" ");
        for row in self.rows.iter().copied().filter(|r| self.in_scope(r)) {
            let fired = match row.trigger {
                Trigger::Program => true,
                Trigger::Unless(opts) => !self.seen.iter().any(|s| opts.contains(&s.as_str())),
                Trigger::SedScript => self.scripts(&["-e", "--expression"]).any(sed::runs_command),
                Trigger::AwkProgram(p) => self
                    .scripts(&["-e", "--source"])
                    .any(|s| pattern_matches(p, s)),
                _ => false,
            };
            if fired {
                return hit(row, &whole);
            }
        }
        None
    }

    /// The scripts given by `options` (also abbreviated), else the first
    /// positional.
    fn scripts(&self, options: &'static [&'static str]) -> impl Iterator<Item = &'a str> + '_ {
        let given: Vec<&'a str> = self
            .values
            .iter()
            .filter(|(n, _)| options.iter().any(|o| self.resolves(n, o)))
            .map(|(_, v)| *v)
            .collect();
        let fallback = if given.is_empty() {
            self.positionals.first().copied()
        } else {
            None
        };
        given.into_iter().chain(fallback)
    }
}
