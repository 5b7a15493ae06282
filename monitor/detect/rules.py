"""The rule table: every rule the detector knows, by the name used in the configuration.

The rules themselves live by subject: `auth_rules` (failed logins), `access_rules` (reads),
`change_rules` (writes).
"""

from __future__ import annotations

from monitor.detect.access_rules import enumeration, mass_pull, new_source, source_not_allowed
from monitor.detect.auth_rules import brute_force, password_spray, success_after_failures
from monitor.detect.change_rules import (
    delete_outside_cleanup,
    off_hours_write,
    out_of_role,
    tag_moved,
)
from monitor.detect.rulebase import SUCCESS_ACTIONS, WRITE_ACTIONS, RuleSpec
from monitor.events import Action

FAILURE = frozenset({Action.AUTH_FAILURE})

RULES: tuple[RuleSpec, ...] = (
    RuleSpec("brute_force_account", brute_force, FAILURE),
    RuleSpec("brute_force_address", brute_force, FAILURE),
    RuleSpec("password_spray", password_spray, FAILURE),
    RuleSpec("success_after_failures", success_after_failures, FAILURE | SUCCESS_ACTIONS),
    RuleSpec("enumeration", enumeration, frozenset({Action.REQUEST})),
    RuleSpec("mass_pull", mass_pull, frozenset({Action.PULL})),
    RuleSpec("new_source", new_source, SUCCESS_ACTIONS),
    RuleSpec("out_of_role", out_of_role, WRITE_ACTIONS),
    RuleSpec("off_hours_write", off_hours_write, WRITE_ACTIONS),
    RuleSpec(
        "tag_moved",
        tag_moved,
        frozenset({Action.PUSH, Action.PULL, Action.DELETE}),
        sees_allowed=True,
    ),
    RuleSpec("delete_outside_cleanup", delete_outside_cleanup, frozenset({Action.DELETE})),
    RuleSpec("source_not_allowed", source_not_allowed),
)
