//! Who may do what (conventions section 3), decided here only. Identity
//! roles map onto the contract's four: owner and admin are `Admin`, dba is
//! `DBA`, developer is `Developer`; viewer — and operator, a Backup
//! platform role the contract does not know — read only. "Production" is
//! the environment the database was registered with, never a request's.

use sluice_auth::principal::{Principal, Role};
use uuid::Uuid;

use crate::error::ApiError;

/// The contract's roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrchRole {
    Admin,
    Dba,
    Developer,
    Viewer,
}

impl OrchRole {
    pub fn of(role: Role) -> OrchRole {
        match role {
            Role::Owner | Role::Admin => OrchRole::Admin,
            Role::Dba => OrchRole::Dba,
            Role::Developer => OrchRole::Developer,
            Role::Operator | Role::Viewer => OrchRole::Viewer,
        }
    }

    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OrchRole::Admin => "Admin",
            OrchRole::Dba => "DBA",
            OrchRole::Developer => "Developer",
            OrchRole::Viewer => "Viewer",
        }
    }
}

/// An identity role's name (`owner`, `dba`…) as the contract spells it.
pub fn role_name(identity_role: &str) -> &'static str {
    identity_role
        .parse::<Role>()
        .map(OrchRole::of)
        .unwrap_or(OrchRole::Viewer)
        .as_str()
}

/// What a caller asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Register a database (not in the table: the roles that may execute).
    Register,
    Create,
    /// Validate or submit for approval.
    Validate,
    Review,
    /// Execute or roll back.
    Execute,
}

/// Whether `role` may do `action` on a database registered in
/// `environment`.
pub fn allowed(role: OrchRole, action: Action, environment: &str) -> bool {
    let production = environment == "Production";
    match (role, action) {
        (OrchRole::Admin, _) => true,
        (OrchRole::Viewer, _) => false,
        (OrchRole::Dba, Action::Create | Action::Review) => false,
        (OrchRole::Dba, _) => true,
        (OrchRole::Developer, Action::Review) => false,
        (OrchRole::Developer, _) => !production,
    }
}

/// The caller of an orchestrator route.
pub struct Actor {
    pub tenant: Uuid,
    pub role: OrchRole,
    pub user: Option<Uuid>,
}

impl Actor {
    pub fn of(p: &Principal) -> Actor {
        Actor {
            tenant: p.tenant_id,
            role: OrchRole::of(p.role),
            user: match p.subject {
                sluice_auth::principal::Subject::User(u) => Some(u),
                sluice_auth::principal::Subject::ApiKey(_) => None,
            },
        }
    }

    /// 403 unless the caller may do `action` on a database of `environment`.
    pub fn require(&self, action: Action, environment: &str) -> Result<(), ApiError> {
        if allowed(self.role, action, environment) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "the {} role may not do this on a {environment} database",
                self.role.as_str()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_conventions_role_table() {
        use Action::*;
        use OrchRole::*;
        for env in ["Production", "Staging"] {
            assert!(allowed(Admin, Review, env));
            assert!(!allowed(Viewer, Validate, env));
            assert!(!allowed(Dba, Create, env));
            assert!(allowed(Dba, Execute, env));
            assert!(allowed(Dba, Validate, env));
            assert!(!allowed(Dba, Review, env));
            assert!(!allowed(Developer, Review, env));
        }
        assert!(!allowed(Developer, Create, "Production"));
        assert!(allowed(Developer, Create, "QA"));
        assert!(!allowed(Developer, Execute, "Production"));
        assert!(allowed(Developer, Execute, "Development"));
        assert_eq!(role_name("owner"), "Admin");
        assert_eq!(role_name("dba"), "DBA");
        assert_eq!(role_name("operator"), "Viewer");
    }
}
