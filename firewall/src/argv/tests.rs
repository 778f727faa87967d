//! Normalisation and matching of structured rules.

use super::config::{ArgvRule, compile_rules};
use super::{ArgvRuleConfig, Mismatch};

fn rule(json: &str) -> ArgvRule {
    let cfg: ArgvRuleConfig = serde_json::from_str(json).unwrap();
    let mut errors = Vec::new();
    let mut rules = compile_rules(&[cfg], "r", &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    rules.remove(0)
}

fn argv(s: &str) -> Vec<String> {
    s.split(' ').map(str::to_owned).collect()
}

const GIT_LOG: &str = r#"{
    "program": "git", "paths": ["/usr/bin/git"],
    "global_options": {"-C": {"value": "/srv/[a-z]+"}, "--no-pager": "flag"},
    "subcommand": ["log"],
    "options": {"--oneline": "flag", "-n": {"value": "[0-9]{1,3}"},
                "--max-count": {"value": "[0-9]{1,3}"}, "--stat": "flag", "-p": "flag",
                "--format": "value"},
    "args": ["[A-Za-z0-9._/~^-]+"], "max_args": 2
}"#;

#[test]
fn equivalent_spellings_normalise_alike() {
    let r = rule(GIT_LOG);
    let want = r
        .normalize(&argv("git log --max-count=5 --oneline"))
        .unwrap();
    assert_eq!(want, argv("git log --max-count=5 --oneline"));
    for same in [
        "git log --max-count 5 --oneline",
        "git log --max=5 --oneline",
        "git log --max 5 --one",
    ] {
        assert_eq!(r.normalize(&argv(same)).unwrap(), want, "{same}");
    }
    assert_eq!(
        r.normalize(&argv("git log -pn5 HEAD")).unwrap(),
        argv("git log -p -n 5 -- HEAD")
    );
    // After `--` a word starting with `-` is a positional argument.
    assert_eq!(
        r.normalize(&argv("git log -p -n 5 -- -weird-ref")).unwrap(),
        argv("git log -p -n 5 -- -weird-ref")
    );
    assert_eq!(
        r.normalize(&argv("git log -- x;y")).unwrap_err(),
        Mismatch::BadArgument("x;y".into())
    );
    assert_eq!(
        r.normalize(&argv("/usr/bin/git -C /srv/repo log")).unwrap(),
        argv("/usr/bin/git -C /srv/repo log")
    );
}

#[test]
fn everything_not_listed_is_refused() {
    let r = rule(GIT_LOG);
    let cases: &[(&str, Mismatch)] = &[
        (
            "git log --follow",
            Mismatch::UnknownOption("--follow".into()),
        ),
        ("git log -x", Mismatch::UnknownOption("-x".into())),
        ("git log -pz", Mismatch::UnknownOption("-z".into())),
        (
            "git log --oneline=1",
            Mismatch::FlagWithValue("--oneline".into()),
        ),
        ("git log -n", Mismatch::MissingValue("-n".into())),
        ("git log -n x", Mismatch::BadValue("-n".into())),
        ("git log -n 1234", Mismatch::BadValue("-n".into())),
        (
            "git log a b c",
            Mismatch::ArgCount {
                got: 3,
                min: 0,
                max: 2,
            },
        ),
        ("git log 'a;b'", Mismatch::BadArgument("'a;b'".into())),
        ("git show", Mismatch::Subcommand(vec!["log".into()])),
        ("git", Mismatch::Subcommand(vec!["log".into()])),
        ("git -- log", Mismatch::Subcommand(vec!["log".into()])),
        ("git -C /tmp log", Mismatch::BadValue("-C".into())),
        (
            "git --oneline log",
            Mismatch::UnknownOption("--oneline".into()),
        ),
        (
            "git log --no-pager",
            Mismatch::UnknownOption("--no-pager".into()),
        ),
        ("/bin/git log", Mismatch::Program("git".into())),
        ("gitx log", Mismatch::Program("git".into())),
    ];
    for (command, want) in cases {
        assert_eq!(&r.normalize(&argv(command)).unwrap_err(), want, "{command}");
    }
}

#[test]
fn abbreviations_resolve_only_when_unique_among_known_options() {
    let r = rule(
        r#"{"program": "tar", "options": {"-c": "flag", "-f": "value", "--checkpoint": {"value": "[0-9]+"},
             "--create": "flag", "--file": "value"}, "args": [".*"]}"#,
    );
    assert_eq!(
        r.normalize(&argv("tar --cr --fi=/dev/null x")).unwrap(),
        argv("tar --create --file=/dev/null -- x")
    );
    // Exact match wins over the longer exec option.
    assert!(r.normalize(&argv("tar --checkpoint=1 -cf a x")).is_ok());
    // `--checkpoint-` can only be --checkpoint-action, which the rule does not allow.
    assert!(matches!(
        r.normalize(&argv("tar --checkpoint-=exec=id -cf a x")),
        Err(Mismatch::UnknownOption(_))
    ));
    // `--c` fits --create, --checkpoint and --checkpoint-action.
    assert!(matches!(
        r.normalize(&argv("tar --c")),
        Err(Mismatch::Ambiguous(..))
    ));
    // --use is a prefix of the exec option only: unknown, never guessed.
    assert!(matches!(
        r.normalize(&argv("tar --use=x -cf a x")),
        Err(Mismatch::UnknownOption(_))
    ));
}

#[test]
fn abbreviations_can_be_turned_off() {
    let r = rule(r#"{"program": "ls", "options": {"--all": "flag"}, "abbreviations": false}"#);
    assert!(r.normalize(&argv("ls --all")).is_ok());
    assert_eq!(
        r.normalize(&argv("ls --al")).unwrap_err(),
        Mismatch::UnknownOption("--al".into())
    );
}

#[test]
fn single_dash_long_reads_words_whole() {
    let r = rule(
        r#"{"program": "find", "single_dash_long": true,
            "options": {"-name": {"value": "[a-z*.]+"}, "-type": {"value": "[fd]"}, "-maxdepth": {"value": "[0-9]"}},
            "args": ["/var/log(/.*)?"], "min_args": 1, "max_args": 1}"#,
    );
    assert_eq!(
        r.normalize(&argv("find /var/log -name *.log -type f"))
            .unwrap(),
        argv("find -name=*.log -type=f -- /var/log")
    );
    assert!(r.normalize(&argv("find /var/log -delete")).is_err());
    assert!(r.normalize(&argv("find /etc -name x")).is_err());
    assert!(r.normalize(&argv("find -name x")).is_err());
}

#[test]
fn bad_rules_are_config_errors_with_paths() {
    let cases = [
        (r#"{"program": "/bin/ls"}"#, "r[0].program"),
        (r#"{"program": "sh"}"#, "r[0].program"),
        (r#"{"program": "ls", "paths": ["bin/ls"]}"#, "r[0].paths[0]"),
        (
            r#"{"program": "ls", "options": {"x": "flag"}}"#,
            "r[0].options[\"x\"]",
        ),
        (
            r#"{"program": "ls", "options": {"--a=b": "flag"}}"#,
            "r[0].options[\"--a=b\"]",
        ),
        (
            r#"{"program": "ls", "options": {"-n": {"value": "("}}}"#,
            "r[0].options[\"-n\"]",
        ),
        (r#"{"program": "ls", "args": ["("]}"#, "r[0].args[0]"),
        (r#"{"program": "ls", "max_args": 3}"#, "r[0].args"),
        (
            r#"{"program": "ls", "args": [".*"], "min_args": 3, "max_args": 1}"#,
            "r[0].min_args",
        ),
        (
            r#"{"program": "ls", "global_options": {"-a": "flag"}}"#,
            "r[0].global_options",
        ),
        (
            r#"{"program": "git", "subcommand": ["-p"]}"#,
            "r[0].subcommand[0]",
        ),
    ];
    for (json, path) in cases {
        let cfg: ArgvRuleConfig = serde_json::from_str(json).unwrap();
        let mut errors = Vec::new();
        let rules = compile_rules(&[cfg], "r", &mut errors);
        assert!(rules.is_empty(), "{json}");
        assert!(
            errors
                .iter()
                .any(|e| e.to_string().starts_with(&format!("{path}: "))),
            "{json}: {errors:?}"
        );
    }
    assert!(serde_json::from_str::<ArgvRuleConfig>(r#"{"program": "ls", "flags": []}"#).is_err());
    assert!(
        serde_json::from_str::<ArgvRuleConfig>(r#"{"program": "ls", "options": {"-a": "maybe"}}"#)
            .is_err()
    );
}
