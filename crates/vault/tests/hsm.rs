//! The master key wrapped by a key on a real PKCS#11 token: SoftHSM2, in a token
//! directory of the test's own.
//!
//! Skipped, saying so, where SoftHSM2 is not installed, unless `KEYGATE_REQUIRE_SOFTHSM`
//! is set: `scripts/test.sh` installs it and sets that, so CI never skips.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests stop at the first surprise.

use std::path::Path;
use std::process::Command;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::UserType;
use keygate_vault::hsm::softhsm_module;
use keygate_vault::{Error, HsmKey, MasterKey, RecordId, SecretString};

const PIN: &str = "pin-7d3f9a1c";
const SO_PIN: &str = "so-pin-0b2e";

/// One test, in steps: SoftHSM finds its configuration through the environment, which a
/// test may only set while no other test thread runs.
#[test]
fn a_master_key_wrapped_by_a_token_key_opens_only_with_that_token_and_pin() {
    let Some(module) = softhsm_module() else {
        assert!(
            std::env::var_os("KEYGATE_REQUIRE_SOFTHSM").is_none(),
            "SoftHSM2 is required (KEYGATE_REQUIRE_SOFTHSM) but not installed"
        );
        eprintln!("skipped: SoftHSM2 is not installed (apt-get install softhsm2)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let conf = softhsm_conf(dir.path());
    std::env::set_var("SOFTHSM2_CONF", &conf);
    init_token(&conf, "keygate-a");
    init_token(&conf, "keygate-b");
    let at = |token: &str| HsmKey {
        module: module.clone(),
        token: token.into(),
        key: "keygate-master".into(),
    };
    let pin = SecretString::new(PIN.into());

    // Wrapped once, unwrapped to the same key: what one seals, the other opens.
    let (master, wrapped) = MasterKey::generate_hsm_wrapped(&at("keygate-a"), &pin).unwrap();
    let reopened = MasterKey::from_hsm(&at("keygate-a"), &pin, &wrapped).unwrap();
    let id = RecordId::new("account-secret", "main", "binance");
    let sealed = master.seal(&id, b"real secret");
    assert_eq!(
        reopened.open(&id, &sealed).unwrap().expose_secret(),
        b"real secret"
    );

    // The key made on the token is sensitive and not extractable: its value cannot be read.
    assert_key_stays_on_token(&module, "keygate-a", "keygate-master");

    // A key of that label that is not kept on the token (extractable) is refused.
    create_extractable_key(&module, "keygate-a", "weak-key");
    let weak = HsmKey {
        key: "weak-key".into(),
        ..at("keygate-a")
    };
    let err = MasterKey::generate_hsm_wrapped(&weak, &pin).err().unwrap();
    assert!(err.to_string().contains("never extractable"), "{err}");

    // Found by review: a key of the operator's making was taken if only it was AES,
    // sensitive and not extractable. One usable without the PIN (not private), an
    // AES-128 key, and one whose value was read out before it was locked are refused.
    create_key_with(&module, "keygate-a", "public-key", 32, false, false);
    create_key_with(&module, "keygate-a", "short-key", 16, true, false);
    create_key_with(&module, "keygate-a", "once-read", 32, true, true);
    for label in ["public-key", "short-key", "once-read"] {
        let operators = HsmKey {
            key: label.into(),
            ..at("keygate-a")
        };
        let err = MasterKey::generate_hsm_wrapped(&operators, &pin).err();
        assert!(
            err.as_ref().is_some_and(|e| e
                .to_string()
                .contains("private (of no use without the PIN)")),
            "{label}: {err:?}"
        );
    }

    // A second vault on the same token uses the same token key, with its own master key.
    let (second, second_wrapped) = MasterKey::generate_hsm_wrapped(&at("keygate-a"), &pin).unwrap();
    assert_ne!(second_wrapped, wrapped);
    let second_again = MasterKey::from_hsm(&at("keygate-a"), &pin, &second_wrapped).unwrap();
    assert!(second_again.open(&id, &second.seal(&id, b"x")).is_ok());
    assert!(second_again.open(&id, &sealed).is_err());

    // A wrong PIN is refused by the token, and the message does not hold it.
    let wrong = SecretString::new("not-the-pin".into());
    let err = MasterKey::from_hsm(&at("keygate-a"), &wrong, &wrapped)
        .err()
        .unwrap();
    assert!(matches!(err, Error::HsmPin { .. }), "{err}");
    assert!(!err.to_string().contains("not-the-pin"));

    // Another token's key of the same label does not open this vault's master key.
    MasterKey::generate_hsm_wrapped(&at("keygate-b"), &pin).unwrap();
    let err = MasterKey::from_hsm(&at("keygate-b"), &pin, &wrapped)
        .err()
        .unwrap();
    assert!(matches!(err, Error::WrongMasterKey), "{err}");

    // Nor does an altered wrapped key.
    let mut altered = wrapped.clone();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    let err = MasterKey::from_hsm(&at("keygate-a"), &pin, &altered)
        .err()
        .unwrap();
    assert!(matches!(err, Error::WrongMasterKey), "{err}");

    // A token or key that is not there is named.
    let err = MasterKey::from_hsm(&at("keygate-c"), &pin, &wrapped)
        .err()
        .unwrap();
    assert!(err.to_string().contains("no initialized token"), "{err}");
    let no_key = HsmKey {
        key: "another-label".into(),
        ..at("keygate-a")
    };
    let err = MasterKey::from_hsm(&no_key, &pin, &wrapped).err().unwrap();
    assert!(err.to_string().contains("holds no key"), "{err}");

    // A module given by a relative path is refused before anything is loaded.
    let relative = HsmKey {
        module: "libsofthsm2.so".into(),
        ..at("keygate-a")
    };
    let err = MasterKey::from_hsm(&relative, &pin, &wrapped)
        .err()
        .unwrap();
    assert!(err.to_string().contains("absolute path"), "{err}");
}

/// A SoftHSM2 configuration keeping its tokens under `dir`.
fn softhsm_conf(dir: &Path) -> std::path::PathBuf {
    let tokens = dir.join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    conf
}

/// Initializes a token labelled `label` in the next free slot, with [`PIN`].
fn init_token(conf: &Path, label: &str) {
    let status = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", conf)
        .args(["--init-token", "--free", "--label", label])
        .args(["--pin", PIN, "--so-pin", SO_PIN])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("softhsm2-util runs");
    assert!(status.success(), "softhsm2-util --init-token failed");
}

/// Opens a logged-in read-write session on `token` and runs `work` in it.
fn in_session(module: &Path, token: &str, work: impl FnOnce(&cryptoki::session::Session)) {
    let library = Pkcs11::new(module).unwrap();
    library
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    {
        let slot = library
            .get_slots_with_initialized_token()
            .unwrap()
            .into_iter()
            .find(|s| library.get_token_info(*s).unwrap().label().trim_end() == token)
            .unwrap();
        let session = library.open_rw_session(slot).unwrap();
        session
            .login(
                UserType::User,
                Some(&cryptoki::types::AuthPin::new(PIN.into())),
            )
            .unwrap();
        work(&session);
        session.logout().unwrap();
    }
    library.finalize().unwrap();
}

/// An AES key labelled `label` of `bytes` bytes, sensitive and not extractable, private
/// or not; with `read_first`, made extractable, its value read, and only then locked.
fn create_key_with(
    module: &Path,
    token: &str,
    label: &str,
    bytes: u64,
    private: bool,
    read_first: bool,
) {
    in_session(module, token, |session| {
        let key = session
            .generate_key(
                &cryptoki::mechanism::Mechanism::AesKeyGen,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(cryptoki::object::KeyType::AES),
                    Attribute::ValueLen(bytes.into()),
                    Attribute::Label(label.as_bytes().to_vec()),
                    Attribute::Token(true),
                    Attribute::Private(private),
                    Attribute::Sensitive(!read_first),
                    Attribute::Extractable(read_first),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                ],
            )
            .unwrap();
        if read_first {
            let value = session
                .get_attributes(key, &[cryptoki::object::AttributeType::Value])
                .unwrap();
            assert!(matches!(value.as_slice(), [Attribute::Value(v)] if v.len() == 32));
            session
                .update_attributes(
                    key,
                    &[Attribute::Sensitive(true), Attribute::Extractable(false)],
                )
                .unwrap();
        }
    });
}

/// An AES key labelled `label` that may leave the token.
fn create_extractable_key(module: &Path, token: &str, label: &str) {
    in_session(module, token, |session| {
        session
            .generate_key(
                &cryptoki::mechanism::Mechanism::AesKeyGen,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(cryptoki::object::KeyType::AES),
                    Attribute::ValueLen(32u64.into()),
                    Attribute::Label(label.as_bytes().to_vec()),
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sensitive(false),
                    Attribute::Extractable(true),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                ],
            )
            .unwrap();
    });
}

fn assert_key_stays_on_token(module: &Path, token: &str, key: &str) {
    in_session(module, token, |session| {
        let found = session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(key.as_bytes().to_vec()),
            ])
            .unwrap();
        assert_eq!(found.len(), 1);
        let attributes = session
            .get_attributes(
                found[0],
                &[
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::Token,
                    AttributeType::Value,
                ],
            )
            .unwrap();
        assert!(attributes.contains(&Attribute::Sensitive(true)));
        assert!(attributes.contains(&Attribute::Extractable(false)));
        assert!(attributes.contains(&Attribute::Token(true)));
        assert!(
            !attributes.iter().any(|a| matches!(a, Attribute::Value(_))),
            "the key's value was readable"
        );
    });
}
