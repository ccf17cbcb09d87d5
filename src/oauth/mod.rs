//! OAuth2 for a desktop app: authorize URL with PKCE and `state`, the loopback listener that
//! receives the browser's redirect, code exchange and refresh, and the claims read from tokens.
//!
//! Invariants: the PKCE verifier and `state` live only inside a pending sign-in and are dropped
//! with it; a callback whose `state` does not match is rejected before anything in it is
//! trusted; a code is redeemed at most once; no token, code or secret is ever logged or put in
//! an error's text.

pub mod authorize;
pub mod claims;
pub mod error;
pub mod http;
pub mod loopback;
pub mod token;

pub use error::{
    CallbackError, CertificateProblem, ProviderError, SignInError, TokenError, TransportKind,
};
pub use loopback::{PendingSignIn, SignInCanceller, open_browser};
pub use token::TokenClient;

use oauth2::{AccessToken, RefreshToken};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The account a token was issued to, read from the ID token (or the access token when it is a
/// readable JWT). Never verified cryptographically: used only to show and compare names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityClaims {
    /// `preferred_username` (Entra: usually the UPN).
    pub preferred_username: Option<String>,
    /// `email`.
    pub email: Option<String>,
    /// `upn` (access tokens).
    pub upn: Option<String>,
    /// `name`, for display.
    pub name: Option<String>,
    /// `tid`, the tenant the account signed in to.
    pub tenant_id: Option<String>,
}

impl IdentityClaims {
    /// The sign-in name to show and to use as SMTP login: preferred_username, upn, then email.
    pub fn account(&self) -> Option<&str> {
        self.preferred_username.as_deref().or(self.upn.as_deref()).or(self.email.as_deref())
    }
}

/// What a successful token response gives us.
#[derive(Clone, Debug)]
pub struct TokenSet {
    /// Bearer token for IMAP and SMTP.
    pub access_token: AccessToken,
    /// When the access token stops working, from `expires_in`.
    pub access_expires_at: Option<OffsetDateTime>,
    /// Refresh token, when the provider issued (or rotated) one.
    pub refresh_token: Option<RefreshToken>,
    /// Scopes the provider says it granted; `None` when the response left `scope` out.
    pub granted_scopes: Option<Vec<String>>,
    /// The signed-in account, when an ID token (or readable access token) named one.
    pub identity: Option<IdentityClaims>,
    /// When this response arrived.
    pub obtained_at: OffsetDateTime,
}
