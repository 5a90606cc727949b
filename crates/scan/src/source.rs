//! Where bytes come from: directory trees, every blob in git history, the git index.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::engine::MAX_FINDINGS_PER_BUFFER;
use crate::report::{Finding, Provenance};
use crate::{Error, Role, Scanner};

/// Counters shared by the worker threads.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) scanned: AtomicU64,
    pub(crate) binary: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) too_large: AtomicU64,
}

impl Scanner {
    /// Scans one file or blob, its findings suppressed as the ignore file and baseline say;
    /// `context_path` is the part of `path` searched for exchange keywords (see
    /// [`context_path`]). UTF-16 with a byte-order mark is decoded before the binary check
    /// (its ASCII characters come with NUL bytes; see `text::decode`), and a binary one is
    /// scanned as the printable text in it (see [`crate::binary`]); the size limit and the
    /// byte counter are about the bytes as stored.
    fn scan_counted(
        &self,
        counters: &Counters,
        path: &str,
        context_path: &str,
        data: &[u8],
    ) -> Vec<Finding> {
        if data.len() as u64 > self.max_file_size {
            self.too_large(counters, path, data.len() as u64);
            return Vec::new();
        }
        let (findings, binary) = self.scan_readings(path, context_path, data);
        if findings.iter().filter(|f| f.is_active()).count() >= MAX_FINDINGS_PER_BUFFER {
            self.warn_capped(path);
        }
        self.count_scanned(counters, data.len() as u64, binary);
        findings
    }

    /// Counts a file or blob of `size` bytes scanned (a binary one when `binary`), and
    /// tells the progress indicator.
    fn count_scanned(&self, counters: &Counters, size: u64, binary: bool) {
        if binary {
            counters.binary.fetch_add(1, Ordering::Relaxed);
        }
        let scanned = counters.scanned.fetch_add(1, Ordering::Relaxed) + 1;
        let bytes = counters.bytes.fetch_add(size, Ordering::Relaxed) + size;
        if let Some(p) = &self.progress {
            p(scanned, bytes);
        }
    }

    /// Warns that `path` holds [`MAX_FINDINGS_PER_BUFFER`] findings or more, of which
    /// only the first are reported.
    fn warn_capped(&self, path: &str) {
        self.warn(&format!(
            "{path}: {MAX_FINDINGS_PER_BUFFER} findings or more; only the first are reported"
        ));
    }

    /// Scans a file or blob of `size` bytes, over the size limit, read from `reader`, in
    /// windows of the limit's length (found by review: such files were skipped, so a
    /// 72 MB `dump.sql` holding keys passed `scan .` and `--git`). Each window begins at a
    /// line start about [`WINDOW_OVERLAP`] bytes before the end of the one before (in the
    /// middle of a line longer than that), and the two share the findings of their
    /// overlap at its middle: each value is scanned with at least half the overlap of
    /// text before and after it, more than the lines its keywords and partners are looked
    /// for in (found by review: a window that took the whole overlap missed a key whose
    /// exchange was named on the line before its start). Findings are placed in the
    /// whole file (lines and byte offsets); at most [`MAX_FINDINGS_PER_BUFFER`] active
    /// ones are kept, the file's scan ending there with a warning. Memory stays that of
    /// one window.
    fn scan_in_windows(
        &self,
        counters: &Counters,
        path: &str,
        context_path: &str,
        reader: &mut dyn Read,
        size: u64,
    ) -> io::Result<Vec<Finding>> {
        let window = usize::try_from(self.max_file_size)
            .unwrap_or(usize::MAX)
            .max(64);
        let overlap = WINDOW_OVERLAP.min(window / 4);
        let mut buf = Vec::with_capacity(window);
        let mut found = Vec::new();
        let mut active = 0;
        let (mut lines_before, mut bytes_before) = (0usize, 0u64);
        // How far into its line the window begins (a line longer than a window), in
        // bytes and UTF-16 units (found by review: a value on such a window's first line
        // was placed at its column in the window, not in the line).
        let mut columns_before = (0usize, 0usize);
        // Where, in this window, the findings the window before did not take begin.
        let mut taken_before = 0;
        let mut binary = false;
        'windows: loop {
            let want = window - buf.len();
            let got = reader.take(want as u64).read_to_end(&mut buf)?;
            let last = got < want;
            // Where the next window begins, and where this one's findings end.
            let (next, cut) = if last {
                (buf.len(), buf.len())
            } else {
                let from = buf.len() - overlap;
                let next = memchr::memrchr(b'\n', &buf[..from]).map_or(from, |nl| nl + 1);
                (next, buf.len() - overlap / 2)
            };
            let lines = crate::engine::LineIndex::new(&buf);
            let (findings, window_binary) = self.scan_readings(path, context_path, &buf);
            binary |= window_binary;
            for mut finding in findings {
                // A text finding's place, from its line and (byte) column (a line of
                // decoded UTF-16 counted as if it were a raw line: never past the last).
                let at = finding.offset.map_or_else(
                    || {
                        let line = finding.line.saturating_sub(1);
                        lines.start(line.min(lines.count().saturating_sub(1)))
                            + finding.column.saturating_sub(1)
                    },
                    |offset| usize::try_from(offset).unwrap_or(usize::MAX),
                );
                if at < taken_before || at >= cut {
                    continue;
                }
                if active >= MAX_FINDINGS_PER_BUFFER {
                    self.warn_capped(path);
                    break 'windows;
                }
                active += usize::from(finding.is_active());
                finding.shift(lines_before, bytes_before, columns_before);
                found.push(finding);
            }
            if last {
                break;
            }
            columns_before = match memchr::memrchr(b'\n', &buf[..next]) {
                Some(nl) => (next - nl - 1, crate::text::utf16_units(&buf[nl + 1..next])),
                None => (
                    columns_before.0 + next,
                    columns_before.1 + crate::text::utf16_units(&buf[..next]),
                ),
            };
            lines_before += memchr::memchr_iter(b'\n', &buf[..next]).count();
            bytes_before += next as u64;
            taken_before = cut - next;
            buf.drain(..next);
        }
        self.count_scanned(counters, size, binary);
        Ok(found)
    }

    /// Scans the Git LFS object `oid` in `lfs_objects` (the repository's `lfs/objects`,
    /// canonical) for the pointer blob at `path`, in windows as a large file is: `None`
    /// when it is not there as a regular file inside that directory (not fetched; a link
    /// out of it or a pipe is not read).
    fn scan_lfs_object(
        &self,
        counters: &Counters,
        lfs_objects: &Path,
        oid: &str,
        path: &str,
        context_path: &str,
    ) -> Option<Vec<Finding>> {
        let file = lfs_objects.join(&oid[..2]).join(&oid[2..4]).join(oid);
        let inside = file
            .parent()
            .and_then(|dir| std::fs::canonicalize(dir).ok())
            .is_some_and(|dir| dir.starts_with(lfs_objects));
        if !inside {
            return None;
        }
        let mut opened = open_without_blocking(&file, Links::Refuse).ok()??;
        let meta = opened.metadata().ok().filter(|m| m.is_file())?;
        match self.scan_in_windows(counters, path, context_path, &mut opened, meta.len()) {
            Ok(found) => Some(found),
            Err(e) => {
                self.warn(&format!("{path}: cannot read its Git LFS object: {e}"));
                counters.skipped.fetch_add(1, Ordering::Relaxed);
                Some(Vec::new())
            }
        }
    }

    /// Scans the file at `path`, over the size limit, in windows
    /// ([`Scanner::scan_in_windows`]), opened as [`read_regular`] opens a file.
    fn scan_large_file(
        &self,
        counters: &Counters,
        path: &Path,
        context_path: &str,
        links: Links,
    ) -> io::Result<Vec<Finding>> {
        let Some(mut file) = open_without_blocking(path, links)? else {
            return Ok(Vec::new());
        };
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Ok(Vec::new());
        }
        let name = path.to_string_lossy();
        self.scan_in_windows(counters, &name, context_path, &mut file, meta.len())
    }

    /// Counts a file or blob of at least `size` bytes skipped for being over the size limit, and
    /// names it in a warning: a key in it is not found, and whoever runs the scan (or
    /// commits through the hook) has to know which file to look at.
    fn too_large(&self, counters: &Counters, path: &str, size: u64) {
        counters.skipped.fetch_add(1, Ordering::Relaxed);
        counters.too_large.fetch_add(1, Ordering::Relaxed);
        self.warn(&format!(
            "{path}: {size} bytes or more, over the {} byte limit: not scanned",
            self.max_file_size
        ));
    }

    /// Walks `roots` in parallel, honouring `.gitignore` unless told not to, skipping `.git`,
    /// following no symlinks.
    /// A root that does not exist is an error; a file or directory that cannot be read is
    /// skipped with a warning, so one bad entry does not cost the report of all the others.
    ///
    /// Ignore rules only skip files git does not track: a tracked file is published
    /// whatever an ignore file says of it (added with `--force` or before the rule, listed
    /// in `.ignore`, which git does not read). A `.gitignore` (or the global excludes
    /// file) hides nothing outside a git work tree: it is git's, and says what git leaves
    /// out of a repository; a copy of a project without its `.git` (a deployed bot, an
    /// unpacked archive) keeps its `.gitignore`, and its ignored `.env` still holds the
    /// keys (found by review: `keygate scan /opt/bot` found none). `.ignore` files hide
    /// files anywhere. Ignore files above the roots are not read, nor a repository's
    /// `info/exclude`; one that cannot be read safely keeps its directory from being
    /// entered ([`ignore_files_readable`]). The files git tracks in each root and in each
    /// repository the walk comes to are listed as it comes to them, before their
    /// directory is read; those the walk never comes to are read after it, so each is
    /// read once.
    pub(crate) fn walk(
        &self,
        roots: &[PathBuf],
        counters: &Counters,
    ) -> Result<Vec<Finding>, Error> {
        // The walk tells a work tree by the `.git` in its top directory, and does not look
        // above the roots; a root below a work tree's top is known to be in one here, and
        // walked apart, its `.gitignore` files read everywhere in it.
        let (in_a_work_tree, others): (Vec<PathBuf>, Vec<PathBuf>) = roots
            .iter()
            .cloned()
            .partition(|root| below_a_work_tree_top(root));
        let mut found = self.walk_apart(&others, counters, GitIgnores::InWorkTrees)?;
        found.extend(self.walk_apart(&in_a_work_tree, counters, GitIgnores::Everywhere)?);
        Ok(found)
    }

    /// Walks `roots`, reading their `.gitignore` files as `git_ignores` says.
    fn walk_apart(
        &self,
        roots: &[PathBuf],
        counters: &Counters,
        git_ignores: GitIgnores,
    ) -> Result<Vec<Finding>, Error> {
        let Some(first) = roots.first() else {
            return Ok(Vec::new());
        };
        for r in roots {
            if let Err(source) = std::fs::symlink_metadata(r) {
                return Err(Error::Io {
                    path: r.clone(),
                    source,
                });
            }
            // A pipe or a device named on the command line (`/dev/stdin`, `<(...)`) is
            // not read (it could block, or never end), and is no clean scan either.
            if std::fs::metadata(r).is_ok_and(|meta| !meta.is_file() && !meta.is_dir()) {
                return Err(Error::Io {
                    path: r.clone(),
                    source: io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "not a regular file or a directory (a pipe, a socket or a device \
                         is not read); save what it holds to a file, and scan that",
                    ),
                });
            }
        }
        let respect = self.respect_ignore_files;
        // A root's ignore files are read before the walk begins: one that cannot be read
        // safely stops the scan. Those of the directories above the roots are not read
        // at all: anyone may write one in a shared directory (`/tmp/.gitignore`).
        if respect {
            for root in roots {
                if let Err(trouble) = ignore_files_readable(root, Links::Follow) {
                    return Err(Error::Io {
                        path: root.clone(),
                        source: io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("{trouble}; scan with --no-ignore, or fix it"),
                        ),
                    });
                }
            }
        }
        let mut builder = ignore::WalkBuilder::new(first);
        for r in &roots[1..] {
            builder.add(r);
        }
        let unwalked = Arc::new(Unwalked::default());
        // Directories whose ignore files could not be read safely: not entered, told
        // after the walk. The files a repository there tracks are listed all the same,
        // and read after the walk.
        let unentered: Arc<Mutex<Vec<(PathBuf, String)>>> = Arc::default();
        let (refusing, listing) = (Arc::clone(&unentered), Arc::clone(&unwalked));
        builder
            .hidden(false)
            .follow_links(false)
            .require_git(git_ignores == GitIgnores::InWorkTrees)
            .git_ignore(respect)
            // A repository's `info/exclude` (and, to find it from a worktree's or a
            // submodule's `.git` file, whatever files that names) is not read: it can only
            // leave out files git does not track, which are scanned instead.
            .git_exclude(false)
            .git_global(respect)
            .ignore(respect)
            .parents(false)
            .threads(self.threads)
            .filter_entry(move |e| {
                if e.file_name() == ".git" {
                    return false;
                }
                let is_dir = e.file_type().is_some_and(|t| t.is_dir());
                if !respect || !is_dir || e.depth() == 0 {
                    return true;
                }
                match ignore_files_readable(e.path(), Links::Refuse) {
                    Ok(()) => true,
                    Err(mut trouble) => {
                        if let Err(unlisted) = listing.come_to(e) {
                            trouble.push_str(&format!(
                                "; the files git tracks in it cannot be listed either \
                                 ({unlisted})"
                            ));
                        }
                        lock(&refusing).push((e.path().to_owned(), trouble));
                        false
                    }
                }
            });
        let found = Mutex::new(Vec::new());
        builder.build_parallel().run(|| {
            Box::new(|entry| {
                let entry = match entry {
                    Ok(e) => e,
                    Err(e) => {
                        // An I/O error is a directory or entry that went unscanned; other
                        // errors are bad ignore rules. Messages name paths, not content.
                        if e.io_error().is_some() {
                            counters.skipped.fetch_add(1, Ordering::Relaxed);
                            self.warn(&format!("cannot read {e}; skipped"));
                        } else {
                            self.warn(&e.to_string());
                        }
                        return ignore::WalkState::Continue;
                    }
                };
                if respect {
                    if let Err(trouble) = unwalked.come_to(&entry) {
                        counters.skipped.fetch_add(1, Ordering::Relaxed);
                        self.warn(&format!(
                            "cannot list the files git tracks in {} ({trouble}): the files \
                             its ignore rules hide are not scanned, tracked or not \
                             (`--no-ignore` scans them)",
                            entry.path().display()
                        ));
                    }
                }
                if !entry.file_type().is_some_and(|t| t.is_file()) {
                    return ignore::WalkState::Continue;
                }
                // A root is read as the user named it, through a link; what the walk
                // finds is not (the walk reports a link as a link, not as a file, but it
                // may have been put in place of the file since).
                let links = if entry.depth() == 0 {
                    Links::Follow
                } else {
                    Links::Refuse
                };
                match read_regular(entry.path(), self.max_file_size, links) {
                    Ok(FileRead::Bytes(data)) => {
                        let name = entry.path().to_string_lossy();
                        let context = context_path(entry.path(), entry.depth());
                        let f = self.scan_counted(counters, &name, &context, &data);
                        if !f.is_empty() {
                            lock(&found).extend(f);
                        }
                    }
                    Ok(FileRead::TooLarge) => {
                        let context = context_path(entry.path(), entry.depth());
                        match self.scan_large_file(counters, entry.path(), &context, links) {
                            Ok(f) if !f.is_empty() => lock(&found).extend(f),
                            Ok(_) => {}
                            Err(e) => {
                                counters.skipped.fetch_add(1, Ordering::Relaxed);
                                self.warn(&format!(
                                    "cannot read {}: {e}; skipped",
                                    entry.path().display()
                                ));
                            }
                        }
                    }
                    Ok(FileRead::NotRegular) => {}
                    Err(e) => {
                        counters.skipped.fetch_add(1, Ordering::Relaxed);
                        self.warn(&format!(
                            "cannot read {}: {e}; skipped",
                            entry.path().display()
                        ));
                    }
                }
                ignore::WalkState::Continue
            })
        });
        for (dir, trouble) in lock(&unentered).drain(..) {
            counters.skipped.fetch_add(1, Ordering::Relaxed);
            self.warn(&format!(
                "{}: {trouble}: not entered (the files git tracks in it are scanned; \
                 `--no-ignore` scans the rest)",
                dir.display()
            ));
        }
        let mut found = found
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The tracked files an ignore rule hid from the walk, in a stable order.
        let mut unwalked: Vec<(PathBuf, Tracked)> = unwalked.take_files().into_iter().collect();
        unwalked.sort();
        for (full, tracked) in unwalked {
            let depth = tracked.depth;
            // A tracked path through a symbolic link (an index that lists `p/environ`
            // beside a link `p -> /proc/self`) leads out of the repository: git checks
            // out nothing beyond a link, and neither is anything read there.
            if through_a_link(&full, tracked.repository_components) {
                continue;
            }
            match read_regular(&full, self.max_file_size, Links::Refuse) {
                Ok(FileRead::Bytes(data)) => {
                    let name = full.to_string_lossy();
                    let context = context_path(&full, depth);
                    found.extend(self.scan_counted(counters, &name, &context, &data));
                }
                Ok(FileRead::TooLarge) => {
                    let context = context_path(&full, depth);
                    match self.scan_large_file(counters, &full, &context, Links::Refuse) {
                        Ok(f) => found.extend(f),
                        Err(e) => {
                            counters.skipped.fetch_add(1, Ordering::Relaxed);
                            self.warn(&format!("cannot read {}: {e}; skipped", full.display()));
                        }
                    }
                }
                // A committed symbolic link is published as the path it holds, not as
                // what it points to; a submodule is walked as the repository it is.
                Ok(FileRead::NotRegular) => {}
                // Tracked, and deleted from the working tree (or outside a sparse
                // checkout): nothing to read. `--staged` and `--git` read what git holds.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    counters.skipped.fetch_add(1, Ordering::Relaxed);
                    self.warn(&format!("cannot read {}: {e}; skipped", full.display()));
                }
            }
        }
        Ok(found)
    }

    /// Every unique blob reachable from any ref or reflog entry (a commit amended or
    /// rebased away, an older stash: still in the repository until its reflog expires),
    /// or from a commit nothing reaches (a deleted branch whose reflog entries expired),
    /// each with the first commit that has it; then the blobs nothing reaches (added and
    /// never committed), which stay in the repository's directory (and in a tarball or a
    /// Docker build context of it, not in a clone) until `git gc` prunes them, as the
    /// commits do. Those have no commit and no path of their own: their finding's path
    /// says `(unreachable blob ID)`.
    pub(crate) fn history(&self, repo: &Path, counters: &Counters) -> Result<Vec<Finding>, Error> {
        git_store_readable(repo).map_err(|message| Error::Git {
            command: "log".into(),
            message,
        })?;
        // Bounded, as every command that answers at once is: a `config` that includes a
        // pipe stops the scan here, not in a command that streams.
        git(repo, &["rev-parse", "--git-dir"])?;
        if git(repo, &["rev-parse", "--is-shallow-repository"]).is_ok_and(|o| o.trim() == "true") {
            self.warn(&format!(
                "{} is a shallow clone: history before its graft is not scanned \
                 (`git fetch --unshallow` fetches it)",
                repo.display()
            ));
        }
        // The objects nothing reaches: the commits among them (a deleted branch whose
        // reflog expired) are walked with the rest, so that their blobs come with the
        // paths and commits they had.
        let (unreachable, trouble) = unreachable_objects(repo);
        if let Some(trouble) = trouble {
            self.warn(&format!(
                "objects no ref reaches in {}: {trouble}",
                repo.display()
            ));
        }
        let commits: Vec<u8> = unreachable
            .commits
            .iter()
            .flat_map(|id| [id.as_bytes(), b"\n"].concat())
            .collect();
        // `--root` shows the root commits' files as added, whatever `log.showRoot` says.
        // `--date-order` with `--reverse` lists a commit after its parents even when their
        // times tie (the reflog's entries would otherwise come in another order), and
        // otherwise oldest first, so that of two commits with the same author time the
        // ancestor, or the earlier (a cherry-pick's original), is named.
        let log_args = |reflog: bool, unreachable: bool| {
            let mut args = vec!["-c", "core.quotePath=false", "log", "--all"];
            if reflog {
                args.push("--reflog");
            }
            if unreachable {
                args.push("--stdin");
            }
            args.extend([
                "--date-order",
                "--root",
                "--reverse",
                "--no-renames",
                // Each merge against each parent, whatever `log.diffMerges` the repository
                // sets (`combined` lists no blob ids `--raw` can be read for).
                "--diff-merges=separate",
                "--no-show-signature",
                "--raw",
                "--no-abbrev",
                "--diff-filter=AMT",
                "--format=%x01%H %at",
            ]);
            args
        };
        // A commit that cannot be read (a corrupted repository: fsck does not check what
        // nothing reaches) fails the walk: then the walk is made without the commits
        // nothing reaches, then without those only reflogs reach, each time saying what
        // was not walked (their blobs are still scanned, without the commit and path
        // they came in). The log is read as it comes: a long history's is never held
        // whole.
        let walk = |reflog: bool, unreachable: Vec<u8>| -> Result<Listed, Error> {
            let mut listed = Listed::default();
            let args = log_args(reflog, !unreachable.is_empty());
            git_lines(repo, &args, unreachable, |line| listed.read(line))?;
            Ok(listed)
        };
        let unwalked = |what: &str, e: &Error| {
            self.warn(&format!(
                "{what} ({e}): their blobs are scanned, without the commit and path they \
                 came in"
            ));
        };
        // The walks, each with less than the one before. When none can be made, every
        // object in the store is still scanned, below, without commit or path (found by
        // review: the scan failed, and an intact blob holding a key went unreported). A
        // walk that was stopped is not tried again another way: whatever stopped it
        // stops every walk (found by review: three walks of 10 minutes each).
        let name = repo.display();
        let mut walks = vec![
            (
                true,
                commits,
                format!("the commits nothing reaches in {name} could not all be walked"),
            ),
            (
                true,
                Vec::new(),
                format!("the commits only reflogs reach in {name} could not be walked"),
            ),
            (
                false,
                Vec::new(),
                format!("the history of {name} could not be walked"),
            ),
        ];
        if walks[0].1.is_empty() {
            walks.remove(0);
        }
        let mut listed = Listed::default();
        for (reflog, unreachable, failed) in walks {
            match walk(reflog, unreachable) {
                Ok(walked) => {
                    listed = walked;
                    break;
                }
                Err(e @ Error::GitStopped { .. }) => return Err(e),
                Err(e) => unwalked(&failed, &e),
            }
        }
        let Listed {
            blobs,
            mut seen,
            commits,
            paths,
            ..
        } = listed;
        // A blob is scanned once, under the path of the first commit that has it; the
        // words of every path it was committed at count (found by review: a key first
        // committed at `tmp/keys.env`, then moved to `binance/prod.env`, was missed).
        let contexts: HashMap<String, String> = paths
            .into_iter()
            .map(|(blob, paths)| (blob, paths.join("\n")))
            .collect();
        let mut blobs: Vec<(String, String, Option<Provenance>)> = blobs
            .into_iter()
            .map(|(b, p)| (b, p.path.clone(), Some(p)))
            .collect();
        // Staged and in no commit: named by their path.
        let (staged, trouble) = index_blobs(repo);
        if let Some(e) = trouble {
            self.warn(&format!(
                "the blobs staged in {} are not scanned ({e})",
                repo.display()
            ));
        }
        for (id, path) in staged {
            if seen.insert(id.clone(), blobs.len()).is_none() {
                blobs.push((id, path, None));
            }
        }
        for id in unreachable.blobs {
            if seen.insert(id.clone(), blobs.len()).is_none() {
                blobs.push((id.clone(), unreachable_path(&id), None));
            }
        }
        // The messages of the commits walked and of the annotated tags refs name: a key
        // pasted into one is pushed and cloned with the history.
        let mut messages = HashSet::new();
        for id in commits {
            if messages.insert(id.clone()) {
                let path = message_path("commit", id.get(..12).unwrap_or(&id));
                blobs.push((id, path, None));
            }
        }
        let (tags, trouble) = named_tags(repo);
        if let Some(e) = trouble {
            self.warn(&format!(
                "the messages of the tags refs name in {} are not all scanned ({e})",
                repo.display()
            ));
        }
        for (id, name) in tags {
            if messages.insert(id.clone()) {
                blobs.push((id, message_path("tag", &name), None));
            }
        }
        // Whatever else the object store holds: a blob or a tree only a tag names, which
        // is pushed and cloned with the tag, and which neither the log nor fsck lists; a
        // commit the log did not list (one that only deletes files, or none at all); a tag
        // no ref names.
        match other_objects(repo, &seen, &messages) {
            Ok(objects) => blobs.extend(objects.into_iter().map(|(id, path)| (id, path, None))),
            Err(trouble) => {
                self.warn(&format!(
                    "objects no commit has in {}: {trouble}",
                    repo.display()
                ));
                // The store is not listed: the commits the log left out (empty ones, ones
                // that only delete) are asked for by name.
                for id in every_commit(repo) {
                    if messages.insert(id.clone()) {
                        let path = message_path("commit", id.get(..12).unwrap_or(&id));
                        blobs.push((id, path, None));
                    }
                }
            }
        }
        let found = self.blobs(repo, blobs, &contexts, counters)?;
        // Each occurrence is suppressed or not already, so that de-duplication can keep a
        // live one.
        Ok(dedup_history(found, &head_blobs(repo)))
    }

    /// The blobs staged in the index that differ from HEAD.
    pub(crate) fn staged(&self, repo: &Path, counters: &Counters) -> Result<Vec<Finding>, Error> {
        // Outside a repository `git diff` compares two files (`--no-index`), and would
        // answer `--cached` with its whole usage: ask git where the repository is first,
        // whose refusal says "not a git repository".
        git(repo, &["rev-parse", "--git-dir"])?;
        let diff = git(
            repo,
            &[
                "-c",
                "core.quotePath=false",
                "diff",
                "--cached",
                "--raw",
                "--no-abbrev",
                "--no-renames",
                "--diff-filter=ACMT",
            ],
        )?;
        let mut blobs = Vec::new();
        for line in diff.lines() {
            let Some((meta, path)) = line.strip_prefix(':').and_then(|r| r.split_once('\t')) else {
                continue;
            };
            let f: Vec<&str> = meta.split(' ').collect();
            if f.len() >= 5 && f[1] != "160000" {
                blobs.push((f[3].to_owned(), unquote_path(path), None));
            }
        }
        self.blobs(repo, blobs, &HashMap::new(), counters)
    }

    /// Reads blobs with one `git cat-file --batch` and scans them on worker threads; a
    /// commit or an annotated tag among them is scanned for its message, and a commit's
    /// finding names the commit. A blob's context is its path, or what `contexts` holds
    /// for it (every path it was committed at).
    fn blobs(
        &self,
        repo: &Path,
        blobs: Vec<(String, String, Option<Provenance>)>,
        contexts: &HashMap<String, String>,
        counters: &Counters,
    ) -> Result<Vec<Finding>, Error> {
        if blobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut missing = 0u64;
        // A partial clone's absent blobs are never asked for: a git older than 2.45 knows
        // no GIT_NO_LAZY_FETCH and would try to fetch each (refused: see `git_in`), and
        // stop at the first.
        let blobs = if is_partial_clone(repo) {
            let present = present_objects(repo)?;
            let (present, absent): (Vec<_>, Vec<_>) =
                blobs.into_iter().partition(|b| present.contains(&b.0));
            missing += absent.len() as u64;
            counters
                .skipped
                .fetch_add(absent.len() as u64, Ordering::Relaxed);
            present
        } else {
            blobs
        };
        let mut child = git_in(repo)
            .args(["cat-file", "--batch"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Git {
                command: "cat-file --batch".into(),
                message: e.to_string(),
            })?;
        let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Error::Git {
                command: "cat-file --batch".into(),
                message: "no pipes".into(),
            });
        };
        let ids: Vec<String> = blobs.iter().map(|b| b.0.clone()).collect();
        let found = Mutex::new(Vec::new());
        // Asked of git only once a pointer is met: most repositories hold none.
        let lfs_objects = OnceLock::new();
        let lfs_absent = AtomicU64::new(0);
        let lfs_scanned = Mutex::new(HashSet::new());
        let (tx, rx) =
            mpsc::sync_channel::<(Vec<u8>, usize, Object)>(self.threads.saturating_mul(4));
        let rx = Mutex::new(rx);
        let in_flight = Budget::default();
        let result = std::thread::scope(|s| {
            s.spawn(move || {
                for id in ids {
                    if writeln!(stdin, "{id}").is_err() {
                        break;
                    }
                }
            });
            for _ in 0..self.threads {
                s.spawn(|| loop {
                    let next = lock(&rx).recv();
                    let Ok((data, i, object)) = next else { break };
                    // Given back however the scan ends.
                    let _scanned = Spent(&in_flight, data.len());
                    let (id, path, prov) = &blobs[i];
                    // A Git LFS pointer stands for a file kept beside the object store:
                    // that file is scanned too, once however many pointers name it (found
                    // by review: a key committed through LFS was never scanned, and
                    // nothing said so). The pointer itself is scanned as any blob.
                    if let (Object::Blob, Some(oid)) = (object, lfs_pointer(&data)) {
                        if lock(&lfs_scanned).insert(oid.to_owned()) {
                            let context = contexts.get(id).unwrap_or(path);
                            let dir = lfs_objects.get_or_init(|| lfs_objects_dir(repo));
                            let scanned = dir.as_deref().and_then(|dir| {
                                self.scan_lfs_object(counters, dir, oid, path, context)
                            });
                            match scanned {
                                Some(mut f) => {
                                    for x in &mut f {
                                        x.provenance.clone_from(prov);
                                    }
                                    lock(&found).extend(f.into_iter().map(|x| (i, x)));
                                }
                                None => {
                                    lfs_absent.fetch_add(1, Ordering::Relaxed);
                                    counters.skipped.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                    let (text, prov) = match object {
                        Object::Blob => (Cow::Borrowed(&data[..]), prov.clone()),
                        Object::Commit => {
                            (message(&data, object), commit_provenance(id, path, &data))
                        }
                        Object::Tag => (message(&data, object), None),
                    };
                    // Paths in a repository are relative to its root already. A message's
                    // "path" is a tag's name or a commit id, which the repository's
                    // author chose: no keyword in it counts.
                    let context = match object {
                        Object::Blob => contexts.get(id).unwrap_or(path).as_str(),
                        Object::Commit | Object::Tag => "",
                    };
                    let mut f = self.scan_counted(counters, path, context, &text);
                    for x in &mut f {
                        x.provenance.clone_from(&prov);
                    }
                    if !f.is_empty() {
                        lock(&found).extend(f.into_iter().map(|x| (i, x)));
                    }
                });
            }
            let mut reader = BufReader::with_capacity(1 << 20, stdout);
            let mut header = String::new();
            for (i, (id, path, _)) in blobs.iter().enumerate() {
                header.clear();
                reader.read_line(&mut header).map_err(|e| cat_err(&e))?;
                let parts: Vec<&str> = header.split_whitespace().collect();
                if parts.get(1) == Some(&"missing") {
                    missing += 1;
                    counters.skipped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let size: u64 =
                    parts
                        .get(2)
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| Error::Git {
                            command: "cat-file --batch".into(),
                            message: format!("unexpected header {header:?}"),
                        })?;
                let object = match parts.get(1) {
                    Some(&"blob") => Some(Object::Blob),
                    Some(&"commit") => Some(Object::Commit),
                    Some(&"tag") => Some(Object::Tag),
                    _ => None,
                };
                let too_large = size > self.max_file_size;
                let len = usize::try_from(size).ok().filter(|_| !too_large);
                let read = object.zip(len);
                let Some((object, len)) = read else {
                    // A blob over the size limit is scanned in windows as it is read, and
                    // never held in memory whole; a commit or tag that large (or an
                    // object of another kind) is drained through a fixed buffer.
                    let mut content = (&mut reader).take(size);
                    let scanned = matches!(object, Some(Object::Blob));
                    if scanned {
                        let context = contexts.get(id).unwrap_or(path);
                        let mut f = self
                            .scan_in_windows(counters, path, context, &mut content, size)
                            .map_err(|e| cat_err(&e))?;
                        for x in &mut f {
                            x.provenance.clone_from(&blobs[i].2);
                        }
                        if !f.is_empty() {
                            lock(&found).extend(f.into_iter().map(|x| (i, x)));
                        }
                    }
                    // What is left of it, and the newline after it.
                    io::copy(&mut content, &mut io::sink()).map_err(|e| cat_err(&e))?;
                    let left = content.limit();
                    let newline = io::copy(&mut (&mut reader).take(1), &mut io::sink())
                        .map_err(|e| cat_err(&e))?;
                    if left != 0 || newline != 1 {
                        return Err(cat_err(&io::ErrorKind::UnexpectedEof.into()));
                    }
                    if object.is_some() && !scanned {
                        self.too_large(counters, path, size);
                    }
                    continue;
                };
                in_flight.take(len);
                let mut data = vec![0u8; len + 1];
                if let Err(e) = reader.read_exact(&mut data) {
                    in_flight.give(len);
                    return Err(cat_err(&e));
                }
                data.truncate(len);
                if tx.send((data, i, object)).is_err() {
                    break;
                }
            }
            drop(tx);
            Ok::<(), Error>(())
        });
        let _ = child.wait();
        result?;
        if missing > 0 {
            self.warn(&format!(
                "{missing} object(s) named in {} are not in its object store (a partial clone, \
                 whose blobs keygate does not fetch, or a damaged repository): not scanned",
                repo.display()
            ));
        }
        let lfs_absent = lfs_absent.into_inner();
        if lfs_absent > 0 {
            self.warn(&format!(
                "{lfs_absent} Git LFS file(s) that pointers in {} stand for are not in its \
                 lfs/objects: not scanned (`git lfs fetch --all` fetches them)",
                repo.display()
            ));
        }
        // Back in log order (oldest commit first), whatever order the workers finished in.
        let mut found = found
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        found.sort_by_key(|(i, _)| *i);
        Ok(found.into_iter().map(|(_, f)| f).collect())
    }
}

/// Bytes each window of a file over the size limit shares with the next
/// ([`Scanner::scan_in_windows`]), at most: more than the lines around a value that its
/// keywords and partners are looked for in.
const WINDOW_OVERLAP: usize = 1 << 20;

/// The most bytes of blobs read and not yet scanned at once: the queue to the workers
/// holds a few blobs each, of up to the size limit (64 MiB) each.
const MAX_BLOB_BYTES_IN_FLIGHT: usize = 256 << 20;

/// The bytes of blobs read and not yet scanned, kept under [`MAX_BLOB_BYTES_IN_FLIGHT`].
#[derive(Default)]
struct Budget {
    used: Mutex<usize>,
    freed: std::sync::Condvar,
}

impl Budget {
    /// Waits until `n` more bytes fit (one blob always does when none is in flight).
    fn take(&self, n: usize) {
        let mut used = lock(&self.used);
        while *used > 0 && used.saturating_add(n) > MAX_BLOB_BYTES_IN_FLIGHT {
            used = self
                .freed
                .wait(used)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *used += n;
    }

    fn give(&self, n: usize) {
        let mut used = lock(&self.used);
        *used = used.saturating_sub(n);
        self.freed.notify_all();
    }
}

/// A blob's bytes, given back to the budget when its scan ends, however it ends.
struct Spent<'a>(&'a Budget, usize);

impl Drop for Spent<'_> {
    fn drop(&mut self) {
        self.0.give(self.1);
    }
}

/// The part of a walked file's path that counts as keyword context: the components below
/// the scan root it was found under (`depth` of them), or its file name when it is a root
/// itself. The root's own path is how the user typed it (`~/src/binance-bot`, `.`) and
/// must not decide what is found.
fn context_path(path: &Path, depth: usize) -> String {
    let parts: Vec<_> = path.components().collect();
    let below = &parts[parts.len().saturating_sub(depth.max(1))..];
    below
        .iter()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// The files git tracks under the walked directories that the walk has not come to:
/// after the walk, those an ignore rule hid from it. Each is kept with its depth below
/// the root it was found under (see [`context_path`]).
#[derive(Default)]
struct Unwalked {
    /// Each file, with its depth below the walk's root and how many components the
    /// repository directory listing it has.
    files: Mutex<HashMap<PathBuf, Tracked>>,
}

/// A file a repository tracks, as [`Unwalked`] keeps it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Tracked {
    depth: usize,
    repository_components: usize,
}

/// Where a walk reads `.gitignore` files (and the global excludes file).
#[derive(Clone, Copy, PartialEq, Eq)]
enum GitIgnores {
    /// Only in a work tree the walk comes to the top of (a directory holding `.git`).
    InWorkTrees,
    /// Everywhere: every root is in a work tree whose top is above it.
    Everywhere,
}

/// Whether `root` lies in a git work tree whose top is above it: a directory above it
/// holds `.git` (a directory, or the file of a worktree or a submodule), as git would
/// find it. A root that does not resolve is taken as in none.
fn below_a_work_tree_top(root: &Path) -> bool {
    let Ok(full) = root.canonicalize() else {
        return false;
    };
    full.ancestors()
        .skip(1)
        .any(|dir| dir.join(".git").symlink_metadata().is_ok())
}

impl Unwalked {
    /// Takes note that the walk came to `entry`. A directory given to the walk, or one at
    /// the top of a git work tree (a `.git` in it), has the files its repository tracks
    /// under it listed first: the walk reads a directory's entries only after coming to
    /// it, so none of them has been come to yet. A nested repository's files are not
    /// listed by the one around it (it tracks the nested one as a whole, if at all).
    /// Fails when the directory holds a repository whose files git cannot list (one
    /// owned by another user, which git refuses as of "dubious ownership"; no git): its
    /// tracked files that an ignore rule matches are then not come to.
    fn come_to(&self, entry: &ignore::DirEntry) -> Result<(), String> {
        let path = entry.path();
        let is_dir = entry.file_type().is_some_and(|t| t.is_dir());
        let is_repository = path.join(".git").symlink_metadata().is_ok();
        let listed = if is_dir && (entry.depth() == 0 || is_repository) {
            tracked_files(path, is_repository)
        } else {
            Ok(Vec::new())
        };
        let mut files = lock(&self.files);
        files.remove(path);
        let repository_components = path.components().count();
        // The index is the scanned content's own: a path in it that is absolute or
        // climbs (`..`) would be read outside the repository (git itself refuses to
        // check such a path out).
        let beneath = |tracked: &PathBuf| {
            tracked
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
        };
        for tracked in listed?.into_iter().filter(beneath) {
            let depth = entry.depth() + tracked.components().count();
            files.entry(path.join(tracked)).or_insert(Tracked {
                depth,
                repository_components,
            });
        }
        Ok(())
    }

    /// The files not come to, taken out.
    fn take_files(&self) -> HashMap<PathBuf, Tracked> {
        std::mem::take(&mut *lock(&self.files))
    }
}

/// The largest ignore file read.
const MAX_IGNORE_FILE_BYTES: u64 = 1 << 20;

/// Whether the walk may read `dir`'s ignore files (`.gitignore`, `.ignore`): each is
/// absent (or unreadable, which the walk skips too), or a regular file of at most
/// [`MAX_IGNORE_FILE_BYTES`], which is read to tell (`/proc/self/pagemap` says it holds
/// nothing, and never ends). With `Links::Refuse`, not a link either: git reads no
/// `.gitignore` through a link, and scanned content could make one a link to
/// `/dev/zero` (memory without end) or a pipe (a scan that never ends); a root's may be
/// (a home directory's `.gitignore` may be a dotfiles repository's).
fn ignore_files_readable(dir: &Path, links: Links) -> Result<(), String> {
    if !dir.metadata().is_ok_and(|m| m.is_dir()) {
        return Ok(());
    }
    for file in [dir.join(".gitignore"), dir.join(".ignore")] {
        match read_regular(&file, MAX_IGNORE_FILE_BYTES, links) {
            Ok(FileRead::Bytes(_)) => {}
            Ok(FileRead::TooLarge) => {
                return Err(format!(
                    "{} is over {MAX_IGNORE_FILE_BYTES} bytes",
                    file.display()
                ))
            }
            Ok(FileRead::NotRegular) => {
                return Err(format!(
                    "{} is not a regular file (a link, a pipe or a device)",
                    file.display()
                ))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
                ) => {}
            Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
        }
    }
    Ok(())
}

/// Whether a directory on the way to `full`, below its first `kept` components (the
/// repository's own directory), is a symbolic link, or is not there to tell.
fn through_a_link(full: &Path, kept: usize) -> bool {
    full.ancestors()
        .skip(1)
        .take_while(|dir| dir.components().count() > kept)
        .any(|dir| !dir.symlink_metadata().is_ok_and(|m| m.is_dir()))
}

/// What reading a file gave.
enum FileRead {
    /// The bytes of a regular file of at most the size limit.
    Bytes(Vec<u8>),
    /// A regular file over the size limit, of which nothing was kept.
    TooLarge,
    /// Not a regular file (a symbolic link not followed, a FIFO, a device, a directory):
    /// nothing was read.
    NotRegular,
}

/// Whether a symbolic link at the path read is followed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Links {
    /// Followed: the path was named by the user (a root of the walk).
    Follow,
    /// Not followed: the path was found in the tree, whose links may point anywhere
    /// (`/dev/stdin`, a FIFO, `../outside/secret.env`).
    Refuse,
}

/// Reads the regular file at `path` if it holds at most `max` bytes. Anything else is
/// not opened, or if it became something else since it was looked at, not read: the
/// file is opened without following a link (with `Links::Refuse`) and without blocking
/// (a FIFO put in its place would block `open`), and what was opened must be a regular
/// file. The size is checked before anything is read, and at most `max + 1` bytes are
/// read in case the file grows meanwhile, so a huge (or sparse) file costs no memory.
fn read_regular(path: &Path, max: u64, links: Links) -> io::Result<FileRead> {
    if links == Links::Refuse && !std::fs::symlink_metadata(path)?.is_file() {
        return Ok(FileRead::NotRegular);
    }
    let Some(file) = open_without_blocking(path, links)? else {
        return Ok(FileRead::NotRegular);
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(FileRead::NotRegular);
    }
    if meta.len() > max {
        return Ok(FileRead::TooLarge);
    }
    let mut data = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0).saturating_add(1));
    file.take(max.saturating_add(1)).read_to_end(&mut data)?;
    if data.len() as u64 > max {
        return Ok(FileRead::TooLarge);
    }
    Ok(FileRead::Bytes(data))
}

/// Opens `path` for reading with `O_NONBLOCK` (reads of a regular file are not changed by
/// it) and, with `Links::Refuse`, `O_NOFOLLOW`; `None` when `path` is a symbolic link
/// that is not followed.
#[cfg(unix)]
fn open_without_blocking(path: &Path, links: Links) -> io::Result<Option<File>> {
    use rustix::fs::{Mode, OFlags};

    let mut flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
    if links == Links::Refuse {
        flags |= OFlags::NOFOLLOW;
    }
    match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => Ok(Some(File::from(fd))),
        // What `O_NOFOLLOW` gives for a symbolic link.
        Err(rustix::io::Errno::LOOP) if links == Links::Refuse => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Opens `path` for reading. Without `O_NOFOLLOW` and `O_NONBLOCK`, a link or FIFO put in
/// place of a regular file after [`read_regular`] looked at it is opened, and is then not
/// read (it is not a regular file).
#[cfg(not(unix))]
fn open_without_blocking(path: &Path, _links: Links) -> io::Result<Option<File>> {
    File::open(path).map(Some)
}

/// The blobs of `HEAD`'s tree with their paths. Empty when there is no `HEAD` (a
/// repository without commits, or an unborn branch).
fn head_blobs(repo: &Path) -> HashMap<String, Vec<String>> {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    let Ok(tree) = git(
        repo,
        &[
            "-c",
            "core.quotePath=false",
            "ls-tree",
            "-r",
            "--full-tree",
            "HEAD",
        ],
    ) else {
        return map;
    };
    for line in tree.lines() {
        let Some((meta, path)) = line.split_once('\t') else {
            continue;
        };
        let f: Vec<&str> = meta.split(' ').collect();
        if f.len() == 3 && f[1] == "blob" {
            map.entry(f[2].to_owned())
                .or_default()
                .push(unquote_path(path));
        }
    }
    map
}

/// One finding per secret and rule across history, but for what reporting it once would
/// hide:
///
/// - each path in `HEAD` that holds the secret is reported, since it has to be removed
///   from each (a blob at several paths in `HEAD` gives a finding at each);
/// - an occurrence with a part no occurrence kept has (the key beside a secret that was
///   committed alone before) is reported too. A part is known by its rule, role and value
///   as shown (redacted, and in full with `--no-redact`), so that every passphrase,
///   shown as `****`, is one.
///
/// Occurrences are taken active ones first (an allowed fixture must not hide the same
/// secret in `config/.env`), then those still in `HEAD` (at their paths there), then
/// oldest first; the first of each secret and rule is always kept. The provenance of
/// each finding kept is that of the secret's oldest occurrence, active or not: when it
/// leaked.
fn dedup_history(found: Vec<Finding>, head: &HashMap<String, Vec<String>>) -> Vec<Finding> {
    // By the main value (the secret, else the key), not by the set: a key committed beside
    // a secret first committed alone is that secret's occurrence, with a new part.
    let key = |f: &Finding| {
        let main = [Role::Secret, Role::Key]
            .iter()
            .find_map(|role| f.parts.iter().find(|p| p.role == *role))
            .and_then(|p| p.fingerprint.clone());
        (
            main.unwrap_or_else(|| f.fingerprint.clone()),
            f.rule.clone(),
        )
    };
    // An unreachable blob (no provenance) comes after every commit that has the same key.
    let time = |f: &Finding| f.provenance.as_ref().map_or(i64::MAX, |p| p.author_time);
    let mut first: HashMap<(String, String), Provenance> = HashMap::new();
    for f in &found {
        let Some(p) = &f.provenance else { continue };
        let slot = first.entry(key(f)).or_insert_with(|| p.clone());
        if p.author_time < slot.author_time {
            *slot = p.clone();
        }
    }
    // Each occurrence of a blob in HEAD, at each of its paths there; whether it is in HEAD.
    let mut occurrences: Vec<(Finding, bool)> = Vec::with_capacity(found.len());
    for f in found {
        let paths = f
            .provenance
            .as_ref()
            .and_then(|p| head.get(&p.blob))
            .filter(|paths| !paths.is_empty());
        match paths {
            Some(paths) => occurrences.extend(paths.iter().map(|path| {
                let mut at = f.clone();
                at.path.clone_from(path);
                (at, true)
            })),
            None => occurrences.push((f, false)),
        }
    }
    // Stable: among equals (same author time), log order, i.e. the oldest commit first.
    let mut order: Vec<usize> = (0..occurrences.len()).collect();
    order.sort_by_key(|&i| {
        let (f, in_head) = &occurrences[i];
        (!f.is_active(), !in_head, time(f))
    });
    /// What the findings kept of one secret and rule cover.
    #[derive(Default)]
    struct Covered<'a> {
        head_paths: HashSet<&'a str>,
        parts: HashSet<(Role, &'a str, &'a str, Option<&'a str>)>,
    }
    let mut covered: HashMap<(String, String), Covered<'_>> = HashMap::new();
    let mut keep = vec![false; occurrences.len()];
    for i in order {
        let (f, in_head) = &occurrences[i];
        let group = covered.entry(key(f)).or_default();
        let is_first = group.head_paths.is_empty() && group.parts.is_empty();
        let is_new_place = *in_head && !group.head_paths.contains(f.path.as_str());
        let parts: Vec<_> = f
            .parts
            .iter()
            .map(|p| {
                (
                    p.role,
                    p.rule.as_str(),
                    p.redacted.as_str(),
                    p.value.as_deref(),
                )
            })
            .collect();
        let has_new_part = parts.iter().any(|p| !group.parts.contains(p));
        if is_first || is_new_place || has_new_part {
            keep[i] = true;
            if *in_head {
                group.head_paths.insert(f.path.as_str());
            }
            group.parts.extend(parts);
        }
    }
    drop(covered);
    occurrences
        .into_iter()
        .zip(keep)
        .filter(|(_, keep)| *keep)
        .map(|((mut f, _), _)| {
            if let Some(p) = first.get(&key(&f)) {
                f.provenance = Some(p.clone());
            }
            f
        })
        .collect()
}

/// A path as git prints it, unquoted. Even with `core.quotePath=false` (which keeps bytes
/// above 0x7f as they are), git writes a path holding a `"`, a `\` or a control character
/// in C style: in double quotes, with `\"`, `\\`, `\t`, `\n`… and octal `\ooo` escapes.
/// Findings, provenance and the SARIF location need the path itself.
fn unquote_path(path: &str) -> String {
    let Some(inner) = path.strip_prefix('"').and_then(|p| p.strip_suffix('"')) else {
        return path.to_owned();
    };
    let b = inner.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 == b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let e = b[i + 1];
        // At most `\377`: one byte.
        let octal = b.get(i + 1..i + 4).filter(|d| {
            (b'0'..=b'3').contains(&d[0]) && d[1..].iter().all(|c| (b'0'..=b'7').contains(c))
        });
        if let Some(d) = octal {
            out.push(((d[0] - b'0') << 6) | ((d[1] - b'0') << 3) | (d[2] - b'0'));
            i += 4;
            continue;
        }
        out.push(match e {
            b'a' => 0x07,
            b'b' => 0x08,
            b't' => b'\t',
            b'n' => b'\n',
            b'v' => 0x0b,
            b'f' => 0x0c,
            b'r' => b'\r',
            other => other,
        });
        i += 2;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn cat_err(e: &std::io::Error) -> Error {
    Error::Git {
        command: "cat-file --batch".into(),
        message: e.to_string(),
    }
}

/// `args` as an error names the command: without the `-c` settings.
fn describe(args: &[&str]) -> String {
    args.iter()
        .filter(|a| !a.starts_with("core.") && **a != "-c")
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

/// How long a git command that answers at once (`rev-parse`, `ls-files`, `diff`) may
/// take. Scanned content can make git wait for ever: a repository's `config` can include
/// a pipe, its `index` can be one.
const GIT_ANSWER_WITHIN: Duration = Duration::from_secs(60);

/// Runs `command` (standard input closed) and collects its output, killing it when it
/// has not finished within `limit`: an error of kind `TimedOut` then.
fn output_within(mut command: Command, limit: Duration) -> io::Result<std::process::Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            // The readers end with the pipes; not waited for (a process git started
            // may hold them open).
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {} s", limit.as_secs()),
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    };
    let collected = |reader: std::thread::JoinHandle<Vec<u8>>| reader.join().unwrap_or_default();
    Ok(std::process::Output {
        status,
        stdout: collected(stdout),
        stderr: collected(stderr),
    })
}

/// Whether git may be run in `repo`: the files of its repository directory that every
/// command reads (`HEAD`, `config`, `index`, `packed-refs`, `commondir`) are absent or
/// regular files (or links to ones), not pipes or devices, which would keep git
/// waiting or reading for ever.
fn git_files_readable(repo: &Path) -> Result<(), String> {
    let git_dir = repo.join(".git");
    if git_dir.metadata().is_ok_and(|m| m.is_dir()) {
        return git_dir_files_readable(&git_dir);
    }
    // A bare repository is its own repository directory.
    if repo.join("objects").metadata().is_ok_and(|m| m.is_dir()) {
        return git_dir_files_readable(repo);
    }
    Ok(())
}

/// [`git_files_readable`] for the repository directory `git_dir`.
fn git_dir_files_readable(git_dir: &Path) -> Result<(), String> {
    for name in ["HEAD", "config", "index", "packed-refs", "commondir"] {
        let file = git_dir.join(name);
        match file.metadata() {
            Ok(meta) if !meta.is_file() => {
                return Err(format!(
                    "{} is not a regular file (a pipe or a device, or a link to one)",
                    file.display()
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// How long `git fsck` may take: it walks every object, which takes minutes in a large
/// repository, but not for ever.
const GIT_WALK_WITHIN: Duration = Duration::from_secs(30 * 60);

/// The most entries of a repository directory [`git_store_readable`] looks at.
const MAX_GIT_DIR_ENTRIES: usize = 2_000_000;

/// Whether a file of this kind can keep a reader waiting or reading for ever: a pipe or a
/// device. A socket cannot (opening one fails at once: git's fsmonitor daemon and
/// git-annex keep theirs in a repository directory).
#[cfg(unix)]
fn blocks(kind: std::fs::FileType) -> bool {
    use std::os::unix::fs::FileTypeExt;
    kind.is_fifo() || kind.is_block_device() || kind.is_char_device()
}

/// Whether a file of this kind can keep a reader waiting: anything but a regular file, a
/// directory or a link, on systems that name no more.
#[cfg(not(unix))]
fn blocks(kind: std::fs::FileType) -> bool {
    !kind.is_file() && !kind.is_dir() && !kind.is_symlink()
}

/// Whether git may read `repo`'s repository directories whole, as a history scan does
/// (its objects, packs, `objects/info/alternates`, commit graphs): nothing in them is a
/// pipe or a device, nor a link to one, any of which would keep git waiting or reading
/// for ever. The directories are the ones git names (`--absolute-git-dir`,
/// `--git-common-dir`), so that a bare repository, a directory inside a work tree and a
/// linked work tree are looked at as a work tree's root is (found by review: only
/// `repo/.git` was, and a pipe in a bare repository's objects kept the scan waiting for
/// ever). They are walked without following a link to another directory: [`git_lines`]'
/// watchdog stops git where this does not see.
fn git_store_readable(repo: &Path) -> Result<(), String> {
    git_files_readable(repo)?;
    let named = |flag: &str| -> Result<PathBuf, String> {
        let out = git(repo, &["rev-parse", flag]).map_err(|e| e.to_string())?;
        let dir = repo.join(out.trim_end_matches(['\n', '\r']));
        Ok(std::fs::canonicalize(&dir).unwrap_or(dir))
    };
    let git_dir = named("--absolute-git-dir")?;
    let common_dir = named("--git-common-dir")?;
    let mut dirs = vec![git_dir.clone()];
    if common_dir != git_dir {
        dirs.push(common_dir);
    }
    for dir in &dirs {
        git_dir_files_readable(dir)?;
    }
    let mut looked = 0;
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            looked += 1;
            if looked > MAX_GIT_DIR_ENTRIES {
                return Err(format!(
                    "the repository directory of {} holds more than {MAX_GIT_DIR_ENTRIES} \
                     files",
                    repo.display()
                ));
            }
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let special = if kind.is_dir() {
                dirs.push(path.clone());
                false
            } else if kind.is_symlink() {
                // Followed by git where it reads one; a dangling one is nothing to read.
                path.metadata().is_ok_and(|m| blocks(m.file_type()))
            } else {
                blocks(kind)
            };
            if special {
                return Err(format!(
                    "{} is a pipe or a device (or a link to one), which git would wait on \
                     for ever",
                    path.display()
                ));
            }
        }
    }
    Ok(())
}

/// Runs `git -C repo args...` and returns its standard output.
pub(crate) fn git(repo: &Path, args: &[&str]) -> Result<String, Error> {
    let command = describe(args);
    let failed = |message: String| Error::Git {
        command: command.clone(),
        message,
    };
    git_files_readable(repo).map_err(failed)?;
    let mut git = git_in(repo);
    git.args(args);
    let out = output_within(git, GIT_ANSWER_WITHIN).map_err(|e| failed(e.to_string()))?;
    if !out.status.success() {
        return Err(Error::Git {
            command,
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A git command run in `repo`, in the C locale: some of git's output that is read here
/// (fsck's lines) is translated in others.
///
/// The repository is untrusted (a tarball, a Docker build context, a pull request's
/// clone), and so is its own config: nothing it names is run, and nothing is fetched.
/// No fsmonitor (reading the index would start it), no signature check (`log` would
/// start `gpg.program` for a signed commit), no pager, no network (a partial
/// clone would fetch each missing blob, prompting for credentials); and objects are
/// read as they are, not as `refs/replace/` would swap them.
fn git_in(repo: &Path) -> Command {
    let mut command = Command::new("git");
    command
        .arg("-C")
        .arg(repo)
        .args([
            "-c",
            "core.fsmonitor=false",
            "-c",
            "log.showSignature=false",
            // `log` reads `.mailmap` (a file of the work tree, which could be a pipe)
            // before it writes a line, for names the format does not show.
            "-c",
            "log.mailmap=false",
            "-c",
            "protocol.allow=never",
            "--no-replace-objects",
            "--no-pager",
        ])
        .env("LC_ALL", "C")
        // No transport at all, whatever `protocol.*.allow` the repository sets: a
        // partial clone's promisor remote could name `ext::` (a command) as its URL.
        .env("GIT_ALLOW_PROTOCOL", "none")
        .env("GIT_NO_LAZY_FETCH", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("LANGUAGE");
    command
}

/// The ids of the blobs that no ref, reflog entry or index entry reaches, and what kept
/// some from being listed. A repository that borrows objects from another (alternates:
/// `git clone --shared`, `--reference`) is not asked: `fsck` would list the other's
/// blobs as this one's. `fsck` lists what it can even when it finds the repository
/// damaged, and says so with its exit status.
fn unreachable_objects(repo: &Path) -> (Unreachable, Option<String>) {
    if borrows_objects(repo) {
        let why = "not scanned: the repository borrows objects from another (alternates)";
        return (Unreachable::default(), Some(why.to_owned()));
    }
    let mut fsck = git_in(repo);
    fsck.args([
        "fsck",
        "--unreachable",
        "--connectivity-only",
        "--no-progress",
    ]);
    let out = output_within(fsck, GIT_WALK_WITHIN);
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            let why = format!("not scanned: git fsck: {e}");
            return (Unreachable::default(), Some(why));
        }
    };
    let mut unreachable = Unreachable::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // A repository without any ref calls them dangling.
        let Some(object) = line
            .strip_prefix("unreachable ")
            .or_else(|| line.strip_prefix("dangling "))
        else {
            continue;
        };
        let id = |id: &str| id.trim().to_owned();
        if let Some(blob) = object.strip_prefix("blob ") {
            unreachable.blobs.push(id(blob));
        } else if let Some(commit) = object.strip_prefix("commit ") {
            // An id, and nothing else: it goes to `git log --stdin`.
            if commit.trim().bytes().all(|b| b.is_ascii_hexdigit()) {
                unreachable.commits.push(id(commit));
            }
        }
    }
    let trouble = (!out.status.success()).then(|| {
        format!(
            "git fsck found the repository damaged, and some may not be scanned: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
    });
    (unreachable, trouble)
}

/// What `git fsck --unreachable` lists that a scan reads.
#[derive(Default)]
struct Unreachable {
    blobs: Vec<String>,
    commits: Vec<String>,
}

/// Whether the repository at `repo` reads objects from another's object store too.
fn borrows_objects(repo: &Path) -> bool {
    std::env::var_os("GIT_ALTERNATE_OBJECT_DIRECTORIES").is_some()
        || git(
            repo,
            &["rev-parse", "--git-path", "objects/info/alternates"],
        )
        .ok()
        .map(|path| repo.join(path.trim()))
        .and_then(|path| std::fs::metadata(path).ok())
        .is_some_and(|meta| meta.len() > 0)
}

/// The blobs `git log --raw` names, each with the first commit that has it, and the
/// commits it lists (a merge once per parent).
#[derive(Default)]
struct Listed {
    blobs: Vec<(String, Provenance)>,
    seen: HashMap<String, usize>,
    /// The paths of the blobs committed at more than one, up to [`MAX_CONTEXT_PATHS`]
    /// each: a blob is scanned once, and each of its paths counts as its context.
    paths: HashMap<String, Vec<String>>,
    commits: Vec<String>,
    commit: String,
    time: i64,
}

impl Listed {
    /// Takes one line of the log: a commit's header (`\x01<id> <author time>`) or one of
    /// its `--raw` lines.
    fn read(&mut self, line: &str) {
        if let Some(h) = line.strip_prefix('\u{1}') {
            let mut it = h.split(' ');
            self.commit = it.next().unwrap_or_default().to_owned();
            self.time = it.next().and_then(|t| t.parse().ok()).unwrap_or(0);
            self.commits.push(self.commit.clone());
            return;
        }
        let Some((meta, quoted)) = line.strip_prefix(':').and_then(|raw| raw.split_once('\t'))
        else {
            return;
        };
        let f: Vec<&str> = meta.split(' ').collect();
        if f.len() < 5 || f[1] == "160000" || f[3].bytes().all(|b| b == b'0') {
            return;
        }
        let path = unquote_path(quoted);
        let provenance = |path: String| Provenance {
            commit: self.commit.clone(),
            path,
            author_time: self.time,
            blob: f[3].to_owned(),
        };
        match self.seen.get(f[3]) {
            Some(&i) => {
                let first = &self.blobs[i].1;
                if first.path != path {
                    let paths = self
                        .paths
                        .entry(f[3].to_owned())
                        .or_insert_with(|| vec![first.path.clone()]);
                    if paths.len() < MAX_CONTEXT_PATHS && !paths.contains(&path) {
                        paths.push(path.clone());
                    }
                }
                if first.author_time > self.time {
                    self.blobs[i].1 = provenance(path);
                }
            }
            None => {
                self.seen.insert(f[3].to_owned(), self.blobs.len());
                self.blobs.push((f[3].to_owned(), provenance(path)));
            }
        }
    }
}

/// The most paths of one blob whose words count as its context.
const MAX_CONTEXT_PATHS: usize = 16;

/// Runs `git args...` in `repo`, `input` on its standard input, and hands `each` every
/// line of its standard output as it comes (lossily decoded, without its newline).
fn git_lines(
    repo: &Path,
    args: &[&str],
    input: Vec<u8>,
    mut each: impl FnMut(&str),
) -> Result<(), Error> {
    let command = describe(args);
    let failed = |message: String| Error::Git {
        command: command.clone(),
        message,
    };
    let mut child = git_in(repo)
        .args(args)
        .stdin(if input.is_empty() {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    // Written aside, so that git never waits on its input while its output is full.
    let writer = child.stdin.take().map(|mut stdin| {
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        })
    });
    let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(failed("no pipes".into()));
    };
    // Read aside, so that git never waits on a full error pipe while its output is read.
    let errors = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = (&mut stderr).take(64 * 1024).read_to_end(&mut text);
        let _ = io::copy(&mut stderr, &mut io::sink());
        String::from_utf8_lossy(&text).trim().to_owned()
    });
    let watchdog = Watchdog::watch(child, GIT_QUIET_WITHIN);
    let mut reader = BufReader::with_capacity(1 << 20, stdout);
    let mut line = Vec::new();
    let read = loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break Ok(()),
            Ok(_) => {
                watchdog.heard();
                let text = String::from_utf8_lossy(&line);
                each(text.strip_suffix('\n').unwrap_or(&text));
            }
            Err(e) => break Err(failed(e.to_string())),
        }
    };
    drop(reader);
    let (child, stopped) = watchdog.done();
    let status = lock(&child).wait().map_err(|e| failed(e.to_string()))?;
    if stopped {
        return Err(Error::GitStopped {
            command,
            seconds: GIT_QUIET_WITHIN.as_secs(),
        });
    }
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    let message = errors.join().unwrap_or_default();
    read?;
    if !status.success() {
        return Err(failed(message));
    }
    Ok(())
}

/// How long a git command whose output is read line by line (`log`, `rev-list`,
/// `ls-files --stage`, `for-each-ref`, `cat-file --batch-check`) may go without a line
/// before it is stopped: each line comes soon after
/// the last in any repository, but a pipe among its files (one a check of the repository
/// directory does not see: behind a link, or named by `alternates`) would keep git
/// waiting for ever. `log --reverse` lists nothing until it has walked every commit,
/// which takes a minute in the largest repositories.
const GIT_QUIET_WITHIN: Duration = Duration::from_secs(10 * 60);

/// Stops a child process that has said nothing for a while, from a thread of its own.
struct Watchdog {
    child: Arc<Mutex<std::process::Child>>,
    /// Whether the reader is done, and the condition the watching thread waits on.
    finished: Arc<(Mutex<bool>, std::sync::Condvar)>,
    /// When the child was last heard from, in milliseconds since `started`.
    heard_ms: Arc<AtomicU64>,
    started: Instant,
    watching: std::thread::JoinHandle<bool>,
}

impl Watchdog {
    /// Watches `child`, which is killed once it has been quiet for `quiet`.
    fn watch(child: std::process::Child, quiet: Duration) -> Watchdog {
        let child = Arc::new(Mutex::new(child));
        let finished = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let heard_ms = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let watching = {
            let (child, finished, heard_ms) = (
                Arc::clone(&child),
                Arc::clone(&finished),
                Arc::clone(&heard_ms),
            );
            std::thread::spawn(move || {
                let (done, wake) = &*finished;
                let mut is_done = lock(done);
                loop {
                    if *is_done {
                        return false;
                    }
                    let since = started
                        .elapsed()
                        .saturating_sub(Duration::from_millis(heard_ms.load(Ordering::Relaxed)));
                    if since >= quiet {
                        // Not reaped until the reader is done with this thread (`done`):
                        // the process id names this child still.
                        let _ = lock(&child).kill();
                        return true;
                    }
                    is_done = wake
                        .wait_timeout(is_done, quiet - since)
                        .map(|(guard, _)| guard)
                        .unwrap_or_else(|p| p.into_inner().0);
                }
            })
        };
        Watchdog {
            child,
            finished,
            heard_ms,
            started,
            watching,
        }
    }

    /// The child said something.
    fn heard(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.heard_ms.store(now, Ordering::Relaxed);
    }

    /// Stops watching: the child, to be waited for (only now: until the watching thread
    /// has ended, the process id it might kill must not be reused), and whether it was
    /// killed.
    fn done(self) -> (Arc<Mutex<std::process::Child>>, bool) {
        {
            let (done, wake) = &*self.finished;
            *lock(done) = true;
            wake.notify_all();
        }
        let stopped = self.watching.join().unwrap_or(false);
        (self.child, stopped)
    }
}

/// The files under `dir` that its git repository tracks, as paths relative to `dir`;
/// none when `dir` is in no work tree. What git said when it could not list them for a
/// directory that holds a repository (`.git`), or for one inside a work tree. A file's
/// path in the index is bytes; on Unix it is kept as it is.
fn tracked_files(dir: &Path, is_repository: bool) -> Result<Vec<PathBuf>, String> {
    git_files_readable(dir)?;
    let mut git = git_in(dir);
    git.args(["ls-files", "-z", "--cached"]);
    let out = match output_within(git, GIT_ANSWER_WITHIN) {
        Ok(out) => out,
        Err(e) if is_repository || e.kind() == io::ErrorKind::TimedOut => {
            return Err(format!("git: {e}"))
        }
        Err(_) => return Ok(Vec::new()),
    };
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        // Any directory given is asked, and most are in no work tree.
        if !is_repository && said.contains("not a git repository") {
            return Ok(Vec::new());
        }
        let first = said.lines().next().unwrap_or("it failed").trim();
        return Err(format!("git: {}", printable_line(first)));
    }
    Ok(out
        .stdout
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .map(path_from_git)
        .collect())
}

/// `text` with its control characters dropped, and at most 200 characters of it: what a
/// warning quotes of git's own words.
fn printable_line(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// A path git printed with `-z` (neither quoted nor escaped).
#[cfg(unix)]
fn path_from_git(bytes: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;

    PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
}

/// A path git printed with `-z` (neither quoted nor escaped): UTF-8 on other systems.
#[cfg(not(unix))]
fn path_from_git(bytes: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(bytes).into_owned())
}

/// Whether the repository at `repo` is a partial clone: one whose objects a promisor
/// remote may lack, which git would fetch on demand.
fn is_partial_clone(repo: &Path) -> bool {
    git(
        repo,
        &[
            "config",
            "--get-regexp",
            r"^(extensions\.partialclone|remote\..*\.promisor)$",
        ],
    )
    .is_ok_and(|found| !found.trim().is_empty())
}

/// The ids of every blob, commit and tag the object store holds (listing never fetches).
fn present_objects(repo: &Path) -> Result<HashSet<String>, Error> {
    let mut present = HashSet::new();
    each_stored_object(repo, |kind, id| {
        if matches!(kind, "blob" | "commit" | "tag") {
            present.insert(id.to_owned());
        }
    })?;
    Ok(present)
}

/// Hands `each` the type and id of every object the object store holds, loose or packed
/// (listing never fetches).
fn each_stored_object(repo: &Path, mut each: impl FnMut(&str, &str)) -> Result<(), Error> {
    git_lines(
        repo,
        &[
            "cat-file",
            "--batch-check=%(objecttype) %(objectname)",
            "--batch-all-objects",
            "--unordered",
        ],
        Vec::new(),
        |line| {
            if let Some((kind, id)) = line.split_once(' ') {
                each(kind, id);
            }
        },
    )
}

/// The blobs the index holds, with their paths (none in a bare repository), and why not
/// all, when git was stopped.
fn index_blobs(repo: &Path) -> (Vec<(String, String)>, Option<Error>) {
    let mut blobs = Vec::new();
    let listed = git_lines(
        repo,
        &["-c", "core.quotePath=false", "ls-files", "--stage"],
        Vec::new(),
        |line| {
            let Some((meta, path)) = line.split_once('\t') else {
                return;
            };
            let f: Vec<&str> = meta.split(' ').collect();
            if f.len() == 3 && f[0] != "160000" {
                blobs.push((f[1].to_owned(), unquote_path(path)));
            }
        },
    );
    // A bare repository has no index, which git says by failing: only a stop is told.
    let stopped = listed
        .err()
        .filter(|e| matches!(e, Error::GitStopped { .. }));
    (blobs, stopped)
}

/// Every object in the repository's object store, loose or packed, that a scan reads and
/// that is not listed yet, with the path its findings give: a blob not in `seen`, a
/// commit or an annotated tag not in `messages`. A repository that borrows objects from
/// another is not asked (see [`unreachable_objects`]).
fn other_objects(
    repo: &Path,
    seen: &HashMap<String, usize>,
    messages: &HashSet<String>,
) -> Result<Vec<(String, String)>, String> {
    if borrows_objects(repo) {
        return Err("not scanned: the repository borrows objects from another (alternates)".into());
    }
    let mut objects = Vec::new();
    each_stored_object(repo, |kind, id| {
        let path = match kind {
            "blob" if !seen.contains_key(id) => unlisted_path(id),
            "commit" | "tag" if !messages.contains(id) => {
                message_path(kind, id.get(..12).unwrap_or(id))
            }
            _ => return,
        };
        objects.push((id.to_owned(), path));
    })
    .map_err(|e| e.to_string())?;
    Ok(objects)
}

/// Every commit reachable from a ref or a reflog entry (only from a ref when the reflogs
/// cannot be walked); none when even that fails (the log walk said why).
fn every_commit(repo: &Path) -> Vec<String> {
    let mut commits = Vec::new();
    for args in [
        &["rev-list", "--all", "--reflog"][..],
        &["rev-list", "--all"],
    ] {
        commits.clear();
        if git_lines(repo, args, Vec::new(), |id| commits.push(id.to_owned())).is_ok() {
            break;
        }
    }
    commits
}

/// The annotated tags refs name, each with the name of the first ref that names it, and
/// why not all, when git failed or was stopped.
fn named_tags(repo: &Path) -> (Vec<(String, String)>, Option<Error>) {
    let mut tags: Vec<(String, String)> = Vec::new();
    let listed = git_lines(
        repo,
        &[
            "for-each-ref",
            "--format=%(objecttype) %(objectname) %(refname:short)",
        ],
        Vec::new(),
        |line| {
            if let Some((id, name)) = line.strip_prefix("tag ").and_then(|r| r.split_once(' ')) {
                tags.push((id.to_owned(), name.to_owned()));
            }
        },
    );
    (tags, listed.err())
}

/// What `git cat-file --batch` gives a scan of an object.
#[derive(Clone, Copy)]
enum Object {
    /// A file's content, scanned whole.
    Blob,
    /// A commit, scanned for its message.
    Commit,
    /// An annotated tag, scanned for its message.
    Tag,
}

/// The message of a commit or an annotated tag as `git cat-file` gives the object: what
/// follows its headers (a commit's signature is one of them), and for a merge of signed
/// tags the messages of the tags its `mergetag` headers carry. A tag's signature is part
/// of its message: the armoured block from the last line that begins one (as git finds
/// it) to the line that ends it is left out (its base64 lines are no keys); text after
/// it is kept, and a block that never ends is no signature.
fn message(object: &[u8], kind: Object) -> Cow<'_, [u8]> {
    let Some((headers, body)) = object
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (&object[..i], &object[i + 2..]))
    else {
        return Cow::Borrowed(&[]);
    };
    if !matches!(kind, Object::Tag) {
        // A merge of a signed tag copies the whole tag, its message too, into the
        // commit, where it outlives the tag (found by review: a key in the message of a
        // tag deleted since was pushed and cloned in the merge, and not scanned).
        let tags = merged_tags(headers);
        if tags.is_empty() {
            return Cow::Borrowed(body);
        }
        let mut text = body.to_vec();
        for tag in &tags {
            text.push(b'\n');
            text.extend_from_slice(&message(tag, Object::Tag));
        }
        return Cow::Owned(text);
    }
    const BEGINS: [&[u8]; 4] = [
        b"-----BEGIN PGP SIGNATURE-----",
        b"-----BEGIN PGP MESSAGE-----",
        b"-----BEGIN SIGNED MESSAGE-----",
        b"-----BEGIN SSH SIGNATURE-----",
    ];
    let line_starts = || {
        std::iter::once(0).chain(
            body.iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        )
    };
    let Some(begin) = line_starts().rfind(|&at| BEGINS.iter().any(|b| body[at..].starts_with(b)))
    else {
        return Cow::Borrowed(body);
    };
    let Some(end) = line_starts()
        .filter(|&at| at > begin && body[at..].starts_with(b"-----END "))
        .map(|at| {
            body[at..]
                .iter()
                .position(|b| *b == b'\n')
                .map_or(body.len(), |n| at + n + 1)
        })
        .next()
    else {
        return Cow::Borrowed(body);
    };
    if end == body.len() {
        return Cow::Borrowed(&body[..begin]);
    }
    // A signature is normally the message's end: text after it is where a key would hide.
    Cow::Owned([&body[..begin], &body[end..]].concat())
}

/// A commit's provenance for a finding in its message: the commit itself, at its author
/// time (`author NAME <EMAIL> TIME ZONE`).
fn commit_provenance(id: &str, path: &str, commit: &[u8]) -> Option<Provenance> {
    let headers = commit
        .split(|b| *b == b'\n')
        .take_while(|line| !line.is_empty());
    let author_time = headers
        .filter_map(|line| line.strip_prefix(b"author "))
        .find_map(|author| {
            let text = std::str::from_utf8(author).ok()?;
            text.rsplit(' ').nth(1)?.parse().ok()
        })
        .unwrap_or(0);
    Some(Provenance {
        commit: id.to_owned(),
        path: path.to_owned(),
        author_time,
        blob: id.to_owned(),
    })
}

/// The object id a Git LFS pointer blob names, or `None` for any other blob: a pointer is
/// exactly as the specification writes one (`version https://git-lfs.github.com/spec/v1`,
/// then only `ext-N-NAME`, `oid sha256:HEX` and `size N` lines, in that order), so that a
/// file that merely begins like one is not taken for one.
fn lfs_pointer(blob: &[u8]) -> Option<&str> {
    const VERSION: &str = "version https://git-lfs.github.com/spec/v1";
    if blob.len() > 1024 {
        return None;
    }
    let text = std::str::from_utf8(blob).ok()?;
    let mut lines = text.strip_suffix('\n')?.split('\n');
    if lines.next()? != VERSION {
        return None;
    }
    let mut line = lines.next()?;
    while line.starts_with("ext-") {
        line = lines.next()?;
    }
    let oid = line.strip_prefix("oid sha256:")?;
    let is_oid = oid.len() == 64 && oid.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let size = lines.next()?.strip_prefix("size ")?;
    let is_size = !size.is_empty() && size.bytes().all(|b| b.is_ascii_digit());
    (is_oid && is_size && lines.next().is_none()).then_some(oid)
}

/// Where `repo` keeps its Git LFS objects (`lfs/objects` in its common repository
/// directory), canonical; `None` when it keeps none, or when that is a link out of the
/// repository directory (found by review: the files behind such a link were read as the
/// repository's).
fn lfs_objects_dir(repo: &Path) -> Option<PathBuf> {
    let common = git(repo, &["rev-parse", "--git-common-dir"]).ok()?;
    let common = std::fs::canonicalize(repo.join(common.trim_end_matches(['\n', '\r']))).ok()?;
    let dir = std::fs::canonicalize(common.join("lfs/objects")).ok()?;
    dir.starts_with(&common).then_some(dir)
}

/// The tags a commit's `mergetag` headers carry, each as `git cat-file` would give it: the
/// header's value, its continuation lines without their leading space.
fn merged_tags(headers: &[u8]) -> Vec<Vec<u8>> {
    let mut tags = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    for line in headers.split(|b| *b == b'\n') {
        if let Some(rest) = line.strip_prefix(b" ") {
            if let Some(tag) = current.as_mut() {
                tag.extend_from_slice(rest);
                tag.push(b'\n');
            }
            continue;
        }
        tags.extend(current.take());
        if let Some(first) = line.strip_prefix(b"mergetag ") {
            current = Some([first, b"\n"].concat());
        }
    }
    tags.extend(current);
    tags
}

/// What a finding in a commit's or a tag's message gives as its path.
fn message_path(kind: &str, name: &str) -> String {
    format!("(message of {kind} {name})")
}

/// What the finding of a blob in no commit the log listed (one only a tag names, or one
/// of a commit only a reflog that could not be walked reaches) gives as its path.
fn unlisted_path(id: &str) -> String {
    format!("(blob {} in no listed commit)", id.get(..12).unwrap_or(id))
}

/// What an unreachable blob's finding gives as its path.
fn unreachable_path(id: &str) -> String {
    format!("(unreachable blob {})", id.get(..12).unwrap_or(id))
}

/// Locks a mutex, going on with the data even if another worker panicked.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::process::Command;
    use std::time::{Duration, Instant};

    use super::{
        commit_provenance, lock, message, output_within, unquote_path, Budget, Object, Watchdog,
        MAX_BLOB_BYTES_IN_FLIGHT,
    };

    /// Found by review: a pipe git reads that a check of the repository directory does
    /// not see (behind a link, named by `alternates`) kept `git log` waiting for ever.
    #[cfg(unix)]
    #[test]
    fn a_command_quiet_too_long_is_killed() {
        use std::io::BufRead;
        use std::process::Stdio;

        let spawn = |script: &str| {
            Command::new("sh")
                .args(["-c", script])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let mut talking = spawn("echo a; sleep 0.3; echo b");
        let out = talking.stdout.take().unwrap();
        let dog = Watchdog::watch(talking, Duration::from_secs(10));
        let lines = std::io::BufReader::new(out).lines().count();
        let (child, stopped) = dog.done();
        assert!(lock(&child).wait().unwrap().success());
        assert_eq!((lines, stopped), (2, false));

        let mut quiet = spawn("echo a; exec sleep 30");
        let out = quiet.stdout.take().unwrap();
        let started = Instant::now();
        let dog = Watchdog::watch(quiet, Duration::from_millis(300));
        let mut reader = std::io::BufReader::new(out);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 0 {
            dog.heard();
        }
        let (child, stopped) = dog.done();
        assert!(!lock(&child).wait().unwrap().success());
        assert!(stopped);
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    /// A command that does not end within its limit is killed, not waited for.
    #[cfg(unix)]
    #[test]
    fn a_command_past_its_limit_is_killed() {
        let mut sleeping = Command::new("sleep");
        sleeping.arg("30");
        let started = Instant::now();
        let e = output_within(sleeping, Duration::from_millis(100)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(10));
        let mut echo = Command::new("echo");
        echo.arg("hi");
        let out = output_within(echo, Duration::from_secs(30)).unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, b"hi\n");
    }

    #[test]
    fn a_message_is_read_without_headers_and_signature() {
        let commit = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\
author A U Thor <a@example.com> 1704164645 +0100\n\
committer C O Mitter <c@example.com> 1704164700 +0100\n\
gpgsig -----BEGIN PGP SIGNATURE-----\n \n iQEzBAABCAAdFiEE\n -----END PGP SIGNATURE-----\n\
\n\
subject\n\nbody\n";
        assert_eq!(&message(commit, Object::Commit)[..], b"subject\n\nbody\n");
        // A commit's message is never a signature, whatever it quotes.
        let quoting = b"tree 4b82\n\nnotes\n-----BEGIN PGP SIGNATURE-----\nkey\n";
        assert_eq!(
            &message(quoting, Object::Commit)[..],
            b"notes\n-----BEGIN PGP SIGNATURE-----\nkey\n"
        );
        let provenance = commit_provenance("abc", "(message of commit abc)", commit).unwrap();
        assert_eq!(provenance.author_time, 1_704_164_645);

        let tag = b"object 4b825dc642cb6eb9a060e54bf8d69288fbee4904\ntype commit\ntag v1\n\n\
release\n-----BEGIN PGP SIGNATURE-----\n\niQEzBAABCAAdFiEE\n-----END PGP SIGNATURE-----\n";
        assert_eq!(&message(tag, Object::Tag)[..], b"release\n");
        // Text after the signature is kept: a key hidden there is scanned.
        let hidden = [&tag[..], b"after\n"].concat();
        assert_eq!(&message(&hidden, Object::Tag)[..], b"release\nafter\n");
        // A signature quoted inside the message ends where its block ends.
        let quoted = b"tag v1\n\nsee\n-----BEGIN SSH SIGNATURE-----\nU1NI\n-----END SSH SIGNATURE-----\nkey\n";
        assert_eq!(&message(quoted, Object::Tag)[..], b"see\nkey\n");
        // A block that never ends is no signature.
        let unended = b"tag v1\n\nsee\n-----BEGIN PGP SIGNATURE-----\nkey\n";
        assert_eq!(
            &message(unended, Object::Tag)[..],
            b"see\n-----BEGIN PGP SIGNATURE-----\nkey\n"
        );
        assert!(message(b"tree 4b82\nauthor x", Object::Commit).is_empty());

        // Found by review: a merge of a signed tag carries the tag, its message too.
        let merge = b"tree 4b82\nparent 1\nparent 2\nauthor A <a@b> 1704164645 +0100\n\
committer A <a@b> 1704164645 +0100\n\
mergetag object 2\n type commit\n tag v1\n tagger A <a@b> 1704164645 +0100\n \n \
release notes\n KEY=k\n -----BEGIN SSH SIGNATURE-----\n U1NI\n -----END SSH SIGNATURE-----\n\
\n\
Merge release\n";
        assert_eq!(
            &message(merge, Object::Commit)[..],
            b"Merge release\n\nrelease notes\nKEY=k\n"
        );
    }

    /// A regression test: the blobs queued for the workers were bounded by count (four
    /// per thread), so blobs near the 64 MiB limit could hold gigabytes at once. The
    /// bytes in flight are bounded; one blob always fits when none is in flight.
    #[test]
    fn blob_bytes_in_flight_are_bounded() {
        let budget = Budget::default();
        budget.take(MAX_BLOB_BYTES_IN_FLIGHT - 10);
        let taken = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                budget.take(64 << 20);
                taken.store(true, std::sync::atomic::Ordering::SeqCst);
            });
            std::thread::sleep(std::time::Duration::from_millis(100));
            assert!(!taken.load(std::sync::atomic::Ordering::SeqCst));
            budget.give(MAX_BLOB_BYTES_IN_FLIGHT - 10);
        });
        assert!(taken.load(std::sync::atomic::Ordering::SeqCst));
        // Larger than the bound, alone: taken at once.
        let alone = Budget::default();
        alone.take(2 * MAX_BLOB_BYTES_IN_FLIGHT);
    }

    #[test]
    fn git_quoted_paths_are_unquoted() {
        assert_eq!(unquote_path("a b/100% #1?.env"), "a b/100% #1?.env");
        assert_eq!(unquote_path("clés/é.env"), "clés/é.env");
        assert_eq!(unquote_path(r#""a \"q\".env""#), "a \"q\".env");
        assert_eq!(unquote_path(r#""back\\slash\ttab""#), "back\\slash\ttab");
        assert_eq!(unquote_path(r#""caf\303\251\n""#), "café\n");
        assert_eq!(unquote_path("\""), "\"");
    }
}
