//! Diagnoses for the SMTP and IMAP checks and their network steps.
//!
//! Server replies are keyed on codes (reply code, enhanced status, IMAP status and the
//! text's stable head), never on full wording, which differs between Microsoft, Google and
//! Dovecot. A refused token is explained from three facts together: the server's decoded
//! challenge, the granted scopes and the token's expiry (BR-09, BR-10, BR-20); the challenge
//! alone cannot tell an expired token from a missing scope. The ids below are stable and
//! listed in `docs/troubleshooting.md`; no text here contains a token.

use super::scopes;
use super::{Diagnosis, Retry};
use crate::mail::{
    CertificateProblem, ErrorChallenge, ImapError, ImapPhase, ImapStatus, SmtpError, SmtpPhase,
    SmtpReply, TransportError, TransportKind,
};
use crate::profile::Field;

/// Every id this module can return.
pub const IDS: &[&str] = &[
    SMTP_AUTH_DISABLED,
    SMTP_AUTH_WRONG_ACCOUNT,
    SMTP_NOT_AUTHENTICATED,
    SMTP_SEND_AS_DENIED,
    SMTP_AUTH_LINE_TOO_LONG,
    SMTP_STARTTLS_UNAVAILABLE,
    SMTP_XOAUTH2_NOT_OFFERED,
    SMTP_SENDER_REJECTED,
    SMTP_RECIPIENT_REJECTED,
    SMTP_MESSAGE_REJECTED,
    SMTP_TEMPORARY_FAILURE,
    SMTP_GREETING_REFUSED,
    SMTP_PROTOCOL,
    SMTP_MESSAGE_INVALID,
    IMAP_AUTH_FAILED,
    IMAP_MAILBOX_NO_ACCESS,
    IMAP_SELECT_REFUSED,
    IMAP_SEARCH_FAILED,
    IMAP_SERVER_CLOSED,
    IMAP_STARTTLS_UNAVAILABLE,
    IMAP_PROTOCOL,
    MAIL_TOKEN_EXPIRED,
    MAIL_TOKEN_REFUSED,
    MAIL_SCOPE_MISSING,
    MAIL_CREDENTIALS_MISSING,
    NET_DNS,
    NET_REFUSED,
    NET_TIMEOUT,
    NET_CLOSED,
    NET_TLS_UNTRUSTED,
    NET_TLS_EXPIRED,
    NET_TLS_NOT_YET_VALID,
    NET_TLS_HOSTNAME,
    NET_TLS_CERTIFICATE,
    NET_TLS_HANDSHAKE,
    NET_REPLY_TOO_LONG,
    NET_ERROR,
];

pub const SMTP_AUTH_DISABLED: &str = "smtp-auth-disabled";
pub const SMTP_AUTH_WRONG_ACCOUNT: &str = "smtp-auth-wrong-account";
pub const SMTP_NOT_AUTHENTICATED: &str = "smtp-not-authenticated";
pub const SMTP_SEND_AS_DENIED: &str = "smtp-send-as-denied";
pub const SMTP_AUTH_LINE_TOO_LONG: &str = "smtp-auth-line-too-long";
pub const SMTP_STARTTLS_UNAVAILABLE: &str = "smtp-starttls-unavailable";
pub const SMTP_XOAUTH2_NOT_OFFERED: &str = "smtp-xoauth2-not-offered";
pub const SMTP_SENDER_REJECTED: &str = "smtp-sender-rejected";
pub const SMTP_RECIPIENT_REJECTED: &str = "smtp-recipient-rejected";
pub const SMTP_MESSAGE_REJECTED: &str = "smtp-message-rejected";
pub const SMTP_TEMPORARY_FAILURE: &str = "smtp-temporary-failure";
pub const SMTP_GREETING_REFUSED: &str = "smtp-greeting-refused";
pub const SMTP_PROTOCOL: &str = "smtp-protocol";
pub const SMTP_MESSAGE_INVALID: &str = "smtp-message-invalid";
pub const IMAP_AUTH_FAILED: &str = "imap-auth-failed";
pub const IMAP_MAILBOX_NO_ACCESS: &str = "imap-mailbox-no-access";
pub const IMAP_SELECT_REFUSED: &str = "imap-select-refused";
pub const IMAP_SEARCH_FAILED: &str = "imap-search-failed";
pub const IMAP_SERVER_CLOSED: &str = "imap-server-closed";
pub const IMAP_STARTTLS_UNAVAILABLE: &str = "imap-starttls-unavailable";
pub const IMAP_PROTOCOL: &str = "imap-protocol";
pub const MAIL_TOKEN_EXPIRED: &str = "mail-token-expired";
pub const MAIL_TOKEN_REFUSED: &str = "mail-token-refused";
pub const MAIL_SCOPE_MISSING: &str = "mail-scope-missing";
pub const MAIL_CREDENTIALS_MISSING: &str = "mail-credentials-missing";
pub const NET_DNS: &str = "net-dns";
pub const NET_REFUSED: &str = "net-refused";
pub const NET_TIMEOUT: &str = "net-timeout";
pub const NET_CLOSED: &str = "net-closed";
pub const NET_TLS_UNTRUSTED: &str = "net-tls-untrusted";
pub const NET_TLS_EXPIRED: &str = "net-tls-expired";
pub const NET_TLS_NOT_YET_VALID: &str = "net-tls-not-yet-valid";
pub const NET_TLS_HOSTNAME: &str = "net-tls-hostname";
pub const NET_TLS_CERTIFICATE: &str = "net-tls-certificate";
pub const NET_TLS_HANDSHAKE: &str = "net-tls-handshake";
pub const NET_REPLY_TOO_LONG: &str = "net-reply-too-long";
pub const NET_ERROR: &str = "net-error";

/// What the diagnosis needs to know besides the error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailContext {
    /// The mailbox the service reads and sends From.
    pub mailbox: String,
    /// The identity given to the server (`user=` of XOAUTH2) for this check.
    pub login: String,
    /// The account that signed in (from the ID token), when known.
    pub signed_in_account: Option<String>,
    /// Scopes the token response granted, when known.
    pub granted_scopes: Option<Vec<String>>,
    /// The access token was past its expiry when used.
    pub token_expired: bool,
}

impl MailContext {
    /// The signed-in account when it is known and differs from the login.
    fn other_account(&self) -> Option<&str> {
        self.signed_in_account.as_deref().filter(|a| !a.eq_ignore_ascii_case(self.login.trim()))
    }

    fn account_name(&self) -> &str {
        self.signed_in_account.as_deref().unwrap_or("the signed-in account")
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Smtp,
    Imap,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Smtp => "SMTP",
            Protocol::Imap => "IMAP",
        }
    }
}

/// Diagnoses a failed SMTP test send.
pub fn smtp(e: &SmtpError, ctx: &MailContext) -> Diagnosis {
    let diagnosis = match e {
        SmtpError::Transport { phase, source } => network(source, Protocol::Smtp, *phase),
        SmtpError::Rejected { phase, reply, challenge } => {
            smtp_reply(*phase, reply, challenge.as_deref(), ctx)
        }
        SmtpError::StartTlsUnavailable { .. } => starttls_unavailable(SMTP_STARTTLS_UNAVAILABLE),
        SmtpError::Xoauth2NotOffered { offered } => Diagnosis::new(
            SMTP_XOAUTH2_NOT_OFFERED,
            "The SMTP server does not offer OAuth2 sign-in (AUTH XOAUTH2)",
            format!(
                "It offers only: {}. The host may be the wrong one, or the provider does not \
                 support OAuth2 for SMTP",
                if offered.is_empty() { "no AUTH at all" } else { offered }
            ),
            "Check the SMTP host and port (Microsoft 365: smtp.office365.com, 587, STARTTLS). \
             If they are right, ask the mail admin whether OAuth2 SMTP submission is enabled",
            Retry::Permanent,
        ),
        SmtpError::Unexpected { phase, reply } => Diagnosis::new(
            SMTP_PROTOCOL,
            format!("The SMTP server gave an unexpected reply during {phase}"),
            "The server does not follow the exchange mailgrant expects; a proxy or security \
             appliance may be rewriting the connection",
            "Check the SMTP host and port. If they are right, send the support bundle to the \
             mail admin",
            Retry::Permanent,
        )
        .with_detail(format!("server reply: {reply}")),
        SmtpError::Malformed { phase, line } => Diagnosis::new(
            SMTP_PROTOCOL,
            format!("The SMTP server sent something that is not SMTP during {phase}"),
            "The port may belong to another service, or a proxy answers in its place",
            "Check the SMTP host, port and security setting",
            Retry::Permanent,
        )
        .with_detail(format!("received: {line}")),
        SmtpError::Credentials(error) => credentials_missing(&error.to_string()),
        SmtpError::Message(text) => Diagnosis::new(
            SMTP_MESSAGE_INVALID,
            "The test e-mail could not be built",
            text.clone(),
            "Correct the mailbox or test recipient address",
            Retry::Permanent,
        ),
    };
    with_error_detail(diagnosis, e.to_string())
}

/// Diagnoses a failed IMAP inbox check or round-trip search.
pub fn imap(e: &ImapError, ctx: &MailContext) -> Diagnosis {
    let diagnosis = match e {
        ImapError::Transport { phase, source } => network(source, Protocol::Imap, *phase),
        ImapError::Rejected { phase, status, code, text, challenge } => {
            imap_reply(*phase, *status, code.as_deref(), text, challenge.as_deref(), ctx)
        }
        ImapError::StartTlsUnavailable { .. } => starttls_unavailable(IMAP_STARTTLS_UNAVAILABLE),
        ImapError::Protocol { phase, detail } => Diagnosis::new(
            IMAP_PROTOCOL,
            format!("The IMAP server gave an unexpected response during {phase}"),
            "The port may belong to another service, or a proxy answers in its place",
            "Check the IMAP host, port and security setting (Microsoft 365: \
             outlook.office365.com, 993, TLS)",
            Retry::Permanent,
        )
        .with_detail(format!("received: {detail}")),
        ImapError::Credentials(error) => credentials_missing(&error.to_string()),
        ImapError::InvalidSubject => Diagnosis::new(
            IMAP_PROTOCOL,
            "The test e-mail's subject cannot be searched for over IMAP",
            "The subject holds characters outside printable ASCII",
            "Use a plain ASCII subject for the test e-mail",
            Retry::Permanent,
        ),
    };
    with_error_detail(diagnosis, e.to_string())
}

fn with_error_detail(diagnosis: Diagnosis, error: String) -> Diagnosis {
    diagnosis.with_detail(format!("error: {error}"))
}

fn smtp_reply(
    phase: SmtpPhase,
    reply: &SmtpReply,
    challenge: Option<&ErrorChallenge>,
    ctx: &MailContext,
) -> Diagnosis {
    let status = reply.enhanced_status.as_deref().unwrap_or("");
    let text = reply.text();
    let lower = text.to_ascii_lowercase();
    let detail = format!("server reply: {reply}");

    if lower.contains("sendasdenied") || status == "5.7.60" {
        return send_as_denied(ctx).with_detail(detail);
    }
    if reply.code == 530 || status == "5.7.57" {
        return not_authenticated().with_detail(detail);
    }
    if phase == SmtpPhase::Auth {
        if status == "5.7.139" {
            return smtp_auth_disabled(&lower, ctx).with_detail(detail);
        }
        let too_long = lower.contains("too long") || lower.contains("line length");
        if too_long || matches!(reply.code, 500 | 555) && status == "5.5.2" {
            return line_too_long().with_detail(detail);
        }
        if status == "5.7.3" && challenge.is_none() {
            if let Some(d) = token_problem(None, ctx, Protocol::Smtp) {
                return d.with_detail(detail);
            }
            return smtp_wrong_account(ctx).with_detail(detail);
        }
        if reply.code >= 500 || challenge.is_some() {
            return token_refused(challenge, ctx, Protocol::Smtp).with_detail(detail);
        }
    }
    if (400..500).contains(&reply.code) {
        return Diagnosis::new(
            SMTP_TEMPORARY_FAILURE,
            format!("The SMTP server refused for now during {phase} ({})", reply.code),
            "A temporary condition on the server: load, a rate limit or greylisting",
            "Try again in a few minutes; if it persists, ask the mail admin",
            Retry::Transient,
        )
        .with_detail(detail);
    }

    let diagnosis = match phase {
        SmtpPhase::MailFrom => Diagnosis::new(
            SMTP_SENDER_REJECTED,
            format!(
                "The SMTP server refused the sender {}; the test e-mail was not sent",
                ctx.mailbox
            ),
            format!("{} may not send as this address", ctx.login),
            format!(
                "Use an address {} may send from as the mailbox, or ask the admin for Send As \
                 rights on it",
                ctx.login
            ),
            Retry::Permanent,
        ),
        SmtpPhase::Rcpt => Diagnosis::new(
            SMTP_RECIPIENT_REJECTED,
            "The SMTP server refused the test recipient; the test e-mail was not sent",
            "The address does not exist, or the server does not relay to it",
            "Check the test recipient (it defaults to the mailbox itself)",
            Retry::Permanent,
        ),
        SmtpPhase::Data => Diagnosis::new(
            SMTP_MESSAGE_REJECTED,
            "The SMTP server refused the test e-mail; it was not sent",
            "The server's policy rejected the message after it was transferred",
            "Read the server's reply below; ask the mail admin about the policy it names",
            Retry::Permanent,
        ),
        SmtpPhase::Greeting | SmtpPhase::Connect | SmtpPhase::Tls => Diagnosis::new(
            SMTP_GREETING_REFUSED,
            "The SMTP server refused the connection",
            "The server does not accept clients from this network, or is out of service",
            "Check the SMTP host and port; ask the mail admin whether this network may submit",
            Retry::Permanent,
        ),
        SmtpPhase::StartTls => starttls_unavailable(SMTP_STARTTLS_UNAVAILABLE),
        SmtpPhase::Ehlo | SmtpPhase::Auth => Diagnosis::new(
            SMTP_PROTOCOL,
            format!("The SMTP server refused {phase}"),
            "The server does not accept the exchange mailgrant uses",
            "Check the SMTP host and port; if they are right, send the support bundle to the \
             mail admin",
            Retry::Permanent,
        ),
    };
    diagnosis.with_detail(detail)
}

fn imap_reply(
    phase: ImapPhase,
    status: ImapStatus,
    code: Option<&str>,
    text: &str,
    challenge: Option<&ErrorChallenge>,
    ctx: &MailContext,
) -> Diagnosis {
    let lower = text.to_ascii_lowercase();
    let detail = format!("server reply: {status} {text}");

    if lower.contains("authenticated but not connected") {
        return mailbox_no_access(ctx).with_detail(detail);
    }
    if status == ImapStatus::Bye {
        return Diagnosis::new(
            IMAP_SERVER_CLOSED,
            format!("The IMAP server ended the session during {phase}"),
            "The server is shutting down, overloaded, or limits connections from this account",
            "Try again in a few minutes",
            Retry::Transient,
        )
        .with_detail(detail);
    }

    match phase {
        ImapPhase::Auth if challenge.is_some() => {
            token_refused(challenge, ctx, Protocol::Imap).with_detail(detail)
        }
        ImapPhase::Auth => {
            let privacy = code.is_some_and(|c| c.eq_ignore_ascii_case("PRIVACYREQUIRED"));
            if !privacy && let Some(d) = token_problem(None, ctx, Protocol::Imap) {
                return d.with_detail(detail);
            }
            imap_auth_failed(ctx).with_detail(detail)
        }
        ImapPhase::Select => Diagnosis::new(
            IMAP_SELECT_REFUSED,
            format!("Signed in, but the server refused to open INBOX of {}", ctx.login),
            "The login has no mailbox on this server (unlicensed, not yet provisioned), or no \
             rights on the mailbox it names",
            format!(
                "Check that {} has a mailbox and that {} has Full Access to it",
                ctx.login,
                ctx.account_name()
            ),
            Retry::Permanent,
        )
        .with_detail(detail),
        ImapPhase::Search => Diagnosis::new(
            IMAP_SEARCH_FAILED,
            "The IMAP server refused to search INBOX for the test e-mail",
            "The server does not support the search mailgrant uses",
            "Check the inbox by hand for the test e-mail; send the support bundle to the mail \
             admin",
            Retry::Permanent,
        )
        .with_detail(detail),
        ImapPhase::StartTls => starttls_unavailable(IMAP_STARTTLS_UNAVAILABLE).with_detail(detail),
        ImapPhase::Connect | ImapPhase::Tls | ImapPhase::Greeting => Diagnosis::new(
            IMAP_PROTOCOL,
            "The IMAP server refused the connection",
            "The server does not accept clients from this network, or is out of service",
            "Check the IMAP host and port; ask the mail admin",
            Retry::Permanent,
        )
        .with_detail(detail),
    }
}

// --- SMTP field cases -------------------------------------------------------------------------

/// 535 5.7.139 (BR-08): the token is fine, SMTP AUTH is switched off.
fn smtp_auth_disabled(lower_text: &str, ctx: &MailContext) -> Diagnosis {
    let scope = if lower_text.contains("for the tenant") {
        "for the tenant"
    } else if lower_text.contains("for the mailbox") {
        "for this mailbox"
    } else {
        "for the tenant or this mailbox"
    };
    Diagnosis::new(
        SMTP_AUTH_DISABLED,
        format!("The token is valid; SMTP AUTH is switched off {scope}"),
        "Exchange Online turns authenticated SMTP submission off by default in newer tenants, \
         and it can be switched off per mailbox; OAuth2 does not bypass it",
        format!(
            "Per mailbox: Microsoft 365 admin center → Users → Active users → {login} → Mail → \
             Manage email apps → tick Authenticated SMTP, or in Exchange Online PowerShell: \
             Set-CASMailbox -Identity {login} -SmtpClientAuthenticationDisabled $false. \
             Tenant-wide: Set-TransportConfig -SmtpClientAuthenticationDisabled $false (or \
             Exchange admin center → Settings → Mail flow → untick \"Turn off SMTP AUTH \
             protocol for your organization\"). The change can take up to an hour to apply; \
             no new sign-in is needed",
            login = ctx.login
        ),
        Retry::Permanent,
    )
}

/// 535 5.7.3 (BR-05, BR-07): the token does not belong to the SMTP login.
fn smtp_wrong_account(ctx: &MailContext) -> Diagnosis {
    let (summary, cause) = match ctx.other_account() {
        Some(account) => (
            format!("The token belongs to {account}, but SMTP logs in as {}", ctx.login),
            format!(
                "Exchange accepts a token only for the account that logs in. If {} is a shared \
                 mailbox it has no sign-in of its own and cannot be an SMTP login",
                ctx.login
            ),
        ),
        None => (
            format!("The SMTP server refused the login {} with this token", ctx.login),
            format!(
                "The token was issued to another user (the browser may have reused another \
                 session), or {} is a shared mailbox, which cannot be an SMTP login",
                ctx.login
            ),
        ),
    };
    let fix = match ctx.other_account() {
        Some(account) => format!(
            "Either sign in again as {login}, or, for a shared mailbox, set the SMTP login to \
             {account} and keep From {mailbox} ({account} needs Send As on it)",
            login = ctx.login,
            mailbox = ctx.mailbox
        ),
        None => format!(
            "Choose Sign in again and pick {} in the account list; for a shared mailbox, sign \
             in as the delegate and use the delegate as SMTP login",
            ctx.login
        ),
    };
    Diagnosis::new(SMTP_AUTH_WRONG_ACCOUNT, summary, cause, fix, Retry::Permanent)
}

/// 530 5.7.57: the server treats the session as not authenticated.
fn not_authenticated() -> Diagnosis {
    Diagnosis::new(
        SMTP_NOT_AUTHENTICATED,
        "The SMTP server says the client is not authenticated; the test e-mail was not sent",
        "The server did not accept the sign-in on this connection: the host or port is not the \
         authenticated submission endpoint, or something between rewrote the session",
        "Use the submission endpoint (Microsoft 365: smtp.office365.com, port 587, STARTTLS) \
         and check that SMTP AUTH is enabled for the mailbox",
        Retry::Permanent,
    )
}

/// 554 5.2.0 SendAsDenied / 550 5.7.60 (BR-07).
fn send_as_denied(ctx: &MailContext) -> Diagnosis {
    Diagnosis::new(
        SMTP_SEND_AS_DENIED,
        format!(
            "{} has no Send As right on {}; the test e-mail was not sent",
            ctx.login, ctx.mailbox
        ),
        format!(
            "The sign-in worked, but the From address {} is not the login and Exchange checks \
             Send As when the message is submitted",
            ctx.mailbox
        ),
        format!(
            "Ask the admin to grant it: Exchange Online PowerShell: Add-RecipientPermission \
             -Identity {mailbox} -Trustee {login} -AccessRights SendAs, or Microsoft 365 admin \
             center → Teams & groups → Shared mailboxes (or Users) → {mailbox} → Send as → add \
             {login}. It can take up to an hour to apply",
            mailbox = ctx.mailbox,
            login = ctx.login
        ),
        Retry::Permanent,
    )
}

/// 500/555 5.5.2 in the AUTH exchange (BR-19).
fn line_too_long() -> Diagnosis {
    Diagnosis::new(
        SMTP_AUTH_LINE_TOO_LONG,
        "The server refused the AUTH line as too long; this is not a bad password or token",
        "OAuth2 access tokens are long (Microsoft's 1.5–2.5 KB). mailgrant sends the token on \
         its own line after the server's go-ahead (RFC 4954), yet the server or something in \
         between still limits the line length",
        "Ask the mail admin whether a proxy or filtering appliance limits SMTP line length, \
         and to allow lines of at least 12,288 octets during AUTH (RFC 4954)",
        Retry::Permanent,
    )
}

// --- Token refusals (both protocols) ----------------------------------------------------------

/// A token problem the context can prove on its own: expired, or granted for the wrong
/// resource or without the mail scope. `None` when nothing in the context explains it.
fn token_problem(
    challenge: Option<&ErrorChallenge>,
    ctx: &MailContext,
    protocol: Protocol,
) -> Option<Diagnosis> {
    if ctx.token_expired {
        return Some(Diagnosis::new(
            MAIL_TOKEN_EXPIRED,
            format!("The {} server refused the access token because it expired", protocol.name()),
            "Access tokens last about an hour; this one was past its expiry when it was used",
            "Choose Refresh token now (the service refreshes on its own); if the refresh \
             fails, choose Sign in again…",
            Retry::Transient,
        ));
    }
    let granted = ctx.granted_scopes.as_deref()?;
    if let Some(d) = scopes::wrong_audience(granted) {
        return Some(d);
    }
    let missing = missing_scope(granted, challenge, protocol)?;
    Some(
        Diagnosis::new(
            MAIL_SCOPE_MISSING,
            format!("The token was not granted {missing}, which {} needs", protocol.name()),
            "The permission was not requested, not on the app registration, or consent for it \
             was not given",
            format!(
                "Add {missing} to the Scopes field and as a delegated permission on the app \
                 registration (with consent), then sign in again"
            ),
            Retry::Permanent,
        )
        .with_detail(format!("granted: {}", granted.join(" "))),
    )
}

/// The mail scope this protocol needs when the granted list is recognisably Microsoft's or
/// Google's and lacks it, or the scope the server's challenge names when it was not granted.
fn missing_scope(
    granted: &[String],
    challenge: Option<&ErrorChallenge>,
    protocol: Protocol,
) -> Option<String> {
    let has = |needle: &str| granted.iter().any(|s| s.eq_ignore_ascii_case(needle));
    let ends = |suffix: &str| {
        granted.iter().any(|s| s.to_ascii_lowercase().ends_with(&suffix.to_ascii_lowercase()))
    };
    if let Some(scope) = challenge.and_then(|c| c.scope.as_deref())
        && scope.contains("://")
        && !has(scope)
    {
        return Some(scope.to_owned());
    }

    let microsoft = granted.iter().any(|s| s.to_ascii_lowercase().starts_with("https://outlook."));
    if microsoft {
        let (suffix, full) = match protocol {
            Protocol::Smtp => ("/SMTP.Send", "https://outlook.office.com/SMTP.Send"),
            Protocol::Imap => {
                ("/IMAP.AccessAsUser.All", "https://outlook.office.com/IMAP.AccessAsUser.All")
            }
        };
        return (!ends(suffix)).then(|| full.to_owned());
    }
    None
}

/// The server refused the token; the challenge (when sent) says how, the context says why.
fn token_refused(
    challenge: Option<&ErrorChallenge>,
    ctx: &MailContext,
    protocol: Protocol,
) -> Diagnosis {
    let with_challenge = |d: Diagnosis| match challenge {
        Some(c) => d.with_detail(format!("server challenge: {}", c.text)),
        None => d,
    };
    if let Some(d) = token_problem(challenge, ctx, protocol) {
        return with_challenge(d);
    }

    let who = match challenge.and_then(|c| c.scope.as_deref()) {
        Some(scope) if scope.contains("google.com") => "Google",
        _ if ctx.granted_scopes.iter().flatten().any(|s| s.contains("outlook.office")) => {
            "Microsoft"
        }
        _ => "The server",
    };
    let said = match challenge {
        Some(c) => {
            let status = c.status.as_deref().unwrap_or("not given");
            match c.scope.as_deref() {
                Some(scope) => format!(" (status {status}, scope needed {scope})"),
                None => format!(" (status {status})"),
            }
        }
        None => String::new(),
    };
    let other = match ctx.other_account() {
        Some(account) => format!(
            "; note the token belongs to {account} while {} logs in as {}",
            protocol.name(),
            ctx.login
        ),
        None => String::new(),
    };
    with_challenge(Diagnosis::new(
        MAIL_TOKEN_REFUSED,
        format!("{who} refused the token for {} at {}{said}", ctx.login, protocol.name()),
        format!(
            "The token is not expired and its scopes look right, so it was revoked, issued to \
             another user, or mail access over {} is switched off for {}{other}",
            protocol.name(),
            ctx.login
        ),
        format!(
            "Choose Sign in again… as {}; if it fails the same way, ask the admin to check that \
             {} access is enabled for the mailbox",
            ctx.login,
            protocol.name()
        ),
        Retry::Permanent,
    ))
}

fn credentials_missing(what: &str) -> Diagnosis {
    Diagnosis::new(
        MAIL_CREDENTIALS_MISSING,
        "Nothing was sent to the server: the sign-in data is incomplete",
        what.to_owned(),
        "Fill in the mail login and choose Sign in with the browser… (or Refresh token now)",
        Retry::Permanent,
    )
}

// --- IMAP field cases -------------------------------------------------------------------------

/// `NO AUTHENTICATE failed.` without a challenge or an explanation from the context.
fn imap_auth_failed(ctx: &MailContext) -> Diagnosis {
    let account = ctx.account_name();
    Diagnosis::new(
        IMAP_AUTH_FAILED,
        format!("The IMAP server refused the sign-in for {}", ctx.login),
        format!(
            "Usually one of three: IMAP is switched off for the mailbox; the token was issued to \
             another user than {login} ({account}) without Full Access to it; or the token lacks \
             the IMAP scope (https://outlook.office.com/IMAP.AccessAsUser.All)",
            login = ctx.login
        ),
        format!(
            "Enable IMAP: Microsoft 365 admin center → Users → Active users → {login} → Mail → \
             Manage email apps → IMAP, or Set-CASMailbox -Identity {login} -ImapEnabled $true. \
             Then check the signed-in account is {login} (or has Full Access: \
             Add-MailboxPermission -Identity {login} -User {account} -AccessRights FullAccess) \
             and that the Scopes field holds https://outlook.office.com/IMAP.AccessAsUser.All",
            login = ctx.login
        ),
        Retry::Permanent,
    )
}

/// `BAD User is authenticated but not connected.` (BR-05).
fn mailbox_no_access(ctx: &MailContext) -> Diagnosis {
    let account = ctx.account_name();
    Diagnosis::new(
        IMAP_MAILBOX_NO_ACCESS,
        format!("{account} has no access to the mailbox {}", ctx.login),
        format!(
            "Exchange accepted the token of {account} but cannot open {login} for it: the wrong \
             account signed in (often the admin's session in the browser), or the delegate \
             lacks Full Access",
            login = ctx.login
        ),
        format!(
            "Choose Sign in again… and pick {login}; if {account} is meant to read it as a \
             shared mailbox, the admin grants Full Access: Add-MailboxPermission -Identity \
             {login} -User {account} -AccessRights FullAccess",
            login = ctx.login
        ),
        Retry::Permanent,
    )
}

fn starttls_unavailable(id: &'static str) -> Diagnosis {
    Diagnosis::new(
        id,
        "The server does not offer STARTTLS, so the token was not sent",
        "The port expects implicit TLS (465, 993) or plain text only, or a firewall's mail \
         inspection strips STARTTLS from the server's answer",
        "Check port and security: 587 and 143 use STARTTLS, 465 and 993 use TLS. If they are \
         right, ask the network admin to turn off SMTP/IMAP inspection on the firewall",
        Retry::Permanent,
    )
}

// --- Network ----------------------------------------------------------------------------------

fn network(e: &TransportError, protocol: Protocol, phase: impl std::fmt::Display) -> Diagnosis {
    let name = protocol.name();
    let at = e.endpoint.clone().unwrap_or_else(|| format!("the {name} server"));
    let extra_ca = Field::ExtraCaFile.label();
    let peer = e.peer.as_ref();
    let issuer = peer.map_or("an unknown issuer".to_owned(), |p| p.issuer.clone());

    let diagnosis = match e.kind {
        TransportKind::Dns => Diagnosis::new(
            NET_DNS,
            format!("The {name} host name could not be found ({at})"),
            "The host name is misspelt, or this machine's DNS cannot resolve it (offline, or \
             only a proxy may resolve outside names)",
            format!("Check the {name} host; check this machine's network and DNS settings"),
            Retry::Transient,
        ),
        TransportKind::Refused => Diagnosis::new(
            NET_REFUSED,
            format!("The connection to {at} was refused"),
            "Nothing listens on that port, or a firewall actively rejects it",
            format!(
                "Check the {name} host and port; ask the network admin whether the port is open"
            ),
            Retry::Transient,
        ),
        TransportKind::Timeout => Diagnosis::new(
            NET_TIMEOUT,
            format!("No complete answer from {at} within the timeout ({name} {phase})"),
            "A firewall or the provider silently drops the outbound port (587, 465 and 993 are \
             often blocked on plant and guest networks), the server is overloaded, or it answers \
             so slowly (a byte at a time) that the step cannot finish",
            format!(
                "Ask the network admin to allow outbound TCP to {at}; if the network is slow, \
                 raise the timeout"
            ),
            Retry::Transient,
        ),
        TransportKind::Closed => Diagnosis::new(
            NET_CLOSED,
            format!("{at} closed the connection"),
            "The server or something in between dropped the session; a wrong security setting \
             for the port does this too",
            "Check the port and security setting; try again later",
            Retry::Transient,
        ),
        TransportKind::Tls(Some(CertificateProblem::UnknownIssuer)) => Diagnosis::new(
            NET_TLS_UNTRUSTED,
            format!("The certificate of {at} is not trusted: it is issued by {issuer}"),
            "Most likely a TLS-inspecting proxy or firewall on this network re-signs the \
             connection with its own certificate authority",
            format!(
                "Get that CA certificate (PEM) from the network admin, choose it in the \
                 \"{extra_ca}\" setting, and run the check again"
            ),
            Retry::Permanent,
        ),
        TransportKind::Tls(Some(CertificateProblem::Expired)) => {
            let when = peer
                .and_then(|p| p.not_after)
                .map(|t| format!(" on {}", t.date()))
                .unwrap_or_default();
            Diagnosis::new(
                NET_TLS_EXPIRED,
                format!("The certificate of {at} expired{when}"),
                "The server (or a proxy in between) presents an expired certificate, or this \
                 machine's clock is wrong",
                "Check this machine's date and time; otherwise tell the server's admin",
                Retry::Permanent,
            )
        }
        TransportKind::Tls(Some(CertificateProblem::NotYetValid)) => Diagnosis::new(
            NET_TLS_NOT_YET_VALID,
            format!("The certificate of {at} is not valid yet"),
            "This machine's clock is probably behind",
            "Correct this machine's date and time",
            Retry::Permanent,
        ),
        TransportKind::Tls(Some(CertificateProblem::HostnameMismatch)) => Diagnosis::new(
            NET_TLS_HOSTNAME,
            format!("The certificate of {at} is for another host name"),
            "The host is typed as an alias or address the certificate does not name, or a proxy \
             answers with its own certificate",
            format!("Type the {name} host exactly as the provider documents it"),
            Retry::Permanent,
        ),
        TransportKind::Tls(Some(_)) => Diagnosis::new(
            NET_TLS_CERTIFICATE,
            format!("The certificate of {at} was refused"),
            "The certificate is revoked or malformed",
            "Tell the server's admin; if a proxy is in between, ask the network admin",
            Retry::Permanent,
        ),
        TransportKind::Tls(None) => Diagnosis::new(
            NET_TLS_HANDSHAKE,
            format!("The TLS handshake with {at} failed"),
            "The security setting does not match the port (TLS on a STARTTLS port or the other \
             way round), or a proxy interferes",
            "Check port and security: 587 and 143 use STARTTLS, 465 and 993 use TLS",
            Retry::Permanent,
        ),
        TransportKind::Oversized => Diagnosis::new(
            NET_REPLY_TOO_LONG,
            format!("The {name} server's reply was too long or never ended ({at}, {name} {phase})"),
            "No mail server answers like this: the port belongs to another service that streams \
             data, or a device in between (a proxy, a tarpit) floods the connection",
            format!(
                "Check the {name} host, port and security setting; if they are right, send the \
                 support bundle to the mail admin"
            ),
            Retry::Permanent,
        ),
        TransportKind::Other => Diagnosis::new(
            NET_ERROR,
            format!("Network error talking to {at}"),
            "This machine's network failed during the check",
            "Check the network connection and try again",
            Retry::Transient,
        ),
    };
    match peer {
        Some(p) => {
            let expiry = p.not_after.map(|t| t.date().to_string()).unwrap_or_default();
            diagnosis.with_detail(format!(
                "certificate: subject {}; issuer {}; valid until {expiry}",
                p.subject, p.issuer
            ))
        }
        None => diagnosis,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> MailContext {
        MailContext {
            mailbox: "alarms@example.com".into(),
            login: "alarms@example.com".into(),
            ..MailContext::default()
        }
    }

    fn rejected(phase: SmtpPhase, code: u16, status: &str, text: &str) -> SmtpError {
        SmtpError::Rejected {
            phase,
            reply: SmtpReply {
                code,
                enhanced_status: Some(status.to_owned()),
                lines: vec![format!("{status} {text}")],
            },
            challenge: None,
        }
    }

    #[test]
    fn ids_are_unique() {
        let mut ids = IDS.to_vec();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), IDS.len());
    }

    #[test]
    fn five_seven_fifty_seven_is_not_authenticated() {
        let e = rejected(SmtpPhase::MailFrom, 530, "5.7.57", "Client not authenticated");
        assert_eq!(smtp(&e, &ctx()).id, SMTP_NOT_AUTHENTICATED);
    }

    #[test]
    fn missing_smtp_scope_is_named() {
        let e = rejected(SmtpPhase::Auth, 535, "5.7.3", "Authentication unsuccessful");
        let ctx = MailContext {
            granted_scopes: Some(vec!["https://outlook.office.com/IMAP.AccessAsUser.All".into()]),
            ..ctx()
        };
        let d = smtp(&e, &ctx);
        assert_eq!(d.id, MAIL_SCOPE_MISSING);
        assert!(d.fix.contains("https://outlook.office.com/SMTP.Send"), "{}", d.fix);
    }

    #[test]
    fn unknown_issuer_names_the_issuer_and_the_setting() {
        let e = ImapError::Transport {
            phase: ImapPhase::Tls,
            source: TransportError {
                kind: TransportKind::Tls(Some(CertificateProblem::UnknownIssuer)),
                endpoint: Some("outlook.office365.com:993".into()),
                detail: "invalid peer certificate: UnknownIssuer".into(),
                peer: Some(Box::new(crate::mail::PeerCertificate {
                    subject: "CN=outlook.office365.com".into(),
                    issuer: "CN=Contoso Inspection CA".into(),
                    not_after: None,
                })),
            },
        };
        let d = imap(&e, &ctx());
        assert_eq!(d.id, NET_TLS_UNTRUSTED);
        assert!(d.summary.contains("CN=Contoso Inspection CA"), "{}", d.summary);
        assert!(d.fix.contains("Extra CA certificate file"), "{}", d.fix);
    }
}
