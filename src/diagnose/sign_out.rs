//! Operator text around signing out, shared by `mailgrant sign-out` and the status view: the
//! question asked before the stored tokens are removed and the line said after it. How to
//! revoke the grant on the provider's side follows it, from
//! [`crate::session::revoke_instructions`].

/// The confirmation question before the stored tokens of `mailbox` are removed.
pub fn question(mailbox: &str) -> String {
    format!(
        "Remove the stored tokens of {mailbox}? The service cannot send mail until someone signs \
         in again."
    )
}

/// What happened, once the stored tokens of `mailbox` are gone.
pub fn done(mailbox: &str) -> String {
    format!("Signed out: the stored tokens of {mailbox} were removed.")
}
