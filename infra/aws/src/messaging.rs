//! Email through SES v2 and SMS through SNS.

use async_trait::async_trait;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
use aws_sdk_sns::types::MessageAttributeValue;
use domain::messaging::{DeliveryError, EmailMessage, Mailer, SmsMessage, TextSender};

/// Sends email with SES v2 `SendEmail`.
#[derive(Clone)]
pub struct SesMailer {
    client: aws_sdk_sesv2::Client,
    from: String,
    configuration_set: Option<String>,
}

impl SesMailer {
    /// `from` must be a verified SES identity; `configuration_set` (optional) routes
    /// delivery events.
    pub fn new(client: aws_sdk_sesv2::Client, from: String, configuration_set: Option<String>) -> Self {
        SesMailer { client, from, configuration_set }
    }
}

fn utf8(text: &str) -> Result<Content, DeliveryError> {
    Content::builder().data(text).charset("UTF-8").build().map_err(|e| DeliveryError(Box::new(e)))
}

#[async_trait]
impl Mailer for SesMailer {
    async fn send_email(&self, message: &EmailMessage) -> Result<(), DeliveryError> {
        let content = EmailContent::builder()
            .simple(Message::builder().subject(utf8(&message.subject)?).body(Body::builder().text(utf8(&message.body)?).build()).build())
            .build();
        self.client
            .send_email()
            .from_email_address(&self.from)
            .destination(Destination::builder().to_addresses(message.to.as_str()).build())
            .content(content)
            .set_configuration_set_name(self.configuration_set.clone())
            .send()
            .await
            .map_err(|e| DeliveryError(Box::new(aws_sdk_sesv2::Error::from(e))))?;
        Ok(())
    }
}

/// Sends SMS with SNS `Publish` to a phone number, as transactional messages.
#[derive(Clone)]
pub struct SnsTexter {
    client: aws_sdk_sns::Client,
    sender_id: Option<String>,
}

impl SnsTexter {
    /// `sender_id` is the alphanumeric sender shown on the phone, where the carrier allows one.
    pub fn new(client: aws_sdk_sns::Client, sender_id: Option<String>) -> Self {
        SnsTexter { client, sender_id }
    }
}

fn string_attribute(value: &str) -> Result<MessageAttributeValue, DeliveryError> {
    MessageAttributeValue::builder().data_type("String").string_value(value).build().map_err(|e| DeliveryError(Box::new(e)))
}

#[async_trait]
impl TextSender for SnsTexter {
    async fn send_sms(&self, message: &SmsMessage) -> Result<(), DeliveryError> {
        let mut request = self
            .client
            .publish()
            .phone_number(message.to.as_str())
            .message(&message.body)
            // Transactional: codes must arrive now, not at the cheapest moment.
            .message_attributes("AWS.SNS.SMS.SMSType", string_attribute("Transactional")?);
        if let Some(sender) = &self.sender_id {
            request = request.message_attributes("AWS.SNS.SMS.SenderID", string_attribute(sender)?);
        }
        request.send().await.map_err(|e| DeliveryError(Box::new(aws_sdk_sns::Error::from(e))))?;
        Ok(())
    }
}
