//! Operator text for the pre-flight checks: DNS, TCP connect, STARTTLS and the TLS handshake
//! of the sign-in host, the token host, SMTP and IMAP.
//!
//! Certificate failures name the host, the failing certificate's subject, issuer and validity,
//! and tell three situations apart (BR-22): an expired certificate, an unknown issuer (a
//! TLS-inspecting proxy, fixed with the extra CA file) and a wrong clock on this computer
//! ("your clock says <date>"). No text here ever suggests ignoring certificate errors, and no
//! text carries a token or secret: pre-flight checks send none. The support bundle's one
//! failure (the file cannot be written) is explained here too.

use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use super::{Diagnosis, Retry};
use crate::profile::Field;

/// Every id this module can return.
pub const IDS: &[&str] = &[
    PREFLIGHT_DNS,
    PREFLIGHT_REFUSED,
    PREFLIGHT_TIMEOUT,
    PREFLIGHT_CLOSED,
    PREFLIGHT_NETWORK,
    PREFLIGHT_TLS_UNTRUSTED,
    PREFLIGHT_TLS_EXPIRED,
    PREFLIGHT_CLOCK_WRONG,
    PREFLIGHT_TLS_HOSTNAME,
    PREFLIGHT_TLS_CERTIFICATE,
    PREFLIGHT_TLS_HANDSHAKE,
    PREFLIGHT_STARTTLS_UNAVAILABLE,
    PREFLIGHT_NOT_MAIL_SERVER,
    PREFLIGHT_REPLY_TOO_LONG,
    PREFLIGHT_PLAIN_HTTP,
    BUNDLE_WRITE_FAILED,
    BUNDLE_WOULD_REPLACE,
];

pub const PREFLIGHT_DNS: &str = "preflight-dns";
pub const PREFLIGHT_REFUSED: &str = "preflight-refused";
pub const PREFLIGHT_TIMEOUT: &str = "preflight-timeout";
pub const PREFLIGHT_CLOSED: &str = "preflight-closed";
pub const PREFLIGHT_NETWORK: &str = "preflight-network";
pub const PREFLIGHT_TLS_UNTRUSTED: &str = "preflight-tls-untrusted";
pub const PREFLIGHT_TLS_EXPIRED: &str = "preflight-tls-expired";
pub const PREFLIGHT_CLOCK_WRONG: &str = "preflight-clock-wrong";
pub const PREFLIGHT_TLS_HOSTNAME: &str = "preflight-tls-hostname";
pub const PREFLIGHT_TLS_CERTIFICATE: &str = "preflight-tls-certificate";
pub const PREFLIGHT_TLS_HANDSHAKE: &str = "preflight-tls-handshake";
pub const PREFLIGHT_STARTTLS_UNAVAILABLE: &str = "preflight-starttls-unavailable";
pub const PREFLIGHT_NOT_MAIL_SERVER: &str = "preflight-not-mail-server";
pub const PREFLIGHT_REPLY_TOO_LONG: &str = "preflight-reply-too-long";
pub const PREFLIGHT_PLAIN_HTTP: &str = "preflight-plain-http";
pub const BUNDLE_WRITE_FAILED: &str = "bundle-write-failed";
pub const BUNDLE_WOULD_REPLACE: &str = "bundle-would-replace";

/// Which server a diagnosis is about: "the SMTP server smtp.office365.com:587".
#[derive(Clone, Copy, Debug)]
pub struct Place<'a> {
    /// What the server is for, lower case: "sign-in page", "token endpoint", "SMTP server".
    pub role: &'a str,
    pub host: &'a str,
    pub port: u16,
}

impl Place<'_> {
    fn at(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The facts of one certificate the server presented.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertificateFacts {
    /// Subject distinguished name.
    pub subject: String,
    /// Issuer distinguished name; for a TLS-inspecting proxy this names the proxy's CA.
    pub issuer: String,
    /// DNS names and addresses the certificate is valid for.
    pub names: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
}

impl CertificateFacts {
    fn describe(&self) -> String {
        format!(
            "subject {}; issuer {}; valid from {} until {}",
            self.subject,
            self.issuer,
            day(self.not_before),
            day(self.not_after)
        )
    }
}

/// Why the server's certificate was refused, as far as pre-flight sorts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertificateVerdict {
    /// Issued by nobody this computer trusts.
    UnknownIssuer,
    /// A certificate of the chain is past its end of validity, and the rest of the evidence
    /// says the clock is right.
    Expired,
    /// The validity dates only make sense if this computer's clock is wrong.
    ClockWrong,
    /// Valid, but not for this host name.
    HostnameMismatch,
    /// Revoked, malformed or otherwise refused.
    Other,
}

/// A date as operators read it: `2024-03-14 09:30 UTC`.
pub fn day(at: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute()
    )
}

/// The host name could not be resolved.
pub fn dns(place: Place<'_>, detail: &str) -> Diagnosis {
    Diagnosis::new(
        PREFLIGHT_DNS,
        format!("The {} host name {} could not be found", place.role, place.host),
        "The name is misspelt, or this computer's DNS cannot resolve it (offline, or only a \
         proxy may resolve outside names)",
        format!(
            "Check the spelling of {}; check this computer's network and DNS settings \
             (nslookup {})",
            place.host, place.host
        ),
        Retry::Transient,
    )
    .with_detail(format!("resolver: {detail}"))
}

/// The TCP connection was refused.
pub fn refused(place: Place<'_>, detail: &str) -> Diagnosis {
    Diagnosis::new(
        PREFLIGHT_REFUSED,
        format!("The {} at {} refused the connection", place.role, place.at()),
        "Nothing listens on that port, or a firewall actively rejects it",
        format!(
            "Check the port of the {}; ask the network admin whether outbound TCP to {} is \
             allowed",
            place.role,
            place.at()
        ),
        Retry::Transient,
    )
    .with_detail(format!("system: {detail}"))
}

/// No answer within the timeout during `step` ("TCP connect", "TLS handshake", ...).
pub fn timeout(place: Place<'_>, step: &str, limit: Duration) -> Diagnosis {
    let cause = if step.contains("connect") {
        "A firewall or the provider silently drops the outbound port (587, 465 and 993 are often \
         blocked on plant and guest networks)"
            .to_owned()
    } else {
        format!(
            "The connection opened but the server never answered the {step}: the port may \
             belong to another service, the security setting may not match the port, or a \
             filtering device holds the connection"
        )
    };
    Diagnosis::new(
        PREFLIGHT_TIMEOUT,
        format!(
            "No answer from the {} at {} within {} s ({step})",
            place.role,
            place.at(),
            limit.as_secs()
        ),
        cause,
        format!(
            "Ask the network admin to allow outbound TCP to {}; check port and security (587 \
             and 143 use STARTTLS, 465 and 993 use TLS); on a slow network raise the timeout",
            place.at()
        ),
        Retry::Transient,
    )
}

/// The server closed the connection during `step`.
pub fn closed(place: Place<'_>, step: &str, detail: &str) -> Diagnosis {
    Diagnosis::new(
        PREFLIGHT_CLOSED,
        format!("The {} at {} closed the connection during the {step}", place.role, place.at()),
        "The server or something in between dropped the session; a security setting that does \
         not match the port does this too",
        "Check port and security (587 and 143 use STARTTLS, 465 and 993 use TLS); try again \
         later",
        Retry::Transient,
    )
    .with_detail(format!("system: {detail}"))
}

/// Any other network failure.
pub fn network(place: Place<'_>, step: &str, detail: &str) -> Diagnosis {
    Diagnosis::new(
        PREFLIGHT_NETWORK,
        format!("Network error talking to the {} at {} ({step})", place.role, place.at()),
        "This computer's network failed during the check",
        "Check the network connection and try again",
        Retry::Transient,
    )
    .with_detail(format!("system: {detail}"))
}

/// The server's certificate was refused. `failing` is the certificate the verdict is about
/// (the leaf, or the expired intermediate); `now` is this computer's clock.
pub fn certificate(
    place: Place<'_>,
    verdict: CertificateVerdict,
    failing: Option<&CertificateFacts>,
    is_leaf: bool,
    now: OffsetDateTime,
    detail: &str,
) -> Diagnosis {
    let subject = failing.map_or("(unreadable)".to_owned(), |c| c.subject.clone());
    let issuer = failing.map_or("an unknown issuer".to_owned(), |c| c.issuer.clone());
    let at = place.at();
    let role = place.role;
    let clock = day(now);

    let diagnosis = match verdict {
        CertificateVerdict::UnknownIssuer => Diagnosis::new(
            PREFLIGHT_TLS_UNTRUSTED,
            format!("The certificate of the {role} {at} is not trusted: it is issued by {issuer}"),
            format!(
                "Nothing this computer trusts issued it (subject {subject}). Most likely a \
                 TLS-inspecting proxy or firewall on this network re-signs connections with \
                 its own certificate authority, or the computer lacks current root \
                 certificates"
            ),
            format!(
                "Ask the network admin for the CA certificate of \"{issuer}\" (PEM), choose \
                 it in the \"{}\" setting and run the checks again; or update this computer's \
                 root certificates",
                Field::ExtraCaFile.label()
            ),
            Retry::Permanent,
        ),
        CertificateVerdict::Expired => {
            let until = failing.map_or("an earlier date".to_owned(), |c| day(c.not_after));
            let which = if is_leaf { "server's certificate" } else { "intermediate certificate" };
            let fix = if is_leaf {
                format!(
                    "Tell the admin of {} (or the network admin, if a proxy answers for it) \
                     that its certificate expired on {until}; this computer cannot fix it",
                    place.host
                )
            } else {
                format!(
                    "The chain of {} passes through the expired \"{subject}\". Update this \
                     computer's root and intermediate certificates (Windows Update; remove \
                     expired copies of that certificate in certlm.msc under Intermediate and \
                     Trusted Root Certification Authorities), or tell the server's admin to \
                     serve a current chain",
                    place.host
                )
            };
            Diagnosis::new(
                PREFLIGHT_TLS_EXPIRED,
                format!("The {which} {subject} of the {role} {at} expired on {until}"),
                format!(
                    "Its validity ended on {until}, issued by {issuer}. This computer's clock \
                     says {clock}, and the other certificates' dates agree with it, so the \
                     certificate itself is out of date"
                ),
                fix,
                Retry::Permanent,
            )
        }
        CertificateVerdict::ClockWrong => {
            let (cause, window) = match failing {
                Some(c) if c.not_before > now => (
                    format!(
                        "The certificate {subject} is valid only from {}; a clock that is \
                         behind makes every new certificate look not yet valid",
                        day(c.not_before)
                    ),
                    format!("{} – {}", day(c.not_before), day(c.not_after)),
                ),
                Some(c) => (
                    format!(
                        "The certificate {subject} ended on {}, and so did the rest of the \
                         evidence (every certificate of the chain, or the certificates of \
                         other servers): a clock that is ahead makes every certificate look \
                         expired",
                        day(c.not_after)
                    ),
                    format!("{} – {}", day(c.not_before), day(c.not_after)),
                ),
                None => ("The certificate's dates do not fit this clock".to_owned(), String::new()),
            };
            Diagnosis::new(
                PREFLIGHT_CLOCK_WRONG,
                format!(
                    "Your clock says {clock}, which does not fit the certificate of the {role} \
                     {at} (valid {window})"
                ),
                cause,
                "Set this computer's date, time and time zone correctly and let it synchronise \
                 automatically (Windows: Settings → Time & language → Date & time → Set time \
                 automatically; Linux: timedatectl set-ntp true), then run the checks again. \
                 The certificate and the sign-in are fine; nothing else needs changing",
                Retry::Permanent,
            )
        }
        CertificateVerdict::HostnameMismatch => {
            let names = failing
                .map(|c| c.names.join(", "))
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| subject.clone());
            Diagnosis::new(
                PREFLIGHT_TLS_HOSTNAME,
                format!("The certificate of the {role} {at} is for {names}, not {}", place.host),
                "The host is typed as an alias or address the certificate does not name, or a \
                 proxy answers with its own certificate",
                format!(
                    "Type the {role}'s host exactly as the provider documents it (one of: \
                     {names}); if that is already so, ask the network admin about the proxy"
                ),
                Retry::Permanent,
            )
        }
        CertificateVerdict::Other => Diagnosis::new(
            PREFLIGHT_TLS_CERTIFICATE,
            format!("The certificate of the {role} {at} was refused"),
            "The certificate is revoked, malformed or not meant for a server",
            "Tell the server's admin; if a proxy is in between, ask the network admin",
            Retry::Permanent,
        ),
    };
    let diagnosis = match failing {
        Some(c) => diagnosis.with_detail(format!("certificate: {}", c.describe())),
        None => diagnosis,
    };
    diagnosis
        .with_detail(format!("this computer's clock: {clock}"))
        .with_detail(format!("TLS library: {detail}"))
}

/// The TLS handshake failed for a reason other than the certificate.
pub fn handshake(place: Place<'_>, detail: &str) -> Diagnosis {
    Diagnosis::new(
        PREFLIGHT_TLS_HANDSHAKE,
        format!("The TLS handshake with the {} at {} failed", place.role, place.at()),
        "The port does not speak TLS the way the security setting says (TLS on a STARTTLS port \
         or the other way round), the server only offers outdated TLS versions, or a proxy \
         interferes",
        "Check port and security: 587 and 143 use STARTTLS, 465 and 993 use TLS",
        Retry::Permanent,
    )
    .with_detail(format!("TLS library: {detail}"))
}

/// The server did not offer or refused STARTTLS.
pub fn starttls_unavailable(place: Place<'_>, reply: &str) -> Diagnosis {
    Diagnosis::new(
        PREFLIGHT_STARTTLS_UNAVAILABLE,
        format!("The {} at {} does not offer STARTTLS", place.role, place.at()),
        "The port expects TLS from the first byte (465, 993) or plain text only, or a \
         firewall's mail inspection strips STARTTLS from the server's answer",
        "Check port and security: 587 and 143 use STARTTLS, 465 and 993 use TLS. If they are \
         right, ask the network admin to turn off SMTP/IMAP inspection on the firewall",
        Retry::Permanent,
    )
    .with_detail(format!("server reply: {reply}"))
}

/// The server answered, but not like a mail server about to start TLS.
pub fn not_mail_server(place: Place<'_>, step: &str, reply: &str) -> Diagnosis {
    Diagnosis::new(
        PREFLIGHT_NOT_MAIL_SERVER,
        format!("The {} at {} did not answer like a mail server ({step})", place.role, place.at()),
        "The port belongs to another service, the server refuses clients from this network, \
         or a proxy answers in its place",
        "Check the host, port and security setting; if they are right, send the support \
         bundle to the mail admin",
        Retry::Permanent,
    )
    .with_detail(format!("server reply: {reply}"))
}

/// The server answered the `step` with more than any mail reply holds: an endless line or a
/// flood of continuation lines. `what` names the limit that was passed.
pub fn reply_too_long(place: Place<'_>, step: &str, what: &str) -> Diagnosis {
    Diagnosis::new(
        PREFLIGHT_REPLY_TOO_LONG,
        format!(
            "The {} at {} sent a reply that was too long or never ended ({step})",
            place.role,
            place.at()
        ),
        "No mail server answers like this: the port belongs to another service that streams \
         data, or a device in between (a proxy, a tarpit) floods the connection",
        "Check the host, port and security setting; if they are right, send the support \
         bundle to the mail admin",
        Retry::Permanent,
    )
    .with_detail(format!("received: {what}"))
}

/// A plain-http endpoint on another machine: tokens would cross the network unencrypted.
pub fn plain_http(place: Place<'_>) -> Diagnosis {
    Diagnosis::new(
        PREFLIGHT_PLAIN_HTTP,
        format!("The {} {} uses plain http", place.role, place.host),
        "Only an identity provider on this same computer may be reached without TLS; anywhere \
         else the code and the tokens would cross the network readable by anyone",
        "Use the provider's https:// URL",
        Retry::Permanent,
    )
}

/// The support bundle could not be written.
pub fn bundle_write(error: &crate::bundle::BundleError) -> Diagnosis {
    let (path, source) = match error {
        crate::bundle::BundleError::Write { path, source } => (path, source),
        crate::bundle::BundleError::WouldReplace { path, what } => {
            return Diagnosis::new(
                BUNDLE_WOULD_REPLACE,
                format!("The support bundle was not written to {}", path.display()),
                format!("That file is {what}; writing the bundle there would destroy it"),
                "Choose a new file name for the bundle, for example \
                 mailgrant-support.json on the Desktop or in Documents",
                Retry::Permanent,
            );
        }
    };
    Diagnosis::new(
        BUNDLE_WRITE_FAILED,
        format!("The support bundle could not be written to {}", path.display()),
        format!("The system refused the file ({})", source.kind()),
        "Choose a folder this user may write to (for example the Desktop or Documents), then \
         save the bundle again",
        Retry::Permanent,
    )
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn place() -> Place<'static> {
        Place { role: "token endpoint", host: "login.example.com", port: 443 }
    }

    fn cert() -> CertificateFacts {
        CertificateFacts {
            subject: "CN=login.example.com".into(),
            issuer: "CN=Example Issuing CA".into(),
            names: vec!["login.example.com".into()],
            not_before: datetime!(2024-01-01 0:00 UTC),
            not_after: datetime!(2025-01-01 0:00 UTC),
        }
    }

    #[test]
    fn ids_are_unique_and_prefixed() {
        let mut ids = IDS.to_vec();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), IDS.len());
        assert!(IDS.iter().all(|id| id.starts_with("preflight-") || id.starts_with("bundle-")));
    }

    #[test]
    fn the_three_certificate_stories_are_told_apart() {
        let now = datetime!(2027-02-03 4:05 UTC);
        let c = cert();
        let untrusted =
            certificate(place(), CertificateVerdict::UnknownIssuer, Some(&c), true, now, "x");
        let expired = certificate(place(), CertificateVerdict::Expired, Some(&c), true, now, "x");
        let clock = certificate(place(), CertificateVerdict::ClockWrong, Some(&c), true, now, "x");
        assert_eq!(untrusted.id, PREFLIGHT_TLS_UNTRUSTED);
        assert!(untrusted.fix.contains("Extra CA certificate file"), "{}", untrusted.fix);
        assert!(untrusted.summary.contains("CN=Example Issuing CA"));
        assert_eq!(expired.id, PREFLIGHT_TLS_EXPIRED);
        assert!(expired.summary.contains("2025-01-01"), "{}", expired.summary);
        assert_eq!(clock.id, PREFLIGHT_CLOCK_WRONG);
        assert!(clock.summary.starts_with("Your clock says 2027-02-03 04:05 UTC"));
        for d in [&untrusted, &expired, &clock] {
            let text = d.to_text().to_lowercase();
            assert!(!text.contains("ignore"), "never offer to ignore: {text}");
            assert!(text.contains("login.example.com"), "names the host: {text}");
        }
    }
}
