"""Adds the test campaign input to a journal, in a process of its own:

    python -m tests.campaign.adder JOURNAL CAMPAIGN SIZE [SEGMENT]

(Two of these at once prove that adding the same input concurrently adds it once.) ``SEGMENT``
sets the segment size of this process's adds (``smsvn.journal._intake.CHUNK``), so that a race
over several segments needs no 20,000 rows a segment.
"""

from __future__ import annotations

import asyncio
import sys

import smsvn
from smsvn.journal import _campaign, _intake
from tests.campaign.fleet import CONTENT, campaign_input


async def add(journal: str, name: str, size: int) -> None:
    inputs, _, _, _ = campaign_input(size)
    async with smsvn.Journal(journal) as opened:
        campaign = await opened.campaign(name)
        added = await campaign.add(inputs, content=CONTENT)
    print(added.added, added.invalid, added.duplicates, added.already)


if __name__ == "__main__":
    if len(sys.argv) > 4:
        _intake.CHUNK = _campaign.CHUNK = int(sys.argv[4])  # type: ignore[misc]
    asyncio.run(add(sys.argv[1], sys.argv[2], int(sys.argv[3])))
