//! Turning AWS SDK failures into [`StoreError`]s of the right [`FailureKind`]: what a retry can
//! fix (throttling, timeouts, 5xx) is transient; what it cannot (access denied, a missing table,
//! an invalid request) is rejected; an item the hub cannot read is corrupt.

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;

use crate::ports::{FailureKind, StoreError};

/// Error codes AWS services answer for a call that will fail the same way every time it is made.
const PERMANENT_CODES: &[&str] = &[
    // Identity and permissions.
    "AccessDenied",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "MissingAuthenticationToken",
    "IncompleteSignature",
    "ExpiredTokenException",
    "KMSAccessDeniedException",
    "KMSDisabledException",
    "KMSNotFoundException",
    "KMSInvalidStateException",
    "KMSOptInRequired",
    // Missing resources: a table, stream or queue the configuration names does not exist.
    "ResourceNotFoundException",
    "QueueDoesNotExist",
    "AWS.SimpleQueueService.NonExistentQueue",
    // Requests the service will never accept as made.
    "ValidationException",
    "SerializationException",
    "InvalidArgumentException",
    "InvalidParameterValue",
    "InvalidParameterValueException",
    "InvalidParameterCombination",
    "InvalidAttributeName",
    "InvalidAttributeValue",
    "InvalidMessageContents",
    "InvalidAddress",
    "UnsupportedOperation",
    "ConditionalCheckFailedException",
    "ItemCollectionSizeLimitExceededException",
];

/// The kind of an error code; unknown codes count as transient, so a failure nobody anticipated
/// is retried (and alarmed on) rather than given up.
pub fn kind_of_code(code: Option<&str>) -> FailureKind {
    match code {
        Some(code) if PERMANENT_CODES.contains(&code) => FailureKind::Rejected,
        _ => FailureKind::Transient,
    }
}

pub fn classify<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> FailureKind {
    match error {
        // The SDK could not even build the request: the code asked for something impossible.
        SdkError::ConstructionFailure(_) => FailureKind::Rejected,
        SdkError::ServiceError(context) => kind_of_code(context.err().code()),
        // Timeouts, connection failures, unreadable responses.
        _ => FailureKind::Transient,
    }
}

/// `map_err` for a failed SDK call.
pub fn sdk_error<E, R>(operation: &'static str) -> impl FnOnce(SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    move |error| {
        let kind = classify(&error);
        StoreError::new(operation, kind, error)
    }
}

/// `map_err` for a failed transaction whose condition failures the caller did not expect: the
/// cancellation reasons tell throttling and conflicts (transient) from invalid or failed items.
pub fn transaction_error<R>(
    operation: &'static str,
) -> impl FnOnce(SdkError<TransactWriteItemsError, R>) -> StoreError
where
    R: std::fmt::Debug + Send + Sync + 'static,
{
    move |error| {
        let kind = match error.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
                let codes: Vec<Option<&str>> = cancelled
                    .cancellation_reasons()
                    .iter()
                    .map(|r| r.code())
                    .collect();
                cancellation_kind(&codes)
            }
            _ => classify(&error),
        };
        StoreError::new(operation, kind, error)
    }
}

/// A cancelled transaction is transient when every reason is "None" (the item was fine), a
/// conflict with another transaction, or throttling.
pub fn cancellation_kind(codes: &[Option<&str>]) -> FailureKind {
    let retryable = |code: &Option<&str>| {
        matches!(
            code,
            None | Some(
                "None"
                    | "TransactionConflict"
                    | "ThrottlingError"
                    | "ProvisionedThroughputExceeded"
                    | "RequestLimitExceeded"
            )
        )
    };
    if codes.iter().all(retryable) {
        FailureKind::Transient
    } else {
        FailureKind::Rejected
    }
}

/// `map_err` for a request builder that refused its input (a missing required field): a bug.
pub fn build_error(
    operation: &'static str,
) -> impl FnOnce(aws_sdk_dynamodb::error::BuildError) -> StoreError {
    move |error| StoreError::rejected(operation, error)
}

/// `map_err` for a stored item that does not decode.
pub fn corrupt_item<E>(operation: &'static str) -> impl FnOnce(E) -> StoreError
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    move |error| StoreError::corrupt(operation, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_and_unknown_codes_are_transient_permissions_and_missing_resources_are_not() {
        for code in [
            "ProvisionedThroughputExceededException",
            "ThrottlingException",
            "InternalServerError",
            "ServiceUnavailable",
            "SomethingNew",
        ] {
            assert_eq!(kind_of_code(Some(code)), FailureKind::Transient, "{code}");
        }
        assert_eq!(kind_of_code(None), FailureKind::Transient);
        for code in [
            "AccessDeniedException",
            "ResourceNotFoundException",
            "ValidationException",
            "AWS.SimpleQueueService.NonExistentQueue",
        ] {
            assert_eq!(kind_of_code(Some(code)), FailureKind::Rejected, "{code}");
        }
    }

    #[test]
    fn cancelled_transactions_are_transient_only_for_conflicts_and_throttling() {
        assert_eq!(
            cancellation_kind(&[Some("None"), Some("TransactionConflict")]),
            FailureKind::Transient
        );
        assert_eq!(
            cancellation_kind(&[Some("ThrottlingError")]),
            FailureKind::Transient
        );
        assert_eq!(
            cancellation_kind(&[Some("None"), Some("ValidationError")]),
            FailureKind::Rejected
        );
        assert_eq!(
            cancellation_kind(&[Some("ConditionalCheckFailed")]),
            FailureKind::Rejected
        );
    }
}
