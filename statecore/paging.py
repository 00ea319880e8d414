"""Pages of a list of any length: counted exactly when the caller knows the length,
otherwise counted only as far as it takes to draw the page, so a page of a million
rows costs an index walk to its place, not a COUNT(*) of the whole list."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.utils.functional import cached_property

# Past this many, a list says "10,000+": nobody pages through ten thousand by hand.
COUNT_CAP = 10_000
# However deep a page is asked for (?page=99999999999999999999), counting stops here:
# a LIMIT every database takes, and more rows than any list holds.
DEEPEST = 10**9


# Filters whose rows are found by testing each row of the list in turn (a common word,
# a chat's kind read from the message a draft answers, a busy reviewer's replies probed
# in the audit), not by a range of an index.
WALKED_FILTERS = ("q", "kind", "reviewer")


def cap_for(filters: dict) -> int | None:
    """How far a list with these filters counts (None: COUNT_CAP). A filter tested row by
    row counts only as far as the page asked for ("50+", a cap of 0): counting a thousand
    of a common word's matches would read twenty times further than the page does."""
    return 0 if any(filters.get(name) for name in WALKED_FILTERS) else None


class CountedPaginator(Paginator):
    """A Paginator told the list's length (`count`) when the page already has it (the
    queue's header, the count table): not counted again. Otherwise it counts at most
    `cap` rows, or as many as reach the end of the page asked (`ask`): past that,
    `capped` is true and `count_label` says "10,000+" instead of a number."""

    def __init__(
        self, object_list, per_page, *, count: int | None = None, cap: int | None = None, **kwargs
    ) -> None:
        super().__init__(object_list, per_page, **kwargs)
        self._known_count = count
        self.cap = COUNT_CAP if cap is None else cap
        self.capped = False
        self._asked = 1

    def ask(self, number) -> None:
        """The page that will be asked for: counting reaches at least its end."""
        try:
            self._asked = max(int(number), 1)
        except (TypeError, ValueError):
            self._asked = 1

    def validate_number(self, number) -> int:
        if "count" not in self.__dict__:  # not counted yet: count as far as this page
            self.ask(number)
        return super().validate_number(number)

    @cached_property
    def count(self) -> int:
        if self._known_count is not None:
            return self._known_count
        limit = min(max(self.cap, self._asked * self.per_page), DEEPEST) + 1
        counted = _count_up_to(self.object_list, limit)
        # At the limit there are more: the count stays one past what is known, so the
        # last page known has a "next" and the one after it counts further.
        self.capped = counted >= limit
        return counted

    @property
    def count_label(self) -> str:
        """The count as a page shows it: "1,234", or "10,000+" past what was counted."""
        if self.capped:
            return f"{self.count - 1:,}+"
        return f"{self.count:,}"


def _count_up_to(object_list, limit: int) -> int:
    """len(object_list), but no more than `limit`: a COUNT over a LIMIT subquery, in the
    list's own order. Counted in any order, the database may start where the list's rows
    are rarest (a table scan from the oldest rows, all customers' messages); in the
    list's order it reads what the pages read, and stops where they would."""
    if isinstance(object_list, QuerySet):
        return object_list[:limit].count()
    return len(object_list[:limit])
