//! The git hooks that run `keygate scan`: `pre-commit` on what is staged, `commit-msg` on
//! the message.

use std::path::{Path, PathBuf};

use crate::source::git;
use crate::Error;

const MARKER: &str = "# installed by keygate scan --install-hook";

/// A git hook keygate installs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Hook {
    /// `pre-commit`: blocks the commit when what is staged holds a key.
    PreCommit,
    /// `commit-msg`: blocks the commit when its message holds a key (a message is pushed
    /// and cloned with the history, as a file is).
    CommitMsg,
}

impl Hook {
    /// Every hook [`install_hooks`] writes.
    pub const ALL: [Hook; 2] = [Hook::PreCommit, Hook::CommitMsg];

    /// The hook's file name in the hooks directory, as git names it.
    pub fn file_name(self) -> &'static str {
        match self {
            Hook::PreCommit => "pre-commit",
            Hook::CommitMsg => "commit-msg",
        }
    }

    /// The script: it exits non-zero, which stops the commit, when the scan finds a key or
    /// cannot run. `commit-msg` is given the message's file.
    pub fn script(self) -> &'static str {
        match self {
            Hook::PreCommit => concat!(
                "#!/bin/sh\n",
                "# installed by keygate scan --install-hook\n",
                "# Blocks the commit when staged files contain exchange API keys.\n",
                "# Bypass once (not recommended): git commit --no-verify\n",
                "exec keygate scan --staged\n",
            ),
            Hook::CommitMsg => concat!(
                "#!/bin/sh\n",
                "# installed by keygate scan --install-hook\n",
                "# Blocks the commit when its message contains exchange API keys.\n",
                "# Bypass once (not recommended): git commit --no-verify\n",
                "exec keygate scan --commit-msg \"$1\"\n",
            ),
        }
    }
}

/// What became of one hook [`install_hooks`] was to write: its path, or why it was not
/// written.
pub type Installed = Result<PathBuf, Error>;

/// What follows git's scissors line, after the comment string: the line `git commit -v`
/// puts above the staged diff, from which on git keeps nothing of the message.
const SCISSORS: &[u8] = b" ------------------------ >8 ------------------------";

/// The comment strings git may begin a commit message's comment lines with in `dir`'s
/// repository: `core.commentString`, else `core.commentChar`, else `#`; for `auto`, each
/// of those git picks from.
pub(crate) fn comment_strings(dir: &Path) -> Vec<String> {
    let configured = |key: &str| {
        git(dir, &["config", "--get", key])
            .ok()
            .map(|value| value.trim_end_matches(['\r', '\n']).to_owned())
            .filter(|value| !value.is_empty())
    };
    match configured("core.commentString").or_else(|| configured("core.commentChar")) {
        Some(auto) if auto == "auto" => "#;@!$%^&|:".chars().map(String::from).collect(),
        Some(comment) => vec![comment],
        None => vec!["#".to_owned()],
    }
}

/// `message` as git keeps at least, its line numbers unchanged: with `git commit -v`,
/// every line from the scissors line on blanked (the staged diff, which git cuts off).
/// Only then: a scissors line typed into a message given with `-m` or `-F` is kept by
/// git, with whatever follows it. The scissors line is git's exactly: one of `comments`
/// (see [`comment_strings`]) and the scissors, ended by a bare line feed, with a staged
/// diff after it. Comment lines stay: a message given with `-m` keeps them.
pub(crate) fn message_as_kept(message: &[u8], comments: &[String]) -> Vec<u8> {
    let lines: Vec<&[u8]> = message.split_inclusive(|&b| b == b'\n').collect();
    let is_scissors = |line: &[u8]| {
        line.strip_suffix(b"\n")
            .and_then(|line| line.strip_suffix(SCISSORS))
            .is_some_and(|comment| comments.iter().any(|c| c.as_bytes() == comment))
    };
    let cut_at = lines
        .iter()
        .position(|line| is_scissors(line))
        .filter(|&at| {
            lines[at..]
                .iter()
                .any(|line| line.starts_with(b"diff --git "))
        });
    let mut kept = Vec::with_capacity(message.len());
    for (at, line) in lines.iter().enumerate() {
        if cut_at.is_some_and(|cut| at >= cut) {
            if line.ends_with(b"\n") {
                kept.push(b'\n');
            }
        } else {
            kept.extend_from_slice(line);
        }
    }
    kept
}

/// Writes each hook of [`Hook::ALL`] into the repository containing `repo` (honouring
/// `core.hooksPath`) and returns, for each, its path or why it was not written. Only a
/// regular file holding keygate's marker is replaced; anything else at a hook's path
/// (another hook, whatever its encoding, a symbolic link even to keygate's hook or to
/// nowhere, a directory) is refused, and so is a path that cannot be looked at: a hook is
/// never written through a link. Each hook is installed on its own: a repository with a
/// `commit-msg` hook of its own (Gerrit's, commitlint's) still gets keygate's
/// `pre-commit`.
pub fn install_hooks(repo: &Path) -> Result<Vec<(Hook, Installed)>, Error> {
    let rel = git(repo, &["rev-parse", "--git-path", "hooks"])?;
    let mut dir = PathBuf::from(rel.trim());
    if dir.is_relative() {
        dir = repo.join(dir);
    }
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;
    Ok(Hook::ALL
        .into_iter()
        .map(|hook| {
            let path = dir.join(hook.file_name());
            let written = is_ours(&path).and_then(|ours| write_hook(hook, &path, ours));
            (hook, written.map(|()| path))
        })
        .collect())
}

/// Whether `path` holds keygate's own hook (`true`) or nothing (`false`); anything else
/// there is refused.
fn is_ours(path: &Path) -> Result<bool, Error> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() => {
            let existing = std::fs::read(path).map_err(io)?;
            if memchr::memmem::find(&existing, MARKER.as_bytes()).is_none() {
                return Err(Error::HookExists {
                    path: path.to_owned(),
                });
            }
            Ok(true)
        }
        Ok(_) => Err(Error::HookExists {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io(e)),
    }
}

/// Writes `hook` at `path`: `ours` replaces keygate's own hook there.
fn write_hook(hook: Hook, path: &Path, ours: bool) -> Result<(), Error> {
    // Written beside it and renamed over it (a rename replaces a link put there since,
    // never its target), or created where nothing is (`create_new` fails on anything
    // there, a dangling link included).
    let target = if ours {
        let mut fresh = path.as_os_str().to_owned();
        fresh.push(".keygate-new");
        let fresh = PathBuf::from(fresh);
        // Left by an install that stopped half-way; a link there is removed, not followed.
        let _ = std::fs::remove_file(&fresh);
        fresh
    } else {
        path.to_owned()
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o755);
    let written = options.open(&target).and_then(|mut file| {
        use std::io::Write as _;
        file.write_all(hook.script().as_bytes())?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            // The mode above is cut by the umask; a hook must be executable.
            file.set_permissions(std::fs::Permissions::from_mode(0o755))?;
        }
        Ok(())
    });
    let written = written.and_then(|()| {
        if ours {
            std::fs::rename(&target, path)
        } else {
            Ok(())
        }
    });
    if let Err(source) = written {
        if ours {
            let _ = std::fs::remove_file(&target);
        }
        return Err(Error::Io {
            path: target,
            source,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by review: a scissors line typed into a message given with `-F` hid what
    /// followed it from the scan, though git keeps it without `-v`.
    #[test]
    fn only_a_verbose_diff_below_the_scissors_is_left_out() {
        let hash = ["#".to_owned()];
        let verbose = b"fix\r\n# ------------------------ >8 ------------------------\n\
                        # Do not modify or remove the line above.\ndiff --git a/x b/x\n-KEY\n";
        assert_eq!(message_as_kept(verbose, &hash), b"fix\r\n\n\n\n\n");
        let typed = b"fix\n# ------------------------ >8 ------------------------\nKEY\n";
        assert_eq!(message_as_kept(typed, &hash), typed);
        let indented =
            b"fix\n  # ------------------------ >8 ------------------------\ndiff --git a\n";
        assert_eq!(message_as_kept(indented, &hash), indented);
        // Found by review of that rule: git cuts at its own scissors line only, ended by
        // a bare line feed and begun by the comment string it uses.
        let crlf = b"fix\r\n# ------------------------ >8 ------------------------\r\n\
                     diff --git a/x b/x\r\n-KEY\r\n";
        assert_eq!(message_as_kept(crlf, &hash), crlf);
        let typed_above = b"fix\n; ------------------------ >8 ------------------------\nKEY\n\
                            # ------------------------ >8 ------------------------\ndiff --git a\n";
        let typed_part = b"fix\n; ------------------------ >8 ------------------------\nKEY\n";
        let expected = [&typed_part[..], b"\n\n"].concat();
        assert_eq!(message_as_kept(typed_above, &hash), expected);
        let slashes =
            b"fix\n//  ------------------------ >8 ------------------------\ndiff --git a\n";
        assert_eq!(message_as_kept(slashes, &["// ".to_owned()]), b"fix\n\n\n");
    }
}
