from datetime import datetime, timezone

import pytest

AS_OF = datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def as_of() -> datetime:
    return AS_OF
