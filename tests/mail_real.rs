//! The SMTP and IMAP checks against real Postfix (submission, STARTTLS required) and Dovecot
//! (IMAP, XOAUTH2 checked by the local identity provider) from `tests/support`, trusting the
//! fixture's CA through `Trust::load(Some(ca_file))`.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailgrant::diagnose::mail::{self as diag, MailContext};
use mailgrant::mail::{
    ImapError, ImapPhase, SmtpError, SmtpPhase, SmtpTestMessage, check_inbox, find_subject,
    send_test_message,
};
use mailgrant::profile::ServerEndpoint;
use mailgrant::provider::Security;
use mailgrant::trust::Trust;
use oauth2::AccessToken;
use support::MailFixture;

const TIMEOUT: Duration = Duration::from_secs(20);

fn endpoint(port: u16, security: Security) -> ServerEndpoint {
    ServerEndpoint { host: "127.0.0.1".to_owned(), port, security }
}

fn unique_subject(tag: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("mailgrant test {tag} {nanos}")
}

#[test]
fn smtp_send_is_found_over_imap_with_a_minted_token() {
    let fx = MailFixture::start();
    let trust = Trust::load(Some(&fx.ca_file)).expect("trust the fixture CA");
    let token = AccessToken::new(fx.mint(&fx.mailbox, 600));
    assert!(token.secret().len() > 1000, "the IdP mints Entra-sized tokens");

    for (port, security) in [(fx.smtp_port, Security::StartTls), (fx.smtps_port, Security::Tls)] {
        let subject = unique_subject(&format!("{security:?}"));
        let message = SmtpTestMessage {
            from: &fx.mailbox,
            to: &fx.mailbox,
            subject: &subject,
            body: "Test from mailgrant.\n.\nA line with a lone dot above.",
        };
        let sent = send_test_message(
            &endpoint(port, security),
            &trust,
            &fx.mailbox,
            &token,
            &message,
            TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("send over {security:?}: {e}"));
        assert!(sent.final_reply.starts_with("250 2.0.0 Ok: queued as "), "{}", sent.final_reply);

        let imaps = endpoint(fx.imaps_port, Security::Tls);
        let found = find_subject(&imaps, &trust, &fx.mailbox, &token, &subject, TIMEOUT)
            .expect("search over IMAPS");
        assert!(found, "the message sent over {security:?} arrived");
    }

    let imap = endpoint(fx.imap_port, Security::StartTls);
    let inbox = check_inbox(&imap, &trust, &fx.mailbox, &token, TIMEOUT).expect("inbox");
    assert_eq!(inbox.exists, 2);
    let delivered = fx.maildir_messages(&fx.mailbox);
    assert!(delivered.iter().any(|m| m.contains("\r\n.\r\nA line") || m.contains("\n.\nA line")));

    let missing = unique_subject("never-sent");
    let imaps = endpoint(fx.imaps_port, Security::Tls);
    let short = Duration::from_millis(600);
    let found = find_subject(&imaps, &trust, &fx.mailbox, &token, &missing, short).expect("search");
    assert!(!found, "a subject that was never sent is not found");
}

#[test]
fn a_refused_token_is_explained_from_the_decoded_challenge() {
    let fx = MailFixture::start();
    let trust = Trust::load(Some(&fx.ca_file)).expect("trust the fixture CA");
    let token = AccessToken::new("not-a-token-the-idp-issued-SECRET-MARKER".to_owned());
    let ctx = MailContext {
        mailbox: fx.mailbox.clone(),
        login: fx.mailbox.clone(),
        ..MailContext::default()
    };

    let message = SmtpTestMessage {
        from: &fx.mailbox,
        to: &fx.mailbox,
        subject: "never delivered",
        body: "x",
    };
    let smtp = endpoint(fx.smtp_port, Security::StartTls);
    let error = send_test_message(&smtp, &trust, &fx.mailbox, &token, &message, TIMEOUT)
        .expect_err("Postfix refuses the token");
    assert!(matches!(error, SmtpError::Rejected { phase: SmtpPhase::Auth, .. }), "{error}");
    let challenge = error.challenge().expect("Postfix/Dovecot send the JSON challenge");
    assert_eq!(challenge.status.as_deref(), Some("401"));
    assert_eq!(error.reply().map(|r| r.code), Some(535));
    let d = diag::smtp(&error, &ctx);
    assert_eq!(d.id, "mail-token-refused");
    assert!(d.summary.contains("status 401"), "{}", d.summary);
    for text in [error.to_string(), d.to_text(), format!("{d:?}")] {
        assert!(!text.contains("SECRET-MARKER"), "token leaked: {text}");
    }

    let imaps = endpoint(fx.imaps_port, Security::Tls);
    let error = check_inbox(&imaps, &trust, &fx.mailbox, &token, TIMEOUT)
        .expect_err("Dovecot refuses the token");
    assert!(matches!(error, ImapError::Rejected { phase: ImapPhase::Auth, .. }), "{error}");
    assert_eq!(error.challenge().and_then(|c| c.status.as_deref()), Some("401"));
    let expired = MailContext { token_expired: true, ..ctx };
    let d = diag::imap(&error, &expired);
    assert_eq!(d.id, "mail-token-expired");
    for text in [error.to_string(), d.to_text(), format!("{d:?}")] {
        assert!(!text.contains("SECRET-MARKER"), "token leaked: {text}");
    }
}
