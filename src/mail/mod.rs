//! Mail checks with an OAuth2 access token: XOAUTH2 SASL, the SMTP test send and the IMAP
//! inbox check, over rustls with the roots of our [`crate::trust::Trust`].
//!
//! Every call is blocking (run it on a worker thread) and bounded by the timeout it is given.
//! Failures come back as [`SmtpError`] / [`ImapError`] carrying facts (phase, reply code,
//! enhanced status, server text, decoded token challenge, network failure kind with the
//! server's certificate); [`crate::diagnose::mail`] turns them into operator text. No error,
//! log line or Debug output of this module contains the token or the XOAUTH2 string.

pub mod imap;
pub mod net;
pub mod smtp;
pub mod xoauth2;

pub use imap::{ImapError, ImapPhase, ImapStatus, InboxStatus, check_inbox, find_subject};
pub use net::{CertificateProblem, PeerCertificate, TransportError, TransportKind};
pub use smtp::{SmtpError, SmtpPhase, SmtpReply, SmtpSent, SmtpTestMessage, send_test_message};
pub use xoauth2::{CredentialsError, ErrorChallenge, Xoauth2Credentials};
