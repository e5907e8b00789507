//! The hub's HTTP routes: one table for the authorizer (who may call what), the handlers (what to
//! run), and the local gateway (how to match a request as API Gateway would). `infra/routes.json`
//! deploys the same keys; a test keeps the two equal.
//!
//! API Gateway matches literal path segments case-sensitively, so where Azure's SDKs use more than
//! one spelling of a path, each spelling is a route of its own.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

use crate::domain::device_id::DeviceId;
use crate::domain::policy::Permission;
use crate::error::ApiError;

/// The Lambda function that serves a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    Registry,
    Ingest,
    Commands,
    Analytics,
    Dashboard,
}

impl Function {
    pub const ALL: [Function; 5] = [
        Function::Registry,
        Function::Ingest,
        Function::Commands,
        Function::Analytics,
        Function::Dashboard,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Function::Registry => "registry",
            Function::Ingest => "ingest",
            Function::Commands => "commands",
            Function::Analytics => "analytics",
            Function::Dashboard => "dashboard",
        }
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The device named in the path: a token signed with its own key, or with a shared access
    /// policy that has DeviceConnect (Azure allows both).
    Device,
    /// A service token whose shared access policy has this permission.
    Service(Permission),
    /// A service token whose policy has every permission (the hub's owner: iothubowner).
    Owner,
    /// A service token of any shared access policy, whatever its rights.
    AnyPolicy,
    /// Anyone, without a token (API Gateway attaches no authorizer).
    Public,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    CreateOrUpdateDevice,
    GetDevice,
    DeleteDevice,
    SendDeviceEvent,
    SendCommand,
    PurgeCommands,
    ReceiveFeedback,
    CompleteFeedback,
    AbandonFeedback,
    ReceiveCommand,
    CompleteCommand,
    AbandonCommand,
    ListDevices,
    BulkDevices,
    DeviceStatistics,
    GetTwin,
    PatchTwin,
    ReplaceTwin,
    DeviceGetTwin,
    DeviceUpdateReported,
    DeviceGetDesired,
    ListPolicies,
    RegeneratePolicyKey,
    OpenApi,
    QueryTelemetry,
    QueryFleetTelemetry,
    QueryDeviceState,
    ListAlerts,
    ListRules,
    CreateRule,
    GetRule,
    PutRule,
    DeleteRule,
    AcknowledgeAlert,
    CloseAlert,
    DescribeSession,
    ListFleet,
    QueryDevices,
    ServiceStatistics,
    InvokeMethod,
    DeviceReceiveMethod,
    DeviceRespondMethod,
    CreateJob,
    GetJob,
    CancelJob,
    QueryJobs,
    DashboardIndex,
    DashboardAsset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// API Gateway route key: `"{METHOD} {path template}"`.
    pub key: &'static str,
    pub operation: Operation,
    pub function: Function,
    pub access: Access,
}

pub const ROUTES: &[Route] = &[
    Route {
        key: "PUT /devices/{id}",
        operation: Operation::CreateOrUpdateDevice,
        function: Function::Registry,
        access: Access::Service(Permission::RegistryWrite),
    },
    Route {
        key: "GET /devices/{id}",
        operation: Operation::GetDevice,
        function: Function::Registry,
        access: Access::Service(Permission::RegistryRead),
    },
    Route {
        key: "DELETE /devices/{id}",
        operation: Operation::DeleteDevice,
        function: Function::Registry,
        access: Access::Service(Permission::RegistryWrite),
    },
    Route {
        key: "POST /devices/{id}/messages/events",
        operation: Operation::SendDeviceEvent,
        function: Function::Ingest,
        access: Access::Device,
    },
    // Cloud-to-device messages. Azure's SDKs use both `deviceBound` and `devicebound`.
    Route {
        key: "POST /devices/{id}/messages/deviceBound",
        operation: Operation::SendCommand,
        function: Function::Commands,
        access: Access::Service(Permission::ServiceConnect),
    },
    Route {
        key: "POST /devices/{id}/messages/devicebound",
        operation: Operation::SendCommand,
        function: Function::Commands,
        access: Access::Service(Permission::ServiceConnect),
    },
    Route {
        key: "DELETE /devices/{id}/commands",
        operation: Operation::PurgeCommands,
        function: Function::Commands,
        access: Access::Service(Permission::ServiceConnect),
    },
    Route {
        key: "GET /messages/serviceBound/feedback",
        operation: Operation::ReceiveFeedback,
        function: Function::Commands,
        access: Access::Service(Permission::ServiceConnect),
    },
    Route {
        key: "DELETE /messages/serviceBound/feedback/{lockToken}",
        operation: Operation::CompleteFeedback,
        function: Function::Commands,
        access: Access::Service(Permission::ServiceConnect),
    },
    Route {
        key: "POST /messages/serviceBound/feedback/{lockToken}/abandon",
        operation: Operation::AbandonFeedback,
        function: Function::Commands,
        access: Access::Service(Permission::ServiceConnect),
    },
    Route {
        key: "GET /devices/{id}/messages/deviceBound",
        operation: Operation::ReceiveCommand,
        function: Function::Commands,
        access: Access::Device,
    },
    Route {
        key: "GET /devices/{id}/messages/devicebound",
        operation: Operation::ReceiveCommand,
        function: Function::Commands,
        access: Access::Device,
    },
    Route {
        key: "DELETE /devices/{id}/messages/deviceBound/{lockToken}",
        operation: Operation::CompleteCommand,
        function: Function::Commands,
        access: Access::Device,
    },
    Route {
        key: "DELETE /devices/{id}/messages/devicebound/{lockToken}",
        operation: Operation::CompleteCommand,
        function: Function::Commands,
        access: Access::Device,
    },
    Route {
        key: "POST /devices/{id}/messages/deviceBound/{lockToken}/abandon",
        operation: Operation::AbandonCommand,
        function: Function::Commands,
        access: Access::Device,
    },
    Route {
        key: "POST /devices/{id}/messages/devicebound/{lockToken}/abandon",
        operation: Operation::AbandonCommand,
        function: Function::Commands,
        access: Access::Device,
    },
    // Registry (complete), twins, shared access policies, the API description.
    Route {
        key: "GET /devices",
        operation: Operation::ListDevices,
        function: Function::Registry,
        access: Access::Service(Permission::RegistryRead),
    },
    Route {
        key: "POST /devices",
        operation: Operation::BulkDevices,
        function: Function::Registry,
        access: Access::Service(Permission::RegistryWrite),
    },
    Route {
        key: "GET /statistics/devices",
        operation: Operation::DeviceStatistics,
        function: Function::Registry,
        access: Access::Service(Permission::RegistryRead),
    },
    Route {
        key: "GET /twins/{id}",
        operation: Operation::GetTwin,
        function: Function::Registry,
        access: Access::Service(Permission::ServiceConnect),
    },
    Route {
        key: "PATCH /twins/{id}",
        operation: Operation::PatchTwin,
        function: Function::Registry,
        access: Access::Service(Permission::ServiceConnect),
    },
    Route {
        key: "PUT /twins/{id}",
        operation: Operation::ReplaceTwin,
        function: Function::Registry,
        access: Access::Service(Permission::ServiceConnect),
    },
    Route {
        key: "GET /devices/{id}/twin",
        operation: Operation::DeviceGetTwin,
        function: Function::Registry,
        access: Access::Device,
    },
    Route {
        key: "PATCH /devices/{id}/twin/properties/reported",
        operation: Operation::DeviceUpdateReported,
        function: Function::Registry,
        access: Access::Device,
    },
    Route {
        key: "GET /devices/{id}/twin/properties/desired",
        operation: Operation::DeviceGetDesired,
        function: Function::Registry,
        access: Access::Device,
    },
    Route {
        key: "GET /policies",
        operation: Operation::ListPolicies,
        function: Function::Registry,
        access: Access::Owner,
    },
    Route {
        key: "POST /policies/{name}/keys/{slot}/regenerate",
        operation: Operation::RegeneratePolicyKey,
        function: Function::Registry,
        access: Access::Owner,
    },
    Route {
        key: "GET /openapi.json",
        operation: Operation::OpenApi,
        function: Function::Registry,
        access: Access::Public,
    },
    Route {
        key: "GET /session",
        operation: Operation::DescribeSession,
        function: Function::Registry,
        access: Access::AnyPolicy,
    },
    Route {
        key: "GET /fleet/devices",
        operation: Operation::ListFleet,
        function: Function::Registry,
        access: Access::Service(Permission::RegistryRead),
    },
    Route {
        key: "POST /devices/query",
        operation: Operation::QueryDevices,
        function: Function::Registry,
        access: Access::Service(Permission::RegistryRead),
    },
    Route {
        key: "GET /statistics/service",
        operation: Operation::ServiceStatistics,
        function: Function::Registry,
        access: Access::Service(Permission::RegistryRead),
    },
    Route {
        key: "POST /twins/{id}/methods",
        operation: Operation::InvokeMethod,
        function: Function::Registry,
        access: Access::Service(Permission::ServiceConnect),
    },
    Route {
        key: "GET /devices/{id}/methods",
        operation: Operation::DeviceReceiveMethod,
        function: Function::Registry,
        access: Access::Device,
    },
    Route {
        key: "POST /devices/{id}/methods/{requestId}/response",
        operation: Operation::DeviceRespondMethod,
        function: Function::Registry,
        access: Access::Device,
    },
    // Jobs (Azure's /jobs/v2). The literal `query` comes before `{jobId}`, as API Gateway
    // prefers the more specific route.
    Route {
        key: "GET /jobs/v2/query",
        operation: Operation::QueryJobs,
        function: Function::Registry,
        access: Access::Service(Permission::RegistryRead),
    },
    Route {
        key: "PUT /jobs/v2/{jobId}",
        operation: Operation::CreateJob,
        function: Function::Registry,
        access: Access::Service(Permission::RegistryWrite),
    },
    Route {
        key: "GET /jobs/v2/{jobId}",
        operation: Operation::GetJob,
        function: Function::Registry,
        access: Access::Service(Permission::RegistryRead),
    },
    Route {
        key: "POST /jobs/v2/{jobId}/cancel",
        operation: Operation::CancelJob,
        function: Function::Registry,
        access: Access::Service(Permission::RegistryWrite),
    },
    Route {
        key: "GET /ui",
        operation: Operation::DashboardIndex,
        function: Function::Dashboard,
        access: Access::Public,
    },
    Route {
        key: "GET /ui/{file}",
        operation: Operation::DashboardAsset,
        function: Function::Dashboard,
        access: Access::Public,
    },
    // Stream analytics: queries and rules.
    Route {
        key: "GET /devices/{id}/telemetry",
        operation: Operation::QueryTelemetry,
        function: Function::Analytics,
        access: Access::Service(Permission::ServiceConnect),
    },
    Route {
        key: "POST /fleet/telemetry",
        operation: Operation::QueryFleetTelemetry,
        function: Function::Analytics,
        access: Access::Service(Permission::ServiceConnect),
    },
    Route {
        key: "GET /devices/{id}/state",
        operation: Operation::QueryDeviceState,
        function: Function::Analytics,
        access: Access::Service(Permission::ServiceConnect),
    },
    Route {
        key: "GET /alerts",
        operation: Operation::ListAlerts,
        function: Function::Analytics,
        access: Access::Service(Permission::ServiceConnect),
    },
    Route {
        key: "POST /alerts/{ruleId}/{deviceId}/acknowledge",
        operation: Operation::AcknowledgeAlert,
        function: Function::Analytics,
        access: Access::Service(Permission::ServiceConnect),
    },
    Route {
        key: "POST /alerts/{ruleId}/{deviceId}/close",
        operation: Operation::CloseAlert,
        function: Function::Analytics,
        access: Access::Service(Permission::ServiceConnect),
    },
    Route {
        key: "GET /rules",
        operation: Operation::ListRules,
        function: Function::Analytics,
        access: Access::Service(Permission::ServiceConnect),
    },
    Route {
        key: "POST /rules",
        operation: Operation::CreateRule,
        function: Function::Analytics,
        access: Access::Service(Permission::ServiceConnect),
    },
    Route {
        key: "GET /rules/{ruleId}",
        operation: Operation::GetRule,
        function: Function::Analytics,
        access: Access::Service(Permission::ServiceConnect),
    },
    Route {
        key: "PUT /rules/{ruleId}",
        operation: Operation::PutRule,
        function: Function::Analytics,
        access: Access::Service(Permission::ServiceConnect),
    },
    Route {
        key: "DELETE /rules/{ruleId}",
        operation: Operation::DeleteRule,
        function: Function::Analytics,
        access: Access::Service(Permission::ServiceConnect),
    },
];

/// Path parameters of a matched route, raw (still percent-encoded) as in the request path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PathParams(Vec<(&'static str, String)>);

impl PathParams {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.0.iter().map(|(n, v)| (*n, v.as_str()))
    }

    /// The `{id}` parameter, percent-decoded and validated as a device id.
    pub fn device_id(&self) -> Result<DeviceId, ApiError> {
        let raw = self
            .get("id")
            .ok_or_else(|| ApiError::bad_request("the path has no device id"))?;
        let decoded = decode_segment(raw).ok_or_else(|| {
            ApiError::bad_request("the device id in the path is not valid percent-encoded UTF-8")
        })?;
        DeviceId::parse(&decoded)
            .map_err(|e| ApiError::bad_request(format!("invalid device id: {e}")))
    }
}

pub fn decode_segment(raw: &str) -> Option<Cow<'_, str>> {
    percent_decode_str(raw).decode_utf8().ok()
}

impl Route {
    pub fn method(&self) -> &'static str {
        self.key.split_once(' ').map_or("", |(method, _)| method)
    }

    pub fn template(&self) -> &'static str {
        self.key
            .split_once(' ')
            .map_or("", |(_, template)| template)
    }

    /// Matches a request path (without query) against this route's template, as API Gateway does:
    /// literal segments exactly, `{name}` one non-empty segment, one trailing slash ignored
    /// (Azure's SDKs list devices at `/devices/`).
    pub fn match_path(&self, raw_path: &str) -> Option<PathParams> {
        let raw_path = match raw_path.strip_suffix('/') {
            Some(trimmed) if !trimmed.is_empty() => trimmed,
            _ => raw_path,
        };
        let mut template = self.template().split('/');
        let mut path = raw_path.split('/');
        let mut params = Vec::new();
        loop {
            match (template.next(), path.next()) {
                (None, None) => return Some(PathParams(params)),
                (Some(expected), Some(given)) => {
                    if let Some(name) = expected.strip_prefix('{').and_then(|n| n.strip_suffix('}'))
                    {
                        if given.is_empty() {
                            return None;
                        }
                        params.push((name, given.to_owned()));
                    } else if expected != given {
                        return None;
                    }
                }
                _ => return None,
            }
        }
    }

    pub fn by_key(route_key: &str) -> Option<&'static Route> {
        ROUTES.iter().find(|route| route.key == route_key)
    }
}

/// Finds the route for a request, as API Gateway would.
pub fn match_request(method: &str, raw_path: &str) -> Option<(&'static Route, PathParams)> {
    ROUTES
        .iter()
        .filter(|route| route.method() == method)
        .find_map(|route| route.match_path(raw_path).map(|params| (route, params)))
}

/// The resource a request addresses, for checking a SAS token's `sr`: the hub host followed by the
/// decoded path segments.
pub fn resource_segments<'a>(host: &'a str, raw_path: &'a str) -> Vec<Cow<'a, str>> {
    std::iter::once(Cow::Borrowed(host))
        .chain(
            raw_path
                .split('/')
                .filter(|s| !s.is_empty())
                .map(|s| decode_segment(s).unwrap_or(Cow::Borrowed(s))),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_routes_and_captures_parameters() {
        let (route, params) = match_request("POST", "/devices/dev%231/messages/events").unwrap();
        assert_eq!(route.operation, Operation::SendDeviceEvent);
        assert_eq!(params.get("id"), Some("dev%231"));
        assert_eq!(params.device_id().unwrap().as_str(), "dev#1");

        let (route, _) = match_request("PUT", "/devices/dev1").unwrap();
        assert_eq!(route.operation, Operation::CreateOrUpdateDevice);
    }

    #[test]
    fn does_not_match_partial_or_extra_segments_or_wrong_methods() {
        assert!(match_request("POST", "/devices/dev1/messages").is_none());
        assert!(match_request("POST", "/devices/dev1/messages/events/x").is_none());
        assert!(match_request("POST", "/devices//messages/events").is_none());
        assert!(match_request("PATCH", "/devices/dev1").is_none());
        assert!(match_request("GET", "/devices/dev1/unknown").is_none());
        assert!(match_request("GET", "/unknown").is_none());
    }

    #[test]
    fn one_trailing_slash_is_ignored() {
        let (route, _) = match_request("GET", "/devices/").unwrap();
        assert_eq!(route.key, "GET /devices");
        let (route, params) = match_request("GET", "/twins/d1/").unwrap();
        assert_eq!(
            (route.key, params.get("id")),
            ("GET /twins/{id}", Some("d1"))
        );
        assert!(match_request("GET", "/devices//").is_none());
        assert!(match_request("GET", "/twins//").is_none());
    }

    #[test]
    fn invalid_device_ids_in_the_path_are_bad_requests() {
        let (_, params) = match_request("GET", "/devices/a%20b").unwrap();
        assert_eq!(params.device_id().unwrap_err().status(), 400);
        let (_, params) = match_request("GET", "/devices/%ff").unwrap();
        assert_eq!(params.device_id().unwrap_err().status(), 400);
    }

    #[test]
    fn route_keys_are_unique_and_found_by_key() {
        for route in ROUTES {
            assert_eq!(Route::by_key(route.key), Some(route));
            assert_eq!(ROUTES.iter().filter(|r| r.key == route.key).count(), 1);
        }
    }

    #[test]
    fn deployed_routes_are_exactly_these() {
        #[derive(serde::Deserialize)]
        struct RouteTable {
            routes: std::collections::BTreeMap<String, String>,
            public: std::collections::BTreeSet<String>,
        }
        let deployed: RouteTable =
            serde_json::from_str(include_str!("../../infra/routes.json")).unwrap();
        let here: std::collections::BTreeMap<String, String> = ROUTES
            .iter()
            .map(|r| (r.key.to_owned(), r.function.name().to_owned()))
            .collect();
        assert_eq!(
            deployed.routes, here,
            "infra/routes.json and shared/src/routes.rs disagree"
        );
        let public: std::collections::BTreeSet<String> = ROUTES
            .iter()
            .filter(|r| r.access == Access::Public)
            .map(|r| r.key.to_owned())
            .collect();
        assert_eq!(deployed.public, public, "public routes disagree");
    }

    /// The route table of `docs/registry.md`, rendered from `ROUTES`.
    fn permission_table() -> String {
        let mut table =
            String::from("| Route | Function | Who may call it |\n| --- | --- | --- |\n");
        for route in ROUTES {
            let who = match route.access {
                Access::Device => {
                    "the device in the path (its own key), or a policy with `DeviceConnect`"
                        .to_owned()
                }
                Access::Service(permission) => format!("a policy with `{permission}`"),
                Access::Owner => "a policy with every permission (`iothubowner`)".to_owned(),
                Access::AnyPolicy => "any shared access policy".to_owned(),
                Access::Public => "anyone, no token".to_owned(),
            };
            table.push_str(&format!(
                "| `{}` | {} | {who} |\n",
                route.key,
                route.function.name()
            ));
        }
        table
    }

    #[test]
    fn the_documented_permissions_are_the_enforced_ones() {
        let doc = include_str!("../../docs/registry.md");
        let table = permission_table();
        assert!(
            doc.contains(&table),
            "docs/registry.md must hold this table, as enforced:\n{table}"
        );
    }

    #[test]
    fn resource_segments_decode_the_path() {
        let segments = resource_segments("hub", "/devices/a%23b/messages/events");
        assert_eq!(segments, ["hub", "devices", "a#b", "messages", "events"]);
    }
}
