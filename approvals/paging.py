"""Pages of a list whose length the view may already know (statecore.paging, shared
with the admin's lists)."""

from __future__ import annotations

from statecore.paging import COUNT_CAP, CountedPaginator, cap_for

__all__ = ["COUNT_CAP", "CountedPaginator", "cap_for"]
