//! Email via `lettre` (async, tokio): multipart text + HTML with the chart inline (`cid:`), sent
//! over SMTP with no TLS, STARTTLS or implicit TLS, and AUTH with the password read from a file.
//!
//! The message is rendered once, when the notification is stored in the outbox, so retries send
//! the same bytes; its `Message-ID` is derived from the idempotency key, so mail systems can drop a
//! duplicate.

use std::time::Duration;

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::context::NotificationContext;
use super::outbox::Delivery;
use super::routing::{SmtpConfig, TlsMode};
use super::templates::{TemplateError, Templates};

/// Errors building an email.
#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    /// A template failed.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// An address does not parse.
    #[error("invalid email address {0:?}")]
    Address(String),
    /// lettre rejected the message.
    #[error("building the email: {0}")]
    Build(#[from] lettre::error::Error),
}

fn text_part(content_type: ContentType, body: String) -> SinglePart {
    // Quoted-printable keeps the stored message 7-bit and readable.
    SinglePart::builder()
        .header(content_type)
        .header(ContentTransferEncoding::QuotedPrintable)
        .body(body)
}

/// Renders the email of a notification.
pub fn render(
    templates: &Templates,
    ctx: &NotificationContext,
    from: &str,
    to: &[String],
    key: &str,
) -> Result<Delivery, EmailError> {
    let subject = templates.render("email_subject.txt", ctx)?;
    let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    let text = templates.render("email.txt", ctx)?;
    let html = templates.render("email.html", ctx)?;
    let from_mb: Mailbox = from
        .parse()
        .map_err(|_| EmailError::Address(from.to_string()))?;
    let mut builder = Message::builder()
        .from(from_mb.clone())
        .subject(subject)
        .message_id(Some(format!("<{key}@kubesignal>")));
    let mut rcpt = Vec::with_capacity(to.len());
    for t in to {
        let mb: Mailbox = t.parse().map_err(|_| EmailError::Address(t.clone()))?;
        rcpt.push(mb.email.to_string());
        builder = builder.to(mb);
    }
    let text = text_part(ContentType::TEXT_PLAIN, text);
    let html = text_part(ContentType::TEXT_HTML, html);
    let body = match (&ctx.chart_png, &ctx.chart_cid) {
        (Some(png), Some(cid)) => MultiPart::alternative().singlepart(text).multipart(
            MultiPart::related().singlepart(html).singlepart(
                Attachment::new_inline(cid.clone()).body(
                    png.clone(),
                    ContentType::parse("image/png")
                        .map_err(|_| EmailError::Address(cid.clone()))?,
                ),
            ),
        ),
        _ => MultiPart::alternative().singlepart(text).singlepart(html),
    };
    let message = builder.multipart(body)?;
    Ok(Delivery::Email {
        from: from_mb.email.to_string(),
        to: rcpt,
        message: String::from_utf8_lossy(&message.formatted()).into_owned(),
    })
}

/// Sends a stored message through the routing file's SMTP server.
pub async fn send(
    smtp: &SmtpConfig,
    from: &str,
    to: &[String],
    message: &str,
    timeout: Duration,
) -> Result<(), String> {
    type T = AsyncSmtpTransport<Tokio1Executor>;
    let mut builder = T::builder_dangerous(&smtp.host)
        .port(smtp.port)
        .timeout(Some(timeout));
    if smtp.tls != TlsMode::None {
        let mut params = TlsParameters::builder(smtp.host.clone());
        if let Some(ca) = &smtp.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| format!("reading SMTP CA file {}: {e}", ca.display()))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| format!("SMTP CA file {}: {e}", ca.display()))?;
            params = params.add_root_certificate(cert);
        }
        let params = params.build().map_err(|e| e.to_string())?;
        builder = builder.tls(match smtp.tls {
            TlsMode::Starttls => Tls::Required(params),
            _ => Tls::Wrapper(params),
        });
    }
    if let Some(user) = &smtp.username {
        let password = match &smtp.password_file {
            Some(f) => std::fs::read_to_string(f)
                .map_err(|e| format!("reading SMTP password file {}: {e}", f.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
            None => String::new(),
        };
        builder = builder.credentials(Credentials::new(user.clone(), password));
    }
    let transport = builder.build();
    let parse = |a: &str| {
        a.parse::<Address>()
            .map_err(|e| format!("address {a:?}: {e}"))
    };
    let envelope = lettre::address::Envelope::new(
        Some(parse(from)?),
        to.iter().map(|a| parse(a)).collect::<Result<_, _>>()?,
    )
    .map_err(|e| e.to_string())?;
    transport
        .send_raw(&envelope, message.as_bytes())
        .await
        .map(|_| ())
        .map_err(|e| format!("SMTP {}:{}: {e}", smtp.host, smtp.port))
}
