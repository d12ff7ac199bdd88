"""Config files that packages install with ucf from a template they ship, in their postinst.

Why: envnix runs no maintainer scripts, and ucf is called there with a temporary copy of the
template (r-base-core edits a paper size into it first), which no reading of the script can
follow. Without the file the program does not start (Rscript: "invalid value for 'editor'",
with no /etc/R/Renviron). The table names each template and the file ucf makes of it; the
template is installed as is, as ucf does when the file is new. Not a builder itself: mkmeta
imports it (standard library only).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

# (the template a package ships, the file its postinst installs from it with ucf)
UCF_FILES: tuple[tuple[str, str], ...] = (
    ("usr/lib/R/etc/Renviron.ucf", "etc/R/Renviron"),  # r-base-core
)


def ucf_files(find: Callable[[str], str | None],
              read: Callable[[str], bytes]) -> Iterator[tuple[str, bytes]]:
    """(file, content) for each template in the image whose file is not there yet."""
    for template, target in UCF_FILES:
        path = find(template)
        if path is None or find(target) is not None:
            continue
        if os.path.isfile(path) and not os.path.islink(path):
            yield target, read(path)
