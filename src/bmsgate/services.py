"""The services bmsgate runs: the table is bmsgate_common.service_table (the API reads it)."""

from __future__ import annotations

from bmsgate_common.service_table import (
    COMMON_SECTIONS as COMMON_SECTIONS,
)
from bmsgate_common.service_table import (
    SERVICES as SERVICES,
)
from bmsgate_common.service_table import (
    Service as Service,
)
from bmsgate_common.service_table import (
    fingerprint as fingerprint,
)
from bmsgate_common.service_table import (
    left_out as left_out,
)
