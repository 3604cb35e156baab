//! `--allow` and `--deny` on the command line. They are two flags but one ordered list (the
//! first matching rule wins, whichever flag gave it), so this reads clap's argument indices
//! to put them back in command-line order; a derived struct would keep two separate lists.
//! The dialer they make (`RuleArgs::dialer`) is in `app::args`.

// Doc comments here are --help text, printed as written: no Markdown backticks.
#![allow(clippy::doc_markdown)]

use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};

use crate::roles::dialers::{Rule, RulePattern, Rules};

const RULE_HELP: &str = "\
RULE: an address or network (127.0.0.1, 10.0.0.0/8, ::1, fd00::/8), a host name \
(example.org, *.example.org), either with :PORT or :FIRST-LAST ([::1]:22 for IPv6), \
port=PORT[-LAST] for any host, or * for everything. Rules apply in the order given, \
--allow and --deny mixed; the first match decides, and a destination no rule matches is \
allowed (end with --deny '*' to allow only what --allow names). Address rules are checked \
on every address a name resolves to.";

/// The destination rules of the outside end, in command-line order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleArgs {
    pub rules: Rules,
}

impl FromArgMatches for RuleArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut ordered: Vec<(usize, Rule)> = Vec::new();
        for (id, make) in [
            ("allow", Rule::allow as fn(RulePattern) -> Rule),
            ("deny", Rule::deny),
        ] {
            // Absent from a command that does not define the flags: no rules.
            let (Ok(Some(values)), Some(indices)) = (
                matches.try_get_many::<RulePattern>(id),
                matches.indices_of(id),
            ) else {
                continue;
            };
            for (index, pattern) in indices.zip(values) {
                ordered.push((index, make(pattern.clone())));
            }
        }
        ordered.sort_by_key(|(index, _)| *index);
        Ok(RuleArgs {
            rules: Rules::new(ordered.into_iter().map(|(_, rule)| rule).collect()),
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for RuleArgs {
    fn augment_args(command: Command) -> Command {
        let rule = |id: &'static str| {
            Arg::new(id)
                .long(id)
                .value_name("RULE")
                .action(ArgAction::Append)
                .value_parser(|text: &str| text.parse::<RulePattern>())
                .help_heading("Destinations")
        };
        command
            .arg(
                rule("allow").help(
                    "Allow destinations that RULE matches (repeatable). See --deny for RULE.",
                ),
            )
            .arg(rule("deny").help(format!(
                "Refuse destinations that RULE matches (repeatable; the client gets \"not \
                 allowed by ruleset\"). {RULE_HELP}"
            )))
    }

    fn augment_args_for_update(command: Command) -> Command {
        Self::augment_args(command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Test {
        #[command(flatten)]
        rules: RuleArgs,
    }

    #[test]
    fn allow_and_deny_keep_their_command_line_order() {
        let parsed = Test::try_parse_from([
            "t",
            "--deny",
            "port=22",
            "--allow",
            "10.0.0.0/8",
            "--deny",
            "*",
        ])
        .unwrap();
        let texts: Vec<String> = parsed.rules.rules.iter().map(ToString::to_string).collect();
        assert_eq!(texts, ["--deny port=22", "--allow 10.0.0.0/8", "--deny *"]);
        assert!(Test::try_parse_from(["t"]).unwrap().rules.rules.is_empty());
    }

    #[test]
    fn a_bad_rule_is_a_usage_error_that_says_why() {
        let error = Test::try_parse_from(["t", "--deny", "port=9-1"]).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("invalid value 'port=9-1' for '--deny <RULE>'"),
            "{text}"
        );
        assert!(text.contains("runs backwards"), "{text}");
    }
}
