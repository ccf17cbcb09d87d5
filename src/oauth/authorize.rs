//! The authorize URL: authorization code flow with PKCE S256, a fresh random `state`, the
//! mailbox as `login_hint`, the account picker, and the profile's scopes exactly.
//!
//! `prompt=select_account` is sent and `prompt=consent` never is: in tenants where users may
//! not consent, a forced consent prompt turns into an admin-approval wall even after an admin
//! approved the app (BR-04). The redirect URI is `http://localhost:<port>/`, the form Entra
//! accepts for a registered `http://localhost` with any port (BR-01).

use oauth2::basic::BasicClient;
use oauth2::{CsrfToken, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl};

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

/// The redirect URI for a loopback listener on `port`.
pub fn loopback_redirect_uri(port: u16) -> String {
    format!("http://localhost:{port}/")
}

/// Builds a fresh authorize request for `profile`, redirecting to `localhost:<port>`.
pub fn build(profile: &Profile, port: u16) -> Result<AuthorizeRequest, SignInError> {
    let redirect_uri = RedirectUrl::new(loopback_redirect_uri(port))
        .map_err(|e| SignInError::AuthorizeUrl(format!("bad redirect URI: {e}")))?;
    let client = BasicClient::new(profile.client_id.clone())
        .set_auth_uri(profile.authorize_url.clone())
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
