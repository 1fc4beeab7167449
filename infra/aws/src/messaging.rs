//! Email through SES v2 and SMS through SNS. Each answers with the provider's message id;
//! a failure says whether trying again may help (throttling, an outage: the outbox's
//! stream retries) or not (an address or message the provider refuses), and why, by the
//! provider's error code only — its messages can quote the address.

use crate::sdk::LazyClient;
use async_trait::async_trait;
use aws_sdk_sesv2::config::http::HttpResponse;
use aws_sdk_sesv2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
use aws_sdk_sns::types::MessageAttributeValue;
use domain::messaging::{DeliveryError, EmailMessage, Mailer, ProviderMessageId, SmsMessage, TextSender};

/// Error codes of SES and SNS that mean "not at this rate": nothing was sent, and the try
/// does not count against the message's budget.
const THROTTLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "LimitExceededException",
    "KMSThrottlingException",
];

/// Error codes of SES and SNS that mean "not now" rather than "never".
const TRANSIENT_CODES: &[&str] =
    &["SendingPausedException", "InternalError", "InternalErrorException", "InternalFailure", "ServiceUnavailable"];

/// Classifies an SDK failure of a send by the provider's error code and keeps its request
/// id; the error itself (whose message can quote the address) goes no further.
pub fn delivery_error<E>(error: SdkError<E, HttpResponse>) -> DeliveryError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    use aws_types::request_id::RequestId;
    let request_id = error.request_id().map(str::to_owned);
    let classified = match &error {
        // Not sent: the connection was never made.
        SdkError::DispatchFailure(_) => DeliveryError::transient("provider_unreachable"),
        // Sent, perhaps: no answer in time, or one that could not be read.
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => DeliveryError::unknown("provider_no_answer"),
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("UnknownError").to_owned();
            let server_side = service.raw().status().as_u16() >= 500;
            if THROTTLE_CODES.contains(&code.as_str()) {
                DeliveryError::throttled(code)
            } else if server_side || TRANSIENT_CODES.contains(&code.as_str()) {
                DeliveryError::transient(code)
            } else {
                DeliveryError::permanent(code)
            }
        }
        _ => DeliveryError::permanent("request_not_built"),
    };
    classified.with_request_id(request_id.as_deref())
}

fn unusable(_: impl std::error::Error) -> DeliveryError {
    DeliveryError::permanent("message_not_built")
}

/// Sends email with SES v2 `SendEmail`.
#[derive(Clone)]
pub struct SesMailer {
    client: LazyClient<aws_sdk_sesv2::Client>,
    from: String,
    configuration_set: Option<String>,
}

impl SesMailer {
    /// `from` must be a verified SES identity; `configuration_set` (optional) routes
    /// delivery events.
    pub fn new(client: impl Into<LazyClient<aws_sdk_sesv2::Client>>, from: String, configuration_set: Option<String>) -> Self {
        SesMailer { client: client.into(), from, configuration_set }
    }
}

fn utf8(text: &str) -> Result<Content, DeliveryError> {
    Content::builder().data(text).charset("UTF-8").build().map_err(unusable)
}

#[async_trait]
impl Mailer for SesMailer {
    async fn send_email(&self, message: &EmailMessage) -> Result<ProviderMessageId, DeliveryError> {
        let content = EmailContent::builder()
            .simple(Message::builder().subject(utf8(&message.subject)?).body(Body::builder().text(utf8(&message.body)?).build()).build())
            .build();
        let sent = self
            .client
            .get()
            .send_email()
            .from_email_address(&self.from)
            .destination(Destination::builder().to_addresses(message.to.as_str()).build())
            .content(content)
            .set_configuration_set_name(self.configuration_set.clone())
            .send()
            .await
            .map_err(delivery_error)?;
        Ok(sent.message_id.unwrap_or_default())
    }
}

/// Sends SMS with SNS `Publish` to a phone number, as transactional messages.
#[derive(Clone)]
pub struct SnsTexter {
    client: LazyClient<aws_sdk_sns::Client>,
    sender_id: Option<String>,
}

impl SnsTexter {
    /// `sender_id` is the alphanumeric sender shown on the phone, where the carrier allows one.
    pub fn new(client: impl Into<LazyClient<aws_sdk_sns::Client>>, sender_id: Option<String>) -> Self {
        SnsTexter { client: client.into(), sender_id }
    }
}

fn string_attribute(value: &str) -> Result<MessageAttributeValue, DeliveryError> {
    MessageAttributeValue::builder().data_type("String").string_value(value).build().map_err(unusable)
}

#[async_trait]
impl TextSender for SnsTexter {
    async fn send_sms(&self, message: &SmsMessage) -> Result<ProviderMessageId, DeliveryError> {
        let mut request = self
            .client
            .get()
            .publish()
            .phone_number(message.to.as_str())
            .message(&message.body)
            // Transactional: codes must arrive now, not at the cheapest moment.
            .message_attributes("AWS.SNS.SMS.SMSType", string_attribute("Transactional")?);
        if let Some(sender) = &self.sender_id {
            request = request.message_attributes("AWS.SNS.SMS.SenderID", string_attribute(sender)?);
        }
        let sent = request.send().await.map_err(delivery_error)?;
        Ok(sent.message_id.unwrap_or_default())
    }
}
