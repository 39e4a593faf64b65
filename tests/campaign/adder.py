"""Adds the test campaign input to a journal, in a process of its own:

    python -m tests.campaign.adder JOURNAL CAMPAIGN SIZE

(Two of these at once prove that adding the same input concurrently adds it once.)
"""

from __future__ import annotations

import asyncio
import sys

import smsvn
from tests.campaign.fleet import CONTENT, campaign_input


async def add(journal: str, name: str, size: int) -> None:
    inputs, _, _, _ = campaign_input(size)
    async with smsvn.Journal(journal) as opened:
        campaign = await opened.campaign(name)
        added = await campaign.add(inputs, content=CONTENT)
    print(added.added, added.invalid, added.duplicates, added.already)


if __name__ == "__main__":
    asyncio.run(add(sys.argv[1], sys.argv[2], int(sys.argv[3])))
