//! Checks that what the documents say keygate takes, it takes (the options named, the
//! `config.toml` sections shown), and that their links between each other lead somewhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use clap::CommandFactory as _;

use crate::home::Home;
use crate::Cli;

/// Options the documentation names that belong to other programs, with the program.
const OTHER_PROGRAMS: &[(&str, &str)] = &[
    ("--absolute-git-dir", "git rev-parse"),
    ("--all", "git"),
    ("--all-files", "detect-secrets"),
    ("--all-targets", "cargo"),
    ("--batch", "git cat-file"),
    ("--batch-all-objects", "git cat-file"),
    ("--batch-check", "git cat-file"),
    ("--bench", "cargo"),
    ("--cached", "git"),
    ("--check", "cargo fmt, cargo deny"),
    ("--connectivity-only", "git fsck"),
    ("--diff-merges", "git log"),
    ("--example", "cargo"),
    ("--from-file", "kubectl create secret"),
    ("--git-common-dir", "git rev-parse"),
    ("--locked", "cargo"),
    ("--measurement-time", "criterion"),
    ("--no-dedup", "kingfisher"),
    ("--no-deps", "cargo doc"),
    ("--no-validate", "kingfisher"),
    ("--path", "cargo install"),
    ("--raw", "git log"),
    ("--reference", "git clone"),
    ("--reflog", "git log"),
    ("--release", "cargo"),
    ("--root", "git log"),
    ("--sanitizer", "cargo fuzz"),
    ("--shared", "git clone"),
    ("--size-mib", "keygate-scan's bench example"),
    ("--stage", "git ls-files"),
    ("--unreachable", "git fsck"),
    ("--unshallow", "git fetch"),
    ("--workspace", "cargo"),
];

/// Every command's path of subcommand names, with the long options it takes.
fn command_options() -> BTreeMap<Vec<String>, BTreeSet<String>> {
    fn walk(
        command: &clap::Command,
        path: &mut Vec<String>,
        into: &mut BTreeMap<Vec<String>, BTreeSet<String>>,
    ) {
        let options = command
            .get_arguments()
            .filter_map(|argument| argument.get_long())
            .chain(["help", "version"])
            .map(|long| format!("--{long}"))
            .collect();
        into.insert(path.clone(), options);
        for sub in command.get_subcommands() {
            path.push(sub.get_name().to_owned());
            walk(sub, path, into);
            path.pop();
        }
    }
    let mut command = Cli::command();
    // Building copies the global options into every subcommand.
    command.build();
    let mut options = BTreeMap::new();
    walk(&command, &mut Vec::new(), &mut options);
    options
}

/// The workspace's Markdown documents (the README, SECURITY, CONTRIBUTING and `docs/`),
/// each with its path from the workspace's root.
fn documents() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut names: Vec<String> = ["README.md", "SECURITY.md", "CONTRIBUTING.md"]
        .map(str::to_owned)
        .to_vec();
    let docs = std::fs::read_dir(root.join("docs")).expect("docs/ is readable");
    for entry in docs {
        let name = entry.expect("docs/ lists").file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".md") {
            names.push(format!("docs/{name}"));
        }
    }
    names
        .into_iter()
        .map(|name| {
            let text = std::fs::read_to_string(root.join(&name))
                .unwrap_or_else(|error| panic!("{name}: {error}"));
            (name, text)
        })
        .collect()
}

/// A Markdown text cut apart: its fenced blocks and its paragraphs of prose.
struct Markdown<'t> {
    /// Each fenced block's language (what follows its opening fence) and lines.
    blocks: Vec<(&'t str, Vec<&'t str>)>,
    /// The prose outside the blocks, paragraph by paragraph: a paragraph ends at a blank
    /// line or a block, and a stray backtick cannot pair across that.
    paragraphs: Vec<String>,
}

impl<'t> Markdown<'t> {
    fn parse(text: &'t str) -> Markdown<'t> {
        let mut markdown = Markdown {
            blocks: Vec::new(),
            paragraphs: vec![String::new()],
        };
        let mut block: Option<(&str, Vec<&str>)> = None;
        for line in text.lines() {
            let fence = line.trim_start().strip_prefix("```");
            match (fence, block.as_mut()) {
                (Some(_), Some(_)) => markdown.blocks.extend(block.take()),
                (Some(language), None) => {
                    block = Some((language.trim(), Vec::new()));
                    markdown.paragraphs.push(String::new());
                }
                (None, Some((_, lines))) => lines.push(line),
                (None, None) if line.trim().is_empty() => markdown.paragraphs.push(String::new()),
                (None, None) => {
                    let paragraph = markdown.paragraphs.last_mut().expect("one at least");
                    paragraph.push_str(line);
                    paragraph.push('\n');
                }
            }
        }
        markdown
    }

    /// The pieces written as code: each line of a fenced block (a line ending in `\`
    /// joined to the next), and each inline span (which prose may wrap over lines).
    fn code_pieces(&self) -> Vec<String> {
        let mut pieces = Vec::new();
        for (_, lines) in &self.blocks {
            let mut continued = String::new();
            for line in lines {
                match line.strip_suffix('\\') {
                    Some(head) => continued.push_str(head),
                    None => pieces.push(std::mem::take(&mut continued) + line),
                }
            }
        }
        for paragraph in &self.paragraphs {
            pieces.extend(paragraph.split('`').skip(1).step_by(2).map(str::to_owned));
        }
        pieces
    }

    /// The prose without its inline code, where `](` is no link.
    fn prose_outside_code(&self) -> String {
        let paragraphs = self.paragraphs.iter();
        paragraphs
            .map(|paragraph| paragraph.split('`').step_by(2).collect::<String>() + "\n")
            .collect()
    }

    /// The text of each fenced block whose language is `language`.
    fn blocks_in(&self, language: &str) -> Vec<String> {
        self.blocks
            .iter()
            .filter(|(block_language, _)| *block_language == language)
            .map(|(_, lines)| lines.iter().map(|line| format!("{line}\n")).collect())
            .collect()
    }

    /// The anchors GitHub gives the headings: lowercase, spaces to hyphens, other
    /// punctuation dropped, a repeated one numbered.
    fn heading_anchors(&self) -> BTreeSet<String> {
        let mut anchors = BTreeSet::new();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let lines = self
            .paragraphs
            .iter()
            .flat_map(|paragraph| paragraph.lines());
        for heading in lines.filter_map(|line| line.strip_prefix('#')) {
            let anchor: String = heading
                .trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
                .map(|c| if c == ' ' { '-' } else { c })
                .collect();
            let count = seen.entry(anchor.clone()).or_default();
            anchors.insert(match *count {
                0 => anchor,
                n => format!("{anchor}-{n}"),
            });
            *count += 1;
        }
        anchors
    }
}

/// The option a token names, without brackets, punctuation or `=VALUE` around it.
fn option_in(token: &str) -> Option<&str> {
    let token = token.trim_start_matches(['[', '(', '"', '\'']);
    let name = token.split('=').next().unwrap_or(token);
    let name = name.trim_end_matches(|c: char| !(c.is_ascii_alphanumeric() || c == '-'));
    (name.starts_with("--") && name[2..].starts_with(|c: char| c.is_ascii_lowercase()))
        .then_some(name)
}

/// Each `keygate` command line in a piece of code, as its subcommand path and the
/// options it gives; a command ends at a shell separator or a comment, and `keygate`
/// inside one is a value (`--hsm-token keygate`).
fn invocations(
    piece: &str,
    commands: &BTreeMap<Vec<String>, BTreeSet<String>>,
) -> Vec<(Vec<String>, Vec<String>)> {
    let mut found = Vec::new();
    let mut current: Option<(Vec<String>, Vec<String>)> = None;
    for token in piece.split_whitespace() {
        let Some((path, options)) = current.as_mut() else {
            if token == "keygate" || token.ends_with("/keygate") {
                current = Some((Vec::new(), Vec::new()));
            }
            continue;
        };
        if ["|", "||", "&&", ";", "#"].contains(&token) || token.starts_with('#') {
            found.extend(current.take());
            continue;
        }
        if let Some(option) = option_in(token) {
            options.push(option.to_owned());
            continue;
        }
        path.push(token.to_owned());
        if !commands.contains_key(path) {
            path.pop();
        }
    }
    found.extend(current);
    found
}

/// `path` with its `..` and `.` resolved, as a path from the workspace's root.
fn normalized(path: &Path) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.iter().filter_map(|part| part.to_str()) {
        match part {
            "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
}

#[test]
fn every_option_a_document_gives_a_command_is_one_it_takes() {
    let commands = command_options();
    let mut wrong = Vec::new();
    let mut checked = 0;
    for (path, text) in documents() {
        for piece in Markdown::parse(&text).code_pieces() {
            for (command, options) in invocations(&piece, &commands) {
                checked += options.len();
                let takes = &commands[&command];
                for option in options.iter().filter(|option| !takes.contains(*option)) {
                    wrong.push(format!(
                        "{}: `keygate {}` takes no {option} (in `{}`)",
                        path,
                        command.join(" "),
                        piece.trim()
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The documents give dozens; a reader that found none would pass on anything.
    assert!(
        checked > 50,
        "only {checked} options found in command lines"
    );
}

#[test]
fn every_option_a_document_names_is_keygates_or_another_programs() {
    let every_option: BTreeSet<String> = command_options().into_values().flatten().collect();
    let others: BTreeMap<&str, &str> = OTHER_PROGRAMS.iter().copied().collect();
    let mut unknown = BTreeSet::new();
    let mut named = BTreeSet::new();
    for (path, text) in documents() {
        for token in text.split(|c: char| c.is_whitespace() || c == '`' || c == ',') {
            let Some(option) = option_in(token) else {
                continue;
            };
            named.insert(option.to_owned());
            if !every_option.contains(option) && !others.contains_key(option) {
                unknown.insert(format!("{path}: {option}"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "options no keygate command takes (another program's? add it to OTHER_PROGRAMS):\n{}",
        unknown.into_iter().collect::<Vec<_>>().join("\n")
    );
    // An entry for a program's option the documents no longer name only hides a mistake.
    let stale: Vec<&str> = others
        .keys()
        .filter(|option| !named.contains(**option))
        .copied()
        .collect();
    assert!(
        stale.is_empty(),
        "OTHER_PROGRAMS names options no document does: {stale:?}"
    );
}

#[test]
fn a_command_line_in_code_is_read_with_its_subcommands_and_options() {
    let commands = command_options();
    let text = "Run `keygate --home /tmp/h client update bot1 --rate none` (or\n`keygate audit \
                query --since 1h | head`).\n\n```sh\nkeygate client issue --account main \\\n    \
                --scope read # --not-an-option\n```\n";
    let mut found: Vec<(Vec<String>, Vec<String>)> = Markdown::parse(text)
        .code_pieces()
        .iter()
        .flat_map(|piece| invocations(piece, &commands))
        .collect();
    found.sort();
    let owned = |words: &[&str]| {
        words
            .iter()
            .map(|word| word.to_string())
            .collect::<Vec<_>>()
    };
    let expected = [
        (owned(&["audit", "query"]), owned(&["--since"])),
        (
            owned(&["client", "issue"]),
            owned(&["--account", "--scope"]),
        ),
        (owned(&["client", "update"]), owned(&["--home", "--rate"])),
    ];
    assert_eq!(found, expected);
}

#[test]
fn every_config_example_a_document_shows_is_read_as_keygate_reads_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let home = Home {
        dir: dir.path().to_owned(),
    };
    let mut examples = 0;
    let mut wrong = Vec::new();
    for (path, text) in documents() {
        for block in Markdown::parse(&text).blocks_in("toml") {
            examples += 1;
            // The keys `init` writes come first, as in a real config file; the
            // example's sections are read by the commands that use them.
            let config =
                format!("version = 1\nmaster_key = {{ provider = \"key-file\" }}\n\n{block}");
            std::fs::write(home.config_path(), config).expect("config.toml is written");
            let read = home
                .alerts_config()
                .and_then(|alerts| Ok(alerts.thresholds()?))
                .and_then(|_| home.audit_settings());
            if let Err(error) = read {
                wrong.push(format!("{path}: {error:#}\n{block}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(examples >= 3, "only {examples} config examples found");
}

#[test]
fn every_link_between_the_documents_leads_to_a_file_and_heading() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let documents = documents();
    let anchors: BTreeMap<&str, BTreeSet<String>> = documents
        .iter()
        .map(|(name, text)| (name.as_str(), Markdown::parse(text).heading_anchors()))
        .collect();
    let mut links = 0;
    let mut broken = Vec::new();
    for (path, text) in &documents {
        let text = Markdown::parse(text).prose_outside_code();
        for (_, rest) in text
            .match_indices("](")
            .map(|(at, _)| text.split_at(at + 2))
        {
            let Some(target) = rest.split([')', ' ']).next() else {
                continue;
            };
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            links += 1;
            let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
            let file = if file.is_empty() {
                path.clone()
            } else {
                let directory = Path::new(path).parent().unwrap_or(Path::new(""));
                normalized(&directory.join(file))
            };
            if !root.join(&file).exists() {
                broken.push(format!("{path}: ({target}): no file {file}"));
                continue;
            }
            if anchor.is_empty() {
                continue;
            }
            let Some(headings) = anchors.get(file.as_str()) else {
                broken.push(format!(
                    "{path}: ({target}): an anchor in a file not checked"
                ));
                continue;
            };
            if !headings.contains(anchor) {
                broken.push(format!(
                    "{path}: ({target}): no heading #{anchor} in {file}"
                ));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
    assert!(links > 20, "only {links} links found");
}
