"""The event models' bounds against the columns that store them."""

from __future__ import annotations

import annotated_types
from kaizend.handlers.events import EVENT_TYPES
from kaizend.storage.events import EVENT_TABLES, integer_ranges


def test_every_integer_field_is_bounded_within_its_column() -> None:
    ranges = integer_ranges()
    checked = 0
    for kind, model in EVENT_TYPES.items():
        columns = ranges[EVENT_TABLES[kind]]
        for name, info in model.model_fields.items():
            if name not in columns:
                continue
            low, high = columns[name]
            ge = next(m.ge for m in info.metadata if isinstance(m, annotated_types.Ge))
            le = next(m.le for m in info.metadata if isinstance(m, annotated_types.Le))
            assert low <= ge <= le <= high, (kind, name, (ge, le), (low, high))
            checked += 1
    # schema_version of each kind, and the feedback's rating.
    assert checked == 4


def test_the_clients_integer_bounds_are_the_ddls() -> None:
    # The slim client owns its bounds as constants (it cannot read the DDL without DuckDB);
    # the DDL stays the one definition of the columns, and this keeps both in step.
    from kaizend_client.events import MAX_SCHEMA_VERSION, Event

    ranges = integer_ranges()
    stored = min(ranges[table]["schema_version"][1] for table in EVENT_TABLES.values())
    assert MAX_SCHEMA_VERSION == stored
    le = next(
        m.le
        for m in Event.model_fields["schema_version"].metadata
        if isinstance(m, annotated_types.Le)
    )
    assert le == stored
