"""What an image built on base(image=...) takes from its base: layers first, then config.

Why here and not in the template: the plan and the image config must agree on the base's
layers and Env (run() sees the same PATH the container will), and both come from the lock's
``base`` section only, never from the registry.

Inheritance follows envd v1 for serving images (envd-reference §4.5): the base's Env with PATH
merged, and WorkingDir, User, Entrypoint (unless config.entrypoint) and Cmd from the base.
"""

from __future__ import annotations

from typing import Any

from envnix.core.nixexpr import store_name
from envnix.spec import CONDA_PREFIX, ImageSpec

__all__ = ["base_layers", "inherit_config", "merged_env"]


def base_layers(base: dict[str, Any]) -> list[dict[str, Any]]:
    """plan.json's ``baseLayers``: one fixed-output fetch per layer blob, bottom first."""
    diff_ids = base["config"]["diff_ids"]
    out = []
    for i, (layer, url) in enumerate(zip(base["manifest"]["layers"], base["blob_urls"],
                                         strict=True)):
        hexdigest = layer["digest"].removeprefix("sha256:")
        out.append({
            "url": url, "sha256": hexdigest, "digest": layer["digest"], "size": layer["size"],
            "diffId": diff_ids[i], "storeName": store_name(f"base-{hexdigest[:16]}.tar.gz"),
        })
    return out


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(i for i in items if i))


def merged_env(spec: ImageSpec, base: dict[str, Any]) -> list[str]:
    """The base's Env, then envnix's (envnix wins on conflicts; runtime.environ last).

    PATH, unless build.envd sets it: envnix's conda env first (install.python() must win over
    a python of the base), then the base's PATH, then the usual system dirs, then extra_path.
    """
    base_env = base["config"].get("Env") or []
    theirs = dict(item.split("=", 1) for item in base_env if "=" in item)
    ours = dict(item.split("=", 1) for item in spec.env_list())
    env = {**theirs, **ours}
    if "PATH" not in spec.env:
        own = ours["PATH"].split(":")
        conda = [d for d in own if d.startswith((CONDA_PREFIX, "/opt/conda/"))]
        system = [d for d in own if d not in conda and d not in spec.extra_path]
        env["PATH"] = ":".join(_dedupe([*conda, *theirs.get("PATH", "").split(":"), *system,
                                        *spec.extra_path]))
    return [f"{k}={v}" for k, v in env.items()]


def inherit_config(config: dict[str, Any], spec: ImageSpec, base: dict[str, Any]) -> None:
    """Rewrite envnix's image config to start from the base's config: its Env for every
    image; a serving image also its WorkingDir, User, Entrypoint and Cmd (a dev image keeps
    envd's user, working directory and shell, which is what dev=True asks for)."""
    inherited = base["config"]
    config["Env"] = merged_env(spec, base)
    config["Labels"]["io.envnix.base"] = f"{base['ref']}@{base['digest']}"
    if spec.dev:
        return
    for key in ("WorkingDir", "User"):
        if inherited.get(key):
            config[key] = inherited[key]
        else:
            config.pop(key, None)
    if spec.runtime.entrypoint:
        # As a Dockerfile ENTRYPOINT does: the base's Cmd was meant for the base's entrypoint.
        config.pop("Cmd", None)
    else:
        for key in ("Entrypoint", "Cmd"):
            if inherited.get(key):
                config[key] = inherited[key]
            else:
                config.pop(key, None)
