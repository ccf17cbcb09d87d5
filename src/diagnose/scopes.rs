//! Diagnoses about what a token is for: granted scopes, audience, and the signed-in account.

use super::{Diagnosis, Retry};

const GRAPH: &str = "https://graph.microsoft.com/";
const GMAIL_FULL: &str = "https://mail.google.com/";
const GMAIL_API: &str = "https://www.googleapis.com/auth/gmail.";

/// A token granted for the wrong resource: Microsoft Graph instead of Exchange (BR-09), or a
/// Gmail API scope instead of full mail access (BR-10). `None` when the audience looks right.
pub fn wrong_audience(granted: &[String]) -> Option<Diagnosis> {
    let graph_mail: Vec<&String> = granted
        .iter()
        .filter(|s| {
            let lower = s.to_ascii_lowercase();
            lower.starts_with(GRAPH) && (lower.contains("/imap.") || lower.contains("/smtp."))
        })
        .collect();
    if !graph_mail.is_empty() {
        let names: Vec<&str> = graph_mail.iter().map(|s| &s[GRAPH.len()..]).collect();
        let fix: Vec<String> =
            names.iter().map(|n| format!("https://outlook.office.com/{n}")).collect();
        let d = Diagnosis::new(
            "token-for-graph",
            "The token is for Microsoft Graph, not Exchange: IMAP and SMTP will refuse it",
            "The scopes were requested with the https://graph.microsoft.com/ prefix, which is how \
             the portal lists these permissions",
            format!("Request {} instead, then sign in again", fix.join(" ")),
            Retry::Permanent,
        )
        .with_detail(format!("granted: {}", granted.join(" ")));
        return Some(d);
    }
    let gmail_api: Vec<&String> =
        granted.iter().filter(|s| s.to_ascii_lowercase().starts_with(GMAIL_API)).collect();
    let gmail_full = granted.iter().any(|s| s == GMAIL_FULL);
    if !gmail_api.is_empty() && !gmail_full {
        let names: Vec<&str> =
            gmail_api.iter().map(|s| &s["https://www.googleapis.com/auth/".len()..]).collect();
        let d = Diagnosis::new(
            "gmail-scope-missing",
            format!("Google granted only {}; IMAP and SMTP need {GMAIL_FULL}", names.join(", ")),
            "Gmail's IMAP and SMTP accept only tokens granted full mail access; the Gmail API \
             scopes do not work there",
            format!(
                "Add {GMAIL_FULL} to the OAuth consent screen's scopes and to the Scopes field, \
                 then sign in again"
            ),
            Retry::Permanent,
        );
        return Some(d);
    }
    None
}

/// Requested scopes missing from the granted list.
pub fn not_granted(missing: &[&str], granted: &[String]) -> Diagnosis {
    Diagnosis::new(
        "scope-not-granted",
        format!("The provider did not grant {}", missing.join(", ")),
        "The permission is not on the app registration, or consent for it was not given",
        format!(
            "Ask the admin to add {} as delegated permissions on the app registration (API \
             permissions → Add a permission) and grant consent, then sign in again",
            missing.join(", ")
        ),
        Retry::Permanent,
    )
    .with_detail(format!("granted: {}", granted.join(" ")))
}

/// The account that signed in is not the mailbox (BR-05, BR-07).
pub fn account_mismatch(account: &str, mailbox: &str, smtp_user: &str) -> Diagnosis {
    let sending_as_delegate = smtp_user.eq_ignore_ascii_case(account);
    let cause = if sending_as_delegate {
        format!(
            "Fine for a shared mailbox: {account} reads {mailbox} over IMAP and sends as itself \
             with From {mailbox}, which needs Full Access and Send As rights"
        )
    } else {
        "The browser may have reused another session (often the admin's)".to_owned()
    };
    Diagnosis::new(
        "account-mismatch",
        format!("Signed in as {account}, but the mailbox is {mailbox}"),
        cause,
        format!(
            "If this is not a shared mailbox, choose Sign in again and pick {mailbox} in the \
             account list"
        ),
        Retry::Permanent,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn br_09_graph_scopes_are_named_with_the_exchange_form() {
        let granted = vec![
            "https://graph.microsoft.com/IMAP.AccessAsUser.All".to_owned(),
            "https://graph.microsoft.com/SMTP.Send".to_owned(),
        ];
        let d = wrong_audience(&granted).expect("graph audience is wrong");
        assert_eq!(d.id, "token-for-graph");
        assert!(d.fix.contains("https://outlook.office.com/IMAP.AccessAsUser.All"));
        assert!(d.fix.contains("https://outlook.office.com/SMTP.Send"));
    }

    #[test]
    fn br_10_gmail_readonly_scope_is_not_enough() {
        let granted = vec!["https://www.googleapis.com/auth/gmail.readonly".to_owned()];
        let d = wrong_audience(&granted).expect("readonly is not enough");
        assert_eq!(d.id, "gmail-scope-missing");
        assert!(d.summary.contains("gmail.readonly"), "{}", d.summary);
        assert!(d.fix.contains("https://mail.google.com/"));
        assert!(wrong_audience(&["https://mail.google.com/".to_owned()]).is_none());
    }

    #[test]
    fn a_delegate_sending_for_a_shared_mailbox_is_explained() {
        let d =
            account_mismatch("operator@example.com", "alarms@example.com", "operator@example.com");
        assert!(d.cause.contains("Send As"));
        let d =
            account_mismatch("it-admin@example.com", "alarms@example.com", "alarms@example.com");
        assert!(d.cause.contains("another session"));
        assert!(d.fix.contains("alarms@example.com"));
    }
}
