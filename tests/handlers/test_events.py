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
