"""VM images per role: the `images` stage (`stage`), image formats (`formats`, a registry) and
OVA packaging, build backends (virt-install, cloud image; a registry in `stage`), install
sources and the preflight that checks everything before hours of work."""
