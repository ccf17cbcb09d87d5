//! Diagnoses for the browser sign-in and the token endpoint.
//!
//! Entra errors are keyed on the AADSTS number (from `error_codes`, else from the description),
//! never on wording; other providers on the OAuth `error` code. Each diagnosis names the portal
//! page and setting to change. Consent problems give the admin-consent URL and never suggest
//! retrying in a loop. The ids below are stable and listed in `docs/troubleshooting.md`; no text
//! here contains a token, code, verifier or secret (only ids, URLs and the provider's own
//! description, which the token client scrubbed of anything we sent).

use std::time::Duration;

use super::{Diagnosis, Retry};
use crate::oauth::{
    CallbackError, CertificateProblem, ProviderError, SignInError, TokenError, TransportKind,
};
use crate::profile::Profile;
use crate::provider::{MICROSOFT_REGISTERED_REDIRECT, ProviderKind};

/// Every id this module can return.
pub const IDS: &[&str] = &[
    SIGN_IN_CANCELLED,
    SIGN_IN_TIMEOUT,
    SIGN_IN_STATE_MISMATCH,
    SIGN_IN_LISTENER_FAILED,
    SIGN_IN_BAD_SETTINGS,
    SIGN_IN_ACCESS_DENIED,
    SIGN_IN_REFUSED,
    PROVIDER_UNAVAILABLE,
    REDIRECT_URI_MISMATCH,
    SINGLE_TENANT_APP_ON_COMMON,
    ADMIN_CONSENT_REQUIRED,
    CONSENT_DECLINED,
    CLIENT_SECRET_REQUIRED,
    CLIENT_IS_PUBLIC,
    CLIENT_SECRET_INVALID,
    CLIENT_SECRET_EXPIRED,
    CLIENT_INVALID,
    UNAUTHORIZED_CLIENT,
    APP_NOT_FOUND_IN_TENANT,
    TENANT_NOT_FOUND,
    APP_DISABLED,
    USER_NOT_ASSIGNED,
    ACCOUNT_FROM_OTHER_TENANT,
    REFRESH_TOKEN_EXPIRED,
    GOOGLE_TESTING_APP_EXPIRED,
    CODE_ALREADY_REDEEMED,
    CODE_VERIFIER_MISMATCH,
    INVALID_SCOPE,
    MFA_REQUIRED,
    CONDITIONAL_ACCESS_BLOCKED,
    ADMIN_POLICY_ENFORCED,
    CLOCK_SKEW,
    TOKEN_REQUEST_REJECTED,
    TOKEN_ENDPOINT_DNS,
    TOKEN_ENDPOINT_REFUSED,
    TOKEN_ENDPOINT_RESET,
    TOKEN_ENDPOINT_TIMEOUT,
    TOKEN_ENDPOINT_TLS_UNTRUSTED,
    TOKEN_ENDPOINT_TLS_EXPIRED,
    TOKEN_ENDPOINT_TLS_NOT_YET_VALID,
    TOKEN_ENDPOINT_TLS_WRONG_HOST,
    TOKEN_ENDPOINT_TLS_FAILED,
    TOKEN_ENDPOINT_PROXY,
    TOKEN_ENDPOINT_NETWORK,
    TOKEN_ENDPOINT_ANSWER_TOO_LARGE,
    TOKEN_ENDPOINT_UNEXPECTED,
    TOKEN_ENDPOINT_REDIRECTED,
    TOKEN_RESPONSE_INVALID,
];

pub const SIGN_IN_CANCELLED: &str = "sign-in-cancelled";
pub const SIGN_IN_TIMEOUT: &str = "sign-in-timeout";
pub const SIGN_IN_STATE_MISMATCH: &str = "sign-in-state-mismatch";
pub const SIGN_IN_LISTENER_FAILED: &str = "sign-in-listener-failed";
pub const SIGN_IN_BAD_SETTINGS: &str = "sign-in-bad-settings";
pub const SIGN_IN_ACCESS_DENIED: &str = "sign-in-access-denied";
pub const SIGN_IN_REFUSED: &str = "sign-in-refused";
pub const PROVIDER_UNAVAILABLE: &str = "provider-unavailable";
pub const REDIRECT_URI_MISMATCH: &str = "redirect-uri-mismatch";
pub const SINGLE_TENANT_APP_ON_COMMON: &str = "single-tenant-app-on-common";
pub const ADMIN_CONSENT_REQUIRED: &str = "admin-consent-required";
pub const CONSENT_DECLINED: &str = "consent-declined";
pub const CLIENT_SECRET_REQUIRED: &str = "client-secret-required";
pub const CLIENT_IS_PUBLIC: &str = "client-is-public";
pub const CLIENT_SECRET_INVALID: &str = "client-secret-invalid";
pub const CLIENT_SECRET_EXPIRED: &str = "client-secret-expired";
pub const CLIENT_INVALID: &str = "client-invalid";
pub const UNAUTHORIZED_CLIENT: &str = "unauthorized-client";
pub const APP_NOT_FOUND_IN_TENANT: &str = "app-not-found-in-tenant";
pub const TENANT_NOT_FOUND: &str = "tenant-not-found";
pub const APP_DISABLED: &str = "app-disabled";
pub const USER_NOT_ASSIGNED: &str = "user-not-assigned";
pub const ACCOUNT_FROM_OTHER_TENANT: &str = "account-from-other-tenant";
pub const REFRESH_TOKEN_EXPIRED: &str = "refresh-token-expired";
pub const GOOGLE_TESTING_APP_EXPIRED: &str = "google-testing-app-expired";
pub const CODE_ALREADY_REDEEMED: &str = "code-already-redeemed";
pub const CODE_VERIFIER_MISMATCH: &str = "code-verifier-mismatch";
pub const INVALID_SCOPE: &str = "invalid-scope";
pub const MFA_REQUIRED: &str = "mfa-required";
pub const CONDITIONAL_ACCESS_BLOCKED: &str = "conditional-access-blocked";
pub const ADMIN_POLICY_ENFORCED: &str = "admin-policy-enforced";
pub const CLOCK_SKEW: &str = "clock-skew";
pub const TOKEN_REQUEST_REJECTED: &str = "token-request-rejected";
pub const TOKEN_ENDPOINT_DNS: &str = "token-endpoint-dns";
pub const TOKEN_ENDPOINT_REFUSED: &str = "token-endpoint-refused";
pub const TOKEN_ENDPOINT_RESET: &str = "token-endpoint-reset";
pub const TOKEN_ENDPOINT_TIMEOUT: &str = "token-endpoint-timeout";
pub const TOKEN_ENDPOINT_TLS_UNTRUSTED: &str = "token-endpoint-tls-untrusted";
pub const TOKEN_ENDPOINT_TLS_EXPIRED: &str = "token-endpoint-tls-expired";
pub const TOKEN_ENDPOINT_TLS_NOT_YET_VALID: &str = "token-endpoint-tls-not-yet-valid";
pub const TOKEN_ENDPOINT_TLS_WRONG_HOST: &str = "token-endpoint-tls-wrong-host";
pub const TOKEN_ENDPOINT_TLS_FAILED: &str = "token-endpoint-tls-failed";
pub const TOKEN_ENDPOINT_PROXY: &str = "token-endpoint-proxy";
pub const TOKEN_ENDPOINT_NETWORK: &str = "token-endpoint-network";
pub const TOKEN_ENDPOINT_ANSWER_TOO_LARGE: &str = "token-endpoint-answer-too-large";
pub const TOKEN_ENDPOINT_UNEXPECTED: &str = "token-endpoint-unexpected";
pub const TOKEN_ENDPOINT_REDIRECTED: &str = "token-endpoint-redirected";
pub const TOKEN_RESPONSE_INVALID: &str = "token-response-invalid";

/// A Google refresh token of an app in "Testing" dies after this long (BR-15).
const GOOGLE_TESTING_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// Which step produced a provider error: the text differs slightly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// The authorize page redirected back with an error.
    Authorize,
    /// Redeeming the code after the browser came back.
    Code,
    /// Refreshing with a stored refresh token.
    Refresh,
}

/// Explains a failed browser sign-in.
pub fn sign_in(error: &SignInError, profile: &Profile) -> Diagnosis {
    match error {
        SignInError::Cancelled => Diagnosis::new(
            SIGN_IN_CANCELLED,
            "The sign-in was cancelled",
            "Cancel was pressed while mailgrant waited for the browser",
            "Start the sign-in again when ready",
            Retry::Transient,
        ),
        SignInError::TimedOut { redirect_uri, waited } => timed_out(profile, redirect_uri, *waited),
        SignInError::StateMismatch { redirect_uri, rejected } => Diagnosis::new(
            SIGN_IN_STATE_MISMATCH,
            "The browser came back from another sign-in attempt",
            "The answer that reached mailgrant belongs to an older sign-in (an old tab, a \
             bookmarked link, or a second mailgrant window), so it was refused for safety",
            "Close the old sign-in tabs, press \"Sign in with the browser…\" again and finish \
             the sign-in in the tab it opens",
            Retry::Transient,
        )
        .with_detail(format!("listening at {redirect_uri}; refused {rejected} answer(s)")),
        SignInError::Listener { address, source } => listener_failed(address, source),
        SignInError::AuthorizeUrl(reason) => Diagnosis::new(
            SIGN_IN_BAD_SETTINGS,
            "The sign-in address cannot be built from the settings",
            "The authorize URL or client ID in the registration step is not usable",
            "Check the Authorize URL and Application (client) ID fields",
            Retry::Permanent,
        )
        .with_detail(reason.clone()),
        SignInError::Callback(CallbackError(provider)) => {
            from_provider(provider, None, profile, Step::Authorize, None)
        }
        SignInError::Token(error) => token_step(error, profile, Step::Code, None),
    }
}

/// Explains a failed refresh (the service, the status view, the verification's refresh check).
pub fn token(error: &TokenError, profile: &Profile) -> Diagnosis {
    token_step(error, profile, Step::Refresh, None)
}

/// Like [`token`], knowing how old the refresh token is, which tells a Google app in "Testing"
/// (refresh tokens die after 7 days) from other causes.
pub fn token_with_refresh_age(
    error: &TokenError,
    profile: &Profile,
    refresh_token_age: Option<Duration>,
) -> Diagnosis {
    token_step(error, profile, Step::Refresh, refresh_token_age)
}

fn token_step(
    error: &TokenError,
    profile: &Profile,
    step: Step,
    refresh_token_age: Option<Duration>,
) -> Diagnosis {
    let host = profile.token_url.url().host_str().unwrap_or_default().to_owned();
    match error {
        TokenError::Provider { status, error, .. } => {
            from_provider(error, Some(*status), profile, step, refresh_token_age)
        }
        TokenError::Transport { kind, detail, host } => {
            transport(kind, host, profile).with_detail(format!("token endpoint {host}: {detail}"))
        }
        // An error page instead of JSON from an overloaded or failing front end: the same
        // passing fault as a JSON 5xx, so the same advice.
        TokenError::UnexpectedResponse { status, what, .. } if *status == 429 || *status >= 500 => {
            unavailable(Some(*status)).with_detail(format!("HTTP {status}: {what}"))
        }
        TokenError::UnexpectedResponse { status, what, .. } => Diagnosis::new(
            TOKEN_ENDPOINT_UNEXPECTED,
            format!(
                "The token endpoint {host} answered HTTP {status} with something that is \
                     not a sign-in answer"
            ),
            "A proxy or gateway between this computer and the provider answered instead of it, \
             or the Token URL points at the wrong page",
            format!(
                "Check the Token URL ({}). If this network uses a web proxy, set HTTPS_PROXY \
                 for mailgrant and the service, or ask IT to let this computer reach {host}",
                profile.token_url.as_str()
            ),
            retry_for(error.is_transient()),
        )
        .with_detail(format!("HTTP {status}: {what}")),
        TokenError::Redirected { status, location } => Diagnosis::new(
            TOKEN_ENDPOINT_REDIRECTED,
            format!("The token endpoint {host} redirected instead of answering"),
            "The Token URL is not the provider's token endpoint (a login page, http instead of \
             https), or a proxy sends requests to its own login page",
            format!(
                "Copy the token endpoint URL again from the provider's documentation into \
                     the Token URL field (now {})",
                profile.token_url.as_str()
            ),
            Retry::Permanent,
        )
        .with_detail(format!("HTTP {status} to {location}")),
        TokenError::InvalidResponse { reason } => Diagnosis::new(
            TOKEN_RESPONSE_INVALID,
            "The token endpoint's answer cannot be read",
            "The provider answered success but not with a usable OAuth token response; the \
             Token URL may point at another service",
            "Check the Token URL; if it is right, send the support bundle to the provider",
            Retry::Permanent,
        )
        .with_detail(reason.clone()),
    }
}

fn retry_for(transient: bool) -> Retry {
    if transient { Retry::Transient } else { Retry::Permanent }
}

/// Entra's sign-in hosts: the global cloud and the national clouds.
const ENTRA_HOSTS: [&str; 4] = [
    "login.microsoftonline.com",
    "login.microsoftonline.us",
    "login.partner.microsoftonline.cn",
    "login.chinacloudapi.cn",
];

/// The tenant segment of an Entra-shaped authorize URL (`/<tenant>/oauth2/v2.0/authorize` or
/// `/<tenant>/oauth2/authorize`), on any host: typed custom URLs and national clouds included.
fn entra_tenant_in_url(profile: &Profile) -> Option<String> {
    let segments: Vec<&str> = profile.authorize_url.url().path_segments()?.collect();
    let shaped = matches!(segments.as_slice(), [_, "oauth2", "v2.0", "authorize"])
        || matches!(segments.as_slice(), [_, "oauth2", "authorize"]);
    let tenant = segments.first().filter(|t| !t.is_empty())?;
    shaped.then(|| tenant.to_ascii_lowercase())
}

fn is_microsoft(profile: &Profile) -> bool {
    let host = profile.authorize_url.url().host_str().unwrap_or_default().to_ascii_lowercase();
    profile.provider == ProviderKind::Microsoft365
        || ENTRA_HOSTS.contains(&host.as_str())
        || entra_tenant_in_url(profile).is_some()
}

/// Google, recognised by its endpoints, its mail hosts or the Gmail scope, so that a profile
/// typed as a custom provider (or reaching Google through a proxy URL) is still recognised.
pub(crate) fn is_google(profile: &Profile) -> bool {
    let host = |url: &url::Url| url.host_str().unwrap_or_default().to_ascii_lowercase();
    let token = host(profile.token_url.url());
    let authorize = host(profile.authorize_url.url());
    let gmail_host = |h: &str| {
        let h = h.to_ascii_lowercase();
        h.ends_with("gmail.com") || h.ends_with("googlemail.com")
    };
    token.ends_with("googleapis.com")
        || authorize == "accounts.google.com"
        || profile.scopes.iter().any(|s| s.as_str().starts_with("https://mail.google.com/"))
        || gmail_host(&profile.smtp.host)
        || gmail_host(&profile.imap.host)
}

/// The app registration's portal page, with the client ID to find it by.
fn app_registration(profile: &Profile) -> String {
    format!(
        "Microsoft Entra admin center → App registrations → the app with Application (client) \
         ID {}",
        profile.client_id.as_str()
    )
}

/// The tenant as typed, else the one in an Entra-shaped authorize URL, else `organizations`.
fn tenant(profile: &Profile) -> String {
    profile
        .tenant
        .clone()
        .or_else(|| entra_tenant_in_url(profile))
        .unwrap_or_else(|| "organizations".to_owned())
}

/// `https://<sign-in host>/<tenant>/adminconsent?client_id=<id>`: the host of the authorize URL
/// for Entra-shaped URLs (national clouds), else the global cloud's.
pub fn admin_consent_url(profile: &Profile) -> String {
    let url = profile.authorize_url.url();
    let origin = match (entra_tenant_in_url(profile), url.host_str()) {
        (Some(_), Some(_)) => url.origin().ascii_serialization(),
        _ => "https://login.microsoftonline.com".to_owned(),
    };
    format!("{origin}/{}/adminconsent?client_id={}", tenant(profile), profile.client_id.as_str())
}

/// "45 s" under two minutes, else whole minutes.
fn waited_text(waited: Duration) -> String {
    let secs = waited.as_secs();
    if secs < 120 { format!("{} s", secs.max(1)) } else { format!("{} min", secs.div_ceil(60)) }
}

fn timed_out(profile: &Profile, redirect_uri: &str, waited: Duration) -> Diagnosis {
    let waited = waited_text(waited);
    let register = if is_microsoft(profile) {
        format!(
            "In {} → Authentication → Mobile and desktop applications, the redirect URI {} must \
             be listed exactly (Entra accepts any port for it; mailgrant sent {redirect_uri})",
            app_registration(profile),
            MICROSOFT_REGISTERED_REDIRECT
        )
    } else {
        format!(
            "Register the redirect URI {redirect_uri} (or http://localhost with any port, if \
                 the provider allows) for client ID {}",
            profile.client_id.as_str()
        )
    };
    // Entra names this mismatch AADSTS50011 on its page; other providers word it their way.
    let mismatch = if is_microsoft(profile) {
        "a redirect URI that is not registered for this app (AADSTS50011)"
    } else {
        "a redirect URI that is not registered for this client (\"redirect_uri_mismatch\" or \
         similar)"
    };
    Diagnosis::new(
        SIGN_IN_TIMEOUT,
        format!("No answer came back from the browser within {waited}"),
        format!(
            "Most often the sign-in page showed an error instead of sending the browser back: \
             {mismatch}. Other reasons: a consent or approval page was left open, the browser \
             tab was closed, or the client ID belongs to another program (Thunderbird, \
             Evolution, a sample app) whose registration does not list mailgrant's redirect URI"
        ),
        format!(
            "Look at the browser tab for an error message. {register}. Use your own app \
             registration, not another program's client ID. Then sign in again; if the browser \
             did not open, copy the sign-in URL from mailgrant into it"
        ),
        Retry::Transient,
    )
    .with_detail(format!("redirect URI sent: {redirect_uri}"))
}

/// Maps a provider's error answer (callback or token endpoint) onto a diagnosis.
fn from_provider(
    error: &ProviderError,
    status: Option<u16>,
    profile: &Profile,
    step: Step,
    refresh_token_age: Option<Duration>,
) -> Diagnosis {
    let diagnosis = by_aadsts(error, profile, step)
        .or_else(|| by_error_code(error, status, profile, step, refresh_token_age))
        .unwrap_or_else(|| generic(error, status, step));
    let mut diagnosis = diagnosis;
    if let Some(status) = status {
        diagnosis.details.push(format!("HTTP status: {status}"));
    }
    if !error.aadsts.is_empty() {
        let codes: Vec<String> = error.aadsts.iter().map(|c| format!("AADSTS{c}")).collect();
        diagnosis.details.push(format!("codes: {}", codes.join(", ")));
    }
    diagnosis.details.extend(error.details());
    diagnosis
}

fn by_aadsts(error: &ProviderError, profile: &Profile, step: Step) -> Option<Diagnosis> {
    let code = error.aadsts.iter().copied().find(|c| KNOWN_AADSTS.contains(c))?;
    let app = app_registration(profile);
    let client_id = profile.client_id.as_str();
    let d = match code {
        50011 | 500113 | 900971 => Diagnosis::new(
            REDIRECT_URI_MISMATCH,
            "The redirect URI mailgrant sends is not registered for this app",
            format!(
                "Entra compares the redirect URI with the app registration's list; \
                 http://localhost:<port>/ is accepted only when {MICROSOFT_REGISTERED_REDIRECT} \
                 is registered under \"Mobile and desktop applications\" (not under \"Web\"). A \
                 client ID borrowed from another program carries that program's list"
            ),
            format!(
                "In {app} → Authentication → Add a platform → Mobile and desktop applications, \
                 add exactly {MICROSOFT_REGISTERED_REDIRECT} (no port, no path), save, and sign \
                 in again. If this client ID is not your own registration, register your own app"
            ),
            Retry::Permanent,
        ),
        50194 => {
            let alias = tenant(profile);
            let place = if profile.provider == ProviderKind::Microsoft365 {
                format!("in the Directory (tenant) ID field instead of {alias}")
            } else {
                format!(
                    "in place of /{alias}/ in both the Authorize URL and the Token URL (now {})",
                    profile.authorize_url.as_str()
                )
            };
            Diagnosis::new(
                SINGLE_TENANT_APP_ON_COMMON,
                "This app registration only accepts accounts from one organization",
                format!(
                    "The app is registered as single-tenant (\"Accounts in this organizational \
                     directory only\"), which cannot sign in through the shared {alias} \
                     endpoint; the Directory (tenant) ID must replace {alias}"
                ),
                format!(
                    "Enter the Directory (tenant) ID from {app} → Overview (or your domain \
                     such as contoso.onmicrosoft.com) {place}, then sign in again. Or make the \
                     app multi-tenant: Authentication → Supported account types"
                ),
                Retry::Permanent,
            )
        }
        90095 | 90094 | 65001 => Diagnosis::new(
            ADMIN_CONSENT_REQUIRED,
            "An administrator must approve this app for your organization",
            "The tenant does not let users consent to these permissions themselves, and no \
             administrator has granted consent for the app yet",
            format!(
                "Ask a Global or Privileged Role administrator to open {} and accept, or in the \
                 Entra admin center go to Enterprise applications → the app ({client_id}) → \
                 Permissions → Grant admin consent. Then sign in again once; retrying before \
                 that changes nothing",
                admin_consent_url(profile)
            ),
            Retry::Permanent,
        ),
        65004 => Diagnosis::new(
            CONSENT_DECLINED,
            "The permissions page was declined",
            "Someone chose Cancel or \"Do not accept\" on the page asking to allow mailgrant's \
             access to the mailbox",
            "Sign in again and accept the permissions; the service needs them to send and read \
             mail unattended",
            Retry::Permanent,
        ),
        7000218 => Diagnosis::new(
            CLIENT_SECRET_REQUIRED,
            "This registration is treated as a Web (confidential) app and needs a client secret",
            "Its redirect URIs are only under the \"Web\" platform, so Entra requires a secret \
             when the code is redeemed",
            format!(
                "Either enter the app's client secret in the registration step, or in {app} → \
                 Authentication add {MICROSOFT_REGISTERED_REDIRECT} under Mobile and desktop \
                 applications (then no secret is needed). Then sign in again"
            ),
            Retry::Permanent,
        ),
        700025 => Diagnosis::new(
            CLIENT_IS_PUBLIC,
            "This registration is a public client: no client secret may be sent",
            "The app has a \"Mobile and desktop applications\" redirect URI, so Entra treats it \
             as public and refuses a secret",
            "Clear the Client secret field in the registration step, then sign in again",
            Retry::Permanent,
        ),
        7000215 => Diagnosis::new(
            CLIENT_SECRET_INVALID,
            "The client secret is not valid for this app",
            "The secret was mistyped, belongs to another app, or the secret's ID was pasted \
             instead of its value",
            format!(
                "In {app} → Certificates & secrets → Client secrets, create a new secret and \
                 copy its Value column (not the Secret ID) into the Client secret field"
            ),
            Retry::Permanent,
        ),
        7000222 => Diagnosis::new(
            CLIENT_SECRET_EXPIRED,
            "The app's client secret has expired: no mail can be sent until it is replaced",
            "Entra client secrets expire (at most 24 months); the user's sign-in is still fine",
            format!(
                "In {app} → Certificates & secrets → Client secrets, create a new secret, then \
                 use \"Replace client secret\" in mailgrant and paste its Value; no new browser \
                 sign-in is needed"
            ),
            Retry::Permanent,
        ),
        700016 => Diagnosis::new(
            APP_NOT_FOUND_IN_TENANT,
            format!("No app with client ID {client_id} exists in this tenant"),
            "The Application (client) ID is mistyped, the app was deleted, or it is registered \
             in another tenant than the one entered (or signed in to)",
            "Copy the Application (client) ID and the Directory (tenant) ID again from the app \
             registration's Overview page; sign in with an account of that tenant",
            Retry::Permanent,
        ),
        90002 | 900023 => Diagnosis::new(
            TENANT_NOT_FOUND,
            format!("The tenant \"{}\" does not exist", tenant(profile)),
            "The tenant field holds a mistyped ID or a domain that is not verified in any Entra \
             tenant",
            "Copy the Directory (tenant) ID from the app registration's Overview page into the \
             tenant field",
            Retry::Permanent,
        ),
        7000112 => Diagnosis::new(
            APP_DISABLED,
            "The app is disabled in this tenant",
            "An administrator switched off sign-in for this application",
            format!(
                "In the Entra admin center → Enterprise applications → the app ({client_id}) → \
                 Properties, set \"Enabled for users to sign-in?\" to Yes"
            ),
            Retry::Permanent,
        ),
        50105 => Diagnosis::new(
            USER_NOT_ASSIGNED,
            "This account is not assigned to the app",
            "The app requires user assignment and the signed-in account is not on its list",
            format!(
                "In the Entra admin center → Enterprise applications → the app ({client_id}) → \
                 Users and groups → Add user/group, add the mailbox account"
            ),
            Retry::Permanent,
        ),
        50020 | 50034 | 90072 => Diagnosis::new(
            ACCOUNT_FROM_OTHER_TENANT,
            "The account used to sign in does not belong to this tenant",
            "The browser signed in with an account from another organization, or a personal \
             Microsoft account, while the app only accepts accounts of its own tenant",
            format!(
                "Sign in again and pick the account {} in the account picker (use a private \
                 window if the browser keeps choosing another account)",
                profile.mailbox
            ),
            Retry::Permanent,
        ),
        700082 | 70008 | 70043 | 50173 | 700084 => refresh_expired(code, step),
        54005 => Diagnosis::new(
            CODE_ALREADY_REDEEMED,
            "The sign-in code was already used",
            "A sign-in code works once; this one had been redeemed before (an answer page \
             reloaded, or a second program received the same redirect)",
            "Start the sign-in again",
            Retry::Transient,
        ),
        501481 => Diagnosis::new(
            CODE_VERIFIER_MISMATCH,
            "The sign-in code does not match this sign-in attempt",
            "The PKCE code verifier sent with the code does not match the challenge of the \
             sign-in that produced it, usually because the browser finished an older attempt",
            "Close old sign-in tabs and start the sign-in again",
            Retry::Transient,
        ),
        28000 | 28003 | 70011 | 650053 => Diagnosis::new(
            INVALID_SCOPE,
            "The requested scopes are not valid",
            "A scope is misspelled, does not exist, or scopes of two resources are mixed (for \
             example Microsoft Graph's User.Read with Exchange's IMAP scope, AADSTS28000)",
            format!(
                "Request only https://outlook.office.com/IMAP.AccessAsUser.All \
                 https://outlook.office.com/SMTP.Send offline_access openid profile email (now: \
                 {}), then sign in again",
                profile.scope_string()
            ),
            Retry::Permanent,
        ),
        50076 | 50079 | 50074 | 50158 => Diagnosis::new(
            MFA_REQUIRED,
            "The sign-in needs multi-factor authentication or another security check",
            "A Conditional Access policy or security default asks for MFA (or an external \
             check) that a stored sign-in cannot answer",
            "Sign in again in the browser and complete the check. If the service keeps \
             failing this way, ask the admin to review the Conditional Access policies that \
             apply to the mailbox account (sign-in frequency, MFA for this app)",
            Retry::Permanent,
        ),
        53003 | 53000 | 53001 | 530032 => Diagnosis::new(
            CONDITIONAL_ACCESS_BLOCKED,
            "A Conditional Access policy blocked the sign-in",
            "The tenant's policies do not allow this account to sign in to this app from this \
             device or location",
            "Ask the admin to look up the sign-in in Entra admin center → Monitoring → Sign-in \
             logs (use the trace id below) and allow this app and device for the mailbox \
             account",
            Retry::Permanent,
        ),
        700024 | 500133 => Diagnosis::new(
            CLOCK_SKEW,
            "The sign-in was refused because of a time difference",
            "This computer's clock is off, so a time-limited credential looked expired or not \
             yet valid",
            "Set this computer's clock to synchronise automatically (Windows: Settings → Time & \
             language → Set time automatically), then sign in again",
            Retry::Permanent,
        ),
        _ => return None,
    };
    Some(d)
}

/// AADSTS numbers with their own diagnosis.
const KNOWN_AADSTS: &[u32] = &[
    50011, 500113, 900971, 50194, 90095, 90094, 65001, 65004, 7000218, 700025, 7000215, 7000222,
    700016, 90002, 900023, 7000112, 50105, 50020, 50034, 90072, 700082, 70008, 70043, 50173,
    700084, 54005, 501481, 28000, 28003, 70011, 650053, 50076, 50079, 50074, 50158, 53003, 53000,
    53001, 530032, 700024, 500133,
];

fn refresh_expired(code: u32, step: Step) -> Diagnosis {
    let cause = match code {
        700082 => "The refresh token expired after a long time unused (90 days for Entra)",
        70043 => "A Conditional Access sign-in frequency policy ended the stored sign-in",
        50173 => "The sign-in was revoked, often because the account's password was changed",
        70008 if step != Step::Refresh => "The sign-in code expired before it was redeemed",
        _ => "The stored sign-in expired or was revoked (password change, admin revocation)",
    };
    Diagnosis::new(
        REFRESH_TOKEN_EXPIRED,
        "The stored sign-in is no longer valid: the service cannot get new access tokens",
        cause,
        "Use \"Sign in again…\" as the mailbox account; the new sign-in replaces the old one",
        Retry::Permanent,
    )
}

fn by_error_code(
    error: &ProviderError,
    status: Option<u16>,
    profile: &Profile,
    step: Step,
    refresh_token_age: Option<Duration>,
) -> Option<Diagnosis> {
    let client_id = profile.client_id.as_str();
    let d = match error.error.as_str() {
        "temporarily_unavailable" | "server_error" => unavailable(status),
        _ if status.is_some_and(|s| s == 429 || s >= 500) => unavailable(status),
        "invalid_grant" if step == Step::Refresh => {
            if is_google(profile) {
                google_invalid_grant(refresh_token_age)
            } else {
                refresh_expired(0, step)
            }
        }
        "invalid_grant" => Diagnosis::new(
            CODE_ALREADY_REDEEMED,
            "The sign-in code was refused",
            "The code expired, was already used, or does not match this attempt's redirect URI \
             or PKCE verifier",
            "Start the sign-in again",
            Retry::Transient,
        ),
        "invalid_request" | "invalid_client" if secret_missing(error) => Diagnosis::new(
            CLIENT_SECRET_REQUIRED,
            "The provider requires a client secret for this client",
            "The client is registered as confidential (Google: every OAuth client, desktop \
             ones included, has a secret), and no secret was sent",
            "Enter the client's secret in the registration step (Google: APIs & Services → \
             Credentials → the OAuth client → Client secret), then sign in again",
            Retry::Permanent,
        ),
        "invalid_client" => Diagnosis::new(
            CLIENT_INVALID,
            "The provider does not accept this client ID or client secret",
            "The client ID is mistyped or deleted, or the client secret is wrong or missing",
            format!(
                "Check the client ID ({client_id}) and client secret against the provider's \
                 console (Google: APIs & Services → Credentials → the OAuth client)"
            ),
            Retry::Permanent,
        ),
        "unauthorized_client" => Diagnosis::new(
            UNAUTHORIZED_CLIENT,
            "This client is not allowed to sign in this way",
            "The app registration does not allow the authorization code flow for this client \
             type, or the client was disabled",
            "Register the client as a desktop (installed) app with the redirect URI \
             http://localhost, or create a new client of that type",
            Retry::Permanent,
        ),
        "admin_policy_enforced" => Diagnosis::new(
            ADMIN_POLICY_ENFORCED,
            "The organization's administrator blocks this app",
            "A Google Workspace policy restricts which third-party apps may access the account",
            format!(
                "Ask the Workspace admin to trust the app: Admin console → Security → Access \
                 and data control → API controls → Manage third-party app access → add client \
                 ID {client_id} as Trusted"
            ),
            Retry::Permanent,
        ),
        "invalid_scope" => Diagnosis::new(
            INVALID_SCOPE,
            "The requested scopes are not valid",
            "A scope is misspelled, not enabled for this client, or not allowed together with \
             the others",
            format!(
                "Check the Scopes field (now: {}) against the provider's documentation",
                profile.scope_string()
            ),
            Retry::Permanent,
        ),
        "consent_required" => Diagnosis::new(
            ADMIN_CONSENT_REQUIRED,
            "Consent is needed before this app may access the mailbox",
            "Nobody has approved the app's permissions for this account",
            "Sign in again and accept the permissions; if an approval page says an \
             administrator must approve, ask the administrator to grant consent for the app",
            Retry::Permanent,
        ),
        "interaction_required" | "login_required" => Diagnosis::new(
            MFA_REQUIRED,
            "The provider wants the account to sign in again interactively",
            "A security policy or a changed password requires a fresh sign-in in the browser",
            "Use \"Sign in again…\" and complete every prompt",
            Retry::Permanent,
        ),
        "access_denied" => Diagnosis::new(
            SIGN_IN_ACCESS_DENIED,
            "The sign-in was declined",
            "Someone chose Cancel on the sign-in or permissions page, or the organization does \
             not allow this app",
            "Sign in again and accept the permissions; if an approval page appears, an \
             administrator has to approve the app first",
            Retry::Permanent,
        ),
        _ => return None,
    };
    Some(d)
}

/// True when a provider without AADSTS numbers says the secret is missing (Google:
/// "client_secret is missing.").
fn secret_missing(error: &ProviderError) -> bool {
    let text = error.short_description().unwrap_or_default().to_ascii_lowercase();
    text.contains("client_secret is missing") || text.contains("client secret is missing")
}

fn unavailable(status: Option<u16>) -> Diagnosis {
    let what = status.map(|s| format!(" (HTTP {s})")).unwrap_or_default();
    Diagnosis::new(
        PROVIDER_UNAVAILABLE,
        format!("The sign-in service is temporarily unavailable{what}"),
        "The provider is overloaded, throttling requests, or having an outage",
        "Wait a few minutes and try again; the service retries by itself",
        Retry::Transient,
    )
}

fn google_invalid_grant(refresh_token_age: Option<Duration>) -> Diagnosis {
    let near_seven_days = refresh_token_age.is_some_and(|age| {
        age >= GOOGLE_TESTING_LIFETIME - Duration::from_secs(3600)
            && age <= GOOGLE_TESTING_LIFETIME + Duration::from_secs(2 * 24 * 3600)
    });
    let fix = "In Google Cloud console → APIs & Services → OAuth consent screen, set the \
               publishing status to \"In production\", then use \"Sign in again…\"";
    if near_seven_days {
        Diagnosis::new(
            GOOGLE_TESTING_APP_EXPIRED,
            "Google ended the stored sign-in after 7 days: the app is probably in \"Testing\"",
            "Google's refresh tokens for apps whose OAuth consent screen is in \"Testing\" \
             expire after 7 days. A revoked grant or a changed password also causes this",
            fix,
            Retry::Permanent,
        )
    } else {
        Diagnosis::new(
            REFRESH_TOKEN_EXPIRED,
            "Google no longer accepts the stored sign-in",
            "The grant was revoked, the password changed, or the app is in \"Testing\" (those \
             refresh tokens expire after 7 days)",
            format!("Use \"Sign in again…\". If it keeps happening every week: {fix}"),
            Retry::Permanent,
        )
    }
}

fn generic(error: &ProviderError, status: Option<u16>, step: Step) -> Diagnosis {
    let said = error.short_description().unwrap_or(error.error.as_str()).to_owned();
    match step {
        Step::Authorize => Diagnosis::new(
            SIGN_IN_REFUSED,
            format!("The sign-in page refused the sign-in: {}", error.error),
            format!("The provider said: {said}"),
            "Check the registration step's settings against the provider's app registration, \
             then sign in again; the details below help the provider's support",
            Retry::Permanent,
        ),
        Step::Code | Step::Refresh => Diagnosis::new(
            TOKEN_REQUEST_REJECTED,
            format!(
                "The token endpoint refused the request{}: {}",
                status.map(|s| format!(" (HTTP {s})")).unwrap_or_default(),
                error.error
            ),
            format!("The provider said: {said}"),
            "Check the client ID, secret and tenant against the app registration, then sign \
             in again; the details below help the provider's support",
            Retry::Permanent,
        ),
    }
}

/// `HTTPS (port 443)`, `HTTP (port 8080)`: the Token URL's own scheme and port.
fn scheme_and_port(profile: &Profile) -> (String, String) {
    let url = profile.token_url.url();
    let scheme = url.scheme().to_ascii_uppercase();
    let port = url.port_or_known_default().map_or_else(String::new, |p| format!(" (port {p})"));
    (scheme.clone(), format!("{scheme}{port}"))
}

fn transport(kind: &TransportKind, host: &str, profile: &Profile) -> Diagnosis {
    let proxy_hint = "If this network needs a web proxy, set HTTPS_PROXY for mailgrant and the \
                      service";
    let (scheme, scheme_port) = scheme_and_port(profile);
    match kind {
        TransportKind::Dns => Diagnosis::new(
            TOKEN_ENDPOINT_DNS,
            format!("The sign-in server's name {host} cannot be found"),
            "This computer has no working DNS or network connection, the Token URL is \
             mistyped, or the network only allows access through a proxy",
            format!("Check the network connection and the Token URL. {proxy_hint}"),
            Retry::Transient,
        ),
        TransportKind::ConnectionRefused => Diagnosis::new(
            TOKEN_ENDPOINT_REFUSED,
            format!("The connection to the sign-in server {host} was refused"),
            "Nothing answers at that address and port, or a firewall rejects the connection",
            format!(
                "Check the Token URL's host and port, and ask IT to allow outbound \
                 {scheme_port} to {host}. {proxy_hint}"
            ),
            Retry::Transient,
        ),
        TransportKind::ConnectionReset => Diagnosis::new(
            TOKEN_ENDPOINT_RESET,
            format!("The connection to the sign-in server {host} was closed before it answered"),
            "A firewall or proxy cut the connection, or the network dropped",
            format!("Try again; if it persists, ask IT whether {scheme} to {host} is filtered"),
            Retry::Transient,
        ),
        TransportKind::Timeout => Diagnosis::new(
            TOKEN_ENDPOINT_TIMEOUT,
            format!(
                "The sign-in server {host} did not answer within {} s",
                profile.timeout.as_secs()
            ),
            "A firewall silently drops the connection, the network is very slow, or a proxy is \
             required",
            format!(
                "Ask IT to allow outbound {scheme_port} to {host}, or raise the timeout. \
                 {proxy_hint}"
            ),
            Retry::Transient,
        ),
        TransportKind::Certificate(CertificateProblem::UnknownIssuer) => {
            let fix = match &profile.extra_ca_file {
                Some(path) => format!(
                    "The extra CA certificate file {} does not hold the CA that signed this \
                     certificate: export the proxy's root CA (PEM) from IT and choose that file",
                    path.display()
                ),
                None => "Ask IT for the TLS-inspection proxy's root CA certificate (PEM) and \
                         choose it in the \"Extra CA certificate file\" setting; do not switch \
                         certificate checks off"
                    .to_owned(),
            };
            Diagnosis::new(
                TOKEN_ENDPOINT_TLS_UNTRUSTED,
                format!("The certificate of {host} is not trusted by this computer"),
                "It was issued by an unknown authority: most likely a TLS-inspecting proxy or \
                 firewall replaces the server's certificate with its own",
                fix,
                Retry::Permanent,
            )
        }
        TransportKind::Certificate(CertificateProblem::Expired) => Diagnosis::new(
            TOKEN_ENDPOINT_TLS_EXPIRED,
            format!("The certificate of {host} has expired"),
            "The server (or a proxy in between) presents an expired certificate, or this \
             computer's clock is far ahead",
            "Check this computer's date and time; if it is right, tell IT that the proxy or \
             server certificate has expired",
            Retry::Permanent,
        ),
        TransportKind::Certificate(CertificateProblem::NotValidYet) => Diagnosis::new(
            TOKEN_ENDPOINT_TLS_NOT_YET_VALID,
            format!("The certificate of {host} is not valid yet"),
            "This computer's clock is behind",
            "Set this computer's clock to synchronise automatically, then try again",
            Retry::Permanent,
        ),
        TransportKind::Certificate(CertificateProblem::WrongHostName) => Diagnosis::new(
            TOKEN_ENDPOINT_TLS_WRONG_HOST,
            format!("The certificate presented for {host} belongs to another host name"),
            "The Token URL uses a host name the server's certificate does not cover, or a proxy \
             answers with its own certificate",
            "Use the exact host name from the provider's documentation in the Token URL",
            Retry::Permanent,
        ),
        TransportKind::Certificate(_) | TransportKind::TlsHandshake => Diagnosis::new(
            TOKEN_ENDPOINT_TLS_FAILED,
            format!("A secure connection to {host} could not be set up"),
            "The server's certificate was refused or the TLS handshake failed (an old TLS \
             version, a proxy, or a Token URL that is not HTTPS on that port)",
            "Check the Token URL; if it is right, send the support bundle to IT",
            Retry::Permanent,
        ),
        TransportKind::Proxy => Diagnosis::new(
            TOKEN_ENDPOINT_PROXY,
            "The web proxy refused or failed the connection to the sign-in server",
            "A web proxy answered instead of the provider: the proxy set in HTTPS_PROXY / \
             HTTP_PROXY is wrong, needs a login (HTTP 407), or blocks the provider",
            format!(
                "Set HTTPS_PROXY for mailgrant and the service to the proxy IT names, with its \
                 login when it asks for one (http://user:password@proxy:port), or ask IT to \
                 allow {host} through the proxy"
            ),
            Retry::Permanent,
        ),
        TransportKind::Oversized => Diagnosis::new(
            TOKEN_ENDPOINT_ANSWER_TOO_LARGE,
            format!(
                "The answer from {host} is far larger than any token answer (over {} KB); it \
                 was not read",
                crate::oauth::http::MAX_ANSWER_BYTES / 1024
            ),
            "What answers at the Token URL is not the provider's token endpoint: a download, a \
             proxy or portal page, or another service on that address and port. Trying again \
             gets the same answer",
            format!(
                "Check the Token URL ({}): copy the token endpoint from the provider's \
                 documentation; if it is right, ask IT whether a proxy answers in its place",
                profile.token_url.as_str()
            ),
            Retry::Permanent,
        ),
        TransportKind::Other => Diagnosis::new(
            TOKEN_ENDPOINT_NETWORK,
            format!("The request to the sign-in server {host} failed"),
            "The connection broke off, or what answers at that address and port is not a web \
             server (a wrong port in the Token URL, or a device in between)",
            format!(
                "Check that the Token URL ({}) is the provider's token endpoint, host and port \
                 included; if it is, check the network connection and try again",
                profile.token_url.as_str()
            ),
            Retry::Transient,
        ),
    }
}

/// The loopback listener could not be opened; the words depend on why.
fn listener_failed(address: &str, source: &std::io::Error) -> Diagnosis {
    use std::io::ErrorKind;

    let summary = "mailgrant cannot listen for the browser's answer on this computer";
    let (cause, fix, retry) = match source.kind() {
        ErrorKind::AddrInUse => (
            "Other programs hold every loopback port mailgrant tried (on ::1, where a browser \
             may send the answer)",
            "Press \"Sign in with the browser…\" again; if it keeps failing, close programs \
             that open many local ports (development servers, proxies) and try again",
            Retry::Transient,
        ),
        ErrorKind::PermissionDenied => (
            "Opening a local port on the loopback address was refused; a security product or a \
             policy blocks local listening sockets",
            "Allow mailgrant to listen on 127.0.0.1 (loopback only) in the security software, \
             or ask IT to",
            Retry::Permanent,
        ),
        _ => (
            "The operating system refused a local listening socket (for example too many open \
             files, or no loopback interface)",
            "Close other programs and try again; if it persists, ask IT to check that the \
             loopback interface (127.0.0.1) is up and that mailgrant may open local ports",
            Retry::Transient,
        ),
    };
    Diagnosis::new(SIGN_IN_LISTENER_FAILED, summary, cause, fix, retry)
        .with_detail(format!("{address}: {source}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::ProfileForm;

    fn profile() -> Profile {
        let form = ProfileForm {
            tenant: "contoso.onmicrosoft.com".into(),
            client_id: "00000000-0000-0000-0000-000000000001".into(),
            mailbox: "alarms@example.com".into(),
            ..ProfileForm::default()
        };
        form.validate().expect("valid").0
    }

    #[test]
    fn a_listener_failure_is_explained_by_its_kind() {
        use std::io::{Error, ErrorKind};

        let listener = |kind| {
            let error =
                SignInError::Listener { address: "[::1]:49152".into(), source: Error::from(kind) };
            sign_in(&error, &profile())
        };
        let busy = listener(ErrorKind::AddrInUse);
        assert_eq!(busy.id, SIGN_IN_LISTENER_FAILED);
        assert!(busy.cause.contains("::1"), "{}", busy.cause);
        assert!(busy.fix.contains("again"), "{}", busy.fix);
        assert_eq!(busy.retry, Retry::Transient);

        let blocked = listener(ErrorKind::PermissionDenied);
        assert!(blocked.cause.contains("security product"), "{}", blocked.cause);
        assert!(blocked.fix.contains("127.0.0.1"), "{}", blocked.fix);
        assert_eq!(blocked.retry, Retry::Permanent);

        let other = listener(ErrorKind::Other);
        assert!(other.fix.contains("loopback interface"), "{}", other.fix);
        assert!(other.details.join(" ").contains("[::1]:49152"), "{:?}", other.details);
    }

    fn callback(error: &str, description: &str) -> SignInError {
        SignInError::Callback(CallbackError(Box::new(ProviderError::from_parts(
            error,
            Some(description.to_owned()),
            None,
        ))))
    }

    fn provider(status: u16, error: &str, description: &str) -> TokenError {
        TokenError::Provider {
            status,
            error: Box::new(ProviderError::from_parts(error, Some(description.to_owned()), None)),
            retry_after: None,
        }
    }

    #[test]
    fn br04_consent_walls_name_the_admin_consent_url_and_the_portal_path() {
        for (error, text) in [
            ("access_denied", "AADSTS90095: Admin consent is required for the permissions."),
            ("consent_required", "AADSTS65001: The user or administrator has not consented."),
        ] {
            let d = sign_in(&callback(error, text), &profile());
            assert_eq!(d.id, ADMIN_CONSENT_REQUIRED, "{error}");
            assert_eq!(d.summary, "An administrator must approve this app for your organization");
            assert!(d.fix.contains(
                "https://login.microsoftonline.com/contoso.onmicrosoft.com/adminconsent?\
                 client_id=00000000-0000-0000-0000-000000000001"
            ));
            assert!(d.fix.contains("Enterprise applications"));
            assert!(d.fix.contains("Grant admin consent"));
            assert_eq!(d.retry, Retry::Permanent);
        }
    }

    #[test]
    fn br03_single_tenant_app_on_common_says_to_use_the_tenant_id() {
        let d = sign_in(
            &callback("invalid_request", "AADSTS50194: Application is not multi-tenant."),
            &profile(),
        );
        assert_eq!(d.id, SINGLE_TENANT_APP_ON_COMMON);
        assert!(d.summary.contains("only accepts accounts from one organization"));
        assert!(d.fix.contains("Directory (tenant) ID"));
    }

    #[test]
    fn br02_timeout_repeats_the_uri_and_names_the_likely_causes() {
        let e = SignInError::TimedOut {
            redirect_uri: "http://localhost:53682/".into(),
            waited: Duration::from_secs(300),
        };
        let d = sign_in(&e, &profile());
        assert_eq!(d.id, SIGN_IN_TIMEOUT);
        assert!(d.summary.contains("5 min"));
        assert!(d.cause.contains("AADSTS50011"));
        assert!(d.cause.contains("consent"));
        assert!(d.cause.contains("another program"));
        assert!(d.fix.contains("http://localhost:53682/"));
        assert!(d.fix.contains("Mobile and desktop applications"));
    }

    #[test]
    fn redirect_mismatch_names_the_uri_and_platform_and_warns_about_borrowed_ids() {
        let d = token(&provider(400, "invalid_request", "AADSTS50011: no match"), &profile());
        assert_eq!(d.id, REDIRECT_URI_MISMATCH);
        assert!(d.fix.contains("Mobile and desktop applications"));
        assert!(d.fix.contains("exactly http://localhost (no port"));
        assert!(d.cause.contains("borrowed"));
    }

    #[test]
    fn client_type_and_secret_errors_each_name_their_fix() {
        let cases = [
            (7000218, CLIENT_SECRET_REQUIRED, "add http://localhost under Mobile and desktop"),
            (700025, CLIENT_IS_PUBLIC, "Clear the Client secret field"),
            (7000215, CLIENT_SECRET_INVALID, "not the Secret ID"),
            (7000222, CLIENT_SECRET_EXPIRED, "Replace client secret"),
            (700016, APP_NOT_FOUND_IN_TENANT, "Overview page"),
            (90002, TENANT_NOT_FOUND, "Directory (tenant) ID"),
            (54005, CODE_ALREADY_REDEEMED, "sign-in again"),
            (501481, CODE_VERIFIER_MISMATCH, "sign-in again"),
            (28000, INVALID_SCOPE, "https://outlook.office.com/SMTP.Send"),
            (70011, INVALID_SCOPE, "offline_access"),
            (50020, ACCOUNT_FROM_OTHER_TENANT, "alarms@example.com"),
            (50076, MFA_REQUIRED, "Conditional Access"),
            (53003, CONDITIONAL_ACCESS_BLOCKED, "Sign-in logs"),
            (50158, MFA_REQUIRED, "complete the check"),
            (700082, REFRESH_TOKEN_EXPIRED, "Sign in again"),
            (70008, REFRESH_TOKEN_EXPIRED, "Sign in again"),
        ];
        for (code, id, fix) in cases {
            let e = provider(400, "invalid_grant", &format!("AADSTS{code}: something."));
            let d = sign_in(&SignInError::Token(e), &profile());
            assert_eq!(d.id, id, "AADSTS{code}");
            assert!(d.fix.to_lowercase().contains(&fix.to_lowercase()), "AADSTS{code}: {}", d.fix);
            assert!(IDS.contains(&d.id));
        }
    }

    #[test]
    fn a_sign_in_timeout_with_another_provider_speaks_its_language() {
        let form = ProfileForm {
            provider: ProviderKind::Custom,
            client_id: "mailgrant-alarms".into(),
            authorize_url: "https://sso.example.com/authorize".into(),
            token_url: "https://sso.example.com/token".into(),
            scopes: "mail offline_access".into(),
            mailbox: "alarms@example.com".into(),
            smtp_host: "smtp.example.com".into(),
            imap_host: "imap.example.com".into(),
            ..ProfileForm::for_provider(ProviderKind::Custom)
        };
        let custom = form.validate().expect("valid").0;
        let e = SignInError::TimedOut {
            redirect_uri: "http://localhost:53682/".into(),
            waited: Duration::from_secs(300),
        };
        let d = sign_in(&e, &custom);
        assert!(!d.cause.contains("AADSTS"), "{}", d.cause);
        assert!(d.cause.contains("redirect_uri_mismatch"), "{}", d.cause);
        assert!(!d.fix.contains("Mobile and desktop"), "{}", d.fix);
        assert!(d.fix.contains("http://localhost:53682/"), "{}", d.fix);
    }

    #[test]
    fn br15_google_invalid_grant_after_seven_days_points_at_testing() {
        let form = ProfileForm {
            provider: ProviderKind::Custom,
            client_id: "00000000-0000-0000-0000-000000000001".into(),
            authorize_url: "https://accounts.google.com/o/oauth2/v2/auth".into(),
            token_url: "https://oauth2.googleapis.com/token".into(),
            scopes: "https://mail.google.com/".into(),
            mailbox: "alarms@example.com".into(),
            smtp_host: "smtp.gmail.com".into(),
            imap_host: "imap.gmail.com".into(),
            ..ProfileForm::for_provider(ProviderKind::Custom)
        };
        let google = form.validate().expect("valid").0;
        let e = provider(400, "invalid_grant", "Token has been expired or revoked.");
        let week = Duration::from_secs(7 * 24 * 3600 + 60);
        let d = token_with_refresh_age(&e, &google, Some(week));
        assert_eq!(d.id, GOOGLE_TESTING_APP_EXPIRED);
        assert!(d.fix.contains("In production"));
        assert!(d.cause.contains("password"));
        let d = token_with_refresh_age(&e, &google, Some(Duration::from_secs(3600)));
        assert_eq!(d.id, REFRESH_TOKEN_EXPIRED);
        assert!(d.cause.contains("Testing"));
    }

    #[test]
    fn br15_google_is_recognised_by_its_scope_on_any_token_url() {
        let form = ProfileForm {
            provider: ProviderKind::Custom,
            client_id: "00000000-0000-0000-0000-000000000001".into(),
            authorize_url: "http://127.0.0.1:9/o/oauth2/v2/auth".into(),
            token_url: "http://127.0.0.1:9/token".into(),
            scopes: "https://mail.google.com/".into(),
            mailbox: "alarms@example.com".into(),
            smtp_host: "127.0.0.1".into(),
            imap_host: "127.0.0.1".into(),
            ..ProfileForm::for_provider(ProviderKind::Custom)
        };
        let google = form.validate().expect("valid").0;
        let e = provider(400, "invalid_grant", "Token has been expired or revoked.");
        let week = Duration::from_secs(7 * 24 * 3600 + 60);
        assert_eq!(token_with_refresh_age(&e, &google, Some(week)).id, GOOGLE_TESTING_APP_EXPIRED);
        let e = provider(400, "invalid_request", "client_secret is missing.");
        assert_eq!(token(&e, &google).id, CLIENT_SECRET_REQUIRED);
    }

    #[test]
    fn br04_admin_consent_url_follows_the_sign_in_host_and_tenant_of_entra_shaped_urls() {
        let form = ProfileForm {
            provider: ProviderKind::Custom,
            client_id: "00000000-0000-0000-0000-000000000001".into(),
            authorize_url: "https://login.microsoftonline.us/contoso.us/oauth2/v2.0/authorize"
                .into(),
            token_url: "https://login.microsoftonline.us/contoso.us/oauth2/v2.0/token".into(),
            scopes: "offline_access".into(),
            mailbox: "alarms@example.com".into(),
            smtp_host: "127.0.0.1".into(),
            imap_host: "127.0.0.1".into(),
            ..ProfileForm::for_provider(ProviderKind::Custom)
        };
        let gov = form.validate().expect("valid").0;
        assert_eq!(
            admin_consent_url(&gov),
            "https://login.microsoftonline.us/contoso.us/adminconsent?\
             client_id=00000000-0000-0000-0000-000000000001"
        );
        assert!(is_microsoft(&gov));
        let d = sign_in(
            &callback("invalid_request", "AADSTS50194: Application is not multi-tenant."),
            &gov,
        );
        assert!(d.fix.contains("Authorize URL and the Token URL"), "{}", d.fix);
    }

    #[test]
    fn transport_failures_are_told_apart_and_marked() {
        let host = "login.microsoftonline.com".to_owned();
        let at = |kind| TokenError::Transport { host: host.clone(), kind, detail: "d".into() };
        let untrusted =
            token(&at(TransportKind::Certificate(CertificateProblem::UnknownIssuer)), &profile());
        assert_eq!(untrusted.id, TOKEN_ENDPOINT_TLS_UNTRUSTED);
        assert!(untrusted.cause.contains("TLS-inspecting proxy"));
        assert!(untrusted.fix.contains("Extra CA certificate file"));
        assert_eq!(untrusted.retry, Retry::Permanent);
        let expired =
            token(&at(TransportKind::Certificate(CertificateProblem::Expired)), &profile());
        assert_eq!(expired.id, TOKEN_ENDPOINT_TLS_EXPIRED);
        for (kind, id) in [
            (TransportKind::ConnectionRefused, TOKEN_ENDPOINT_REFUSED),
            (TransportKind::Timeout, TOKEN_ENDPOINT_TIMEOUT),
            (TransportKind::Dns, TOKEN_ENDPOINT_DNS),
        ] {
            let d = token(&at(kind), &profile());
            assert_eq!(d.id, id);
            assert_eq!(d.retry, Retry::Transient);
        }
    }

    #[test]
    fn callback_access_denied_without_a_code_is_a_declined_sign_in() {
        let d = sign_in(&callback("access_denied", "The user has cancelled."), &profile());
        assert_eq!(d.id, SIGN_IN_ACCESS_DENIED);
        let d = sign_in(&callback("weird_error", "Something odd."), &profile());
        assert_eq!(d.id, SIGN_IN_REFUSED);
        assert!(d.cause.contains("Something odd."));
    }

    #[test]
    fn ids_are_unique_and_kebab_case() {
        let mut seen = std::collections::HashSet::new();
        for id in IDS {
            assert!(seen.insert(id), "duplicate {id}");
            assert!(id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
        }
    }
}
