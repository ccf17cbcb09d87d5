//! Reading the claims inside an ID token or a JWT access token, without verifying them.
//!
//! mailgrant only shows and compares names from these claims (which account signed in, which
//! audience a token is for); it never grants anything on their strength, so no signature is
//! checked. Opaque tokens (Google's access tokens, some Microsoft ones) simply yield nothing.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use oauth2::AccessToken;
use serde_json::{Map, Value};

use super::IdentityClaims;

/// Why a token's payload could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    /// Not three dot-separated parts.
    #[error("not a JWT (expected three parts separated by dots)")]
    NotAJwt,
    /// The payload part is not base64url.
    #[error("the JWT payload is not base64url")]
    NotBase64,
    /// The payload is not a JSON object.
    #[error("the JWT payload is not a JSON object")]
    NotJson,
}

/// Decodes the payload (middle part) of a JWT into its JSON claims. No signature check.
pub fn decode_jwt_payload(token: &str) -> Result<Map<String, Value>, ClaimsError> {
    let mut parts = token.trim().split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ClaimsError::NotAJwt);
    };

    // Some issuers pad base64url; the JWT spec says they must not, so accept both.
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| ClaimsError::NotBase64)?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ClaimsError::NotJson),
    }
}

/// The identity claims of one decoded payload.
pub fn identity_from_claims(claims: &Map<String, Value>) -> IdentityClaims {
    let text = |name: &str| {
        claims.get(name).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
    };
    IdentityClaims {
        preferred_username: text("preferred_username").map(str::to_owned),
        email: text("email").map(str::to_owned),
        upn: text("upn").or(text("unique_name")).map(str::to_owned),
        name: text("name").map(str::to_owned),
        tenant_id: text("tid").map(str::to_owned),
    }
}

/// The signed-in account from the ID token, with fields it lacks taken from the access token
/// when that is a readable JWT. `None` when neither names anyone.
pub fn identity(id_token: Option<&str>, access_token: &AccessToken) -> Option<IdentityClaims> {
    let from_id =
        id_token.and_then(|t| decode_jwt_payload(t).ok()).map(|c| identity_from_claims(&c));
    let from_access =
        decode_jwt_payload(access_token.secret()).ok().map(|c| identity_from_claims(&c));

    let merged = match (from_id, from_access) {
        (Some(id), Some(access)) => IdentityClaims {
            preferred_username: id.preferred_username.or(access.preferred_username),
            email: id.email.or(access.email),
            upn: id.upn.or(access.upn),
            name: id.name.or(access.name),
            tenant_id: id.tenant_id.or(access.tenant_id),
        },
        (Some(one), None) | (None, Some(one)) => one,
        (None, None) => return None,
    };
    (merged != IdentityClaims::default()).then_some(merged)
}

/// The `aud` of a JWT access token (for example `https://outlook.office.com`), when readable.
pub fn access_token_audience(access_token: &AccessToken) -> Option<String> {
    let claims = decode_jwt_payload(access_token.secret()).ok()?;
    match claims.get("aud")? {
        Value::String(aud) => Some(aud.clone()),
        Value::Array(list) => list.first().and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// Builds an unsigned JWT with the given JSON payload; for tests of code that reads claims.
#[cfg(test)]
pub(crate) fn unsigned_jwt(payload: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(payload);
    format!("{header}.{body}.c2lnbmF0dXJl")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_decoded_without_verification() {
        let jwt = unsigned_jwt(r#"{"preferred_username":"alarms@example.com","tid":"t-1"}"#);
        let claims = decode_jwt_payload(&jwt).expect("decodes");
        assert_eq!(claims["preferred_username"], "alarms@example.com");
        assert_eq!(decode_jwt_payload("opaque-token"), Err(ClaimsError::NotAJwt));
        assert_eq!(decode_jwt_payload("a.%%%.c"), Err(ClaimsError::NotBase64));
        let not_object = format!("x.{}.y", URL_SAFE_NO_PAD.encode("[1,2]"));
        assert_eq!(decode_jwt_payload(&not_object), Err(ClaimsError::NotJson));
    }

    #[test]
    fn br05_id_token_names_the_admin_not_the_mailbox() {
        let id = unsigned_jwt(r#"{"preferred_username":"it-admin@example.com","name":"IT"}"#);
        let access = AccessToken::new(unsigned_jwt(
            r#"{"upn":"it-admin@example.com","aud":"https://outlook.office.com","tid":"t"}"#,
        ));
        let who = identity(Some(&id), &access).expect("identity");
        assert_eq!(who.account(), Some("it-admin@example.com"));
        assert_eq!(who.upn.as_deref(), Some("it-admin@example.com"));
        assert_eq!(who.tenant_id.as_deref(), Some("t"));
        assert_eq!(who.name.as_deref(), Some("IT"));
        assert_eq!(access_token_audience(&access).as_deref(), Some("https://outlook.office.com"));
    }

    #[test]
    fn opaque_tokens_without_id_token_name_nobody() {
        let access = AccessToken::new("ya29.opaque-google-token".into());
        assert_eq!(identity(None, &access), None);
        assert_eq!(access_token_audience(&access), None);
        let only_access = AccessToken::new(unsigned_jwt(r#"{"unique_name":"a@example.com"}"#));
        assert_eq!(
            identity(None, &only_access).and_then(|i| i.upn),
            Some("a@example.com".to_owned())
        );
    }
}
