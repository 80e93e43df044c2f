//! Who may call what: roles, scopes, and the one authorization check that runs before
//! every dispatch. The method table (`rpc::TABLE`) names each method's [`Access`];
//! nothing is checked ad hoc in a handler.

use switchboard_schemas::ProtocolVersion;

use crate::protocol::error::RpcError;

pub const ADMIN: &str = "operator.admin";
pub const READ: &str = "operator.read";
pub const WRITE: &str = "operator.write";
pub const APPROVALS: &str = "operator.approvals";
pub const PAIRING: &str = "operator.pairing";
pub const QUESTIONS: &str = "operator.questions";
pub const TALK: &str = "operator.talk";
pub const SESSIONS_READ: &str = "operator.sessions.read";
pub const SESSIONS_WRITE: &str = "operator.sessions.write";

/// Every operator scope of protocol.md and protocol-v4.md.
pub const ALL_SCOPES: &[&str] = &[
    ADMIN,
    READ,
    WRITE,
    APPROVALS,
    PAIRING,
    QUESTIONS,
    TALK,
    "operator.talk.secrets",
    SESSIONS_READ,
    SESSIONS_WRITE,
];

/// A connection's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Operator,
    Node,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "operator" => Some(Role::Operator),
            "node" => Some(Role::Node),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Node => "node",
        }
    }
}

/// What a method requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `health`: `operator.read` on v3; on v4 it skips every check (any role, no scope).
    Health,
    Read,
    Write,
    Admin,
    Pairing,
    Approvals,
    /// `operator.questions` (v4: questions the agent asks the operator).
    Questions,
    /// Callable only by `role:"node"`.
    NodeOnly,
}

/// A connection's role and granted scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub role: Role,
    pub scopes: Vec<String>,
}

impl Grant {
    fn holds(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Whether the grant covers `scope`, with v4's implications (admin ⇒ all;
    /// write ⇒ read, talk, sessions.*; read ⇒ sessions.read). v3 knows only admin ⇒ all
    /// and write ⇒ read (its read methods accept either).
    pub fn has(&self, version: ProtocolVersion, scope: &str) -> bool {
        if self.holds(ADMIN) || self.holds(scope) {
            return true;
        }
        match (version, scope) {
            (_, READ) => self.holds(WRITE),
            (ProtocolVersion::V4, TALK | SESSIONS_WRITE) => self.holds(WRITE),
            (ProtocolVersion::V4, SESSIONS_READ) => self.holds(WRITE) || self.holds(READ),
            _ => false,
        }
    }
}

/// The authorization check, in the reference's order. `access` is `None` for a method
/// the server does not know, which needs admin (so non-admins cannot probe the table).
pub fn authorize(
    version: ProtocolVersion,
    grant: &Grant,
    access: Option<Access>,
) -> Result<(), RpcError> {
    if version == ProtocolVersion::V4 && access == Some(Access::Health) {
        return Ok(());
    }
    if access == Some(Access::NodeOnly) {
        return match grant.role {
            Role::Node => Ok(()),
            Role::Operator => Err(RpcError::unauthorized_role("operator")),
        };
    }
    if grant.role == Role::Node {
        return Err(RpcError::unauthorized_role("node"));
    }
    if grant.holds(ADMIN) {
        return Ok(());
    }
    let needed = match access {
        Some(Access::Health | Access::Read) => READ,
        Some(Access::Write) => WRITE,
        Some(Access::Pairing) => PAIRING,
        Some(Access::Approvals) => APPROVALS,
        Some(Access::Questions) => QUESTIONS,
        Some(Access::Admin) | None => ADMIN,
        Some(Access::NodeOnly) => unreachable!("handled above"),
    };
    if grant.has(version, needed) {
        Ok(())
    } else {
        Err(RpcError::missing_scope(version, needed))
    }
}

/// Whether a broadcast event may reach this connection.
///
/// v3: pairing and approval events only to operators holding those scopes (or admin);
/// everything else to everyone. v4 fails closed: events not in its table reach no one.
pub fn may_receive(version: ProtocolVersion, grant: &Grant, event: &str) -> bool {
    let guard = if event.starts_with("exec.approval.") {
        Some(APPROVALS)
    } else if event.starts_with("device.pair.") || event.starts_with("node.pair.") {
        Some(PAIRING)
    } else {
        None
    };
    if let Some(scope) = guard {
        return grant.role == Role::Operator && (grant.holds(ADMIN) || grant.holds(scope));
    }
    match version {
        ProtocolVersion::V3 => true,
        ProtocolVersion::V4 => match event {
            "tick" | "health" | "heartbeat" | "shutdown" => true,
            "presence" | "chat" | "agent" | "cron" | "voicewake.changed" | "sessions.changed"
            | "talk.mode" | "node.hostStats" => {
                grant.role == Role::Operator && grant.has(version, READ)
            }
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProtocolVersion::{V3, V4};

    fn op(scopes: &[&str]) -> Grant {
        Grant {
            role: Role::Operator,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn v3_read_methods_accept_read_or_write() {
        assert!(authorize(V3, &op(&[READ]), Some(Access::Read)).is_ok());
        assert!(authorize(V3, &op(&[WRITE]), Some(Access::Read)).is_ok());
        let e = authorize(V3, &op(&[]), Some(Access::Health)).unwrap_err();
        assert_eq!(e.message, "missing scope: operator.read");
        assert_eq!(e.code.as_str(), "INVALID_REQUEST");
    }

    #[test]
    fn v4_health_needs_nothing_and_missing_scope_is_forbidden() {
        let node = Grant {
            role: Role::Node,
            scopes: vec![],
        };
        assert!(authorize(V4, &node, Some(Access::Health)).is_ok());
        assert!(authorize(V3, &node, Some(Access::Health)).is_err());
        let e = authorize(V4, &op(&[READ]), Some(Access::Write)).unwrap_err();
        assert_eq!(e.code.as_str(), "FORBIDDEN");
        assert_eq!(e.details.unwrap()["missingScope"], "operator.write");
    }

    #[test]
    fn unknown_methods_need_admin_and_node_only_methods_need_a_node() {
        assert_eq!(
            authorize(V3, &op(&[READ]), None).unwrap_err().message,
            "missing scope: operator.admin"
        );
        assert!(authorize(V3, &op(&[ADMIN]), None).is_ok());
        assert_eq!(
            authorize(V3, &op(&[ADMIN]), Some(Access::NodeOnly))
                .unwrap_err()
                .message,
            "unauthorized role: operator"
        );
        let node = Grant {
            role: Role::Node,
            scopes: vec![],
        };
        assert_eq!(
            authorize(V4, &node, Some(Access::Read))
                .unwrap_err()
                .message,
            "unauthorized role: node"
        );
    }

    #[test]
    fn v4_events_fail_closed_and_pairing_events_need_the_scope() {
        assert!(may_receive(V4, &op(&[]), "tick"));
        assert!(!may_receive(V4, &op(&[]), "presence"));
        assert!(may_receive(V4, &op(&[WRITE]), "presence"));
        assert!(!may_receive(V4, &op(&[ADMIN]), "something.new"));
        assert!(may_receive(V3, &op(&[]), "presence"));
        assert!(!may_receive(V3, &op(&[READ]), "device.pair.requested"));
        assert!(may_receive(V3, &op(&[PAIRING]), "device.pair.requested"));
    }
}
