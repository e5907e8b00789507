//! Shared access policies and their permissions, as Azure IoT Hub defines them.

use std::fmt;
use std::str::FromStr;

use crate::domain::sas::SymmetricKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    RegistryRead,
    RegistryWrite,
    ServiceConnect,
    DeviceConnect,
}

impl Permission {
    pub const ALL: [Permission; 4] = [
        Permission::RegistryRead,
        Permission::RegistryWrite,
        Permission::ServiceConnect,
        Permission::DeviceConnect,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::RegistryRead => "RegistryRead",
            Permission::RegistryWrite => "RegistryWrite",
            Permission::ServiceConnect => "ServiceConnect",
            Permission::DeviceConnect => "DeviceConnect",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of permissions, written as Azure does: `"RegistryRead, RegistryWrite"`.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Rights(u8);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown permission {0:?}; expected RegistryRead, RegistryWrite, ServiceConnect or DeviceConnect"
)]
pub struct UnknownPermission(pub String);

impl Rights {
    pub fn of(permissions: &[Permission]) -> Self {
        Self(permissions.iter().fold(0, |bits, p| bits | p.bit()))
    }

    pub fn contains(self, permission: Permission) -> bool {
        self.0 & permission.bit() != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL
            .into_iter()
            .filter(move |p| self.contains(*p))
    }
}

impl fmt::Display for Rights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Permission::as_str).collect();
        f.write_str(&names.join(", "))
    }
}

impl fmt::Debug for Rights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Rights({self})")
    }
}

impl FromStr for Rights {
    type Err = UnknownPermission;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let mut rights = Rights::default();
        for name in value
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
        {
            let permission = Permission::ALL
                .into_iter()
                .find(|p| p.as_str().eq_ignore_ascii_case(name))
                .ok_or_else(|| UnknownPermission(name.to_owned()))?;
            rights.0 |= permission.bit();
        }
        Ok(rights)
    }
}

/// A shared access policy: a name, its rights, and two keys so either can be rotated while the
/// other stays valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPolicy {
    pub name: String,
    pub rights: Rights,
    pub primary_key: SymmetricKey,
    pub secondary_key: SymmetricKey,
}

impl AccessPolicy {
    pub fn keys(&self) -> [&SymmetricKey; 2] {
        [&self.primary_key, &self.secondary_key]
    }
}

/// The policies every hub has, with Azure's default rights.
pub const BUILT_IN_POLICIES: [(&str, &[Permission]); 5] = [
    (
        "iothubowner",
        &[
            Permission::RegistryRead,
            Permission::RegistryWrite,
            Permission::ServiceConnect,
            Permission::DeviceConnect,
        ],
    ),
    ("service", &[Permission::ServiceConnect]),
    ("device", &[Permission::DeviceConnect]),
    ("registryRead", &[Permission::RegistryRead]),
    (
        "registryReadWrite",
        &[Permission::RegistryRead, Permission::RegistryWrite],
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_round_trip_through_azure_notation() {
        let rights: Rights = "RegistryRead, ServiceConnect".parse().unwrap();
        assert!(rights.contains(Permission::RegistryRead));
        assert!(rights.contains(Permission::ServiceConnect));
        assert!(!rights.contains(Permission::RegistryWrite));
        assert!(!rights.contains(Permission::DeviceConnect));
        assert_eq!(rights.to_string(), "RegistryRead, ServiceConnect");
        assert_eq!(rights.to_string().parse::<Rights>().unwrap(), rights);
    }

    #[test]
    fn unknown_permissions_are_rejected() {
        assert_eq!(
            "RegistryRead, Everything".parse::<Rights>(),
            Err(UnknownPermission("Everything".into()))
        );
    }

    #[test]
    fn built_in_policies_match_azure() {
        let rights = |name: &str| {
            let (_, permissions) = BUILT_IN_POLICIES.iter().find(|(n, _)| *n == name).unwrap();
            Rights::of(permissions)
        };
        assert_eq!(rights("iothubowner").iter().count(), 4);
        assert_eq!(rights("service"), Rights::of(&[Permission::ServiceConnect]));
        assert_eq!(rights("device"), Rights::of(&[Permission::DeviceConnect]));
        assert!(!rights("registryRead").contains(Permission::RegistryWrite));
        assert!(rights("registryReadWrite").contains(Permission::RegistryWrite));
    }
}
