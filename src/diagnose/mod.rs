//! The one place that turns errors into operator text: what happened, the likely cause, the fix.
//!
//! Library modules return typed errors that carry facts (status codes, AADSTS numbers, server
//! reply lines with secrets removed, decoded SASL challenges). This module maps them onto a
//! [`Diagnosis`]; the GUI, the headless commands and the browser landing page all show a
//! `Diagnosis` and never format library errors themselves. A diagnosis never carries a token,
//! code or secret value.

use serde::Serialize;

/// Whether trying the same thing again can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Retry {
    /// A passing fault (timeout, 5xx, network): retrying later may work.
    Transient,
    /// Retrying changes nothing until someone fixes a setting, a registration or a grant.
    Permanent,
}

/// What went wrong, why it probably happened, and what to do, in the operator's words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnosis {
    /// Stable identifier, documented in `docs/troubleshooting.md` (for example
    /// `smtp-auth-disabled`).
    pub id: &'static str,
    /// One line: what happened.
    pub summary: String,
    /// The likely cause.
    pub cause: String,
    /// What to click, type or ask the admin to do.
    pub fix: String,
    /// Whether retrying can help.
    pub retry: Retry,
    /// Supporting facts for the details pane and support bundle (server reply, trace id); no
    /// secret values.
    pub details: Vec<String>,
}

impl Diagnosis {
    /// Builds a diagnosis without details.
    pub fn new(
        id: &'static str,
        summary: impl Into<String>,
        cause: impl Into<String>,
        fix: impl Into<String>,
        retry: Retry,
    ) -> Diagnosis {
        Diagnosis {
            id,
            summary: summary.into(),
            cause: cause.into(),
            fix: fix.into(),
            retry,
            details: Vec::new(),
        }
    }

    /// Adds one supporting fact.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Diagnosis {
        self.details.push(detail.into());
        self
    }

    /// Summary, cause and fix as plain text, one per line.
    pub fn to_text(&self) -> String {
        let mut text = format!("{}\nCause: {}\nFix: {}", self.summary, self.cause, self.fix);
        for detail in &self.details {
            text.push_str("\nDetail: ");
            text.push_str(detail);
        }
        text
    }
}
pub mod config;
pub mod mail;
pub mod oauth;
pub mod preflight;
pub mod scopes;
pub mod sign_out;

/// The extra CA file or the system store could not be used.
pub fn trust(error: &crate::trust::TrustError) -> Diagnosis {
    use crate::trust::TrustError;
    match error {
        TrustError::ReadCaFile { path, source } => Diagnosis::new(
            "ca-file-unreadable",
            format!("The extra CA certificate file {} cannot be read", path.display()),
            match source.kind() {
                std::io::ErrorKind::NotFound => "There is no file at that path".to_owned(),
                std::io::ErrorKind::PermissionDenied => "This user may not read it".to_owned(),
                std::io::ErrorKind::IsADirectory => "It is a folder, not a file".to_owned(),
                kind => format!("The system refused to read it ({kind})"),
            },
            "Choose the PEM file your IT department gave you for the TLS-inspecting proxy \
             (Extra CA certificate file in the wizard, extra_ca_file in the config), or clear \
             that setting",
            Retry::Permanent,
        ),
        TrustError::NoCertificateInCaFile { path }
        | TrustError::BadCertificateInCaFile { path, .. } => Diagnosis::new(
            "ca-file-invalid",
            format!("{} holds no usable certificate", path.display()),
            "The file is not a PEM certificate (it should start with -----BEGIN CERTIFICATE-----)",
            "Export the proxy's root CA as Base-64 encoded X.509 (.pem or .cer) and choose \
             that file (Extra CA certificate file in the wizard, extra_ca_file in the config)",
            Retry::Permanent,
        ),
        TrustError::NoRoots => Diagnosis::new(
            "no-trusted-roots",
            "This computer has no trusted root certificates",
            "The system certificate store is empty or could not be read",
            "Install the operating system's CA certificates (Debian: apt-get install \
             ca-certificates), or name a CA file in Extra CA certificate file",
            Retry::Permanent,
        ),
    }
}
