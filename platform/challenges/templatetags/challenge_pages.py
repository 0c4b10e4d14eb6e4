"""Template helpers of the participant pages: a task's contract, a phase's state and label."""

from __future__ import annotations

from django import template

from challenges.contract import Contract, task_contract
from challenges.contract import phase_state as _phase_state

register = template.Library()


@register.simple_tag
def contract_of(task) -> Contract:
    """``{% contract_of task as contract %}``: channels, classes, dtypes, preprocessing."""
    return task_contract(task)


@register.filter
def visibility_label(phase) -> str:
    """The visibility as readers should read it now: a hidden phase whose results were
    published is "published", not "hidden until published"."""
    if phase.visibility == "hidden" and phase.published:
        return "results published"
    return phase.get_visibility_display()


@register.filter
def phase_state(phase) -> str:
    return _phase_state(phase)
