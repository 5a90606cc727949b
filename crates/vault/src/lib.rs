//! Envelope encryption for keygate's secrets.
//!
//! Every secret is sealed with its own random data key (XChaCha20-Poly1305); the data key
//! is sealed by the [`MasterKey`]. The associated data binds the record's kind, id and
//! exchange ([`RecordId`]), so a ciphertext copied onto another record fails to open.
//!
//! The master key comes from a passphrase (Argon2id, parameters stored with the vault:
//! [`KdfParams`]), from a 32-byte key file that only its owner may read, from text (an
//! environment variable), or is kept wrapped by a key on a PKCS#11 token ([`hsm`]).
//!
//! Secrets live in [`SecretBytes`] and [`SecretString`]: they are locked in memory where
//! the system allows it ([`secrets_locked`] tells whether every lock held), zeroize on drop, have no `Debug` or `Display`, compare in
//! constant time, and are read only through an explicit `expose_secret` call.
//!
//! This crate is not a store: it turns plaintext into sealed blobs and back; where the
//! blobs live is `keygate-store`'s business.
//!
//! ```
//! use keygate_vault::{MasterKey, RecordId};
//!
//! let master = MasterKey::generate();
//! let id = RecordId::new("account-secret", "main", "binance");
//! let sealed = master.seal(&id, b"real secret");
//! assert_eq!(master.open(&id, &sealed).unwrap().expose_secret(), b"real secret");
//! let other = RecordId::new("account-secret", "other", "binance");
//! assert!(master.open(&other, &sealed).is_err());
//! ```

pub mod hsm;
mod secret;

pub use hsm::HsmKey;
pub use secret::{redact, secrets_locked, SecretBytes, SecretString};

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

/// Format version written as the first byte of every sealed blob.
const SEALED_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// The length of a master key, and of a key file, in bytes.
pub const KEY_LEN: usize = 32;
const WRAPPED_KEY_LEN: usize = NONCE_LEN + KEY_LEN + TAG_LEN;

/// An error from the vault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The passphrase or key file does not open this vault.
    #[error("wrong passphrase or master key: the vault did not open")]
    WrongMasterKey,
    /// A sealed or tagged record failed authentication: it was altered, or moved from
    /// another record, without the master key.
    #[error("{kind} {id:?} failed authentication: it was tampered with (changed without the master key) or moved from another record")]
    Tampered {
        /// The record's kind.
        kind: String,
        /// The record's id, shortened to its first and last four characters when longer
        /// than twelve: a client's id is its API key, which no message may hold.
        id: String,
    },
    /// A key or secret file is readable by its group or by others.
    #[error("file {path} is readable by group or others (mode {mode:o}); run chmod 600 on it")]
    KeyFilePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key or secret file is not a regular file owned by the user running keygate.
    #[error("file {path} is refused: {reason}")]
    KeyFileNotOwned {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key file does not hold exactly 32 bytes.
    #[error("key file {path} must hold exactly 32 bytes, found {len}")]
    KeyFileLength {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
    /// A master key given as text is not 32 bytes in hex or base64. The text itself is
    /// never part of the message.
    #[error("the master key must be 32 bytes, written as 64 hex digits or in base64 (openssl rand -base64 32)")]
    KeyEncoding,
    /// A secret file is empty or longer than keygate takes for it
    /// ([`MAX_SECRET_FILE_LEN`], or a TLS key's [`MAX_TLS_KEY_FILE_LEN`]).
    #[error("secret file {path} must hold 1 to {max} bytes (keygate's limit), found {len}")]
    SecretFileLength {
        /// The file.
        path: PathBuf,
        /// Its length, without a trailing line break.
        len: usize,
        /// The most keygate takes.
        max: usize,
    },
    /// The passphrase is empty.
    #[error("the passphrase is empty")]
    EmptyPassphrase,
    /// Argon2 rejected its parameters.
    #[error("invalid key-derivation parameters: {reason}")]
    KdfParams {
        /// What argon2 said.
        reason: String,
    },
    /// The PKCS#11 module or token holding the master key's wrapping key failed, or is
    /// not as the vault's configuration describes it.
    #[error("PKCS#11 module {module}: {reason}")]
    Hsm {
        /// The module.
        module: PathBuf,
        /// What went wrong; never the PIN.
        reason: String,
    },
    /// The token refused the PIN.
    #[error("token {token:?} refused the PIN: {reason}")]
    HsmPin {
        /// The token's label.
        token: String,
        /// Wrong or locked.
        reason: &'static str,
    },
    /// Reading or writing a key file failed.
    #[error("{action} {path}: {cause}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause: in the message, not a source of its own, so that a report of the
        /// whole chain names it once.
        cause: std::io::Error,
    },
}

/// Identifies a sealed record; bound into its ciphertext as associated data. Its
/// `Debug` shortens the id, a client's whole API key for its key material, as
/// [`Error::Tampered`] does, and leaves out what the record is bound to (an account's
/// upstream URL).
#[derive(Clone, PartialEq, Eq)]
pub struct RecordId {
    kind: String,
    id: String,
    exchange: String,
    bound_to: String,
}

impl std::fmt::Debug for RecordId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordId")
            .field("kind", &self.kind)
            .field("id", &shortened(&self.id))
            .field("exchange", &self.exchange)
            .finish_non_exhaustive()
    }
}

impl RecordId {
    /// The record of `kind` (such as `account-secret`) with `id`, for `exchange`
    /// (empty when the record belongs to no exchange).
    pub fn new(kind: &str, id: &str, exchange: &str) -> RecordId {
        RecordId {
            kind: kind.to_owned(),
            id: id.to_owned(),
            exchange: exchange.to_owned(),
            bound_to: String::new(),
        }
    }

    /// The same record, bound to `value`, which is stored beside it in the clear (an
    /// account's upstream URL): a record sealed so fails to open once `value` changes.
    /// An empty `value` binds nothing, so that records sealed before there was anything
    /// to bind still open.
    pub fn bound_to(mut self, value: &str) -> RecordId {
        self.bound_to = value.to_owned();
        self
    }

    fn associated_data(&self) -> Vec<u8> {
        // Length-prefixed parts, so that ("ab", "c") and ("a", "bc") differ.
        let mut aad = b"keygate/v1".to_vec();
        let bound = Some(&self.bound_to).filter(|b| !b.is_empty());
        for part in [&self.kind, &self.id, &self.exchange]
            .into_iter()
            .chain(bound)
        {
            aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
            aad.extend_from_slice(part.as_bytes());
        }
        aad
    }
}

/// Bounds on the Argon2id parameters read back from a vault; see `KdfParams::check`.
/// keygate writes 64 MiB, 3 passes and 1 lane (or 8 MiB and 1 pass for tests); the
/// ceiling is a small multiple of that, low enough that a parameter row edited in the
/// database cannot make every unlock, `serve`'s included, fill a small container's memory
/// or run for a minute.
const MIN_KDF_MEMORY_KIB: u32 = 1024;
const MAX_KDF_MEMORY_KIB: u32 = 256 * 1024;
const MAX_KDF_PASSES: u32 = 8;
const MAX_KDF_LANES: u32 = 4;
const MIN_SALT_LEN: usize = 16;
const MAX_SALT_LEN: usize = 64;

/// Argon2id parameters, stored with the vault so that the key can be derived again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
    /// Random salt, hex.
    pub salt_hex: String,
}

impl KdfParams {
    /// OWASP's recommended Argon2id setting (64 MiB, 3 passes, 1 lane) with a fresh salt.
    pub fn recommended() -> KdfParams {
        KdfParams::with_cost(64 * 1024, 3)
    }

    /// The salt, once the parameters are within bounds. They come from the database:
    /// costs beyond these would make unlocking run for hours or exhaust memory, and
    /// costs below them were never written by keygate, so either means the vault's
    /// metadata was altered.
    fn check(&self) -> Result<Vec<u8>, Error> {
        let out_of_bounds = |what: &str| Error::KdfParams {
            reason: format!(
                "{what} is outside what keygate writes; the vault metadata was altered"
            ),
        };
        if !(MIN_KDF_MEMORY_KIB..=MAX_KDF_MEMORY_KIB).contains(&self.m_cost) {
            return Err(out_of_bounds("the memory cost"));
        }
        if !(1..=MAX_KDF_PASSES).contains(&self.t_cost) {
            return Err(out_of_bounds("the number of passes"));
        }
        if !(1..=MAX_KDF_LANES).contains(&self.p_cost) {
            return Err(out_of_bounds("the number of lanes"));
        }
        let salt = hex::decode(&self.salt_hex).map_err(|e| Error::KdfParams {
            reason: format!("salt is not hex: {e}"),
        })?;
        if !(MIN_SALT_LEN..=MAX_SALT_LEN).contains(&salt.len()) {
            return Err(out_of_bounds("the salt length"));
        }
        Ok(salt)
    }

    /// Argon2id with `m_cost` KiB and `t_cost` passes and a fresh salt. Lower costs are
    /// for tests only.
    pub fn with_cost(m_cost: u32, t_cost: u32) -> KdfParams {
        let mut salt = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut salt);
        KdfParams {
            m_cost,
            t_cost,
            p_cost: 1,
            salt_hex: hex::encode(salt),
        }
    }
}

/// The key that seals every data key. Locked in memory and zeroized on drop, as every
/// [`SecretBytes`] is.
pub struct MasterKey {
    key: SecretBytes,
    /// The subkey records are tagged with, derived once: record tags are checked on
    /// every reload of a running gateway, and an HMAC keyed with the master key each
    /// time would leave a copy of it on that thread's stack each time.
    record_key: SecretBytes,
}

impl MasterKey {
    /// A fresh random master key.
    pub fn generate() -> MasterKey {
        MasterKey::from_key(random_key())
    }

    /// The master key `key` ([`KEY_LEN`] bytes), with its record-tag subkey.
    fn from_key(key: SecretBytes) -> MasterKey {
        let record_key = subkey(&key, "record-tag");
        MasterKey { key, record_key }
    }

    /// The key's bytes.
    #[allow(clippy::expect_used, reason = "a key is made KEY_LEN long")]
    fn key(&self) -> &[u8; KEY_LEN] {
        self.key
            .expose_secret()
            .try_into()
            .expect("a master key is made of KEY_LEN bytes, by every constructor")
    }

    /// Derives the master key from a passphrase with Argon2id.
    pub fn from_passphrase(
        passphrase: &SecretString,
        params: &KdfParams,
    ) -> Result<MasterKey, Error> {
        if passphrase.expose_secret().is_empty() {
            return Err(Error::EmptyPassphrase);
        }
        let salt = params.check()?;
        let argon_params =
            argon2::Params::new(params.m_cost, params.t_cost, params.p_cost, Some(KEY_LEN))
                .map_err(|e| Error::KdfParams {
                    reason: e.to_string(),
                })?;
        let argon = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon_params,
        );
        // Argon2's working memory holds blocks the key is computed from: zeroized after,
        // where `hash_password_into` would free it as it is. (Not locked: at 64 MiB it is
        // past most `ulimit -l`.)
        let mut memory =
            zeroize::Zeroizing::new(vec![argon2::Block::default(); argon.params().block_count()]);
        let key = SecretBytes::filled(KEY_LEN, |key| {
            argon
                .hash_password_into_with_memory(
                    passphrase.expose_secret().as_bytes(),
                    &salt,
                    key,
                    &mut memory[..],
                )
                .map_err(|e| Error::KdfParams {
                    reason: e.to_string(),
                })
        })?;
        Ok(MasterKey::from_key(key))
    }

    /// Reads a 32-byte key file, refusing one that is not a regular file of this user's
    /// or that its group or others can read. The checks and the read are on one open
    /// file, so the file cannot be swapped in between.
    pub fn from_key_file(path: &Path) -> Result<MasterKey, Error> {
        let (bytes, len) = read_owner_only(path, KEY_LEN, "reading key file")?;
        if len != KEY_LEN {
            return Err(Error::KeyFileLength {
                path: path.to_owned(),
                len,
            });
        }
        Ok(MasterKey::from_key(bytes))
    }

    /// A key given as text (an environment variable, for containers): 32 bytes as 64 hex
    /// digits or in standard base64. Surrounding whitespace is ignored. Hex is decoded
    /// straight into locked memory; base64 into one buffer of its final size, zeroized.
    pub fn from_encoded(text: &str) -> Result<MasterKey, Error> {
        use base64::Engine;
        let text = text.trim();
        if text.len() == 2 * KEY_LEN {
            // Not `hex::decode`: its buffer grows as it decodes, and leaves the first
            // half of the key behind, unwiped, where it grew from.
            let key = SecretBytes::filled(KEY_LEN, |key| {
                hex::decode_to_slice(text, key).map_err(|_| Error::KeyEncoding)
            })?;
            return Ok(MasterKey::from_key(key));
        }
        let decoded = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| Error::KeyEncoding)?,
        );
        if decoded.len() != KEY_LEN {
            return Err(Error::KeyEncoding);
        }
        Ok(MasterKey::copied_from(&decoded))
    }

    /// A key copied into locked memory from `bytes`, which are [`KEY_LEN`] long; the
    /// caller zeroizes its copy.
    fn copied_from(bytes: &[u8]) -> MasterKey {
        MasterKey::from_key(
            SecretBytes::filled(KEY_LEN, |key| {
                key.copy_from_slice(bytes);
                Ok::<_, std::convert::Infallible>(())
            })
            .unwrap_or_else(|never| match never {}),
        )
    }

    /// Writes a fresh random key to a new file with mode 0600 and returns it. Fails if the
    /// file exists.
    pub fn create_key_file(path: &Path) -> Result<MasterKey, Error> {
        let key = MasterKey::generate();
        key.write_key_file(path)?;
        Ok(key)
    }

    /// Writes this key to a new file with mode 0600, for [`MasterKey::from_key_file`]:
    /// how a vault made with another provider moves to a key file. Fails if the file
    /// exists; a file it made and could not finish is removed, so that no copy of the key
    /// is left where nothing refers to it (found by review).
    pub fn write_key_file(&self, path: &Path) -> Result<(), Error> {
        let io = |cause| Error::Io {
            action: "creating key file",
            path: path.to_owned(),
            cause,
        };
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(io)?;
        let written = file.write_all(self.key()).and_then(|()| file.sync_all());
        // The file's name too: the vault may be made to rely on this file alone (its
        // passphrase's parameters deleted) as soon as this returns, and a crash that kept
        // the data but lost the directory entry would leave no way in.
        #[cfg(unix)]
        let written = written.and_then(|()| {
            let parent = match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            fs::File::open(parent).and_then(|dir| dir.sync_all())
        });
        if let Err(cause) = written {
            drop(file);
            // Best effort: the error that matters is the one returned.
            let _ = fs::remove_file(path);
            return Err(io(cause));
        }
        Ok(())
    }

    /// Seals `plaintext` for the record `id` under a fresh data key.
    ///
    /// Layout: version ‖ nonce₁ ‖ seal(master, data key) ‖ nonce₂ ‖ seal(data key, plaintext),
    /// both seals with the record's associated data.
    pub fn seal(&self, id: &RecordId, plaintext: &[u8]) -> Vec<u8> {
        let aad = id.associated_data();
        let data_key = random_key();
        #[allow(clippy::expect_used, reason = "random_key makes KEY_LEN bytes")]
        let data_key: &[u8; KEY_LEN] = data_key
            .expose_secret()
            .try_into()
            .expect("random_key makes KEY_LEN bytes");

        let mut blob = vec![SEALED_VERSION];
        blob.extend(seal_with(self.key(), &aad, data_key));
        blob.extend(seal_with(data_key, &aad, plaintext));
        blob
    }

    /// Opens a blob made by [`MasterKey::seal`] for the same record.
    pub fn open(&self, id: &RecordId, blob: &[u8]) -> Result<SecretBytes, Error> {
        let tampered = || Error::Tampered {
            kind: id.kind.clone(),
            id: shortened(&id.id),
        };
        let aad = id.associated_data();
        let (version, rest) = blob.split_first().ok_or_else(tampered)?;
        if *version != SEALED_VERSION || rest.len() < WRAPPED_KEY_LEN + NONCE_LEN + TAG_LEN {
            return Err(tampered());
        }
        let (wrapped, sealed) = rest.split_at(WRAPPED_KEY_LEN);
        let data_key = open_with(self.key(), &aad, wrapped).ok_or_else(tampered)?;
        let data_key: &[u8; KEY_LEN] = data_key
            .expose_secret()
            .try_into()
            .map_err(|_| tampered())?;
        open_with(data_key, &aad, sealed).ok_or_else(tampered)
    }

    /// Seals the fixed check value that [`MasterKey::verify_check`] opens; stored with the
    /// vault so that a wrong passphrase is told apart from tampering. It also records the
    /// vault's format, [`VaultFormat::Current`], where only the master key can change it.
    pub fn make_check(&self) -> Vec<u8> {
        self.seal(&check_id(), CHECK_PLAINTEXT)
    }

    /// Whether this key opens the vault's check value, and the format it records.
    pub fn verify_check(&self, check: &[u8]) -> Result<VaultFormat, Error> {
        match self.open(&check_id(), check) {
            Ok(p) if p.expose_secret() == CHECK_PLAINTEXT => Ok(VaultFormat::Current),
            Ok(p) if p.expose_secret() == CHECK_PLAINTEXT_UNTAGGED => Ok(VaultFormat::Untagged),
            _ => Err(Error::WrongMasterKey),
        }
    }

    /// A tag over a record stored in the clear (a client's status, policy and expiry), so
    /// that changing any of its `fields` without the master key is caught by
    /// [`MasterKey::verify_record`]. Each field is length-prefixed, so that no two lists
    /// of fields are tagged alike, and the tag is bound to `id` as a sealed record is.
    pub fn tag_record(&self, id: &RecordId, fields: &[&[u8]]) -> Vec<u8> {
        self.record_mac(id, fields).finalize().into_bytes().to_vec()
    }

    /// Checks, in constant time, a tag made by [`MasterKey::tag_record`] for the same
    /// record and fields.
    pub fn verify_record(&self, id: &RecordId, fields: &[&[u8]], tag: &[u8]) -> Result<(), Error> {
        self.record_mac(id, fields)
            .verify_slice(tag)
            .map_err(|_| Error::Tampered {
                kind: id.kind.clone(),
                id: shortened(&id.id),
            })
    }

    fn record_mac(&self, id: &RecordId, fields: &[&[u8]]) -> Hmac<Sha256> {
        #[allow(clippy::expect_used, reason = "HMAC takes keys of any length")]
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.record_key.expose_secret())
            .expect("HMAC accepts keys of any length");
        scrub_stack();
        mac.update(&id.associated_data());
        for field in fields {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field);
        }
        mac
    }

    /// A key derived from the master key for one purpose (such as the audit HMAC key), so
    /// that no single key serves two uses.
    pub fn derive_subkey(&self, purpose: &str) -> SecretBytes {
        subkey(&self.key, purpose)
    }
}

/// The subkey of `key` for `purpose`: `HMAC-SHA256(key, "keygate subkey/" ‖ purpose)`.
fn subkey(key: &SecretBytes, purpose: &str) -> SecretBytes {
    #[allow(clippy::expect_used, reason = "HMAC takes keys of any length")]
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.expose_secret())
        .expect("HMAC accepts keys of any length");
    scrub_stack();
    mac.update(b"keygate subkey/");
    mac.update(purpose.as_bytes());
    let mut derived = mac.finalize().into_bytes();
    let subkey = SecretBytes::filled(derived.len(), |out| {
        out.copy_from_slice(&derived);
        Ok::<_, std::convert::Infallible>(())
    })
    .unwrap_or_else(|never| match never {});
    zeroize::Zeroize::zeroize(derived.as_mut_slice());
    subkey
}

/// Overwrites the stack the calls just returned from used: keying an HMAC (`hmac`'s
/// `new_from_slice`) leaves the key, padded, in a buffer of its own on the stack, as
/// keying XChaCha20-Poly1305 and deriving its subkey do, which nothing wipes; called right
/// after, this function's frame covers that ground. (The HMAC's own state, hashed from
/// the key, is the caller's, and goes with it.)
#[inline(never)]
fn scrub_stack() {
    let mut ground = [0u8; 8192];
    zeroize::Zeroize::zeroize(&mut ground[..]);
    std::hint::black_box(&ground);
}

const CHECK_PLAINTEXT: &[u8] = b"keygate vault check v2";
/// The check value of vaults made before client records were tagged.
const CHECK_PLAINTEXT_UNTAGGED: &[u8] = b"keygate vault check v1";

/// A vault's format, as its check value records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VaultFormat {
    /// Made before client records were tagged ([`MasterKey::tag_record`]): its clients
    /// are to be tagged once, then the check value rewritten with
    /// [`MasterKey::make_check`].
    Untagged,
    /// Every client record carries a tag.
    Current,
}

fn check_id() -> RecordId {
    RecordId::new("vault-check", "", "")
}

fn seal_with(key: &[u8; KEY_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let mut nonce = [0u8; NONCE_LEN];
    rand::thread_rng().fill_bytes(&mut nonce);
    #[allow(clippy::expect_used, reason = "encryption into memory cannot fail")]
    let ciphertext = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
    // Keying the cipher and deriving its subkey leave copies of `key` in the frames of
    // the calls above (found by review: the master key's, on every seal).
    scrub_stack();
    let mut out = nonce.to_vec();
    out.extend(ciphertext);
    out
}

/// Opens `nonce ‖ ciphertext ‖ tag`, decrypting in place in locked memory: the plaintext
/// is never anywhere else, not even when the tag fails.
fn open_with(key: &[u8; KEY_LEN], aad: &[u8], sealed: &[u8]) -> Option<SecretBytes> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    let cipher = XChaCha20Poly1305::new(key.into());
    let opened = SecretBytes::filled(ciphertext.len(), |buffer| {
        buffer.copy_from_slice(ciphertext);
        cipher.decrypt_in_place_detached(
            XNonce::from_slice(nonce),
            aad,
            buffer,
            chacha20poly1305::Tag::from_slice(tag),
        )
    });
    // As in `seal_with`: the calls above left copies of `key` on the stack.
    scrub_stack();
    opened.ok()
}

/// `id`, or, when it is longer than twelve characters, only its first and last four.
fn shortened(id: &str) -> String {
    if id.chars().count() <= 12 {
        id.to_owned()
    } else {
        redact(id)
    }
}

/// The largest secret file [`read_secret_file`] reads.
pub const MAX_SECRET_FILE_LEN: usize = 4096;

/// Reads a secret (a webhook signing key, a token) from a file that only its owner may
/// read, with the checks of [`MasterKey::from_key_file`]. A trailing line break is not
/// part of the secret. An empty file, or one longer than [`MAX_SECRET_FILE_LEN`], is
/// refused.
pub fn read_secret_file(path: &Path) -> Result<SecretBytes, Error> {
    read_secret_file_up_to(path, MAX_SECRET_FILE_LEN)
}

/// The most a TLS private key file may hold: an RSA key of 8192 bits is about 6.3 KB in
/// PEM, and some servers keep the certificate chain in the same file.
pub const MAX_TLS_KEY_FILE_LEN: usize = 64 * 1024;

/// As [`read_secret_file`], for a file of at most `max` bytes (a TLS private key, which
/// may hold more than a token: [`MAX_TLS_KEY_FILE_LEN`]).
pub fn read_secret_file_up_to(path: &Path, max: usize) -> Result<SecretBytes, Error> {
    let (bytes, len) = read_owner_only(path, max, "reading")?;
    let secret = bytes.expose_secret();
    let kept = secret
        .strip_suffix(b"\n")
        .map(|s| s.strip_suffix(b"\r").unwrap_or(s))
        .unwrap_or(secret);
    if len > max || kept.is_empty() {
        return Err(Error::SecretFileLength {
            path: path.to_owned(),
            len: if len > max { len } else { 0 },
            max,
        });
    }
    SecretBytes::filled(kept.len(), |out| {
        out.copy_from_slice(kept);
        Ok(())
    })
}

/// Reads at most `limit` bytes of a regular file of this user's that neither its group
/// nor others can read, into locked memory. The checks and the read are on one open
/// file, so the file cannot be swapped in between; a symlink is followed (mounted
/// secrets often are one) and the file it leads to is checked. Returns the bytes and the file's
/// length (more than `limit` when the file is longer).
fn read_owner_only(
    path: &Path,
    limit: usize,
    action: &'static str,
) -> Result<(SecretBytes, usize), Error> {
    let io = |cause| Error::Io {
        action,
        path: path.to_owned(),
        cause,
    };
    let mut options = fs::OpenOptions::new();
    options.read(true);
    // Without blocking: a FIFO put where the file should be would otherwise hang the
    // open before the checks below refuse it as not a regular file.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        &mut options,
        rustix::fs::OFlags::NONBLOCK.bits() as i32,
    );
    let mut file = options.open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    check_owner_only(path, &meta)?;
    // One byte more than the limit, to tell a longer file apart; never more.
    let mut read = 0;
    let buffer = SecretBytes::filled(limit + 1, |buf| {
        while read < buf.len() {
            match file.read(&mut buf[read..]).map_err(io)? {
                0 => break,
                n => read += n,
            }
        }
        Ok(())
    })?;
    if read > limit {
        let len = usize::try_from(meta.len()).unwrap_or(usize::MAX).max(read);
        return Ok((buffer, len));
    }
    let bytes = SecretBytes::filled(read, |out| {
        out.copy_from_slice(&buffer.expose_secret()[..read]);
        Ok::<_, Error>(())
    })?;
    Ok((bytes, read))
}

#[cfg(unix)]
fn check_owner_only(path: &Path, meta: &fs::Metadata) -> Result<(), Error> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !meta.is_file() {
        return Err(Error::KeyFileNotOwned {
            path: path.to_owned(),
            reason: "it is not a regular file".into(),
        });
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(Error::KeyFileNotOwned {
            path: path.to_owned(),
            reason: format!("it belongs to user {}, not to this user ({me})", meta.uid()),
        });
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::KeyFilePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// 32 random bytes, made in locked memory, straight from the operating system: a
/// user-space generator (`thread_rng`) keeps its output block in memory that is neither
/// locked nor wiped, where the key would stay until the block is drawn again (found by
/// review).
fn random_key() -> SecretBytes {
    SecretBytes::filled(KEY_LEN, |key| {
        rand::rngs::OsRng.fill_bytes(key);
        Ok::<_, std::convert::Infallible>(())
    })
    .unwrap_or_else(|never| match never {})
}

#[cfg(not(unix))]
fn check_owner_only(_path: &Path, _meta: &fs::Metadata) -> Result<(), Error> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deriving with working memory of keygate's own (zeroized after) gives the key
    /// Argon2id gives with its own, so vaults made before open as they did.
    #[test]
    fn a_passphrase_derives_the_key_argon2id_gives() {
        let params = KdfParams::with_cost(8 * 1024, 1);
        let passphrase = SecretString::new("correct horse battery staple".into());
        let derived = MasterKey::from_passphrase(&passphrase, &params).unwrap();
        let mut expected = [0u8; KEY_LEN];
        argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(params.m_cost, params.t_cost, params.p_cost, Some(KEY_LEN))
                .unwrap(),
        )
        .hash_password_into(
            passphrase.expose_secret().as_bytes(),
            &params.check().unwrap(),
            &mut expected,
        )
        .unwrap();
        assert_eq!(derived.key.expose_secret(), expected);
    }

    #[test]
    fn a_tampered_record_is_named_without_its_whole_id() {
        let master = MasterKey::generate();
        let api_key = "82SXo2qdAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAwXyZ";
        let id = RecordId::new("client-key", api_key, "hmac");
        let mut blob = master.seal(&id, b"s3cret");
        let last = blob.len() - 1;
        blob[last] ^= 1;
        let message = master.open(&id, &blob).err().unwrap().to_string();
        assert!(message.contains("82SX…wXyZ"), "{message}");
        assert!(!message.contains(api_key), "{message}");
        // Nor does the record's `Debug` hold it (found by review), nor what it is bound to.
        let debug = format!("{:?}", id.bound_to("https://user:pass@example.com"));
        assert!(
            debug.contains("82SX…wXyZ") && !debug.contains(api_key),
            "{debug}"
        );
        assert!(!debug.contains("pass@"), "{debug}");
    }

    #[test]
    fn a_record_bound_to_a_value_opens_only_with_that_value() {
        let master = MasterKey::generate();
        let id = || RecordId::new("account-secret", "main", "binance");
        let bound = master.seal(&id().bound_to("https://testnet.binance.vision"), b"s3cret");
        assert!(master
            .open(&id().bound_to("https://testnet.binance.vision"), &bound)
            .is_ok());
        assert!(master
            .open(&id().bound_to("https://evil.example"), &bound)
            .is_err());
        assert!(master.open(&id(), &bound).is_err());
        // Unbound records, such as those sealed before binding existed, are unchanged.
        let unbound = master.seal(&id(), b"s3cret");
        assert!(master.open(&id().bound_to(""), &unbound).is_ok());
        assert!(master
            .open(&id().bound_to("https://evil.example"), &unbound)
            .is_err());
    }

    #[test]
    fn sealed_blob_opens_only_for_its_record() {
        let master = MasterKey::generate();
        let id = RecordId::new("account-secret", "main", "binance");
        let blob = master.seal(&id, b"s3cret");
        assert_eq!(master.open(&id, &blob).unwrap().expose_secret(), b"s3cret");
        for other in [
            RecordId::new("account-key", "main", "binance"),
            RecordId::new("account-secret", "main2", "binance"),
            RecordId::new("account-secret", "main", "kraken"),
        ] {
            assert!(matches!(
                master.open(&other, &blob),
                Err(Error::Tampered { .. })
            ));
        }
    }

    #[test]
    fn flipping_any_byte_is_detected() {
        let master = MasterKey::generate();
        let id = RecordId::new("k", "i", "e");
        let blob = master.seal(&id, b"payload");
        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 1;
            assert!(
                master.open(&id, &bad).is_err(),
                "byte {i} flip not detected"
            );
        }
        assert!(master.open(&id, &blob[..blob.len() - 1]).is_err());
    }

    #[test]
    fn kdf_parameters_out_of_bounds_are_refused_before_deriving() {
        let passphrase = SecretString::new("correct horse".into());
        let good = KdfParams::with_cost(1024, 1);
        for bad in [
            KdfParams {
                m_cost: u32::MAX,
                ..good.clone()
            },
            KdfParams {
                m_cost: 4 * 1024 * 1024,
                t_cost: 16,
                p_cost: 16,
                ..good.clone()
            },
            KdfParams {
                m_cost: 512 * 1024,
                ..good.clone()
            },
            KdfParams {
                m_cost: 8,
                ..good.clone()
            },
            KdfParams {
                t_cost: 4_000_000_000,
                ..good.clone()
            },
            KdfParams {
                t_cost: 0,
                ..good.clone()
            },
            KdfParams {
                p_cost: 1000,
                ..good.clone()
            },
            KdfParams {
                salt_hex: "00".into(),
                ..good.clone()
            },
        ] {
            assert!(
                matches!(
                    MasterKey::from_passphrase(&passphrase, &bad),
                    Err(Error::KdfParams { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn key_files_must_be_private_regular_files_of_one_key() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let _ = fs::remove_file(&path);
        let created = MasterKey::create_key_file(&path).unwrap();
        let read = MasterKey::from_key_file(&path).unwrap();
        assert_eq!(created.key(), read.key());

        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            MasterKey::from_key_file(&path),
            Err(Error::KeyFilePermissions { mode: 0o640, .. })
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            MasterKey::from_key_file(&path),
            Err(Error::KeyFilePermissions { .. })
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, [7u8; 1000]).unwrap();
        assert!(matches!(
            MasterKey::from_key_file(&path),
            Err(Error::KeyFileLength { len: 1000, .. })
        ));
        assert!(matches!(
            MasterKey::from_key_file(dir.path()),
            Err(Error::KeyFileNotOwned { .. }) | Err(Error::Io { .. })
        ));
        // A FIFO where the key file should be is refused at once, not waited on.
        let fifo = dir.path().join("fifo.key");
        let made = std::process::Command::new("mkfifo")
            .arg("-m")
            .arg("600")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let (tx, rx) = std::sync::mpsc::channel();
        let reading = fifo.clone();
        std::thread::spawn(move || {
            let _ = tx.send(matches!(
                MasterKey::from_key_file(&reading),
                Err(Error::KeyFileNotOwned { .. })
            ));
        });
        let refused = rx.recv_timeout(std::time::Duration::from_secs(10));
        assert_eq!(refused, Ok(true), "a FIFO key file hung or was not refused");
        drop(dir);
    }

    #[test]
    fn secret_files_are_private_bounded_and_lose_only_a_trailing_line_break() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("webhook.key");
        let write = |bytes: &[u8], mode: u32| {
            fs::write(&path, bytes).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        };
        write(b"s3cret token\r\n", 0o600);
        assert_eq!(
            read_secret_file(&path).unwrap().expose_secret(),
            b"s3cret token"
        );
        write(b" spaced \n\n", 0o600);
        assert_eq!(
            read_secret_file(&path).unwrap().expose_secret(),
            b" spaced \n"
        );
        write(b"s3cret", 0o604);
        assert!(matches!(
            read_secret_file(&path),
            Err(Error::KeyFilePermissions { mode: 0o604, .. })
        ));
        write(b"\n", 0o600);
        assert!(matches!(
            read_secret_file(&path),
            Err(Error::SecretFileLength { len: 0, .. })
        ));
        write(&[b'k'; MAX_SECRET_FILE_LEN + 5], 0o600);
        assert!(matches!(
            read_secret_file(&path),
            Err(Error::SecretFileLength { len, .. }) if len == MAX_SECRET_FILE_LEN + 5
        ));
        write(&[b'k'; MAX_SECRET_FILE_LEN], 0o600);
        assert_eq!(
            read_secret_file(&path).unwrap().expose_secret().len(),
            MAX_SECRET_FILE_LEN
        );
        // From a review: a TLS key (RSA-8192, or a key with its chain) is longer than a
        // token, and was refused with a message that did not say the limit was keygate's.
        write(&[b'k'; 6_300], 0o600);
        let refused = read_secret_file(&path).err().map(|e| e.to_string());
        let refused = refused.unwrap_or_default();
        assert!(
            refused.contains("1 to 4096 bytes (keygate's limit)"),
            "{refused}"
        );
        assert_eq!(
            read_secret_file_up_to(&path, MAX_TLS_KEY_FILE_LEN)
                .unwrap()
                .expose_secret()
                .len(),
            6_300
        );
    }

    #[test]
    fn a_master_key_from_text_is_32_bytes_in_hex_or_base64() {
        use base64::Engine;
        let bytes: Vec<u8> = (0..32).collect();
        let hex = hex::encode(&bytes);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let from_hex = MasterKey::from_encoded(&format!(" {hex}\n")).unwrap();
        let from_b64 = MasterKey::from_encoded(&b64).unwrap();
        assert_eq!(from_hex.key(), bytes.as_slice());
        assert_eq!(from_b64.key(), bytes.as_slice());
        for bad in [
            "",
            "c2hvcnQ=",
            &hex[..62],
            &format!("{hex}00"),
            &hex.replace('0', "g"),
            "not base64 at all!",
        ] {
            // One fixed message: the text, a near miss of a key perhaps, is never in it.
            let error = MasterKey::from_encoded(bad).err().expect(bad);
            assert!(matches!(error, Error::KeyEncoding), "{bad}");
        }
    }

    #[test]
    fn wrong_passphrase_fails_the_check() {
        let params = KdfParams::with_cost(1024, 1);
        let good = MasterKey::from_passphrase(&SecretString::new("correct horse".into()), &params)
            .unwrap();
        let check = good.make_check();
        let bad =
            MasterKey::from_passphrase(&SecretString::new("wrong horse".into()), &params).unwrap();
        assert_eq!(good.verify_check(&check).unwrap(), VaultFormat::Current);
        assert!(matches!(
            bad.verify_check(&check),
            Err(Error::WrongMasterKey)
        ));
    }

    #[test]
    fn a_check_value_from_before_record_tags_says_so() {
        let master = MasterKey::generate();
        let old = master.seal(&check_id(), CHECK_PLAINTEXT_UNTAGGED);
        assert_eq!(master.verify_check(&old).unwrap(), VaultFormat::Untagged);
    }

    #[test]
    fn a_record_tag_covers_every_field_its_record_and_its_key() {
        let master = MasterKey::generate();
        let id = RecordId::new("client", "bot1", "");
        let fields: [&[u8]; 3] = [b"active", b"{\"scope\":[\"read\"]}", b"main"];
        let tag = master.tag_record(&id, &fields);
        assert!(master.verify_record(&id, &fields, &tag).is_ok());

        let widened: [&[u8]; 3] = [b"active", b"{\"scope\":[\"withdraw\"]}", b"main"];
        let shifted: [&[u8]; 3] = [b"activ", b"e{\"scope\":[\"read\"]}", b"main"];
        for other in [&widened, &shifted] {
            assert!(matches!(
                master.verify_record(&id, other, &tag),
                Err(Error::Tampered { .. })
            ));
        }
        let other_record = RecordId::new("client", "bot2", "");
        assert!(master.verify_record(&other_record, &fields, &tag).is_err());
        assert!(MasterKey::generate()
            .verify_record(&id, &fields, &tag)
            .is_err());
        assert!(master.verify_record(&id, &fields, &tag[..16]).is_err());
    }
}
