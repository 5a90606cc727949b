//! `keygate scan`: find leaked exchange API keys in files, git history or staged changes.
//!
//! Exit codes: 0 nothing found (or only suppressed findings), 1 findings, 2 error.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use keygate_scan::{ManagedKeys, Report, Scanner};

use crate::output::STDOUT_WRITE;

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
    /// Scan every blob of every commit of the repository, once each.
    #[arg(long, conflicts_with = "staged")]
    pub git: bool,
    /// Scan only what is staged for the next commit (for pre-commit hooks).
    #[arg(long)]
    pub staged: bool,
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
    /// Install a git pre-commit hook running `keygate scan --staged` in the current repository.
    #[arg(long, exclusive = true)]
    pub install_hook: bool,
    /// A fingerprint ignore file (default: .keygateignore in the scanned root, if present).
    #[arg(long, value_name = "FILE")]
    pub ignore_file: Vec<PathBuf>,
    /// Scan what .gitignore and .ignore files leave out too: a file committed before it
    /// was ignored is published all the same, and an ignored .env still holds its keys.
    #[arg(long, conflicts_with_all = ["git", "staged"])]
    pub no_ignore: bool,
    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Never show the progress indicator.
    #[arg(long)]
    pub no_progress: bool,
}

/// Runs a scan; returns the process exit code: 0 clean, 1 findings, 2 error.
pub fn run(args: &ScanArgs, managed: Option<ManagedKeys>) -> i32 {
    match scan(args, managed) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("keygate scan: error: {e:#}");
            2
        }
    }
}

fn scan(args: &ScanArgs, managed: Option<ManagedKeys>) -> anyhow::Result<i32> {
    if args.install_hook {
        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        let path =
            keygate_scan::install_hook(&cwd).context("cannot install the pre-commit hook")?;
        eprintln!("installed pre-commit hook {}", path.display());
        return Ok(0);
    }
    if args.managed && managed.is_none() {
        bail!("--managed needs the unlocked vault");
    }
    let roots: Vec<PathBuf> = if args.paths.is_empty() {
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
        builder = builder.threads(n);
    }
    for file in &args.ignore_file {
        let fps = keygate_scan::read_ignore_file(file)
            .with_context(|| format!("cannot read ignore file {}", file.display()))?;
        builder = builder.ignore_fingerprints(fps);
    }
    if args.ignore_file.is_empty() {
        for root in &roots {
            let dir = if root.is_dir() {
                root.as_path()
            } else {
                root.parent().unwrap_or(Path::new("."))
            };
            let default = dir.join(".keygateignore");
            if default.is_file() {
                builder = builder.ignore_fingerprints(keygate_scan::read_ignore_file(&default)?);
            }
        }
    }
    if let Some(b) = &args.baseline {
        builder = builder.baseline(&keygate_scan::read_baseline(b)?);
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
    } else {
        scanner.scan_paths(&roots)
    };
    if show_progress {
        eprint!("\r\x1b[2K");
    }
    let report: Report = report.context("scan failed")?;
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
            out.write_all(text.as_bytes()).context(STDOUT_WRITE)?;
            if !text.ends_with('\n') {
                writeln!(out).context(STDOUT_WRITE)?;
            }
        }
    }
    if args.staged && report.has_active() && args.format == Format::Human {
        eprintln!("commit blocked: remove the keys above (or mark reviewed test data with `keygate:allow`)");
    }
    Ok(report.exit_code())
}

/// Keyed fingerprints of every key in the vault (real API keys and secrets, virtual HMAC
/// secrets), for `--managed`. The scanner compares fingerprints of what it finds against
/// these, so no plaintext key is held by it or written anywhere.
pub fn managed_keys(unlocked: &crate::home::Unlocked) -> anyhow::Result<ManagedKeys> {
    let subkey = unlocked.master.derive_subkey("scan-fingerprint");
    let key: [u8; 32] = subkey
        .expose_secret()
        .try_into()
        .context("fingerprint key has the wrong length")?;
    let mut entries = Vec::new();
    for account in unlocked.store.sealed_accounts(&unlocked.master)? {
        let name = format!("account {}", account.label);
        let api_key = account.open_api_key(&unlocked.master)?;
        let secret = account.open_secret(&unlocked.master)?;
        entries.push((
            name.clone(),
            ManagedKeys::fingerprint_secret(&key, api_key.expose_secret()),
        ));
        entries.push((
            name,
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
                eprintln!("keygate: a client is left out of the managed keys: {e}");
                continue;
            }
        };
        if let keygate_store::ClientKeyMaterial::Hmac(secret) = material {
            let name = format!("client {}", client.name);
            entries.push((
                name,
                ManagedKeys::fingerprint_secret(&key, secret.expose_secret()),
            ));
        }
    }
    Ok(ManagedKeys::new(key, entries))
}

/// Writes a report readable by its owner only: one made with `--no-redact` holds live
/// credentials, so a file that already exists is made owner-only too.
fn write_owner_only(path: &std::path::Path, text: &[u8], unredacted: bool) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    #[cfg(unix)]
    if unredacted {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(text)
}
