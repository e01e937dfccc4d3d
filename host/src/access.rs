//! Who may do what: the roles, the permissions, and the one table between them.
//!
//! Every API route names the [`Permission`] it needs in the route table
//! (`api::route_table`), and one decision — [`allows`] — answers for every request; no
//! handler looks at a role. The table is data ([`GRANTS`]), printed in the README and
//! walked by the authorization matrix test, so a route without a rule does not compile
//! and a rule that changes shows up in review.

use std::fmt;

/// What a token's holder does for the company.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Everything.
    Admin,
    /// Plugins and connectors: their configuration, the secrets they use (by name),
    /// reloading workflows, test calls.
    Integrator,
    /// Campaigns: starting and following their runs, email messages, bounces and
    /// suppressions, test sends.
    Marketing,
    /// Tickets and escalation: their runs, records and the customer overview.
    ServiceLead,
    /// Their leads and the customer overview.
    Sales,
    /// Reading everything but secrets, users and the audit log, with personal data
    /// redacted ([`crate::redact`]).
    Viewer,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Admin,
        Role::Integrator,
        Role::Marketing,
        Role::ServiceLead,
        Role::Sales,
        Role::Viewer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Integrator => "integrator",
            Role::Marketing => "marketing",
            Role::ServiceLead => "service-lead",
            Role::Sales => "sales",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing a request may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    WorkflowsRead,
    WorkflowsReload,
    RunsStart,
    RunsRead,
    /// Cancel and retry.
    RunsOperate,
    EventsDeliver,
    RecordsRead,
    PluginsRead,
    PluginsConfigure,
    /// Secret names, never values.
    SecretsRead,
    SecretsWrite,
    EmailRead,
    EmailReportBounces,
    SuppressionsRead,
    EmailTestSend,
    CustomersRead,
    /// People: list and read users.
    UsersRead,
    /// People: create users, change their roles and team, deactivate them.
    UsersWrite,
    /// The audit log.
    AuditRead,
    /// Leads: list and read (sales only their own and their team's).
    LeadsRead,
    /// Leads: deliver new ones (a web form, a CRM, an import).
    LeadsWrite,
    /// Leads: accept or reject (sales: their own and their team's).
    LeadsDecide,
    /// Teams: a member's absence and whether they take leads (sales: their own team).
    TeamsWrite,
    /// Tickets: list and read, with their SLA clocks and timeline.
    TicketsRead,
    /// Tickets: open them (a web form, a CRM), change status, priority, group and
    /// assignee, add replies, notes and the customer's messages.
    TicketsWrite,
    /// The manual test clock (only with `[testing] manual_clock`).
    TestingClock,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::WorkflowsRead => "workflows:read",
            Permission::WorkflowsReload => "workflows:reload",
            Permission::RunsStart => "runs:start",
            Permission::RunsRead => "runs:read",
            Permission::RunsOperate => "runs:operate",
            Permission::EventsDeliver => "events:write",
            Permission::RecordsRead => "records:read",
            Permission::PluginsRead => "plugins:read",
            Permission::PluginsConfigure => "plugins:configure",
            Permission::SecretsRead => "secrets:read",
            Permission::SecretsWrite => "secrets:write",
            Permission::EmailRead => "email:read",
            Permission::EmailReportBounces => "email:bounces",
            Permission::SuppressionsRead => "suppressions:read",
            Permission::EmailTestSend => "email:test-send",
            Permission::CustomersRead => "customers:read",
            Permission::UsersRead => "users:read",
            Permission::UsersWrite => "users:write",
            Permission::AuditRead => "audit:read",
            Permission::LeadsRead => "leads:read",
            Permission::LeadsWrite => "leads:write",
            Permission::LeadsDecide => "leads:decide",
            Permission::TeamsWrite => "teams:write",
            Permission::TicketsRead => "tickets:read",
            Permission::TicketsWrite => "tickets:write",
            Permission::TestingClock => "testing:clock",
        }
    }

    pub fn parse(text: &str) -> Option<Permission> {
        GRANTS
            .iter()
            .map(|(permission, _)| *permission)
            .find(|permission| permission.as_str() == text)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

use Permission as P;
use Role as R;

/// The permission table: each permission and the roles that have it (admins have all).
pub const GRANTS: &[(Permission, &[Role])] = &[
    (
        P::WorkflowsRead,
        &[
            R::Integrator,
            R::Marketing,
            R::ServiceLead,
            R::Sales,
            R::Viewer,
        ],
    ),
    (P::WorkflowsReload, &[R::Integrator]),
    (P::RunsStart, &[R::Marketing, R::ServiceLead]),
    (
        P::RunsRead,
        &[R::Integrator, R::Marketing, R::ServiceLead, R::Viewer],
    ),
    (P::RunsOperate, &[R::Marketing, R::ServiceLead]),
    (P::EventsDeliver, &[R::Integrator, R::ServiceLead]),
    (P::RecordsRead, &[R::Marketing, R::ServiceLead, R::Viewer]),
    (P::PluginsRead, &[R::Integrator, R::Viewer]),
    (P::PluginsConfigure, &[R::Integrator]),
    (P::SecretsRead, &[R::Integrator]),
    (P::SecretsWrite, &[R::Integrator]),
    (P::EmailRead, &[R::Marketing]),
    (P::EmailReportBounces, &[R::Marketing]),
    (P::SuppressionsRead, &[R::Marketing]),
    (P::EmailTestSend, &[R::Marketing]),
    (
        P::CustomersRead,
        &[R::ServiceLead, R::Sales, R::Integrator, R::Viewer],
    ),
    (P::UsersRead, &[]),
    (P::UsersWrite, &[]),
    (P::AuditRead, &[]),
    (
        P::LeadsRead,
        &[R::Integrator, R::Marketing, R::Sales, R::Viewer],
    ),
    (P::LeadsWrite, &[R::Integrator, R::Marketing]),
    (P::LeadsDecide, &[R::Sales]),
    (P::TeamsWrite, &[R::Sales]),
    (P::TicketsRead, &[R::ServiceLead, R::Integrator, R::Viewer]),
    (P::TicketsWrite, &[R::ServiceLead, R::Integrator]),
    (P::TestingClock, &[]),
];

/// What a workflow is about (`domain:` in its file): its runs and their history are
/// visible only to the roles that own the domain ([`DOMAINS`]), besides admins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Domain {
    Leads,
    Tickets,
    Campaigns,
}

impl Domain {
    pub const ALL: [Domain; 3] = [Domain::Leads, Domain::Tickets, Domain::Campaigns];

    pub fn as_str(self) -> &'static str {
        match self {
            Domain::Leads => "leads",
            Domain::Tickets => "tickets",
            Domain::Campaigns => "campaigns",
        }
    }

    pub fn parse(text: &str) -> Option<Domain> {
        Domain::ALL.into_iter().find(|d| d.as_str() == text)
    }
}

/// Which roles own which domain. Integrators see every domain (they follow what their
/// plugins did in a run), viewers too (with personal data redacted: [`crate::redact`]); a
/// workflow without a domain is everyone's who may read runs.
pub const DOMAINS: &[(Domain, &[Role])] = &[
    (
        Domain::Leads,
        &[R::Integrator, R::Marketing, R::Sales, R::Viewer],
    ),
    (Domain::Tickets, &[R::Integrator, R::ServiceLead, R::Viewer]),
    (Domain::Campaigns, &[R::Integrator, R::Marketing, R::Viewer]),
];

/// Whether `role` sees the workflows, runs and history of `domain` (`None`: a workflow
/// without one).
pub fn sees(role: Role, domain: Option<Domain>) -> bool {
    let Some(domain) = domain else {
        return true;
    };
    role == Role::Admin
        || DOMAINS
            .iter()
            .any(|(d, roles)| *d == domain && roles.contains(&role))
}

/// The domains `role` sees, or `None` if it sees them all.
pub fn visible_domains(role: Role) -> Option<Vec<Domain>> {
    let seen: Vec<Domain> = Domain::ALL
        .into_iter()
        .filter(|d| sees(role, Some(*d)))
        .collect();
    (seen.len() < Domain::ALL.len()).then_some(seen)
}

/// The one decision: whether `role` has `permission`. Deny by default — a permission
/// missing from [`GRANTS`] is an admin's only.
pub fn allows(role: Role, permission: Permission) -> bool {
    role == Role::Admin
        || GRANTS
            .iter()
            .any(|(p, roles)| *p == permission && roles.contains(&role))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_shows_the_table_as_it_ships() {
        let readme = include_str!("../../README.md");
        let mut rows = 0;
        for line in readme.lines() {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let Some(name) = cells.get(1).and_then(|c| c.strip_prefix('`')) else {
                continue;
            };
            let Some(permission) = GRANTS
                .iter()
                .map(|(p, _)| *p)
                .find(|p| name.strip_suffix('`') == Some(p.as_str()))
            else {
                continue;
            };
            if cells.len() != 10 {
                continue;
            }
            for (role, cell) in Role::ALL.into_iter().zip(&cells[3..9]) {
                assert_eq!(
                    *cell == "✓",
                    allows(role, permission),
                    "README: {permission} for {role}"
                );
            }
            rows += 1;
        }
        assert_eq!(rows, GRANTS.len(), "a README row per permission");
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn every_permission_is_in_the_table_once_and_admins_have_all() {
        let mut listed: Vec<Permission> = GRANTS.iter().map(|(p, _)| *p).collect();
        let count = listed.len();
        listed.sort();
        listed.dedup();
        assert_eq!(listed.len(), count, "a permission is listed twice");
        for (permission, _) in GRANTS {
            assert!(allows(Role::Admin, *permission));
        }
        assert!(!allows(Role::Viewer, Permission::SecretsRead));
        assert!(!allows(Role::Sales, Permission::RunsStart));
        assert!(allows(Role::Integrator, Permission::PluginsConfigure));
    }

    #[test]
    fn domains_are_seen_by_their_owners() {
        assert!(sees(Role::ServiceLead, Some(Domain::Tickets)));
        assert!(!sees(Role::ServiceLead, Some(Domain::Campaigns)));
        assert!(!sees(Role::Marketing, Some(Domain::Tickets)));
        assert!(sees(Role::Viewer, None), "a workflow without a domain");
        assert_eq!(visible_domains(Role::Admin), None);
        assert_eq!(visible_domains(Role::Integrator), None);
        assert_eq!(
            visible_domains(Role::Marketing),
            Some(vec![Domain::Leads, Domain::Campaigns])
        );
        for domain in Domain::ALL {
            assert_eq!(Domain::parse(domain.as_str()), Some(domain));
        }
    }
}
