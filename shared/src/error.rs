//! Errors as the hub's HTTP API reports them: Azure IoT Hub's error codes, status codes and body.
//!
//! Body: `{"Message":"ErrorCode:<Code>;<message>","ExceptionMessage":"Tracking ID:<id>-TimeStamp:<time>"}`
//! and the code again in the `iothub-errorcode` header, which is what Azure's SDKs read.

use std::fmt;

use serde::Serialize;

use crate::domain::timestamp::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    ArgumentInvalid,
    ArgumentNull,
    IotHubUnauthorizedAccess,
    DeviceMaximumQueueDepthExceeded,
    DeviceNotFound,
    DeviceNotOnline,
    NotFound,
    DeviceAlreadyExists,
    Conflict,
    PreconditionFailed,
    MessageTooLarge,
    RequestEntityTooLarge,
    ServiceUnavailable,
    ServerError,
    GatewayTimeout,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ArgumentInvalid => "ArgumentInvalid",
            ErrorCode::ArgumentNull => "ArgumentNull",
            ErrorCode::IotHubUnauthorizedAccess => "IotHubUnauthorizedAccess",
            ErrorCode::DeviceMaximumQueueDepthExceeded => "DeviceMaximumQueueDepthExceeded",
            ErrorCode::DeviceNotFound => "DeviceNotFound",
            ErrorCode::DeviceNotOnline => "DeviceNotOnline",
            ErrorCode::NotFound => "NotFound",
            ErrorCode::Conflict => "Conflict",
            ErrorCode::DeviceAlreadyExists => "DeviceAlreadyExists",
            ErrorCode::PreconditionFailed => "PreconditionFailed",
            ErrorCode::MessageTooLarge => "MessageTooLarge",
            ErrorCode::RequestEntityTooLarge => "RequestEntityTooLarge",
            ErrorCode::ServiceUnavailable => "ServiceUnavailable",
            ErrorCode::ServerError => "ServerError",
            ErrorCode::GatewayTimeout => "GatewayTimeout",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            ErrorCode::ArgumentInvalid | ErrorCode::ArgumentNull => 400,
            ErrorCode::IotHubUnauthorizedAccess => 401,
            ErrorCode::DeviceMaximumQueueDepthExceeded => 403,
            ErrorCode::DeviceNotFound | ErrorCode::DeviceNotOnline | ErrorCode::NotFound => 404,
            ErrorCode::DeviceAlreadyExists | ErrorCode::Conflict => 409,
            ErrorCode::PreconditionFailed => 412,
            ErrorCode::MessageTooLarge | ErrorCode::RequestEntityTooLarge => 413,
            ErrorCode::ServerError => 500,
            ErrorCode::ServiceUnavailable => 503,
            ErrorCode::GatewayTimeout => 504,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error answered to a client. The message is for people; never put secrets in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ArgumentInvalid, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::IotHubUnauthorizedAccess, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ServiceUnavailable, message)
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// The JSON body, with the request id as Azure's tracking id.
    pub fn body(&self, tracking_id: &str, now: Timestamp) -> ErrorBody {
        let time = now.datetime();
        ErrorBody {
            message: format!("ErrorCode:{};{}", self.code, self.message),
            exception_message: format!(
                "Tracking ID:{tracking_id}-TimeStamp:{:02}/{:02}/{:04} {:02}:{:02}:{:02}",
                u8::from(time.month()),
                time.day(),
                time.year(),
                time.hour(),
                time.minute(),
                time.second()
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ErrorBody {
    #[serde(rename = "Message")]
    pub message: String,
    #[serde(rename = "ExceptionMessage")]
    pub exception_message: String,
}

impl ErrorBody {
    /// The error code named in `Message`, as Azure's SDKs extract it.
    pub fn code(&self) -> Option<&str> {
        self.message.strip_prefix("ErrorCode:")?.split(';').next()
    }
}

/// Formats an error with its whole `source()` chain, for logging it once at the boundary.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_azure_shape() {
        let error = ApiError::new(ErrorCode::DeviceNotFound, "Device dev1 is not registered");
        let body = error.body(
            "req-1",
            Timestamp::from_unix_millis(1_700_000_000_000).unwrap(),
        );
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(
            json["Message"],
            "ErrorCode:DeviceNotFound;Device dev1 is not registered"
        );
        assert_eq!(
            json["ExceptionMessage"],
            "Tracking ID:req-1-TimeStamp:11/14/2023 22:13:20"
        );
        assert_eq!(body.code(), Some("DeviceNotFound"));
        assert_eq!(error.status(), 404);
    }

    #[test]
    fn chain_prints_every_cause() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let error = Outer(std::io::Error::other("inner"));
        assert_eq!(Chain(&error).to_string(), "outer: inner");
    }
}
