"""The infrastructure every stage shares and nothing of envnix's own: errors, processes, HTTP,
files written atomically, image references, progress and the JSON readers.

Modules here import only the standard library, third-party packages and each other; every
later stage (spec, frontend, lock, toolchain, render, nix, oci, cli) may import them.
"""
