//! One case per row of the table, and ordinary commands that must pass.

use std::collections::BTreeSet;

use super::scan::pattern_matches;
use super::{Context, ROWS, Trigger, check, program};

/// `(row id, command, terminal)`: the command must be refused by exactly
/// that row.
#[rustfmt::skip]
const CASES: &[(&str, &str, bool)] = &[
    ("git -c", "git -c core.pager=id log", false),
    ("git --config-env", "git --config-env=core.pager=X log", false),
    ("git --exec-path", "git --exec-path=/tmp status", false),
    ("git --upload-pack", "git fetch --upload-pack=id origin", false),
    ("git --receive-pack", "git push --receive-pack=id origin", false),
    ("git clone -u", "git clone -u id host:repo", false),
    ("git ls-remote -u", "git ls-remote -u id origin", false),
    ("git clone -c", "git clone -c core.fsmonitor=id src dst", false),
    ("git clone --config", "git clone --config=core.pager=id src dst", false),
    ("git clone --template", "git clone --template=/tmp/t src dst", false),
    ("git init --template", "git init --templ=/tmp/t", false),
    ("git archive --exec", "git archive --remote=x --exec=id HEAD", false),
    ("git push --exec", "git push --exec=id origin", false),
    ("git rebase --exec", "git rebase --exec id HEAD~1", false),
    ("git rebase -x", "git rebase -ix id HEAD~1", false),
    ("git grep --open-files-in-pager", "git grep --open=id x", false),
    ("git grep -O", "git grep -Oid x", false),
    ("git difftool --extcmd", "git difftool --extcmd=id", false),
    ("git difftool -x", "git difftool -x id", false),
    ("git mergetool", "git mergetool --tool=vimdiff", false),
    ("git bisect run", "git bisect run id", false),
    ("git submodule foreach", "git submodule --quiet foreach id", false),
    ("git filter-branch", "git filter-branch --tree-filter id", false),
    ("git instaweb", "git instaweb --httpd=id", false),
    ("git config <exec argument>", "git config --global Core.Pager id", false),
    ("git send-email --to-cmd", "git send-email --to-cmd=id x", false),
    ("git send-email --cc-cmd", "git send-email --cc-cmd=id x", false),
    ("git send-email --header-cmd", "git send-email --header-cmd=id x", false),
    ("git send-email --sendmail-cmd", "git send-email --sendmail-cmd=id x", false),
    ("git send-email --smtp-server", "git send-email --smtp-server=/tmp/id x", false),
    ("git without --no-pager", "git -P log", true),
    ("tar --to-command", "tar --to-c=id -xf a", false),
    ("tar --use-compress-program", "tar --use=id -cf a x", false),
    ("tar -I", "tar xIf a", false),
    ("tar --checkpoint-action", "tar --checkpoint=1 --checkpoint-=exec=id -cf a x", false),
    ("tar --rsh-command", "tar --rs=id -cf h:a x", false),
    ("tar --rmt-command", "tar --rm=id -cf h:a x", false),
    ("tar --info-script", "tar --info-s=id -cMf a x", false),
    ("tar --new-volume-script", "tar --new-=id -cMf a x", false),
    ("tar -F", "tar -cMF id -f a x", false),
    ("rg --pre", "rg --pre id x", false),
    ("rg --hostname-bin", "rg --hostname-bin=id x", false),
    ("find -exec", "find -- / -exec id ;", false),
    ("find -execdir", "find . -execdir id ;", false),
    ("find -ok", "find . -ok id ;", false),
    ("find -okdir", "find . -okdir id ;", false),
    ("ip <exec argument>", "ip netns ex x id", false),
    ("ip -batch", "ip -ba /tmp/cmds", false),
    ("ip --batch", "ip --batch /tmp/cmds", false),
    ("ip -force", "ip -force -br a", false),
    ("rsync -e", "rsync -avze id a b", false),
    ("rsync --rsh", "rsync --rsh=id a b", false),
    ("rsync --rsync-path", "rsync --rsync-p=id a b", false),
    ("rsync -M", "rsync -M--rsync-path=id a b", false),
    ("rsync --remote-option", "rsync --remote-option=x a b", false),
    ("ssh -o=<exec>", "ssh -o ProxyCommand=id h", false),
    ("ssh -F", "ssh -F /tmp/cfg h", false),
    ("scp -S", "scp -S id a h:b", false),
    ("scp -D", "scp -D /tmp/id a h:b", false),
    ("scp -o=<exec>", "scp -oLocalCommand=id a h:b", false),
    ("scp -F", "scp -F /tmp/cfg a h:b", false),
    ("awk <program with system>", "awk BEGIN{system(1)}", false),
    ("awk -f", "awk -f /tmp/p x", false),
    ("awk --file", "awk --file=/tmp/p x", false),
    ("awk -E", "awk -E /tmp/p x", false),
    ("awk --exec", "awk --exec=/tmp/p x", false),
    ("awk -i", "awk -i /tmp/p x", false),
    ("awk --include", "awk --include=/tmp/p x", false),
    ("awk -l", "awk -l /tmp/lib x", false),
    ("awk --load", "awk --load=/tmp/lib x", false),
    ("sed <script with e>", "sed -n -e p -e 1eid f", false),
    ("sed -f", "sed -f /tmp/s f", false),
    ("sed --file", "sed --file=/tmp/s f", false),
    ("xargs", "xargs", false),
    ("apt-get -o", "apt-get -o DPkg::Pre-Invoke::=id install x", false),
    ("apt-get --option", "apt-get --option=APT::Update::Pre-Invoke::=id update", false),
    ("apt-get -c", "apt-get -c /tmp/apt.conf update", false),
    ("apt-get --config-file", "apt-get --config-file=/tmp/apt.conf update", false),
    ("apt-get -b", "apt-get -b source x", false),
    ("apt-get --compile", "apt-get source --compile x", false),
    ("apt-get --build", "apt-get source --build x", false),
    ("apt-get install <exec argument>", "apt-get install ./x.deb", false),
    ("apt-get reinstall <exec argument>", "apt-get reinstall /tmp/x.deb", false),
    ("less -k", "less -k /tmp/keys f", false),
    ("less --lesskey-file", "less --lesskey-file=/tmp/keys f", false),
    ("less --lesskey-src", "less --lesskey-src=/tmp/keys f", false),
    ("less --lesskey-content", "less --lesskey-content=x f", false),
    ("less", "less +!id f", true),
    ("more", "more f", true),
    ("man -P", "man -P id ls", false),
    ("man --pager", "man --pager=id ls", false),
    ("man -H", "man -Hid ls", false),
    ("man --html", "man --html=id ls", false),
    ("man -C", "man -C /tmp/conf ls", false),
    ("man --config-file", "man --config-file=/tmp/conf ls", false),
    ("man", "man ls", true),
    ("vim -c", "vim -c !id", false),
    ("vim --cmd", "vim --cmd !id", false),
    ("vim +…", "vim +!id", false),
    ("vim -S", "vim -S /tmp/s", false),
    ("vim -s", "vim -s /tmp/keys", false),
    ("vim -u", "vim -u /tmp/rc", false),
    ("vim", "vim f", false),
    ("systemctl edit", "systemctl edit nginx", false),
    ("systemctl link", "systemctl link /tmp/x.service", false),
    ("systemctl enable <exec argument>", "systemctl enable /tmp/x.service", false),
    ("systemctl set-environment", "systemctl set-environment LD_PRELOAD=/tmp/x.so", false),
    ("systemctl without --no-pager", "systemctl status nginx", true),
    ("journalctl without --no-pager", "journalctl -g --no-pager -u x", true),
];

/// Commands of the same programs that run nothing else.
#[rustfmt::skip]
const ORDINARY: &[(&str, bool)] = &[
    ("git log -n 5 --oneline", false),
    ("git -C /repo status", false),
    ("git -C /repo -p log", false),
    ("git clean -x -n", false),
    ("git log -c", false),
    ("git log -Oorder.txt", false),
    ("git fetch -u origin", false),
    ("git grep -e O x", false),
    ("git config user.name x", false),
    ("git --no-pager log", true),
    ("tar --checkpoint=10 -cf /dev/null x", false),
    ("tar -xzf a.tgz -C /tmp", false),
    ("tar xzf a.tgz", false),
    ("tar --create --file=/dev/null --totals --to-stdout x", false),
    ("tar --newer=2024-01-01 -cf a x", false),
    ("rg -n --pretty foo /var/log", false),
    ("find / -name x -type f -delete", false),
    ("ip -br a", false),
    ("ip netns list", false),
    ("rsync -avz a b", false),
    ("ssh -o ConnectTimeout=5 h", false),
    ("scp -P 2222 a h:b", false),
    ("awk {print}", false),
    ("sed -n 1,5p /etc/hosts", false),
    ("sed -e s/a/b/g f", false),
    ("sed -i.bak s/e/E/ f", false),
    ("sed -i s/e/E/ f", false),
    ("apt-get install nginx/bookworm-backports", false),
    ("apt-get -y -q update", false),
    ("apt-get source nginx", false),
    ("less +G f", false),
    ("less f", false),
    ("more f", false),
    ("man ls", false),
    ("man --no-pager ls", false),
    ("systemctl status nginx", false),
    ("systemctl --no-pager status nginx", true),
    ("systemctl enable nginx", false),
    ("journalctl -u nginx -n 50", false),
    ("journalctl --no-pager -u nginx", true),
];

fn argv(s: &str) -> Vec<String> {
    s.split(' ').map(str::to_owned).collect()
}

#[test]
fn every_row_has_a_case_that_fires_it() {
    let mut failures = Vec::new();
    for (id, command, terminal) in CASES {
        let got = check(
            &argv(command),
            Context {
                terminal: *terminal,
            },
        );
        let got_id = got.as_ref().map(|h| h.row.id());
        if got_id.as_deref() != Some(*id) {
            failures.push(format!("{command:?}: want {id:?}, got {got_id:?}"));
        }
    }
    let covered: BTreeSet<&str> = CASES.iter().map(|c| c.0).collect();
    for row in ROWS {
        if !covered.contains(row.id().as_str()) {
            failures.push(format!("row {:?} has no case", row.id()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn ordinary_commands_pass() {
    for (command, terminal) in ORDINARY {
        let got = check(
            &argv(command),
            Context {
                terminal: *terminal,
            },
        );
        assert!(got.is_none(), "{command:?}: {got:?}");
    }
}

#[test]
fn the_table_is_consistent() {
    let ids: Vec<String> = ROWS.iter().map(|r| r.id()).collect();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "row ids must be unique");
    for row in ROWS {
        assert!(program(row.program).is_some(), "{}: no Program", row.id());
        if let Trigger::ShortValue(_, p)
        | Trigger::LongValue(_, p)
        | Trigger::Positional(p)
        | Trigger::AwkProgram(p) = row.trigger
        {
            assert!(regex::Regex::new(p).is_ok(), "{}: bad regex", row.id());
            // A pattern that failed to build would match everything.
            assert!(!pattern_matches(p, "\u{1}never\u{1}"), "{}", row.id());
        }
    }
}

#[test]
fn terminal_rows_need_a_terminal_and_paths_count() {
    assert!(check(&argv("less f"), Context::default()).is_none());
    assert!(check(&argv("less f"), Context { terminal: true }).is_some());
    assert!(check(&argv("/usr/bin/tar --use=id -cf a x"), Context::default()).is_some());
    assert!(check(&argv("ls --use=id"), Context::default()).is_none());
}
