"""Template filters of the job admin: the state badge and durations."""
from __future__ import annotations

from django import template

from ..admin_support import format_duration, pretty_json, priority_label, state_badge

register = template.Library()

register.filter("bgp_state_badge", state_badge)
register.filter("bgp_duration", format_duration)
register.filter("bgp_priority", priority_label)
register.filter("bgp_json", pretty_json)
