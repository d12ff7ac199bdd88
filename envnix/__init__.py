"""envnix: envd build.envd / conda env.yaml -> locked artifacts -> Nix -> reproducible OCI image."""

__version__ = "0.1.0"
