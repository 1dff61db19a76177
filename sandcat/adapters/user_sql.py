"""The ``users`` row shared by the SQLite and PostgreSQL user stores (same columns, same order)."""

from __future__ import annotations

import dataclasses

from sandcat.domain import UserRecord

#: The columns in ``UserRecord`` field order, so a row maps to the record positionally.
USER_COLUMNS = ", ".join(field.name for field in dataclasses.fields(UserRecord))
EMAIL_TAKEN = "this e-mail address is already registered"
PHONE_TAKEN = "this phone number is another user's login (their phone, id, account or e-mail)"


def user_values(user: UserRecord) -> tuple[object, ...]:
    """The values of ``USER_COLUMNS`` for an INSERT."""
    return dataclasses.astuple(user)
