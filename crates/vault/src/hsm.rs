//! The master key kept wrapped by a key that never leaves a PKCS#11 token (an HSM, a
//! smart card, SoftHSM).
//!
//! The token holds an AES-256 key, created non-extractable and sensitive, that keygate
//! asks to encrypt (once, at `init`) and decrypt (each time the vault is opened) the
//! vault's master key with AES-GCM. The wrapped master key is stored with the vault; on
//! its own it opens nothing. Without the token and its PIN the vault stays shut, and
//! destroying or disabling the token's key shuts it for good.
//!
//! What this does not do: the master key, once unwrapped, is in keygate's (locked)
//! memory for as long as the process runs, as with every other provider. The token
//! protects the key at rest and decides who may start keygate; it does not make a
//! running, compromised keygate harmless.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::RvError;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{Error, MasterKey, SecretString, KEY_LEN};

/// Format version, the first byte of a wrapped master key.
const WRAPPED_VERSION: u8 = 1;
/// AES-GCM's nonce length (the one tokens handle best) and tag length.
const GCM_IV_LEN: usize = 12;
const GCM_TAG_BITS: u64 = 128;
/// Associated data of the wrapping: a token key asked to decrypt anything but a keygate
/// master key wrapped for this purpose fails its tag.
const WRAPPED_AAD: &[u8] = b"keygate master key v1";
/// The wrapped master key's length: version, IV, ciphertext, tag.
const WRAPPED_LEN: usize = 1 + GCM_IV_LEN + KEY_LEN + (GCM_TAG_BITS as usize / 8);

/// A PKCS#11 library keeps one state per process; keygate talks to it one call at a time.
static TOKEN_IN_USE: Mutex<()> = Mutex::new(());

/// Where the key that wraps the master key lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HsmKey {
    /// The PKCS#11 module (a shared library, such as `/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// The label of the token that holds the key.
    pub token: String,
    /// The key's label on that token.
    pub key: String,
}

impl MasterKey {
    /// A fresh master key, and the same key wrapped by the token key `at`, which is
    /// created (AES-256, sensitive, not extractable) when the token has no key of that
    /// label. Store the wrapped key with the vault; [`MasterKey::from_hsm`] unwraps it.
    pub fn generate_hsm_wrapped(
        at: &HsmKey,
        pin: &SecretString,
    ) -> Result<(MasterKey, Vec<u8>), Error> {
        let master = MasterKey::generate();
        let wrapped = master.wrap_with_hsm(at, pin)?;
        Ok((master, wrapped))
    }

    /// This key wrapped by the token key `at`, which is created as
    /// [`MasterKey::generate_hsm_wrapped`] says when the token has none: how a vault made
    /// with another provider moves to the token. Before it returns, the token has
    /// unwrapped the result back to this very key.
    pub fn wrap_with_hsm(&self, at: &HsmKey, pin: &SecretString) -> Result<Vec<u8>, Error> {
        with_token(at, pin, Access::ReadWrite, |session| {
            let key = match find_key(session, at, Judged::ToWrap)? {
                Some(key) => key,
                None => create_key(session, at)?,
            };
            let mut nonce = [0u8; GCM_IV_LEN];
            rand::thread_rng().fill_bytes(&mut nonce);
            let sealed = {
                let params = GcmParams::new(&mut nonce, WRAPPED_AAD, GCM_TAG_BITS.into())
                    .map_err(|e| hsm(at, "preparing AES-GCM", e))?;
                session
                    .encrypt(&Mechanism::AesGcm(params), key, self.key())
                    .map_err(|e| hsm(at, "wrapping the master key", e))?
            };
            // Read after the encryption: a token may choose the IV itself and write it
            // back into the parameters.
            let mut wrapped = vec![WRAPPED_VERSION];
            wrapped.extend_from_slice(&nonce);
            wrapped.extend_from_slice(&sealed);
            if wrapped.len() != WRAPPED_LEN {
                return Err(hsm_refused(
                    at,
                    format!(
                        "the token wrapped the master key into {} bytes, not {WRAPPED_LEN}",
                        wrapped.len()
                    ),
                ));
            }
            let unwrapped = unwrap_in(session, at, key, &wrapped)?;
            if !bool::from(subtle::ConstantTimeEq::ct_eq(
                unwrapped.as_slice(),
                self.key().as_slice(),
            )) {
                return Err(hsm_refused(
                    at,
                    "the token did not unwrap the master key it wrapped".into(),
                ));
            }
            Ok(wrapped)
        })
    }

    /// The master key that the token key `at` wrapped into `wrapped`.
    pub fn from_hsm(at: &HsmKey, pin: &SecretString, wrapped: &[u8]) -> Result<MasterKey, Error> {
        if wrapped.len() != WRAPPED_LEN || wrapped[0] != WRAPPED_VERSION {
            return Err(hsm_refused(
                at,
                "the vault's wrapped master key is not in a format this keygate reads".into(),
            ));
        }
        let plain = with_token(at, pin, Access::ReadOnly, |session| {
            let key = find_key(session, at, Judged::ToUnwrap)?.ok_or_else(|| {
                hsm_refused(
                    at,
                    format!("token {:?} holds no key labelled {:?}", at.token, at.key),
                )
            })?;
            unwrap_in(session, at, key, wrapped)
        })?;
        Ok(MasterKey::copied_from(&plain))
    }
}

/// Unwraps `wrapped` (checked to be [`WRAPPED_LEN`] long) with `key` in `session`.
fn unwrap_in(
    session: &Session,
    at: &HsmKey,
    key: ObjectHandle,
    wrapped: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let (iv, sealed) = wrapped[1..].split_at(GCM_IV_LEN);
    let mut nonce = [0u8; GCM_IV_LEN];
    nonce.copy_from_slice(iv);
    let params = GcmParams::new(&mut nonce, WRAPPED_AAD, GCM_TAG_BITS.into())
        .map_err(|e| hsm(at, "preparing AES-GCM", e))?;
    let plain = session
        .decrypt(&Mechanism::AesGcm(params), key, sealed)
        .map(Zeroizing::new)
        .map_err(|e| match e {
            // A tag that fails is this vault's key wrapped by another token key (or
            // altered): a wrong key, like a wrong passphrase. Tokens say so in different
            // words; SoftHSM2 calls it a general error.
            cryptoki::error::Error::Pkcs11(
                RvError::EncryptedDataInvalid
                | RvError::EncryptedDataLenRange
                | RvError::GeneralError,
                _,
            ) => Error::WrongMasterKey,
            e => hsm(at, "unwrapping the master key", e),
        })?;
    if plain.len() != KEY_LEN {
        return Err(Error::WrongMasterKey);
    }
    Ok(plain)
}

/// Whether keygate needs to write to the token (to create its key) or only to use it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    ReadOnly,
    ReadWrite,
}

/// Loads the module, logs in to the token labelled `at.token` with `pin`, runs `work`,
/// and closes everything again, whatever `work` returned.
fn with_token<T>(
    at: &HsmKey,
    pin: &SecretString,
    access: Access,
    work: impl FnOnce(&Session) -> Result<T, Error>,
) -> Result<T, Error> {
    let _one_at_a_time = TOKEN_IN_USE.lock().unwrap_or_else(|p| p.into_inner());
    if !at.module.is_absolute() {
        return Err(hsm_refused(
            at,
            "the PKCS#11 module must be given by its absolute path".into(),
        ));
    }
    let library = Pkcs11::new(&at.module).map_err(|e| hsm(at, "loading the module", e))?;
    library
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(|e| hsm(at, "initializing the module", e))?;
    let result = (|| {
        let slot = find_token(&library, at)?;
        let session = match access {
            Access::ReadOnly => library.open_ro_session(slot),
            Access::ReadWrite => library.open_rw_session(slot),
        }
        .map_err(|e| hsm(at, "opening a session", e))?;
        let pin = cryptoki::types::AuthPin::new(pin.expose_secret().into());
        session
            .login(UserType::User, Some(&pin))
            .map_err(|e| match e {
                cryptoki::error::Error::Pkcs11(RvError::PinIncorrect, _) => Error::HsmPin {
                    token: at.token.clone(),
                    reason: "the PIN is wrong",
                },
                cryptoki::error::Error::Pkcs11(RvError::PinLocked, _) => Error::HsmPin {
                    token: at.token.clone(),
                    reason: "the PIN is locked after too many wrong attempts",
                },
                e => hsm(at, "logging in", e),
            })?;
        let value = work(&session);
        let _ = session.logout();
        value
    })();
    let _ = library.finalize();
    result
}

/// The slot of the one token labelled `at.token`.
fn find_token(library: &Pkcs11, at: &HsmKey) -> Result<cryptoki::slot::Slot, Error> {
    let slots = library
        .get_slots_with_initialized_token()
        .map_err(|e| hsm(at, "listing the tokens", e))?;
    let mut labelled = Vec::new();
    for slot in slots {
        let info = library
            .get_token_info(slot)
            .map_err(|e| hsm(at, "reading a token's label", e))?;
        if info.label().trim_end() == at.token {
            labelled.push(slot);
        }
    }
    match labelled.as_slice() {
        [slot] => Ok(*slot),
        [] => Err(hsm_refused(
            at,
            format!("no initialized token is labelled {:?}", at.token),
        )),
        _ => Err(hsm_refused(
            at,
            format!("more than one token is labelled {:?}", at.token),
        )),
    }
}

/// How strictly [`find_key`] judges the key it finds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Judged {
    /// To wrap a master key with: the key must be as [`create_key`] makes it (AES-256, on
    /// the token, private: unusable without the PIN; always sensitive and never
    /// extractable: its value never left the token).
    ToWrap,
    /// To unwrap one a key wrapped before: an AES key that is sensitive and not
    /// extractable, as keygate asked of keys it wrapped with before it asked more, so
    /// that a vault made then still opens.
    ToUnwrap,
}

/// The secret key labelled `at.key`, if there is exactly one; refused unless it is as
/// `judged` asks.
fn find_key(session: &Session, at: &HsmKey, judged: Judged) -> Result<Option<ObjectHandle>, Error> {
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(at.key.as_bytes().to_vec()),
        ])
        .map_err(|e| hsm(at, "looking for the key", e))?;
    match found.as_slice() {
        [] => Ok(None),
        [key] => {
            let mut asked = vec![
                Attribute::KeyType(KeyType::AES),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
            ];
            if judged == Judged::ToWrap {
                asked.extend([
                    Attribute::ValueLen((KEY_LEN as u64).into()),
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::AlwaysSensitive(true),
                    Attribute::NeverExtractable(true),
                ]);
            }
            let types: Vec<AttributeType> = asked.iter().map(Attribute::attribute_type).collect();
            let attributes = session
                .get_attributes(*key, &types)
                .map_err(|e| hsm(at, "reading the key's attributes", e))?;
            if asked.iter().all(|a| attributes.contains(a)) {
                return Ok(Some(*key));
            }
            let what = match judged {
                Judged::ToWrap => {
                    "an AES-256 key kept on the token, private (of no use without the PIN), \
                     always sensitive and never extractable (its value never left the token); \
                     give another label and keygate makes one"
                }
                Judged::ToUnwrap => "an AES key that is sensitive and not extractable",
            };
            Err(hsm_refused(
                at,
                format!(
                    "key {:?} on token {:?} is not {what}; keygate wraps its master key only \
                     with such a key",
                    at.key, at.token
                ),
            ))
        }
        _ => Err(hsm_refused(
            at,
            format!(
                "token {:?} holds more than one key labelled {:?}",
                at.token, at.key
            ),
        )),
    }
}

/// Creates the wrapping key on the token: AES-256, kept on the token, private, sensitive
/// and not extractable, good for encrypting and decrypting only.
fn create_key(session: &Session, at: &HsmKey) -> Result<ObjectHandle, Error> {
    session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen((KEY_LEN as u64).into()),
                Attribute::Label(at.key.as_bytes().to_vec()),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Wrap(false),
                Attribute::Derive(false),
                Attribute::Sign(false),
            ],
        )
        .map_err(|e| hsm(at, "creating the key", e))
}

fn hsm(at: &HsmKey, action: &str, e: cryptoki::error::Error) -> Error {
    hsm_refused(at, format!("{action}: {e}"))
}

fn hsm_refused(at: &HsmKey, reason: String) -> Error {
    Error::Hsm {
        module: at.module.clone(),
        reason,
    }
}

/// The PKCS#11 module of SoftHSM2 where Debian and its derivatives install it, if it is
/// there: what tests and `keygate demo`-style setups use when no module is named.
pub fn softhsm_module() -> Option<PathBuf> {
    [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so",
    ]
    .into_iter()
    .map(Path::new)
    .find(|p| p.exists())
    .map(Path::to_path_buf)
}
