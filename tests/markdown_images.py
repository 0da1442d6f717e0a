"""Reads back Markdown artifacts from the test's Prefect server, and the PNGs
`east_tasks.report.markdown.embedded_plots` puts inside them."""

import asyncio
import base64
import re

IMAGE = re.compile(r"!\[([^\]]*)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)")


def embedded_pngs(markdown: str) -> dict[str, bytes]:
    """Alt text -> decoded PNG bytes of every data-URI image in `markdown`."""
    return {alt: base64.b64decode(data) for alt, data in IMAGE.findall(markdown)}


def prefect_artifacts() -> dict[str, str]:
    """Key -> data of every artifact on the test server (the latest of each key)."""
    from prefect.client.orchestration import get_client

    async def read() -> dict[str, str]:
        async with get_client() as client:
            return {a.key: a.data for a in sorted(await client.read_artifacts(), key=lambda a: a.created)}

    return asyncio.run(read())
