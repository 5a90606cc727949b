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

/// `message` as git keeps at least, its line numbers unchanged: with `git commit -v`,
/// every line from the scissors line on blanked (the staged diff, which git cuts off).
/// Only then: a scissors line typed into a message given with `-m` or `-F` is kept by
/// git, with whatever follows it. Comment lines stay: such a message keeps them too.
pub(crate) fn message_as_kept(message: &[u8]) -> Vec<u8> {
    let lines: Vec<&[u8]> = message.split_inclusive(|&b| b == b'\n').collect();
    let text = |line: &[u8]| -> Vec<u8> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        line.strip_suffix(b"\r").unwrap_or(line).to_vec()
    };
    // The comment string (one character, or a short string) and the scissors.
    let is_scissors = |line: &[u8]| {
        let line = text(line);
        line.strip_suffix(SCISSORS)
            .is_some_and(|comment| (1..=16).contains(&comment.len()) && !comment.contains(&b' '))
    };
    let cut_at = lines
        .iter()
        .position(|line| is_scissors(line))
        .filter(|&at| {
            lines[at..]
                .iter()
                .any(|line| text(line).starts_with(b"diff --git "))
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
        let verbose = b"fix\r\n# ------------------------ >8 ------------------------\n\
                        # Do not modify or remove the line above.\ndiff --git a/x b/x\n-KEY\n";
        let kept = message_as_kept(verbose);
        assert_eq!(kept, b"fix\r\n\n\n\n\n");
        let typed = b"fix\n# ------------------------ >8 ------------------------\nKEY\n";
        assert_eq!(message_as_kept(typed), typed);
        let indented =
            b"fix\n  # ------------------------ >8 ------------------------\ndiff --git a\n";
        assert_eq!(message_as_kept(indented), indented);
    }
}
