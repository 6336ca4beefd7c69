"""`lab soak`: a randomized fault schedule against the running lab while clients write and read,
then a checker over everything the clients saw (Jepsen-style).

plan (the schedule a seed gives, pure) < nemesis (inject and heal each fault on the lab) and
clients (writers and readers recording every attempt) < checker (pure: history and final rows
in, findings out) < run (the loop, the report). docs/soak.md describes the faults, the checks
and how to read a report.
"""
