//! The HTTPS listener's certificate: checked when read, replaced in place when renewed.
//!
//! A certificate is renewed every few weeks (ACME's are valid for 90 days at most), and a
//! gateway that had to be restarted for it would drop the bots' connections each time.
//! [`ListenerCertificate`] is what every handshake asks for the certificate to present;
//! [`ListenerCertificate::replace`] swaps in a renewed one for the handshakes that
//! follow, while connections already made go on with the one they were made with.
//!
//! A [`Certified`] is a chain and a private key that go together (the key is the one of
//! the chain's first certificate), with that certificate's validity read from it, so that
//! keygate can say when it expires instead of letting bots find out.

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use x509_cert::der::Decode;

use crate::Error;

/// A certificate chain and the private key of its first certificate, checked to go
/// together.
pub struct Certified {
    key: Arc<CertifiedKey>,
    not_before: SystemTime,
    not_after: SystemTime,
}

impl Certified {
    /// Reads a chain (the server's certificate first) and a private key, both in PEM.
    /// Refuses a file that holds no certificate, a key that does not read or that is not
    /// the certificate's, and a certificate whose validity cannot be read. The key's bytes
    /// never appear in an error.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<Certified, Error> {
        let refused = |what: &str, e: &dyn fmt::Display| Error::Tls(format!("{what}: {e}"));
        let chain = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| refused("the certificate does not read as PEM", &e))?;
        let Some(leaf) = chain.first() else {
            return Err(Error::Tls(
                "the certificate file holds no certificate".into(),
            ));
        };
        let validity = x509_cert::Certificate::from_der(leaf.as_ref())
            .map_err(|e| refused("the certificate does not read as X.509", &e))?
            .tbs_certificate
            .validity;
        let since_epoch = |t: x509_cert::time::Time| UNIX_EPOCH + t.to_date_time().unix_duration();
        let (not_before, not_after) = (
            since_epoch(validity.not_before),
            since_epoch(validity.not_after),
        );
        // The key's own error would not quote it, but say nothing of it all the same.
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|_| Error::Tls("the private key does not read as PEM".into()))?;
        let key = CertifiedKey::from_der(chain, key, &provider())
            .map_err(|e| refused("the certificate and key do not go together", &e))?;
        Ok(Certified {
            key: Arc::new(key),
            not_before,
            not_after,
        })
    }

    /// When the server's certificate (the chain's first) stops being valid.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// When the server's certificate starts being valid.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }
}

impl fmt::Debug for Certified {
    // Not derived: the signing key is no one's business, even as a type name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certified")
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// The certificate an HTTPS listener presents, which [`ListenerCertificate::replace`]
/// changes for the handshakes that follow.
pub struct ListenerCertificate {
    current: RwLock<Presented>,
}

/// The certificate presented, and when it stops being valid.
struct Presented {
    key: Arc<CertifiedKey>,
    not_after: SystemTime,
}

impl ListenerCertificate {
    /// A listener certificate presenting `first` until it is replaced.
    pub fn new(first: Certified) -> Arc<ListenerCertificate> {
        Arc::new(ListenerCertificate {
            current: RwLock::new(Presented {
                key: first.key,
                not_after: first.not_after,
            }),
        })
    }

    /// Presents `next` from the next handshake on.
    pub fn replace(&self, next: Certified) {
        // A poisoned lock still holds a whole value: a panic cannot leave half of one.
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Presented {
            key: next.key,
            not_after: next.not_after,
        };
    }

    /// When the certificate presented now stops being valid.
    pub fn not_after(&self) -> SystemTime {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .not_after
    }

    /// The TLS configuration of a listener presenting this certificate: TLS 1.2 and 1.3
    /// with rustls's safe defaults (ring), HTTP/1.1 by ALPN, no client certificates.
    pub fn tls_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, Error> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(format!("protocol versions: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for ListenerCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(|e| e.into_inner()).key,
        ))
    }
}

impl fmt::Debug for ListenerCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerCertificate")
            .finish_non_exhaustive()
    }
}

fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn certificate(not_after: (i32, u8, u8)) -> rcgen::CertifiedKey {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let key_pair = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key_pair).unwrap();
        rcgen::CertifiedKey { cert, key_pair }
    }

    #[test]
    fn the_validity_is_read_from_the_certificate() {
        let made = certificate((2031, 3, 4));
        let certified = Certified::from_pem(
            made.cert.pem().as_bytes(),
            made.key_pair.serialize_pem().as_bytes(),
        )
        .unwrap();
        // 2031-03-04T00:00:00Z and 2020-01-01T00:00:00Z.
        assert_eq!(
            certified.not_after(),
            UNIX_EPOCH + Duration::from_secs(1_930_348_800)
        );
        assert_eq!(
            certified.not_before(),
            UNIX_EPOCH + Duration::from_secs(1_577_836_800)
        );
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_without_being_quoted() {
        let made = certificate((2031, 3, 4));
        let other = certificate((2031, 3, 4));
        let key_pem = other.key_pair.serialize_pem();
        let refused = Certified::from_pem(made.cert.pem().as_bytes(), key_pem.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(refused.contains("do not go together"), "{refused}");
        let key_line = key_pem.lines().nth(1).unwrap();
        assert!(!refused.contains(key_line), "{refused}");
    }

    #[test]
    fn an_empty_chain_and_a_bad_key_are_refused() {
        let made = certificate((2031, 3, 4));
        let key = made.key_pair.serialize_pem();
        let empty = Certified::from_pem(b"", key.as_bytes()).unwrap_err();
        assert!(empty.to_string().contains("no certificate"), "{empty}");
        let bad_key = Certified::from_pem(made.cert.pem().as_bytes(), b"not a key").unwrap_err();
        assert!(bad_key.to_string().contains("private key"), "{bad_key}");
    }

    #[test]
    fn a_replaced_certificate_is_presented_from_then_on() {
        let first = certificate((2031, 3, 4));
        let second = certificate((2032, 5, 6));
        let read = |made: &rcgen::CertifiedKey| {
            Certified::from_pem(
                made.cert.pem().as_bytes(),
                made.key_pair.serialize_pem().as_bytes(),
            )
            .unwrap()
        };
        let listener = ListenerCertificate::new(read(&first));
        let presented = |listener: &ListenerCertificate| {
            listener
                .current
                .read()
                .unwrap()
                .key
                .end_entity_cert()
                .unwrap()
                .to_vec()
        };
        assert_eq!(presented(&listener), first.cert.der().to_vec());
        listener.replace(read(&second));
        assert_eq!(presented(&listener), second.cert.der().to_vec());
        // 2032-05-06T00:00:00Z.
        assert_eq!(
            listener.not_after(),
            UNIX_EPOCH + Duration::from_secs(1_967_414_400)
        );
    }
}
