"""``energy:``: codecarbon's offline tracker around the train, evaluate, compare and benchmark stages."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class EnergyConfig:
    """Energy and emissions, measured with codecarbon's OfflineEmissionsTracker (never the online one).

    Without codecarbon installed (``pip install 'cardgen[energy]'``) the card says energy was not measured.
    """

    enabled: bool = True
    country_iso_code: str | None = None  # where the run happens (3 letters, e.g. FRA); unset: world-average carbon
    region: str | None = None  # a US state or Canadian province, for codecarbon's regional data
    tracking_mode: Literal["machine", "process"] = "machine"  # codecarbon: the whole machine, or this process only
    measure_power_secs: float = 15.0  # codecarbon's sampling interval
    pue: float = 1.0  # power usage effectiveness of the data centre (1.0: none counted)

    def _checks(self) -> list[tuple[str, str]]:
        if self.country_iso_code is not None and not re.fullmatch(r"[A-Z]{3}", self.country_iso_code):
            return [("country_iso_code", f"must be a 3-letter ISO code in capitals, e.g. FRA or USA "
                                         f"(got {self.country_iso_code!r})")]
        if self.measure_power_secs <= 0:
            return [("measure_power_secs", f"must be > 0 (got {self.measure_power_secs})")]
        if self.pue < 1:
            return [("pue", f"must be >= 1 (got {self.pue})")]
        return []
