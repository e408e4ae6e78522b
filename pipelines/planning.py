"""Turn what lies in the inboxes into partition keys and run requests.

Shared by the sensor and by ``obsx run`` so that both start the same runs of the same job.
"""

import hashlib
from dataclasses import dataclass, field

import dagster as dg

from obsx.dropzone import InboxFile

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


@dataclass
class Plan:
    new_keys: list[str] = field(default_factory=list)  # to register, then run as one range
    again_keys: list[str] = field(default_factory=list)  # registered before: the same bytes again

    def run_requests(self) -> list[dg.RunRequest]:
        requests = []
        if self.new_keys:
            digest = hashlib.sha256("\n".join(self.new_keys).encode()).hexdigest()[:32]
            requests.append(
                dg.RunRequest(
                    run_key=f"new:{digest}",
                    tags=range_tags(self.new_keys[0], self.new_keys[-1]),
                )
            )
        for key in self.again_keys:
            requests.append(dg.RunRequest(run_key=None, partition_key=key))
        return requests


def range_tags(first: str, last: str) -> dict[str, str]:
    return {RANGE_START: first, RANGE_END: last}


def plan(files: list[InboxFile], registered: set[str]) -> Plan:
    """New keys in upload order, and keys already registered whose file is in the inbox again."""
    result = Plan()
    for f in files:
        target = result.again_keys if f.key in registered else result.new_keys
        if f.key not in target:
            target.append(f.key)
    return result
