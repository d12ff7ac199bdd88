"""Jinja2 templates for the generated Nix project; installed as the envnix.templates package."""
