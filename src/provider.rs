//! Provider presets as data: endpoints, scopes and mail hosts per provider.
//!
//! A preset only fills defaults into the form; everything it supplies can be seen and, for the
//! custom provider, typed by the operator. Nothing here talks to the network.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which identity provider the profile talks to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// Microsoft 365 / Entra ID, global cloud.
    #[default]
    Microsoft365,
    /// Any OAuth2 provider given by typed authorize and token URLs.
    Custom,
}

impl ProviderKind {
    /// Every provider, in the order the wizard lists them.
    pub const ALL: [ProviderKind; 2] = [ProviderKind::Microsoft365, ProviderKind::Custom];

    /// Name shown to the operator.
    pub fn label(self) -> &'static str {
        match self {
            ProviderKind::Microsoft365 => "Microsoft 365",
            ProviderKind::Custom => "Custom OAuth2 provider",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// How a mail connection is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Security {
    /// TLS from the first byte (IMAPS 993, SMTPS 465).
    #[default]
    Tls,
    /// Plain connect, then STARTTLS is required before authenticating (SMTP 587).
    StartTls,
}

impl Security {
    /// Both choices, in the order the wizard lists them.
    pub const ALL: [Security; 2] = [Security::Tls, Security::StartTls];

    /// Name shown to the operator.
    pub fn label(self) -> &'static str {
        match self {
            Security::Tls => "TLS",
            Security::StartTls => "STARTTLS",
        }
    }
}

impl fmt::Display for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// One delegated permission the admin must grant, with the reason the service needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permission {
    /// Name as the Entra portal shows it.
    pub name: &'static str,
    /// Full scope string sent in the authorize request.
    pub scope: &'static str,
    /// One line for the operator: why the service needs it.
    pub why: &'static str,
}

/// Defaults a provider brings: URLs (with `{tenant}` placeholders), scopes and mail hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preset {
    /// Which provider this is.
    pub kind: ProviderKind,
    /// Authorize endpoint; `{tenant}` is replaced by the tenant field.
    pub authorize_url: &'static str,
    /// Token endpoint; `{tenant}` is replaced by the tenant field.
    pub token_url: &'static str,
    /// Permissions the admin grants; their scopes are requested.
    pub permissions: &'static [Permission],
    /// Extra OpenID Connect scopes so the ID token names the signed-in account.
    pub identity_scopes: &'static [&'static str],
    /// Default SMTP submission host, port and security.
    pub smtp: (&'static str, u16, Security),
    /// Default IMAP host, port and security.
    pub imap: (&'static str, u16, Security),
}

/// Redirect URI the admin registers for a Microsoft 365 app ("Mobile and desktop applications").
///
/// Entra ignores the port of a registered `http://localhost`, so this one entry covers the
/// random loopback port mailgrant listens on.
pub const MICROSOFT_REGISTERED_REDIRECT: &str = "http://localhost";

/// Microsoft 365, global cloud.
pub const MICROSOFT_365: Preset = Preset {
    kind: ProviderKind::Microsoft365,
    authorize_url: "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize",
    token_url: "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
    permissions: &[
        Permission {
            name: "IMAP.AccessAsUser.All",
            scope: "https://outlook.office.com/IMAP.AccessAsUser.All",
            why: "Inbox check: reads acknowledgements and proves the mailbox is reachable",
        },
        Permission {
            name: "SMTP.Send",
            scope: "https://outlook.office.com/SMTP.Send",
            why: "Sends the alarm notifications",
        },
        Permission {
            name: "offline_access",
            scope: "offline_access",
            why: "Refreshes the sign-in with nobody present, because the service runs unattended",
        },
    ],
    identity_scopes: &["openid", "profile", "email"],
    smtp: ("smtp.office365.com", 587, Security::StartTls),
    imap: ("outlook.office365.com", 993, Security::Tls),
};

impl Preset {
    /// The preset for a provider; the custom provider has empty URLs and no scopes.
    pub fn for_kind(kind: ProviderKind) -> Preset {
        match kind {
            ProviderKind::Microsoft365 => MICROSOFT_365,
            ProviderKind::Custom => Preset {
                kind: ProviderKind::Custom,
                authorize_url: "",
                token_url: "",
                permissions: &[],
                identity_scopes: &[],
                smtp: ("", 587, Security::StartTls),
                imap: ("", 993, Security::Tls),
            },
        }
    }

    /// All scopes requested at sign-in, permissions first, space separated order kept.
    pub fn scopes(&self) -> Vec<String> {
        self.permissions
            .iter()
            .map(|p| p.scope.to_owned())
            .chain(self.identity_scopes.iter().map(|s| (*s).to_owned()))
            .collect()
    }

    /// Authorize URL with the tenant filled in.
    pub fn authorize_url_for(&self, tenant: &str) -> String {
        self.authorize_url.replace("{tenant}", tenant)
    }

    /// Token URL with the tenant filled in.
    pub fn token_url_for(&self, tenant: &str) -> String {
        self.token_url.replace("{tenant}", tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microsoft_scopes_use_the_exchange_resource_and_never_graph() {
        let scopes = MICROSOFT_365.scopes();
        assert_eq!(
            scopes,
            [
                "https://outlook.office.com/IMAP.AccessAsUser.All",
                "https://outlook.office.com/SMTP.Send",
                "offline_access",
                "openid",
                "profile",
                "email"
            ]
        );
    }

    #[test]
    fn tenant_is_substituted_into_both_endpoints() {
        let tenant = "00000000-0000-0000-0000-000000000000";
        assert_eq!(
            MICROSOFT_365.token_url_for(tenant),
            concat!(
                "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000",
                "/oauth2/v2.0/token"
            )
        );
        assert!(MICROSOFT_365.authorize_url_for("contoso.onmicrosoft.com").contains("/contoso."));
    }
}
