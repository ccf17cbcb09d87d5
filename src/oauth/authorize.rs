//! The authorize URL: authorization code flow with PKCE S256, a fresh random `state`, the
//! mailbox as `login_hint`, the account picker, and the profile's scopes exactly.
//!
//! `prompt=select_account` is sent and `prompt=consent` never is: in tenants where users may
//! not consent, a forced consent prompt turns into an admin-approval wall even after an admin
//! approved the app (BR-04). A configured authorize URL pasted from a guide may already carry
//! such parameters (`?prompt=consent`); every parameter mailgrant sets itself is dropped from
//! it first, so nothing typed can force consent or send a second, conflicting value. The
//! redirect URI is `http://localhost:<port>/`, the form Entra accepts for a registered
//! `http://localhost` with any port (BR-01).

use oauth2::basic::BasicClient;
use oauth2::{AuthUrl, CsrfToken, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl};

use super::error::SignInError;
use crate::profile::Profile;

/// One authorize request's URL and the secrets that belong only to it.
pub struct AuthorizeRequest {
    /// The URL to open in the browser.
    pub url: String,
    /// The redirect URI it names, which the code redemption must repeat.
    pub redirect_uri: RedirectUrl,
    /// The `state` sent; a callback must return exactly this.
    pub state: CsrfToken,
    /// The PKCE verifier for the code redemption.
    pub verifier: PkceCodeVerifier,
}

impl std::fmt::Debug for AuthorizeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL carries only public values (the challenge and state are not secrets once
        // sent), but state is kept out anyway to keep logs free of anything replayable.
        f.debug_struct("AuthorizeRequest")
            .field("redirect_uri", &self.redirect_uri.as_str())
            .finish_non_exhaustive()
    }
}

/// Query parameters mailgrant sets itself; copies in the configured authorize URL are dropped.
const OWN_PARAMETERS: [&str; 10] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "login_hint",
    "prompt",
    "response_mode",
];

/// The configured authorize URL without the parameters mailgrant sets itself (BR-04: a pasted
/// `prompt=consent` must not reach the provider). Other parameters (such as `domain_hint`) stay.
fn without_own_parameters(configured: &AuthUrl) -> AuthUrl {
    let mut url = configured.url().clone();
    let pairs: Vec<(String, String)> =
        url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let (dropped, kept): (Vec<_>, Vec<_>) =
        pairs.into_iter().partition(|(k, _)| OWN_PARAMETERS.contains(&k.as_str()));
    if dropped.is_empty() {
        return configured.clone();
    }
    let names: Vec<&str> = dropped.iter().map(|(k, _)| k.as_str()).collect();
    tracing::debug!(?names, "parameters in the configured authorize URL replaced by our own");
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    AuthUrl::from_url(url)
}

/// The redirect URI for a loopback listener on `port`.
pub fn loopback_redirect_uri(port: u16) -> String {
    format!("http://localhost:{port}/")
}

/// Builds a fresh authorize request for `profile`, redirecting to `localhost:<port>`.
pub fn build(profile: &Profile, port: u16) -> Result<AuthorizeRequest, SignInError> {
    let redirect_uri = RedirectUrl::new(loopback_redirect_uri(port))
        .map_err(|e| SignInError::AuthorizeUrl(format!("bad redirect URI: {e}")))?;
    let client = BasicClient::new(profile.client_id.clone())
        .set_auth_uri(without_own_parameters(&profile.authorize_url))
        .set_redirect_uri(redirect_uri.clone());

    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state) = client
        .authorize_url(CsrfToken::new_random)
        .add_scopes(profile.scopes.iter().cloned())
        .set_pkce_challenge(challenge)
        .add_extra_param("login_hint", profile.mailbox.clone())
        .add_extra_param("prompt", "select_account")
        .url();

    Ok(AuthorizeRequest { url: url.to_string(), redirect_uri, state, verifier })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::ProfileForm;

    pub(crate) fn profile() -> Profile {
        let form = ProfileForm {
            tenant: "contoso.onmicrosoft.com".into(),
            client_id: "00000000-0000-0000-0000-000000000001".into(),
            mailbox: "alarms@example.com".into(),
            ..ProfileForm::default()
        };
        form.validate().expect("valid form").0
    }

    fn query(url: &str) -> Vec<(String, String)> {
        let url = url::Url::parse(url).expect("url");
        url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
    }

    fn values<'a>(pairs: &'a [(String, String)], key: &str) -> Vec<&'a str> {
        pairs.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }

    #[test]
    fn br04_authorize_url_has_pkce_hint_and_account_picker_but_never_consent() {
        let request = build(&profile(), 53682).expect("builds");
        let pairs = query(&request.url);

        assert!(request.url.starts_with(
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize?"
        ));
        assert_eq!(values(&pairs, "response_type"), ["code"]);
        assert_eq!(values(&pairs, "client_id"), ["00000000-0000-0000-0000-000000000001"]);
        assert_eq!(values(&pairs, "code_challenge_method"), ["S256"]);
        assert_eq!(values(&pairs, "code_challenge")[0].len(), 43);
        assert_eq!(values(&pairs, "prompt"), ["select_account"]);
        assert!(!request.url.contains("prompt=consent"));
        assert!(request.url.contains("login_hint=alarms%40example.com"), "{}", request.url);
        assert_eq!(values(&pairs, "redirect_uri"), ["http://localhost:53682/"]);
        assert!(request.url.contains("redirect_uri=http%3A%2F%2Flocalhost%3A53682%2F"));
        assert_eq!(values(&pairs, "state"), [request.state.secret().as_str()]);
        assert_eq!(
            values(&pairs, "scope"),
            ["https://outlook.office.com/IMAP.AccessAsUser.All \
              https://outlook.office.com/SMTP.Send offline_access openid profile email"]
        );
        assert_eq!(request.redirect_uri.as_str(), "http://localhost:53682/");
    }

    #[test]
    fn br04_a_pasted_prompt_consent_is_dropped_and_other_parameters_kept() {
        let mut profile = profile();
        profile.authorize_url = oauth2::AuthUrl::new(
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize?\
             prompt=consent&domain_hint=contoso.com&response_mode=form_post&client_id=x"
                .to_owned(),
        )
        .expect("url");
        let request = build(&profile, 53682).expect("builds");
        let pairs = query(&request.url);
        assert_eq!(values(&pairs, "prompt"), ["select_account"]);
        assert_eq!(values(&pairs, "domain_hint"), ["contoso.com"]);
        assert!(values(&pairs, "response_mode").is_empty(), "{}", request.url);
        assert_eq!(values(&pairs, "client_id"), ["00000000-0000-0000-0000-000000000001"]);
        assert!(!request.url.contains("consent"), "{}", request.url);
    }

    #[test]
    fn every_request_has_a_fresh_state_and_verifier() {
        let first = build(&profile(), 1).expect("builds");
        let second = build(&profile(), 1).expect("builds");
        assert_ne!(first.state.secret(), second.state.secret());
        assert_ne!(first.verifier.secret(), second.verifier.secret());
        assert!(first.state.secret().len() >= 22);
        let debug = format!("{first:?}");
        assert!(!debug.contains(first.state.secret().as_str()), "{debug}");
        assert!(!debug.contains(first.verifier.secret().as_str()), "{debug}");
    }
}
