//! The cloud-to-device delivery rules over the ports: enqueue with the depth limit, receive with
//! locks and the delivery count, settle with feedback and dead-lettering, purge, and the sweep
//! that expires messages and finishes settlements interrupted half-way.

use std::time::Duration;

use hub_shared::clock::SharedClock;
use hub_shared::domain::command::{
    DeadLetteredCommand, DeliveryPolicy, FeedbackRecord, LockToken, NewCommand, Outcome,
    QueuedCommand,
};
use hub_shared::domain::device_id::DeviceId;
use hub_shared::domain::timestamp::Timestamp;
use hub_shared::error::Chain;
use hub_shared::ports::{
    AppendOutcome, CommandStore, DeadLetters, FeedbackQueue, QueueKey, SettleCondition,
    SettleOutcome, StoreError,
};

/// Appends racing on one device's queue head retry this many times before answering 503.
const MAX_APPEND_ATTEMPTS: u32 = 40;

#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("device {0} is not registered")]
    DeviceNotFound(DeviceId),
    #[error("device {device} already has {limit} messages queued")]
    QueueFull { device: DeviceId, limit: u32 },
    #[error("too many concurrent sends to device {0}; retry")]
    Contention(DeviceId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    pub message_id: String,
    pub sequence_number: u64,
    pub expires_at: Timestamp,
    /// The idempotency key had been seen: nothing new was enqueued.
    pub duplicate: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    pub expired: usize,
    pub dead_lettered: usize,
    pub finished: usize,
}

/// Why a sweep did not finish its work: what it did, and the first failure. The work left over
/// stays due, so the next sweep takes it up.
#[derive(Debug, thiserror::Error)]
#[error("the sweep left {left} item(s) unfinished ({report:?})")]
pub struct SweepError {
    pub report: SweepReport,
    pub left: usize,
    #[source]
    pub cause: StoreError,
}

/// Constructed with named fields: `feedback` and `dead_letters` are both SQS queues in a
/// deployment, and a swap would compile.
pub struct Commands<S, F, D> {
    pub store: S,
    pub feedback: F,
    pub dead_letters: D,
    pub policy: DeliveryPolicy,
    pub clock: SharedClock,
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn plus(at: Timestamp, duration: Duration) -> Timestamp {
    Timestamp::from_unix_millis(at.unix_millis().saturating_add(millis(duration))).unwrap_or(at)
}

impl<S: CommandStore, F: FeedbackQueue, D: DeadLetters> Commands<S, F, D> {
    /// Appends a message to the device's queue. With an idempotency key, a repeated request is
    /// reported as a duplicate and not enqueued again.
    pub async fn enqueue(
        &self,
        device: &DeviceId,
        new: NewCommand,
        idempotency_key: Option<&str>,
    ) -> Result<Enqueued, EnqueueError> {
        let now = self.clock.now();
        let expires_at = new
            .expires_at
            .unwrap_or_else(|| plus(now, self.policy.default_ttl));
        let message_id = new
            .message_id
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        for attempt in 0..MAX_APPEND_ATTEMPTS {
            let head = self
                .store
                .queue_head(device)
                .await?
                .ok_or_else(|| EnqueueError::DeviceNotFound(device.clone()))?;
            if head.depth >= self.policy.max_queue_depth {
                return Err(EnqueueError::QueueFull {
                    device: device.clone(),
                    limit: self.policy.max_queue_depth,
                });
            }
            let command = QueuedCommand {
                device_id: device.clone(),
                generation_id: head.queue.generation_id.clone(),
                sequence_number: head.last_sequence_number + 1,
                message_id: message_id.clone(),
                correlation_id: new.correlation_id.clone(),
                properties: new.properties.clone(),
                body: new.body.clone(),
                ack: new.ack,
                enqueued_time: now,
                expires_at,
                delivery_count: 0,
                lock: None,
            };
            let outcome = self
                .store
                .append(
                    &head,
                    &command,
                    self.policy.max_queue_depth,
                    idempotency_key,
                )
                .await?;
            match outcome {
                AppendOutcome::Appended | AppendOutcome::Duplicate => {
                    return Ok(Enqueued {
                        message_id,
                        sequence_number: command.sequence_number,
                        expires_at,
                        duplicate: outcome == AppendOutcome::Duplicate,
                    });
                }
                AppendOutcome::Conflict => {
                    // Another sender moved the head: back off a little, with jitter, and re-read.
                    let ceiling = 5 + 5 * u64::from(attempt.min(10));
                    tokio::time::sleep(Duration::from_millis(rand::random_range(0..=ceiling)))
                        .await;
                }
            }
        }
        Err(EnqueueError::Contention(device.clone()))
    }

    /// Locks and returns the oldest available message, retiring expired and undeliverable ones
    /// it meets on the way.
    pub async fn receive(&self, queue: &QueueKey) -> Result<Option<QueuedCommand>, StoreError> {
        let now = self.clock.now();
        for candidate in self.store.candidates(queue).await? {
            if candidate.expires_at <= now {
                self.retire(
                    queue,
                    candidate.sequence_number,
                    SettleCondition::Queued,
                    Outcome::Expired,
                    now,
                )
                .await?;
                continue;
            }
            if candidate.locked_until.is_some_and(|until| until > now) {
                continue;
            }
            if candidate.delivery_count >= self.policy.max_delivery_count {
                self.retire(
                    queue,
                    candidate.sequence_number,
                    SettleCondition::Unlocked,
                    Outcome::DeliveryCountExceeded,
                    now,
                )
                .await?;
                continue;
            }
            let token = LockToken::issue(candidate.sequence_number, candidate.ack);
            let until = plus(now, self.policy.lock_duration);
            if let Some(command) = self
                .store
                .lock(
                    queue,
                    candidate.sequence_number,
                    candidate.delivery_count,
                    &token,
                    until,
                    now,
                )
                .await?
            {
                return Ok(Some(command));
            }
            // Another receiver locked it first: try the next one.
        }
        Ok(None)
    }

    /// `receive`, waiting up to `wait` for a message to arrive (the long-poll extension).
    pub async fn receive_waiting(
        &self,
        queue: &QueueKey,
        wait: Duration,
    ) -> Result<Option<QueuedCommand>, StoreError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(100);
        loop {
            if let Some(command) = self.receive(queue).await? {
                return Ok(Some(command));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// Completes (`Success`) or rejects (`Rejected`) a message the device holds.
    pub async fn settle_locked(
        &self,
        queue: &QueueKey,
        token: &LockToken,
        outcome: Outcome,
    ) -> Result<SettleOutcome, StoreError> {
        let now = self.clock.now();
        let condition = SettleCondition::LockedBy(token.clone());
        if !token.ack().wants(outcome) {
            return self
                .store
                .settle(
                    queue,
                    token.sequence_number(),
                    &condition,
                    outcome,
                    false,
                    now,
                )
                .await;
        }
        let Some(stored) = self.store.get(queue, token.sequence_number()).await? else {
            return Ok(SettleOutcome::ConditionFailed);
        };
        let held = stored
            .command
            .lock
            .as_ref()
            .is_some_and(|lock| lock.token == *token && lock.until > now);
        if stored.settled.is_some() || !held {
            return Ok(SettleOutcome::ConditionFailed);
        }
        let settled = self
            .store
            .settle(
                queue,
                token.sequence_number(),
                &condition,
                outcome,
                true,
                now,
            )
            .await?;
        if settled == SettleOutcome::Settled
            && let Err(error) = self.finish(queue, &stored.command, outcome).await
        {
            // Settled, so the device's request succeeded; the record stays due for the sweep.
            tracing::warn!(error = %Chain(&error), device = %stored.command.device_id, "settlement left for the sweeper");
        }
        Ok(settled)
    }

    /// Releases a lock so the message can be received again; dead-letters it if it has been
    /// delivered the maximum number of times. `false` if the token does not hold the message.
    pub async fn abandon(&self, queue: &QueueKey, token: &LockToken) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let Some(command) = self.store.unlock(queue, token, now).await? else {
            return Ok(false);
        };
        if command.delivery_count >= self.policy.max_delivery_count {
            self.retire(
                queue,
                command.sequence_number,
                SettleCondition::Unlocked,
                Outcome::DeliveryCountExceeded,
                now,
            )
            .await?;
        }
        Ok(true)
    }

    /// Removes every queued message of the device (`Purged`); `None` if it is not registered.
    pub async fn purge(&self, device: &DeviceId) -> Result<Option<usize>, StoreError> {
        let Some(head) = self.store.queue_head(device).await? else {
            return Ok(None);
        };
        let now = self.clock.now();
        let mut purged = 0;
        for candidate in self.store.candidates(&head.queue).await? {
            if self
                .retire(
                    &head.queue,
                    candidate.sequence_number,
                    SettleCondition::Queued,
                    Outcome::Purged,
                    now,
                )
                .await?
            {
                purged += 1;
            }
        }
        Ok(Some(purged))
    }

    /// Expires due messages and finishes settled records whose feedback or dead-letter copy was
    /// not sent (the process died, or SQS failed). Runs on a schedule.
    pub async fn sweep(&self, limit: usize) -> Result<SweepReport, SweepError> {
        let now = self.clock.now();
        let mut report = SweepReport::default();
        let due = self
            .store
            .due(now, limit)
            .await
            .map_err(|cause| SweepError {
                report,
                left: 0,
                cause,
            })?;
        let mut left = 0;
        let mut first_failure = None;
        for (queue, sequence_number) in due {
            if let Err(error) = self
                .sweep_one(&queue, sequence_number, now, &mut report)
                .await
            {
                tracing::warn!(device = %queue.device_id, sequence_number, error = %Chain(&error), "sweep item left for the next sweep");
                left += 1;
                first_failure.get_or_insert(error);
            }
        }
        match first_failure {
            None => Ok(report),
            Some(cause) => Err(SweepError {
                report,
                left,
                cause,
            }),
        }
    }

    async fn sweep_one(
        &self,
        queue: &QueueKey,
        sequence_number: u64,
        now: Timestamp,
        report: &mut SweepReport,
    ) -> Result<(), StoreError> {
        let queue = queue.clone();
        {
            let Some(stored) = self.store.get(&queue, sequence_number).await? else {
                return Ok(());
            };
            match stored.settled {
                Some(outcome) => {
                    self.finish(&queue, &stored.command, outcome).await?;
                    report.finished += 1;
                }
                None if stored.command.expires_at <= now => {
                    let lock_expired = stored
                        .command
                        .lock
                        .as_ref()
                        .is_none_or(|lock| lock.until <= now);
                    let outcome = if lock_expired
                        && stored.command.delivery_count >= self.policy.max_delivery_count
                    {
                        Outcome::DeliveryCountExceeded
                    } else {
                        Outcome::Expired
                    };
                    if self
                        .retire(
                            &queue,
                            sequence_number,
                            SettleCondition::Queued,
                            outcome,
                            now,
                        )
                        .await?
                    {
                        match outcome {
                            Outcome::DeliveryCountExceeded => report.dead_lettered += 1,
                            _ => report.expired += 1,
                        }
                    }
                }
                None => {}
            }
        }
        Ok(())
    }

    /// Takes a message out of its queue for a reason other than the device settling it. Keeps a
    /// settled record while feedback or a dead-letter copy is to be sent. `true` if it was settled.
    async fn retire(
        &self,
        queue: &QueueKey,
        sequence_number: u64,
        condition: SettleCondition,
        outcome: Outcome,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let Some(stored) = self.store.get(queue, sequence_number).await? else {
            return Ok(false);
        };
        if stored.settled.is_some() {
            return Ok(false);
        }
        let keep = outcome == Outcome::DeliveryCountExceeded || stored.command.ack.wants(outcome);
        let settled = self
            .store
            .settle(queue, sequence_number, &condition, outcome, keep, now)
            .await?;
        if settled == SettleOutcome::ConditionFailed {
            return Ok(false);
        }
        if keep && let Err(error) = self.finish(queue, &stored.command, outcome).await {
            // Settled, so the caller's request succeeded; the record stays due for the sweep.
            tracing::warn!(error = %Chain(&error), device = %stored.command.device_id, "settlement left for the sweeper");
        }
        Ok(true)
    }

    /// Sends what a settled message still owes (dead-letter copy, feedback), then removes its
    /// record. On failure the record stays for the sweeper.
    async fn finish(
        &self,
        queue: &QueueKey,
        command: &QueuedCommand,
        outcome: Outcome,
    ) -> Result<(), StoreError> {
        {
            if outcome == Outcome::DeliveryCountExceeded {
                let body = serde_json::to_string(&DeadLetteredCommand::new(command, outcome))
                    .map_err(|e| StoreError::rejected("dead-lettering a command", e))?;
                self.dead_letters.send(&body, outcome.as_str()).await?;
            }
            if command.ack.wants(outcome) {
                self.feedback
                    .publish(&FeedbackRecord::for_outcome(
                        command,
                        outcome,
                        self.clock.now(),
                    ))
                    .await?;
            }
            self.store.delete(queue, command.sequence_number).await
        }
    }
}
