"""PXE lab installs: the boot trees and per-host kickstarts (`tree`) and the read-only HTTP
server that serves them and the seeds (`serve`, on top of `httpserve`)."""
