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
/// and returns its path. An existing hook not written by keygate is left alone.
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
    if let Ok(existing) = std::fs::read_to_string(&path) {
        if !existing.contains(MARKER) {
            return Err(Error::HookExists { path });
        }
    }
    std::fs::write(&path, hook_script()).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).map_err(
            |source| Error::Io {
                path: path.clone(),
                source,
            },
        )?;
    }
    Ok(path)
}
