//! Who may call which route: the rule both the authorizer and every handler apply.

use crate::domain::device_id::DeviceId;
use crate::domain::envelope::AuthMethod;
use crate::domain::policy::{Permission, Rights};
use crate::error::ApiError;
use crate::routes::Access;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Acting as a device: with the device's own key, or a policy key with DeviceConnect
    /// (`via_policy` names it).
    Device {
        device_id: DeviceId,
        generation_id: String,
        via_policy: Option<String>,
    },
    /// A back-end service holding a shared access policy key.
    Service { policy: String, rights: Rights },
}

impl Principal {
    pub fn auth_method(&self) -> AuthMethod {
        match self {
            Principal::Device {
                via_policy: Some(policy),
                ..
            }
            | Principal::Service { policy, .. } => AuthMethod::policy(policy),
            Principal::Device {
                via_policy: None, ..
            } => AuthMethod::device_key(),
        }
    }
}

/// Checks that `principal` may use a route with `access` on the device named in the path.
pub fn check_access(
    access: Access,
    path_device: Option<&DeviceId>,
    principal: &Principal,
) -> Result<(), ApiError> {
    match (access, principal) {
        (Access::Device, Principal::Device { device_id, .. }) => match path_device {
            Some(path_device) if path_device == device_id => Ok(()),
            _ => Err(ApiError::unauthorized(
                "the token was issued for another device",
            )),
        },
        (Access::Device, Principal::Service { policy, .. }) => Err(ApiError::unauthorized(
            format!("policy {policy} does not have the DeviceConnect permission this route needs"),
        )),
        (Access::Service(permission), Principal::Service { policy, rights }) => {
            if rights.contains(permission) {
                Ok(())
            } else {
                Err(ApiError::unauthorized(format!(
                    "policy {policy} does not have the {permission} permission this route needs"
                )))
            }
        }
        (Access::Service(permission), Principal::Device { .. }) => {
            Err(ApiError::unauthorized(format!(
                "this route needs a shared access policy token with {permission}; device tokens are not accepted"
            )))
        }
        (Access::Owner, Principal::Service { policy, rights }) => {
            if Permission::ALL.iter().all(|p| rights.contains(*p)) {
                Ok(())
            } else {
                Err(ApiError::unauthorized(format!(
                    "policy {policy} lacks permissions this route needs (all four, as iothubowner has)"
                )))
            }
        }
        (Access::Owner, Principal::Device { .. }) => Err(ApiError::unauthorized(
            "this route needs the hub owner's policy token; device tokens are not accepted",
        )),
        (Access::AnyPolicy, Principal::Service { .. }) => Ok(()),
        (Access::AnyPolicy, Principal::Device { .. }) => Err(ApiError::unauthorized(
            "this route needs a shared access policy token; device tokens are not accepted",
        )),
        (Access::Public, _) => Ok(()),
    }
}

/// Whether a policy with `rights` may act as a device.
pub fn policy_may_act_as_device(rights: Rights) -> bool {
    rights.contains(Permission::DeviceConnect)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str) -> Principal {
        Principal::Device {
            device_id: DeviceId::parse(id).unwrap(),
            generation_id: "1".into(),
            via_policy: None,
        }
    }

    fn service(rights: &[Permission]) -> Principal {
        Principal::Service {
            policy: "p".into(),
            rights: Rights::of(rights),
        }
    }

    #[test]
    fn devices_may_use_device_routes_for_themselves_only() {
        let d1 = DeviceId::parse("d1").unwrap();
        assert!(check_access(Access::Device, Some(&d1), &device("d1")).is_ok());
        assert_eq!(
            check_access(Access::Device, Some(&d1), &device("d2"))
                .unwrap_err()
                .status(),
            401
        );
        assert!(check_access(Access::Device, None, &device("d1")).is_err());
    }

    #[test]
    fn services_need_the_route_permission() {
        let route = Access::Service(Permission::RegistryWrite);
        assert!(check_access(route, None, &service(&[Permission::RegistryWrite])).is_ok());
        assert_eq!(
            check_access(route, None, &service(&[Permission::RegistryRead]))
                .unwrap_err()
                .status(),
            401
        );
    }

    #[test]
    fn device_and_service_tokens_do_not_cross_over() {
        let d1 = DeviceId::parse("d1").unwrap();
        assert!(
            check_access(
                Access::Service(Permission::RegistryRead),
                None,
                &device("d1")
            )
            .is_err()
        );
        assert!(
            check_access(
                Access::Device,
                Some(&d1),
                &service(&[Permission::ServiceConnect])
            )
            .is_err()
        );
    }

    #[test]
    fn auth_method_names_the_policy() {
        assert_eq!(device("d").auth_method(), AuthMethod::device_key());
        let via = Principal::Device {
            device_id: DeviceId::parse("d").unwrap(),
            generation_id: "1".into(),
            via_policy: Some("iothubowner".into()),
        };
        assert_eq!(via.auth_method(), AuthMethod::policy("iothubowner"));
    }
}
