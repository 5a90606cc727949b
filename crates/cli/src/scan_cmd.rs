//! `keygate scan`: find leaked exchange API keys in files, git history or staged changes.
//!
//! Exit codes: 0 nothing found (or only suppressed findings), 1 findings, 2 error.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use keygate_scan::{Finding, ManagedKeys, Report, Role, Scanner};

use crate::home::read_bounded;
use crate::output::STDOUT_WRITE;

/// The most a baseline (an earlier scan's JSON report) may hold.
const MAX_BASELINE_LEN: u64 = 256 * 1024 * 1024;
/// The most a fingerprint ignore file may hold.
const MAX_IGNORE_FILE_LEN: u64 = 16 * 1024 * 1024;

/// Output formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Redacted text with file:line and a one-line fix.
    Human,
    /// The full report as JSON (usable later as `--baseline`).
    Json,
    /// SARIF 2.1.0 for GitHub code scanning.
    Sarif,
}

/// Arguments of `keygate scan`.
#[derive(clap::Args, Debug)]
pub struct ScanArgs {
    /// Files or directories to scan; with --git or --staged, the repository (default: .).
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Scan every blob of every commit of the repository, once each, and every commit and
    /// tag message.
    #[arg(long, conflicts_with = "staged")]
    pub git: bool,
    /// Scan only what is staged for the next commit (for pre-commit hooks).
    #[arg(long)]
    pub staged: bool,
    /// Scan a commit message file (for commit-msg hooks, which run at the top of the
    /// working tree: the `.keygateignore` there applies).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["paths", "git", "staged", "no_ignore"])]
    pub commit_msg: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Write the report to FILE instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// A previous JSON report: findings already in it do not fail the scan.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Redact secrets in the output (the default).
    #[arg(long, overrides_with = "no_redact")]
    pub redact: bool,
    /// Print secrets in full. Dangerous: the output then contains live credentials.
    #[arg(long, overrides_with = "redact")]
    pub no_redact: bool,
    /// Also report exact occurrences of keys in keygate's vault (needs the vault unlocked).
    #[arg(long)]
    pub managed: bool,
    /// Install git hooks in the current repository: `pre-commit` runs `keygate scan
    /// --staged`, `commit-msg` scans the commit's message.
    // Not `exclusive`: clap counts the global options, and those set from the environment
    // (KEYGATE_HOME, KEYGATE_LOG), as conflicting with an exclusive one.
    #[arg(long, conflicts_with_all = [
        "paths", "git", "staged", "commit_msg", "format", "output", "baseline", "managed",
        "ignore_file", "no_default_ignore_file", "no_ignore",
    ])]
    pub install_hook: bool,
    /// A fingerprint ignore file (default: .keygateignore in the scanned root, if present).
    #[arg(long, value_name = "FILE")]
    pub ignore_file: Vec<PathBuf>,
    /// Do not read .keygateignore from the scanned root: for a pull request's scan, whose
    /// author writes that file (give the base branch's with --ignore-file, which also
    /// keeps the default from being read).
    #[arg(long)]
    pub no_default_ignore_file: bool,
    /// Scan what .gitignore (in a git work tree) and .ignore files leave out too (an
    /// ignored .env still holds its keys); files git tracks are scanned without it,
    /// ignored or not.
    #[arg(long, conflicts_with_all = ["git", "staged"])]
    pub no_ignore: bool,
    /// Worker threads (default: one per core; at most 256).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: Option<u16>,
    /// Never show the progress indicator.
    #[arg(long)]
    pub no_progress: bool,
}

/// Runs a scan; returns the process exit code: 0 clean, 1 findings, 2 error.
pub fn run(args: &ScanArgs, managed: Option<ManagedKeys>) -> i32 {
    match scan(args, managed) {
        Ok(code) => code,
        Err(e) => {
            // Escaped: the error may quote a baseline file or git, which the repository
            // scanned controls (a line of its own in a CI log, an escape sequence).
            eprintln!(
                "keygate scan: error: {}",
                crate::output::escape_controls(&format!("{e:#}"))
            );
            2
        }
    }
}

fn scan(args: &ScanArgs, managed: Option<ManagedKeys>) -> anyhow::Result<i32> {
    if args.install_hook {
        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        let hooks = keygate_scan::install_hooks(&cwd).context("cannot install the git hooks")?;
        let mut refused = false;
        for (hook, installed) in hooks {
            match installed {
                Ok(path) => eprintln!("installed git hook {}", path.display()),
                Err(e) => {
                    refused = true;
                    eprintln!(
                        "keygate scan: error: {} hook not installed: {}",
                        hook.file_name(),
                        crate::output::escape_controls(&e.to_string())
                    );
                }
            }
        }
        return Ok(if refused { 2 } else { 0 });
    }
    if args.managed && managed.is_none() {
        bail!("--managed needs the unlocked vault");
    }
    let roots: Vec<PathBuf> = if let Some(message) = &args.commit_msg {
        vec![message.clone()]
    } else if args.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.paths.clone()
    };
    if (args.git || args.staged) && roots.len() != 1 {
        bail!("--git and --staged take one repository path");
    }
    let mut builder = Scanner::builder()
        .redact(!args.no_redact)
        .respect_ignore_files(!args.no_ignore);
    if let Some(m) = managed {
        builder = builder.managed(m);
    }
    if let Some(n) = args.threads {
        builder = builder.threads(usize::from(n));
    }
    for file in &args.ignore_file {
        let fps = read_ignore_file(file)
            .with_context(|| format!("cannot read ignore file {}", file.display()))?;
        builder = builder.ignore_fingerprints(fps);
    }
    if args.ignore_file.is_empty() && !args.no_default_ignore_file {
        // A commit message's file is in `.git`: the repository's own list applies to it.
        let dirs: Vec<&Path> = if args.commit_msg.is_some() {
            vec![Path::new(".")]
        } else {
            roots
                .iter()
                .map(|root| {
                    if root.is_dir() {
                        root.as_path()
                    } else {
                        root.parent().unwrap_or(Path::new("."))
                    }
                })
                .collect()
        };
        for dir in dirs {
            let default = dir.join(".keygateignore");
            if default.is_file() {
                builder = builder.ignore_fingerprints(read_ignore_file(&default)?);
            }
        }
    }
    if let Some(b) = &args.baseline {
        let text = String::from_utf8(read_bounded(b, MAX_BASELINE_LEN)?)
            .map_err(|_| anyhow::anyhow!("invalid baseline {}: not UTF-8", b.display()))?;
        let baseline = Report::from_json(&text)
            .map_err(|e| anyhow::anyhow!("invalid baseline {}: {e}", b.display()))?;
        builder = builder.baseline(&baseline);
    }
    let show_progress = !args.no_progress && std::io::stderr().is_terminal();
    if show_progress {
        let last = Mutex::new(Instant::now());
        builder = builder.progress(Arc::new(move |files, bytes| {
            let Ok(mut t) = last.try_lock() else { return };
            if t.elapsed() >= Duration::from_millis(100) {
                *t = Instant::now();
                eprint!(
                    "\rscanning: {files} files, {:.1} MiB",
                    bytes as f64 / 1048576.0
                );
            }
        }));
        // A warning goes on a line of its own, not into the middle of the progress line.
        builder = builder.on_warning(Arc::new(|warning| {
            eprintln!("\r\x1b[2Kkeygate scan: warning: {warning}");
        }));
    }
    let scanner = builder.build();
    let report = if args.git {
        scanner.scan_git_history(&roots[0])
    } else if args.staged {
        scanner.scan_staged(&roots[0])
    } else if let Some(message) = &args.commit_msg {
        scanner.scan_commit_message(message)
    } else {
        scanner.scan_paths(&roots)
    };
    if show_progress {
        eprint!("\r\x1b[2K");
    }
    let mut report: Report = report.context("scan failed")?;
    // Ignore rules that leave out every file (a `.gitignore` of `*`) would make a clean
    // scan of nothing. Files skipped for another reason were named already.
    let walked = !(args.git || args.staged || args.commit_msg.is_some());
    if walked
        && !args.no_ignore
        && report.stats.scanned == 0
        && report.stats.skipped == 0
        && roots.iter().any(|r| holds_a_file(r))
    {
        eprintln!(
            "keygate scan: warning: no file was scanned: ignore rules (.gitignore, .ignore) \
             left out every file; `--no-ignore` scans them"
        );
    }
    for finding in &mut report.findings {
        describe_managed(finding);
    }
    let text = match args.format {
        Format::Human => report.to_human(),
        Format::Json => report.to_json(),
        Format::Sarif => report.to_sarif(scanner.rules()),
    };
    match &args.output {
        Some(path) => write_owner_only(path, text.as_bytes(), args.no_redact)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            let written = out.write_all(text.as_bytes()).and_then(|()| {
                if text.ends_with('\n') {
                    Ok(())
                } else {
                    writeln!(out)
                }
            });
            match written {
                // A reader that went away (`| head`) saw what it wanted: no error, and
                // the exit code still says what the scan found (found by review: a
                // piped scan exited 2, which says the scan failed).
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                written => written.context(STDOUT_WRITE)?,
            }
        }
    }
    if args.staged && report.has_active() && args.format == Format::Human {
        eprintln!("commit blocked: remove the keys above (or mark reviewed test data with `keygate:allow`)");
    }
    if args.commit_msg.is_some() && report.has_active() && args.format == Format::Human {
        eprintln!(
            "commit blocked: remove the keys above from the commit message (git keeps the \
             message in the file named above)"
        );
    }
    Ok(report.exit_code())
}

/// Whether `path` is a directory with a regular file somewhere below it, outside `.git`
/// (looking at 10 000 entries at most).
fn holds_a_file(path: &Path) -> bool {
    let mut looked = 0;
    let mut dirs = vec![path.to_owned()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            looked += 1;
            if looked > 10_000 {
                return false;
            }
            match entry.file_type() {
                Ok(t) if t.is_file() => return true,
                Ok(t) if t.is_dir() && entry.file_name() != ".git" => dirs.push(entry.path()),
                _ => {}
            }
        }
    }
    false
}

/// Reads a fingerprint ignore file (see [`keygate_scan::parse_ignore`]).
fn read_ignore_file(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = String::from_utf8(read_bounded(path, MAX_IGNORE_FILE_LEN)?)
        .map_err(|_| anyhow::anyhow!("{} is not UTF-8 text", path.display()))?;
    Ok(keygate_scan::parse_ignore(&text))
}

/// Keyed fingerprints of every key in the vault (real API keys and secrets, virtual HMAC
/// secrets), for `--managed`. The scanner compares fingerprints of what it finds against
/// these, so no plaintext key is held by it or written anywhere. Each entry is named by
/// [`VaultKey::entry_name`], which [`describe_managed`] reads back.
pub fn managed_keys(unlocked: &crate::home::Unlocked) -> anyhow::Result<ManagedKeys> {
    let subkey = unlocked.master.derive_subkey("scan-fingerprint");
    let key: [u8; 32] = subkey
        .expose_secret()
        .try_into()
        .context("fingerprint key has the wrong length")?;
    let mut entries = Vec::new();
    for account in unlocked.store.sealed_accounts(&unlocked.master)? {
        let label = account.label.as_str();
        let api_key = account.open_api_key(&unlocked.master)?;
        let secret = account.open_secret(&unlocked.master)?;
        entries.push((
            VaultKey::AccountApiKey(label).entry_name(),
            ManagedKeys::fingerprint_secret(&key, api_key.expose_secret()),
        ));
        entries.push((
            VaultKey::AccountSecret(label).entry_name(),
            ManagedKeys::fingerprint_secret(&key, secret.expose_secret()),
        ));
    }
    for row in unlocked.store.client_rows()? {
        let material = row.and_then(|client| {
            let material = client.open_material(&unlocked.master)?;
            Ok((client, material))
        });
        let (client, material) = match material {
            Ok(opened) => opened,
            Err(e) => {
                eprintln!(
                    "keygate: a client is left out of the managed keys: {}",
                    crate::output::escape_controls(&e.to_string())
                );
                continue;
            }
        };
        if let keygate_store::ClientKeyMaterial::Hmac(secret) = material {
            entries.push((
                VaultKey::ClientSecret(client.name.as_str()).entry_name(),
                ManagedKeys::fingerprint_secret(&key, secret.expose_secret()),
            ));
        }
    }
    Ok(ManagedKeys::new(key, entries))
}

/// A key in the vault, as its entry in [`ManagedKeys`] names it: the scanner hands that
/// name back in a finding (`managed_account`) and knows nothing more of it, so the name
/// says whose key it is and which half. Account and client names hold no space
/// (`[A-Za-z0-9._-]`), so the words of a name read back unambiguously.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VaultKey<'a> {
    /// The API key of a real account (at the exchange), by its label.
    AccountApiKey(&'a str),
    /// The secret of a real account, by its label.
    AccountSecret(&'a str),
    /// The HMAC secret of a client (a virtual key keygate issued), by its name.
    ClientSecret(&'a str),
}

impl<'a> VaultKey<'a> {
    /// Its entry's name: `account main api-key`, `account main secret`, `client bot2 secret`.
    fn entry_name(self) -> String {
        match self {
            VaultKey::AccountApiKey(label) => format!("account {label} api-key"),
            VaultKey::AccountSecret(label) => format!("account {label} secret"),
            VaultKey::ClientSecret(name) => format!("client {name} secret"),
        }
    }

    /// The key an entry's name names; `None` for a name [`VaultKey::entry_name`] does not make.
    fn from_entry_name(name: &'a str) -> Option<VaultKey<'a>> {
        let words: Vec<&str> = name.split(' ').collect();
        match words[..] {
            ["account", label, "api-key"] => Some(VaultKey::AccountApiKey(label)),
            ["account", label, "secret"] => Some(VaultKey::AccountSecret(label)),
            ["client", name, "secret"] => Some(VaultKey::ClientSecret(name)),
            _ => None,
        }
    }

    /// Whose it is: `account main`, `client bot2`.
    fn owner(self) -> String {
        match self {
            VaultKey::AccountApiKey(label) | VaultKey::AccountSecret(label) => {
                format!("account {label}")
            }
            VaultKey::ClientSecret(name) => format!("client {name}"),
        }
    }

    /// Which half of a credential it is.
    fn role(self) -> Role {
        match self {
            VaultKey::AccountApiKey(_) => Role::Key,
            VaultKey::AccountSecret(_) | VaultKey::ClientSecret(_) => Role::Secret,
        }
    }

    /// What to do about it. A real account's key is replaced at the exchange and then in
    /// the vault; a client's secret is keygate's own, and only keygate can replace it.
    fn fix(self) -> String {
        match self {
            VaultKey::AccountApiKey(label) | VaultKey::AccountSecret(label) => format!(
                "this is the real key of keygate account {label}: make a new API key at the \
                 exchange and delete this one there now, then `keygate account rotate {label}`, \
                 and remove it from this file"
            ),
            VaultKey::ClientSecret(name) => format!(
                "this is the secret of keygate client {name} (a virtual key, not the \
                 exchange's): `keygate client rotate {name}` now (the leaked one stops \
                 working at once), and remove it from this file"
            ),
        }
    }
}

/// Rewrites a finding of a key in the vault (`--managed`) to say what the vault knows of
/// it: whose key it is (the scanner only repeats the entry's name), which half (a value
/// no rule took is a `secret` to the scanner, an API key too) and how to replace it.
/// Other findings are left as they are.
fn describe_managed(finding: &mut Finding) {
    let Some(name) = finding.managed_account.take() else {
        return;
    };
    let Some(key) = VaultKey::from_entry_name(&name) else {
        finding.managed_account = Some(name);
        return;
    };
    // A set of several parts is a rule's, which told their roles; a lone value is the
    // vault's key itself.
    if let [part] = &mut finding.parts[..] {
        part.role = key.role();
    }
    let roles: Vec<&str> = [Role::Key, Role::Secret, Role::Passphrase, Role::Any]
        .into_iter()
        .filter(|role| finding.parts.iter().any(|p| p.role == *role))
        .map(|role| match role {
            Role::Key => "API key",
            Role::Secret => "secret",
            Role::Passphrase => "passphrase",
            Role::Any => "value",
        })
        .collect();
    finding.title = format!(
        "key managed by keygate: {} of {}",
        roles.join(" + "),
        key.owner()
    );
    finding.fix = key.fix();
    finding.managed_account = Some(key.owner());
}

/// Writes a report readable by its owner only: one made with `--no-redact` holds live
/// credentials, so a file that already exists is made owner-only too. A regular file is
/// not reached through a symbolic link (one in a shared directory could point anywhere),
/// and one that another user owns is not written (made owner-only, it would be theirs
/// to read). A device or a pipe (`/dev/null`, `/dev/stdout`) is written as it is.
fn write_owner_only(path: &std::path::Path, text: &[u8], unredacted: bool) -> std::io::Result<()> {
    let mut file = open_report(path)?;
    let meta = file.metadata()?;
    if meta.is_file() {
        #[cfg(target_os = "linux")]
        if let Some(owner) = crate::home::other_owner(&meta) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "the file belongs to another user (uid {owner}); write the report to a \
                     file of your own"
                ),
            ));
        }
        #[cfg(unix)]
        if unredacted {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        file.set_len(0)?;
    }
    file.write_all(text)
}

/// Opens `path` to write a report into: made owner-only if new; through a symbolic link
/// only to what is not a regular file, and never made there.
#[cfg(unix)]
fn open_report(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let direct = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path);
    match direct {
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            let linked = std::fs::OpenOptions::new().write(true).open(path)?;
            if linked.metadata()?.is_file() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "a symbolic link to a file: name the file itself",
                ));
            }
            Ok(linked)
        }
        opened => opened,
    }
}

#[cfg(not(unix))]
fn open_report(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .open(path)
}

#[cfg(test)]
mod tests {
    use keygate_scan::{Part, Severity};

    use super::*;

    fn finding(managed: Option<&str>, roles: &[Role]) -> Finding {
        let parts = roles
            .iter()
            .enumerate()
            .map(|(i, role)| Part {
                role: *role,
                rule: "keygate.managed".to_owned(),
                line: i + 1,
                column: 1,
                redacted: "abcd…wxyz".to_owned(),
                value: None,
                encoding: None,
                offset: None,
                fingerprint: None,
            })
            .collect();
        Finding {
            rule: "keygate.managed".to_owned(),
            exchange: "managed".to_owned(),
            title: "key managed by keygate (account x)".to_owned(),
            severity: Severity::Critical,
            path: "keys.json".to_owned(),
            line: 1,
            column: 1,
            utf16_column: None,
            offset: None,
            parts,
            fingerprint: "00".to_owned(),
            suppressed: None,
            managed_account: managed.map(str::to_owned),
            provenance: None,
            fix: "rotate it".to_owned(),
        }
    }

    #[test]
    fn entry_names_read_back() {
        for key in [
            VaultKey::AccountApiKey("main"),
            VaultKey::AccountSecret("main.2"),
            VaultKey::ClientSecret("bot_2-a"),
        ] {
            assert_eq!(VaultKey::from_entry_name(&key.entry_name()), Some(key));
        }
        for other in ["account main", "client bot2", "account main api-key x", ""] {
            assert_eq!(VaultKey::from_entry_name(other), None, "{other}");
        }
    }

    /// A regression test: findings of keys in the vault read "(account account main)" and
    /// "(account client bot2)", an account's API key was called a secret, and a client's
    /// secret was to be rotated "at the exchange", which knows nothing of it.
    #[test]
    fn a_managed_finding_says_whose_key_it_is_which_half_and_how_to_replace_it() {
        let mut api_key = finding(Some("account main api-key"), &[Role::Secret]);
        describe_managed(&mut api_key);
        assert_eq!(
            api_key.title,
            "key managed by keygate: API key of account main"
        );
        assert_eq!(api_key.parts[0].role, Role::Key);
        assert_eq!(api_key.managed_account.as_deref(), Some("account main"));
        assert!(
            api_key.fix.contains("at the exchange")
                && api_key.fix.contains("`keygate account rotate main`"),
            "{}",
            api_key.fix
        );

        let mut client = finding(Some("client bot2 secret"), &[Role::Secret]);
        describe_managed(&mut client);
        assert_eq!(
            client.title,
            "key managed by keygate: secret of client bot2"
        );
        assert_eq!(client.parts[0].role, Role::Secret);
        assert_eq!(client.managed_account.as_deref(), Some("client bot2"));
        assert!(
            client.fix.contains("`keygate client rotate bot2`")
                && !client.fix.contains("at the exchange"),
            "{}",
            client.fix
        );

        // A rule's set keeps the roles the rule gave its parts.
        let mut set = finding(Some("account main secret"), &[Role::Key, Role::Secret]);
        describe_managed(&mut set);
        assert_eq!(
            set.title,
            "key managed by keygate: API key + secret of account main"
        );
        assert_eq!(set.parts[0].role, Role::Key);

        // A finding of no key in the vault is left alone.
        let mut other = finding(None, &[Role::Secret]);
        describe_managed(&mut other);
        assert_eq!(other.title, "key managed by keygate (account x)");
        assert_eq!(other.fix, "rotate it");
    }
}
