//! The `registry` function: Azure IoT Hub's identity registry (api-version 2021-04-12) — devices,
//! bulk operations, statistics, lifecycle events — plus device twins for services and devices,
//! shared access policy key rotation, and the API's OpenAPI document.

pub mod bulk;
pub mod devices;
pub mod events;
pub mod fleet;
mod job_worker;
pub mod jobs;
pub mod methods;
pub mod policies;
pub mod query;
mod query_plan;
pub mod statistics;
pub mod twins;

use std::time::Duration;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use hub_shared::aws::{
    Clients, DynamoDbDeviceRegistry, DynamoDbJobStore, DynamoDbMethodCalls, DynamoDbPolicyStore,
    DynamoDbTwinStore, SqsQueue,
};
use hub_shared::clock::SharedClock;
use hub_shared::config::{ConfigError, Env, vars};
use hub_shared::connection::{ActivityConfig, ActivityTracker};
use hub_shared::domain::device::Device;
use hub_shared::domain::timestamp::Timestamp;
use hub_shared::http::{HandlerError, HttpRequest, Response, record_activity, respond};
use hub_shared::lambda::{Function, InvocationError};
use hub_shared::ports::{
    ConnectionStore, DeviceRegistry, JobStore, MethodCalls, PolicyStore, QueueSender, TwinStore,
};
use hub_shared::routes::{Access, Operation};
use serde_json::Value;

/// The HTTP API's description, served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// The registry table, the event queue, the hub's name and the connected window.
    pub activity: ActivityConfig,
    pub twins_table: String,
    pub twin_tags_table: String,
    pub method_calls_table: String,
    pub jobs_table: String,
    pub job_work_queue_url: String,
    pub policies_table: String,
    /// Whether every device is in the id index (else id-prefix searches read the registry).
    pub id_index_complete: bool,
}

impl RegistryConfig {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            activity: ActivityConfig::from_env(env)?,
            twins_table: env.required(vars::TWINS_TABLE)?,
            twin_tags_table: env.required(vars::TWIN_TAGS_TABLE)?,
            method_calls_table: env.required(vars::METHOD_CALLS_TABLE)?,
            jobs_table: env.required(vars::JOBS_TABLE)?,
            job_work_queue_url: env.required(vars::JOB_WORK_QUEUE_URL)?,
            policies_table: env.required(vars::POLICIES_TABLE)?,
            id_index_complete: env.parse_or(vars::ID_INDEX_COMPLETE, false)?,
        })
    }
}

/// The function as deployed: devices, twins, policies, method calls and jobs in DynamoDB,
/// lifecycle events and job work items in SQS.
pub type Handler = RegistryHandler<
    DynamoDbDeviceRegistry,
    DynamoDbTwinStore,
    DynamoDbPolicyStore,
    SqsQueue,
    DynamoDbMethodCalls,
    DynamoDbJobStore,
>;

/// Builds the function from its configuration, as its `main` does at cold start and the local
/// gateway does for its in-process functions.
pub fn build(config: &RegistryConfig, clients: &Clients) -> Handler {
    RegistryHandler::new(
        DynamoDbDeviceRegistry::new(clients.dynamodb.clone(), &config.activity.registry_table)
            .with_twins_table(&config.twins_table),
        DynamoDbTwinStore::new(clients.dynamodb.clone(), &config.twins_table)
            .with_tag_index(&config.twin_tags_table)
            .with_outbox(&config.activity.registry_table),
        DynamoDbPolicyStore::new(clients.dynamodb.clone(), &config.policies_table),
        config.activity.events_queue(clients),
        DynamoDbMethodCalls::new(clients.dynamodb.clone(), &config.method_calls_table),
        JobPorts {
            store: DynamoDbJobStore::new(clients.dynamodb.clone(), &config.jobs_table),
            work: SqsQueue::new(clients.sqs.clone(), &config.job_work_queue_url),
        },
        &config.activity.hub_name,
    )
    .with_connected_window(config.activity.connected_window)
    .with_id_index(config.id_index_complete)
}

/// Where jobs are kept, and the queue their work items go to.
pub struct JobPorts<J, Q> {
    pub store: J,
    pub work: Q,
}

pub struct RegistryHandler<R, T, P, Q, M, J> {
    pub registry: R,
    pub twins: T,
    pub policies: P,
    /// Where device lifecycle events go.
    pub events: Q,
    /// Direct method calls while they are waited for.
    pub methods: M,
    pub jobs: J,
    /// Where job work items go (the registry consumes them from SQS).
    pub job_work: Q,
    pub hub_name: String,
    /// How long an event may wait in the outbox before the sweep takes it as lost in transit
    /// (rather than about to be published by the request that wrote it).
    pub outbox_grace: Duration,
    /// A device active this recently counts as connected.
    pub connected_window: Duration,
    /// Every device is in the id index (see `with_id_index`).
    pub id_index_complete: bool,
    pub clock: SharedClock,
}

pub use hub_shared::connection::DEFAULT_CONNECTED_WINDOW;

impl<R, T, P, Q, M, J> RegistryHandler<R, T, P, Q, M, J> {
    /// Whether `device` counts as connected at `now`: HTTP devices hold no connection, so
    /// "connected" means active within the window.
    pub fn connected(&self, device: &Device, now: Timestamp) -> bool {
        device.last_activity_time >= self.connected_since(now)
    }

    /// The earliest activity that still counts as connected at `now`.
    pub fn connected_since(&self, now: Timestamp) -> Timestamp {
        hub_shared::connection::connected_since(now, self.connected_window)
    }
}

/// Longest a device may wait for a desired-properties change (`waitSeconds`).
pub const MAX_WAIT: Duration = Duration::from_secs(20);

impl<R, T, P, Q, M, J> RegistryHandler<R, T, P, Q, M, J>
where
    R: DeviceRegistry + ConnectionStore,
    T: TwinStore,
    P: PolicyStore,
    Q: QueueSender,
    M: MethodCalls,
    J: JobStore,
{
    pub fn new(
        registry: R,
        twins: T,
        policies: P,
        events: Q,
        methods: M,
        jobs: JobPorts<J, Q>,
        hub_name: impl Into<String>,
    ) -> Self {
        Self {
            registry,
            twins,
            policies,
            events,
            methods,
            jobs: jobs.store,
            job_work: jobs.work,
            hub_name: hub_name.into(),
            outbox_grace: Duration::from_secs(30),
            connected_window: DEFAULT_CONNECTED_WINDOW,
            id_index_complete: false,
            clock: hub_shared::clock::system(),
        }
    }

    pub fn with_connected_window(mut self, window: Duration) -> Self {
        self.connected_window = window;
        self
    }

    /// Searches by id prefix read the id index alone once it holds every device: a deployment
    /// older than the index gets there by updating each device (docs/queries.md).
    pub fn with_id_index(mut self, complete: bool) -> Self {
        self.id_index_complete = complete;
        self
    }

    /// Takes the time from `clock` (tests).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Device activity and connection state, in the registry with events to its queue.
    fn activity(&self) -> ActivityTracker<&R, &Q> {
        ActivityTracker::new(
            &self.registry,
            &self.events,
            self.hub_name.as_str(),
            self.connected_window,
        )
    }

    /// The scheduled sweep: disconnects silent devices, publishes what stayed in the outbox,
    /// resumes jobs. Each part runs even if one before it failed; any failure fails the
    /// invocation, so Lambda's retries, `Errors` metric and alarms see it.
    async fn sweep(&self) -> Result<Value, InvocationError> {
        let disconnected = self.activity().disconnect_silent(self.clock.now()).await;
        let published = self.publish_pending().await;
        let jobs = self.sweep_jobs().await;
        Ok(serde_json::json!({
            "disconnected": disconnected.map_err(InvocationError::Failed)?,
            "published": published.map_err(InvocationError::Failed)?,
            "jobsResumed": jobs.map_err(InvocationError::Failed)?,
        }))
    }

    pub async fn handle_http(&self, event: &ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
        let request = HttpRequest::new(event);
        let request_id = request.request_id().to_owned();
        if request
            .route()
            .is_some_and(|r| r.operation == Operation::OpenApi)
        {
            return Response::json_text(200, OPENAPI);
        }
        respond(self.dispatch(request).await, &request_id)
    }

    async fn dispatch(
        &self,
        request: HttpRequest<'_>,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let request = request.authorize()?;
        if request.route.access == Access::Device {
            record_activity(&self.activity(), &request, self.clock.now()).await;
        }
        match request.route.operation {
            Operation::CreateOrUpdateDevice => self.put_device(&request).await,
            Operation::GetDevice => self.get_device(&request).await,
            Operation::DeleteDevice => self.delete_device(&request).await,
            Operation::ListDevices => self.list_devices(&request).await,
            Operation::DeviceStatistics => {
                Ok(Response::json(200, &self.registry.statistics().await?))
            }
            Operation::BulkDevices => self.bulk(&request).await,
            Operation::GetTwin => self.get_twin(&request).await,
            Operation::PatchTwin => self.write_twin(&request, false).await,
            Operation::ReplaceTwin => self.write_twin(&request, true).await,
            Operation::DeviceGetTwin => self.device_twin(&request).await,
            Operation::DeviceUpdateReported => self.update_reported(&request).await,
            Operation::DeviceGetDesired => self.desired(&request).await,
            Operation::ListPolicies => self.list_policies().await,
            Operation::RegeneratePolicyKey => self.regenerate_key(&request).await,
            Operation::DescribeSession => self.describe_session(&request),
            Operation::ListFleet => self.list_fleet(&request).await,
            Operation::QueryDevices => self.query_devices(&request).await,
            Operation::ServiceStatistics => self.service_statistics().await,
            Operation::InvokeMethod => self.invoke_method(&request).await,
            Operation::DeviceReceiveMethod => self.receive_method(&request).await,
            Operation::DeviceRespondMethod => self.respond_method(&request).await,
            Operation::CreateJob => self.create_job(&request).await,
            Operation::GetJob => self.get_job(&request).await,
            Operation::CancelJob => self.cancel_job(&request).await,
            Operation::QueryJobs => self.query_jobs(&request).await,
            _ => Err(request.not_served("the registry").into()),
        }
    }
}

impl<R, T, P, Q, M, J> Function for RegistryHandler<R, T, P, Q, M, J>
where
    R: DeviceRegistry + ConnectionStore,
    T: TwinStore,
    P: PolicyStore,
    Q: QueueSender,
    M: MethodCalls,
    J: JobStore,
{
    /// Dispatches on the event's shape: a scheduled sweep (`detail-type`: connection states,
    /// the event outbox and the jobs), a batch of job work items from SQS (`Records`), or an API Gateway request. A
    /// sweep that fails fails the invocation.
    async fn invoke(&self, event: Value) -> Result<Value, InvocationError> {
        if event.get("detail-type").is_some() {
            return self.sweep().await;
        }
        if event.get("Records").is_some() {
            let batch: aws_lambda_events::sqs::SqsEvent = hub_shared::lambda::event(event)?;
            return hub_shared::lambda::response(&self.work_jobs(batch).await);
        }
        let request: ApiGatewayV2httpRequest = hub_shared::lambda::event(event)?;
        hub_shared::lambda::response(&self.handle_http(&request).await)
    }
}

#[cfg(test)]
mod tests;
