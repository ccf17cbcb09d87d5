//! Which TLS certificates mailgrant trusts: the operating system's store plus an optional extra
//! CA file (for TLS-inspecting proxies and local test servers).
//!
//! One [`Trust`] is built per profile and shared by the token endpoint client and the mail
//! checks, so every connection trusts exactly the same roots. There is no way to turn
//! certificate checking off.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

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
        let (added, ignored) = roots.add_parsable_certificates(native.certs);
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
        Ok(Trust { roots: Arc::new(roots), extra })
    }

    /// The trusted roots.
    pub fn roots(&self) -> Arc<RootCertStore> {
        Arc::clone(&self.roots)
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
