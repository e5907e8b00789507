//! Cloud-to-device messages ("commands") with Azure IoT Hub's delivery semantics: a FIFO queue per
//! device, receive locks with lock tokens, a maximum delivery count, expiry, and feedback for the
//! outcomes the sender's `ack` asked for.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::device_id::DeviceId;
use crate::domain::envelope::Properties;
use crate::domain::timestamp::Timestamp;

/// Azure's limit for one cloud-to-device message.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;

/// Which outcomes produce a feedback record (Azure's `iothub-ack`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckMode {
    #[default]
    None,
    /// Feedback when the device completes the message.
    Positive,
    /// Feedback when the message ends any other way (rejected, expired, too many deliveries, purged).
    Negative,
    /// Feedback for every outcome.
    Full,
}

impl AckMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AckMode::None => "none",
            AckMode::Positive => "positive",
            AckMode::Negative => "negative",
            AckMode::Full => "full",
        }
    }

    pub fn wants(self, outcome: Outcome) -> bool {
        match self {
            AckMode::None => false,
            AckMode::Positive => outcome == Outcome::Success,
            AckMode::Negative => outcome != Outcome::Success,
            AckMode::Full => true,
        }
    }

    /// One character, carried in lock tokens.
    fn code(self) -> char {
        match self {
            AckMode::None => 'n',
            AckMode::Positive => 'p',
            AckMode::Negative => 'g',
            AckMode::Full => 'f',
        }
    }

    fn from_code(code: char) -> Option<Self> {
        Some(match code {
            'n' => AckMode::None,
            'p' => AckMode::Positive,
            'g' => AckMode::Negative,
            'f' => AckMode::Full,
            _ => return None,
        })
    }
}

impl FromStr for AckMode {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(AckMode::None),
            "positive" => Ok(AckMode::Positive),
            "negative" => Ok(AckMode::Negative),
            "full" => Ok(AckMode::Full),
            other => Err(format!(
                "iothub-ack must be none, positive, negative or full, not {other:?}"
            )),
        }
    }
}

/// How a message left its queue; the `statusCode` of Azure's feedback records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    Success,
    Expired,
    DeliveryCountExceeded,
    Rejected,
    Purged,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "Success",
            Outcome::Expired => "Expired",
            Outcome::DeliveryCountExceeded => "DeliveryCountExceeded",
            Outcome::Rejected => "Rejected",
            Outcome::Purged => "Purged",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Outcome::Success => "Success",
            Outcome::Expired => "Message Expired",
            Outcome::DeliveryCountExceeded => "Message delivery count exceeded",
            Outcome::Rejected => "Message rejected",
            Outcome::Purged => "Message purged",
        }
    }
}

impl FromStr for Outcome {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        [
            Outcome::Success,
            Outcome::Expired,
            Outcome::DeliveryCountExceeded,
            Outcome::Rejected,
            Outcome::Purged,
        ]
        .into_iter()
        .find(|o| o.as_str() == value)
        .ok_or_else(|| format!("unknown outcome {value:?}"))
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A cloud-to-device message as a back end submits it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewCommand {
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    pub properties: Properties,
    pub body: Vec<u8>,
    pub ack: AckMode,
    /// Absolute expiry; `None` means the hub's default time to live.
    pub expires_at: Option<Timestamp>,
}

/// A message in a device's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedCommand {
    pub device_id: DeviceId,
    pub generation_id: String,
    pub sequence_number: u64,
    pub message_id: String,
    pub correlation_id: Option<String>,
    pub properties: Properties,
    pub body: Vec<u8>,
    pub ack: AckMode,
    pub enqueued_time: Timestamp,
    pub expires_at: Timestamp,
    pub delivery_count: u32,
    /// Set while a receiver holds the message.
    pub lock: Option<Lock>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    pub token: LockToken,
    pub until: Timestamp,
}

/// Delivery rules of the hub (all configurable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryPolicy {
    pub max_queue_depth: u32,
    pub lock_duration: Duration,
    pub max_delivery_count: u32,
    pub default_ttl: Duration,
    pub max_ttl: Duration,
}

impl Default for DeliveryPolicy {
    /// Azure IoT Hub's defaults.
    fn default() -> Self {
        Self {
            max_queue_depth: 50,
            lock_duration: Duration::from_secs(60),
            max_delivery_count: 10,
            default_ttl: Duration::from_secs(3600),
            max_ttl: Duration::from_secs(2 * 24 * 3600),
        }
    }
}

/// The lock token a receiver gets in `ETag`: `<sequence number>-<ack code><32 hex digits>`.
/// It names the message (so settling needs no index) and carries the `ack` mode (so settling
/// knows whether feedback is due); the random part makes it unguessable, and the store compares
/// the whole token, so a token altered in any way no longer matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LockToken(String);

impl LockToken {
    pub fn issue(sequence_number: u64, ack: AckMode) -> Self {
        Self(format!(
            "{sequence_number}-{}{}",
            ack.code(),
            uuid::Uuid::new_v4().simple()
        ))
    }

    /// Accepts the token quoted (as in `ETag`) or not.
    pub fn parse(value: &str) -> Option<Self> {
        let token = value.trim().trim_matches('"');
        let (sequence, rest) = token.split_once('-')?;
        sequence.parse::<u64>().ok()?;
        let mut chars = rest.chars();
        AckMode::from_code(chars.next()?)?;
        let random = chars.as_str();
        (random.len() == 32 && random.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Self(token.to_owned()))
    }

    pub fn sequence_number(&self) -> u64 {
        self.0
            .split_once('-')
            .and_then(|(s, _)| s.parse().ok())
            .unwrap_or_default()
    }

    pub fn ack(&self) -> AckMode {
        self.0
            .split_once('-')
            .and_then(|(_, rest)| rest.chars().next())
            .and_then(AckMode::from_code)
            .unwrap_or_default()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LockToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One feedback record, in Azure's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedbackRecord {
    pub original_message_id: String,
    pub device_generation_id: String,
    pub device_id: String,
    pub enqueued_time_utc: Timestamp,
    pub status_code: Outcome,
    pub description: String,
}

impl FeedbackRecord {
    pub fn for_outcome(command: &QueuedCommand, outcome: Outcome, at: Timestamp) -> Self {
        Self {
            original_message_id: command.message_id.clone(),
            device_generation_id: command.generation_id.clone(),
            device_id: command.device_id.to_string(),
            enqueued_time_utc: at,
            status_code: outcome,
            description: outcome.description().to_owned(),
        }
    }
}

/// What a dead-letter queue receives for a message that could not be delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetteredCommand {
    pub reason: Outcome,
    pub device_id: String,
    pub device_generation_id: String,
    pub message_id: String,
    pub correlation_id: Option<String>,
    pub sequence_number: u64,
    pub enqueued_time_utc: Timestamp,
    pub expiry_time_utc: Timestamp,
    pub delivery_count: u32,
    pub properties: Properties,
    /// The body, base64.
    pub body: String,
}

impl DeadLetteredCommand {
    pub fn new(command: &QueuedCommand, reason: Outcome) -> Self {
        use base64::Engine as _;
        Self {
            reason,
            device_id: command.device_id.to_string(),
            device_generation_id: command.generation_id.clone(),
            message_id: command.message_id.clone(),
            correlation_id: command.correlation_id.clone(),
            sequence_number: command.sequence_number,
            enqueued_time_utc: command.enqueued_time,
            expiry_time_utc: command.expires_at,
            delivery_count: command.delivery_count,
            properties: command.properties.clone(),
            body: base64::engine::general_purpose::STANDARD.encode(&command.body),
        }
    }
}

/// A request to enqueue a message, as asynchronous producers (rules, bulk sends) put it on the
/// `command-requests` queue. `requestId` makes processing idempotent: a redelivered request is
/// enqueued once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommandRequest {
    pub request_id: String,
    pub device_id: DeviceId,
    /// The message body, base64.
    pub body: String,
    #[serde(default)]
    pub message_id: Option<String>,
    #[serde(default)]
    pub correlation_id: Option<String>,
    #[serde(default)]
    pub properties: Properties,
    #[serde(default)]
    pub ack: AckMode,
    /// Time to live in seconds; the hub's default when absent.
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_modes_select_outcomes_as_azure_does() {
        use Outcome::*;
        let all = [Success, Expired, DeliveryCountExceeded, Rejected, Purged];
        assert!(all.iter().all(|o| !AckMode::None.wants(*o)));
        assert!(all.iter().all(|o| AckMode::Full.wants(*o)));
        assert_eq!(
            all.iter()
                .filter(|o| AckMode::Positive.wants(**o))
                .collect::<Vec<_>>(),
            [&Success]
        );
        assert_eq!(
            all.iter().filter(|o| AckMode::Negative.wants(**o)).count(),
            4
        );
        assert!(!AckMode::Negative.wants(Success));
        assert_eq!("FULL".parse::<AckMode>(), Ok(AckMode::Full));
        assert!("sometimes".parse::<AckMode>().is_err());
    }

    #[test]
    fn lock_tokens_carry_sequence_and_ack_and_parse_quoted() {
        let token = LockToken::issue(42, AckMode::Negative);
        assert_eq!(token.sequence_number(), 42);
        assert_eq!(token.ack(), AckMode::Negative);
        assert_eq!(
            LockToken::parse(&format!("\"{token}\"")),
            Some(token.clone())
        );
        assert_ne!(
            LockToken::issue(42, AckMode::Negative),
            token,
            "random part"
        );
        assert!(
            token
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "path and header safe"
        );
    }

    #[test]
    fn malformed_lock_tokens_are_refused() {
        for bad in [
            "",
            "x",
            "12",
            "12-",
            "12-x0123456789abcdef0123456789abcdef",
            "a-n0123456789abcdef0123456789abcdef",
            "1-n0123",
        ] {
            assert_eq!(LockToken::parse(bad), None, "{bad:?}");
        }
        assert!(LockToken::parse("7-f0123456789abcdef0123456789abcdef").is_some());
    }

    #[test]
    fn feedback_records_have_azure_field_names() {
        let command = QueuedCommand {
            device_id: DeviceId::parse("d1").unwrap(),
            generation_id: "638".into(),
            sequence_number: 1,
            message_id: "m1".into(),
            correlation_id: None,
            properties: Properties::new(),
            body: vec![],
            ack: AckMode::Full,
            enqueued_time: Timestamp::NEVER,
            expires_at: Timestamp::NEVER,
            delivery_count: 0,
            lock: None,
        };
        let record = FeedbackRecord::for_outcome(
            &command,
            Outcome::Rejected,
            Timestamp::from_unix_millis(0).unwrap(),
        );
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "originalMessageId": "m1", "deviceGenerationId": "638", "deviceId": "d1",
                "enqueuedTimeUtc": "1970-01-01T00:00:00Z", "statusCode": "Rejected", "description": "Message rejected"
            })
        );
    }

    #[test]
    fn command_requests_are_strict_json() {
        let ok: CommandRequest = serde_json::from_str(
            r#"{"requestId":"r1","deviceId":"d1","body":"aGk=","ack":"full","ttlSeconds":60}"#,
        )
        .unwrap();
        assert_eq!(ok.ack, AckMode::Full);
        assert!(
            serde_json::from_str::<CommandRequest>(
                r#"{"requestId":"r1","deviceId":"bad id","body":""}"#
            )
            .is_err()
        );
        assert!(
            serde_json::from_str::<CommandRequest>(
                r#"{"requestId":"r1","deviceId":"d","body":"","extra":1}"#
            )
            .is_err()
        );
    }
}
