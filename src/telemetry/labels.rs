//! The label sets of every metric family, and how a tenant becomes a label: its name when
//! listed (`--metric-tenant`), `(other)` when not, `(none)` for calls without one. Shared by
//! [`super::metrics`] (the families) and [`super::scheduling`] (what records them by priority
//! and tenant).

use std::collections::HashSet;
use std::sync::RwLock;

use prometheus_client::encoding::EncodeLabelSet;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabel {
    pub model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub model: String,
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    pub model: String,
    pub method: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub model: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub model: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub dialect: String,
    pub model: String,
    /// "2xx", "4xx", "5xx", or "cancelled" when the client left first.
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub dialect: String,
}

/// The label of calls that name no tenant.
pub const NO_TENANT: &str = "(none)";
/// The label of tenants that are not listed.
pub const OTHER_TENANT: &str = "(other)";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PriorityLabels {
    pub model: String,
    pub priority: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    pub model: String,
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantReasonLabels {
    pub model: String,
    pub tenant: String,
    pub reason: String,
}

/// The tenants counted under their own name.
#[derive(Debug, Default)]
pub struct ListedTenants(RwLock<HashSet<String>>);

impl ListedTenants {
    pub(super) fn set(&self, names: &[String]) {
        let mut listed = self.0.write().unwrap_or_else(|e| e.into_inner());
        *listed = names.iter().cloned().collect();
    }

    /// The label of `tenant`: its name when listed, else `(other)`; `(none)` for "".
    pub fn label(&self, tenant: &str) -> String {
        if tenant.is_empty() {
            return NO_TENANT.into();
        }
        let listed = self.0.read().unwrap_or_else(|e| e.into_inner());
        match listed.contains(tenant) {
            true => tenant.into(),
            false => OTHER_TENANT.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_are_labelled_by_name_only_when_listed() {
        let listed = ListedTenants::default();
        listed.set(&["team-a".into()]);
        assert_eq!(listed.label("team-a"), "team-a");
        assert_eq!(listed.label("team-b"), "(other)");
        assert_eq!(listed.label(""), "(none)");
    }
}
