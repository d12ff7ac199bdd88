{
  # envnix as a flake: `nix run <this flake> -- lock` on a machine that has only Nix.
  # Everything is built from pinned public artifacts (no nixpkgs): see nix/envnix.nix.
  description = "envnix: bit-reproducible OCI images with Nix from envd build.envd files";

  outputs = { self }:
    let
      envnix = import ./nix/envnix.nix;
    in
    {
      packages.x86_64-linux.default = envnix;
      packages.x86_64-linux.envnix = envnix;
      apps.x86_64-linux.default = {
        type = "app";
        program = "${envnix}/bin/envnix";
      };
    };
}
