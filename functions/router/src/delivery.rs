//! Delivering one endpoint's share of a batch: cut to the endpoint's call limits, failed entries
//! retried with capped exponential backoff and jitter; what still fails comes back with its
//! reason for the dead-letter queue. A call the endpoint refuses for good (a deleted queue, no
//! permission) is not retried.

use hub_shared::error::Chain;
use hub_shared::ports::{Delivery, Endpoint, EndpointLimits};
use hub_shared::publish::RetryPolicy;

/// What an entry carries besides its body, counted against the endpoint's limits: message
/// attributes (SQS, SNS), source and detail type (EventBridge), partition key (Kinesis).
const ENTRY_OVERHEAD: usize = 512;

/// Delivers every item or says which (by position in `items`) did not go, and why.
pub async fn deliver_all<E: Endpoint>(
    endpoint: &E,
    items: &[(usize, Delivery)],
    retry: &RetryPolicy,
) -> Vec<(usize, String)> {
    let limits = endpoint.limits();
    let mut given_up = Vec::new();
    let mut pending: Vec<usize> = Vec::new();
    for (position, (_, delivery)) in items.iter().enumerate() {
        if delivery.body.len() + ENTRY_OVERHEAD > limits.message_bytes {
            given_up.push((
                position,
                format!(
                    "the routed message is {} bytes; this endpoint takes at most {}",
                    delivery.body.len(),
                    limits.message_bytes
                ),
            ));
        } else {
            pending.push(position);
        }
    }
    let mut reasons: Vec<Option<String>> = vec![None; items.len()];
    for attempt in 0..retry.max_attempts.max(1) {
        if pending.is_empty() {
            break;
        }
        if attempt > 0 {
            tokio::time::sleep(retry.delay(attempt)).await;
        }
        let mut failed = Vec::new();
        for call in calls(items, &pending, limits) {
            let batch: Vec<&Delivery> = call.iter().map(|p| &items[*p].1).collect();
            match endpoint.deliver(&batch).await {
                Ok(results) => {
                    for (position, result) in call.iter().zip(results) {
                        if let Some(why) = result {
                            reasons[*position] = Some(why);
                            failed.push(*position);
                        }
                    }
                }
                Err(error) if !error.is_transient() => {
                    let why = format!("the endpoint refused the call: {}", Chain(&error));
                    given_up.extend(call.iter().map(|p| (*p, why.clone())));
                }
                Err(error) => {
                    let why = Chain(&error).to_string();
                    for position in &call {
                        reasons[*position] = Some(why.clone());
                    }
                    failed.extend(call);
                }
            }
        }
        pending = failed;
    }
    let attempts = retry.max_attempts.max(1);
    given_up.extend(pending.into_iter().map(|p| {
        let why = reasons[p].take().unwrap_or_default();
        (p, format!("not delivered after {attempts} attempts: {why}"))
    }));
    given_up.sort_by_key(|(p, _)| *p);
    given_up
}

/// Positions cut into calls within the endpoint's message and byte limits, in order.
fn calls(
    items: &[(usize, Delivery)],
    pending: &[usize],
    limits: EndpointLimits,
) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0;
    for &position in pending {
        let size = items[position].1.body.len() + ENTRY_OVERHEAD;
        let fits = out
            .last()
            .is_some_and(|call| call.len() < limits.messages && bytes + size <= limits.bytes);
        if !fits {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        if let Some(call) = out.last_mut() {
            call.push(position);
        }
    }
    out
}
