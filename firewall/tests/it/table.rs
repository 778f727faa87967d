//! The decision table: every row is a command, the policy fixture it runs
//! against, the expected reason code, the expected `matched_rule`, and the
//! rule or bypass class it guards.
//!
//! `rule` column: exact `matched_rule`; a trailing `*` means "starts with";
//! `-` means no matched rule; empty means not checked.

use infrabroker_firewall::ReasonCode;
use infrabroker_firewall::ReasonCode::{
    Allowed as Ok_, AllowlistNoMatch as NoMatch, CommandDenied as Denied,
    CommandInvalid as Invalid, ExecOption as Exec, NeedsApproval as Approval,
    ParseRejected as Rejected,
};

use crate::fixtures::fixture;

type Row = (
    &'static str,
    &'static str,
    ReasonCode,
    &'static str,
    &'static str,
);

const DENY_RM: &str = r"deny:^(\S*/)?rm( |$)";

#[rustfmt::skip]
const ROWS: &[Row] = &[
    // --- allowlist basics and list splitting -------------------------------------------
    ("ps aux", "allow_ps", Ok_, "allow:^ps", "allowlist: matching command passes"),
    ("ps aux && kill -9 1", "allow_ps", NoMatch, "allowlist:no-match", "and-list: each simple command judged alone"),
    ("ps;rm -rf /", "allow_ps", NoMatch, "allowlist:no-match", "sequence without blanks"),
    ("ps || rm -rf /", "allow_ps", NoMatch, "allowlist:no-match", "or-list"),
    ("ps | rm -rf /", "allow_ps", NoMatch, "allowlist:no-match", "pipeline"),
    ("ps aux | grep x", "allow_ps", NoMatch, "allowlist:no-match", "pipeline: every stage must be allowed"),
    ("ps $(echo aux)", "allow_ps", Rejected, "shell-parse:command_substitution", "substitution inside an allowed command"),
    ("p''s aux", "allow_ps", Ok_, "allow:^ps", "decoded words: empty quotes vanish"),
    ("\"p\"s aux", "allow_ps", Ok_, "allow:^ps", "decoded words: double quotes removed"),
    ("'ps' aux", "allow_ps", Ok_, "allow:^ps", "decoded words: single quotes removed"),
    ("l''s", "allow_ps", NoMatch, "allowlist:no-match", "decoded words: l''s is ls, not ps"),
    ("ps;", "allow_ps", Ok_, "allow:^ps", "trailing semicolon is fine"),
    ("ps aux 2>&1", "allow_ps", Ok_, "allow:^ps", "fd duplication is not a file redirect"),
    // --- deny rules on decoded words ----------------------------------------------------
    ("ps;rm -rf /", "deny_rm", Denied, DENY_RM, "deny: second command of a list"),
    ("rm -rf /", "deny_rm", Denied, DENY_RM, "deny: plain"),
    ("rm", "deny_rm", Denied, DENY_RM, "deny: bare program"),
    ("r''m -rf /", "deny_rm", Denied, DENY_RM, "quote splicing r''m"),
    ("\"r\"m -rf /", "deny_rm", Denied, DENY_RM, "quote splicing \"r\"m"),
    ("'rm' -rf /", "deny_rm", Denied, DENY_RM, "quoted program name"),
    ("r\"\"m x", "deny_rm", Denied, DENY_RM, "empty double quotes"),
    ("'r'\"m\" x", "deny_rm", Denied, DENY_RM, "mixed quoting"),
    ("/bin/rm -rf /", "deny_rm", Denied, DENY_RM, "path-qualified program"),
    ("ls && /bin/rm -rf /", "deny_rm", Denied, DENY_RM, "path-qualified after &&"),
    ("ls | rm x", "deny_rm", Denied, DENY_RM, "deny inside a pipeline"),
    ("true || rm x", "deny_rm", Denied, DENY_RM, "deny after ||"),
    ("ls\trm x", "deny_rm", Ok_, "-", "tab separates words: argv is ls rm x"),
    ("ls;\trm x", "deny_rm", Denied, DENY_RM, "tab after separator"),
    ("shutdown -h now", "deny_rm", Denied, "deny:^shutdown", "second deny rule"),
    ("sh''utdown -h now", "deny_rm", Denied, "deny:^shutdown", "quote splicing inside name"),
    ("echo rm", "deny_rm", Ok_, "-", "rm as an argument is not the program"),
    ("rm\\ -rf /", "deny_rm", Rejected, "shell-parse:backslash", "escaped blank joins words"),
    ("\\rm -rf /", "deny_rm", Rejected, "shell-parse:backslash", "backslash alias bypass"),
    ("rm —rf /", "deny_rm", Rejected, "shell-parse:non_ascii", "em dash look-alike"),
    // --- the realistic composition -----------------------------------------------------
    ("ls -la /tmp", "ops", Ok_, "allow:^ls( |$)", "group allowlist"),
    ("l''s", "ops", Ok_, "allow:^ls( |$)", "l''s judged as ls"),
    ("\"l\"s", "ops", Ok_, "allow:^ls( |$)", "\"l\"s judged as ls"),
    ("cat /var/log/syslog", "ops", Ok_, "allow:^cat /var/log/[a-z.]+$", "anchored allow"),
    ("cat /var/log/syslog /etc/shadow", "ops", Denied, "deny:/etc/shadow", "default-group deny inside args"),
    ("cat /etc/shadow", "ops", Denied, "deny:/etc/shadow", "_default deny applies with group allowlist"),
    ("cat /etc/sha''dow", "ops", Denied, "deny:/etc/shadow", "quote splicing in an argument"),
    ("cat '/etc/shadow'", "ops", Denied, "deny:/etc/shadow", "quoted plain word renders bare"),
    ("grep root /etc/shadow", "ops", Denied, "deny:/etc/shadow", "deny beats group allow"),
    ("kill -9 1", "ops", Denied, "deny:^kill -9 1$", "host deny beats group allow"),
    ("kill -9 '1'", "ops", Denied, "deny:^kill -9 1$", "quoted argument"),
    ("kill -9 1 2>&1", "ops", Denied, "deny:^kill -9 1$", "redirects are not part of the judged text"),
    ("kill 1234", "ops", Ok_, "allow:^kill ", "allowed kill"),
    ("systemctl restart nginx", "ops", Approval, "require_approval:^systemctl restart ", "host allow + approval"),
    ("systemctl stop nginx", "ops", NoMatch, "allowlist:no-match", "union of allowlists still bounded"),
    ("rm -rf /", "ops", Denied, "deny:^rm -rf /$", "_default deny"),
    ("rm -rf '/'", "ops", Denied, "deny:^rm -rf /$", "quoted root"),
    ("rm -rf /tmp", "ops", NoMatch, "allowlist:no-match", "not denied, not allowed"),
    ("uptime", "ops", Ok_, "allow:^uptime$", "exact allow"),
    ("uptime; df -h", "ops", Ok_, "allow:^uptime$", "list of allowed commands"),
    ("ps aux | grep nginx", "ops", Ok_, "allow:^ps( |$)", "allowed pipeline"),
    ("ps aux | grep nginx | sh", "ops", Rejected, "shell-parse:wrapper:sh", "pipeline into a shell"),
    ("echo hello > /tmp/x", "ops", Rejected, "shell-parse:file_redirect", "allowed program writing a file"),
    ("ls 'a b'", "ops", Ok_, "allow:^ls( |$)", "argument with a blank stays quoted"),
    ("'ls -la'", "ops", NoMatch, "allowlist:no-match", "one word with a blank cannot pose as two"),
    ("ls ''", "ops", Ok_, "allow:^ls( |$)", "empty argument"),
    ("df -h && rm -rf /", "ops", Denied, "deny:^rm -rf /$", "deny wins across a list"),
    ("systemctl restart nginx; rm -rf /tmp", "ops", NoMatch, "allowlist:no-match", "allowlist before approval"),
    ("kill -9 1; systemctl restart nginx", "ops", Denied, "deny:^kill -9 1$", "deny before approval"),
    // --- deny and allow / approval interplay -------------------------------------------
    ("rm -rf /tmp/x", "both", Denied, "deny:^rm -rf", "deny+allow both match: deny wins"),
    ("rm /tmp/x", "both", Ok_, "allow:^rm ", "allow alone"),
    ("systemctl restart nginx", "approve", Approval, "require_approval:^systemctl restart ", "allow+approval both match: approval"),
    ("systemctl status nginx", "approve", Ok_, "allow:^systemctl (status|restart) [a-z]+$", "allow only"),
    ("systemctl status nginx && systemctl restart nginx", "approve", Approval, "require_approval:^systemctl restart ", "approval on any command of a list"),
    ("systemctl restart nginx; reboot", "approve", NoMatch, "allowlist:no-match", "approval never widens the allowlist"),
    // --- audit mode ---------------------------------------------------------------------
    ("rm -rf /", "audit", Ok_, "deny:^rm ", "audit: would-deny becomes a warning"),
    ("reboot", "audit", Ok_, "require_approval:^reboot$", "audit: would-approve becomes a warning"),
    ("$(id)", "audit", Ok_, "shell-parse:command_substitution", "audit: parse rejection becomes a warning"),
    ("ls", "audit", Ok_, "-", "audit: clean command"),
    ("ls\nid", "audit", Invalid, "invalid:line_break", "audit never softens invalid commands"),
    ("rm x", "audit_mixed", Denied, "deny:^rm ", "enforce beats audit"),
    // --- no policy ----------------------------------------------------------------------
    ("rm -rf /", "none", Ok_, "-", "no policy: firewall off"),
    ("$(id)", "none", Ok_, "-", "no policy: no parsing"),
    ("ls\u{202E}x", "none", Ok_, "-", "no policy: only NUL/CR/LF refused"),
    ("ls\nid", "none", Invalid, "invalid:line_break", "no policy: LF still refused"),
    ("ls\rid", "none", Invalid, "invalid:line_break", "no policy: CR still refused"),
    ("ls\0id", "none", Invalid, "invalid:nul", "no policy: NUL still refused"),
    ("", "none", Invalid, "invalid:empty", "no policy: empty refused"),
    // --- shell_parse off ----------------------------------------------------------------
    ("ps aux", "raw", Ok_, "allow:^ps", "raw: whole string judged"),
    ("ps; rm -rf /", "raw", Ok_, "allow:^ps", "raw: documented gap, why shell_parse defaults on"),
    ("ps $(id)", "raw", Ok_, "allow:^ps", "raw: no parsing at all"),
    ("rm -rf /", "raw", NoMatch, "allowlist:no-match", "raw: allowlist still applies"),
    ("ps\nrm", "raw", Invalid, "invalid:line_break", "raw: LF refused"),
    ("ps\u{202E}", "raw", Invalid, "invalid:invisible_char", "raw: bidi override refused"),
    // --- substitutions and expansions ---------------------------------------------------
    ("$(id)", "hygiene", Rejected, "shell-parse:command_substitution", "command substitution $( )"),
    ("`id`", "hygiene", Rejected, "shell-parse:command_substitution", "backtick substitution"),
    ("echo $(id)", "hygiene", Rejected, "shell-parse:command_substitution", "substitution in argument"),
    ("echo \"$(id)\"", "hygiene", Rejected, "shell-parse:command_substitution", "substitution in double quotes"),
    ("echo \"`id`\"", "hygiene", Rejected, "shell-parse:command_substitution", "backticks in double quotes"),
    ("echo `id`", "hygiene", Rejected, "shell-parse:command_substitution", "backticks in argument"),
    ("<(id)", "hygiene", Rejected, "shell-parse:process_substitution", "process substitution <( )"),
    (">(id)", "hygiene", Rejected, "shell-parse:process_substitution", "process substitution >( )"),
    ("cat <(ls)", "hygiene", Rejected, "shell-parse:process_substitution", "process substitution as argument"),
    ("tee >(id)", "hygiene", Rejected, "shell-parse:process_substitution", "output process substitution"),
    ("$((1+2))", "hygiene", Rejected, "shell-parse:arithmetic_expansion", "arithmetic expansion"),
    ("echo $((1+2))", "hygiene", Rejected, "shell-parse:arithmetic_expansion", "arithmetic in argument"),
    ("echo \"$((1))\"", "hygiene", Rejected, "shell-parse:arithmetic_expansion", "arithmetic in double quotes"),
    ("ls ${HOME}", "hygiene", Rejected, "shell-parse:parameter_expansion", "braced parameter"),
    ("ls $HOME", "hygiene", Rejected, "shell-parse:parameter_expansion", "variable"),
    ("echo $1", "hygiene", Rejected, "shell-parse:parameter_expansion", "positional parameter"),
    ("echo $@", "hygiene", Rejected, "shell-parse:parameter_expansion", "special parameter $@"),
    ("echo $?", "hygiene", Rejected, "shell-parse:parameter_expansion", "special parameter $?"),
    ("echo $$", "hygiene", Rejected, "shell-parse:parameter_expansion", "special parameter $$"),
    ("echo \"$HOME\"", "hygiene", Rejected, "shell-parse:parameter_expansion", "variable in double quotes"),
    ("echo \"${x}\"", "hygiene", Rejected, "shell-parse:parameter_expansion", "braced variable in double quotes"),
    ("echo $", "hygiene", Rejected, "shell-parse:parameter_expansion", "lone dollar"),
    ("echo $'\\x41'", "hygiene", Rejected, "shell-parse:dollar_quote", "ANSI-C quoting"),
    ("echo $\"x\"", "hygiene", Rejected, "shell-parse:dollar_quote", "locale quoting"),
    ("echo '$(id)'", "hygiene", Ok_, "-", "single quotes make it literal"),
    // --- globs, braces, tilde, backslash ------------------------------------------------
    ("ls *", "hygiene", Rejected, "shell-parse:glob", "glob *"),
    ("ls ?", "hygiene", Rejected, "shell-parse:glob", "glob ?"),
    ("ls [ab]", "hygiene", Rejected, "shell-parse:glob", "bracket glob"),
    ("ls a*b", "hygiene", Rejected, "shell-parse:glob", "glob inside word"),
    ("ls /etc/*.conf", "hygiene", Rejected, "shell-parse:glob", "path glob"),
    ("[ -f x ]", "hygiene", Rejected, "shell-parse:glob", "test bracket (use test)"),
    ("ls '*'", "hygiene", Ok_, "-", "quoted star is literal"),
    ("ls {a,b}", "hygiene", Rejected, "shell-parse:brace_expansion", "brace expansion"),
    ("echo {1..3}", "hygiene", Rejected, "shell-parse:brace_expansion", "sequence expansion"),
    ("ls a{b}", "hygiene", Rejected, "shell-parse:brace_expansion", "brace inside word"),
    ("{id;}", "hygiene", Rejected, "shell-parse:brace_expansion", "brace word, not a group"),
    ("ls ~", "hygiene", Rejected, "shell-parse:tilde", "tilde"),
    ("ls ~root", "hygiene", Rejected, "shell-parse:tilde", "user tilde"),
    ("cat ~/.ssh/id_rsa", "hygiene", Rejected, "shell-parse:tilde", "tilde path"),
    ("l\\s", "hygiene", Rejected, "shell-parse:backslash", "unquoted backslash"),
    ("ls \\;", "hygiene", Rejected, "shell-parse:backslash", "escaped operator"),
    ("echo \"a\\b\"", "hygiene", Rejected, "shell-parse:backslash", "backslash in double quotes"),
    ("find / -exec sh \\;", "hygiene", Rejected, "shell-parse:backslash", "find -exec with escaped terminator"),
    ("echo 'a\\b'", "hygiene", Ok_, "-", "backslash in single quotes is literal"),
    // --- redirects ----------------------------------------------------------------------
    ("ls > /etc/passwd", "hygiene", Rejected, "shell-parse:file_redirect", "write redirect"),
    ("ls >/etc/passwd", "hygiene", Rejected, "shell-parse:file_redirect", "write redirect without blank"),
    ("ls >> /etc/passwd", "hygiene", Rejected, "shell-parse:file_redirect", "append redirect"),
    ("cat < /etc/shadow", "hygiene", Rejected, "shell-parse:file_redirect", "read redirect"),
    ("cat </etc/shadow", "hygiene", Rejected, "shell-parse:file_redirect", "read redirect without blank"),
    ("ls >| f", "hygiene", Rejected, "shell-parse:file_redirect", "clobber redirect"),
    ("cat <> f", "hygiene", Rejected, "shell-parse:file_redirect", "read-write redirect"),
    ("ls 2>/dev/null", "hygiene", Rejected, "shell-parse:file_redirect", "even /dev/null is a file"),
    ("ls >&f", "hygiene", Rejected, "shell-parse:file_redirect", "bash >&file"),
    ("ls >& f", "hygiene", Rejected, "shell-parse:file_redirect", "bash >& file"),
    ("ls 1>&f", "hygiene", Rejected, "shell-parse:file_redirect", "dup to a name"),
    ("ls >&1>&2", "hygiene", Rejected, "shell-parse:file_redirect", "ambiguous fd word"),
    ("ls &> f", "hygiene", Rejected, "shell-parse:background", "&> is background in dash"),
    ("echo 10>&1", "hygiene", Rejected, "shell-parse:redirect_fd", "dash/bash disagree on multi-digit fd"),
    ("ls 2>&1", "hygiene", Ok_, "-", "fd dup allowed"),
    ("ls 2>&1 | grep x", "hygiene", Ok_, "-", "fd dup in pipeline"),
    ("ls >&2", "hygiene", Ok_, "-", "stdout to stderr"),
    ("ls 2>&-", "hygiene", Ok_, "-", "close fd"),
    ("ls 2>& 1", "hygiene", Ok_, "-", "dup target after blank"),
    ("cat <<EOF", "hygiene", Rejected, "shell-parse:here_document", "here-document"),
    ("cat <<-EOF", "hygiene", Rejected, "shell-parse:here_document", "here-document with tabs"),
    ("cat <<< hi", "hygiene", Rejected, "shell-parse:here_document", "here-string"),
    // --- compound commands, background, functions ---------------------------------------
    ("(id)", "hygiene", Rejected, "shell-parse:subshell", "subshell"),
    ("( id )", "hygiene", Rejected, "shell-parse:subshell", "subshell with blanks"),
    ("{ id; }", "hygiene", Rejected, "shell-parse:brace_group", "brace group"),
    ("}", "hygiene", Rejected, "shell-parse:brace_group", "stray closing brace"),
    ("f(){ id; }; f", "hygiene", Rejected, "shell-parse:function_definition", "function definition"),
    ("f () { id; }", "hygiene", Rejected, "shell-parse:function_definition", "function definition with blank"),
    ("function f { id; }", "hygiene", Rejected, "shell-parse:function_definition", "bash function keyword"),
    ("if true; then id; fi", "hygiene", Rejected, "shell-parse:compound_command", "if"),
    ("for i in a; do id; done", "hygiene", Rejected, "shell-parse:compound_command", "for"),
    ("while true; do id; done", "hygiene", Rejected, "shell-parse:compound_command", "while"),
    ("until false; do id; done", "hygiene", Rejected, "shell-parse:compound_command", "until"),
    ("case x in x) id;; esac", "hygiene", Rejected, "shell-parse:compound_command", "case"),
    ("select x in a; do id; done", "hygiene", Rejected, "shell-parse:compound_command", "select"),
    ("coproc id", "hygiene", Rejected, "shell-parse:compound_command", "coproc"),
    ("time id", "hygiene", Rejected, "shell-parse:compound_command", "time keyword"),
    ("! id", "hygiene", Rejected, "shell-parse:bang", "negation"),
    ("nohup id &", "hygiene", Rejected, "shell-parse:background", "background with nohup"),
    ("id &", "hygiene", Rejected, "shell-parse:background", "background"),
    ("id & ls", "hygiene", Rejected, "shell-parse:background", "background as separator"),
    ("X=1 ls", "hygiene", Rejected, "shell-parse:assignment", "assignment prefix"),
    ("PATH=/tmp ls", "hygiene", Rejected, "shell-parse:assignment", "PATH hijack"),
    ("LD_PRELOAD=/tmp/x.so ls", "hygiene", Rejected, "shell-parse:assignment", "LD_PRELOAD hijack"),
    ("'X'=1 ls", "hygiene", Rejected, "shell-parse:assignment", "quoted assignment-like word"),
    ("ls #; rm -rf /", "hygiene", Rejected, "shell-parse:comment", "comment hides text"),
    ("ls#x", "hygiene", Rejected, "shell-parse:comment", "hash inside word"),
    ("ls ^x", "hygiene", Rejected, "shell-parse:special_char", "caret (old Bourne pipe)"),
    ("ls |& cat", "hygiene", Rejected, "shell-parse:pipe_stderr", "bash |&"),
    // --- syntax -------------------------------------------------------------------------
    ("ls;;", "hygiene", Rejected, "shell-parse:syntax", "case terminator"),
    ("; ls", "hygiene", Rejected, "shell-parse:syntax", "leading separator"),
    ("ls &&", "hygiene", Rejected, "shell-parse:syntax", "dangling &&"),
    ("ls |", "hygiene", Rejected, "shell-parse:syntax", "dangling pipe"),
    ("| ls", "hygiene", Rejected, "shell-parse:syntax", "leading pipe"),
    ("ls && && id", "hygiene", Rejected, "shell-parse:syntax", "double operator"),
    (">&2", "hygiene", Rejected, "shell-parse:syntax", "redirect without command"),
    ("ls; >&2", "hygiene", Rejected, "shell-parse:syntax", "trailing redirect-only command"),
    ("ls 'x", "hygiene", Rejected, "shell-parse:unterminated_quote", "open single quote"),
    ("ls \"x", "hygiene", Rejected, "shell-parse:unterminated_quote", "open double quote"),
    // --- wrappers -----------------------------------------------------------------------
    ("ls | sh", "hygiene", Rejected, "shell-parse:wrapper:sh", "pipeline feeding a shell"),
    ("sh -c 'id'", "hygiene", Rejected, "shell-parse:wrapper:sh", "sh -c"),
    ("sh -c 'id'", "allow_any", Rejected, "shell-parse:wrapper:sh", "wrapper refused even if allowlisted"),
    ("\"sh\" -c id", "hygiene", Rejected, "shell-parse:wrapper:sh", "quoted shell name"),
    ("s''h -c id", "hygiene", Rejected, "shell-parse:wrapper:sh", "spliced shell name"),
    ("'/bin/sh' -c id", "hygiene", Rejected, "shell-parse:wrapper:sh", "quoted shell path"),
    ("/bin/sh -c id", "hygiene", Rejected, "shell-parse:wrapper:sh", "shell path"),
    ("./sh", "hygiene", Rejected, "shell-parse:wrapper:sh", "relative shell path"),
    ("bash -c id", "hygiene", Rejected, "shell-parse:wrapper:bash", "bash -c"),
    ("bash5.2 x", "hygiene", Rejected, "shell-parse:wrapper:bash", "versioned shell"),
    ("dash", "hygiene", Rejected, "shell-parse:wrapper:dash", "shell without -c"),
    ("zsh -c id", "hygiene", Rejected, "shell-parse:wrapper:zsh", "zsh"),
    ("ksh x", "hygiene", Rejected, "shell-parse:wrapper:ksh", "ksh script"),
    ("fish -c id", "hygiene", Rejected, "shell-parse:wrapper:fish", "fish"),
    ("busybox sh", "hygiene", Rejected, "shell-parse:wrapper:busybox", "busybox"),
    ("cat x | bash", "hygiene", Rejected, "shell-parse:wrapper:bash", "script on stdin"),
    ("/proc/self/exe -c id", "hygiene", Rejected, "shell-parse:wrapper:/proc", "/proc/self/exe is the shell"),
    ("env id", "hygiene", Rejected, "shell-parse:wrapper:env", "env"),
    ("/usr/bin/env id", "hygiene", Rejected, "shell-parse:wrapper:env", "env by path"),
    ("xargs rm", "hygiene", Rejected, "shell-parse:wrapper:xargs", "xargs"),
    ("ls | xargs rm", "hygiene", Rejected, "shell-parse:wrapper:xargs", "xargs in pipeline"),
    ("sudo id", "hygiene", Rejected, "shell-parse:wrapper:sudo", "sudo"),
    ("sudo -u root id", "hygiene", Rejected, "shell-parse:wrapper:sudo", "sudo with options"),
    ("su -c id", "hygiene", Rejected, "shell-parse:wrapper:su", "su"),
    ("doas id", "hygiene", Rejected, "shell-parse:wrapper:doas", "doas"),
    ("pkexec id", "hygiene", Rejected, "shell-parse:wrapper:pkexec", "pkexec"),
    ("eval id", "hygiene", Rejected, "shell-parse:wrapper:eval", "eval"),
    ("exec id", "hygiene", Rejected, "shell-parse:wrapper:exec", "exec"),
    ("command id", "hygiene", Rejected, "shell-parse:wrapper:command", "command builtin"),
    ("builtin echo x", "hygiene", Rejected, "shell-parse:wrapper:builtin", "builtin builtin"),
    ("source x", "hygiene", Rejected, "shell-parse:wrapper:source", "source"),
    (". x", "hygiene", Rejected, "shell-parse:wrapper:.", "dot"),
    ("nohup id", "hygiene", Rejected, "shell-parse:wrapper:nohup", "nohup"),
    ("timeout 5 id", "hygiene", Rejected, "shell-parse:wrapper:timeout", "timeout"),
    ("nice id", "hygiene", Rejected, "shell-parse:wrapper:nice", "nice"),
    ("ionice id", "hygiene", Rejected, "shell-parse:wrapper:ionice", "ionice"),
    ("setsid id", "hygiene", Rejected, "shell-parse:wrapper:setsid", "setsid"),
    ("stdbuf -o0 id", "hygiene", Rejected, "shell-parse:wrapper:stdbuf", "stdbuf"),
    ("chroot / id", "hygiene", Rejected, "shell-parse:wrapper:chroot", "chroot"),
    ("nsenter -t 1 id", "hygiene", Rejected, "shell-parse:wrapper:nsenter", "nsenter"),
    ("flock x id", "hygiene", Rejected, "shell-parse:wrapper:flock", "flock"),
    ("script -c id", "hygiene", Rejected, "shell-parse:wrapper:script", "script"),
    ("watch id", "hygiene", Rejected, "shell-parse:wrapper:watch", "watch"),
    ("/usr/bin/time id", "hygiene", Rejected, "shell-parse:wrapper:time", "time program"),
    ("strace id", "hygiene", Rejected, "shell-parse:wrapper:strace", "strace"),
    ("ssh host id", "hygiene", Rejected, "shell-parse:wrapper:ssh", "ssh onward"),
    ("trap 'id' EXIT", "hygiene", Rejected, "shell-parse:wrapper:trap", "trap runs a string"),
    ("alias ls=id", "hygiene", Rejected, "shell-parse:wrapper:alias", "alias"),
    ("export PATH=/tmp", "hygiene", Rejected, "shell-parse:wrapper:export", "PATH change for later commands"),
    ("hash -p /tmp/x ls", "hygiene", Rejected, "shell-parse:wrapper:hash", "bash hash -p"),
    ("python3 -c 'import os'", "hygiene", Rejected, "shell-parse:wrapper:python", "python -c"),
    ("python3.11 -c x", "hygiene", Rejected, "shell-parse:wrapper:python", "versioned python"),
    ("python x.py", "hygiene", Rejected, "shell-parse:wrapper:python", "interpreter with a script"),
    ("cat x | python3", "hygiene", Rejected, "shell-parse:wrapper:python", "interpreter on stdin"),
    ("perl -e x", "hygiene", Rejected, "shell-parse:wrapper:perl", "perl"),
    ("ruby -e x", "hygiene", Rejected, "shell-parse:wrapper:ruby", "ruby"),
    ("node -e x", "hygiene", Rejected, "shell-parse:wrapper:node", "node"),
    ("php -r x", "hygiene", Rejected, "shell-parse:wrapper:php", "php"),
    ("lua5.4 -e x", "hygiene", Rejected, "shell-parse:wrapper:lua", "versioned lua"),
    ("awk '{print}' f", "hygiene", Rejected, "shell-parse:wrapper:awk", "awk can system()"),
    ("ps aux | gawk x", "hygiene", Rejected, "shell-parse:wrapper:gawk", "gawk in pipeline"),
    ("vim -c x", "hygiene", Rejected, "shell-parse:wrapper:vim", "editor escape"),
    ("find / -exec sh ';'", "hygiene", Exec, "exec-option:find -exec", "find -exec"),
    ("find . -execdir id ';'", "hygiene", Exec, "exec-option:find -execdir", "find -execdir"),
    ("find . -ok id ';'", "hygiene", Exec, "exec-option:find -ok", "find -ok"),
    ("ip netns exec x id", "hygiene", Exec, "exec-option:ip <exec argument>", "ip netns exec"),
    ("tar --to-command=id -xf a", "hygiene", Exec, "exec-option:tar --to-command", "tar --to-command"),
    ("tar xIf a", "hygiene", Exec, "exec-option:tar -I", "tar -I old style"),
    ("rsync -e id a b", "hygiene", Exec, "exec-option:rsync -e", "rsync -e"),
    ("git -c core.pager=id log", "hygiene", Exec, "exec-option:git -c", "git -c"),
    ("git fetch --upload-pack=id origin", "hygiene", Exec, "exec-option:git --upload-pack", "git --upload-pack"),
    // --- ordinary commands that must keep working ---------------------------------------
    ("find / -name x", "hygiene", Ok_, "-", "find without exec"),
    ("find / -name x -delete", "hygiene", Ok_, "-", "find -delete is visible to deny rules"),
    ("tar -xzf a.tgz -C /tmp", "hygiene", Ok_, "-", "tar without exec options"),
    ("git log -n 5", "hygiene", Ok_, "-", "git"),
    ("git -C /repo status", "hygiene", Ok_, "-", "git -C"),
    ("ip -br a", "hygiene", Ok_, "-", "ip brief"),
    ("rsync -avz a b", "hygiene", Ok_, "-", "rsync without -e"),
    ("grep -r 'foo bar' /var/log", "hygiene", Ok_, "-", "quoted pattern"),
    ("echo \"hello world\"", "hygiene", Ok_, "-", "double-quoted text"),
    ("sha256sum /etc/hosts", "hygiene", Ok_, "-", "name starting with sh is not sh"),
    ("envsubst", "hygiene", Ok_, "-", "name starting with env is not env"),
    ("cd /tmp && ls", "hygiene", Ok_, "-", "cd is not a wrapper"),
    ("dd if=/dev/zero of=/dev/null count=1", "hygiene", Ok_, "-", "= in arguments"),
    ("echo a=b", "hygiene", Ok_, "-", "= in argument"),
    ("ls -la\tx", "hygiene", Ok_, "-", "tab as blank"),
    ("  ls  ", "hygiene", Ok_, "-", "surrounding blanks"),
    // --- Unicode and control characters -------------------------------------------------
    ("ls；rm -rf /", "hygiene", Rejected, "shell-parse:non_ascii", "fullwidth semicolon U+FF1B"),
    ("ls ｜ sh", "hygiene", Rejected, "shell-parse:non_ascii", "fullwidth bar U+FF5C"),
    ("ｌｓ", "hygiene", Rejected, "shell-parse:non_ascii", "fullwidth letters unquoted"),
    ("echo 'ｌｓ'", "hygiene", Ok_, "-", "fullwidth letters quoted are data"),
    ("ls\u{037E} id", "hygiene", Rejected, "shell-parse:non_ascii", "Greek question mark looks like ;"),
    ("echo \u{2018}x\u{2019}", "hygiene", Rejected, "shell-parse:non_ascii", "smart quotes"),
    ("echo 'a；b'", "hygiene", Ok_, "-", "look-alike punctuation inside quotes is data"),
    ("echo \"\u{FF02}\"", "hygiene", Ok_, "-", "fullwidth quote inside quotes is data"),
    ("echo 'café'", "hygiene", Ok_, "-", "accented letters inside quotes"),
    ("grep 'café' f", "hygiene", Ok_, "-", "non-ASCII pattern (issue 10 item 4)"),
    ("printf '€'", "hygiene", Ok_, "-", "currency symbol inside quotes"),
    ("echo \"日本語 — “ok” 😀\"", "hygiene", Ok_, "-", "punctuation and symbols inside double quotes"),
    ("git commit '--message=café'", "hygiene", Ok_, "-", "non-ASCII option value after ="),
    ("'c\u{0430}t' f", "hygiene", Rejected, "shell-parse:non_ascii", "Cyrillic look-alike program name, quoted"),
    ("\"caf\u{00E9}\" x", "hygiene", Rejected, "shell-parse:non_ascii", "non-ASCII program name, quoted"),
    ("ls '--f\u{043E}rce'", "hygiene", Rejected, "shell-parse:non_ascii", "look-alike option name, quoted"),
    ("ls '-\u{00E9}'", "hygiene", Rejected, "shell-parse:non_ascii", "non-ASCII short option"),
    ("ls && 'r\u{043C}' x", "hygiene", Rejected, "shell-parse:non_ascii", "program name of a later command"),
    ("echo '\u{00A0}'", "hygiene", Invalid, "invalid:invisible_char", "no-break space inside quotes"),
    ("ls\u{202E} x", "hygiene", Invalid, "invalid:invisible_char", "right-to-left override"),
    ("echo '\u{2066}x\u{2069}'", "hygiene", Invalid, "invalid:invisible_char", "bidi isolate even inside quotes"),
    ("rm\u{200B} -rf /", "deny_rm", Invalid, "invalid:invisible_char", "zero-width space"),
    ("ls\u{00A0}-la", "hygiene", Invalid, "invalid:invisible_char", "no-break space"),
    ("echo \u{3164}", "hygiene", Invalid, "invalid:invisible_char", "Hangul filler"),
    ("echo 'x\u{E0041}'", "hygiene", Invalid, "invalid:invisible_char", "tag character"),
    ("ls\u{1b}[2J", "hygiene", Invalid, "invalid:control_char", "terminal escape"),
    ("ls\u{7}", "hygiene", Invalid, "invalid:control_char", "bell"),
    ("ls\u{7f}", "hygiene", Invalid, "invalid:control_char", "DEL"),
    ("ls\u{85}", "hygiene", Invalid, "invalid:control_char", "C1 next line"),
    ("ls\nrm -rf /", "hygiene", Invalid, "invalid:line_break", "newline"),
    ("ls\rrm -rf /", "hygiene", Invalid, "invalid:line_break", "carriage return"),
    ("ls\0rm", "hygiene", Invalid, "invalid:nul", "NUL"),
    ("", "hygiene", Invalid, "invalid:empty", "empty"),
    (" \t ", "hygiene", Invalid, "invalid:empty", "blank only"),
];

fn rule_matches(expected: &str, got: Option<&str>) -> bool {
    match (expected, got) {
        ("", _) => true,
        ("-", got) => got.is_none(),
        (prefix, Some(got)) if prefix.ends_with('*') => {
            got.starts_with(&prefix[..prefix.len() - 1])
        }
        (exact, got) => got == Some(exact),
    }
}

#[test]
fn table_has_at_least_150_rows() {
    assert!(ROWS.len() >= 150, "only {} rows", ROWS.len());
}

#[test]
fn every_row_decides_as_expected() {
    let mut failures = Vec::new();
    for (command, fixture_name, want, rule, class) in ROWS {
        let decision = fixture(fixture_name).decide(command);
        let allowed_ok = decision.allowed == (*want == Ok_);
        if decision.reason_code != *want
            || !allowed_ok
            || !rule_matches(rule, decision.matched_rule.as_deref())
        {
            failures.push(format!(
                "[{class}] {command:?} under {fixture_name}: want {want:?} {rule:?}, got {:?} {:?} ({})",
                decision.reason_code, decision.matched_rule, decision.message
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn audit_rows_carry_warnings_and_flags() {
    let set = fixture("audit");
    let d = set.decide("rm -rf /");
    assert!(d.allowed && d.would_deny && !d.would_require_approval && !d.require_approval);
    assert_eq!(d.warnings.len(), 1);
    assert!(d.warnings[0].contains("would deny"), "{:?}", d.warnings);
    let d = set.decide("reboot");
    assert!(d.allowed && d.would_require_approval && !d.would_deny && !d.require_approval);
    assert!(
        d.warnings[0].contains("would require approval"),
        "{:?}",
        d.warnings
    );
    let d = set.decide("ls");
    assert!(d.allowed && d.warnings.is_empty() && !d.would_deny);
}

#[test]
fn enforced_approval_sets_the_flag() {
    let d = fixture("approve").decide("systemctl restart nginx");
    assert!(!d.allowed && d.require_approval);
    assert_eq!(d.rule_source.as_deref(), Some("host"));
    let d = fixture("ops").decide("cat /etc/shadow");
    assert_eq!(d.rule_source.as_deref(), Some("group:_default/base"));
}
