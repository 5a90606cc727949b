//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading rules or scanning.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("cannot access {path}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A `git` command could not be started or exited unsuccessfully.
    #[error("git {command} failed: {message}")]
    Git {
        /// The git subcommand and arguments.
        command: String,
        /// Its standard error, or why it could not run.
        message: String,
    },
    /// A `git` command said nothing for so long that it was stopped: something it reads
    /// (a pipe in the repository) would have kept it waiting for ever.
    #[error("git {command} was stopped: no output for {seconds} s (a pipe or a device in the repository?)")]
    GitStopped {
        /// The git subcommand and arguments.
        command: String,
        /// How long it said nothing.
        seconds: u64,
    },
    /// A rule file is malformed or a rule cannot be compiled.
    #[error("invalid rule file {file}: {message}")]
    Rules {
        /// The rule file name.
        file: String,
        /// What is wrong with it.
        message: String,
    },
    /// A git hook that keygate did not write is already installed where its own would go.
    #[error("a git hook not written by keygate already exists at {path}")]
    HookExists {
        /// The existing hook.
        path: PathBuf,
    },
}
