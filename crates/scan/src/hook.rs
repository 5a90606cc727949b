//! The git pre-commit hook that runs `keygate scan --staged`.

use std::path::{Path, PathBuf};

use crate::source::git;
use crate::Error;

const MARKER: &str = "# installed by keygate scan --install-hook";

/// The pre-commit hook script: blocks the commit when staged content has findings.
pub fn hook_script() -> &'static str {
    "#!/bin/sh\n# installed by keygate scan --install-hook\n# Blocks the commit when staged files contain exchange API keys.\n# Bypass once (not recommended): git commit --no-verify\nexec keygate scan --staged\n"
}

/// Writes the hook into the repository containing `repo` (honouring `core.hooksPath`)
/// and returns its path. Only a regular file holding keygate's marker is replaced;
/// anything else at that path (another hook, whatever its encoding, a symbolic link even
/// to keygate's hook or to nowhere, a directory) is left alone and refused, and so is a
/// path that cannot be looked at: a hook is never written through a link.
pub fn install_hook(repo: &Path) -> Result<PathBuf, Error> {
    let rel = git(repo, &["rev-parse", "--git-path", "hooks"])?;
    let mut dir = PathBuf::from(rel.trim());
    if dir.is_relative() {
        dir = repo.join(dir);
    }
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;
    let path = dir.join("pre-commit");
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    let ours = match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_file() => {
            let existing = std::fs::read(&path).map_err(io)?;
            if memchr::memmem::find(&existing, MARKER.as_bytes()).is_none() {
                return Err(Error::HookExists { path });
            }
            true
        }
        Ok(_) => return Err(Error::HookExists { path }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(io(e)),
    };
    // Written beside it and renamed over it (a rename replaces a link put there since,
    // never its target), or created where nothing is (`create_new` fails on anything
    // there, a dangling link included).
    let target = if ours {
        let fresh = dir.join("pre-commit.keygate-new");
        // Left by an install that stopped half-way; a link there is removed, not followed.
        let _ = std::fs::remove_file(&fresh);
        fresh
    } else {
        path.clone()
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o755);
    let written = options.open(&target).and_then(|mut file| {
        use std::io::Write as _;
        file.write_all(hook_script().as_bytes())?;
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
            std::fs::rename(&target, &path)
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
    Ok(path)
}
