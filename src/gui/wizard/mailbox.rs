//! Step ②: the mailbox the service sends from, the mail servers, and the connection settings.
//!
//! Hosts, ports and security come prefilled from the provider's preset; the test recipient
//! defaults to the mailbox itself, which lets the checks find the test message again (round
//! trip).

use crate::gui::form::{self, FormFeedback, RowStyle};
use crate::profile::{Field, ProfileForm};
use crate::provider::Security;

/// Fields this step owns.
pub const FIELDS: &[Field] = &[
    Field::Mailbox,
    Field::SmtpHost,
    Field::SmtpPort,
    Field::ImapHost,
    Field::ImapPort,
    Field::TestRecipient,
    Field::TimeoutSecs,
    Field::ExtraCaFile,
];

/// The mailbox step (all of its state lives in the form).
#[derive(Debug, Default)]
pub struct MailboxStep;

impl MailboxStep {
    /// Draws the step.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        form: &mut ProfileForm,
        feedback: &mut FormFeedback<'_>,
    ) {
        ui.heading("Mailbox and mail servers");
        ui.add_space(6.0);
        let plain = RowStyle::default();

        egui::Grid::new("mailbox").num_columns(2).spacing([16.0, 10.0]).show(ui, |ui| {
            let mailbox = RowStyle { hint: "alarms@example.com", ..plain };
            form::text_row(ui, feedback, Field::Mailbox, &mut form.mailbox, mailbox);

            form::text_row(ui, feedback, Field::SmtpHost, &mut form.smtp_host, plain);
            form::text_row(ui, feedback, Field::SmtpPort, &mut form.smtp_port, plain);
            let security = &mut form.smtp_security;
            form::choice_row(ui, "SMTP security", security, &Security::ALL, |s| s.label());

            form::text_row(ui, feedback, Field::ImapHost, &mut form.imap_host, plain);
            form::text_row(ui, feedback, Field::ImapPort, &mut form.imap_port, plain);
            let security = &mut form.imap_security;
            form::choice_row(ui, "IMAP security", security, &Security::ALL, |s| s.label());

            let recipient = RowStyle { hint: "the mailbox itself", optional: true, ..plain };
            form::text_row(ui, feedback, Field::TestRecipient, &mut form.test_recipient, recipient);
            form::text_row(ui, feedback, Field::TimeoutSecs, &mut form.timeout_secs, plain);
            let ca =
                RowStyle { hint: "PEM file, for a TLS-inspecting proxy", optional: true, ..plain };
            form::text_row(ui, feedback, Field::ExtraCaFile, &mut form.extra_ca_file, ca);
        });

        ui.add_space(8.0);
        let round_trip = form.test_recipient.trim().is_empty()
            || form.test_recipient.trim().eq_ignore_ascii_case(form.mailbox.trim());
        if round_trip {
            ui.weak("The test message goes to the mailbox itself, so the checks can find it again");
        } else {
            ui.weak("The test message goes elsewhere, so the round-trip check is skipped");
        }
    }
}
