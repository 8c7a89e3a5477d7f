//! TLS for flytt's clients of mail servers (IMAP, ManageSieve, LDAP). One place
//! decides how a server is trusted, and verification is always on (there is
//! no switch to turn it off):
//!
//! - Mozilla's roots, plus the PEM files an endpoint names (`--ca-file`) for
//!   a private CA; certificates and host names are verified as usual;
//! - a certificate in such a file that *is* the server's own certificate is
//!   trusted as that server's, even when it is marked as a CA: that is what
//!   `openssl req -x509` makes, the usual self-signed certificate of older
//!   servers, which webpki refuses as an end entity (`CaUsedAsEndEntity`);
//! - a pinned SHA-256 fingerprint (`--tls-fingerprint sha256:HEX`) trusts the
//!   certificate with exactly that fingerprint.
//!
//! An untrusted certificate's error shows its fingerprint, subject and
//! validity, and both ways to trust it.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};

pub use tokio_rustls::client::TlsStream;

/// The SHA-256 fingerprint of a certificate (its DER bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    pub fn of(certificate: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(certificate).into())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:")?;
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `sha256:` and 64 hex digits, colons between bytes allowed (as
/// `openssl x509 -fingerprint -sha256` prints them).
impl FromStr for Fingerprint {
    type Err = String;

    fn from_str(text: &str) -> Result<Fingerprint, String> {
        let bad = || {
            format!(
                "{text:?} is not a SHA-256 fingerprint: write sha256: and 64 hex digits (colons allowed)"
            )
        };
        let hex = text
            .strip_prefix("sha256:")
            .or_else(|| text.strip_prefix("SHA256:"))
            .ok_or_else(bad)?;
        let digits: Vec<u8> = hex.bytes().filter(|b| *b != b':').collect();
        if digits.len() != 64 {
            return Err(bad());
        }
        let mut bytes = [0u8; 32];
        for (i, pair) in digits.chunks(2).enumerate() {
            let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
            bytes[i] = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
        }
        Ok(Fingerprint(bytes))
    }
}

impl serde::Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Fingerprint, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What a connection trusts beyond Mozilla's roots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trust {
    /// PEM files: private CAs, or a server's own certificate.
    pub ca_files: Vec<PathBuf>,
    /// Pinned certificates.
    pub fingerprints: Vec<Fingerprint>,
}

/// The client configuration for `trust`, verification on. The error says
/// what failed.
pub fn client_config(trust: &Trust) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let mut own_certificates = Vec::new();
    for path in &trust.ca_files {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("bad CA file {}: {e}", path.display()))?;
            // A server's own certificate need not be a usable CA: it is
            // trusted by equality below.
            let _ = roots.add(cert.clone());
            own_certificates.push(cert);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| e.to_string())?;
    let verifier = Verifier {
        webpki,
        own_certificates,
        fingerprints: trust.fingerprints.clone(),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Runs the TLS handshake over `stream` for `host` (see `client_config`).
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    host: &str,
    trust: &Trust,
    timeout: Duration,
) -> Result<TlsStream<S>, HandshakeError> {
    let config = client_config(trust).map_err(HandshakeError::Refused)?;
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| HandshakeError::Refused(format!("bad server name: {e}")))?;
    let connector = tokio_rustls::TlsConnector::from(config);
    tokio::time::timeout(timeout, connector.connect(name, stream))
        .await
        .map_err(|_| HandshakeError::Interrupted("handshake timed out".into()))?
        .map_err(|e| {
            // rustls reports what it refuses (a certificate, a protocol
            // version) as invalid data; anything else is the connection.
            if e.kind() == std::io::ErrorKind::InvalidData {
                HandshakeError::Refused(e.to_string())
            } else {
                HandshakeError::Interrupted(e.to_string())
            }
        })
}

/// Why a TLS handshake failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// The connection failed during the handshake (timed out, closed,
    /// reset): a later try may succeed.
    Interrupted(String),
    /// The server's certificate or TLS parameters are not acceptable: no
    /// retry changes that.
    Refused(String),
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Interrupted(detail) | HandshakeError::Refused(detail) => {
                f.write_str(detail)
            }
        }
    }
}

impl std::error::Error for HandshakeError {}

/// webpki's verification, plus certificates trusted as they are: one named
/// in a CA file, or one with a pinned fingerprint.
#[derive(Debug)]
struct Verifier {
    webpki: Arc<WebPkiServerVerifier>,
    own_certificates: Vec<CertificateDer<'static>>,
    fingerprints: Vec<Fingerprint>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fingerprint = Fingerprint::of(end_entity.as_ref());
        if self.fingerprints.contains(&fingerprint)
            || self
                .own_certificates
                .iter()
                .any(|c| c.as_ref() == end_entity.as_ref())
        {
            return Ok(ServerCertVerified::assertion());
        }
        self.webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|e| rustls::Error::General(untrusted(end_entity.as_ref(), &e)))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// Why a certificate is not trusted, what it is, and how to trust it.
fn untrusted(certificate: &[u8], error: &rustls::Error) -> String {
    let fingerprint = Fingerprint::of(certificate);
    let (reason, described) = match x509_parser::parse_x509_certificate(certificate) {
        Ok((_, cert)) => (
            if cert.subject() == cert.issuer() {
                "it is self-signed".to_string()
            } else {
                error.to_string()
            },
            format!(
                "subject {}, issuer {}, valid from {} to {}",
                cert.subject(),
                cert.issuer(),
                cert.validity().not_before,
                cert.validity().not_after
            ),
        ),
        Err(_) => (
            error.to_string(),
            "a certificate that cannot be read".to_string(),
        ),
    };
    format!(
        "the server's certificate is not trusted ({reason}): {described}, fingerprint {fingerprint}. \
         To trust it, give its CA's PEM file (or the server's own certificate) with --ca-file, \
         or pin it with --tls-fingerprint {fingerprint} after checking that fingerprint with the \
         server's administrator"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_both_spellings_and_print_one() {
        let hex = "ab".repeat(32);
        let plain: Fingerprint = format!("sha256:{hex}").parse().expect("plain");
        let colons: Fingerprint = format!("SHA256:{}", vec!["AB"; 32].join(":"))
            .parse()
            .expect("colons");
        assert_eq!(plain, colons);
        assert_eq!(plain.to_string(), format!("sha256:{hex}"));
        for bad in [
            "ab",
            "sha256:ab",
            "md5:00",
            &format!("sha256:{}", "zz".repeat(32)),
        ] {
            assert!(bad.parse::<Fingerprint>().is_err(), "{bad}");
        }
    }
}
