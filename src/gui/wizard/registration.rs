//! Step ①: which provider, and the app registration the admin makes for it.
//!
//! For Microsoft 365 the step also shows exactly what the admin must register (platform,
//! redirect URI, public client flows, delegated permissions with the reason for each); for a
//! custom provider, the loopback redirect URI to register. Every value has a Copy button, so
//! the registration matches what the sign-in sends.

use crate::gui::form::{self, FormFeedback, RowStyle};
use crate::profile::{Field, ProfileForm};
use crate::provider::{MICROSOFT_REGISTERED_REDIRECT, Preset, ProviderKind};

/// Platform name as the Entra portal shows it.
const PLATFORM: &str = "Mobile and desktop applications";

/// The loopback redirect URI to register with a custom provider: the sign-in listens on a
/// random port and sends `http://localhost:<port>/` (RFC 8252 loopback redirect).
pub const LOOPBACK_REDIRECT: &str = "http://localhost";
/// The same loopback redirect by address, for providers that want the IP literal listed too.
pub const LOOPBACK_IP_REDIRECT: &str = "http://127.0.0.1";

/// Fields this step owns, for the provider chosen.
pub fn fields(provider: ProviderKind) -> &'static [Field] {
    match provider {
        ProviderKind::Microsoft365 => &[Field::Tenant, Field::ClientId, Field::ClientSecret],
        ProviderKind::Custom => &[
            Field::AuthorizeUrl,
            Field::TokenUrl,
            Field::Scopes,
            Field::ClientId,
            Field::ClientSecret,
        ],
    }
}

/// State of the registration step that is not part of the form.
#[derive(Debug, Default)]
pub struct RegistrationStep {
    /// The operator asked to see the client secret in clear.
    show_secret: bool,
}

impl RegistrationStep {
    /// Draws the step. Returns true when the provider changed.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        form: &mut ProfileForm,
        feedback: &mut FormFeedback<'_>,
    ) -> bool {
        let heading = match form.provider {
            ProviderKind::Microsoft365 => "Microsoft 365 app registration",
            ProviderKind::Custom => "Custom OAuth2 provider",
        };
        ui.heading(heading);
        ui.add_space(6.0);

        let mut provider = form.provider;
        let mut provider_changed = false;
        egui::Grid::new("registration").num_columns(2).spacing([16.0, 10.0]).show(ui, |ui| {
            provider_changed =
                form::choice_row(ui, "Provider", &mut provider, &ProviderKind::ALL, |p| p.label());
            match provider {
                ProviderKind::Microsoft365 => {
                    let hint = "contoso.onmicrosoft.com or 00000000-0000-…";
                    let style = RowStyle { hint, ..RowStyle::default() };
                    form::text_row(ui, feedback, Field::Tenant, &mut form.tenant, style);
                }
                ProviderKind::Custom => {
                    let url = RowStyle { hint: "https://…", long: true, ..RowStyle::default() };
                    form::text_row(ui, feedback, Field::AuthorizeUrl, &mut form.authorize_url, url);
                    form::text_row(ui, feedback, Field::TokenUrl, &mut form.token_url, url);
                    let scopes =
                        RowStyle { hint: "space separated", long: true, ..RowStyle::default() };
                    form::text_row(ui, feedback, Field::Scopes, &mut form.scopes, scopes);
                }
            }

            let guid =
                RowStyle { hint: "00000000-0000-0000-0000-000000000000", ..RowStyle::default() };
            form::text_row(ui, feedback, Field::ClientId, &mut form.client_id, guid);
            self.secret_row(ui, form, feedback);
        });
        if provider_changed {
            form.switch_provider(provider);
        }

        ui.add_space(14.0);
        match form.provider {
            ProviderKind::Microsoft365 => admin_box_ui(ui, &Preset::for_kind(form.provider)),
            ProviderKind::Custom => custom_box_ui(ui),
        }
        provider_changed
    }

    fn secret_row(
        &mut self,
        ui: &mut egui::Ui,
        form: &mut ProfileForm,
        feedback: &mut FormFeedback<'_>,
    ) {
        let label = ui.label(Field::ClientSecret.label());
        ui.vertical(|ui| {
            ui.horizontal(|ui| {
                let edit = egui::TextEdit::singleline(&mut form.client_secret)
                    .password(!self.show_secret)
                    .hint_text("only for a confidential client")
                    .desired_width(form::INPUT_WIDTH);
                let response = ui.add(edit).labelled_by(label.id);
                feedback.note_field_edit(ui, Field::ClientSecret, &response);
                ui.weak("(optional)");
                let toggle = if self.show_secret { "Hide" } else { "Show" };
                if ui.button(toggle).accessible_name(format!("{toggle} client secret")).clicked() {
                    self.show_secret = !self.show_secret;
                }
            });
            feedback.problems_ui(ui, Field::ClientSecret);
        });
        ui.end_row();
    }
}

/// The framed "Ask your admin to register" box.
fn admin_box_ui(ui: &mut egui::Ui, preset: &Preset) {
    egui::Frame::group(ui.style()).inner_margin(12.0).show(ui, |ui| {
        ui.strong("Ask your admin to register:");
        ui.label(
            "In the Entra admin center: App registrations > this app > Authentication, and API \
             permissions",
        );
        ui.add_space(6.0);
        egui::Grid::new("admin_registration").num_columns(2).spacing([16.0, 8.0]).show(ui, |ui| {
            form::copy_row(ui, "Platform", PLATFORM);
            form::copy_row(ui, "Redirect URI", MICROSOFT_REGISTERED_REDIRECT);
            form::copy_row(ui, "Allow public client flows", "Yes");
        });

        ui.add_space(8.0);
        ui.strong("Delegated permissions (Add a permission > Microsoft Graph > Delegated):");
        for permission in preset.permissions {
            ui.horizontal(|ui| {
                ui.monospace(permission.name);
                form::copy_button(ui, permission.name, permission.name);
            });
            ui.indent(permission.name, |ui| {
                ui.add(egui::Label::new(egui::RichText::new(permission.why).weak()).wrap());
            });
        }
    });
}

/// The framed "Register with your provider" box of a custom provider.
fn custom_box_ui(ui: &mut egui::Ui) {
    egui::Frame::group(ui.style()).inner_margin(12.0).show(ui, |ui| {
        ui.strong("Register with your provider:");
        ui.label(
            "A client for a desktop (native) application that may redirect to this computer. \
             mailgrant listens on a random port and sends http://localhost:<port>/ as the \
             redirect URI",
        );
        ui.add_space(6.0);
        egui::Grid::new("custom_registration").num_columns(2).spacing([16.0, 8.0]).show(ui, |ui| {
            form::copy_row(ui, "Redirect URI", LOOPBACK_REDIRECT);
            form::copy_row(ui, "Loopback address", LOOPBACK_IP_REDIRECT);
        });
        ui.add_space(4.0);
        ui.add(
            egui::Label::new(
                egui::RichText::new(
                    "Providers that follow RFC 8252 accept a registered loopback redirect with \
                     any port. Some want the address form listed as well; one that insists on \
                     an exact port cannot be used",
                )
                .weak(),
            )
            .wrap(),
        );
    });
}
