//! Which TLS certificates mailgrant trusts: the operating system's store plus an optional extra
//! CA file (for TLS-inspecting proxies and local test servers).
//!
//! One [`Trust`] is built per profile and shared by the token endpoint client and the mail
//! checks, so every connection trusts exactly the same roots. There is no way to turn
//! certificate checking off.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{VerifierBuilderError, WebPkiServerVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Failure to assemble the trusted roots.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("cannot read the extra CA file {path}: {source}")]
    ReadCaFile { path: PathBuf, source: std::io::Error },
    #[error("the extra CA file {path} holds no PEM certificate")]
    NoCertificateInCaFile { path: PathBuf },
    #[error("the extra CA file {path} holds a certificate that cannot be used: {reason}")]
    BadCertificateInCaFile { path: PathBuf, reason: String },
    #[error("no trusted root certificate found on this system")]
    NoRoots,
}

/// Trusted roots and the rustls client configuration built from them.
#[derive(Clone, Debug)]
pub struct Trust {
    roots: Arc<RootCertStore>,
    /// Every certificate the roots were built from: the system's, then the extra file's.
    certificates: Arc<Vec<CertificateDer<'static>>>,
    extra: Vec<CertificateDer<'static>>,
}

impl Trust {
    /// The system store plus the certificates in `extra_ca_file`, when given.
    pub fn load(extra_ca_file: Option<&Path>) -> Result<Trust, TrustError> {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::debug!(%error, "skipped part of the system certificate store");
        }
        let mut certificates = native.certs;
        let (added, ignored) = roots.add_parsable_certificates(certificates.iter().cloned());
        tracing::debug!(added, ignored, "loaded system root certificates");

        let extra = match extra_ca_file {
            Some(path) => read_ca_file(path)?,
            None => Vec::new(),
        };
        for cert in &extra {
            roots.add(cert.clone()).map_err(|e| TrustError::BadCertificateInCaFile {
                path: extra_ca_file.map(Path::to_path_buf).unwrap_or_default(),
                reason: e.to_string(),
            })?;
        }
        if roots.is_empty() {
            return Err(TrustError::NoRoots);
        }
        certificates.extend(extra.iter().cloned());
        Ok(Trust { roots: Arc::new(roots), certificates: Arc::new(certificates), extra })
    }

    /// The trusted roots.
    pub fn roots(&self) -> Arc<RootCertStore> {
        Arc::clone(&self.roots)
    }

    /// Every trusted certificate (system store, then the extra CA file), for TLS clients that
    /// take certificates rather than a rustls root store.
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certificates
    }

    /// Certificates that came from the extra CA file (DER).
    pub fn extra_certificates(&self) -> &[CertificateDer<'static>] {
        &self.extra
    }

    /// A rustls client configuration (ring provider) that trusts exactly these roots.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|builder| {
                builder.with_root_certificates(Arc::clone(&self.roots)).with_no_client_auth()
            });
        match config {
            Ok(config) => Arc::new(config),
            // The ring provider always supports the default protocol versions.
            Err(e) => unreachable!("ring supports TLS 1.2 and 1.3: {e}"),
        }
    }

    /// Like [`Trust::client_config`], and also shows `observe` every certificate chain the
    /// server presents (end entity, intermediates) with the time it is checked at, so a failed
    /// handshake can be explained (issuer of a TLS-inspecting proxy, expiry, clock). The
    /// verification outcome is exactly the WebPKI one; observing never changes it.
    pub fn observed_client_config<F>(
        &self,
        observe: F,
    ) -> Result<Arc<rustls::ClientConfig>, VerifierBuilderError>
    where
        F: Fn(&CertificateDer<'_>, &[CertificateDer<'_>], UnixTime) + Send + Sync + 'static,
    {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let inner = WebPkiServerVerifier::builder_with_provider(self.roots(), provider).build()?;
        let mut config = (*self.client_config()).clone();
        let verifier = ObservingVerifier { inner, observe: Box::new(observe) };
        config.dangerous().set_certificate_verifier(Arc::new(verifier));
        Ok(Arc::new(config))
    }
}

/// The callback of [`Trust::observed_client_config`].
type ChainObserver =
    Box<dyn Fn(&CertificateDer<'_>, &[CertificateDer<'_>], UnixTime) + Send + Sync>;

/// rustls' WebPKI verifier that first shows each chain to an observer.
struct ObservingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    observe: ChainObserver,
}

impl std::fmt::Debug for ObservingVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservingVerifier").finish_non_exhaustive()
    }
}

impl ServerCertVerifier for ObservingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        (self.observe)(end_entity, intermediates, now);
        self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    let bytes = std::fs::read(path)
        .map_err(|source| TrustError::ReadCaFile { path: path.to_path_buf(), source })?;
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&bytes).filter_map(Result::ok).collect();
    if certs.is_empty() {
        return Err(TrustError::NoCertificateInCaFile { path: path.to_path_buf() });
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_pem_is_refused_with_its_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("not-a-cert.pem");
        std::fs::write(&path, "hello").expect("write");
        let err = Trust::load(Some(&path)).unwrap_err();
        assert!(matches!(err, TrustError::NoCertificateInCaFile { .. }), "{err}");
        assert!(err.to_string().contains("not-a-cert.pem"));
    }

    #[test]
    fn a_missing_file_is_reported_not_ignored() {
        let err = Trust::load(Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(matches!(err, TrustError::ReadCaFile { .. }), "{err}");
    }
}
