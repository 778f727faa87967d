//! The second opinion: brush-parser's AST, walked with an allowlist.
//!
//! brush-parser runs in sh mode (POSIX, no extglob) on input the gate already
//! accepted. Every node kind other than simple commands joined by `;`, `&&`,
//! `||` and `|`, with plain words and fd duplications, is refused here too,
//! so a gap in the gate alone does not let a construct through.

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::LazyLock;

use brush_parser::ast::{
    self, Command, CommandPrefixOrSuffixItem, CompoundCommand, IoFileRedirectKind,
    IoFileRedirectTarget, IoRedirect, SeparatorOperator,
};
use brush_parser::word::WordPiece;
use brush_parser::{Parser, ParserImpl, ParserOptions};

use super::{Construct, ParseRejection};

static OPTIONS: LazyLock<ParserOptions> = LazyLock::new(|| ParserOptions {
    enable_extended_globbing: false,
    posix_mode: true,
    sh_mode: true,
    tilde_expansion_at_word_start: true,
    tilde_expansion_after_colon: false,
    parser_impl: ParserImpl::Peg,
});

fn reject(construct: Construct, detail: impl Into<String>) -> ParseRejection {
    ParseRejection::new(construct, detail)
}

/// Parses `input` with brush-parser and returns each simple command's argv.
pub(crate) fn parse(input: &str) -> Result<Vec<Vec<String>>, ParseRejection> {
    // brush-parser is a third-party parser fed with hostile text; a panic in it
    // must become a refusal, not take the signer down.
    let parsed = catch_unwind(AssertUnwindSafe(|| {
        Parser::new(Cursor::new(input.as_bytes()), &OPTIONS).parse_program()
    }));
    let program = match parsed {
        Ok(Ok(program)) => program,
        Ok(Err(e)) => return Err(reject(Construct::Unparseable, e.to_string())),
        Err(_) => return Err(reject(Construct::Unparseable, "brush-parser panicked")),
    };
    let mut commands = Vec::new();
    for list in &program.complete_commands {
        for ast::CompoundListItem(and_or, separator) in &list.0 {
            if matches!(separator, SeparatorOperator::Async) {
                return Err(reject(Construct::Background, "asynchronous list"));
            }
            pipeline(&and_or.first, &mut commands)?;
            for next in &and_or.additional {
                let (ast::AndOr::And(p) | ast::AndOr::Or(p)) = next;
                pipeline(p, &mut commands)?;
            }
        }
    }
    Ok(commands)
}

fn pipeline(p: &ast::Pipeline, out: &mut Vec<Vec<String>>) -> Result<(), ParseRejection> {
    if p.timed.is_some() {
        return Err(reject(Construct::CompoundCommand, "timed pipeline"));
    }
    if p.bang {
        return Err(reject(Construct::Bang, "negated pipeline"));
    }
    for command in &p.seq {
        match command {
            Command::Simple(simple) => out.push(simple_command(simple)?),
            Command::Compound(CompoundCommand::Subshell(_), _) => {
                return Err(reject(Construct::Subshell, "subshell"));
            }
            Command::Compound(CompoundCommand::BraceGroup(_), _) => {
                return Err(reject(Construct::BraceGroup, "brace group"));
            }
            Command::Compound(..) | Command::ExtendedTest(..) => {
                return Err(reject(Construct::CompoundCommand, "compound command"));
            }
            Command::Function(_) => {
                return Err(reject(Construct::FunctionDefinition, "function definition"));
            }
        }
    }
    Ok(())
}

fn simple_command(simple: &ast::SimpleCommand) -> Result<Vec<String>, ParseRejection> {
    let mut argv = Vec::new();
    let prefix = simple.prefix.iter().flat_map(|p| p.0.iter());
    for item in prefix {
        if let CommandPrefixOrSuffixItem::AssignmentWord(..) = item {
            return Err(reject(
                Construct::Assignment,
                "assignment before the command",
            ));
        }
        item_words(item, &mut argv)?;
    }
    if let Some(name) = &simple.word_or_name {
        argv.push(decode(name)?);
    }
    for item in simple.suffix.iter().flat_map(|s| s.0.iter()) {
        item_words(item, &mut argv)?;
    }
    if argv.is_empty() {
        return Err(reject(Construct::Syntax, "command without words"));
    }
    Ok(argv)
}

fn item_words(
    item: &CommandPrefixOrSuffixItem,
    argv: &mut Vec<String>,
) -> Result<(), ParseRejection> {
    match item {
        CommandPrefixOrSuffixItem::Word(word) => argv.push(decode(word)?),
        // brush marks `if=/dev/zero` after a command as an assignment word; for
        // anything but a declaration builtin it is a plain argument.
        CommandPrefixOrSuffixItem::AssignmentWord(_, word) => argv.push(decode(word)?),
        CommandPrefixOrSuffixItem::IoRedirect(redirect) => check_redirect(redirect)?,
        CommandPrefixOrSuffixItem::ProcessSubstitution(..) => {
            return Err(reject(
                Construct::ProcessSubstitution,
                "process substitution",
            ));
        }
    }
    Ok(())
}

fn check_redirect(redirect: &IoRedirect) -> Result<(), ParseRejection> {
    match redirect {
        IoRedirect::File(fd, kind, target) => {
            if fd.is_some_and(|n| !(0..=9).contains(&n)) {
                return Err(reject(Construct::RedirectFd, "fd above 9"));
            }
            let dup = matches!(
                kind,
                IoFileRedirectKind::DuplicateInput | IoFileRedirectKind::DuplicateOutput
            );
            let target_ok = match target {
                IoFileRedirectTarget::Fd(n) => (0..=9).contains(n),
                IoFileRedirectTarget::Duplicate(word) => {
                    let t = decode(word)?;
                    t == "-" || (t.len() == 1 && t.bytes().all(|b| b.is_ascii_digit()))
                }
                IoFileRedirectTarget::ProcessSubstitution(..) => {
                    return Err(reject(
                        Construct::ProcessSubstitution,
                        "redirect from a process",
                    ));
                }
                IoFileRedirectTarget::Filename(_) => false,
            };
            if dup && target_ok {
                Ok(())
            } else {
                Err(reject(
                    Construct::FileRedirect,
                    "redirect to or from a file",
                ))
            }
        }
        IoRedirect::HereDocument(..) | IoRedirect::HereString(..) => {
            Err(reject(Construct::HereDocument, "here-document"))
        }
        IoRedirect::OutputAndError(..) => Err(reject(Construct::FileRedirect, "`&>` redirect")),
    }
}

/// Decodes one word with brush's word parser; only literal pieces pass.
fn decode(word: &ast::Word) -> Result<String, ParseRejection> {
    let pieces = brush_parser::word::parse(&word.value, &OPTIONS)
        .map_err(|e| reject(Construct::Unparseable, e.to_string()))?;
    let mut out = String::new();
    for piece in pieces {
        literal(&piece.piece, false, &mut out)?;
    }
    Ok(out)
}

fn literal(piece: &WordPiece, in_double: bool, out: &mut String) -> Result<(), ParseRejection> {
    match piece {
        WordPiece::Text(text) => {
            if !in_double && text.contains(['*', '?', '[', ']', '{', '}', '~']) {
                return Err(reject(Construct::Glob, "pattern characters in a word"));
            }
            out.push_str(text);
        }
        WordPiece::SingleQuotedText(text) if !in_double => out.push_str(text),
        WordPiece::DoubleQuotedSequence(inner) if !in_double => {
            for p in inner {
                literal(&p.piece, true, out)?;
            }
        }
        WordPiece::SingleQuotedText(_) | WordPiece::DoubleQuotedSequence(_) => {
            return Err(reject(Construct::ParserDisagreement, "nested quoting"));
        }
        WordPiece::AnsiCQuotedText(_) | WordPiece::GettextDoubleQuotedSequence(_) => {
            return Err(reject(Construct::DollarQuote, "dollar quote"));
        }
        WordPiece::TildeExpansion(_) => return Err(reject(Construct::Tilde, "tilde")),
        WordPiece::ParameterExpansion(_) => {
            return Err(reject(Construct::ParameterExpansion, "parameter expansion"));
        }
        WordPiece::CommandSubstitution(_) | WordPiece::BackquotedCommandSubstitution(_) => {
            return Err(reject(
                Construct::CommandSubstitution,
                "command substitution",
            ));
        }
        WordPiece::EscapeSequence(_) => return Err(reject(Construct::Backslash, "escape")),
        WordPiece::ArithmeticExpression(_) => {
            return Err(reject(
                Construct::ArithmeticExpansion,
                "arithmetic expansion",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_like_the_gate() {
        let got = parse("l''s \"-l\"a 'x y' | grep -v x && dd if=/dev/zero 2>&1").unwrap();
        assert_eq!(
            got,
            vec![
                vec!["ls", "-la", "x y"],
                vec!["grep", "-v", "x"],
                vec!["dd", "if=/dev/zero"]
            ]
        );
    }

    #[test]
    fn refuses_what_it_sees_directly() {
        // The gate stops these first; the walk must refuse them on its own too.
        let cases = [
            ("echo $(id)", Construct::CommandSubstitution),
            ("echo `id`", Construct::CommandSubstitution),
            ("echo $((1+2))", Construct::ArithmeticExpansion),
            ("echo ${HOME}", Construct::ParameterExpansion),
            ("ls ~", Construct::Tilde),
            ("ls > /etc/passwd", Construct::FileRedirect),
            ("cat < /etc/shadow", Construct::FileRedirect),
            ("ls >&file", Construct::FileRedirect),
            ("cat <<EOF\nx\nEOF\n", Construct::HereDocument),
            ("(id)", Construct::Subshell),
            ("{ id; }", Construct::BraceGroup),
            ("f(){ id; }", Construct::FunctionDefinition),
            ("if true; then id; fi", Construct::CompoundCommand),
            ("id &", Construct::Background),
            ("X=1 ls", Construct::Assignment),
            ("! ls", Construct::Bang),
            ("ls *", Construct::Glob),
            ("ls \\x", Construct::Backslash),
        ];
        for (input, want) in cases {
            let got = parse(input).map_err(|e| e.construct);
            assert_eq!(got, Err(want), "{input}");
        }
    }
}
