//! Azure's job API (`/jobs/v2`, api-version 2021-04-12): create a `scheduleUpdateTwin` or
//! `scheduleDeviceMethod` job over the devices a query condition selects, read it, list jobs by
//! type and status, cancel it. The work itself happens in the background (`job_worker`), so
//! creating a job answers at once; docs/jobs.md says how it runs.

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64_URL;
use hub_shared::authz::check_access;
use hub_shared::domain::job::{Job, JobSpec, JobStatus, JobType, JobWork, valid_job_id};
use hub_shared::domain::policy::Permission;
use hub_shared::error::{ApiError, ErrorCode};
use hub_shared::http::{AuthorizedRequest, HandlerError, Response};
use hub_shared::ports::{
    DeviceRegistry, JobStore, MethodCalls, PolicyStore, QueueSender, TwinStore,
};
use hub_shared::query::parse_condition;
use hub_shared::routes::{Access, decode_segment};
use serde::{Deserialize, Serialize};

use crate::RegistryHandler;
use crate::query::page_size;

const CONTINUATION: &str = "x-ms-continuation";

fn bad(message: impl Into<String>) -> HandlerError {
    ApiError::bad_request(message).into()
}

fn job_not_found(job_id: &str) -> HandlerError {
    ApiError::new(ErrorCode::NotFound, format!("job {job_id} does not exist")).into()
}

/// Where the next page of a job listing starts: how many jobs were answered already.
#[derive(Debug, Serialize, Deserialize)]
struct JobsContinuation {
    served: usize,
}

pub(crate) fn work_item(work: &JobWork) -> String {
    serde_json::to_string(work).unwrap_or_default()
}

impl<R: DeviceRegistry, T: TwinStore, P: PolicyStore, Q: QueueSender, M: MethodCalls, J: JobStore>
    RegistryHandler<R, T, P, Q, M, J>
{
    fn path_job(request: &AuthorizedRequest<'_>) -> Result<String, HandlerError> {
        let id = request
            .params
            .get("jobId")
            .and_then(decode_segment)
            .map(|id| id.into_owned())
            .ok_or_else(|| bad("the path has no job id"))?;
        if !valid_job_id(&id) {
            return Err(bad(format!(
                "job id {id:?} is not valid: 1 to 128 letters, digits or -_.:"
            )));
        }
        Ok(id)
    }

    /// `PUT /jobs/v2/{jobId}`: validates and stores the job, then hands it to the worker.
    pub(crate) async fn create_job(
        &self,
        request: &AuthorizedRequest<'_>,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let job_id = Self::path_job(request)?;
        let now = self.clock.now();
        let spec =
            JobSpec::parse(&job_id, &request.http.body()?, now).map_err(|e| bad(e.to_string()))?;
        // Calling devices is ServiceConnect's right; the route itself needs RegistryWrite.
        if spec.job_type == JobType::ScheduleDeviceMethod {
            check_access(
                Access::Service(Permission::ServiceConnect),
                None,
                &request.principal,
            )?;
        }
        parse_condition(&spec.query_condition).map_err(|e| {
            bad(format!(
                "queryCondition is not valid: {}",
                e.located(&spec.query_condition)
            ))
        })?;
        let job = Job::new(spec, now);
        if !self.jobs.create_job(&job).await? {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("a job with id {job_id} exists already; jobs are kept for 30 days"),
            )
            .into());
        }
        if job.status == JobStatus::Queued {
            // Stored, so the job will run: the sweep starts queued jobs whose first work item
            // was lost, and this answer must not claim otherwise.
            if let Err(error) = self
                .job_work
                .send_all(&[work_item(&JobWork::Expand {
                    job_id: job_id.clone(),
                })])
                .await
            {
                tracing::warn!(job = job_id, error = %hub_shared::error::Chain(&error), "the job starts with the next sweep");
            }
        }
        Ok(Response::json(200, &job.to_json()))
    }

    /// `GET /jobs/v2/{jobId}`.
    pub(crate) async fn get_job(
        &self,
        request: &AuthorizedRequest<'_>,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let job_id = Self::path_job(request)?;
        self.job_response(&job_id).await
    }

    /// The job as Azure's `JobResponse`, or 404.
    async fn job_response(&self, job_id: &str) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let job = self
            .jobs
            .get_job(job_id)
            .await?
            .ok_or_else(|| job_not_found(job_id))?;
        Ok(Response::json(200, &job.to_json()))
    }

    /// `POST /jobs/v2/{jobId}/cancel`: devices not yet done are not done; a finished job is
    /// answered as it is.
    pub(crate) async fn cancel_job(
        &self,
        request: &AuthorizedRequest<'_>,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let job_id = Self::path_job(request)?;
        self.jobs
            .set_status(
                &job_id,
                &JobStatus::ACTIVE,
                JobStatus::Cancelled,
                self.clock.now(),
                None,
            )
            .await?;
        self.job_response(&job_id).await
    }

    /// `GET /jobs/v2/query?jobType=&jobStatus=`: jobs newest first, a page at a time.
    pub(crate) async fn query_jobs(
        &self,
        request: &AuthorizedRequest<'_>,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let job_type = request
            .http
            .query("jobType")
            .filter(|t| !t.is_empty())
            .map(|t| {
                JobType::parse(t).ok_or_else(|| {
                    bad("jobType must be scheduleUpdateTwin or scheduleDeviceMethod")
                })
            })
            .transpose()?;
        let status = request
            .http
            .query("jobStatus")
            .filter(|s| !s.is_empty())
            .map(|s| {
                JobStatus::parse(s).ok_or_else(|| {
                    bad("jobStatus must be queued, scheduled, running, completed, failed or cancelled")
                })
            })
            .transpose()?;
        let page_size = page_size(request)?;
        let served = match request.http.header(CONTINUATION).filter(|v| !v.is_empty()) {
            None => 0,
            Some(token) => {
                BASE64_URL
                    .decode(token)
                    .ok()
                    .and_then(|bytes| serde_json::from_slice::<JobsContinuation>(&bytes).ok())
                    .ok_or_else(|| bad("the continuation token is not one of a job listing"))?
                    .served
            }
        };
        let matching: Vec<Job> = self
            .jobs
            .list_jobs()
            .await?
            .into_iter()
            .filter(|j| job_type.is_none_or(|t| j.spec.job_type == t))
            .filter(|j| status.is_none_or(|s| j.status == s))
            .collect();
        let end = (served + page_size).min(matching.len());
        let items: Vec<_> = matching
            .get(served.min(end)..end)
            .unwrap_or_default()
            .iter()
            .map(Job::to_json)
            .collect();
        // The item type Azure's SDKs read to decode a page (C#'s is case-sensitive).
        let mut response =
            Response::with_header(Response::json(200, &items), "x-ms-item-type", "JobResponse");
        if end < matching.len() {
            let token = BASE64_URL
                .encode(serde_json::to_vec(&JobsContinuation { served: end }).unwrap_or_default());
            response = Response::with_header(response, CONTINUATION, &token);
        }
        Ok(response)
    }
}
