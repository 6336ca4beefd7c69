"""Publishing a build: what is published and the re-run-safe upload (`publish`), the checks
before any upload (`checks`), the forges as a registry (`forge`) and the HTTP client
(`httpclient`)."""
