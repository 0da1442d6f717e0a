"""Reads back the PNGs that `east_tasks.report.embedded_plots` puts inside Markdown artifacts."""

import base64
import re

IMAGE = re.compile(r"!\[([^\]]*)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)")


def embedded_pngs(markdown: str) -> dict[str, bytes]:
    """Alt text -> decoded PNG bytes of every data-URI image in `markdown`."""
    return {alt: base64.b64decode(data) for alt, data in IMAGE.findall(markdown)}
