"""The build's stages, each turning the model into files under output/<cluster>/: pure
rendering (`render`), RPM specs and packages (`specs`, `rpms`, `lint`), kickstarts, seeds,
the deep check with the real tools, and `pipeline`, the ordered list of steps."""
