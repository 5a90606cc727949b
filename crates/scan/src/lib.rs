//! keygate-scan finds leaked crypto-exchange API keys in files, in every blob of a git
//! history, and in staged changes before they are committed.
//!
//! It knows what the keys of eight exchanges really look like (Binance, Coinbase, Kraken,
//! OKX, Bybit, KuCoin, Gate, Bitfinex): the rules are data, one TOML file per exchange under
//! `rules/`, each rule carrying positive and negative examples that a test checks. Values
//! are tied to an exchange by a keyword within a few lines or on an enclosing line of a
//! nested YAML/JSON block, validated offline (base64 length, P-256 parse, hex case), and
//! paired into credential sets (key + secret + passphrase). Published documentation
//! examples are reported as suppressed. Files and blobs in UTF-16 with a byte-order mark
//! are decoded and scanned as text (a BOM in front of text without NUL bytes is not UTF-16,
//! and does not hide that text); values and PEM keys written base64-encoded (a Kubernetes
//! secret's `data:`) are decoded where they stand, and so are the `%2B`, `%2F` and `%3D`
//! of a value percent-encoded in a URL, a form body or a DSN. Binary files (a SQLite
//! database, a `.pyc`, a `.class`, an executable) are scanned as the printable text in
//! them, as `strings` would show it, in ASCII and in UTF-16 (a .NET executable's string
//! literals, a registry hive), and their findings give the byte offset of each value. With
//! [`ManagedKeys`], an exact occurrence of a key keygate manages is a critical finding,
//! matched by keyed fingerprint only.
//!
//! It is not a general secret scanner (no AWS, GitHub or database credentials), and it never
//! contacts an exchange to check whether a key is live.
//!
//! Main types: [`Scanner`] (built with [`ScannerBuilder`]), [`Report`] and [`Finding`],
//! [`ManagedKeys`], [`RuleSet`].
//!
//! ```
//! use keygate_scan::Scanner;
//!
//! let scanner = Scanner::new();
//! let env = "KRAKEN_API_KEY=CJbfPw4tnbf/9en/ZmpewCTKEwmmzO18LXZcHQcu7HPLWre4l8+V9I3y\n\
//!            KRAKEN_API_SECRET=FRs+gtq09rR7OFtKj9BGhyOGS3u5vtY/EdiIBO9kD8NFtRX7w7LeJDSrX6cq1D8zmQmGkWFjksuhBvKOAWJohQ==\n";
//! let findings = scanner.scan_bytes(".env", env.as_bytes());
//! assert_eq!(findings.len(), 1); // key and secret are one credential set
//! assert_eq!(findings[0].exchange, "kraken");
//! // Kraken's documentation example: found, but suppressed.
//! assert!(!findings[0].is_active());
//! assert_eq!(findings[0].parts[0].redacted, "CJbf…9I3y");
//! ```
//!
//! Design notes and the command line live in `docs/scan.md`.

mod binary;
mod engine;
mod error;
mod hook;
mod managed;
mod redact;
mod report;
mod rules;
mod source;
mod text;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

pub use error::Error;
pub use hook::{install_hooks, Hook, Installed};
pub use managed::ManagedKeys;
pub use redact::redact;
pub use report::{Finding, Part, Provenance, Report, Severity, Stats, Suppression};
pub use rules::{Exchange, LabelMode, Role, Rule, RuleSet, BUILTIN_RULE_FILES};

/// Called from worker threads after each file or blob with (files scanned, bytes scanned).
pub type ProgressFn = dyn Fn(u64, u64) + Send + Sync;

/// Called with a warning that does not stop the scan (an unreadable file, a shallow
/// clone). It names paths, never file content; control characters in it are escaped
/// (`\x1b`), so it can be printed as it is.
pub type WarningFn = dyn Fn(&str) + Send + Sync;

/// The most worker threads a [`Scanner`] runs ([`ScannerBuilder::threads`]).
pub const MAX_THREADS: usize = 256;

/// Configures a [`Scanner`].
pub struct ScannerBuilder {
    rules: &'static RuleSet,
    managed: Option<ManagedKeys>,
    redact: bool,
    known: engine::Known,
    threads: usize,
    max_file_size: u64,
    respect_ignore_files: bool,
    progress: Option<Arc<ProgressFn>>,
    warning: Option<Arc<WarningFn>>,
}

impl Default for ScannerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ScannerBuilder {
    /// Built-in rules, redaction on, one thread per core, files read 64 MiB at a time.
    pub fn new() -> ScannerBuilder {
        ScannerBuilder {
            rules: RuleSet::builtin(),
            managed: None,
            redact: true,
            known: engine::Known::default(),
            threads: std::thread::available_parallelism()
                .map_or(2, usize::from)
                .min(MAX_THREADS),
            max_file_size: 64 * 1024 * 1024,
            respect_ignore_files: true,
            progress: None,
            warning: None,
        }
    }

    /// Uses another rule set.
    pub fn rules(mut self, rules: &'static RuleSet) -> Self {
        self.rules = rules;
        self
    }

    /// Reports exact occurrences of these managed keys as critical findings.
    pub fn managed(mut self, managed: ManagedKeys) -> Self {
        self.managed = Some(managed);
        self
    }

    /// Whether findings carry only redacted values (the default) or also the full values.
    pub fn redact(mut self, redact: bool) -> Self {
        self.redact = redact;
        self
    }

    /// Suppresses the sets with these fingerprints, and the values with these
    /// fingerprints (from an ignore file): a set is suppressed when its fingerprint is
    /// listed or every value in it (but a passphrase) is; its values not listed are then
    /// a finding of their own.
    pub fn ignore_fingerprints<I: IntoIterator<Item = String>>(mut self, fingerprints: I) -> Self {
        self.known.ignored.extend(fingerprints);
        self
    }

    /// Suppresses what a previous report found, set by set and value by value as
    /// [`ScannerBuilder::ignore_fingerprints`] does. A report written before values had
    /// fingerprints of their own still suppresses each set it holds, by its main value's
    /// fingerprint and its other values as the report showed them.
    pub fn baseline(mut self, previous: &Report) -> Self {
        self.known.add_baseline(previous);
        self
    }

    /// Number of worker threads, from one to [`MAX_THREADS`] (a number outside is
    /// brought inside: each thread has a stack and a share of the queues, and a count
    /// such as `u32::MAX` would ask for more memory than any machine has).
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n.clamp(1, MAX_THREADS);
        self
    }

    /// The most bytes of a file or blob held at once: a larger one is scanned in windows
    /// of this length; a commit or tag message over it is skipped, named in a warning.
    pub fn max_file_size(mut self, bytes: u64) -> Self {
        self.max_file_size = bytes;
        self
    }

    /// Whether a directory walk leaves out the files git does not track that `.ignore`
    /// files and, in a git work tree, `.gitignore` and git's global excludes file leave
    /// out (the default; a file git tracks is scanned whatever they say, since it is
    /// published), or scans everything: an ignored `.env` still holds its keys.
    pub fn respect_ignore_files(mut self, respect: bool) -> Self {
        self.respect_ignore_files = respect;
        self
    }

    /// Reports progress to `f`.
    pub fn progress(mut self, f: Arc<ProgressFn>) -> Self {
        self.progress = Some(f);
        self
    }

    /// Sends warnings to `f` instead of standard error.
    pub fn on_warning(mut self, f: Arc<WarningFn>) -> Self {
        self.warning = Some(f);
        self
    }

    /// Compiles the scanner.
    pub fn build(self) -> Scanner {
        Scanner {
            engine: engine::Engine::new(self.rules, self.known),
            managed: self.managed,
            redact: self.redact,
            threads: self.threads,
            max_file_size: self.max_file_size,
            respect_ignore_files: self.respect_ignore_files,
            progress: self.progress,
            warning: self.warning,
        }
    }
}

/// Scans buffers, directory trees, git history and staged changes.
pub struct Scanner {
    engine: engine::Engine,
    managed: Option<ManagedKeys>,
    redact: bool,
    threads: usize,
    max_file_size: u64,
    respect_ignore_files: bool,
    progress: Option<Arc<ProgressFn>>,
    warning: Option<Arc<WarningFn>>,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new()
    }
}

impl Scanner {
    /// A scanner with the default configuration.
    pub fn new() -> Scanner {
        ScannerBuilder::new().build()
    }

    /// A builder.
    pub fn builder() -> ScannerBuilder {
        ScannerBuilder::new()
    }

    /// The rules in use.
    pub fn rules(&self) -> &'static RuleSet {
        self.engine.rules()
    }

    /// Scans one buffer; `path` names it in findings and counts as context. A buffer that
    /// starts with a UTF-16 byte-order mark and has a NUL byte is decoded first: lines and
    /// columns are those of the decoded text (and when that NUL byte comes after the first
    /// 8 KiB, the bytes as they are are scanned too). A binary buffer (a NUL byte in the
    /// first 8 KiB) is scanned as the printable text in it, and its findings carry the
    /// byte offset of their values ([`Finding::offset`]).
    pub fn scan_bytes(&self, path: &str, data: &[u8]) -> Vec<Finding> {
        self.scan_readings(path, path, data).0
    }

    /// Scans each reading of `data` (see `text::readings`): text as text, and binary as
    /// the printable text in it. Returns the findings, suppressed as the ignore files and
    /// baseline say, and whether a reading was binary.
    fn scan_readings(&self, path: &str, context_path: &str, data: &[u8]) -> (Vec<Finding>, bool) {
        let mut findings = Vec::new();
        let mut binary = false;
        for text in text::readings(data) {
            let managed = self.managed.as_ref();
            if engine::is_binary(&text) {
                binary = true;
                findings.extend(self.engine.scan_binary(
                    path,
                    context_path,
                    &text,
                    managed,
                    self.redact,
                ));
            } else {
                let mut found = self
                    .engine
                    .scan(path, context_path, &text, managed, self.redact);
                text::set_editor_columns(&text, &mut found);
                findings.extend(found);
            }
        }
        (findings, binary)
    }

    /// Scans files and directory trees, honouring `.ignore` and, in a git work tree,
    /// `.gitignore` for the files git does not track (a root named explicitly is
    /// scanned even if ignored), decoding UTF-16 files that start with a byte-order mark,
    /// scanning binary files as the printable text in them, files over the size limit in
    /// windows, and following no symbolic links. A file or
    /// directory that cannot be read is counted as skipped and named in a warning; only a
    /// root that does not exist is an error.
    pub fn scan_paths<P: AsRef<Path>>(&self, paths: &[P]) -> Result<Report, Error> {
        let roots: Vec<PathBuf> = paths.iter().map(|p| p.as_ref().to_path_buf()).collect();
        self.run(|c| self.walk(&roots, c))
    }

    /// Scans every unique blob of every commit reachable from any ref or reflog entry of
    /// the repository at `repo`, root commits included, the blobs nothing reaches, and
    /// the messages of its commits and annotated tags; each secret is reported once, naming the first commit that contains it, but at each
    /// path in `HEAD` that still holds it, and again where it came with a part (a key)
    /// no reported occurrence has (see `docs/scan.md` for which occurrence gives the
    /// location).
    pub fn scan_git_history(&self, repo: &Path) -> Result<Report, Error> {
        self.run(|c| self.history(repo, c))
    }

    /// Scans what is staged for the next commit in the repository at `repo`.
    pub fn scan_staged(&self, repo: &Path) -> Result<Report, Error> {
        self.run(|c| self.staged(repo, c))
    }

    /// Scans the commit message in the file at `path`, as git gives it to a `commit-msg`
    /// hook, but for what git never keeps of it: everything from the scissors line of
    /// `git commit -v` on (the staged diff, where a key being removed from a file shows)
    /// is blanked, so that line numbers stay the file's. Comment lines are scanned: a
    /// message given with `-m` keeps them.
    pub fn scan_commit_message(&self, path: &Path) -> Result<Report, Error> {
        self.run(|counters| {
            let data = std::fs::read(path).map_err(|source| Error::Io {
                path: path.to_owned(),
                source,
            })?;
            let comments = hook::comment_strings(Path::new("."));
            let kept = hook::message_as_kept(&data, &comments);
            counters.scanned.fetch_add(1, Ordering::Relaxed);
            counters
                .bytes
                .fetch_add(data.len() as u64, Ordering::Relaxed);
            Ok(self.scan_bytes(&path.to_string_lossy(), &kept))
        })
    }

    fn run(
        &self,
        scan: impl FnOnce(&source::Counters) -> Result<Vec<Finding>, Error>,
    ) -> Result<Report, Error> {
        let t0 = Instant::now();
        let counters = source::Counters::default();
        let mut findings = scan(&counters)?;
        findings.sort_by(|a, b| (&a.path, a.line, a.column).cmp(&(&b.path, b.line, b.column)));
        Ok(Report {
            findings,
            stats: Stats {
                scanned: counters.scanned.load(Ordering::Relaxed),
                binary: counters.binary.load(Ordering::Relaxed),
                bytes: counters.bytes.load(Ordering::Relaxed),
                skipped: counters.skipped.load(Ordering::Relaxed),
                too_large: counters.too_large.load(Ordering::Relaxed),
                elapsed_ms: u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX),
            },
        })
    }

    /// Reports a warning that does not stop the scan. A warning names paths, which come
    /// from the scanned tree: control characters in it are escaped, as in the human report.
    fn warn(&self, message: &str) {
        let message = keygate_core::escape_controls(message);
        match &self.warning {
            Some(f) => f(&message),
            None => eprintln!("keygate scan: warning: {message}"),
        }
    }
}

/// Parses the text of a fingerprint ignore file: one fingerprint per line (the first word),
/// `#` comments.
pub fn parse_ignore(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Scans `data` for the `scan_bytes` fuzz target (see `fuzz/`), with a path that names
/// every exchange so that every rule looks at every value; returns how many findings
/// were made.
///
/// Panics only if the scanner does, or if a finding stands outside `data`: a line past
/// the buffer's last, or a line or column 0.
#[cfg(any(test, feature = "fuzzing"))]
pub fn fuzz_scan(data: &[u8]) -> usize {
    static SCANNER: std::sync::OnceLock<Scanner> = std::sync::OnceLock::new();
    let scanner = SCANNER.get_or_init(|| Scanner::builder().redact(false).build());
    let path = "binance/coinbase/kraken/okx/bybit/kucoin/gate/bitfinex.env";
    let findings = scanner.scan_bytes(path, data);
    // A decoded UTF-16 reading has no more line ends than the buffer has 0x0A bytes.
    let last_line = memchr::memchr_iter(b'\n', data).count() + 1;
    for f in &findings {
        for (line, column) in
            std::iter::once((f.line, f.column)).chain(f.parts.iter().map(|p| (p.line, p.column)))
        {
            assert!((1..=last_line).contains(&line) && column >= 1, "{f:?}");
        }
    }
    findings.len()
}

#[cfg(test)]
mod tests {
    use super::{fuzz_scan, ScannerBuilder, MAX_THREADS};

    /// A regression test (found by review): `--threads 4294967295` asked for 137 GB, and
    /// a count near `usize::MAX` overflowed the queue's size.
    #[test]
    fn a_thread_count_is_kept_within_bounds() {
        assert_eq!(
            ScannerBuilder::new().threads(usize::MAX).threads,
            MAX_THREADS
        );
        assert_eq!(ScannerBuilder::new().threads(0).threads, 1);
        assert_eq!(ScannerBuilder::new().threads(3).threads, 3);
    }

    #[test]
    fn fuzz_scan_survives_a_corpus_of_tricky_inputs() {
        let key = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A";
        let secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
        let env = format!("BINANCE_API_KEY={key}\nBINANCE_API_SECRET={secret}\n");
        let cases: [(&[u8], usize); 10] = [
            (b"", 0),
            (b"LS0tLS1CRUdJTi", 0),
            (b"LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0t\n", 0),
            (b"-----BEGIN EC PRIVATE KEY-----\nMHcC", 0),
            (
                b"-----BEGIN EC PRIVATE KEY-----\n-----END EC PRIVATE KEY-----",
                0,
            ),
            (b"\xff\xfe\x00\x00\n\n", 0),
            (b"\xfe\xff\x00L\x00S\x000\x00t\x00\n", 0),
            (b"key: \xc3\x28\xa0\xa1 =====", 0),
            (
                b"LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0tCk1IY0NBUUVFSUFBQUFBQUFBQUFB\n\
                  QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBb0FvR0NDcUdTTTQ5\n",
                0,
            ),
            (env.as_bytes(), 1),
        ];
        for (data, expected) in cases {
            assert_eq!(
                fuzz_scan(data),
                expected,
                "{}",
                String::from_utf8_lossy(data)
            );
        }
    }
}
